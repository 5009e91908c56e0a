//! The bottom layer: pure types shared by every part. Addresses, categories, languages,
//! row ids ([`ids`]), the states of every state machine ([`state`]), the clock and the
//! text form of a time ([`time`]), keeping addresses out of logged and stored texts
//! ([`redact`]). No I/O, no other module of the crate.

pub mod ids;
pub mod redact;
pub mod state;
pub mod time;

pub use redact::{redact_addresses, redact_tokens};

use std::fmt;

use serde::Serialize;

/// A syntactically valid e-mail address, lower-cased for comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses an address (no display name). Lower-cases it: we compare addresses, and
    /// mail systems treat the local part case-insensitively in practice.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_start_matches('<').trim_end_matches('>').trim();
        // Normalise, then validate: lower-casing can lengthen text (`İ` becomes two
        // characters), so what is checked must be what is kept.
        let lower = s.to_lowercase();
        let addr: lettre::Address =
            lower.parse().map_err(|e| format!("expected an e-mail address, found {s:?}: {e}"))?;
        Ok(Self(addr.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(l, _)| l)
    }

    /// The part after the `@`: the only part of an address we write to logs.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The address without a `+tag`, so `ann+x@a.nl` and `ann@a.nl` count as one sender.
    pub fn normalized(&self) -> String {
        let local = self.local_part();
        let base = local.split_once('+').map_or(local, |(b, _)| b);
        format!("{base}@{}", self.domain())
    }

    pub fn to_lettre(&self) -> lettre::Address {
        self.0.parse().expect("validated at construction")
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a filed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Someone wants to join the ambassador network.
    Join,
    /// A question for the coordinator (also the choice when unsure).
    Question,
    /// Someone wants to leave (newsletter or network).
    Unsubscribe,
    /// An answer in a conversation we already know.
    Followup,
    /// Out-of-office, list mail, notifications: never answered.
    Automatic,
    /// A delivery status notification (DSN): never answered.
    Bounce,
    /// Could not be parsed or classified: a person must look.
    Review,
    /// A story sent in by a known ambassador ("Verhaal: ..." / "Story: ...").
    Story,
}

impl Category {
    pub const ALL: [Category; 8] = [
        Category::Join,
        Category::Question,
        Category::Unsubscribe,
        Category::Followup,
        Category::Automatic,
        Category::Bounce,
        Category::Review,
        Category::Story,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Join => "join",
            Category::Question => "question",
            Category::Unsubscribe => "unsubscribe",
            Category::Followup => "followup",
            Category::Automatic => "automatic",
            Category::Bounce => "bounce",
            Category::Review => "review",
            Category::Story => "story",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether a person is expected to act on it.
    pub fn needs_person(self) -> bool {
        !matches!(self, Category::Automatic | Category::Bounce)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language we answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Language {
    #[serde(rename = "nl")]
    Dutch,
    #[serde(rename = "en")]
    English,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Dutch => "nl",
            Language::English => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nl" => Some(Language::Dutch),
            "en" => Some(Language::English),
            _ => None,
        }
    }
}

/// The short case reference our replies put in the subject, e.g. `[MAO-12]`.
pub fn case_reference(conversation: ids::ConversationId) -> String {
    format!("[MAO-{conversation}]")
}

/// One line of text as people read it: control characters and bidi overrides removed,
/// white space folded. For names and subjects that we repeat or print.
pub fn clean_text(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}'))
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A stranger's words (a display name, a subject) as we may repeat them in a mail of
/// ours: one clean line, no links (a URL, `www.` or anything that looks like a domain
/// name is left out, so our mail cannot carry an attacker's link to a third party), and
/// at most `max` characters.
pub fn repeatable(s: &str, max: usize) -> String {
    let cleaned = clean_text(s);
    let words: Vec<&str> = cleaned.split(' ').filter(|w| !looks_like_link(w)).collect();
    let line = words.join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let cut: String = line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// A word that a mail client would show as a link.
fn looks_like_link(w: &str) -> bool {
    let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '/' && c != ':');
    let l = w.to_ascii_lowercase();
    if l.contains("://") || l.starts_with("www.") || l.starts_with("mailto:") {
        return true;
    }
    // name.tld or name.tld/path: letters after the last dot, a label before it.
    let host = l.split('/').next().unwrap_or("");
    match host.rsplit_once('.') {
        Some((label, tld)) => {
            !label.is_empty()
                && tld.len() >= 2
                && tld.chars().all(|c| c.is_ascii_alphabetic())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                && label.chars().any(|c| c.is_ascii_alphanumeric())
                && label.len() >= 2
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strangers_words_are_repeated_short_and_without_links() {
        assert_eq!(repeatable("Ann de Vries", 60), "Ann de Vries");
        assert_eq!(repeatable("Win! Visit https://evil.example/x now", 60), "Win! Visit now");
        assert_eq!(repeatable("Click www.evil.example or evil.example/pay", 60), "Click or");
        assert_eq!(repeatable("Meet at St. Jan, 10.30", 60), "Meet at St. Jan, 10.30");
        let long = "a".repeat(200);
        let short = repeatable(&long, 100);
        assert_eq!(short.chars().count(), 100);
        assert!(short.ends_with('…'));
        assert_eq!(repeatable("Bcc:\r\nx", 60), "Bcc: x");
    }

    #[test]
    fn addresses_are_lowercased_and_validated() {
        let a = EmailAddress::parse(" <Ann.Smit+news@Example.ORG> ").unwrap();
        assert_eq!(a.as_str(), "ann.smit+news@example.org");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(a.normalized(), "ann.smit@example.org");
        assert!(EmailAddress::parse("no at sign").is_err());
        assert!(EmailAddress::parse("a@b\r\nBcc: x@y").is_err());
        // 32 x U+0130 is 64 bytes, and 96 once lower-cased: over the local part's limit,
        // refused at parse time instead of failing later in `to_lettre`.
        let grows = format!("{}@example.org", "\u{130}".repeat(32));
        if let Ok(a) = EmailAddress::parse(&grows) {
            let _ = a.to_lettre();
        }
    }

    #[test]
    fn categories_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
    }
}
