//! Subscribers and the retention rules that forget people (erasing one person, and the
//! list of erased addresses, are in [`super::person`]).
//!
//! Status moves go through [`Store::move_subscriber`], which asks
//! [`SubscriberStatus::can_become`] and refuses anything else.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::Store;
use super::types::{Ts, time, time_opt, ts_opt};
use crate::domain::Language;
use crate::domain::ids::{IssueId, SubscriberId};
use crate::domain::state::{DeliveryStatus, SubscriberStatus};
use crate::domain::time::{rfc3339, rfc3339_opt};

#[derive(Debug, Clone, Serialize)]
pub struct Subscriber {
    pub id: SubscriberId,
    /// Lower case, as given (a `+tag` is kept); `erased-N` once erased.
    pub email: String,
    pub name: Option<String>,
    pub language: Language,
    pub status: SubscriberStatus,
    pub source: String,
    pub consent_source: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub consent_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339_opt")]
    pub confirmed_at: Option<DateTime<Utc>>,
    #[serde(with = "rfc3339_opt")]
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub unsubscribe_source: Option<String>,
    #[serde(with = "rfc3339_opt")]
    pub bounced_at: Option<DateTime<Utc>>,
    pub bounce_reason: Option<String>,
    pub soft_bounces: i64,
    #[serde(skip)]
    pub token_nonce: String,
    #[serde(skip)]
    pub confirm_sent_at: Option<DateTime<Utc>>,
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
        consent_at: time_opt(r, 7)?,
        created_at: time(r, 8)?,
        confirmed_at: time_opt(r, 9)?,
        unsubscribed_at: time_opt(r, 10)?,
        unsubscribe_source: r.get(11)?,
        bounced_at: time_opt(r, 12)?,
        bounce_reason: r.get(13)?,
        soft_bounces: r.get(14)?,
        token_nonce: r.get(15)?,
        confirm_sent_at: time_opt(r, 16)?,
    })
}

/// A new subscriber row.
pub struct NewSubscriber<'a> {
    pub email: &'a str,
    pub name: Option<&'a str>,
    pub language: Language,
    /// `Pending` (double opt-in follows) or `Active` (consent given, see `consent`).
    pub status: SubscriberStatus,
    pub source: &'a str,
    /// How and when they agreed, for an active row.
    pub consent: Option<(&'a str, DateTime<Utc>)>,
    pub nonce: &'a str,
}

/// A move of a subscriber, with what it records.
#[derive(Debug, Clone, Copy)]
pub enum SubscriberMove<'a> {
    /// A former subscriber asks again (`source`): back to pending.
    AskAgain {
        source: &'a str,
    },
    /// Confirmed: active, with the consent that did it.
    Activate {
        consent_source: &'a str,
    },
    Unsubscribe {
        source: &'a str,
    },
    Bounce {
        reason: &'a str,
    },
}

impl SubscriberMove<'_> {
    fn target(self) -> SubscriberStatus {
        match self {
            SubscriberMove::AskAgain { .. } => SubscriberStatus::Pending,
            SubscriberMove::Activate { .. } => SubscriberStatus::Active,
            SubscriberMove::Unsubscribe { .. } => SubscriberStatus::Unsubscribed,
            SubscriberMove::Bounce { .. } => SubscriberStatus::Bounced,
        }
    }
}

impl Store<'_> {
    pub fn subscriber_by_email(&self, email: &str) -> anyhow::Result<Option<Subscriber>> {
        let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE email = ?1");
        Ok(self.c.query_row(&q, [email], subscriber).optional()?)
    }

    pub fn subscriber(&self, id: SubscriberId) -> anyhow::Result<Option<Subscriber>> {
        let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE id = ?1");
        Ok(self.c.query_row(&q, [id], subscriber).optional()?)
    }

    /// Subscribers, optionally of one status, in the order they came.
    pub fn subscribers(&self, status: Option<SubscriberStatus>) -> anyhow::Result<Vec<Subscriber>> {
        let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE ?1 IS NULL OR status = ?1 ORDER BY id");
        let mut st = self.c.prepare(&q)?;
        let rows = st.query_map([status], subscriber)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Subscribers (with this status, if given) that `wanted` accepts, newest first: how
    /// many there are and the first `limit` of them. Reads row by row, so a long list is
    /// never all in memory.
    pub fn find_subscribers(
        &self,
        status: Option<SubscriberStatus>,
        wanted: impl Fn(&Subscriber) -> bool,
        limit: usize,
    ) -> anyhow::Result<(usize, Vec<Subscriber>)> {
        let q = format!("SELECT {SUBSCRIBER_COLS} FROM subscribers WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC");
        let mut st = self.c.prepare(&q)?;
        let (mut total, mut first) = (0, Vec::new());
        for row in st.query_map([status], subscriber)? {
            let s = row?;
            if wanted(&s) {
                total += 1;
                if first.len() < limit {
                    first.push(s);
                }
            }
        }
        Ok((total, first))
    }

    pub fn active_subscriber_count(&self) -> anyhow::Result<i64> {
        Ok(self.c.query_row("SELECT COUNT(*) FROM subscribers WHERE status = 'active'", [], |r| r.get(0))?)
    }

    pub fn insert_subscriber(&self, s: &NewSubscriber<'_>, now: DateTime<Utc>) -> anyhow::Result<SubscriberId> {
        let active = s.status == SubscriberStatus::Active;
        self.c.execute(
            "INSERT INTO subscribers(email, name, language, status, source, consent_source, consent_at, created_at, confirmed_at, token_nonce)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                s.email,
                s.name,
                s.language,
                s.status,
                s.source,
                s.consent.map(|(how, _)| how),
                ts_opt(s.consent.map(|(_, at)| at)),
                Ts(now),
                active.then(|| Ts(s.consent.map_or(now, |(_, at)| at))),
                s.nonce
            ],
        )?;
        Ok(SubscriberId(self.c.last_insert_rowid()))
    }

    /// Moves a subscriber if [`SubscriberStatus::can_become`] allows it. `Ok(false)` when
    /// nothing changed: they are already where the move leads (a second click), or the
    /// state machine refuses the move (unsubscribing someone who bounced). An unknown
    /// subscriber is an error.
    ///
    /// Every move gives the subscriber a new `token_nonce`, so the links in mails sent
    /// before it stop working: a confirmation link confirms once, and after leaving (or
    /// coming back) an old link does nothing. An active subscriber's unsubscribe link in
    /// a sent newsletter keeps working until their status changes.
    pub fn move_subscriber(&self, id: SubscriberId, m: SubscriberMove<'_>, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let Some(from) = self
            .c
            .query_row("SELECT status FROM subscribers WHERE id = ?1", [id], |r| r.get::<_, SubscriberStatus>(0))
            .optional()?
        else {
            anyhow::bail!("there is no subscriber {id}");
        };
        let to = m.target();
        if from == to || !from.can_become(to) {
            tracing::debug!(subscriber = %id, from = %from, to = %to, "subscriber move refused or not needed");
            return Ok(false);
        }
        let n = match m {
            SubscriberMove::AskAgain { source } => self.c.execute(
                "UPDATE subscribers SET status = 'pending', source = ?3, unsubscribed_at = NULL, unsubscribe_source = NULL
                 WHERE id = ?1 AND status = ?2",
                params![id, from, source],
            )?,
            SubscriberMove::Activate { consent_source } => self.c.execute(
                "UPDATE subscribers SET status = 'active', consent_source = ?3, consent_at = ?4, confirmed_at = ?4,
                        unsubscribed_at = NULL, unsubscribe_source = NULL, bounced_at = NULL, bounce_reason = NULL, soft_bounces = 0
                 WHERE id = ?1 AND status = ?2",
                params![id, from, consent_source, Ts(now)],
            )?,
            SubscriberMove::Unsubscribe { source } => {
                let n = self.c.execute(
                    "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = ?3, unsubscribe_source = ?4
                     WHERE id = ?1 AND status = ?2",
                    params![id, from, Ts(now), source],
                )?;
                self.skip_open_deliveries(id, "unsubscribed before it was sent")?;
                n
            }
            SubscriberMove::Bounce { reason } => {
                let n = self.c.execute(
                    "UPDATE subscribers SET status = 'bounced', bounced_at = ?3, bounce_reason = ?4
                     WHERE id = ?1 AND status = ?2",
                    params![id, from, Ts(now), reason],
                )?;
                self.skip_open_deliveries(id, "the address bounced")?;
                n
            }
        };
        if n > 0 {
            self.c.execute("UPDATE subscribers SET token_nonce = lower(hex(randomblob(16))) WHERE id = ?1", [id])?;
        }
        Ok(n > 0)
    }

    pub fn set_confirm_sent(&self, id: SubscriberId, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute("UPDATE subscribers SET confirm_sent_at = ?2 WHERE id = ?1", params![id, Ts(now)])?;
        Ok(())
    }

    fn skip_open_deliveries(&self, subscriber: SubscriberId, why: &str) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE deliveries SET status = ?3, last_error = ?2 WHERE subscriber_id = ?1 AND status IN ('pending', 'retry')",
            params![subscriber, why, DeliveryStatus::Skipped],
        )?;
        Ok(())
    }

    /// Counts a soft bounce of `issue` "in a row": when the subscriber's previous issue
    /// got through (its delivery did not bounce), the count starts again at 1. Returns it.
    pub fn add_soft_bounce(&self, id: SubscriberId, issue: IssueId) -> anyhow::Result<i64> {
        let previous_bounced: Option<bool> = self
            .c
            .query_row(
                "SELECT status = 'bounced' FROM deliveries WHERE subscriber_id = ?1 AND issue_id < ?2 AND status IN ('sent', 'bounced')
                 ORDER BY issue_id DESC LIMIT 1",
                params![id, issue],
                |r| r.get(0),
            )
            .optional()?;
        let sql = if previous_bounced == Some(false) {
            "UPDATE subscribers SET soft_bounces = 1 WHERE id = ?1 RETURNING soft_bounces"
        } else {
            "UPDATE subscribers SET soft_bounces = soft_bounces + 1 WHERE id = ?1 RETURNING soft_bounces"
        };
        Ok(self.c.query_row(sql, [id], |r| r.get(0))?)
    }

    /// Deletes sign-ups that stayed `pending` since before `before`, with the mails queued
    /// for them. Returns how many.
    pub fn forget_unconfirmed(&self, before: DateTime<Utc>) -> anyhow::Result<usize> {
        let ids: Vec<SubscriberId> = {
            let mut st = self.c.prepare(
                "SELECT id FROM subscribers WHERE status = 'pending' AND created_at < ?1
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscriber_id = subscribers.id)",
            )?;
            st.query_map([Ts(before)], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        for id in &ids {
            self.c.execute(
                "UPDATE outbox SET subscriber_id = NULL, raw = x'', rcpt = 'forgotten', status = CASE WHEN status IN ('queued', 'sending') THEN 'failed' ELSE status END
                 WHERE subscriber_id = ?1",
                [id],
            )?;
            self.c.execute("DELETE FROM subscribers WHERE id = ?1", [id])?;
        }
        Ok(ids.len())
    }

    /// Removes the text of filed mail and the bytes of sent mail older than `before`.
    /// Returns `(messages, sent mails)` cleared.
    pub fn purge_mail_text(&self, before: DateTime<Utc>) -> anyhow::Result<(usize, usize)> {
        let messages = self.c.execute(
            "UPDATE messages SET body_text = '', body_html = NULL
                 WHERE received_at < ?1 AND (body_text != '' OR body_html IS NOT NULL)",
            [Ts(before)],
        )?;
        let sent = self.c.execute(
            "UPDATE outbox SET raw = x'' WHERE status IN ('sent', 'failed') AND created_at < ?1 AND length(raw) > 0",
            [Ts(before)],
        )?;
        if messages > 0 {
            self.optimize_search_index()?;
        }
        Ok((messages, sent))
    }

    pub fn subscriber_counts(&self) -> anyhow::Result<Vec<(SubscriberStatus, i64)>> {
        let mut st = self.c.prepare("SELECT status, COUNT(*) FROM subscribers GROUP BY status ORDER BY status")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A generated secret, created on first use.
    pub fn secret(&self, name: &str, fresh: impl FnOnce() -> String, now: DateTime<Utc>) -> anyhow::Result<String> {
        self.c.execute(
            "INSERT INTO secrets(name, value, created_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![name, fresh(), Ts(now)],
        )?;
        Ok(self.c.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    #[test]
    fn finding_subscribers_counts_every_match_and_keeps_the_newest_few() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        let now = Utc::now();
        db.write(|st| {
            for i in 0..30 {
                let (email, nonce) = (format!("p{i}@example.org"), format!("n{i}"));
                let name = if i % 3 == 0 { Some("Özlem Jansen") } else { None };
                let status = if i % 2 == 0 { SubscriberStatus::Active } else { SubscriberStatus::Pending };
                let consent = (status == SubscriberStatus::Active).then_some(("test", now));
                let s = NewSubscriber {
                    email: &email,
                    name,
                    language: Language::Dutch,
                    status,
                    source: "t",
                    consent,
                    nonce: &nonce,
                };
                st.insert_subscriber(&s, now)?;
            }
            Ok(())
        })
        .unwrap();
        let named = |s: &Subscriber| s.name.as_deref().is_some_and(|n| n.to_lowercase().contains("özlem"));
        let (total, first) = db.store().find_subscribers(None, named, 3).unwrap();
        let emails: Vec<&str> = first.iter().map(|s| s.email.as_str()).collect();
        assert_eq!((total, emails), (10, vec!["p27@example.org", "p24@example.org", "p21@example.org"]));
        let (total, first) = db.store().find_subscribers(Some(SubscriberStatus::Active), named, 100).unwrap();
        assert_eq!((total, first.len()), (5, 5), "i = 0, 6, 12, 18, 24");
    }

    #[test]
    fn every_status_move_gives_a_new_token_nonce_and_a_refused_move_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        let now = Utc::now();
        let id = db
            .write(|st| {
                st.insert_subscriber(
                    &NewSubscriber {
                        email: "a@b.nl",
                        name: None,
                        language: Language::Dutch,
                        status: SubscriberStatus::Pending,
                        source: "test",
                        consent: None,
                        nonce: "first",
                    },
                    now,
                )
            })
            .unwrap();
        let nonce = |db: &Db| db.store().subscriber(id).unwrap().unwrap().token_nonce;
        let mut seen = vec![nonce(&db)];
        for m in [
            SubscriberMove::Activate { consent_source: "test" },
            SubscriberMove::Unsubscribe { source: "test" },
            SubscriberMove::AskAgain { source: "test" },
            SubscriberMove::Bounce { reason: "5.1.1" },
            SubscriberMove::AskAgain { source: "test" },
        ] {
            assert!(db.write(|st| st.move_subscriber(id, m, now)).unwrap(), "{m:?}");
            let n = nonce(&db);
            assert!(n.len() == 32 && !seen.contains(&n), "{m:?}: a new nonce, not {n:?}");
            seen.push(n);
        }
        // Pending cannot become pending: nothing changes, the links stay.
        assert!(!db.write(|st| st.move_subscriber(id, SubscriberMove::AskAgain { source: "x" }, now)).unwrap());
        assert_eq!(&nonce(&db), seen.last().unwrap());
    }
}
