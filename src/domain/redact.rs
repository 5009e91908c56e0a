//! Keeping addresses and names out of texts that are logged, stored as errors or shown by
//! `outreach status`. SMTP servers quote the recipient in their answers (`550 5.1.1
//! <ann@example.nl>: Recipient address rejected`), IMAP errors name the login: such text
//! keeps only the domain (`…@example.nl`), which is all a person needs to see what failed.

/// Characters of a local part as mail programs write them (RFC 5322 `atext` and dots),
/// plus any letter or digit for internationalised addresses (RFC 6531).
fn is_local(c: char) -> bool {
    c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
}

fn is_domain(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '.'
}

/// Every e-mail address in `text` with its local part replaced by `…`:
/// `550 <ann@example.nl>: rejected` becomes `550 <…@example.nl>: rejected`. What is not
/// an address (a lone `@`, `@home`, `a@`) stays as it is, and a redacted text stays the
/// same when redacted again. A local part never starts right after a backslash, so a
/// JSON log line (`"\nann@x.nl"`) keeps its escapes.
pub fn redact_addresses(text: &str) -> String {
    if !text.contains('@') {
        return text.to_string();
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // byte offset in `text` up to which `out` is written
    for (i, &(at, c)) in chars.iter().enumerate() {
        if c != '@' || at < copied {
            continue;
        }
        // The local part: back from the `@` over local characters, not across an escape.
        let mut start = i;
        while start > 0 {
            let (_, p) = chars[start - 1];
            let escaped = start >= 2 && chars[start - 2].1 == '\\';
            if !is_local(p) || escaped || chars[start - 1].0 < copied {
                break;
            }
            start -= 1;
        }
        // Leading dots are punctuation of the text, not of the address ("see:.ann@x").
        while start < i && chars[start].1 == '.' {
            start += 1;
        }
        // The domain: forward over domain characters; it needs a letter or digit.
        let mut end = i + 1;
        while end < chars.len() && is_domain(chars[end].1) {
            end += 1;
        }
        // A sentence's full stop after the domain is not part of it.
        while end > i + 1 && chars[end - 1].1 == '.' {
            end -= 1;
        }
        let has_domain = chars[i + 1..end].iter().any(|(_, c)| c.is_alphanumeric());
        if start == i || !has_domain {
            continue;
        }
        let local_start = chars[start].0;
        out.push_str(&text[copied..local_start]);
        out.push('…');
        copied = at;
    }
    out.push_str(&text[copied..]);
    out
}

/// `text` with every occurrence of each needle (ASCII letters compared without case, as
/// SQLite's `lower()` does) replaced by `with`. Empty needles are ignored.
pub fn replace_ignoring_case(text: &str, needles: &[&str], with: &str) -> String {
    let mut out = text.to_string();
    for needle in needles.iter().filter(|n| !n.is_empty()) {
        let mut result = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(pos) = find_ignoring_case(rest, needle) {
            result.push_str(&rest[..pos]);
            result.push_str(with);
            rest = &rest[pos + needle.len()..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

/// The byte offset of the first occurrence of `needle` in `hay`, ASCII case ignored.
fn find_ignoring_case(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len())
        .filter(|&i| hay.is_char_boundary(i) && hay.is_char_boundary(i + n.len()))
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// Whether `hay` contains `needle`, ASCII case ignored.
pub fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    find_ignoring_case(hay, needle).is_some()
}

/// Every bearer token in `text` replaced by `[token]`: the word after `Bearer ` and any
/// JSON Web Token (`eyJ...` in three base64url parts). Defence in depth for the log: no
/// code of ours writes a token, and this catches a library that would.
pub fn redact_tokens(text: &str) -> String {
    if !text.contains("eyJ") && !text.contains("earer") {
        return text.to_string();
    }
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || "-_=+/.~".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let bearer = find_ignoring_ascii_case(rest, "bearer ").map(|i| (i, i + "bearer ".len()));
        let jwt = rest.find("eyJ").map(|i| (i, i));
        let Some((at, from)) = [bearer, jwt].into_iter().flatten().min_by_key(|(at, _)| *at) else {
            out.push_str(rest);
            break;
        };
        let len: usize = rest[from..].chars().take_while(|c| is_b64(*c)).map(char::len_utf8).sum();
        let word = &rest[from..from + len];
        // A JWT has two dots; after "Bearer" any word of 16 characters or more counts.
        let token = if from == at { word.matches('.').count() >= 2 } else { len >= 16 };
        out.push_str(&rest[..from]);
        if token {
            out.push_str("[token]");
            rest = &rest[from + len..];
        } else {
            let step = rest[from..].chars().next().map_or(0, char::len_utf8).max(usize::from(from == at));
            out.push_str(&rest[from..from + step]);
            rest = &rest[from + step..];
        }
    }
    out
}

fn find_ignoring_ascii_case(hay: &str, needle: &str) -> Option<usize> {
    hay.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_answers_keep_only_the_domain() {
        assert_eq!(
            redact_addresses("SMTP refused permanently: 550 5.1.1 <ann@example.nl>: Recipient address rejected"),
            "SMTP refused permanently: 550 5.1.1 <…@example.nl>: Recipient address rejected"
        );
        assert_eq!(
            redact_addresses("IMAP login as contact@example.org failed: NO [AUTHENTICATIONFAILED]"),
            "IMAP login as …@example.org failed: NO [AUTHENTICATIONFAILED]"
        );
        assert_eq!(
            redact_addresses("to Ann.Smit+news@Sub.Example.NL, bob_o'neil@x-y.be and \"zoë@exämple.de\"."),
            "to …@Sub.Example.NL, …@x-y.be and \"…@exämple.de\"."
        );
        assert_eq!(redact_addresses("mail ann@example.nl."), "mail …@example.nl.");
    }

    #[test]
    fn text_without_addresses_is_unchanged_and_redaction_is_idempotent() {
        for t in [
            "",
            "no address here",
            "a lone @ sign",
            "@home",
            "trailing a@",
            "a@.",
            "sent just before a crash (not confirmed)",
            "…@example.nl",
        ] {
            assert_eq!(redact_addresses(t), t, "{t:?}");
        }
        let once = redact_addresses("451 4.3.0 <eve@tempfail.test>: temporary failure; also eve@tempfail.test");
        assert_eq!(once, "451 4.3.0 <…@tempfail.test>: temporary failure; also …@tempfail.test");
        assert_eq!(redact_addresses(&once), once);
    }

    #[test]
    fn json_escapes_survive() {
        let line = r#"{"error":"a\nann@example.nl and \"bob@b.be\""}"#;
        let red = redact_addresses(line);
        assert_eq!(red, r#"{"error":"a\n…@example.nl and \"…@b.be\""}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&red).is_ok(), "{red}");
    }

    #[test]
    fn needles_are_replaced_without_regard_to_ascii_case() {
        assert_eq!(
            replace_ignoring_case(
                "Beste Wilhelmina ZONNEBLOEM, mail wz@x.nl",
                &["wilhelmina zonnebloem", "WZ@x.nl"],
                "[erased]"
            ),
            "Beste [erased], mail [erased]"
        );
        assert_eq!(replace_ignoring_case("Zoë Bakker", &["zoë bakker", ""], "-"), "-");
        assert!(contains_ignoring_case("Final-Recipient: rfc822; Ann@Example.nl", "ann@example.nl"));
        assert!(!contains_ignoring_case("ann", "anna"));
    }

    #[test]
    fn bearer_tokens_and_jwts_are_cut() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        assert_eq!(redact_tokens(&format!("header: {jwt} end")), "header: [token] end");
        assert_eq!(redact_tokens("Authorization: Bearer abcdefghijklmnop1234"), "Authorization: Bearer [token]");
        assert_eq!(redact_tokens(&format!("user=a\x01auth=Bearer {jwt}\x01")), "user=a\x01auth=Bearer [token]\x01");
        for t in ["no token", "a bearer of news", "eyJ is not a token", "the Bearer short", "ééeyJ"] {
            assert_eq!(redact_tokens(t), t, "{t:?}");
        }
    }
}
