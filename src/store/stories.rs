//! Ambassadors and their stories. Story status moves go through
//! [`Store::move_story`], which asks [`StoryStatus::can_become`].

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Store;
use super::types::{Ts, time, time_opt};
use crate::domain::ids::{AmbassadorId, ConversationId, IssueId, MessageRowId, StoryId};
use crate::domain::state::{IllegalTransition, StoryStatus};
use crate::domain::time::{rfc3339, rfc3339_opt};

#[derive(Debug, Clone, Serialize)]
pub struct Ambassador {
    pub id: AmbassadorId,
    pub name: String,
    pub role: String,
    pub photo_url: Option<String>,
    pub email: Option<String>,
}

fn ambassador(r: &Row<'_>) -> rusqlite::Result<Ambassador> {
    Ok(Ambassador { id: r.get(0)?, name: r.get(1)?, role: r.get(2)?, photo_url: r.get(3)?, email: r.get(4)? })
}

#[derive(Debug, Clone, Serialize)]
pub struct Story {
    pub id: StoryId,
    pub title: String,
    pub ambassador: String,
    pub role: String,
    pub body_md: String,
    pub photo_url: Option<String>,
    pub photo_alt: Option<String>,
    pub status: StoryStatus,
    pub source: String,
    #[serde(with = "rfc3339_opt")]
    pub consent_at: Option<DateTime<Utc>>,
    pub consent_source: Option<String>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_opt")]
    pub approved_at: Option<DateTime<Utc>>,
    /// Who approved it: `cli` or a desk user's address.
    pub approved_by: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub rejected_at: Option<DateTime<Utc>>,
    /// Who rejected it: `cli` or a desk user's address.
    pub rejected_by: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub published_at: Option<DateTime<Utc>>,
    pub issue_id: Option<IssueId>,
}

const STORY_COLS: &str = "s.id, s.title, a.name, a.role, s.body_md, COALESCE(s.photo_url, a.photo_url), s.photo_alt, s.status, s.source, s.consent_at, s.consent_source, s.created_at, s.approved_at, s.published_at, s.issue_id, s.approved_by, s.rejected_at, s.rejected_by";

fn story_row(r: &Row<'_>) -> rusqlite::Result<Story> {
    Ok(Story {
        id: r.get(0)?,
        title: r.get(1)?,
        ambassador: r.get(2)?,
        role: r.get(3)?,
        body_md: r.get(4)?,
        photo_url: r.get(5)?,
        photo_alt: r.get(6)?,
        status: r.get(7)?,
        source: r.get(8)?,
        consent_at: time_opt(r, 9)?,
        consent_source: r.get(10)?,
        created_at: time(r, 11)?,
        approved_at: time_opt(r, 12)?,
        published_at: time_opt(r, 13)?,
        issue_id: r.get(14)?,
        approved_by: r.get(15)?,
        rejected_at: time_opt(r, 16)?,
        rejected_by: r.get(17)?,
    })
}

pub struct NewStory<'a> {
    pub title: &'a str,
    pub ambassador: AmbassadorId,
    pub body_md: &'a str,
    pub photo_url: Option<&'a str>,
    pub photo_alt: Option<&'a str>,
    pub source: &'a str,
    pub message: Option<MessageRowId>,
    /// Consent given with the story itself (the coordinator adds it).
    pub consent_source: Option<&'a str>,
}

impl Store<'_> {
    /// Adds an ambassador or updates the one with that name; empty fields keep what was known.
    pub fn upsert_ambassador(
        &self,
        name: &str,
        role: &str,
        photo_url: Option<&str>,
        email: Option<&str>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<AmbassadorId> {
        Ok(self.c.query_row(
            "INSERT INTO ambassadors(name, role, photo_url, email, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET role = CASE WHEN excluded.role = '' THEN role ELSE excluded.role END,
                 photo_url = COALESCE(excluded.photo_url, photo_url), email = COALESCE(excluded.email, email)
             RETURNING id",
            params![name, role, photo_url, email, Ts(now)],
            |r| r.get(0),
        )?)
    }

    pub fn ambassador_by_email(&self, email: &str) -> anyhow::Result<Option<Ambassador>> {
        Ok(self
            .c
            .query_row("SELECT id, name, role, photo_url, email FROM ambassadors WHERE email = ?1", [email], ambassador)
            .optional()?)
    }

    pub fn ambassadors(&self) -> anyhow::Result<Vec<Ambassador>> {
        let mut st = self.c.prepare("SELECT id, name, role, photo_url, email FROM ambassadors ORDER BY name")?;
        let rows = st.query_map([], ambassador)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn insert_story(&self, s: &NewStory<'_>, now: DateTime<Utc>) -> anyhow::Result<StoryId> {
        self.c.execute(
            "INSERT INTO stories(title, ambassador_id, body_md, photo_url, photo_alt, status, source, message_id, consent_at, consent_source, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'submitted', ?6, ?7, ?8, ?9, ?10)",
            params![
                s.title,
                s.ambassador,
                s.body_md,
                s.photo_url,
                s.photo_alt,
                s.source,
                s.message,
                s.consent_source.map(|_| Ts(now)),
                s.consent_source,
                Ts(now)
            ],
        )?;
        Ok(StoryId(self.c.last_insert_rowid()))
    }

    pub fn story(&self, id: StoryId) -> anyhow::Result<Option<Story>> {
        let q =
            format!("SELECT {STORY_COLS} FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id WHERE s.id = ?1");
        Ok(self.c.query_row(&q, [id], story_row).optional()?)
    }

    pub fn stories(&self, status: Option<StoryStatus>) -> anyhow::Result<Vec<Story>> {
        let q = format!(
            "SELECT {STORY_COLS} FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id WHERE ?1 IS NULL OR s.status = ?1 ORDER BY s.id"
        );
        let mut st = self.c.prepare(&q)?;
        let rows = st.query_map([status], story_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Approved stories with consent that no issue took yet, oldest approval first.
    pub fn stories_ready(&self, limit: u32) -> anyhow::Result<Vec<Story>> {
        let q = format!(
            "SELECT {STORY_COLS} FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id
             WHERE s.status = 'approved' AND s.consent_at IS NOT NULL AND s.issue_id IS NULL ORDER BY s.approved_at, s.id LIMIT ?1"
        );
        let mut st = self.c.prepare(&q)?;
        let rows = st.query_map([limit], story_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a story, stamping the time of the move; refuses what
    /// [`StoryStatus::can_become`] does not allow.
    pub fn move_story(&self, id: StoryId, to: StoryStatus, now: DateTime<Utc>) -> anyhow::Result<()> {
        let from: StoryStatus = self
            .c
            .query_row("SELECT status FROM stories WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| anyhow::anyhow!("there is no story {id}"))?;
        if from == to {
            return Ok(());
        }
        if !from.can_become(to) {
            return Err(IllegalTransition { what: "story", id: id.get(), from: from.as_str(), to: to.as_str() }.into());
        }
        let sql = match to {
            StoryStatus::Approved => "UPDATE stories SET status = ?2, approved_at = ?3 WHERE id = ?1",
            StoryStatus::Rejected => "UPDATE stories SET status = ?2, rejected_at = ?3, issue_id = NULL WHERE id = ?1",
            StoryStatus::Published => "UPDATE stories SET status = ?2, published_at = ?3 WHERE id = ?1",
            StoryStatus::Submitted => {
                "UPDATE stories SET status = ?2, approved_at = NULL, issue_id = NULL WHERE id = ?1 AND ?3 IS NOT NULL"
            }
        };
        self.c.execute(sql, params![id, to, Ts(now)])?;
        Ok(())
    }

    /// Records who made the last move of a story: `approved_by` after an approval,
    /// `rejected_by` after a rejection (other moves record no one).
    pub fn record_story_decision(&self, id: StoryId, by: &str) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE stories SET approved_by = CASE WHEN status = 'approved' THEN ?2 ELSE approved_by END,
                 rejected_by = CASE WHEN status = 'rejected' THEN ?2 ELSE rejected_by END WHERE id = ?1",
            params![id, by],
        )?;
        Ok(())
    }

    pub fn record_story_consent(&self, id: StoryId, source: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE stories SET consent_at = ?2, consent_source = ?3 WHERE id = ?1 AND consent_at IS NULL",
            params![id, Ts(now), source],
        )?;
        Ok(())
    }

    /// What a consent to publish must answer: the Message-ID of our reply to the story
    /// mail (which asks for consent), and the ambassador's registered address.
    pub fn story_consent_request(&self, id: StoryId) -> anyhow::Result<(Option<String>, Option<String>)> {
        Ok(self
            .c
            .query_row(
                "SELECT (SELECT o.message_id FROM outbox o WHERE o.reply_to_msg = s.message_id AND o.kind = 'auto_reply'), a.email
                 FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id WHERE s.id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((None, None)))
    }

    /// The story submitted by mail whose conversation this is.
    pub fn story_by_conversation(&self, conversation: ConversationId) -> anyhow::Result<Option<StoryId>> {
        Ok(self
            .c
            .query_row(
                "SELECT s.id FROM stories s JOIN messages m ON m.id = s.message_id WHERE m.conversation_id = ?1 ORDER BY s.id DESC LIMIT 1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?)
    }
}
