//! Turns raw RFC 5322 bytes into the few fields the pipeline needs (mail-parser).

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser};
use sha2::{Digest, Sha256};

use crate::domain::{EmailAddress, clean_text};

/// Text kept per message: enough for a person to read, bounded for the store.
const MAX_BODY_CHARS: usize = 64 * 1024;
/// More MIME parts than this is not a mail a person wrote; it goes to review.
pub const MAX_PARTS: usize = 500;

/// What the pipeline needs of a message.
#[derive(Debug, Clone, Default)]
pub struct ParsedMail {
    /// Without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Option<EmailAddress>,
    pub from_name: Option<String>,
    /// The raw From header value, for when it did not hold a valid address.
    pub from_raw: Option<String>,
    pub reply_to: Option<EmailAddress>,
    pub subject: String,
    pub text: String,
    pub date: Option<DateTime<Utc>>,
    /// Top-level headers: lower-case name and unfolded raw value.
    pub headers: Vec<(String, String)>,
    /// `type/subtype` of the top-level part, lower case.
    pub content_type: String,
    /// `report-type` parameter of a multipart/report.
    pub report_type: Option<String>,
    pub parts: usize,
}

impl ParsedMail {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
    }

    /// Where a reply goes: Reply-To, else From.
    pub fn reply_address(&self) -> Option<&EmailAddress> {
        self.reply_to.as_ref().or(self.from.as_ref())
    }

    /// The envelope sender as the delivering server recorded it (Return-Path), if any.
    pub fn return_path(&self) -> Option<&str> {
        self.header("return-path")
    }
}

/// The key a message is filed under exactly once: its Message-ID, or a hash of the bytes.
pub fn dedupe_key(message_id: Option<&str>, raw: &[u8]) -> String {
    match message_id.map(str::trim).filter(|m| !m.is_empty()) {
        Some(mid) => format!("mid:{mid}"),
        None => format!("sha256:{}", hex::encode(Sha256::digest(raw))),
    }
}

/// A hash of what a mail says (sender, subject, date, text), the same however often the
/// mail is fetched or delivered: a different mail that reuses a known Message-ID has
/// another. Line endings and trailing white space do not count: the copy a server kept
/// and the bytes the sender sent differ there (an SMTP hop may add a last empty line).
pub fn content_hash(mail: &ParsedMail) -> String {
    let text: Vec<&str> = mail.text.lines().map(str::trim_end).collect();
    let text = text.join("\n");
    let mut h = Sha256::new();
    for part in [
        mail.from.as_ref().map(EmailAddress::as_str).or(mail.from_raw.as_deref()).unwrap_or(""),
        &mail.subject,
        &mail.date.map(crate::domain::time::ts).unwrap_or_default(),
        text.trim_end(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Parses a raw message. `None` when mail-parser finds no message at all, or panics on
/// it (mail-parser 0.11.9 does on some malformed multiparts): one bad mail must never
/// take the daemon down, it goes to review instead.
pub fn parse(raw: &[u8]) -> Option<ParsedMail> {
    match std::panic::catch_unwind(|| parse_inner(raw)) {
        Ok(parsed) => parsed,
        Err(_) => {
            tracing::warn!(bytes = raw.len(), "mail-parser panicked on a message; filing it for review");
            None
        }
    }
}

fn parse_inner(raw: &[u8]) -> Option<ParsedMail> {
    // Old Mac mail uses bare CR line endings, which mail-parser reads as one long line.
    let normalized;
    let raw = if !raw.contains(&b'\n') && raw.contains(&b'\r') {
        normalized =
            raw.iter().flat_map(|&b| if b == b'\r' { vec![b'\r', b'\n'] } else { vec![b] }).collect::<Vec<u8>>();
        normalized.as_slice()
    } else {
        raw
    };
    let msg = MessageParser::default().parse(raw)?;
    let (from, from_name, from_raw) = match msg.from().and_then(|a| a.first()) {
        Some(addr) => (
            addr.address.as_deref().and_then(|a| EmailAddress::parse(a).ok()),
            addr.name.as_deref().map(clean_text).filter(|n| !n.is_empty()),
            addr.address.as_deref().map(clean_text),
        ),
        None => (None, None, msg.header_raw("From").map(clean_text)),
    };
    let reply_to = msg
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address.as_deref())
        .and_then(|a| EmailAddress::parse(a).ok());
    let headers = msg.headers_raw().map(|(n, v)| (n.to_ascii_lowercase(), unfold(v))).collect();
    let (content_type, report_type) = match msg.root_part().headers().iter().find_map(|h| h.value().as_content_type()) {
        Some(ct) => (
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase(),
            ct.attribute("report-type").map(|s| s.to_ascii_lowercase()),
        ),
        None => ("text/plain".into(), None),
    };
    let mut text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    if text.len() > MAX_BODY_CHARS {
        let cut = (0..=MAX_BODY_CHARS).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
    }
    Some(ParsedMail {
        message_id: msg.message_id().map(clean_text).filter(|m| !m.is_empty()),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        from,
        from_name,
        from_raw,
        reply_to,
        subject: msg.subject().map(clean_text).unwrap_or_default(),
        text: text.replace('\0', ""),
        date: msg.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        headers,
        content_type,
        report_type,
        parts: msg.parts.len(),
    })
}

fn id_list(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![clean_text(t)],
        HeaderValue::TextList(l) => l.iter().map(|t| clean_text(t)).collect(),
        _ => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

fn unfold(v: &str) -> String {
    v.split(['\r', '\n']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_simple_dutch_mail_in_crlf_and_lf() {
        let lf = "From: Ann de Vries <Ann@Example.nl>\nTo: contact@example.org\nSubject: =?UTF-8?Q?Aanmelding_ambassadeur_=C3=A9?=\nMessage-ID: <abc@x>\nIn-Reply-To: <p@x>\nReferences: <o@x> <p@x>\n\nIk wil graag meedoen.\n";
        for raw in [lf.to_string(), lf.replace('\n', "\r\n")] {
            let m = parse(raw.as_bytes()).unwrap();
            assert_eq!(m.from.as_ref().unwrap().as_str(), "ann@example.nl");
            assert_eq!(m.from_name.as_deref(), Some("Ann de Vries"));
            assert_eq!(m.subject, "Aanmelding ambassadeur é");
            assert_eq!(m.message_id.as_deref(), Some("abc@x"));
            assert_eq!(m.in_reply_to, vec!["p@x"]);
            assert_eq!(m.references, vec!["o@x", "p@x"]);
            assert!(m.text.contains("meedoen"));
        }
    }

    #[test]
    fn html_only_mail_gets_a_text_body() {
        let raw = "From: a@b.nl\nSubject: x\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Hallo <b>daar</b></p></body></html>\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert!(m.text.contains("Hallo") && m.text.contains("daar") && !m.text.contains("<b>"), "{}", m.text);
    }

    #[test]
    fn injected_line_breaks_and_bidi_controls_are_removed() {
        assert_eq!(clean_text("Hoi\r\nBcc: x@y\u{202E}z"), "Hoi Bcc: x@yz");
    }

    #[test]
    fn the_content_hash_ignores_line_endings_and_trailing_blank_lines() {
        let sent = "From: a@b.nl\r\nSubject: x\r\nDate: Sat, 28 Nov 2026 12:00:00 +0100\r\n\r\nHallo,\r\n\r\nGroet\r\n";
        let kept = format!("Received: by mx\r\n{sent}\r\n");
        let lf = sent.replace("\r\n", "\n");
        let hash = |raw: &str| content_hash(&parse(raw.as_bytes()).unwrap());
        assert_eq!(hash(sent), hash(&kept));
        assert_eq!(hash(sent), hash(&lf));
        assert_ne!(hash(sent), hash(&sent.replace("Groet", "Groeten")));
    }

    #[test]
    fn dedupe_key_prefers_message_id() {
        assert_eq!(dedupe_key(Some("a@b"), b"x"), "mid:a@b");
        assert!(dedupe_key(None, b"x").starts_with("sha256:"));
        assert_ne!(dedupe_key(None, b"x"), dedupe_key(None, b"y"));
    }

    #[test]
    fn bare_cr_line_endings_are_understood() {
        let raw = "From: a@b.nl\rSubject: Oude Mac\r\rHallo\r";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.subject, "Oude Mac");
        assert_eq!(m.from.unwrap().as_str(), "a@b.nl");
    }

    #[test]
    fn dsn_report_type_is_read() {
        let raw = "From: MAILER-DAEMON@x\nSubject: Undelivered\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nfailed\n--b--\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.content_type, "multipart/report");
        assert_eq!(m.report_type.as_deref(), Some("delivery-status"));
    }
}
