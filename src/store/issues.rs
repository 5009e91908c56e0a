//! Newsletter issues and the mails we sent that later mail refers to. Issue status moves
//! go through [`Store::move_issue`], which asks [`IssueStatus::can_become`].

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Store;
use super::types::{Ts, time, time_opt};
use crate::domain::ids::{IssueId, StoryId, SubscriberId};
use crate::domain::state::{IllegalTransition, IssueStatus, OutboxKind};
use crate::domain::time::{rfc3339, rfc3339_opt};

#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub id: IssueId,
    pub subject: String,
    pub status: IssueStatus,
    #[serde(with = "rfc3339_opt")]
    pub slot: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub proof_message_id: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub proof_deadline: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339_opt")]
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    /// The one-time code a proof answer must carry (never printed in JSON).
    #[serde(skip)]
    pub proof_code: Option<String>,
}

const ISSUE_COLS: &str = "id, subject, status, slot, created_at, proof_message_id, proof_deadline, approved_at, approved_by, started_at, finished_at, note, proof_code";

fn issue_row(r: &Row<'_>) -> rusqlite::Result<Issue> {
    Ok(Issue {
        id: r.get(0)?,
        subject: r.get(1)?,
        status: r.get(2)?,
        slot: time_opt(r, 3)?,
        created_at: time(r, 4)?,
        proof_message_id: r.get(5)?,
        proof_deadline: time_opt(r, 6)?,
        approved_at: time_opt(r, 7)?,
        approved_by: r.get(8)?,
        started_at: time_opt(r, 9)?,
        finished_at: time_opt(r, 10)?,
        note: r.get(11)?,
        proof_code: r.get(12)?,
    })
}

/// A mail we sent, found by its Message-ID: what it was and whom or what it was about.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: OutboxKind,
    pub subscriber: Option<SubscriberId>,
    pub issue: Option<IssueId>,
}

impl Store<'_> {
    /// A new issue with its stories (which no other issue may take).
    pub fn create_issue(
        &self,
        subject: &str,
        status: IssueStatus,
        slot: Option<DateTime<Utc>>,
        stories: &[StoryId],
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssueId> {
        self.c.execute(
            "INSERT INTO issues(subject, status, slot, created_at, note) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![subject, status, slot.map(Ts), Ts(now), note],
        )?;
        let id = IssueId(self.c.last_insert_rowid());
        for (pos, s) in stories.iter().enumerate() {
            self.c.execute(
                "INSERT INTO issue_stories(issue_id, story_id, position) VALUES (?1, ?2, ?3)",
                params![id, s, pos],
            )?;
            self.c.execute("UPDATE stories SET issue_id = ?2 WHERE id = ?1", params![s, id])?;
        }
        Ok(id)
    }

    pub fn issue_by_slot(&self, slot: DateTime<Utc>) -> anyhow::Result<Option<Issue>> {
        let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE slot = ?1");
        Ok(self.c.query_row(&q, [Ts(slot)], issue_row).optional()?)
    }

    pub fn issue(&self, id: IssueId) -> anyhow::Result<Option<Issue>> {
        let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE id = ?1");
        Ok(self.c.query_row(&q, [id], issue_row).optional()?)
    }

    /// Every issue, newest first.
    pub fn issues(&self) -> anyhow::Result<Vec<Issue>> {
        let q = format!("SELECT {ISSUE_COLS} FROM issues ORDER BY id DESC");
        let mut st = self.c.prepare(&q)?;
        let rows = st.query_map([], issue_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn issues_with_status(&self, status: IssueStatus) -> anyhow::Result<Vec<Issue>> {
        let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE status = ?1 ORDER BY id");
        let mut st = self.c.prepare(&q)?;
        let rows = st.query_map([status], issue_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn issue_story_ids(&self, issue: IssueId) -> anyhow::Result<Vec<StoryId>> {
        let mut st = self.c.prepare("SELECT story_id FROM issue_stories WHERE issue_id = ?1 ORDER BY position")?;
        let rows = st.query_map([issue], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the proof mailed for an issue: its Message-ID, the one-time code an answer
    /// must carry, and the deadline.
    pub fn set_proof(
        &self,
        id: IssueId,
        message_id: Option<&str>,
        code: Option<&str>,
        deadline: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE issues SET proof_message_id = ?2, proof_code = ?3, proof_deadline = ?4 WHERE id = ?1",
            params![id, message_id, code, Ts(deadline)],
        )?;
        Ok(())
    }

    /// The issue whose proof has this Message-ID.
    pub fn issue_by_proof(&self, message_id: &str) -> anyhow::Result<Option<Issue>> {
        let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE proof_message_id = ?1");
        Ok(self.c.query_row(&q, [message_id], issue_row).optional()?)
    }

    /// Moves an issue with a note; refuses what [`IssueStatus::can_become`] does not
    /// allow. Leaving `proof` or `approved` without being sent frees its stories again;
    /// a cancelled send skips the copies not yet started.
    pub fn move_issue(
        &self,
        id: IssueId,
        to: IssueStatus,
        note: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IssueStatus> {
        let from: IssueStatus = self
            .c
            .query_row("SELECT status FROM issues WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| anyhow::anyhow!("there is no issue {id}"))?;
        if !from.can_become(to) {
            return Err(IllegalTransition { what: "issue", id: id.get(), from: from.as_str(), to: to.as_str() }.into());
        }
        self.c.execute(
            "UPDATE issues SET status = ?3, note = ?4 WHERE id = ?1 AND status = ?2",
            params![id, from, to, note],
        )?;
        if matches!(to, IssueStatus::Cancelled | IssueStatus::Dropped) {
            self.c.execute("UPDATE stories SET issue_id = NULL WHERE issue_id = ?1 AND status = 'approved'", [id])?;
        }
        if to == IssueStatus::Cancelled {
            self.c.execute("UPDATE issues SET cancelled_at = ?2 WHERE id = ?1", params![id, Ts(now)])?;
            self.c.execute(
                "UPDATE deliveries SET status = 'skipped', last_error = 'issue cancelled' WHERE issue_id = ?1 AND status IN ('pending', 'retry')",
                [id],
            )?;
        }
        Ok(from)
    }

    /// Records that a person approved a proof; the newsletter task starts the send.
    pub fn approve_issue(&self, id: IssueId, by: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.move_issue(id, IssueStatus::Approved, &format!("approved by {by}"), now)?;
        self.c
            .execute("UPDATE issues SET approved_at = ?2, approved_by = ?3 WHERE id = ?1", params![id, Ts(now), by])?;
        Ok(())
    }

    /// The issue starts sending: one delivery row per active subscriber (unique per
    /// (issue, subscriber)), its stories published, its archive page stored.
    pub fn start_sending(
        &self,
        id: IssueId,
        approved_by: &str,
        archive_html: &str,
        mid_domain: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        self.move_issue(id, IssueStatus::Sending, &format!("sent by {approved_by}"), now)?;
        self.c.execute(
            "UPDATE issues SET approved_at = COALESCE(approved_at, ?2), approved_by = COALESCE(approved_by, ?3),
                    started_at = ?2, archive_html = ?4 WHERE id = ?1",
            params![id, Ts(now), approved_by, archive_html],
        )?;
        let n = self.c.execute(
            "INSERT INTO deliveries(issue_id, subscriber_id, message_id, status, next_attempt_at)
             SELECT ?1, id, 'outreach.nl.' || ?1 || '.' || id || '.' || lower(hex(randomblob(6))) || '@' || ?2, 'pending', ?3
             FROM subscribers WHERE status = 'active'
             ON CONFLICT(issue_id, subscriber_id) DO NOTHING",
            params![id, mid_domain, Ts(now)],
        )?;
        self.c.execute(
            "UPDATE stories SET status = 'published', published_at = ?2 WHERE id IN (SELECT story_id FROM issue_stories WHERE issue_id = ?1)",
            params![id, Ts(now)],
        )?;
        Ok(n)
    }

    /// Marks sending issues with nothing left to do as sent.
    pub fn finish_issues(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<IssueId>> {
        let mut st = self.c.prepare(
            "UPDATE issues SET status = 'sent', finished_at = ?1 WHERE status = 'sending' AND NOT EXISTS (
                 SELECT 1 FROM deliveries d WHERE d.issue_id = issues.id AND d.status IN ('pending', 'sending', 'retry'))
             RETURNING id",
        )?;
        let rows = st.query_map([Ts(now)], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A sent (or sending) issue with its archive page.
    pub fn archive(&self, id: IssueId) -> anyhow::Result<Option<(Issue, String)>> {
        let q = format!(
            "SELECT {ISSUE_COLS}, archive_html FROM issues WHERE id = ?1 AND status IN ('sending', 'sent') AND archive_html IS NOT NULL"
        );
        Ok(self.c.query_row(&q, [id], |r| Ok((issue_row(r)?, r.get(13)?))).optional()?)
    }

    pub fn outgoing_by_message_id(&self, message_id: &str) -> anyhow::Result<Option<Outgoing>> {
        Ok(self
            .c
            .query_row("SELECT kind, subscriber_id, issue_id FROM outbox WHERE message_id = ?1", [message_id], |r| {
                Ok(Outgoing { kind: r.get(0)?, subscriber: r.get(1)?, issue: r.get(2)? })
            })
            .optional()?)
    }
}
