//! Sender authentication as the receiving server saw it: its own
//! `Authentication-Results` header (RFC 8601). Pure; no I/O.
//!
//! Anyone can write an `Authentication-Results` header into a mail. Only the instance
//! written by our receiving server counts: the topmost one whose authserv-id is the
//! configured `trust.authserv_id` (a server adds its header above those it received;
//! instances further down, and those of any other authserv-id, are ignored).

use super::parse::ParsedMail;

/// What the receiving server said about DMARC for the From domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dmarc {
    Pass,
    /// The From domain's policy says this mail is not from it.
    Fail {
        domain: Option<String>,
    },
    /// None, neutral, temperror, permerror, or no DMARC result in the header.
    Other(String),
    /// Our server wrote no `Authentication-Results` header at all.
    NotChecked,
}

/// The DMARC result in our server's own `Authentication-Results` header.
pub fn dmarc(mail: &ParsedMail, authserv_id: &str) -> Dmarc {
    let ours = mail
        .headers
        .iter()
        .filter(|(n, _)| n == "authentication-results")
        .map(|(_, v)| v.as_str())
        .find(|v| serv_id(v).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id)));
    let Some(header) = ours else { return Dmarc::NotChecked };
    for resinfo in strip_comments(header).split(';').skip(1) {
        let mut words = resinfo.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else { continue };
        if !method.eq_ignore_ascii_case("dmarc") {
            continue;
        }
        let result = result.to_ascii_lowercase();
        return match result.as_str() {
            "pass" => Dmarc::Pass,
            "fail" => Dmarc::Fail {
                domain: words.find_map(|w| {
                    let (k, v) = w.split_once('=')?;
                    k.eq_ignore_ascii_case("header.from").then(|| v.trim_matches('"').to_ascii_lowercase())
                }),
            },
            _ => Dmarc::Other(result),
        };
    }
    Dmarc::Other("no dmarc result".into())
}

/// The authserv-id: the first token of the header value.
fn serv_id(value: &str) -> Option<&str> {
    value.split([';', ' ', '\t']).map(str::trim).find(|t| !t.is_empty())
}

/// The header without `(comments)` (RFC 5322 CFWS; not nested deeper than one level here).
fn strip_comments(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut depth = 0usize;
    for c in v.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::parse::parse;

    fn mail(headers: &str) -> ParsedMail {
        parse(format!("{headers}From: Ann <ann@sender.example>\r\nSubject: hi\r\n\r\nhoi\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn only_the_topmost_header_of_our_own_server_counts() {
        let m = mail(
            "Authentication-Results: mx.ours.example;\r\n dkim=none; spf=softfail smtp.mailfrom=sender.example;\r\n dmarc=fail (p=reject) header.from=sender.example\r\n\
             Authentication-Results: mx.ours.example; dmarc=pass header.from=sender.example\r\n",
        );
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::Fail { domain: Some("sender.example".into()) });
        assert_eq!(dmarc(&m, "MX.OURS.EXAMPLE"), Dmarc::Fail { domain: Some("sender.example".into()) });
    }

    #[test]
    fn a_header_of_any_other_server_is_ignored() {
        let m = mail("Authentication-Results: forged.example; dmarc=pass header.from=bank.example\r\n");
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::NotChecked);
        let m = mail("Authentication-Results: forged.example; dmarc=fail header.from=sender.example\r\n");
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::NotChecked, "a forged fail does not silence anyone either");
    }

    #[test]
    fn pass_none_and_comments_are_read() {
        let m = mail(
            "Authentication-Results: mx.ours.example (Postfix); dmarc=pass (p=none dis=none) header.from=a.example\r\n",
        );
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::Pass);
        let m = mail("Authentication-Results: mx.ours.example; dmarc=none header.from=a.example\r\n");
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::Other("none".into()));
        let m = mail("Authentication-Results: mx.ours.example; spf=pass smtp.mailfrom=a.example\r\n");
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::Other("no dmarc result".into()));
        let m = mail("Authentication-Results: mx.ours.example; none\r\n");
        assert_eq!(dmarc(&m, "mx.ours.example"), Dmarc::Other("no dmarc result".into()));
    }
}
