//! Queries for the outbox: the durable queue every outgoing mail passes through.
//!
//! Rows move `queued -> sending -> sent | queued (retry at) | failed`. `sending` is
//! committed before the SMTP transaction starts; a row still `sending` at start-up was
//! in flight during a crash and is queued again.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::types::{Ts, time_opt};
use super::{Db, Store, Tx};
use crate::domain::EmailAddress;
use crate::domain::ids::{ConversationId, IssueId, MessageRowId, OutboxId, StoryId, SubscriberId};
use crate::domain::redact_addresses;
use crate::domain::state::{OutboxKind, OutboxStatus};
use crate::domain::time::rfc3339_opt;

#[derive(Debug, Clone)]
pub struct NewOutgoing {
    pub kind: OutboxKind,
    pub message_id: String,
    pub reply_to_msg: Option<MessageRowId>,
    pub conversation_id: Option<ConversationId>,
    pub envelope_from: String,
    pub rcpt: String,
    pub raw: Vec<u8>,
    pub subscriber_id: Option<SubscriberId>,
    pub issue_id: Option<IssueId>,
    pub story_id: Option<StoryId>,
    /// Further envelope recipients (an answer that keeps the Cc).
    pub cc: Vec<String>,
    /// An answer: the folder a copy goes into once it was sent.
    pub copy_folder: Option<String>,
}

impl NewOutgoing {
    /// A mail of `kind` to `rcpt`, about nothing in particular yet.
    pub fn new(kind: OutboxKind, message_id: String, envelope_from: String, rcpt: String, raw: Vec<u8>) -> Self {
        Self {
            kind,
            message_id,
            reply_to_msg: None,
            conversation_id: None,
            envelope_from,
            rcpt,
            raw,
            subscriber_id: None,
            issue_id: None,
            story_id: None,
            cc: Vec::new(),
            copy_folder: None,
        }
    }
}

/// The keys our sending limits use: the recipient without a `+tag`, and its domain.
fn recipient_keys(rcpt: &str) -> (String, String) {
    match EmailAddress::parse(rcpt) {
        Ok(a) => (a.normalized(), a.domain().to_string()),
        Err(_) => (rcpt.to_lowercase(), String::new()),
    }
}

/// Queues a mail (inside the caller's transaction).
fn enqueue(c: &rusqlite::Connection, m: &NewOutgoing, now: DateTime<Utc>) -> anyhow::Result<OutboxId> {
    let (rcpt_norm, rcpt_domain) = recipient_keys(&m.rcpt);
    c.execute(
        "INSERT INTO outbox(kind, message_id, reply_to_msg, conversation_id, envelope_from, rcpt, raw, status, next_attempt_at, created_at, subscriber_id, issue_id, story_id, rcpt_norm, rcpt_domain, cc, copy_folder)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            m.kind,
            m.message_id,
            m.reply_to_msg,
            m.conversation_id,
            m.envelope_from,
            m.rcpt,
            m.raw,
            Ts(now),
            m.subscriber_id,
            m.issue_id,
            m.story_id,
            rcpt_norm,
            rcpt_domain,
            m.cc.join(" "),
            m.copy_folder,
        ],
    )?;
    Ok(OutboxId(c.last_insert_rowid()))
}

#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub kind: OutboxKind,
    pub message_id: String,
    pub envelope_from: String,
    pub rcpt: String,
    pub raw: Vec<u8>,
    pub attempts: u32,
    /// Further envelope recipients (an answer that keeps the Cc).
    pub cc: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxCounts {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    /// Queued rows that already failed at least once (waiting for a retry).
    pub retrying: i64,
    #[serde(with = "rfc3339_opt")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl Store<'_> {
    /// Queues a mail.
    pub fn enqueue(&self, m: &NewOutgoing, now: DateTime<Utc>) -> anyhow::Result<OutboxId> {
        enqueue(self.c, m, now)
    }

    /// How many confirmation mails were queued to `subscriber` since `since` (every row
    /// counts, whatever became of it: the cap is on what we tried to send).
    pub fn confirmations_queued_since(&self, subscriber: SubscriberId, since: DateTime<Utc>) -> anyhow::Result<u32> {
        Ok(self.c.query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind = ?1 AND subscriber_id = ?2 AND created_at >= ?3",
            params![OutboxKind::Confirm, subscriber, Ts(since)],
            |r| r.get(0),
        )?)
    }
}

impl Tx<'_> {
    pub fn enqueue(&self, m: &NewOutgoing, now: DateTime<Utc>) -> anyhow::Result<OutboxId> {
        enqueue(&self.tx, m, now)
    }

    /// Mails sent on a stranger's word (auto-replies and subscription confirmations)
    /// queued since `since`: what the global circuit breaker counts.
    pub fn auto_replies_since(&self, since: DateTime<Utc>) -> anyhow::Result<u64> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM outbox WHERE kind IN ('auto_reply', 'confirm') AND created_at >= ?1",
            [Ts(since)],
            |r| r.get(0),
        )?)
    }

    /// When we last queued an auto-reply to this address (a `+tag` does not make it
    /// another address).
    pub fn last_auto_reply_to(&self, rcpt: &EmailAddress) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self.tx.query_row(
            "SELECT MAX(created_at) FROM outbox WHERE rcpt_norm = ?1 AND kind = 'auto_reply'",
            [rcpt.normalized()],
            |r| time_opt(r, 0),
        )?)
    }

    /// Mails on a stranger's word queued to addresses at `domain` since `since`.
    pub fn unasked_mails_to_domain_since(&self, domain: &str, since: DateTime<Utc>) -> anyhow::Result<u64> {
        Ok(self.tx.query_row(
            "SELECT COUNT(*) FROM outbox WHERE rcpt_domain = ?1 AND created_at >= ?2 AND kind IN ('auto_reply', 'confirm')",
            params![domain, Ts(since)],
            |r| r.get(0),
        )?)
    }

    /// Whether a notice of this kind about this issue or story was ever queued.
    pub fn notice_queued(
        &self,
        kind: OutboxKind,
        issue: Option<IssueId>,
        story: Option<StoryId>,
    ) -> anyhow::Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM outbox WHERE kind = ?1 AND issue_id IS ?2 AND story_id IS ?3 LIMIT 1",
                params![kind, issue, story],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some())
    }

    /// Whether a mail of this kind was queued since `since`.
    pub fn queued_kind_since(&self, kind: OutboxKind, since: DateTime<Utc>) -> anyhow::Result<bool> {
        Ok(self
            .tx
            .query_row(
                "SELECT 1 FROM outbox WHERE kind = ?1 AND created_at >= ?2 LIMIT 1",
                params![kind, Ts(since)],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .is_some())
    }
}

impl Db {
    /// Resolves rows left `sending` by a crash: those in `ended` (their message end went
    /// out) count as sent, the others go back in the queue. Returns `(sent, requeued)`.
    pub fn recover_in_flight(
        &mut self,
        ended: &std::collections::HashSet<i64>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(usize, usize)> {
        self.write(|st| super::settle_in_flight(st.c, super::InFlight::Outbox, ended, now))
    }

    /// Claims up to `limit` due rows: marks them `sending` and returns them.
    pub fn claim_due(&mut self, limit: u32, now: DateTime<Utc>) -> anyhow::Result<Vec<OutboxRow>> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let rows = {
            let mut st = tx.prepare(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2)
                 RETURNING id, kind, message_id, envelope_from, rcpt, raw, attempts, cc",
            )?;
            let rows = st.query_map(params![Ts(now), limit], |r| {
                Ok(OutboxRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    message_id: r.get(2)?,
                    envelope_from: r.get(3)?,
                    rcpt: r.get(4)?,
                    raw: r.get(5)?,
                    attempts: r.get(6)?,
                    cc: r.get::<_, String>(7)?.split_whitespace().map(str::to_string).collect(),
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        Ok(rows)
    }

    pub fn mark_sent(&self, id: OutboxId, now: DateTime<Utc>) -> anyhow::Result<()> {
        super::failpoint("outcome write")?;
        self.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
            params![id, Ts(now)],
        )?;
        Ok(())
    }

    /// Queues a row again after a failed attempt; an address in the error (SMTP answers
    /// quote the recipient) keeps only its domain.
    pub fn mark_retry(&self, id: OutboxId, at: DateTime<Utc>, error: &str) -> anyhow::Result<()> {
        super::failpoint("outcome write")?;
        self.conn.execute(
            "UPDATE outbox SET status = 'queued', next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
            params![id, Ts(at), redact_addresses(error)],
        )?;
        Ok(())
    }

    /// Marks a row failed for good; the error is kept without full addresses. When the
    /// row is an auto-reply, the filed mail it answers says so (`inbox show`: "Reply:"),
    /// so the coordinator sees that the sender got no answer, and why.
    pub fn mark_failed(&self, id: OutboxId, error: &str) -> anyhow::Result<()> {
        super::failpoint("outcome write")?;
        let error = redact_addresses(error);
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("UPDATE outbox SET status = 'failed', last_error = ?2 WHERE id = ?1", params![id, error])?;
        tx.execute(
            "UPDATE messages SET auto_replied = 0, reply_note = ?2
             WHERE id = (SELECT reply_to_msg FROM outbox WHERE id = ?1 AND kind = 'auto_reply')",
            params![id, format!("auto-reply failed: {error}")],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// When the next queued row becomes due.
    pub fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self
            .conn
            .query_row("SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'queued'", [], |r| time_opt(r, 0))?)
    }

    pub fn outbox_counts(&self) -> anyhow::Result<OutboxCounts> {
        let mut c = OutboxCounts::default();
        let mut st = self.conn.prepare(
            "SELECT status, COUNT(*), SUM(attempts > 0 AND last_error IS NOT NULL) FROM outbox GROUP BY status",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let status: OutboxStatus = r.get(0)?;
            let n: i64 = r.get(1)?;
            match status {
                OutboxStatus::Queued => {
                    c.queued = n;
                    c.retrying = r.get::<_, Option<i64>>(2)?.unwrap_or(0);
                }
                OutboxStatus::Sending => c.sending = n,
                OutboxStatus::Sent => c.sent = n,
                OutboxStatus::Failed => c.failed = n,
            }
        }
        c.next_attempt_at = self.next_due()?;
        Ok(c)
    }

    /// Failed rows with their errors, newest first.
    pub fn failed_outgoing(&self, limit: u32) -> anyhow::Result<Vec<(OutboxId, String, String)>> {
        let mut st = self.conn.prepare(
            "SELECT id, rcpt, COALESCE(last_error, '') FROM outbox WHERE status = 'failed' ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_auto_reply_is_noted_on_the_mail_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        db.conn
            .execute_batch(
                "INSERT INTO messages(id, dedupe_key, category, reason, language, status, folder, received_at, filed_at, auto_replied, reply_note)
                 VALUES (1, 'k', 'question', 'r', 'nl', 'new', 'Vragen', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 1, 'auto-reply queued');
                 INSERT INTO outbox(id, kind, message_id, reply_to_msg, rcpt, raw, status, next_attempt_at, created_at)
                 VALUES (1, 'auto_reply', 'm1', 1, 'jdöe@mächine.example', x'00', 'sending', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),
                        (2, 'notice_breaker', 'm2', NULL, 'c@example.org', x'00', 'sending', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
            )
            .unwrap();
        db.mark_failed(OutboxId(1), "needs SMTPUTF8 for <jdöe@mächine.example>").unwrap();
        db.mark_failed(OutboxId(2), "550 rejected").unwrap();
        let m = db.get_message(MessageRowId(1)).unwrap().unwrap();
        assert!(!m.auto_replied);
        assert_eq!(m.reply_note, "auto-reply failed: needs SMTPUTF8 for <…@mächine.example>");
        assert_eq!(db.outbox_counts().unwrap().failed, 2);
    }
}
