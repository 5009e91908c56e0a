//! OAuth2 logins: the refresh token of a device-code login (one row, replaced by every
//! rotated one) and, per side (IMAP, SMTP), whether logging in with a token works.
//! The database file is readable by its owner only, so the refresh token is too.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::Store;
use super::types::{Ts, time_opt};
use crate::domain::redact_addresses;

/// Whether logging in on one side works, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginHealth {
    /// `imap` or `smtp`.
    pub side: String,
    /// When a login last worked.
    pub ok_at: Option<DateTime<Utc>>,
    /// Since when logging in fails (none while it works).
    pub failing_since: Option<DateTime<Utc>>,
    /// The problem's code (`invalid_client`, `unreachable`, ...).
    pub problem: Option<String>,
    /// What to fix, in one sentence, with what the server said.
    pub detail: Option<String>,
    /// When the coordinator was told of this failure.
    pub alerted_at: Option<DateTime<Utc>>,
    /// When the log last said it.
    pub logged_at: Option<DateTime<Utc>>,
}

impl Store<'_> {
    /// The stored refresh token and the app (`client`) it was given to.
    pub fn oauth2_refresh_token(&self) -> anyhow::Result<Option<(String, String)>> {
        Ok(self
            .c
            .query_row("SELECT client, refresh_token FROM oauth2_login WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    /// Keeps `refresh_token` for `client`, replacing the one before (rotation).
    pub fn save_oauth2_refresh_token(
        &self,
        client: &str,
        refresh_token: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO oauth2_login(id, client, refresh_token, saved_at) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET client = excluded.client, refresh_token = excluded.refresh_token,
                 saved_at = excluded.saved_at",
            params![client, refresh_token, Ts(now)],
        )?;
        Ok(())
    }

    /// A login on `side` worked: whatever failed before is over.
    pub fn oauth2_login_ok(&self, side: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO oauth2_health(side, ok_at) VALUES (?1, ?2)
             ON CONFLICT(side) DO UPDATE SET ok_at = excluded.ok_at, failing_since = NULL, problem = NULL,
                 detail = NULL, alerted_at = NULL, logged_at = NULL",
            params![side, Ts(now)],
        )?;
        Ok(())
    }

    /// A login on `side` failed with `problem` (a code) and `detail` (what to fix); the
    /// failure counts from the first one in a row.
    pub fn oauth2_login_failed(
        &self,
        side: &str,
        problem: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO oauth2_health(side, failing_since, problem, detail) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(side) DO UPDATE SET failing_since = COALESCE(failing_since, excluded.failing_since),
                 problem = excluded.problem, detail = excluded.detail",
            params![side, Ts(now), problem, redact_addresses(detail)],
        )?;
        Ok(())
    }

    /// The coordinator was told (`alerted`) or the log said it (`logged`) at `now`.
    pub fn oauth2_login_noted(&self, side: &str, alerted: bool, now: DateTime<Utc>) -> anyhow::Result<()> {
        let sql = if alerted {
            "UPDATE oauth2_health SET alerted_at = ?2, logged_at = ?2 WHERE side = ?1"
        } else {
            "UPDATE oauth2_health SET logged_at = ?2 WHERE side = ?1"
        };
        self.c.execute(sql, params![side, Ts(now)])?;
        Ok(())
    }

    /// Every side's login health, `imap` before `smtp`.
    pub fn oauth2_health(&self) -> anyhow::Result<Vec<LoginHealth>> {
        let mut st = self.c.prepare(
            "SELECT side, ok_at, failing_since, problem, detail, alerted_at, logged_at FROM oauth2_health ORDER BY side",
        )?;
        let rows = st.query_map([], |r| {
            Ok(LoginHealth {
                side: r.get(0)?,
                ok_at: time_opt(r, 1)?,
                failing_since: time_opt(r, 2)?,
                problem: r.get(3)?,
                detail: r.get(4)?,
                alerted_at: time_opt(r, 5)?,
                logged_at: time_opt(r, 6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use crate::store::Db;

    #[test]
    fn a_failure_counts_from_the_first_one_and_a_login_that_works_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let st = db.store();
        let t0 = chrono::Utc::now();
        st.oauth2_login_failed("imap", "invalid_client", "wrong secret", t0).unwrap();
        st.oauth2_login_failed("imap", "unreachable", "down", t0 + TimeDelta::minutes(5)).unwrap();
        st.oauth2_login_noted("imap", true, t0 + TimeDelta::minutes(6)).unwrap();
        let h = &st.oauth2_health().unwrap()[0];
        assert_eq!(h.failing_since.map(|t| t.timestamp()), Some(t0.timestamp()));
        assert_eq!(h.problem.as_deref(), Some("unreachable"));
        assert!(h.alerted_at.is_some());
        st.oauth2_login_ok("imap", t0 + TimeDelta::minutes(7)).unwrap();
        let h = &st.oauth2_health().unwrap()[0];
        assert!(h.failing_since.is_none() && h.problem.is_none() && h.alerted_at.is_none() && h.ok_at.is_some());
        assert!(st.oauth2_login_failed("pop3", "x", "y", t0).is_err(), "the side is checked by the database");
    }

    #[test]
    fn the_refresh_token_is_replaced_by_the_rotated_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let st = db.store();
        assert_eq!(st.oauth2_refresh_token().unwrap(), None);
        st.save_oauth2_refresh_token("app", "r1", chrono::Utc::now()).unwrap();
        st.save_oauth2_refresh_token("app", "r2", chrono::Utc::now()).unwrap();
        assert_eq!(st.oauth2_refresh_token().unwrap(), Some(("app".into(), "r2".into())));
    }
}
