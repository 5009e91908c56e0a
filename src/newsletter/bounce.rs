//! Bounces of newsletters (RFC 3464 DSNs): which delivery a DSN is about, and what it
//! means for the subscriber (MAIL-RULES 2).
//!
//! Matched by the envelope (VERP) tag first (`contact+b-<delivery>-<mac>@...`, checked
//! with the secret), then by the Message-ID of our message quoted in the DSN, then by
//! `Final-Recipient`; only the tag acts (the others are claims anyone can write, so they
//! are only reported in the filed mail's reason). `Action: failed` with `5.x.x` is hard: the subscriber is `bounced`
//! at once. `4.x.x` is soft: counted once per issue; `[newsletter] soft_bounce_limit`
//! issues in a row make the subscriber `bounced` (an issue that got through starts the
//! count again). `Action: delayed` is only a warning.

use chrono::{DateTime, Utc};

use super::tokens::Signer;
use crate::store::Store;
use crate::store::deliveries::DeliveryRef;
use crate::store::subscribers::SubscriberMove;

/// How a DSN that carries our signed envelope tag is matched: the only match that acts.
const TAG: &str = "envelope tag";

/// What a DSN says about one of our deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub delivery: DeliveryRef,
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
pub fn find(st: Store<'_>, signer: &Signer, raw: &[u8]) -> anyhow::Result<Option<Bounce>> {
    let head = &raw[..raw.len().min(256 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut found: Option<(DeliveryRef, &'static str)> = None;
    // 1. The VERP tag in any recipient header or in the report.
    for (i, _) in text.match_indices("+b-") {
        let tag: String =
            text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
        if let Some(id) = signer.check_bounce_tag(&tag.to_ascii_lowercase())
            && let Some(r) = st.delivery_ref(Some(id), None)?
        {
            found = Some((r, TAG));
            break;
        }
    }
    // 2. The Message-ID of our message, quoted in the report.
    if found.is_none() {
        for (i, _) in text.match_indices("<outreach.nl.") {
            if let Some(end) = text[i..].find('>') {
                let mid = &text[i + 1..i + end];
                if let Some(r) = st.delivery_ref(None, Some(mid))? {
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
        if let Some(r) = st.last_delivery_to(&addr)? {
            found = Some((r, "final-recipient"));
        }
    }
    let Some((delivery, matched_by)) = found else { return Ok(None) };
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
    Ok(Some(Bounce { delivery, status, action, matched_by }))
}

/// Records a bounce; returns a line for the filed message's reason. Only a DSN that
/// carries a valid signed per-delivery tag changes a subscriber: the Message-ID and
/// `Final-Recipient` fallbacks are claims anyone can write, so they are only reported.
pub fn apply(st: Store<'_>, b: &Bounce, soft_limit: u32, now: DateTime<Utc>) -> anyhow::Result<String> {
    if b.matched_by != TAG {
        return Ok(format!(
            "a report about newsletter delivery {} (matched by {} only, which anyone can write): nothing changed",
            b.delivery.delivery, b.matched_by
        ));
    }
    if b.is_warning() {
        return Ok(format!(
            "delay warning for newsletter delivery {} (matched by {})",
            b.delivery.delivery, b.matched_by
        ));
    }
    let d = b.delivery;
    let detail = format!("{} {}", b.action, b.status);
    let first = st.record_bounce(d.delivery, &b.status, detail.trim(), now)?;
    if b.is_hard() {
        let reason = format!("hard bounce {} on issue {}", b.status, d.issue);
        st.move_subscriber(d.subscriber, SubscriberMove::Bounce { reason: &reason }, now)?;
        return Ok(format!(
            "hard bounce {} of newsletter delivery {} (matched by {}): subscriber marked bounced",
            b.status, d.delivery, b.matched_by
        ));
    }
    if !first {
        return Ok(format!("another soft bounce of newsletter delivery {}", d.delivery));
    }
    let count = st.add_soft_bounce(d.subscriber, d.issue)?;
    if count >= i64::from(soft_limit) {
        let reason = format!("{count} issues in a row soft-bounced");
        st.move_subscriber(d.subscriber, SubscriberMove::Bounce { reason: &reason }, now)?;
        return Ok(format!("soft bounce {} ({count} in a row): subscriber marked bounced", b.status));
    }
    Ok(format!("soft bounce {} of newsletter delivery {} ({count} of {soft_limit})", b.status, d.delivery))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_soft_and_delayed_are_told_apart() {
        use crate::domain::ids::{DeliveryId, IssueId, SubscriberId};
        let b = |action: &str, status: &str| Bounce {
            delivery: DeliveryRef { delivery: DeliveryId(1), issue: IssueId(1), subscriber: SubscriberId(1) },
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
        use crate::domain::Language;
        use crate::domain::ids::SubscriberId;
        use crate::domain::state::{IssueStatus, SubscriberStatus};
        use crate::store::deliveries::DeliveryUpdate;
        use crate::store::subscribers::NewSubscriber;
        let dir = tempfile::tempdir().unwrap();
        let mut db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let now = Utc::now();
        // Two subscribers and three sent issues, each delivered to both.
        let mut deliveries = std::collections::HashMap::new();
        db.write(|st| {
            for email in ["soft@b.nl", "hard@b.nl"] {
                st.insert_subscriber(
                    &NewSubscriber {
                        email,
                        name: None,
                        language: Language::Dutch,
                        status: SubscriberStatus::Active,
                        source: "cli",
                        consent: Some(("test", now)),
                        nonce: "n",
                    },
                    now,
                )?;
            }
            for _ in 1..=3 {
                let issue = st.create_issue("x", IssueStatus::New, None, &[], None, now)?;
                st.start_sending(issue, "test", "", "example.org", now)?;
                for (n, line) in st.deliveries_of(issue, false)?.into_iter().enumerate() {
                    st.record_delivery(line.id, &DeliveryUpdate::Sent, now)?;
                    let r = DeliveryRef { delivery: line.id, issue, subscriber: SubscriberId(n as i64 + 1) };
                    deliveries.insert((issue.get(), n as i64 + 1), r);
                }
            }
            Ok(())
        })
        .unwrap();
        let status = |db: &crate::store::Db, id: i64| db.store().subscriber(SubscriberId(id)).unwrap().unwrap().status;
        let bounce = |issue: i64, sub: i64, action: &str, code: &str| Bounce {
            delivery: deliveries[&(issue, sub)],
            status: code.into(),
            action: action.into(),
            matched_by: TAG,
        };
        let apply = |db: &mut crate::store::Db, b: Bounce| db.write(|st| apply(st, &b, 3, now)).unwrap();
        apply(&mut db, bounce(1, 1, "failed", "4.2.2"));
        apply(&mut db, bounce(1, 1, "failed", "4.2.2")); // a second DSN for the same copy
        apply(&mut db, bounce(2, 1, "delayed", "4.4.7"));
        apply(&mut db, bounce(2, 1, "failed", "4.2.2"));
        assert_eq!(status(&db, 1), SubscriberStatus::Active, "two issues so far");
        let note = apply(&mut db, bounce(3, 1, "failed", "4.2.2"));
        assert_eq!(status(&db, 1), SubscriberStatus::Bounced, "{note}");
        // A report matched only by its claims (no signed tag) changes nobody.
        let forged = Bounce { matched_by: "final-recipient", ..bounce(2, 2, "failed", "5.1.1") };
        let note = apply(&mut db, forged);
        assert!(note.contains("nothing changed"), "{note}");
        assert_eq!(status(&db, 2), SubscriberStatus::Active);
        let note = apply(&mut db, bounce(1, 2, "failed", "5.1.1"));
        assert!(note.contains("hard bounce 5.1.1"), "{note}");
        assert_eq!(status(&db, 2), SubscriberStatus::Bounced);
    }

    #[test]
    fn fields_are_read_case_insensitively() {
        let t = "Reporting-MTA: dns; x\nfinal-recipient: rfc822; Ann@Example.nl\nACTION: failed\nStatus: 5.1.1 (user unknown)\n";
        assert_eq!(field(t, "Final-Recipient"), Some("rfc822; Ann@Example.nl"));
        assert_eq!(field(t, "action"), Some("failed"));
        assert_eq!(field(t, "status"), Some("5.1.1 (user unknown)"));
    }
}
