//! One row per (issue, subscriber): the record of who got which issue.
//!
//! Rows move `pending -> sending -> sent | retry | failed | skipped`, and `bounced` when a
//! delivery report comes back. `sending` is committed before the SMTP transaction.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Store;
use super::types::{Ts, time_opt};
use crate::domain::ids::{DeliveryId, IssueId, SubscriberId};
use crate::domain::state::DeliveryStatus;
use crate::domain::time::rfc3339_opt;
use crate::domain::{Language, redact_addresses};

/// A delivery claimed for sending, with what rendering needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: DeliveryId,
    pub issue: IssueId,
    pub subscriber: SubscriberId,
    pub message_id: String,
    pub attempts: u32,
    pub email: String,
    pub name: Option<String>,
    pub language: Language,
    pub nonce: String,
}

/// How one delivery attempt ended, to be recorded.
#[derive(Debug, Clone)]
pub enum DeliveryUpdate {
    Sent,
    Retry(DateTime<Utc>, String),
    Failed(String),
    Skipped(String),
    /// Claimed but never started (its lane stopped): back in the queue, the attempt not
    /// counted.
    Unstarted,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryLine {
    pub id: DeliveryId,
    pub email: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub detail: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339_opt")]
    pub bounced_at: Option<DateTime<Utc>>,
}

/// A delivery that a bounce names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRef {
    pub delivery: DeliveryId,
    pub issue: IssueId,
    pub subscriber: SubscriberId,
}

impl Store<'_> {
    /// Deliveries still open for subscribers who are no longer active are skipped (they
    /// left by a way that did not skip them at once). Run once per sending pass.
    pub fn skip_inactive(&self) -> anyhow::Result<usize> {
        Ok(self.c.execute(
            "UPDATE deliveries SET status = 'skipped', last_error = 'no longer subscribed when it was due'
             WHERE status IN ('pending', 'retry') AND subscriber_id IN (SELECT id FROM subscribers WHERE status != 'active')",
            [],
        )?)
    }

    /// Claims up to `limit` due deliveries of sending issues whose subscriber is still
    /// active (`sending`, committed before any network I/O): retries that are due first,
    /// then new ones, each in index order (no scan of the whole queue).
    pub fn claim_deliveries(&self, limit: u32, now: DateTime<Utc>) -> anyhow::Result<Vec<Claimed>> {
        let mut ids: Vec<DeliveryId> = Vec::with_capacity(limit as usize);
        for status in [DeliveryStatus::Retry, DeliveryStatus::Pending] {
            let want = limit as usize - ids.len();
            if want == 0 {
                break;
            }
            let mut st = self.c.prepare_cached(
                "UPDATE deliveries SET status = 'sending', attempts = attempts + 1
                 WHERE id IN (SELECT d.id FROM deliveries d
                              WHERE d.status = ?3 AND d.next_attempt_at <= ?1
                                AND d.issue_id IN (SELECT id FROM issues WHERE status = 'sending')
                                AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = d.subscriber_id AND s.status = 'active')
                              ORDER BY d.next_attempt_at LIMIT ?2)
                 RETURNING id",
            )?;
            let got = st.query_map(params![Ts(now), want as i64, status], |r| r.get::<_, DeliveryId>(0))?;
            for id in got {
                ids.push(id?);
            }
        }
        ids.sort_unstable();
        let mut out = Vec::with_capacity(ids.len());
        let mut get = self.c.prepare_cached(
            "SELECT d.id, d.issue_id, d.subscriber_id, d.message_id, d.attempts, s.email, s.name, s.language, s.token_nonce
             FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.id = ?1",
        )?;
        for id in ids {
            out.push(get.query_row([id], |r| {
                Ok(Claimed {
                    id: r.get(0)?,
                    issue: r.get(1)?,
                    subscriber: r.get(2)?,
                    message_id: r.get(3)?,
                    attempts: r.get(4)?,
                    email: r.get(5)?,
                    name: r.get(6)?,
                    language: r.get(7)?,
                    nonce: r.get(8)?,
                })
            })?);
        }
        Ok(out)
    }

    /// Whether the subscriber may still get mail right now (checked just before sending).
    pub fn still_active(&self, subscriber: SubscriberId) -> anyhow::Result<bool> {
        Ok(self
            .c
            .prepare_cached("SELECT status = 'active' FROM subscribers WHERE id = ?1")?
            .query_row([subscriber], |r| r.get(0))
            .optional()?
            .unwrap_or(false))
    }

    /// Records how an attempt ended (on a row still `sending`: a bounce that came back
    /// first is kept); an address in an error text keeps only its domain.
    pub fn record_delivery(&self, id: DeliveryId, u: &DeliveryUpdate, now: DateTime<Utc>) -> anyhow::Result<()> {
        super::failpoint("outcome write")?;
        match u {
            DeliveryUpdate::Sent => self
                .c
                .prepare_cached(
                    "UPDATE deliveries SET status = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1 AND status = 'sending'",
                )?
                .execute(params![id, Ts(now)])?,
            DeliveryUpdate::Retry(at, e) => self
                .c
                .prepare_cached(
                    "UPDATE deliveries SET status = 'retry', next_attempt_at = ?2, last_error = ?3 WHERE id = ?1 AND status = 'sending'",
                )?
                .execute(params![id, Ts(*at), redact_addresses(e)])?,
            DeliveryUpdate::Failed(e) => self
                .c
                .prepare_cached("UPDATE deliveries SET status = 'failed', last_error = ?2 WHERE id = ?1 AND status = 'sending'")?
                .execute(params![id, redact_addresses(e)])?,
            DeliveryUpdate::Skipped(e) => self
                .c
                .prepare_cached("UPDATE deliveries SET status = 'skipped', last_error = ?2 WHERE id = ?1 AND status = 'sending'")?
                .execute(params![id, redact_addresses(e)])?,
            DeliveryUpdate::Unstarted => self
                .c
                .prepare_cached(
                    "UPDATE deliveries SET status = 'pending', attempts = MAX(attempts - 1, 0) WHERE id = ?1 AND status = 'sending'",
                )?
                .execute(params![id])?,
        };
        Ok(())
    }

    /// Settles deliveries left `sending` by a crash: those in `ended` count as sent, the
    /// others are sent again (see [`super::settle_in_flight`]). Returns `(sent, requeued)`.
    pub fn recover_deliveries(&self, ended: &HashSet<i64>, now: DateTime<Utc>) -> anyhow::Result<(usize, usize)> {
        super::settle_in_flight(self.c, super::InFlight::Deliveries, ended, now)
    }

    /// Copies of sending issues still to go out (pending or waiting for a retry).
    pub fn deliveries_left(&self) -> anyhow::Result<u64> {
        Ok(self.c.query_row(
            "SELECT COUNT(*) FROM deliveries d JOIN issues i ON i.id = d.issue_id
             WHERE i.status = 'sending' AND d.status IN ('pending', 'retry')",
            [],
            |r| r.get(0),
        )?)
    }

    pub fn next_delivery_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self.c.query_row(
            "SELECT MIN(d.next_attempt_at) FROM deliveries d JOIN issues i ON i.id = d.issue_id
             WHERE d.status IN ('pending', 'retry') AND i.status = 'sending'",
            [],
            |r| time_opt(r, 0),
        )?)
    }

    /// Per status counts of an issue's deliveries.
    pub fn delivery_counts(&self, issue: IssueId) -> anyhow::Result<Vec<(DeliveryStatus, i64)>> {
        let mut st = self
            .c
            .prepare("SELECT status, COUNT(*) FROM deliveries WHERE issue_id = ?1 GROUP BY status ORDER BY status")?;
        let rows = st.query_map([issue], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What happened per recipient of an issue; `missed_only` leaves out the sent ones.
    pub fn deliveries_of(&self, issue: IssueId, missed_only: bool) -> anyhow::Result<Vec<DeliveryLine>> {
        let mut st = self.c.prepare(
            "SELECT d.id, s.email, d.status, d.attempts, d.last_error, d.sent_at, d.bounced_at
             FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
             WHERE d.issue_id = ?1 AND (?2 = 0 OR d.status != 'sent') ORDER BY d.id",
        )?;
        let rows = st.query_map(params![issue, missed_only], |r| {
            Ok(DeliveryLine {
                id: r.get(0)?,
                email: r.get(1)?,
                status: r.get(2)?,
                attempts: r.get(3)?,
                detail: r.get(4)?,
                sent_at: time_opt(r, 5)?,
                bounced_at: time_opt(r, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Queues again exactly the deliveries of an issue that did not reach a still active
    /// subscriber (failed or waiting for a retry), as `by` (`cli` or a desk user's
    /// address, noted on a sent issue that is sending again). Returns how many.
    pub fn requeue_missed(&self, issue: IssueId, by: &str, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let n = self.c.execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2
             WHERE issue_id = ?1 AND status IN ('failed', 'retry')
               AND subscriber_id IN (SELECT id FROM subscribers WHERE status = 'active')",
            params![issue, Ts(now)],
        )?;
        if n > 0 {
            let status = self.issue(issue)?.map(|i| i.status);
            if status == Some(crate::domain::state::IssueStatus::Sent) {
                let note = format!("resend to those it missed, by {by}");
                self.move_issue(issue, crate::domain::state::IssueStatus::Sending, &note, now)?;
                self.c.execute("UPDATE issues SET finished_at = NULL WHERE id = ?1", [issue])?;
            }
        }
        Ok(n)
    }

    /// A delivery by id or by our Message-ID.
    pub fn delivery_ref(
        &self,
        id: Option<DeliveryId>,
        message_id: Option<&str>,
    ) -> anyhow::Result<Option<DeliveryRef>> {
        Ok(self
            .c
            .query_row(
                "SELECT id, issue_id, subscriber_id FROM deliveries WHERE id = ?1 OR message_id = ?2",
                params![id, message_id],
                |r| Ok(DeliveryRef { delivery: r.get(0)?, issue: r.get(1)?, subscriber: r.get(2)? }),
            )
            .optional()?)
    }

    /// The latest delivery sent to an address (a bounce that names only its recipient).
    pub fn last_delivery_to(&self, email: &str) -> anyhow::Result<Option<DeliveryRef>> {
        Ok(self
            .c
            .query_row(
                "SELECT d.id, d.issue_id, d.subscriber_id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
                 WHERE s.email = ?1 AND d.status = 'sent' ORDER BY d.id DESC LIMIT 1",
                [email],
                |r| Ok(DeliveryRef { delivery: r.get(0)?, issue: r.get(1)?, subscriber: r.get(2)? }),
            )
            .optional()?)
    }

    /// Records a bounce on a delivery; false when it had one already (a second DSN).
    pub fn record_bounce(
        &self,
        delivery: DeliveryId,
        status: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let n = self.c.execute(
            "UPDATE deliveries SET status = 'bounced', bounced_at = ?2, bounce_status = ?3, last_error = ?4 WHERE id = ?1 AND bounced_at IS NULL",
            params![delivery, Ts(now), status, redact_addresses(detail)],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::{IssueStatus, SubscriberStatus};
    use crate::store::subscribers::NewSubscriber;

    #[test]
    fn soft_bounces_count_only_in_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let now = Utc::now();
        db.write(|st| {
            let s = st.insert_subscriber(
                &NewSubscriber {
                    email: "a@b.nl",
                    name: None,
                    language: Language::Dutch,
                    status: SubscriberStatus::Active,
                    source: "cli",
                    consent: Some(("x", now)),
                    nonce: "n",
                },
                now,
            )?;
            // Issue 1 bounced softly, issue 2 got through, issues 3 and 4 bounced softly.
            for (n, status) in [(1, "bounced"), (2, "sent"), (3, "bounced"), (4, "bounced")] {
                let issue = st.create_issue("x", IssueStatus::Sent, None, &[], None, now)?;
                assert_eq!(issue, IssueId(n));
                st.c.execute(
                    "INSERT INTO deliveries(issue_id, subscriber_id, message_id, status, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![issue, s, format!("m{n}"), status, Ts(now)],
                )?;
            }
            assert_eq!(st.add_soft_bounce(s, IssueId(1))?, 1);
            assert_eq!(st.add_soft_bounce(s, IssueId(3))?, 1, "issue 2 got through: the row starts again");
            assert_eq!(st.add_soft_bounce(s, IssueId(4))?, 2);
            Ok(())
        })
        .unwrap();
    }
}
