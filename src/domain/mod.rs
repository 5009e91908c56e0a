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

use serde::{Deserialize, Serialize};

/// A syntactically valid e-mail address in one canonical form, so that two spellings of
/// one address compare equal: the local part lower-cased and in Unicode NFC, the domain
/// processed by IDNA (UTS #46: mapped, lower-cased, checked) and kept in its Unicode form
/// (`info@bücher.example`, also when it was written `info@xn--bcher-kva.example`).
///
/// What goes on the wire is [`EmailAddress::to_lettre`]: the domain as A-labels (`xn--`),
/// valid everywhere. A local part that is not ASCII (`jdöe@…`) can only be sent to a
/// server that offers SMTPUTF8 (RFC 6531); see [`EmailAddress::needs_smtputf8`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

/// The longest local part (RFC 5321 4.5.3.1.1), in bytes.
const MAX_LOCAL: usize = 64;
/// The longest domain name (RFC 1035, without the root dot) and label, in bytes of
/// their ASCII (A-label) form.
const MAX_DOMAIN: usize = 253;
const MAX_LABEL: usize = 63;

impl EmailAddress {
    /// Parses an address (no display name) and brings it into the canonical form.
    /// Normalises first, then validates: lower-casing can lengthen text (`İ` becomes two
    /// characters), so what is checked is what is kept.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_start_matches('<').trim_end_matches('>').trim();
        let bad = |why: &str| format!("expected an e-mail address, found {s:?}: {why}");
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("no @"))?;
        let local = normalise_local(local);
        if local.len() > MAX_LOCAL {
            return Err(bad(&format!("the part before the @ is {} bytes long (at most {MAX_LOCAL})", local.len())));
        }
        let (ascii, unicode) = normalise_domain(domain).map_err(|why| bad(&why))?;
        // The syntax of both parts, as lettre (and the SMTP server) will check it.
        lettre::Address::new(&local, &ascii).map_err(|e| bad(&e.to_string()))?;
        Ok(Self(format!("{local}@{unicode}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or(&self.0, |(l, _)| l)
    }

    /// The part after the `@` (Unicode form): the only part of an address we write to logs.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The domain as it goes on the wire: ASCII, internationalised labels as A-labels.
    pub fn ascii_domain(&self) -> String {
        normalise_domain(self.domain()).map_or_else(|_| self.domain().to_string(), |(ascii, _)| ascii)
    }

    /// Whether sending to (or from) this address needs SMTPUTF8 (RFC 6531): its local part
    /// is not ASCII. An internationalised domain alone does not: it goes as A-labels.
    pub fn needs_smtputf8(&self) -> bool {
        !self.local_part().is_ascii()
    }

    /// The address without a `+tag`, so `ann+x@a.nl` and `ann@a.nl` count as one sender.
    pub fn normalized(&self) -> String {
        let local = self.local_part();
        let base = local.split_once('+').map_or(local, |(b, _)| b);
        format!("{base}@{}", self.domain())
    }

    /// The address for lettre (envelope and headers): the domain as A-labels.
    pub fn to_lettre(&self) -> lettre::Address {
        lettre::Address::new(self.local_part(), self.ascii_domain()).expect("validated at construction")
    }
}

/// The local part lower-cased, then in Unicode NFC (RFC 6532 3.1), so `jdöe` typed with a
/// combining diaeresis is the same address as with a precomposed `ö`.
fn normalise_local(local: &str) -> String {
    let lower = local.to_lowercase();
    if lower.is_ascii() {
        return lower;
    }
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(&lower).into_owned()
}

/// A domain by IDNA (UTS #46 processing, host-name rules, DNS lengths): `(ascii, unicode)`,
/// e.g. `("xn--bcher-kva.example", "bücher.example")`. A domain literal (`[192.0.2.1]`) is
/// left as it is.
fn normalise_domain(domain: &str) -> Result<(String, String), String> {
    use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
    if domain.starts_with('[') {
        return Ok((domain.to_string(), domain.to_string()));
    }
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(domain.as_bytes(), AsciiDenyList::STD3, Hyphens::CheckFirstLast, DnsLength::Ignore)
        .map_err(|_| "the domain is not a valid (internationalised) domain name".to_string())?
        .into_owned();
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err("the domain has an empty label".into());
    }
    if let Some(long) = ascii.split('.').find(|l| l.len() > MAX_LABEL) {
        return Err(format!("a label of the domain is {} characters long as ASCII (at most {MAX_LABEL})", long.len()));
    }
    if ascii.len() > MAX_DOMAIN {
        return Err(format!("the domain is {} characters long as ASCII (at most {MAX_DOMAIN})", ascii.len()));
    }
    let (unicode, checked) = uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::CheckFirstLast);
    checked.map_err(|_| "the domain is not a valid (internationalised) domain name".to_string())?;
    let unicode = unicode.into_owned();
    Ok((ascii, unicode))
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

/// A file attached to a filed mail, as the desk lists it: the file itself stays in the
/// mailbox, only its name, size and type are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The name the sender gave it (one clean line); empty when it has none.
    pub name: String,
    /// Its size in bytes, decoded.
    pub size: u64,
    /// `type/subtype`, lower case.
    pub content_type: String,
}

/// A size as people read it in a file list: `"800 bytes"`, `"12 kB"`, `"1,4 MB"` (a
/// decimal comma in Dutch, a point in English; 1 kB = 1,000 bytes as file managers show).
pub fn human_size(bytes: u64, language: Language) -> String {
    if bytes < 1_000 {
        return format!("{bytes} bytes");
    }
    // The unit after rounding: 999,999 bytes are "1 MB", not "1000 kB".
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    let shown = |v: f64| if v < 9.95 { (v * 10.0).round() / 10.0 } else { v.round() };
    let (mut value, mut unit) = (bytes as f64 / 1e3, 0);
    while shown(value) >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1e3;
        unit += 1;
    }
    let v = shown(value);
    let text = if v < 10.0 && v.fract() != 0.0 { format!("{v:.1}") } else { format!("{v:.0}") };
    let unit = UNITS[unit];
    match language {
        Language::Dutch => format!("{} {unit}", text.replace('.', ",")),
        Language::English => format!("{text} {unit}"),
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
    #[test]
    fn sizes_read_as_a_file_manager_shows_them() {
        assert_eq!(human_size(0, Language::Dutch), "0 bytes");
        assert_eq!(human_size(999, Language::Dutch), "999 bytes");
        assert_eq!(human_size(1_000, Language::Dutch), "1 kB");
        assert_eq!(human_size(1_449, Language::Dutch), "1,4 kB");
        assert_eq!(human_size(1_449, Language::English), "1.4 kB");
        assert_eq!(human_size(123_456, Language::Dutch), "123 kB");
        assert_eq!(human_size(4_560_000, Language::Dutch), "4,6 MB");
        assert_eq!(human_size(25_000_000, Language::English), "25 MB");
        assert_eq!(human_size(9_960, Language::English), "10 kB");
        assert_eq!(human_size(999_999, Language::Dutch), "1 MB");
        assert_eq!(human_size(999_499, Language::Dutch), "999 kB");
        assert_eq!(human_size(1_000_000_000, Language::Dutch), "1 GB");
    }

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
        let e = EmailAddress::parse(&grows).unwrap_err();
        assert!(e.contains("96 bytes long (at most 64)"), "{e}");
        // 21 x U+0130 is 42 bytes, 63 lower-cased: still fits, and stays usable.
        let fits = EmailAddress::parse(&format!("{}@example.org", "\u{130}".repeat(21))).unwrap();
        assert_eq!(fits.local_part().len(), 63);
        assert!(fits.needs_smtputf8());
        let _ = fits.to_lettre();
    }

    #[test]
    fn an_internationalised_domain_is_kept_in_unicode_and_sent_as_a_labels() {
        let a = EmailAddress::parse("Info@Bücher.Example").unwrap();
        assert_eq!(a.as_str(), "info@bücher.example");
        assert_eq!(a.ascii_domain(), "xn--bcher-kva.example");
        assert_eq!(a.to_lettre().to_string(), "info@xn--bcher-kva.example");
        assert!(!a.needs_smtputf8(), "an ASCII local part at an IDN domain goes everywhere");
        // The A-label spelling and mixed case are the same address.
        assert_eq!(EmailAddress::parse("INFO@XN--BCHER-KVA.example").unwrap(), a);
        assert_eq!(EmailAddress::parse("info@BÜCHER.example").unwrap(), a);
        // UTS #46 mapping: a full-width dot and letters are folded too.
        assert_eq!(EmailAddress::parse("info@bücher\u{FF0E}example").unwrap(), a);
        let m = EmailAddress::parse("JDöe@Mächine.example").unwrap();
        assert_eq!(m.as_str(), "jdöe@mächine.example");
        assert_eq!(m.to_lettre().to_string(), "jdöe@xn--mchine-bua.example");
        assert!(m.needs_smtputf8());
        assert_eq!(m.domain(), "mächine.example");
    }

    #[test]
    fn a_local_part_is_compared_in_nfc() {
        // "o" + U+0308 COMBINING DIAERESIS is the same letter as U+00F6.
        let decomposed = EmailAddress::parse("jdo\u{308}e@example.org").unwrap();
        assert_eq!(decomposed.as_str(), "jd\u{f6}e@example.org");
        assert_eq!(decomposed, EmailAddress::parse("JD\u{d6}E@example.org").unwrap());
    }

    #[test]
    fn an_invalid_domain_is_refused_with_a_clear_error() {
        // Invalid Punycode in an A-label.
        let e = EmailAddress::parse("ann@xn--zz-.example").unwrap_err();
        assert!(e.contains("not a valid (internationalised) domain name"), "{e}");
        // Characters not allowed in host names, and a disallowed code point.
        assert!(EmailAddress::parse("ann@exa_mple.org").unwrap_err().contains("domain name"));
        assert!(EmailAddress::parse("ann@exa\u{2488}mple.org").is_err());
        assert!(EmailAddress::parse("ann@-example.org").is_err());
        assert!(EmailAddress::parse("ann@example..org").unwrap_err().contains("empty label"));
        assert!(EmailAddress::parse("ann@").is_err());
        // A label of 63 characters is fine, 64 is not; the limits count the A-label form.
        let ok = format!("ann@{}.example", "a".repeat(63));
        assert!(EmailAddress::parse(&ok).is_ok());
        let long = format!("ann@{}.example", "a".repeat(64));
        let e = EmailAddress::parse(&long).unwrap_err();
        assert!(e.contains("64 characters long as ASCII (at most 63)"), "{e}");
        // 60 x "ü" fit in 63 characters, but not as an A-label ("xn--" + Punycode).
        let u = format!("ann@{}.example", "ü".repeat(60));
        let e = EmailAddress::parse(&u).unwrap_err();
        assert!(e.contains("as ASCII (at most 63)"), "{e}");
        let whole = format!("ann@{}example", "abcdefghi.".repeat(25));
        assert!(EmailAddress::parse(&whole).unwrap_err().contains("at most 253"));
    }

    #[test]
    fn categories_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
    }
}
