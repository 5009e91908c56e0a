//! Logging in to the web desk: one-time login links, sessions, optional passwords and
//! the login attempts the rate limit counts. Tokens and session ids are kept only as
//! hashes (the caller hashes them); the caller decides what is valid for how long.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{OptionalExtension, params};

use super::Store;
use super::types::{Ts, time, time_opt};

/// What a login link's hash names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginLink {
    /// Valid: for this address.
    Valid(String),
    Expired,
    /// Used before.
    Used,
    Unknown,
}

/// A logged-in browser.
#[derive(Debug, Clone)]
pub struct DeskSession {
    pub email: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Rows older than this are pruned: used or expired links, ended sessions, attempts.
const KEEP: Duration = Duration::days(1);

impl Store<'_> {
    /// Keeps a new login link (its token's hash) for `email`, valid until `expires`.
    pub fn create_login_link(
        &self,
        token_hash: &str,
        email: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.c.execute("DELETE FROM desk_login_links WHERE expires_at < ?1", [Ts(now - KEEP)])?;
        self.c.execute(
            "INSERT INTO desk_login_links(token_hash, email, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![token_hash, email, Ts(now), Ts(expires)],
        )?;
        Ok(())
    }

    /// What a login link is now, without using it.
    pub fn login_link(&self, token_hash: &str, now: DateTime<Utc>) -> anyhow::Result<LoginLink> {
        let row = self
            .c
            .query_row(
                "SELECT email, expires_at, used_at FROM desk_login_links WHERE token_hash = ?1",
                [token_hash],
                |r| Ok((r.get::<_, String>(0)?, time(r, 1)?, time_opt(r, 2)?)),
            )
            .optional()?;
        Ok(match row {
            None => LoginLink::Unknown,
            Some((_, _, Some(_))) => LoginLink::Used,
            Some((_, expires, None)) if expires <= now => LoginLink::Expired,
            Some((email, _, None)) => LoginLink::Valid(email),
        })
    }

    /// Uses a login link: valid once. Returns what it was before.
    pub fn take_login_link(&self, token_hash: &str, now: DateTime<Utc>) -> anyhow::Result<LoginLink> {
        let state = self.login_link(token_hash, now)?;
        if matches!(state, LoginLink::Valid(_)) {
            let n = self.c.execute(
                "UPDATE desk_login_links SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
                params![token_hash, Ts(now)],
            )?;
            if n != 1 {
                return Ok(LoginLink::Used);
            }
        }
        Ok(state)
    }

    /// Empties the bytes of login mails that were sent (or failed): the link in them
    /// is then only in the desk user's mailbox.
    pub fn scrub_login_mail(&self) -> anyhow::Result<usize> {
        Ok(self.c.execute(
            "UPDATE outbox SET raw = x'' WHERE kind = 'desk_login' AND status IN ('sent', 'failed') AND length(raw) > 0",
            [],
        )?)
    }

    /// Keeps a new session (its id's hash).
    pub fn create_session(
        &self,
        session_hash: &str,
        email: &str,
        csrf: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.c.execute("DELETE FROM desk_sessions WHERE expires_at < ?1 OR ended_at < ?1", [Ts(now - KEEP)])?;
        self.c.execute(
            "INSERT INTO desk_sessions(session_hash, email, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![session_hash, email, csrf, Ts(now), Ts(expires)],
        )?;
        Ok(())
    }

    /// The session with this id's hash, while it lasts.
    pub fn session(&self, session_hash: &str, now: DateTime<Utc>) -> anyhow::Result<Option<DeskSession>> {
        Ok(self
            .c
            .query_row(
                "SELECT email, csrf, expires_at FROM desk_sessions
                 WHERE session_hash = ?1 AND ended_at IS NULL AND expires_at > ?2",
                params![session_hash, Ts(now)],
                |r| Ok(DeskSession { email: r.get(0)?, csrf: r.get(1)?, expires_at: time(r, 2)? }),
            )
            .optional()?)
    }

    /// Ends a session (logout).
    pub fn end_session(&self, session_hash: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "UPDATE desk_sessions SET ended_at = ?2 WHERE session_hash = ?1 AND ended_at IS NULL",
            params![session_hash, Ts(now)],
        )?;
        Ok(())
    }

    /// Sets (or replaces) a desk user's password hash; their sessions end.
    pub fn set_desk_password(&self, email: &str, hash: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO desk_passwords(email, hash, set_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(email) DO UPDATE SET hash = excluded.hash, set_at = excluded.set_at",
            params![email, hash, Ts(now)],
        )?;
        self.c.execute(
            "UPDATE desk_sessions SET ended_at = ?2 WHERE email = ?1 AND ended_at IS NULL",
            params![email, Ts(now)],
        )?;
        Ok(())
    }

    /// A desk user's password hash, if they set one.
    pub fn desk_password(&self, email: &str) -> anyhow::Result<Option<String>> {
        Ok(self.c.query_row("SELECT hash FROM desk_passwords WHERE email = ?1", [email], |r| r.get(0)).optional()?)
    }

    /// How many login attempts were made under `key` since `since`.
    pub fn login_attempts(&self, key: &str, since: DateTime<Utc>) -> anyhow::Result<i64> {
        Ok(self.c.query_row(
            "SELECT COUNT(*) FROM desk_login_attempts WHERE key = ?1 AND at >= ?2",
            params![key, Ts(since)],
            |r| r.get(0),
        )?)
    }

    /// Counts a login attempt under each of `keys`.
    pub fn record_login_attempt(&self, keys: &[&str], now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute("DELETE FROM desk_login_attempts WHERE at < ?1", [Ts(now - KEEP)])?;
        for key in keys {
            self.c.execute("INSERT INTO desk_login_attempts(key, at) VALUES (?1, ?2)", params![key, Ts(now)])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    #[test]
    fn a_login_link_is_valid_once_and_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let st = db.store();
        let now = Utc::now();
        st.create_login_link("h1", "a@example.org", now, now + Duration::minutes(15)).unwrap();
        st.create_login_link("h2", "a@example.org", now, now + Duration::minutes(15)).unwrap();
        assert_eq!(st.login_link("h1", now).unwrap(), LoginLink::Valid("a@example.org".into()));
        assert_eq!(st.login_link("nope", now).unwrap(), LoginLink::Unknown);
        assert_eq!(st.take_login_link("h1", now).unwrap(), LoginLink::Valid("a@example.org".into()));
        assert_eq!(st.take_login_link("h1", now).unwrap(), LoginLink::Used);
        assert_eq!(st.take_login_link("h2", now + Duration::minutes(16)).unwrap(), LoginLink::Expired);
    }

    #[test]
    fn a_session_lasts_until_it_expires_or_ends_and_a_new_password_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let st = db.store();
        let now = Utc::now();
        st.create_session("s1", "a@example.org", "c1", now, now + Duration::hours(1)).unwrap();
        st.create_session("s2", "a@example.org", "c2", now, now + Duration::hours(1)).unwrap();
        assert_eq!(st.session("s1", now).unwrap().unwrap().csrf, "c1");
        assert!(st.session("s1", now + Duration::hours(2)).unwrap().is_none());
        st.end_session("s1", now).unwrap();
        assert!(st.session("s1", now).unwrap().is_none());
        assert!(st.session("s2", now).unwrap().is_some());
        st.set_desk_password("a@example.org", "$argon2id$x", now).unwrap();
        assert!(st.session("s2", now).unwrap().is_none());
        assert_eq!(st.desk_password("a@example.org").unwrap().as_deref(), Some("$argon2id$x"));
        st.record_login_attempt(&["k", "ip"], now).unwrap();
        st.record_login_attempt(&["k"], now).unwrap();
        assert_eq!(st.login_attempts("k", now - Duration::minutes(15)).unwrap(), 2);
        assert_eq!(st.login_attempts("k", now + Duration::minutes(1)).unwrap(), 0);
    }
}
