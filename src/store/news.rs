//! Queries for subscribers, ambassadors, stories, newsletter issues and deliveries.
//!
//! Functions take a `&Connection` so they run the same inside the inbox's filing
//! transaction ([`super::Tx::conn`]) and on a plain connection ([`super::Db::conn`],
//! [`super::Db::write`]).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::ts;

#[derive(Debug, Clone, Serialize)]
pub struct Subscriber {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub language: String,
    pub status: String,
    pub source: String,
    pub consent_source: Option<String>,
    pub consent_at: Option<String>,
    pub created_at: String,
    pub confirmed_at: Option<String>,
    pub unsubscribed_at: Option<String>,
    pub unsubscribe_source: Option<String>,
    pub bounced_at: Option<String>,
    pub bounce_reason: Option<String>,
    pub soft_bounces: i64,
    #[serde(skip)]
    pub token_nonce: String,
    #[serde(skip)]
    pub confirm_sent_at: Option<String>,
}

const SUBSCRIBER_COLS: &str = "id, email, name, language, status, source, consent_source, consent_at, created_at, confirmed_at, unsubscribed_at, unsubscribe_source, bounced_at, bounce_reason, soft_bounces, token_nonce, confirm_sent_at";

fn subscriber(r: &Row<'_>) -> rusqlite::Result<Subscriber> {
    Ok(Subscriber {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        language: r.get(3)?,
        status: r.get(4)?,
        source: r.get(5)?,
        consent_source: r.get(6)?,
        consent_at: r.get(7)?,
        created_at: r.get(8)?,
        confirmed_at: r.get(9)?,
        unsubscribed_at: r.get(10)?,
        unsubscribe_source: r.get(11)?,
        bounced_at: r.get(12)?,
        bounce_reason: r.get(13)?,
        soft_bounces: r.get(14)?,
        token_nonce: r.get(15)?,
        confirm_sent_at: r.get(16)?,
    })
}

pub fn subscriber_by_email(c: &Connection, email: &str) -> anyhow::Result<Option<Subscriber>> {
    let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE email = ?1");
    Ok(c.query_row(&q, [email], subscriber).optional()?)
}

pub fn subscriber_by_id(c: &Connection, id: i64) -> anyhow::Result<Option<Subscriber>> {
    let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE id = ?1");
    Ok(c.query_row(&q, [id], subscriber).optional()?)
}

/// Subscribers, optionally of one status, in the order they came.
pub fn list_subscribers(c: &Connection, status: Option<&str>) -> anyhow::Result<Vec<Subscriber>> {
    let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE ?1 IS NULL OR status = ?1 ORDER BY id");
    let mut st = c.prepare(&q)?;
    let rows = st.query_map([status], subscriber)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A new subscriber row; returns its id.
pub struct NewSubscriber<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub language: &'a str,
    pub status: &'a str,
    pub source: &'a str,
    pub consent_source: Option<&'a str>,
    pub consent_at: Option<DateTime<Utc>>,
    pub nonce: &'a str,
}

pub fn insert_subscriber(c: &Connection, s: &NewSubscriber<'_>, now: DateTime<Utc>) -> anyhow::Result<i64> {
    let active = s.status == "active";
    c.execute(
        "INSERT INTO subscribers(email, name, language, status, source, consent_source, consent_at, created_at, confirmed_at, token_nonce)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.email,
            s.name,
            s.language,
            s.status,
            s.source,
            s.consent_source,
            s.consent_at.map(ts),
            ts(now),
            active.then(|| ts(s.consent_at.unwrap_or(now))),
            s.nonce
        ],
    )?;
    Ok(c.last_insert_rowid())
}

/// Back to `pending` (a former subscriber asks again).
pub fn set_pending(c: &Connection, id: i64, source: &str) -> anyhow::Result<()> {
    c.execute(
        "UPDATE subscribers SET status = 'pending', source = ?2, unsubscribed_at = NULL, unsubscribe_source = NULL WHERE id = ?1",
        params![id, source],
    )?;
    Ok(())
}

pub fn set_confirm_sent(c: &Connection, id: i64, now: DateTime<Utc>) -> anyhow::Result<()> {
    c.execute("UPDATE subscribers SET confirm_sent_at = ?2 WHERE id = ?1", params![id, ts(now)])?;
    Ok(())
}

/// `pending` (or a former subscriber) becomes `active`, with the consent that did it.
pub fn activate(c: &Connection, id: i64, consent_source: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let n = c.execute(
        "UPDATE subscribers SET status = 'active', consent_source = ?2, consent_at = ?3, confirmed_at = ?3,
                unsubscribed_at = NULL, unsubscribe_source = NULL, bounced_at = NULL, bounce_reason = NULL, soft_bounces = 0
         WHERE id = ?1 AND status != 'active'",
        params![id, consent_source, ts(now)],
    )?;
    Ok(n > 0)
}

/// Unsubscribes at once: from this moment no delivery to them starts.
pub fn unsubscribe(c: &Connection, id: i64, source: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let n = c.execute(
        "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = ?2, unsubscribe_source = ?3
         WHERE id = ?1 AND status IN ('pending', 'active')",
        params![id, ts(now), source],
    )?;
    skip_open_deliveries(c, id, "unsubscribed before it was sent")?;
    Ok(n > 0)
}

fn skip_open_deliveries(c: &Connection, subscriber_id: i64, why: &str) -> anyhow::Result<()> {
    c.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = ?2 WHERE subscriber_id = ?1 AND status IN ('pending', 'retry')",
        params![subscriber_id, why],
    )?;
    Ok(())
}

pub fn mark_bounced(c: &Connection, id: i64, reason: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    c.execute(
        "UPDATE subscribers SET status = 'bounced', bounced_at = ?2, bounce_reason = ?3 WHERE id = ?1 AND status = 'active'",
        params![id, ts(now), reason],
    )?;
    skip_open_deliveries(c, id, "the address bounced")?;
    Ok(())
}

/// Counts a soft bounce of `issue_id` "in a row": when the subscriber's previous issue
/// got through (its delivery did not bounce), the count starts again at 1. Returns it.
pub fn add_soft_bounce(c: &Connection, id: i64, issue_id: i64) -> anyhow::Result<i64> {
    let previous_bounced: Option<bool> = c
        .query_row(
            "SELECT status = 'bounced' FROM deliveries WHERE subscriber_id = ?1 AND issue_id < ?2 AND status IN ('sent', 'bounced')
             ORDER BY issue_id DESC LIMIT 1",
            [id, issue_id],
            |r| r.get(0),
        )
        .optional()?;
    let sql = if previous_bounced == Some(false) {
        "UPDATE subscribers SET soft_bounces = 1 WHERE id = ?1 RETURNING soft_bounces"
    } else {
        "UPDATE subscribers SET soft_bounces = soft_bounces + 1 WHERE id = ?1 RETURNING soft_bounces"
    };
    Ok(c.query_row(sql, [id], |r| r.get(0))?)
}

/// Erases a subscriber's personal data, keeping a hash of the address so it is never
/// mailed again (MAIL-RULES 6). Their queued mail is dropped.
pub fn erase(c: &Connection, id: i64, email_hash: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    c.execute(
        "INSERT INTO suppressed(email_hash, erased_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![email_hash, ts(now)],
    )?;
    skip_open_deliveries(c, id, "erased")?;
    c.execute(
        "UPDATE outbox SET status = 'failed', last_error = 'erased', raw = x'', rcpt = 'erased' WHERE subscriber_id = ?1",
        [id],
    )?;
    c.execute(
        "UPDATE subscribers SET email = 'erased-' || id, name = NULL, status = 'unsubscribed', unsubscribed_at = COALESCE(unsubscribed_at, ?2),
                unsubscribe_source = 'erased on request', consent_source = NULL, token_nonce = lower(hex(randomblob(16)))
         WHERE id = ?1",
        params![id, ts(now)],
    )?;
    Ok(())
}

/// Deletes sign-ups that stayed `pending` since before `before`, with the mails queued
/// for them. Returns how many.
pub fn forget_unconfirmed(c: &Connection, before: DateTime<Utc>) -> anyhow::Result<usize> {
    let ids: Vec<i64> = {
        let mut st = c.prepare(
            "SELECT id FROM subscribers WHERE status = 'pending' AND created_at < ?1
               AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber_id = subscribers.id)",
        )?;
        st.query_map([ts(before)], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    for id in &ids {
        c.execute(
            "UPDATE outbox SET subscriber_id = NULL, raw = x'', rcpt = 'forgotten', status = CASE WHEN status IN ('queued', 'sending') THEN 'failed' ELSE status END
             WHERE subscriber_id = ?1",
            [id],
        )?;
        c.execute("DELETE FROM subscribers WHERE id = ?1", [id])?;
    }
    Ok(ids.len())
}

/// Removes the text of filed mail and the bytes of sent mail older than `before`.
/// Returns `(messages, sent mails)` cleared.
pub fn purge_mail_text(c: &Connection, before: DateTime<Utc>) -> anyhow::Result<(usize, usize)> {
    let messages =
        c.execute("UPDATE messages SET body_text = '' WHERE received_at < ?1 AND body_text != ''", [ts(before)])?;
    let sent = c.execute(
        "UPDATE outbox SET raw = x'' WHERE status IN ('sent', 'failed') AND created_at < ?1 AND length(raw) > 0",
        [ts(before)],
    )?;
    Ok((messages, sent))
}

pub fn is_suppressed(c: &Connection, email_hash: &str) -> anyhow::Result<bool> {
    Ok(c.query_row("SELECT 1 FROM suppressed WHERE email_hash = ?1", [email_hash], |_| Ok(())).optional()?.is_some())
}

pub fn subscriber_counts(c: &Connection) -> anyhow::Result<Vec<(String, i64)>> {
    let mut st = c.prepare("SELECT status, COUNT(*) FROM subscribers GROUP BY status ORDER BY status")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A mail we sent, found by its Message-ID: what it was and whom or what it was about.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: String,
    pub subscriber_id: Option<i64>,
    pub issue_id: Option<i64>,
}

pub fn outgoing_by_message_id(c: &Connection, message_id: &str) -> anyhow::Result<Option<Outgoing>> {
    Ok(c.query_row("SELECT kind, subscriber_id, issue_id FROM outbox WHERE message_id = ?1", [message_id], |r| {
        Ok(Outgoing { kind: r.get(0)?, subscriber_id: r.get(1)?, issue_id: r.get(2)? })
    })
    .optional()?)
}

// ---------------------------------------------------------------- secrets

/// A generated secret, created on first use.
pub fn secret(
    c: &Connection,
    name: &str,
    fresh: impl FnOnce() -> String,
    now: DateTime<Utc>,
) -> anyhow::Result<String> {
    c.execute(
        "INSERT INTO secrets(name, value, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![name, fresh(), ts(now)],
    )?;
    Ok(c.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| r.get(0))?)
}

// ---------------------------------------------------------------- ambassadors and stories

#[derive(Debug, Clone, Serialize)]
pub struct Ambassador {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub photo_url: Option<String>,
    pub email: Option<String>,
}

fn ambassador(r: &Row<'_>) -> rusqlite::Result<Ambassador> {
    Ok(Ambassador { id: r.get(0)?, name: r.get(1)?, role: r.get(2)?, photo_url: r.get(3)?, email: r.get(4)? })
}

/// Adds an ambassador or updates the one with that name; empty fields keep what was known.
pub fn upsert_ambassador(
    c: &Connection,
    name: &str,
    role: &str,
    photo_url: Option<&str>,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<i64> {
    Ok(c.query_row(
        "INSERT INTO ambassadors(name, role, photo_url, email, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(name) DO UPDATE SET role = CASE WHEN excluded.role = '' THEN role ELSE excluded.role END,
             photo_url = COALESCE(excluded.photo_url, photo_url), email = COALESCE(excluded.email, email)
         RETURNING id",
        params![name, role, photo_url, email, ts(now)],
        |r| r.get(0),
    )?)
}

pub fn ambassador_by_email(c: &Connection, email: &str) -> anyhow::Result<Option<Ambassador>> {
    Ok(c.query_row("SELECT id, name, role, photo_url, email FROM ambassadors WHERE email = ?1", [email], ambassador)
        .optional()?)
}

pub fn list_ambassadors(c: &Connection) -> anyhow::Result<Vec<Ambassador>> {
    let mut st = c.prepare("SELECT id, name, role, photo_url, email FROM ambassadors ORDER BY name")?;
    let rows = st.query_map([], ambassador)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct Story {
    pub id: i64,
    pub title: String,
    pub ambassador: String,
    pub role: String,
    pub body_md: String,
    pub photo_url: Option<String>,
    pub photo_alt: Option<String>,
    pub status: String,
    pub source: String,
    pub consent_at: Option<String>,
    pub consent_source: Option<String>,
    pub created_at: String,
    pub approved_at: Option<String>,
    pub published_at: Option<String>,
    pub issue_id: Option<i64>,
}

const STORY_COLS: &str = "s.id, s.title, a.name, a.role, s.body_md, COALESCE(s.photo_url, a.photo_url), s.photo_alt, s.status, s.source, s.consent_at, s.consent_source, s.created_at, s.approved_at, s.published_at, s.issue_id";

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
        consent_at: r.get(9)?,
        consent_source: r.get(10)?,
        created_at: r.get(11)?,
        approved_at: r.get(12)?,
        published_at: r.get(13)?,
        issue_id: r.get(14)?,
    })
}

pub struct NewStory<'a> {
    pub title: &'a str,
    pub ambassador_id: i64,
    pub body_md: &'a str,
    pub photo_url: Option<&'a str>,
    pub photo_alt: Option<&'a str>,
    pub source: &'a str,
    pub message_id: Option<i64>,
    pub consent_source: Option<&'a str>,
}

pub fn insert_story(c: &Connection, s: &NewStory<'_>, now: DateTime<Utc>) -> anyhow::Result<i64> {
    c.execute(
        "INSERT INTO stories(title, ambassador_id, body_md, photo_url, photo_alt, status, source, message_id, consent_at, consent_source, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'submitted', ?6, ?7, ?8, ?9, ?10)",
        params![
            s.title,
            s.ambassador_id,
            s.body_md,
            s.photo_url,
            s.photo_alt,
            s.source,
            s.message_id,
            s.consent_source.map(|_| ts(now)),
            s.consent_source,
            ts(now)
        ],
    )?;
    Ok(c.last_insert_rowid())
}

pub fn story(c: &Connection, id: i64) -> anyhow::Result<Option<Story>> {
    let q = format!("SELECT {STORY_COLS} FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id WHERE s.id = ?1");
    Ok(c.query_row(&q, [id], story_row).optional()?)
}

pub fn list_stories(c: &Connection, status: Option<&str>) -> anyhow::Result<Vec<Story>> {
    let q = format!(
        "SELECT {STORY_COLS} FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id WHERE ?1 IS NULL OR s.status = ?1 ORDER BY s.id"
    );
    let mut st = c.prepare(&q)?;
    let rows = st.query_map([status], story_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Approved stories with consent that no issue took yet, oldest approval first.
pub fn stories_ready(c: &Connection, limit: u32) -> anyhow::Result<Vec<Story>> {
    let q = format!(
        "SELECT {STORY_COLS} FROM stories s JOIN ambassadors a ON a.id = s.ambassador_id
         WHERE s.status = 'approved' AND s.consent_at IS NOT NULL AND s.issue_id IS NULL ORDER BY s.approved_at, s.id LIMIT ?1"
    );
    let mut st = c.prepare(&q)?;
    let rows = st.query_map([limit], story_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_story_status(c: &Connection, id: i64, status: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    let col = match status {
        "approved" => "approved_at",
        "rejected" => "rejected_at",
        _ => "published_at",
    };
    c.execute(&format!("UPDATE stories SET status = ?2, {col} = ?3 WHERE id = ?1"), params![id, status, ts(now)])?;
    Ok(())
}

pub fn record_story_consent(c: &Connection, id: i64, source: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    c.execute(
        "UPDATE stories SET consent_at = ?2, consent_source = ?3 WHERE id = ?1 AND consent_at IS NULL",
        params![id, ts(now), source],
    )?;
    Ok(())
}

/// The story submitted by mail whose conversation this is.
pub fn story_by_conversation(c: &Connection, conversation_id: i64) -> anyhow::Result<Option<i64>> {
    Ok(c.query_row(
        "SELECT s.id FROM stories s JOIN messages m ON m.id = s.message_id WHERE m.conversation_id = ?1 ORDER BY s.id DESC LIMIT 1",
        [conversation_id],
        |r| r.get(0),
    )
    .optional()?)
}

// ---------------------------------------------------------------- issues

#[derive(Debug, Clone, Serialize)]
pub struct Issue {
    pub id: i64,
    pub subject: String,
    pub status: String,
    pub slot: Option<String>,
    pub created_at: String,
    pub proof_message_id: Option<String>,
    pub proof_deadline: Option<String>,
    pub approved_at: Option<String>,
    pub approved_by: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub note: Option<String>,
}

const ISSUE_COLS: &str = "id, subject, status, slot, created_at, proof_message_id, proof_deadline, approved_at, approved_by, started_at, finished_at, note";

fn issue_row(r: &Row<'_>) -> rusqlite::Result<Issue> {
    Ok(Issue {
        id: r.get(0)?,
        subject: r.get(1)?,
        status: r.get(2)?,
        slot: r.get(3)?,
        created_at: r.get(4)?,
        proof_message_id: r.get(5)?,
        proof_deadline: r.get(6)?,
        approved_at: r.get(7)?,
        approved_by: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        note: r.get(11)?,
    })
}

/// A new issue with its stories (which no other issue may take).
pub fn create_issue(
    c: &Connection,
    subject: &str,
    status: &str,
    slot: Option<DateTime<Utc>>,
    stories: &[i64],
    now: DateTime<Utc>,
) -> anyhow::Result<i64> {
    c.execute(
        "INSERT INTO issues(subject, status, slot, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![subject, status, slot.map(ts), ts(now)],
    )?;
    let id = c.last_insert_rowid();
    for (pos, s) in stories.iter().enumerate() {
        c.execute("INSERT INTO issue_stories(issue_id, story_id, position) VALUES (?1, ?2, ?3)", params![id, s, pos])?;
        c.execute("UPDATE stories SET issue_id = ?2 WHERE id = ?1", params![s, id])?;
    }
    Ok(id)
}

pub fn issue_by_slot(c: &Connection, slot: DateTime<Utc>) -> anyhow::Result<Option<Issue>> {
    let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE slot = ?1");
    Ok(c.query_row(&q, [ts(slot)], issue_row).optional()?)
}

pub fn issue(c: &Connection, id: i64) -> anyhow::Result<Option<Issue>> {
    let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE id = ?1");
    Ok(c.query_row(&q, [id], issue_row).optional()?)
}

pub fn list_issues(c: &Connection) -> anyhow::Result<Vec<Issue>> {
    let q = format!("SELECT {ISSUE_COLS} FROM issues ORDER BY id DESC");
    let mut st = c.prepare(&q)?;
    let rows = st.query_map([], issue_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn issues_with_status(c: &Connection, status: &str) -> anyhow::Result<Vec<Issue>> {
    let q = format!("SELECT {ISSUE_COLS} FROM issues WHERE status = ?1 ORDER BY id");
    let mut st = c.prepare(&q)?;
    let rows = st.query_map([status], issue_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn issue_story_ids(c: &Connection, issue_id: i64) -> anyhow::Result<Vec<i64>> {
    let mut st = c.prepare("SELECT story_id FROM issue_stories WHERE issue_id = ?1 ORDER BY position")?;
    let rows = st.query_map([issue_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_proof(c: &Connection, id: i64, message_id: Option<&str>, deadline: DateTime<Utc>) -> anyhow::Result<()> {
    c.execute(
        "UPDATE issues SET proof_message_id = ?2, proof_deadline = ?3 WHERE id = ?1",
        params![id, message_id, ts(deadline)],
    )?;
    Ok(())
}

/// Sets the issue's status; returns false when it was not in one of `from`.
pub fn transition_issue(c: &Connection, id: i64, from: &[&str], to: &str, note: &str) -> anyhow::Result<bool> {
    let from = from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let n = c.execute(
        &format!("UPDATE issues SET status = ?2, note = ?3 WHERE id = ?1 AND status IN ({from})"),
        params![id, to, note],
    )?;
    Ok(n > 0)
}

/// The issue starts sending: one delivery row per active subscriber (unique per
/// (issue, subscriber)), its stories published, its archive page stored.
pub fn start_sending(
    c: &Connection,
    id: i64,
    approved_by: &str,
    archive_html: &str,
    mid_domain: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    c.execute(
        "UPDATE issues SET status = 'sending', approved_at = COALESCE(approved_at, ?2), approved_by = COALESCE(approved_by, ?3),
                started_at = ?2, archive_html = ?4 WHERE id = ?1",
        params![id, ts(now), approved_by, archive_html],
    )?;
    let n = c.execute(
        "INSERT INTO deliveries(issue_id, subscriber_id, message_id, status, next_attempt_at)
         SELECT ?1, id, 'outreach.nl.' || ?1 || '.' || id || '.' || lower(hex(randomblob(6))) || '@' || ?2, 'pending', ?3
         FROM subscribers WHERE status = 'active'
         ON CONFLICT(issue_id, subscriber_id) DO NOTHING",
        params![id, mid_domain, ts(now)],
    )?;
    c.execute(
        "UPDATE stories SET status = 'published', published_at = ?2 WHERE id IN (SELECT story_id FROM issue_stories WHERE issue_id = ?1)",
        params![id, ts(now)],
    )?;
    Ok(n)
}

/// Marks sending issues with nothing left to do as sent.
pub fn finish_issues(c: &Connection, now: DateTime<Utc>) -> anyhow::Result<Vec<i64>> {
    let mut st = c.prepare(
        "UPDATE issues SET status = 'sent', finished_at = ?1 WHERE status = 'sending' AND NOT EXISTS (
             SELECT 1 FROM deliveries d WHERE d.issue_id = issues.id AND d.status IN ('pending', 'sending', 'retry'))
         RETURNING id",
    )?;
    let rows = st.query_map([ts(now)], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn archive(c: &Connection, id: i64) -> anyhow::Result<Option<(Issue, String)>> {
    let q = format!(
        "SELECT {ISSUE_COLS}, archive_html FROM issues WHERE id = ?1 AND status IN ('sending', 'sent') AND archive_html IS NOT NULL"
    );
    Ok(c.query_row(&q, [id], |r| Ok((issue_row(r)?, r.get(12)?))).optional()?)
}

// ---------------------------------------------------------------- deliveries

/// A delivery claimed for sending, with what rendering needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub issue_id: i64,
    pub subscriber_id: i64,
    pub message_id: String,
    pub attempts: u32,
    pub email: String,
    pub name: Option<String>,
    pub language: String,
    pub nonce: String,
}

/// Deliveries still open for subscribers who are no longer active are skipped (they
/// left by a way that did not skip them at once). Run once per sending pass.
pub fn skip_inactive(c: &Connection) -> anyhow::Result<usize> {
    Ok(c.execute(
        "UPDATE deliveries SET status = 'skipped', last_error = 'no longer subscribed when it was due'
         WHERE status IN ('pending', 'retry') AND subscriber_id IN (SELECT id FROM subscribers WHERE status != 'active')",
        [],
    )?)
}

/// Claims up to `limit` due deliveries of sending issues whose subscriber is still
/// active (`sending`, committed before any network I/O): retries that are due first,
/// then new ones, each in index order (no scan of the whole queue).
pub fn claim_deliveries(c: &Connection, limit: u32, now: DateTime<Utc>) -> anyhow::Result<Vec<Claimed>> {
    let mut ids: Vec<i64> = Vec::with_capacity(limit as usize);
    for status in ["retry", "pending"] {
        let want = limit as usize - ids.len();
        if want == 0 {
            break;
        }
        let mut st = c.prepare_cached(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1
             WHERE id IN (SELECT d.id FROM deliveries d
                          WHERE d.status = ?3 AND d.next_attempt_at <= ?1
                            AND d.issue_id IN (SELECT id FROM issues WHERE status = 'sending')
                            AND EXISTS (SELECT 1 FROM subscribers s WHERE s.id = d.subscriber_id AND s.status = 'active')
                          ORDER BY d.next_attempt_at LIMIT ?2)
             RETURNING id",
        )?;
        let got = st.query_map(params![ts(now), want as i64, status], |r| r.get::<_, i64>(0))?;
        for id in got {
            ids.push(id?);
        }
    }
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ids.len());
    let mut get = c.prepare_cached(
        "SELECT d.id, d.issue_id, d.subscriber_id, d.message_id, d.attempts, s.email, s.name, s.language, s.token_nonce
         FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.id = ?1",
    )?;
    for id in ids {
        out.push(get.query_row([id], |r| {
            Ok(Claimed {
                id: r.get(0)?,
                issue_id: r.get(1)?,
                subscriber_id: r.get(2)?,
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
pub fn still_active(c: &Connection, subscriber_id: i64) -> anyhow::Result<bool> {
    Ok(c.prepare_cached("SELECT status = 'active' FROM subscribers WHERE id = ?1")?
        .query_row([subscriber_id], |r| r.get(0))
        .optional()?
        .unwrap_or(false))
}

/// How one delivery attempt ended, to be recorded.
#[derive(Debug, Clone)]
pub enum DeliveryUpdate {
    Sent,
    Retry(DateTime<Utc>, String),
    Failed(String),
    Skipped(String),
}

pub fn record_delivery(c: &Connection, id: i64, u: &DeliveryUpdate, now: DateTime<Utc>) -> anyhow::Result<()> {
    match u {
        DeliveryUpdate::Sent => c
            .prepare_cached("UPDATE deliveries SET status = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1")?
            .execute(params![id, ts(now)])?,
        DeliveryUpdate::Retry(at, e) => c
            .prepare_cached(
                "UPDATE deliveries SET status = 'retry', next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
            )?
            .execute(params![id, ts(*at), e])?,
        DeliveryUpdate::Failed(e) => c
            .prepare_cached("UPDATE deliveries SET status = 'failed', last_error = ?2 WHERE id = ?1")?
            .execute(params![id, e])?,
        DeliveryUpdate::Skipped(e) => c
            .prepare_cached("UPDATE deliveries SET status = 'skipped', last_error = ?2 WHERE id = ?1")?
            .execute(params![id, e])?,
    };
    Ok(())
}

/// Settles deliveries left `sending` by a crash: those in `ended` count as sent, the
/// others are sent again. Returns `(sent, requeued)`.
pub fn recover_deliveries(
    c: &Connection,
    ended: &std::collections::HashSet<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    super::settle_in_flight(c, "deliveries", "pending", ended, now)
}

pub fn next_delivery_due(c: &Connection) -> anyhow::Result<Option<DateTime<Utc>>> {
    let s: Option<String> = c.query_row(
        "SELECT MIN(d.next_attempt_at) FROM deliveries d JOIN issues i ON i.id = d.issue_id
         WHERE d.status IN ('pending', 'retry') AND i.status = 'sending'",
        [],
        |r| r.get(0),
    )?;
    Ok(s.as_deref().and_then(super::parse_ts))
}

/// Per status counts of an issue's deliveries.
pub fn delivery_counts(c: &Connection, issue_id: i64) -> anyhow::Result<Vec<(String, i64)>> {
    let mut st =
        c.prepare("SELECT status, COUNT(*) FROM deliveries WHERE issue_id = ?1 GROUP BY status ORDER BY status")?;
    let rows = st.query_map([issue_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryLine {
    pub id: i64,
    pub email: String,
    pub status: String,
    pub attempts: u32,
    pub detail: Option<String>,
    pub sent_at: Option<String>,
    pub bounced_at: Option<String>,
}

/// What happened per recipient of an issue; `missed_only` leaves out the sent ones.
pub fn deliveries_of(c: &Connection, issue_id: i64, missed_only: bool) -> anyhow::Result<Vec<DeliveryLine>> {
    let mut st = c.prepare(
        "SELECT d.id, s.email, d.status, d.attempts, d.last_error, d.sent_at, d.bounced_at
         FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
         WHERE d.issue_id = ?1 AND (?2 = 0 OR d.status != 'sent') ORDER BY d.id",
    )?;
    let rows = st.query_map(params![issue_id, missed_only], |r| {
        Ok(DeliveryLine {
            id: r.get(0)?,
            email: r.get(1)?,
            status: r.get(2)?,
            attempts: r.get(3)?,
            detail: r.get(4)?,
            sent_at: r.get(5)?,
            bounced_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Queues again exactly the deliveries of an issue that did not reach a still active
/// subscriber (failed or waiting for a retry). Returns how many.
pub fn requeue_missed(c: &Connection, issue_id: i64, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let n = c.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?2
         WHERE issue_id = ?1 AND status IN ('failed', 'retry')
           AND subscriber_id IN (SELECT id FROM subscribers WHERE status = 'active')",
        params![issue_id, ts(now)],
    )?;
    if n > 0 {
        c.execute(
            "UPDATE issues SET status = 'sending', finished_at = NULL WHERE id = ?1 AND status = 'sent'",
            [issue_id],
        )?;
    }
    Ok(n)
}

/// A delivery by id or by our Message-ID: `(delivery id, issue id, subscriber id)`.
pub fn delivery_ref(
    c: &Connection,
    id: Option<i64>,
    message_id: Option<&str>,
) -> anyhow::Result<Option<(i64, i64, i64)>> {
    Ok(c.query_row(
        "SELECT id, issue_id, subscriber_id FROM deliveries WHERE id = ?1 OR message_id = ?2",
        params![id, message_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}

/// The latest delivery sent to an address (a bounce that names only its recipient).
pub fn last_delivery_to(c: &Connection, email: &str) -> anyhow::Result<Option<(i64, i64, i64)>> {
    Ok(c.query_row(
        "SELECT d.id, d.issue_id, d.subscriber_id FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
         WHERE s.email = ?1 AND d.status = 'sent' ORDER BY d.id DESC LIMIT 1",
        [email],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}

/// Records a bounce on a delivery; false when it had one already (a second DSN).
pub fn record_bounce(
    c: &Connection,
    delivery_id: i64,
    status: &str,
    detail: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let n = c.execute(
        "UPDATE deliveries SET status = 'bounced', bounced_at = ?2, bounce_status = ?3, last_error = ?4 WHERE id = ?1 AND bounced_at IS NULL",
        params![delivery_id, ts(now), status, detail],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_bounces_count_only_in_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::Db::open(&dir.path().join("t.db")).unwrap();
        let c = db.conn();
        let now = Utc::now();
        let s = insert_subscriber(
            c,
            &NewSubscriber {
                email: "a@b.nl",
                name: None,
                language: "nl",
                status: "active",
                source: "cli",
                consent_source: Some("x"),
                consent_at: Some(now),
                nonce: "n",
            },
            now,
        )
        .unwrap();
        // Issue 1 bounced softly, issue 2 got through, issues 3 and 4 bounced softly.
        for (issue, status) in [(1, "bounced"), (2, "sent"), (3, "bounced"), (4, "bounced")] {
            c.execute("INSERT INTO issues(id, subject, status, created_at) VALUES (?1, 'x', 'sent', 'now')", [issue])
                .unwrap();
            c.execute(
                "INSERT INTO deliveries(issue_id, subscriber_id, message_id, status, next_attempt_at) VALUES (?1, ?2, ?3, ?4, 'now')",
                params![issue, s, format!("m{issue}"), status],
            )
            .unwrap();
        }
        assert_eq!(add_soft_bounce(c, s, 1).unwrap(), 1);
        assert_eq!(add_soft_bounce(c, s, 3).unwrap(), 1, "issue 2 got through: the row starts again");
        assert_eq!(add_soft_bounce(c, s, 4).unwrap(), 2);
    }
}
