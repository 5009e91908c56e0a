//! Bounces of newsletters (RFC 3464 DSNs): which delivery a DSN is about, and what it
//! means for the subscriber (MAIL-RULES 2).
//!
//! Matched by the envelope (VERP) tag first (`contact+b-<delivery>-<mac>@...`, checked
//! with the secret), then by the Message-ID of our message quoted in the DSN, then by
//! `Final-Recipient`. `Action: failed` with `5.x.x` is hard: the subscriber is `bounced`
//! at once. `4.x.x` is soft: counted once per issue; `[newsletter] soft_bounce_limit`
//! issues in a row make the subscriber `bounced` (an issue that got through starts the
//! count again). `Action: delayed` is only a warning.

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use super::tokens::Signer;
use crate::store::news;

/// What a DSN says about one of our deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub delivery_id: i64,
    pub issue_id: i64,
    pub subscriber_id: i64,
    /// `5.1.1`, `4.2.2`, or empty when the DSN gives none.
    pub status: String,
    pub action: String,
    pub matched_by: &'static str,
}

impl Bounce {
    pub fn is_hard(&self) -> bool {
        self.action != "delayed" && self.status.starts_with('5')
    }
    pub fn is_warning(&self) -> bool {
        self.action == "delayed"
    }
}

/// The value of the first `Name: value` line in the text (case-insensitive name).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Finds the delivery a DSN is about; `None` when it is not about a newsletter of ours.
pub fn find(c: &Connection, signer: &Signer, raw: &[u8]) -> anyhow::Result<Option<Bounce>> {
    let head = &raw[..raw.len().min(256 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut found: Option<((i64, i64, i64), &'static str)> = None;
    // 1. The VERP tag in any recipient header or in the report.
    for (i, _) in text.match_indices("+b-") {
        let tag: String =
            text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
        if let Some(id) = signer.check_bounce_tag(&tag.to_ascii_lowercase())
            && let Some(r) = news::delivery_ref(c, Some(id), None)?
        {
            found = Some((r, "envelope tag"));
            break;
        }
    }
    // 2. The Message-ID of our message, quoted in the report.
    if found.is_none() {
        for (i, _) in text.match_indices("<outreach.nl.") {
            if let Some(end) = text[i..].find('>') {
                let mid = &text[i + 1..i + end];
                if let Some(r) = news::delivery_ref(c, None, Some(mid))? {
                    found = Some((r, "message-id"));
                    break;
                }
            }
        }
    }
    // 3. The failed recipient's address.
    if found.is_none()
        && let Some(rcpt) = field(&text, "Final-Recipient")
    {
        let addr = rcpt.rsplit(';').next().unwrap_or(rcpt).trim().trim_matches(['<', '>']).to_lowercase();
        if let Some(r) = news::last_delivery_to(c, &addr)? {
            found = Some((r, "final-recipient"));
        }
    }
    let Some(((delivery_id, issue_id, subscriber_id), matched_by)) = found else { return Ok(None) };
    let action = field(&text, "Action").unwrap_or("failed").to_ascii_lowercase();
    let status = field(&text, "Status")
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .filter(|s| s.len() >= 5 && s.as_bytes()[1] == b'.')
        .or_else(|| {
            // No Status field: a 5xx / 4xx in the diagnostic code.
            let d = field(&text, "Diagnostic-Code")?;
            d.split([';', ' ']).find(|w| w.len() == 3 && w.starts_with(['4', '5'])).map(|w| format!("{}.0.0", &w[..1]))
        })
        .unwrap_or_default();
    Ok(Some(Bounce { delivery_id, issue_id, subscriber_id, status, action, matched_by }))
}

/// Records a bounce; returns a line for the filed message's reason.
pub fn apply(c: &Connection, b: &Bounce, soft_limit: u32, now: DateTime<Utc>) -> anyhow::Result<String> {
    if b.is_warning() {
        return Ok(format!("delay warning for newsletter delivery {} (matched by {})", b.delivery_id, b.matched_by));
    }
    let detail = format!("{} {}", b.action, b.status);
    let first = news::record_bounce(c, b.delivery_id, &b.status, detail.trim(), now)?;
    if b.is_hard() {
        news::mark_bounced(c, b.subscriber_id, &format!("hard bounce {} on issue {}", b.status, b.issue_id), now)?;
        return Ok(format!(
            "hard bounce {} of newsletter delivery {} (matched by {}): subscriber marked bounced",
            b.status, b.delivery_id, b.matched_by
        ));
    }
    if !first {
        return Ok(format!("another soft bounce of newsletter delivery {}", b.delivery_id));
    }
    let count = news::add_soft_bounce(c, b.subscriber_id, b.issue_id)?;
    if count >= i64::from(soft_limit) {
        news::mark_bounced(c, b.subscriber_id, &format!("{count} issues in a row soft-bounced"), now)?;
        return Ok(format!("soft bounce {} ({count} in a row): subscriber marked bounced", b.status));
    }
    Ok(format!("soft bounce {} of newsletter delivery {} ({count} of {soft_limit})", b.status, b.delivery_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_soft_and_delayed_are_told_apart() {
        let b = |action: &str, status: &str| Bounce {
            delivery_id: 1,
            issue_id: 1,
            subscriber_id: 1,
            status: status.into(),
            action: action.into(),
            matched_by: "x",
        };
        assert!(b("failed", "5.1.1").is_hard());
        assert!(!b("failed", "4.2.2").is_hard());
        assert!(b("delayed", "4.4.7").is_warning() && !b("delayed", "5.0.0").is_hard());
    }

    #[test]
    fn soft_bounces_in_a_row_and_a_hard_one_mark_the_subscriber_bounced() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let c = db.conn();
        let now = Utc::now();
        for (id, email) in [(1, "soft@b.nl"), (2, "hard@b.nl")] {
            c.execute(
                "INSERT INTO subscribers(id, email, status, source, created_at, token_nonce) VALUES (?1, ?2, 'active', 'cli', 'now', 'n')",
                rusqlite::params![id, email],
            )
            .unwrap();
        }
        for issue in 1..=3 {
            c.execute("INSERT INTO issues(id, subject, status, created_at) VALUES (?1, 'x', 'sent', 'now')", [issue])
                .unwrap();
            for sub in [1, 2] {
                c.execute(
                    "INSERT INTO deliveries(id, issue_id, subscriber_id, message_id, status, next_attempt_at) VALUES (?1, ?2, ?3, ?1, 'sent', 'now')",
                    rusqlite::params![issue * 10 + sub, issue, sub],
                )
                .unwrap();
            }
        }
        let status = |id: i64| -> String {
            c.query_row("SELECT status FROM subscribers WHERE id = ?1", [id], |r| r.get(0)).unwrap()
        };
        let bounce = |issue: i64, sub: i64, action: &str, code: &str| Bounce {
            delivery_id: issue * 10 + sub,
            issue_id: issue,
            subscriber_id: sub,
            status: code.into(),
            action: action.into(),
            matched_by: "test",
        };
        apply(c, &bounce(1, 1, "failed", "4.2.2"), 3, now).unwrap();
        apply(c, &bounce(1, 1, "failed", "4.2.2"), 3, now).unwrap(); // a second DSN for the same copy
        apply(c, &bounce(2, 1, "delayed", "4.4.7"), 3, now).unwrap();
        apply(c, &bounce(2, 1, "failed", "4.2.2"), 3, now).unwrap();
        assert_eq!(status(1), "active", "two issues so far");
        let note = apply(c, &bounce(3, 1, "failed", "4.2.2"), 3, now).unwrap();
        assert_eq!(status(1), "bounced", "{note}");
        let note = apply(c, &bounce(1, 2, "failed", "5.1.1"), 3, now).unwrap();
        assert!(note.contains("hard bounce 5.1.1"), "{note}");
        assert_eq!(status(2), "bounced");
    }

    #[test]
    fn fields_are_read_case_insensitively() {
        let t = "Reporting-MTA: dns; x\nfinal-recipient: rfc822; Ann@Example.nl\nACTION: failed\nStatus: 5.1.1 (user unknown)\n";
        assert_eq!(field(t, "Final-Recipient"), Some("rfc822; Ann@Example.nl"));
        assert_eq!(field(t, "action"), Some("failed"));
        assert_eq!(field(t, "status"), Some("5.1.1 (user unknown)"));
    }
}
