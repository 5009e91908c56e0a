//! The coordinator's desk: conversations as the unit of work, their status, the history
//! of what the coordinator did (`desk_events`) and full-text search over filed mail.
//! Status moves go through [`Store::move_conversation`], which asks
//! [`ConversationStatus::can_become`].

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Store;
use super::inbox::{BODY_COLUMNS, FILED_COLUMNS, FiledMessage, filed_with_body};
use super::types::{Ts, time, time_opt};
use crate::domain::Category;
use crate::domain::ids::{ConversationId, MessageRowId, OutboxId};
use crate::domain::state::{ConversationStatus, DeskEventKind, IllegalTransition, OutboxKind, OutboxStatus};
use crate::domain::time::{rfc3339, rfc3339_opt};

/// Who did something at the desk: `cli`, `mail client`, or a desk user's address.
pub const ACTOR_CLI: &str = "cli";
pub const ACTOR_MAIL_CLIENT: &str = "mail client";

/// A conversation as a list shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub case_reference: String,
    pub category: Category,
    pub status: ConversationStatus,
    pub subject: String,
    pub contact: Option<String>,
    pub contact_name: Option<String>,
    pub messages: i64,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// When the oldest message still waiting for the coordinator came in.
    #[serde(with = "rfc3339_opt")]
    pub waiting_since: Option<DateTime<Utc>>,
    pub merged_into: Option<ConversationId>,
}

/// One thing the coordinator did.
#[derive(Debug, Clone, Serialize)]
pub struct DeskEvent {
    pub id: i64,
    pub kind: DeskEventKind,
    pub actor: String,
    #[serde(with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub body: String,
    pub detail: String,
    pub outbox_id: Option<OutboxId>,
    /// For an answer: where its delivery stands.
    pub delivery: Option<OutboxStatus>,
}

/// A mail we sent in the conversation (auto-reply or answer), as the queue holds it.
#[derive(Debug, Clone, Serialize)]
pub struct SentInConversation {
    pub id: OutboxId,
    pub kind: OutboxKind,
    pub status: OutboxStatus,
    pub rcpt: String,
    pub cc: String,
    pub message_id: String,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_opt")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub raw: Vec<u8>,
}

/// A whole conversation: its messages, what we sent and what the coordinator did.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    #[serde(flatten)]
    pub summary: ConversationSummary,
    pub messages: Vec<FiledMessage>,
    pub sent: Vec<SentInConversation>,
    pub events: Vec<DeskEvent>,
}

/// A message to move on the server: where it is and where it goes.
#[derive(Debug, Clone)]
pub struct DeskMove {
    pub id: MessageRowId,
    pub message_id: Option<String>,
    pub from: String,
    pub to: String,
}

/// What to list.
#[derive(Debug, Default, Clone)]
pub struct ConversationFilter {
    pub category: Option<Category>,
    pub status: Option<ConversationStatus>,
    /// Only conversations with activity at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Full-text search (words, all of them) over subject, sender and text.
    pub search: Option<String>,
    pub limit: Option<u32>,
}

/// The recipients of a filed message, for an answer that keeps them all.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    pub to: Vec<String>,
    pub cc: Vec<String>,
}

/// Turns what a person types into an FTS5 query: every word must occur (as a prefix),
/// and nothing they type is read as FTS5 syntax.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.' && c != '-' && c != '_')
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{}\"*", w.replace('"', "")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

const SUMMARY_SELECT: &str = "SELECT c.id, c.category, c.status, c.created_at, c.updated_at, c.merged_into,
        (SELECT subject FROM messages WHERE conversation_id = c.id ORDER BY id LIMIT 1),
        k.email, k.name,
        (SELECT COUNT(*) FROM messages WHERE conversation_id = c.id),
        (SELECT MIN(received_at) FROM messages WHERE conversation_id = c.id AND status = 'new')
     FROM conversations c LEFT JOIN contacts k ON k.id = c.contact_id";

fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConversationSummary> {
    let id: ConversationId = r.get(0)?;
    let status: ConversationStatus = r.get(2)?;
    Ok(ConversationSummary {
        id,
        case_reference: crate::domain::case_reference(id),
        category: r.get(1)?,
        status,
        created_at: time(r, 3)?,
        updated_at: time(r, 4)?,
        merged_into: r.get(5)?,
        subject: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
        contact: r.get(7)?,
        contact_name: r.get(8)?,
        messages: r.get(9)?,
        waiting_since: if status.waits() { time_opt(r, 10)? } else { None },
    })
}

impl Store<'_> {
    /// The conversation a filed message belongs to, following merges to the one it
    /// joined.
    pub fn conversation_of(&self, message: MessageRowId) -> anyhow::Result<Option<ConversationId>> {
        let Some(mut id) = self
            .c
            .query_row("SELECT conversation_id FROM messages WHERE id = ?1", [message], |r| {
                r.get::<_, Option<ConversationId>>(0)
            })
            .optional()?
            .flatten()
        else {
            return Ok(None);
        };
        // A chain of merges is short; the bound only guards against a loop in bad data.
        for _ in 0..32 {
            match self
                .c
                .query_row("SELECT merged_into FROM conversations WHERE id = ?1", [id], |r| {
                    r.get::<_, Option<ConversationId>>(0)
                })
                .optional()?
                .flatten()
            {
                Some(next) => id = next,
                None => break,
            }
        }
        Ok(Some(id))
    }

    /// Rewrites the search index without what was deleted from it: FTS5 keeps a deleted
    /// row's words in its index until its segments are merged, and an erasure or the
    /// retention rule must leave no trace (the freed pages are zeroed: `secure_delete`).
    pub fn optimize_search_index(&self) -> anyhow::Result<()> {
        self.c.execute("INSERT INTO messages_fts(messages_fts) VALUES ('optimize')", [])?;
        Ok(())
    }

    /// Whether a filed message with this id exists.
    pub fn message_exists(&self, id: MessageRowId) -> anyhow::Result<bool> {
        Ok(self.c.query_row("SELECT EXISTS(SELECT 1 FROM messages WHERE id = ?1)", [id], |r| r.get(0))?)
    }

    /// A filed message with its text and HTML.
    pub fn filed_message(&self, id: MessageRowId) -> anyhow::Result<Option<FiledMessage>> {
        Ok(self
            .c
            .query_row(
                &format!("SELECT {FILED_COLUMNS}, {BODY_COLUMNS} FROM messages WHERE id = ?1"),
                [id],
                filed_with_body,
            )
            .optional()?)
    }

    /// Marks a conversation as active now (it sorts to the top of the list).
    pub fn touch(&self, id: ConversationId, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute("UPDATE conversations SET updated_at = ?2 WHERE id = ?1", params![id, Ts(now)])?;
        Ok(())
    }

    /// One conversation's summary.
    pub fn conversation_summary(&self, id: ConversationId) -> anyhow::Result<Option<ConversationSummary>> {
        Ok(self.c.query_row(&format!("{SUMMARY_SELECT} WHERE c.id = ?1"), [id], summary_row).optional()?)
    }

    /// Conversations, most recently active first (merged ones are left out).
    pub fn list_conversations(&self, f: &ConversationFilter) -> anyhow::Result<Vec<ConversationSummary>> {
        let search = f.search.as_deref().and_then(fts_query);
        if f.search.is_some() && search.is_none() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "{SUMMARY_SELECT}
             WHERE c.merged_into IS NULL
               AND (?1 IS NULL OR c.category = ?1) AND (?2 IS NULL OR c.status = ?2)
               AND (?3 IS NULL OR c.updated_at >= ?3)
               AND (?4 IS NULL OR c.id IN (SELECT m.conversation_id FROM messages m
                                           WHERE m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?4)))
             ORDER BY c.updated_at DESC, c.id DESC LIMIT ?5"
        );
        let mut st = self.c.prepare(&sql)?;
        let limit = f.limit.map_or(-1, i64::from);
        let rows = st.query_map(params![f.category, f.status, f.since.map(Ts), search, limit], summary_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The whole conversation, merged ones included, in order.
    pub fn conversation_view(&self, id: ConversationId) -> anyhow::Result<Option<ConversationView>> {
        let Some(summary) = self.conversation_summary(id)? else { return Ok(None) };
        let members = self.merged_members(id)?;
        let list = members.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(",");
        let mut st = self.c.prepare(&format!(
            "SELECT {FILED_COLUMNS}, {BODY_COLUMNS} FROM messages WHERE conversation_id IN ({list}) ORDER BY received_at, id"
        ))?;
        let messages = st.query_map([], filed_with_body)?.collect::<Result<Vec<_>, _>>()?;
        let mut st = self.c.prepare(&format!(
            "SELECT id, kind, status, rcpt, cc, message_id, created_at, sent_at, raw FROM outbox
             WHERE conversation_id IN ({list}) AND kind IN ('auto_reply', 'answer') ORDER BY created_at, id"
        ))?;
        let sent = st
            .query_map([], |r| {
                Ok(SentInConversation {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    status: r.get(2)?,
                    rcpt: r.get(3)?,
                    cc: r.get(4)?,
                    message_id: r.get(5)?,
                    created_at: time(r, 6)?,
                    sent_at: time_opt(r, 7)?,
                    raw: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = self.c.prepare(&format!(
            "SELECT e.id, e.kind, e.actor, e.at, e.body, e.detail, e.outbox_id, o.status
             FROM desk_events e LEFT JOIN outbox o ON o.id = e.outbox_id
             WHERE e.conversation_id IN ({list}) ORDER BY e.at, e.id"
        ))?;
        let events = st
            .query_map([], |r| {
                Ok(DeskEvent {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    actor: r.get(2)?,
                    at: time(r, 3)?,
                    body: r.get(4)?,
                    detail: r.get(5)?,
                    outbox_id: r.get(6)?,
                    delivery: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ConversationView { summary, messages, sent, events }))
    }

    /// The conversation and every conversation merged into it (transitively).
    fn merged_members(&self, id: ConversationId) -> anyhow::Result<Vec<ConversationId>> {
        let mut st = self.c.prepare(
            "WITH RECURSIVE m(id) AS (SELECT ?1 UNION SELECT c.id FROM conversations c JOIN m ON c.merged_into = m.id)
             SELECT id FROM m LIMIT 1000",
        )?;
        let rows = st.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records what the coordinator did.
    pub fn record_desk_event(
        &self,
        conversation: ConversationId,
        kind: DeskEventKind,
        actor: &str,
        body: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<i64> {
        self.c.execute(
            "INSERT INTO desk_events(conversation_id, kind, actor, at, body, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![conversation, kind, actor, Ts(now), body, detail],
        )?;
        Ok(self.c.last_insert_rowid())
    }

    /// Records an answer queued in the outbox (its delivery shows with it).
    pub fn record_answer(
        &self,
        conversation: ConversationId,
        actor: &str,
        body: &str,
        detail: &str,
        outbox: OutboxId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<i64> {
        let id = self.record_desk_event(conversation, DeskEventKind::Answer, actor, body, detail, now)?;
        self.c.execute("UPDATE desk_events SET outbox_id = ?2 WHERE id = ?1", params![id, outbox])?;
        Ok(id)
    }

    /// Moves a conversation to another status, refusing a move the state machine does
    /// not allow. Its messages follow: `afgehandeld` marks them done, `nieuw` marks the
    /// latest one new again. Returns the status it had.
    pub fn move_conversation(
        &self,
        id: ConversationId,
        to: ConversationStatus,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationStatus> {
        let from: ConversationStatus = self
            .c
            .query_row("SELECT status FROM conversations WHERE id = ?1", [id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| anyhow::anyhow!("no conversation {}", crate::domain::case_reference(id)))?;
        if !from.can_become(to) {
            return Err(
                IllegalTransition { what: "conversation", id: id.get(), from: from.as_str(), to: to.as_str() }.into()
            );
        }
        self.c
            .execute("UPDATE conversations SET status = ?2, updated_at = ?3 WHERE id = ?1", params![id, to, Ts(now)])?;
        match to {
            ConversationStatus::Done => {
                self.c.execute("UPDATE messages SET status = 'done' WHERE conversation_id = ?1", [id])?;
            }
            ConversationStatus::New => {
                self.c.execute(
                    "UPDATE messages SET status = 'new' WHERE id = (SELECT MAX(id) FROM messages WHERE conversation_id = ?1)",
                    [id],
                )?;
            }
            ConversationStatus::Open => {}
        }
        Ok(from)
    }

    /// The status of a conversation.
    pub fn conversation_status(&self, id: ConversationId) -> anyhow::Result<Option<ConversationStatus>> {
        Ok(self.c.query_row("SELECT status FROM conversations WHERE id = ?1", [id], |r| r.get(0)).optional()?)
    }

    /// Recategorises a conversation: it and its messages get `category`, and messages
    /// get `folder` (the daemon then moves them on the server). Returns the ids of the
    /// messages whose folder changed, with the folder they were in.
    pub fn recategorise(
        &self,
        id: ConversationId,
        category: Category,
        folder: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<(MessageRowId, String)>> {
        let members = self.merged_members(id)?;
        let mut moved = Vec::new();
        for m in members {
            self.c.execute(
                "UPDATE conversations SET category = ?2, updated_at = ?3 WHERE id = ?1",
                params![m, category, Ts(now)],
            )?;
            let mut st =
                self.c.prepare("SELECT id, folder FROM messages WHERE conversation_id = ?1 AND folder <> ?2")?;
            let rows: Vec<(MessageRowId, String)> =
                st.query_map(params![m, folder], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            self.c.execute(
                "UPDATE messages SET category = ?2, folder = ?3 WHERE conversation_id = ?1",
                params![m, category, folder],
            )?;
            moved.extend(rows);
        }
        Ok(moved)
    }

    /// Joins conversation `from` into `into`: `from` no longer shows in lists; its
    /// messages, answers and notes show in `into`.
    pub fn merge_conversations(
        &self,
        from: ConversationId,
        into: ConversationId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if from == into {
            anyhow::bail!("a conversation cannot be merged into itself");
        }
        if self.merged_members(from)?.contains(&into) {
            anyhow::bail!(
                "{} is already part of {}",
                crate::domain::case_reference(into),
                crate::domain::case_reference(from)
            );
        }
        let n = self.c.execute(
            "UPDATE conversations SET merged_into = ?2, updated_at = ?3 WHERE id = ?1 AND merged_into IS NULL",
            params![from, into, Ts(now)],
        )?;
        if n != 1 {
            return Err(crate::domain::state::NotNow(format!(
                "{} was merged already",
                crate::domain::case_reference(from)
            ))
            .into());
        }
        // The joined conversation waits if either did.
        self.c.execute(
            "UPDATE conversations SET updated_at = ?2,
                 status = CASE WHEN status = 'afgehandeld' AND (SELECT status FROM conversations WHERE id = ?3) <> 'afgehandeld'
                               THEN (SELECT status FROM conversations WHERE id = ?3) ELSE status END
             WHERE id = ?1",
            params![into, Ts(now), from],
        )?;
        Ok(())
    }

    /// Sets the recipients a filed message had (lower-case addresses).
    pub fn set_recipients(&self, message: MessageRowId, r: &Recipients) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE messages SET to_addrs = ?2, cc_addrs = ?3 WHERE id = ?1",
            params![message, r.to.join(" "), r.cc.join(" ")],
        )?;
        Ok(())
    }

    /// The recipients a filed message had, and its references (for an answer).
    pub fn recipients(&self, message: MessageRowId) -> anyhow::Result<Recipients> {
        let (to, cc): (String, String) =
            self.c.query_row("SELECT to_addrs, cc_addrs FROM messages WHERE id = ?1", [message], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let split = |s: &str| s.split_whitespace().map(str::to_string).collect();
        Ok(Recipients { to: split(&to), cc: split(&cc) })
    }

    /// The `References` of a filed message (space separated ids, as filed).
    pub fn references_of(&self, message: MessageRowId) -> anyhow::Result<Vec<String>> {
        let refs: Option<String> =
            self.c.query_row("SELECT refs FROM messages WHERE id = ?1", [message], |r| r.get(0)).optional()?.flatten();
        Ok(refs.unwrap_or_default().split_whitespace().map(str::to_string).collect())
    }

    /// What waits for the coordinator: the number of conversations per category and
    /// status (`nieuw`, `in behandeling`).
    pub fn waiting_counts(&self) -> anyhow::Result<Vec<(Category, ConversationStatus, i64)>> {
        let mut st = self.c.prepare(
            "SELECT category, status, COUNT(*) FROM conversations
             WHERE merged_into IS NULL AND status <> 'afgehandeld' GROUP BY category, status ORDER BY category, status",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Conversations that wait, the longest waiting first.
    pub fn waiting_conversations(&self, limit: u32) -> anyhow::Result<Vec<ConversationSummary>> {
        let mut st = self.c.prepare(&format!(
            "{SUMMARY_SELECT} WHERE c.merged_into IS NULL AND c.status <> 'afgehandeld'
             ORDER BY (SELECT MIN(received_at) FROM messages WHERE conversation_id = c.id AND status = 'new') IS NULL,
                      (SELECT MIN(received_at) FROM messages WHERE conversation_id = c.id AND status = 'new'), c.updated_at
             LIMIT ?1"
        ))?;
        let rows = st.query_map([limit], summary_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest desk event in a conversation (for "someone answered since you opened
    /// it").
    pub fn latest_desk_event(&self, id: ConversationId) -> anyhow::Result<Option<i64>> {
        Ok(self
            .c
            .query_row("SELECT MAX(id) FROM desk_events WHERE conversation_id = ?1", [id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    /// Messages the desk moved to another folder that are still in the old one on the
    /// server.
    pub fn desk_moves_due(&self, limit: u32) -> anyhow::Result<Vec<DeskMove>> {
        let mut st = self.c.prepare(
            "SELECT id, message_id, imap_folder, folder FROM messages
             WHERE imap_folder IS NOT NULL AND imap_folder <> folder ORDER BY id LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(DeskMove { id: r.get(0)?, message_id: r.get(1)?, from: r.get(2)?, to: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records where a message is on the server now (and that it belongs there).
    pub fn set_imap_folder(&self, id: MessageRowId, folder: &str) -> anyhow::Result<()> {
        self.c.execute("UPDATE messages SET imap_folder = ?2, folder = ?2 WHERE id = ?1", params![id, folder])?;
        Ok(())
    }

    /// Sent answers whose copy has not been put in the conversation's folder yet:
    /// `(outbox id, folder, the message)`.
    pub fn copies_due(&self, limit: u32) -> anyhow::Result<Vec<(OutboxId, String, Vec<u8>)>> {
        let mut st = self.c.prepare(
            "SELECT id, copy_folder, raw FROM outbox
             WHERE kind IN ('answer') AND status = 'sent' AND copy_folder IS NOT NULL AND copied_at IS NULL
             ORDER BY id LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_copied(&self, id: OutboxId, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute("UPDATE outbox SET copied_at = ?2 WHERE id = ?1", params![id, Ts(now)])?;
        Ok(())
    }

    /// Filed messages with this Message-ID: `(id, where it is on the server)`.
    pub fn filed_by_message_id(&self, message_id: &str) -> anyhow::Result<Vec<(MessageRowId, Option<String>)>> {
        let mut st = self.c.prepare("SELECT id, imap_folder FROM messages WHERE message_id = ?1 ORDER BY id")?;
        let rows = st.query_map([message_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether we sent a mail with this Message-ID (an answer, an auto-reply, ...).
    pub fn is_ours(&self, message_id: &str) -> anyhow::Result<bool> {
        Ok(self.c.query_row("SELECT EXISTS(SELECT 1 FROM outbox WHERE message_id = ?1)", [message_id], |r| r.get(0))?)
    }

    /// Records an answer the coordinator sent from their own mail client, once per
    /// Message-ID; false when it was recorded before.
    pub fn record_client_answer(
        &self,
        conversation: ConversationId,
        body: &str,
        message_id: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let n = self.c.execute(
            "INSERT OR IGNORE INTO desk_events(conversation_id, kind, actor, at, body, detail, message_id)
             VALUES (?1, 'answer', ?2, ?3, ?4, 'sent from the mail client', ?5)",
            params![conversation, ACTOR_MAIL_CLIENT, Ts(now), body, message_id],
        )?;
        Ok(n == 1)
    }
}
