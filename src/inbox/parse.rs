//! Turns raw RFC 5322 bytes into the few fields the pipeline needs (mail-parser).

use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

use crate::domain::{Attachment, EmailAddress, clean_text};

/// Text kept per message: enough for a person to read, bounded for the store.
const MAX_BODY_CHARS: usize = 64 * 1024;
/// Recipients kept per header: an answer keeps them, a mail to hundreds is no question.
pub const MAX_RECIPIENTS: usize = 50;
/// A mail's own HTML kept per message (the desk shows it sanitized); more is cut.
pub const MAX_HTML_BYTES: usize = 256 * 1024;
/// Attachments listed per message (names and sizes; the files stay in the mailbox).
pub const MAX_ATTACHMENTS: usize = 50;
/// The longest attachment name kept, in characters.
const MAX_ATTACHMENT_NAME: usize = 200;
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
    /// The valid addresses of To and Cc (at most [`MAX_RECIPIENTS`] each).
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub subject: String,
    pub text: String,
    /// The mail's own HTML body, as it came (at most [`MAX_HTML_BYTES`]); `None` when the
    /// sender wrote only text. Never shown unsanitized.
    pub html: Option<String>,
    /// Its attachments (at most [`MAX_ATTACHMENTS`]).
    pub attachments: Vec<Attachment>,
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
    let addresses = |a: Option<&mail_parser::Address<'_>>| -> Vec<EmailAddress> {
        a.map(|a| {
            a.iter()
                .filter_map(|a| a.address.as_deref())
                .filter_map(|a| EmailAddress::parse(a).ok())
                .take(MAX_RECIPIENTS)
                .collect()
        })
        .unwrap_or_default()
    };
    let (to, cc) = (addresses(msg.to()), addresses(msg.cc()));
    let headers = msg.headers_raw().map(|(n, v)| (n.to_ascii_lowercase(), unfold(v))).collect();
    let (content_type, report_type) = match msg.root_part().headers().iter().find_map(|h| h.value().as_content_type()) {
        Some(ct) => (
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase(),
            ct.attribute("report-type").map(|s| s.to_ascii_lowercase()),
        ),
        None => ("text/plain".into(), None),
    };
    let mut text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    truncate_at(&mut text, MAX_BODY_CHARS);
    // mail-parser turns a text body into HTML when asked for HTML: only a real text/html
    // part counts.
    let html = msg.html_bodies().any(|p| p.is_text_html()).then(|| {
        let mut html = (0..msg.html_body_count()).filter_map(|i| msg.body_html(i)).collect::<Vec<_>>().join("\n");
        truncate_at(&mut html, MAX_HTML_BYTES);
        html.replace('\0', "")
    });
    let attachments = msg.attachments().take(MAX_ATTACHMENTS).map(attachment).collect();
    Some(ParsedMail {
        message_id: msg.message_id().map(clean_text).filter(|m| !m.is_empty()),
        in_reply_to: id_list(msg.in_reply_to()),
        references: id_list(msg.references()),
        from,
        from_name,
        from_raw,
        reply_to,
        to,
        cc,
        subject: msg.subject().map(clean_text).unwrap_or_default(),
        text: text.replace('\0', ""),
        html,
        attachments,
        date: msg.date().and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        headers,
        content_type,
        report_type,
        parts: msg.parts.len(),
    })
}

/// Cuts a text to at most `max` bytes, at a character boundary.
fn truncate_at(text: &mut String, max: usize) {
    if text.len() > max {
        let cut = (0..=max).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
    }
}

/// What the desk lists of an attachment. A forwarded mail without a file name is named
/// after its subject.
fn attachment(part: &mail_parser::MessagePart<'_>) -> Attachment {
    let content_type = match part.content_type() {
        Some(ct) => format!("{}/{}", mime_token(ct.ctype()), mime_token(ct.subtype().unwrap_or(""))),
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None => "application/octet-stream".into(),
    };
    let name = match part.attachment_name() {
        Some(n) => clean_text(n),
        None => part.message().and_then(|m| m.subject()).map(|s| format!("{}.eml", clean_text(s))).unwrap_or_default(),
    };
    Attachment { name: name.chars().take(MAX_ATTACHMENT_NAME).collect(), size: part.len() as u64, content_type }
}

/// A MIME type or subtype as a sender wrote it, kept to the characters RFC 6838 allows
/// (a header may hold anything, escape sequences too), lower case, at most 64 long.
fn mime_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(*c))
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase()
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
    fn a_text_only_mail_has_no_html_and_no_attachments() {
        let m = parse(b"From: a@b.nl\nSubject: x\n\nHallo\n").unwrap();
        assert_eq!(m.html, None);
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn html_and_attachments_are_kept_by_name_and_size() {
        let raw = "From: a@b.nl\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"m\"\n\n\
--m\nContent-Type: multipart/alternative; boundary=\"a\"\n\n\
--a\nContent-Type: text/plain; charset=utf-8\n\nHallo daar\n\
--a\nContent-Type: text/html; charset=utf-8\n\n<p>Hallo <b>daar</b></p><script>alert(1)</script>\n--a--\n\
--m\nContent-Type: application/pdf; name=\"=?UTF-8?Q?verslag_m=C3=A4rz.pdf?=\"\nContent-Disposition: attachment; filename*=UTF-8''verslag%20m%C3%A4rz.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n\
--m\nContent-Type: message/rfc822\n\nFrom: c@d.nl\nSubject: Eerder bericht\n\nOud\n\
--m--\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.text.trim(), "Hallo daar");
        let html = m.html.expect("the HTML part is kept");
        assert!(html.contains("<b>daar</b>"), "{html}");
        assert_eq!(m.attachments.len(), 2, "{:?}", m.attachments);
        assert_eq!(m.attachments[0].name, "verslag märz.pdf");
        assert_eq!(m.attachments[0].size, 9, "the decoded size");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(m.attachments[1].name, "Eerder bericht.eml");
        assert_eq!(m.attachments[1].content_type, "message/rfc822");
    }

    #[test]
    fn an_attachment_name_or_type_cannot_break_a_line_or_the_terminal() {
        let raw = "From: a@b.nl\nSubject: x\nContent-Type: multipart/mixed; boundary=\"m\"\n\n--m\nContent-Type: text/plain\n\nHoi\n--m\nContent-Type: application/x\x1b[31mred\x07; name=\"a=?UTF-8?Q?=0D=0Ab=E2=80=AE?=.txt\"\nContent-Disposition: attachment\n\nx\n--m--\n";
        let m = parse(raw.as_bytes()).unwrap();
        assert_eq!(m.attachments.len(), 1, "{:?}", m.attachments);
        assert!(!m.attachments[0].name.contains(['\r', '\n', '\u{202E}']), "{:?}", m.attachments[0].name);
        assert_eq!(m.attachments[0].content_type, "application/x31mred", "no escape sequence in the type either");
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
