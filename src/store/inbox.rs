//! Queries for filed messages, their contacts and conversations.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use serde::Serialize;

use super::types::{Ts, time, time_opt};
use super::{Db, Tx};
use crate::domain::ids::{ContactId, ConversationId, MessageRowId};
use crate::domain::state::{ConversationStatus, MessageStatus};
use crate::domain::time::rfc3339;
use crate::domain::{Attachment, Category, Language};

/// A message to file, as the pipeline decided it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub dedupe_key: String,
    /// A hash of what the mail says (see `inbox::parse::content_hash`).
    pub content_hash: Option<String>,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub refs: Vec<String>,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub body_text: String,
    /// The mail's own HTML, unsanitized (see `inbox::parse::ParsedMail::html`).
    pub body_html: Option<String>,
    pub attachments: Vec<Attachment>,
    pub category: Category,
    pub reason: String,
    pub language: Language,
    pub status: MessageStatus,
    pub folder: String,
    pub reply_note: String,
    pub auto_replied: bool,
    pub conversation_id: Option<ConversationId>,
    pub size: i64,
    pub received_at: DateTime<Utc>,
    pub date_header: Option<DateTime<Utc>>,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
}

/// A filed message as the CLI and JSON show it.
#[derive(Debug, Clone, Serialize)]
pub struct FiledMessage {
    pub id: MessageRowId,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub category: Category,
    pub reason: String,
    pub language: Language,
    pub status: MessageStatus,
    pub folder: String,
    #[serde(with = "rfc3339")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub filed_at: DateTime<Utc>,
    pub moved: bool,
    pub conversation_id: Option<ConversationId>,
    pub case_reference: Option<String>,
    pub auto_replied: bool,
    pub reply_note: String,
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub size: i64,
    /// The status of its conversation (`nieuw`, `in behandeling`, `afgehandeld`).
    pub conversation_status: Option<ConversationStatus>,
    /// The valid addresses it was sent to (To and Cc).
    pub to: Vec<String>,
    pub cc: Vec<String>,
    /// Its attachments by name, size and type (the files stay in the mailbox).
    pub attachments: Vec<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The mail's own HTML as it came, unsanitized: whoever shows it must sanitize it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_html: Option<String>,
}

/// A known conversation a message may join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRef {
    pub id: ConversationId,
    pub category: Category,
}

#[derive(Debug, Default, Clone)]
pub struct MessageFilter {
    pub category: Option<Category>,
    pub status: Option<MessageStatus>,
    /// Received at or after.
    pub since: Option<DateTime<Utc>>,
    /// Full-text search (every word, as a prefix) over subject, sender and text.
    pub search: Option<String>,
    pub limit: Option<u32>,
}

pub(super) const FILED_COLUMNS: &str = "id, from_addr, from_name, reply_to, subject, category, reason, language, status, folder, \
     received_at, filed_at, moved_at IS NOT NULL, conversation_id, auto_replied, reply_note, message_id, in_reply_to, size, \
     (SELECT c.status FROM conversations c WHERE c.id = messages.conversation_id), to_addrs, cc_addrs, attachments";

/// What [`filed_with_body`] reads: [`FILED_COLUMNS`], then the text and the HTML.
pub(super) const BODY_COLUMNS: &str = "body_text, body_html";
/// The index of `body_text` when a query selects [`BODY_COLUMNS`] right after [`FILED_COLUMNS`].
const BODY_AT: usize = 23;

/// A row of `SELECT {FILED_COLUMNS}, {BODY_COLUMNS}`.
pub(super) fn filed_with_body(r: &Row<'_>) -> rusqlite::Result<FiledMessage> {
    let mut m = filed_from_row(r)?;
    m.body = Some(r.get(BODY_AT)?);
    m.body_html = r.get(BODY_AT + 1)?;
    Ok(m)
}

pub(super) fn filed_from_row(r: &Row<'_>) -> rusqlite::Result<FiledMessage> {
    let conversation_id: Option<ConversationId> = r.get(13)?;
    Ok(FiledMessage {
        id: r.get(0)?,
        from: r.get(1)?,
        from_name: r.get(2)?,
        reply_to: r.get(3)?,
        subject: r.get(4)?,
        category: r.get(5)?,
        reason: r.get(6)?,
        language: r.get(7)?,
        status: r.get(8)?,
        folder: r.get(9)?,
        received_at: time(r, 10)?,
        filed_at: time(r, 11)?,
        moved: r.get(12)?,
        conversation_id,
        case_reference: conversation_id.map(crate::domain::case_reference),
        auto_replied: r.get(14)?,
        reply_note: r.get(15)?,
        message_id: r.get(16)?,
        in_reply_to: r.get(17)?,
        size: r.get(18)?,
        conversation_status: r.get(19)?,
        to: r.get::<_, String>(20)?.split_whitespace().map(str::to_string).collect(),
        cc: r.get::<_, String>(21)?.split_whitespace().map(str::to_string).collect(),
        // A list that does not read (written by hand, say) shows as none rather than
        // hiding the message.
        attachments: serde_json::from_str(&r.get::<_, String>(22)?).unwrap_or_default(),
        body: None,
        body_html: None,
    })
}

impl Tx<'_> {
    /// The filed message with this dedupe key: `(id, folder, content hash)` (the hash is
    /// `None` for mail filed before hashes were kept).
    pub fn find_filed(&self, dedupe_key: &str) -> anyhow::Result<Option<(MessageRowId, String, Option<String>)>> {
        Ok(self
            .tx
            .query_row("SELECT id, folder, content_hash FROM messages WHERE dedupe_key = ?1", [dedupe_key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    /// The conversation of any message (ours or theirs) with one of these Message-IDs.
    pub fn conversation_by_message_ids(&self, ids: &[String]) -> anyhow::Result<Option<ConversationRef>> {
        self.store().conversation_by_message_ids(ids)
    }

    pub fn conversation(&self, id: ConversationId) -> anyhow::Result<Option<ConversationRef>> {
        Ok(self
            .tx
            .query_row("SELECT id, category FROM conversations WHERE id = ?1", [id], |r| {
                Ok(ConversationRef { id: r.get(0)?, category: r.get(1)? })
            })
            .optional()?)
    }

    /// The latest conversation of this contact with this normalised subject.
    pub fn conversation_by_subject(
        &self,
        contact_id: ContactId,
        subject_norm: &str,
    ) -> anyhow::Result<Option<ConversationRef>> {
        Ok(self
            .tx
            .query_row(
                "SELECT id, category FROM conversations WHERE contact_id = ?1 AND subject_norm = ?2 ORDER BY id DESC LIMIT 1",
                params![contact_id, subject_norm],
                |r| Ok(ConversationRef { id: r.get(0)?, category: r.get(1)? }),
            )
            .optional()?)
    }

    /// The contact id for a normalized address, creating the contact when new.
    /// Returns `(id, last_auto_reply_at)`.
    pub fn upsert_contact(
        &self,
        email: &str,
        name: Option<&str>,
        language: Language,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(ContactId, Option<DateTime<Utc>>)> {
        self.tx.execute(
            "INSERT INTO contacts(email, name, language, first_seen_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(email) DO UPDATE SET name = COALESCE(excluded.name, contacts.name), language = excluded.language",
            params![email, name, language, Ts(now)],
        )?;
        Ok(self.tx.query_row("SELECT id, last_auto_reply_at FROM contacts WHERE email = ?1", [email], |r| {
            Ok((r.get(0)?, time_opt(r, 1)?))
        })?)
    }

    pub fn set_contact_replied(&self, contact_id: ContactId, at: DateTime<Utc>) -> anyhow::Result<()> {
        self.tx.execute("UPDATE contacts SET last_auto_reply_at = ?2 WHERE id = ?1", params![contact_id, Ts(at)])?;
        Ok(())
    }

    pub fn create_conversation(
        &self,
        contact_id: Option<ContactId>,
        category: Category,
        subject_norm: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationId> {
        self.tx.execute(
            "INSERT INTO conversations(contact_id, category, subject_norm, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![contact_id, category, subject_norm, Ts(now)],
        )?;
        Ok(ConversationId(self.tx.last_insert_rowid()))
    }

    pub fn touch_conversation(&self, id: ConversationId, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.tx.execute("UPDATE conversations SET updated_at = ?2 WHERE id = ?1", params![id, Ts(now)])?;
        Ok(())
    }

    /// Inserts a filed message and returns its id.
    pub fn insert_message(&self, m: &NewMessage, now: DateTime<Utc>) -> anyhow::Result<MessageRowId> {
        self.tx.execute(
            "INSERT INTO messages(dedupe_key, message_id, in_reply_to, refs, from_addr, from_name, reply_to, subject, body_text,
                 category, reason, language, status, folder, reply_note, auto_replied, conversation_id, size, received_at,
                 date_header, filed_at, uidvalidity, uid, content_hash, body_html, attachments)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24,
                     ?25, ?26)",
            params![
                m.dedupe_key,
                m.message_id,
                m.in_reply_to,
                m.refs.join(" "),
                m.from_addr,
                m.from_name,
                m.reply_to,
                m.subject,
                m.body_text,
                m.category,
                m.reason,
                m.language,
                m.status,
                m.folder,
                m.reply_note,
                m.auto_replied,
                m.conversation_id,
                m.size,
                Ts(m.received_at),
                m.date_header.map(Ts),
                Ts(now),
                m.uidvalidity,
                m.uid,
                m.content_hash,
                m.body_html,
                serde_json::to_string(&m.attachments)?,
            ],
        )?;
        Ok(MessageRowId(self.tx.last_insert_rowid()))
    }

    /// Marks a message as answered by an auto-reply.
    pub fn set_auto_replied(&self, message_id: MessageRowId, note: &str) -> anyhow::Result<()> {
        self.tx.execute(
            "UPDATE messages SET auto_replied = 1, reply_note = ?2 WHERE id = ?1",
            params![message_id, note],
        )?;
        Ok(())
    }
}

impl Db {
    /// Records that these messages were moved to their folder on the server.
    pub fn mark_moved(&mut self, ids: &[MessageRowId], now: DateTime<Utc>) -> anyhow::Result<()> {
        let now = crate::domain::time::ts(now);
        let tx = self.conn.transaction()?;
        for chunk in ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!(
                "UPDATE messages SET moved_at = ?, imap_folder = folder WHERE moved_at IS NULL AND id IN ({placeholders})"
            );
            let mut values: Vec<rusqlite::types::Value> = vec![now.clone().into()];
            values.extend(chunk.iter().map(|i| i.get().into()));
            tx.execute(&sql, params_from_iter(values))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// UIDs of filed messages whose move was not recorded, for this UIDVALIDITY.
    pub fn unmoved_uids(&self, uidvalidity: u32) -> anyhow::Result<Vec<(MessageRowId, u32)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, uid FROM messages WHERE moved_at IS NULL AND uidvalidity = ?1 AND uid IS NOT NULL")?;
        let rows = st.query_map([uidvalidity], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Which of these UIDs (under this UIDVALIDITY) belong to filed messages.
    pub fn filed_uids_among(&self, uidvalidity: u32, uids: &[u32]) -> anyhow::Result<HashSet<u32>> {
        let mut out = HashSet::new();
        for chunk in uids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(",");
            let sql = format!("SELECT uid FROM messages WHERE uidvalidity = ? AND uid IN ({placeholders})");
            let mut values: Vec<rusqlite::types::Value> = vec![i64::from(uidvalidity).into()];
            values.extend(chunk.iter().map(|u| i64::from(*u).into()));
            let mut st = self.conn.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(values), |r| r.get::<_, u32>(0))?;
            for uid in rows {
                out.insert(uid?);
            }
        }
        Ok(out)
    }

    pub fn list_messages(&self, filter: &MessageFilter) -> anyhow::Result<Vec<FiledMessage>> {
        let search = filter.search.as_deref().and_then(super::desk::fts_query);
        if filter.search.is_some() && search.is_none() {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare(&format!(
            "SELECT {FILED_COLUMNS} FROM messages
             WHERE (?1 IS NULL OR category = ?1) AND (?2 IS NULL OR status = ?2)
               AND (?3 IS NULL OR received_at >= ?3)
               AND (?4 IS NULL OR id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?4))
             ORDER BY id LIMIT ?5"
        ))?;
        let limit = filter.limit.map_or(-1, i64::from);
        let rows =
            st.query_map(params![filter.category, filter.status, filter.since.map(Ts), search, limit], filed_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A filed message with its text and HTML.
    pub fn get_message(&self, id: MessageRowId) -> anyhow::Result<Option<FiledMessage>> {
        self.store().filed_message(id)
    }

    /// Sets a message's status (the coordinator's `new` -> `done`).
    pub fn set_message_status(&self, id: MessageRowId, status: MessageStatus) -> anyhow::Result<bool> {
        Ok(self.conn.execute("UPDATE messages SET status = ?2 WHERE id = ?1", params![id, status])? == 1)
    }

    /// Counts of filed messages per category and status.
    pub fn message_counts(&self) -> anyhow::Result<Vec<(Category, MessageStatus, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT category, status, COUNT(*) FROM messages GROUP BY category, status ORDER BY category, status",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Filed messages whose IMAP move has not been confirmed.
    pub fn unmoved_count(&self) -> anyhow::Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM messages WHERE moved_at IS NULL AND uid IS NOT NULL",
            [],
            |r| r.get(0),
        )?)
    }
}

impl super::Store<'_> {
    /// The conversation of any message (ours or theirs) with one of these Message-IDs.
    pub fn conversation_by_message_ids(&self, ids: &[String]) -> anyhow::Result<Option<ConversationRef>> {
        for id in ids.iter().rev() {
            let found = self
                .c
                .query_row(
                    "SELECT c.id, c.category FROM conversations c WHERE c.id = (
                         SELECT conversation_id FROM messages WHERE message_id = ?1 AND conversation_id IS NOT NULL
                         UNION ALL
                         SELECT conversation_id FROM outbox WHERE message_id = ?1 AND conversation_id IS NOT NULL
                         LIMIT 1)",
                    [id],
                    |r| Ok(ConversationRef { id: r.get(0)?, category: r.get(1)? }),
                )
                .optional()?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}
