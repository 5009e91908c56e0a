//! Everything stored about one person, found by their address: read whole for
//! `outreach person export`, removed for `outreach person erase` (the rule that decides
//! what erasing does is `newsletter::person`), and the list of erased addresses
//! (`suppressed`, hashes only).
//!
//! An address matches when it is the same mailbox: compared lower case and without a
//! `+tag` ([`EmailAddress::normalized`]), as contacts are kept.

use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::Store;
use super::inbox::FiledMessage;
use super::stories::{Ambassador, Story};
use super::subscribers::Subscriber;
use super::types::{Ts, time, time_opt};
use crate::domain::ids::{
    AmbassadorId, ContactId, ConversationId, DeliveryId, IssueId, MessageRowId, OutboxId, StoryId, SubscriberId,
};
use crate::domain::state::{DeliveryStatus, OutboxKind, OutboxStatus};
use crate::domain::time::{rfc3339, rfc3339_opt};
use crate::domain::{Category, EmailAddress, case_reference};

/// The rows that are about one person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonRows {
    pub contacts: Vec<ContactId>,
    /// Messages they sent (From or Reply-To is their address).
    pub messages: Vec<MessageRowId>,
    /// Their conversations: of their contact, or of a message they sent.
    pub conversations: Vec<ConversationId>,
    pub subscribers: Vec<SubscriberId>,
    /// Mail to them: to their address, about their subscription, or answering their mail.
    pub outbox: Vec<OutboxId>,
    pub ambassadors: Vec<AmbassadorId>,
    /// Stories they wrote (as an ambassador) or sent in by mail.
    pub stories: Vec<StoryId>,
    /// The names they gave (contact, subscriber, ambassador, the From of their mail).
    pub names: Vec<String>,
}

impl PersonRows {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.messages.is_empty()
            && self.conversations.is_empty()
            && self.subscribers.is_empty()
            && self.outbox.is_empty()
            && self.ambassadors.is_empty()
            && self.stories.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: ContactId,
    pub email: String,
    pub name: Option<String>,
    pub language: Option<String>,
    #[serde(with = "rfc3339")]
    pub first_seen_at: DateTime<Utc>,
    #[serde(with = "rfc3339_opt")]
    pub last_auto_reply_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub case_reference: String,
    pub category: Category,
    /// The subject as it is compared (`Re:` and such removed).
    pub subject: String,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

/// A newsletter copy for one of their subscriptions.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub issue_id: IssueId,
    pub issue_subject: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The SMTP answer or why it was not sent.
    pub detail: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub sent_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339_opt")]
    pub bounced_at: Option<DateTime<Utc>>,
    pub bounce_status: Option<String>,
}

/// A mail we queued for them, without its bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Outgoing {
    pub id: OutboxId,
    pub kind: OutboxKind,
    pub to: String,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub message_id: String,
    /// Size of the stored message in bytes (0 once its text was removed).
    pub size: i64,
    pub last_error: Option<String>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_opt")]
    pub sent_at: Option<DateTime<Utc>>,
}

/// Everything stored about one person.
#[derive(Debug, Clone, Serialize)]
pub struct PersonRecord {
    pub contact: Option<Contact>,
    /// With their text (`body`).
    pub messages: Vec<FiledMessage>,
    pub conversations: Vec<Conversation>,
    /// With the consent record (`consent_source`, `consent_at`, `confirmed_at`, ...).
    pub subscribers: Vec<Subscriber>,
    pub deliveries: Vec<Delivery>,
    pub outbox: Vec<Outgoing>,
    pub ambassador: Option<Ambassador>,
    pub stories: Vec<Story>,
}

/// A text column that may name a person, and where its row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    MessageSubject,
    MessageBody,
    MessageFromName,
    MessageReason,
    MessageReplyNote,
    ConversationSubject,
    OutboxError,
    DeliveryError,
    DaemonState,
    SubscriberSource,
    SubscriberConsent,
    SubscriberUnsubscribeSource,
    SubscriberBounceReason,
    StorySource,
    StoryConsent,
    StoryApprovedBy,
    StoryRejectedBy,
    IssueApprovedBy,
    IssueNote,
    MessageTo,
    MessageCc,
    DeskEventBody,
    DeskEventDetail,
    MessageHtml,
    MessageAttachments,
    DeskEventActor,
}

impl Place {
    pub const ALL: [Place; 26] = [
        Place::MessageSubject,
        Place::MessageBody,
        Place::MessageFromName,
        Place::MessageReason,
        Place::MessageReplyNote,
        Place::ConversationSubject,
        Place::OutboxError,
        Place::DeliveryError,
        Place::DaemonState,
        Place::SubscriberSource,
        Place::SubscriberConsent,
        Place::SubscriberUnsubscribeSource,
        Place::SubscriberBounceReason,
        Place::StorySource,
        Place::StoryConsent,
        Place::StoryApprovedBy,
        Place::StoryRejectedBy,
        Place::IssueApprovedBy,
        Place::IssueNote,
        Place::MessageTo,
        Place::MessageCc,
        Place::DeskEventBody,
        Place::DeskEventDetail,
        Place::MessageHtml,
        Place::MessageAttachments,
        Place::DeskEventActor,
    ];

    /// `(table, key column, text column)`.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Place::MessageSubject => ("messages", "id", "subject"),
            Place::MessageBody => ("messages", "id", "body_text"),
            Place::MessageFromName => ("messages", "id", "from_name"),
            Place::MessageReason => ("messages", "id", "reason"),
            Place::MessageReplyNote => ("messages", "id", "reply_note"),
            Place::ConversationSubject => ("conversations", "id", "subject_norm"),
            Place::OutboxError => ("outbox", "id", "last_error"),
            Place::DeliveryError => ("deliveries", "id", "last_error"),
            Place::DaemonState => ("daemon_state", "key", "value"),
            Place::SubscriberSource => ("subscribers", "id", "source"),
            Place::SubscriberConsent => ("subscribers", "id", "consent_source"),
            Place::SubscriberUnsubscribeSource => ("subscribers", "id", "unsubscribe_source"),
            Place::SubscriberBounceReason => ("subscribers", "id", "bounce_reason"),
            Place::StorySource => ("stories", "id", "source"),
            Place::StoryConsent => ("stories", "id", "consent_source"),
            Place::StoryApprovedBy => ("stories", "id", "approved_by"),
            Place::StoryRejectedBy => ("stories", "id", "rejected_by"),
            Place::IssueApprovedBy => ("issues", "id", "approved_by"),
            Place::IssueNote => ("issues", "id", "note"),
            Place::MessageTo => ("messages", "id", "to_addrs"),
            Place::MessageCc => ("messages", "id", "cc_addrs"),
            Place::DeskEventBody => ("desk_events", "id", "body"),
            Place::DeskEventDetail => ("desk_events", "id", "detail"),
            Place::MessageHtml => ("messages", "id", "body_html"),
            Place::MessageAttachments => ("messages", "id", "attachments"),
            Place::DeskEventActor => ("desk_events", "id", "actor"),
        }
    }
}

/// A text that names a person: where it is and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Mention {
    pub place: Place,
    key: Value,
    pub text: String,
}

/// Whether a stored address (lower case or not, with a `+tag` or not, or as the raw
/// text of an unparseable From) is `addr`'s mailbox.
fn same_mailbox(stored: &str, addr: &EmailAddress) -> bool {
    match EmailAddress::parse(stored) {
        Ok(a) => a.normalized() == addr.normalized(),
        Err(_) => {
            let s = stored.trim().to_lowercase();
            s.contains(addr.as_str()) || s.contains(&addr.normalized())
        }
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

impl Store<'_> {
    /// Ids of `(id, text)` rows of a query whose text is `addr`'s mailbox. The query
    /// takes the domain (`@example.nl`, lower case) as `?1` to narrow the scan.
    fn matching<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        addr: &EmailAddress,
    ) -> anyhow::Result<Vec<(T, Option<String>)>> {
        let at_domain = format!("@{}", addr.domain());
        let mut st = self.c.prepare(sql)?;
        let rows = st.query_map([&at_domain], |r| Ok((r.get::<_, T>(0)?, r.get::<_, Option<String>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, text) = row?;
            if text.as_deref().is_some_and(|t| same_mailbox(t, addr)) {
                out.push((id, text));
            }
        }
        Ok(out)
    }

    /// The rows that are about the person with this address.
    pub fn person_rows(&self, addr: &EmailAddress) -> anyhow::Result<PersonRows> {
        let mut p = PersonRows::default();
        for (id, _) in
            self.matching::<ContactId>("SELECT id, email FROM contacts WHERE instr(lower(email), ?1)", addr)?
        {
            p.contacts.push(id);
        }
        for col in ["from_addr", "reply_to"] {
            let sql = format!("SELECT id, {col} FROM messages WHERE instr(lower({col}), ?1)");
            for (id, _) in self.matching::<MessageRowId>(&sql, addr)? {
                push_unique(&mut p.messages, id);
            }
        }
        p.messages.sort_unstable();
        for (id, _) in
            self.matching::<SubscriberId>("SELECT id, email FROM subscribers WHERE instr(lower(email), ?1)", addr)?
        {
            p.subscribers.push(id);
        }
        for (id, _) in
            self.matching::<AmbassadorId>("SELECT id, email FROM ambassadors WHERE instr(lower(email), ?1)", addr)?
        {
            p.ambassadors.push(id);
        }
        for (id, _) in self.matching::<OutboxId>("SELECT id, rcpt FROM outbox WHERE instr(lower(rcpt), ?1)", addr)? {
            p.outbox.push(id);
        }
        for s in &p.subscribers {
            let mut st = self.c.prepare("SELECT id FROM outbox WHERE subscriber_id = ?1")?;
            for id in st.query_map([s], |r| r.get::<_, OutboxId>(0))? {
                push_unique(&mut p.outbox, id?);
            }
        }
        for m in &p.messages {
            let mut st = self.c.prepare("SELECT id FROM outbox WHERE reply_to_msg = ?1")?;
            for id in st.query_map([m], |r| r.get::<_, OutboxId>(0))? {
                push_unique(&mut p.outbox, id?);
            }
            let conv: Option<ConversationId> =
                self.c.query_row("SELECT conversation_id FROM messages WHERE id = ?1", [m], |r| r.get(0))?;
            if let Some(c) = conv {
                push_unique(&mut p.conversations, c);
            }
            let mut st = self.c.prepare("SELECT id FROM stories WHERE message_id = ?1")?;
            for id in st.query_map([m], |r| r.get::<_, StoryId>(0))? {
                push_unique(&mut p.stories, id?);
            }
        }
        p.outbox.sort_unstable();
        for c in &p.contacts {
            let mut st = self.c.prepare("SELECT id FROM conversations WHERE contact_id = ?1")?;
            for id in st.query_map([c], |r| r.get::<_, ConversationId>(0))? {
                push_unique(&mut p.conversations, id?);
            }
        }
        p.conversations.sort_unstable();
        for a in &p.ambassadors {
            let mut st = self.c.prepare("SELECT id FROM stories WHERE ambassador_id = ?1")?;
            for id in st.query_map([a], |r| r.get::<_, StoryId>(0))? {
                push_unique(&mut p.stories, id?);
            }
        }
        p.stories.sort_unstable();
        let mut names = Vec::new();
        for (sql, ids) in [
            ("SELECT name FROM contacts WHERE id = ?1", p.contacts.iter().map(|i| i.get()).collect::<Vec<_>>()),
            ("SELECT name FROM subscribers WHERE id = ?1", p.subscribers.iter().map(|i| i.get()).collect()),
            ("SELECT name FROM ambassadors WHERE id = ?1", p.ambassadors.iter().map(|i| i.get()).collect()),
            ("SELECT from_name FROM messages WHERE id = ?1", p.messages.iter().map(|i| i.get()).collect()),
        ] {
            for id in ids {
                let name: Option<String> = self.c.query_row(sql, [id], |r| r.get(0))?;
                if let Some(n) = name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()) {
                    push_unique(&mut names, n);
                }
            }
        }
        p.names = names;
        Ok(p)
    }

    /// Everything stored in these rows (for an export).
    pub fn person_record(&self, p: &PersonRows) -> anyhow::Result<PersonRecord> {
        let contact = match p.contacts.first() {
            Some(id) => self
                .c
                .query_row(
                    "SELECT id, email, name, language, first_seen_at, last_auto_reply_at FROM contacts WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(Contact {
                            id: r.get(0)?,
                            email: r.get(1)?,
                            name: r.get(2)?,
                            language: r.get(3)?,
                            first_seen_at: time(r, 4)?,
                            last_auto_reply_at: time_opt(r, 5)?,
                        })
                    },
                )
                .optional()?,
            None => None,
        };
        let mut messages = Vec::new();
        for id in &p.messages {
            messages.extend(self.filed_message(*id)?);
        }
        let mut conversations = Vec::new();
        for id in &p.conversations {
            conversations.push(self.c.query_row(
                "SELECT id, category, subject_norm, created_at, updated_at FROM conversations WHERE id = ?1",
                [id],
                |r| {
                    let id: ConversationId = r.get(0)?;
                    Ok(Conversation {
                        id,
                        case_reference: case_reference(id),
                        category: r.get(1)?,
                        subject: r.get(2)?,
                        created_at: time(r, 3)?,
                        updated_at: time(r, 4)?,
                    })
                },
            )?);
        }
        let mut subscribers = Vec::new();
        let mut deliveries = Vec::new();
        for id in &p.subscribers {
            subscribers.extend(self.subscriber(*id)?);
            let mut st = self.c.prepare(
                "SELECT d.id, d.issue_id, i.subject, d.status, d.attempts, d.last_error, d.sent_at, d.bounced_at, d.bounce_status
                 FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE d.subscriber_id = ?1 ORDER BY d.id",
            )?;
            let rows = st.query_map([id], |r| {
                Ok(Delivery {
                    id: r.get(0)?,
                    issue_id: r.get(1)?,
                    issue_subject: r.get(2)?,
                    status: r.get(3)?,
                    attempts: r.get(4)?,
                    detail: r.get(5)?,
                    sent_at: time_opt(r, 6)?,
                    bounced_at: time_opt(r, 7)?,
                    bounce_status: r.get(8)?,
                })
            })?;
            for d in rows {
                deliveries.push(d?);
            }
        }
        let mut outbox = Vec::new();
        for id in &p.outbox {
            outbox.push(self.c.query_row(
                "SELECT id, kind, rcpt, status, attempts, message_id, length(raw), last_error, created_at, sent_at
                 FROM outbox WHERE id = ?1",
                [id],
                |r| {
                    Ok(Outgoing {
                        id: r.get(0)?,
                        kind: r.get(1)?,
                        to: r.get(2)?,
                        status: r.get(3)?,
                        attempts: r.get(4)?,
                        message_id: r.get(5)?,
                        size: r.get(6)?,
                        last_error: r.get(7)?,
                        created_at: time(r, 8)?,
                        sent_at: time_opt(r, 9)?,
                    })
                },
            )?);
        }
        let ambassador = match p.ambassadors.first() {
            Some(id) => self.ambassadors()?.into_iter().find(|a| a.id == *id),
            None => None,
        };
        let mut stories = Vec::new();
        for id in &p.stories {
            stories.extend(self.story(*id)?);
        }
        Ok(PersonRecord { contact, messages, conversations, subscribers, deliveries, outbox, ambassador, stories })
    }

    /// Removes what identifies the sender from messages they sent: address, name, subject,
    /// text and the notes that repeat them. The row stays (its dedupe key keeps a mail
    /// still in the mailbox from being filed and answered again).
    pub fn forget_messages(&self, ids: &[MessageRowId]) -> anyhow::Result<()> {
        for id in ids {
            self.c.execute(
                "UPDATE messages SET from_addr = NULL, from_name = NULL, reply_to = NULL, subject = '', body_text = '',
                        body_html = NULL, attachments = '[]', reason = 'erased on request', reply_note = 'erased on request' WHERE id = ?1",
                [id],
            )?;
        }
        Ok(())
    }

    /// Ends everything that lets this address into the web desk: its login links,
    /// sessions and password. Returns how many rows went. (Who did what on the desk
    /// stays, the address rewritten as any other mention.)
    /// `emails`: the address as given and its normalized form (the desk keeps that).
    pub fn forget_desk_user(&self, emails: &[&str]) -> anyhow::Result<usize> {
        let mut n = 0;
        for table in ["desk_login_links", "desk_sessions", "desk_passwords"] {
            for email in emails {
                n += self.c.execute(&format!("DELETE FROM {table} WHERE email = ?1"), [email])?;
            }
        }
        Ok(n)
    }

    /// Cuts conversations loose from the person: no contact, no subject.
    pub fn forget_conversations(&self, ids: &[ConversationId]) -> anyhow::Result<()> {
        for id in ids {
            self.c.execute("UPDATE conversations SET contact_id = NULL, subject_norm = '' WHERE id = ?1", [id])?;
        }
        Ok(())
    }

    /// Deletes contacts (their conversations must be cut loose first).
    pub fn delete_contacts(&self, ids: &[ContactId]) -> anyhow::Result<()> {
        for id in ids {
            self.c.execute("UPDATE conversations SET contact_id = NULL WHERE contact_id = ?1", [id])?;
            self.c.execute("DELETE FROM contacts WHERE id = ?1", [id])?;
        }
        Ok(())
    }

    /// Deletes outgoing mail: the row, its bytes and its recipient. A row being sent
    /// right now is still recorded by the sender, which then finds nothing to update.
    pub fn delete_outgoing(&self, ids: &[OutboxId]) -> anyhow::Result<()> {
        for id in ids {
            self.c.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
        }
        Ok(())
    }

    /// Erases a subscriber row: no address (`erased-N`), no name, no consent text, no
    /// error texts of their deliveries (SMTP answers quote the address), a new nonce so
    /// old links die. Deliveries still to go are skipped; the rows stay, so the counts
    /// of past issues stay right.
    pub fn erase_subscriber(&self, id: SubscriberId, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE deliveries SET status = 'skipped' WHERE subscriber_id = ?1 AND status IN ('pending', 'retry')",
            [id],
        )?;
        self.c.execute(
            "UPDATE deliveries SET last_error = 'erased on request' WHERE subscriber_id = ?1 AND last_error IS NOT NULL",
            [id],
        )?;
        self.c.execute(
            "UPDATE subscribers SET email = 'erased-' || id, name = NULL, status = 'unsubscribed', unsubscribed_at = COALESCE(unsubscribed_at, ?2),
                    unsubscribe_source = 'erased on request', consent_source = NULL, token_nonce = lower(hex(randomblob(16)))
             WHERE id = ?1",
            params![id, Ts(now)],
        )?;
        Ok(())
    }

    /// An ambassador can no longer be found by, or send stories from, the address.
    pub fn forget_ambassador_address(&self, id: AmbassadorId) -> anyhow::Result<()> {
        self.c.execute("UPDATE ambassadors SET email = NULL WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Every text in [`Place::ALL`] that contains one of the needles (ASCII case ignored).
    pub fn mentions(&self, needles: &[&str]) -> anyhow::Result<Vec<Mention>> {
        let mut out: Vec<Mention> = Vec::new();
        for place in Place::ALL {
            let (table, key, col) = place.sql();
            let sql = format!("SELECT {key}, {col} FROM {table} WHERE instr(lower({col}), lower(?1)) > 0");
            let mut st = self.c.prepare(&sql)?;
            for needle in needles.iter().filter(|n| !n.is_empty()) {
                let rows = st.query_map([needle], |r| Ok((r.get::<_, Value>(0)?, r.get::<_, String>(1)?)))?;
                for row in rows {
                    let (key, text) = row?;
                    if !out.iter().any(|m| m.place == place && m.key == key) {
                        out.push(Mention { place, key, text });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Drops the HTML of every filed message a mention is in: a name in HTML may hide
    /// from a rewrite (`Ann&nbsp;de&nbsp;Vries`, `ann&#64;...`, split across tags), and
    /// the rewritten text of the message stays. Returns how many messages lost it.
    pub fn drop_html_where_mentioned(&self, mentions: &[Mention]) -> anyhow::Result<usize> {
        let mut n = 0;
        for m in mentions.iter().filter(|m| m.place.sql().0 == "messages") {
            n += self
                .c
                .execute("UPDATE messages SET body_html = NULL WHERE id = ?1 AND body_html IS NOT NULL", [&m.key])?;
        }
        Ok(n)
    }

    /// Writes a mention's new text.
    pub fn rewrite_mention(&self, m: &Mention, text: &str) -> anyhow::Result<()> {
        let (table, key, col) = m.place.sql();
        self.c.execute(&format!("UPDATE {table} SET {col} = ?2 WHERE {key} = ?1"), params![m.key, text])?;
        Ok(())
    }

    /// Outgoing mail to others whose stored bytes contain one of the needles (a notice
    /// that quotes a subject, say): the bytes are removed, and a row not yet sent will
    /// not be.
    pub fn clear_outgoing_mentioning(&self, needles: &[&str]) -> anyhow::Result<usize> {
        let mut n = 0;
        for needle in needles.iter().filter(|n| !n.is_empty()) {
            n += self.c.execute(
                "UPDATE outbox SET raw = x'',
                        status = CASE WHEN status IN ('queued', 'sending') THEN 'failed' ELSE status END,
                        last_error = CASE WHEN status IN ('queued', 'sending') THEN 'erased: it named an erased person' ELSE last_error END
                 WHERE length(raw) > 0 AND instr(lower(CAST(raw AS TEXT)), lower(?1)) > 0",
                [needle],
            )?;
        }
        Ok(n)
    }

    /// Adds a hash to the list of erased addresses.
    pub fn suppress(&self, hash: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO suppressed(email_hash, erased_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![hash, Ts(now)],
        )?;
        Ok(())
    }

    /// The first of these hashes that is on the list of erased addresses.
    pub fn suppressed_hash(&self, hashes: &[&str]) -> anyhow::Result<Option<String>> {
        for h in hashes {
            let found = self
                .c
                .query_row("SELECT email_hash FROM suppressed WHERE email_hash = ?1", [h], |r| r.get(0))
                .optional()?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Replaces a hash on the list by another, keeping the time of the erasure.
    pub fn replace_suppressed(&self, old: &str, new: &str) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO suppressed(email_hash, erased_at) SELECT ?2, erased_at FROM suppressed WHERE email_hash = ?1
             ON CONFLICT DO NOTHING",
            params![old, new],
        )?;
        self.c.execute("DELETE FROM suppressed WHERE email_hash = ?1", [old])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_match_without_case_and_tag() {
        let a = EmailAddress::parse("Ann.Smit@Example.nl").unwrap();
        assert!(same_mailbox("ann.smit@example.nl", &a));
        assert!(same_mailbox("ann.smit+news@example.nl", &a));
        assert!(same_mailbox("\"Ann\" <ANN.SMIT@example.nl> (broken", &a), "raw From text");
        assert!(!same_mailbox("ann.smits@example.nl", &a));
        assert!(!same_mailbox("ann.smit@example.nl.evil", &a));
    }
}
