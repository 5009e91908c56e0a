//! Builds outgoing messages with lettre's types: headers are encoded by lettre, so a name
//! or subject with CR/LF cannot add a header (MAIL-RULES 5).

use std::time::SystemTime;

use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use rand::Rng;

use crate::domain::EmailAddress;
use crate::domain::clean_text;

/// `Auto-Submitted` (RFC 3834).
#[derive(Debug, Clone)]
pub struct AutoSubmitted(pub &'static str);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        match s.trim() {
            "auto-replied" => Ok(Self("auto-replied")),
            "auto-generated" => Ok(Self("auto-generated")),
            _ => Ok(Self("no")),
        }
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.to_string())
    }
}

/// `X-Auto-Response-Suppress: All`: asks Exchange not to answer our mail.
#[derive(Debug, Clone)]
pub struct AutoResponseSuppress;

impl Header for AutoResponseSuppress {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Auto-Response-Suppress")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "All".to_string())
    }
}

/// Defines a header with a fixed name and a plain ASCII value (lettre encodes it).
macro_rules! text_header {
    ($(#[$doc:meta])* $ty:ident, $name:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $ty(pub String);

        impl Header for $ty {
            fn name() -> HeaderName {
                HeaderName::new_from_ascii_str($name)
            }
            fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
                Ok(Self(s.to_string()))
            }
            fn display(&self) -> HeaderValue {
                HeaderValue::new(Self::name(), self.0.clone())
            }
        }
    };
}

text_header!(
    /// RFC 2369: `<https://...>, <mailto:...>`.
    ListUnsubscribe,
    "List-Unsubscribe"
);
text_header!(
    /// RFC 8058: `List-Unsubscribe=One-Click`.
    ListUnsubscribePost,
    "List-Unsubscribe-Post"
);
text_header!(
    /// RFC 2919.
    ListId,
    "List-Id"
);
text_header!(
    /// `bulk` on newsletters.
    Precedence,
    "Precedence"
);

/// A new Message-ID (without angle brackets) in the domain of our From address.
pub fn new_message_id(from: &Mailbox) -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    format!("outreach.{}@{}", hex::encode(bytes), from.email.domain())
}

/// What an auto-reply answers.
pub struct ReplyTo<'a> {
    pub to: &'a EmailAddress,
    pub to_name: Option<&'a str>,
    pub original_subject: &'a str,
    pub original_message_id: Option<&'a str>,
    pub original_references: &'a [String],
    pub case_ref: &'a str,
}

/// The subject of an auto-reply: `Auto: ` + the original subject (RFC 3834 §3.1.5), with
/// our case reference so follow-ups find their conversation.
pub fn reply_subject(original: &str, case_ref: &str) -> String {
    let original = clean_text(original);
    let base = if original.is_empty() { "(geen onderwerp)".to_string() } else { original };
    if base.contains(case_ref) { format!("Auto: {base}") } else { format!("Auto: {base} {case_ref}") }
}

/// An RFC 3834 auto-reply, formatted and ready for the outbox.
pub fn auto_reply(
    from: &Mailbox,
    r: &ReplyTo<'_>,
    message_id: &str,
    body: String,
    date: SystemTime,
) -> anyhow::Result<Vec<u8>> {
    let to = Mailbox::new(r.to_name.map(clean_text).filter(|n| !n.is_empty()), r.to.to_lettre());
    let mut b = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(reply_subject(r.original_subject, r.case_ref))
        .message_id(Some(format!("<{message_id}>")))
        .date(date)
        .header(AutoSubmitted("auto-replied"))
        .header(AutoResponseSuppress)
        .header(ContentType::TEXT_PLAIN);
    if let Some(orig) = r.original_message_id {
        b = b.in_reply_to(format!("<{orig}>"));
        let mut refs: Vec<String> = r.original_references.iter().map(|x| format!("<{x}>")).collect();
        refs.push(format!("<{orig}>"));
        b = b.references(refs.join(" "));
    }
    Ok(b.body(body)?.formatted())
}

/// What the coordinator's answer replies to.
pub struct Answer<'a> {
    pub to: &'a EmailAddress,
    pub cc: &'a [EmailAddress],
    pub subject: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [String],
}

/// The coordinator's answer: a person's mail (no `Auto-Submitted`), threaded under the
/// message it answers, with every kept recipient in Cc.
pub fn answer(
    from: &Mailbox,
    a: &Answer<'_>,
    message_id: &str,
    body: String,
    date: SystemTime,
) -> anyhow::Result<Vec<u8>> {
    let mut b = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, a.to.to_lettre()))
        .subject(clean_text(a.subject))
        .message_id(Some(format!("<{message_id}>")))
        .date(date)
        .header(ContentType::TEXT_PLAIN);
    for c in a.cc {
        b = b.cc(Mailbox::new(None, c.to_lettre()));
    }
    if let Some(orig) = a.in_reply_to {
        b = b.in_reply_to(format!("<{orig}>"));
    }
    if !a.references.is_empty() {
        b = b.references(a.references.iter().map(|x| format!("<{x}>")).collect::<Vec<_>>().join(" "));
    }
    Ok(b.body(body)?.formatted())
}

/// A notice for the coordinator (auto-generated, never answered by us either).
pub fn notice(
    from: &Mailbox,
    to: &EmailAddress,
    subject: &str,
    message_id: &str,
    body: String,
    date: SystemTime,
) -> anyhow::Result<Vec<u8>> {
    let msg = Message::builder()
        .from(from.clone())
        .to(Mailbox::new(None, to.to_lettre()))
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date(date)
        .header(AutoSubmitted("auto-generated"))
        .header(ContentType::TEXT_PLAIN)
        .body(body)?;
    Ok(msg.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::parse::parse;

    #[test]
    fn auto_reply_carries_rfc3834_headers() {
        let from: Mailbox = "Netwerk Met Andere Ogen <contact@example.org>".parse().unwrap();
        let to = EmailAddress::parse("ann@example.nl").unwrap();
        let refs = vec!["a@x".to_string()];
        let r = ReplyTo {
            to: &to,
            to_name: Some("Ann"),
            original_subject: "Aanmelding",
            original_message_id: Some("b@x"),
            original_references: &refs,
            case_ref: "[MAO-3]",
        };
        let raw =
            auto_reply(&from, &r, "outreach.1@example.org", "Dank je wel".into(), SystemTime::UNIX_EPOCH).unwrap();
        let m = parse(&raw).unwrap();
        assert_eq!(m.header("auto-submitted"), Some("auto-replied"));
        assert_eq!(m.in_reply_to, vec!["b@x"]);
        assert_eq!(m.references, vec!["a@x", "b@x"]);
        assert_eq!(m.subject, "Auto: Aanmelding [MAO-3]");
        assert_eq!(m.message_id.as_deref(), Some("outreach.1@example.org"));
    }

    #[test]
    fn header_injection_in_name_and_subject_stays_inside_its_header() {
        let from: Mailbox = "Netwerk <contact@example.org>".parse().unwrap();
        let to = EmailAddress::parse("ann@example.nl").unwrap();
        let r = ReplyTo {
            to: &to,
            to_name: Some("Ann\r\nBcc: victim@evil.example"),
            original_subject: "Hoi\r\nBcc: victim@evil.example\r\nX-Injected: 1",
            original_message_id: Some("b@x"),
            original_references: &[],
            case_ref: "[MAO-3]",
        };
        let raw = auto_reply(&from, &r, "outreach.2@example.org", "x".into(), SystemTime::UNIX_EPOCH).unwrap();
        let text = String::from_utf8(raw).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        for line in head.lines() {
            assert!(
                !line.starts_with("Bcc:") && !line.starts_with("X-Injected"),
                "injected header line: {line}\n{head}"
            );
        }
    }
}
