//! The store: SQLite through rusqlite. The only module that names rusqlite or holds SQL
//! (a test, `tests/it/architecture.rs`, fails the build otherwise).
//!
//! Operations are typed: they take and return the domain's ids, states and times. One
//! file per table group: [`inbox`] (messages, contacts, conversations), [`desk`] (the
//! coordinator's actions), [`desk_web`] (desk logins and sessions), [`outbox`],
//! [`subscribers`], [`stories`] (and ambassadors), [`issues`], [`deliveries`]; [`person`]
//! reads and erases one person across all of them; [`types`] says how each domain type
//! is kept in a column.
//!
//! WAL mode so the CLI reads while the daemon writes; `busy_timeout` so short write
//! contention waits instead of failing; `synchronous=FULL` because the rows here are the
//! record of what was filed and what was sent; `secure_delete` so that what is deleted
//! (an erased person, old mail text) is overwritten with zeros in the file, not left in
//! free space. The database, its WAL and shared-memory files, the lock file and the sent
//! journals are readable by their owner only ([`private_file`]).

pub mod check;
pub mod deliveries;
pub mod desk;
pub mod desk_web;
mod fault_note;
mod inbox;
pub mod issues;
pub mod oauth2;
mod outbox;
pub mod person;
mod shared;
pub mod stories;
pub mod subscribers;
mod types;

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::redact_addresses;

pub use fault_note::FaultNote;
pub use inbox::{ConversationRef, FiledMessage, MessageFilter, NewMessage};
pub use outbox::{NewOutgoing, OutboxCounts, OutboxRow};
pub use shared::Shared;
use types::Ts;

/// Embedded migrations, applied in order; `PRAGMA user_version` records how many ran.
/// A migration that rebuilds tables says so with `-- outreach: rebuilds tables` on its
/// first line: it then runs with foreign keys off, and is checked after (SQLite's
/// documented way to change a table's constraints).
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_init", include_str!("../../migrations/0001_init.sql")),
    ("0002_newsletter", include_str!("../../migrations/0002_newsletter.sql")),
    ("0003_check_states", include_str!("../../migrations/0003_check_states.sql")),
    ("0004_trust", include_str!("../../migrations/0004_trust.sql")),
    ("0005_notice_mailbox", include_str!("../../migrations/0005_notice_mailbox.sql")),
    ("0006_oauth2", include_str!("../../migrations/0006_oauth2.sql")),
    ("0007_desk", include_str!("../../migrations/0007_desk.sql")),
    ("0008_desk_web", include_str!("../../migrations/0008_desk_web.sql")),
    ("0009_desk_pages", include_str!("../../migrations/0009_desk_pages.sql")),
    ("0010_mail_parts", include_str!("../../migrations/0010_mail_parts.sql")),
];

/// A connection to the store. Each thread opens its own.
pub struct Db {
    conn: Connection,
}

/// The store's typed operations, over a connection or inside a transaction. Cheap to
/// copy; made by [`Db::store`], [`Db::write`] and [`Tx::store`].
#[derive(Clone, Copy)]
pub struct Store<'a> {
    c: &'a Connection,
}

/// A store transaction: filing a batch of messages happens inside one.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl Db {
    /// Opens (creating when missing) the database and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        beside_database(path, "")?;
        // Created here, owner-only, before SQLite opens it: SQLite gives the WAL and
        // shared-memory files it makes the permissions of the database file.
        create_private(path)?;
        let conn = Connection::open(path).with_context(|| format!("Failed to open the database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("database {}: could not switch to WAL mode (got {mode})", path.display());
        }
        conn.execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;")?;
        // Files an older version (or another umask) left readable by others.
        for suffix in ["", "-wal", "-shm"] {
            restrict_existing(&beside_database(path, suffix)?);
        }
        let mut db = Db { conn };
        db.migrate().with_context(|| format!("Failed to apply migrations to {}", path.display()))?;
        Ok(db)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let done: usize = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if done > MIGRATIONS.len() {
            bail!(
                "the database was written by a newer outreach (schema version {done}, this binary knows {})",
                MIGRATIONS.len()
            );
        }
        for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(done) {
            let rebuilds = sql.starts_with("-- outreach: rebuilds tables");
            if rebuilds {
                self.conn.execute_batch("PRAGMA foreign_keys=OFF;")?;
            }
            let result = (|| -> anyhow::Result<()> {
                let tx = self.conn.transaction()?;
                tx.execute_batch(sql).with_context(|| format!("migration {name}"))?;
                if rebuilds {
                    let broken: i64 =
                        tx.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
                    if broken > 0 {
                        bail!("migration {name}: {broken} rows would break a foreign key");
                    }
                }
                tx.pragma_update(None, "user_version", i + 1)?;
                tx.commit()?;
                Ok(())
            })();
            if rebuilds {
                self.conn.execute_batch("PRAGMA foreign_keys=ON;")?;
            }
            result?;
            tracing::info!(migration = name, "applied migration");
        }
        Ok(())
    }

    /// For the outbox worker's connection: commits without an fsync (`synchronous=NORMAL`).
    /// In WAL mode such a commit still survives a crash of the process; only a power loss
    /// can undo the last ones, and what a crash leaves in flight is settled by the sent
    /// journal (`outbox::journal`). Claiming and recording each delivery then costs no
    /// fsync, which is what lets the outbox keep up with a fast relay.
    pub fn without_fsync_per_commit(self) -> anyhow::Result<Self> {
        self.conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
        Ok(self)
    }

    /// Makes every commit so far durable, including those made without an fsync by any
    /// connection: one small commit with `synchronous=FULL`, whose fsync of the WAL covers
    /// the frames before it. Run before a sent journal is emptied.
    pub fn make_durable(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let before: i64 = self.conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        self.conn.execute_batch("PRAGMA synchronous=FULL;")?;
        let written = self.set_state("journals_settled", "outcomes on disk; journals emptied", now);
        self.conn.execute_batch(&format!("PRAGMA synchronous={before};"))?;
        written.context("Failed to make the recorded outcomes durable")
    }

    /// The typed operations outside a transaction (each statement commits on its own).
    pub fn store(&self) -> Store<'_> {
        Store { c: &self.conn }
    }

    /// Runs `f` in an immediate (write) transaction and commits it.
    pub fn write<T>(&mut self, f: impl FnOnce(Store<'_>) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let v = f(Store { c: &tx })?;
        tx.commit().context("Failed to commit to the database")?;
        Ok(v)
    }

    /// Reads through a memory map: for connections that read the same pages over and over
    /// while other connections write (the sending lanes), this spares a `pread` per page.
    pub fn memory_mapped(self) -> anyhow::Result<Self> {
        self.conn.execute_batch("PRAGMA mmap_size=268435456;")?;
        Ok(self)
    }

    /// Starts an immediate (write) transaction.
    pub fn begin(&mut self) -> anyhow::Result<Tx<'_>> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Ok(Tx { tx })
    }

    /// Records a daemon state value for `outreach status`; an address in it keeps only
    /// its domain (an IMAP error names the login).
    pub fn set_state(&self, key: &str, value: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.store().set_state(key, value, now)
    }

    /// After an erasure: moves everything out of the WAL into the file and empties the
    /// WAL (`wal_checkpoint(TRUNCATE)`), so the old versions of the erased rows that the
    /// WAL still held are gone; the rows themselves were overwritten in place
    /// (`secure_delete`). With `rewrite`, first rewrites the whole file from its live rows
    /// (`VACUUM`), which also clears fragments that a database written before
    /// `secure_delete` was on may keep in free space; it holds the write lock while it
    /// runs, so only do it when no daemon is writing. Returns false when another
    /// connection was still reading and the WAL could not be emptied now.
    pub fn compact(&self, rewrite: bool) -> anyhow::Result<bool> {
        if rewrite {
            self.conn.execute_batch("VACUUM;").context("Failed to rewrite the database (VACUUM)")?;
        }
        let (busy, _log, _done): (i64, i64, i64) =
            self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(busy == 0)
    }

    /// All daemon state values with the time they were written.
    pub fn states(&self) -> anyhow::Result<Vec<(String, String, DateTime<Utc>)>> {
        let mut st = self.conn.prepare("SELECT key, value, updated_at FROM daemon_state ORDER BY key")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, types::time(r, 2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store<'_> {
    /// The stored `(uidvalidity, highest_uid)` of a mailbox.
    pub fn mailbox_state(&self, mailbox: &str) -> anyhow::Result<Option<(u32, u32)>> {
        Ok(self
            .c
            .query_row("SELECT uidvalidity, highest_uid FROM mailbox_state WHERE mailbox = ?1", [mailbox], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    pub fn set_mailbox_state(&self, mailbox: &str, uidvalidity: u32, highest_uid: u32) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO mailbox_state(mailbox, uidvalidity, highest_uid) VALUES (?1, ?2, ?3)
             ON CONFLICT(mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, highest_uid = excluded.highest_uid",
            params![mailbox, uidvalidity, highest_uid],
        )?;
        Ok(())
    }
}

impl Store<'_> {
    /// Records a daemon state value (see [`Db::set_state`]).
    pub fn set_state(&self, key: &str, value: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        self.c.execute(
            "INSERT INTO daemon_state(key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![key, redact_addresses(value), Ts(now)],
        )?;
        Ok(())
    }
}

impl Tx<'_> {
    /// The typed operations inside this transaction.
    pub fn store(&self) -> Store<'_> {
        Store { c: &self.tx }
    }

    pub fn commit(self) -> anyhow::Result<()> {
        self.tx.commit().context("Failed to commit to the database")
    }

    /// Runs `f` inside a savepoint: on error only its own changes are undone.
    pub fn savepoint<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> anyhow::Result<T>) -> anyhow::Result<T> {
        self.tx.execute_batch("SAVEPOINT one_message")?;
        match f(self) {
            Ok(v) => {
                self.tx.execute_batch("RELEASE one_message")?;
                Ok(v)
            }
            Err(e) => {
                self.tx.execute_batch("ROLLBACK TO one_message; RELEASE one_message")?;
                Err(e)
            }
        }
    }
}

/// The two queues whose rows are settled after a crash by the sent journals.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InFlight {
    Outbox,
    Deliveries,
}

/// Settles rows of a queue left `sending` by a crash: those in `ended` (the end of their
/// message went out and was not refused, by the sent journal) count as sent, the others
/// are queued again. A row in `ended` that is back in the queue (`pending`, `retry`,
/// `queued`) counts as sent too: only a power loss that took back commits made without an
/// fsync leaves one so, and its journal record reached the disk first. Returns
/// `(sent, requeued)`.
pub(crate) fn settle_in_flight(
    c: &Connection,
    queue: InFlight,
    ended: &HashSet<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<(usize, usize)> {
    let (select, sent_sql, requeue_sql) = match queue {
        InFlight::Outbox => (
            "SELECT id, status = 'sending' FROM outbox WHERE status IN ('sending', 'queued')",
            "UPDATE outbox SET status = 'sent', sent_at = ?2, last_error = 'sent just before a crash (not confirmed)' WHERE id = ?1",
            "UPDATE outbox SET status = 'queued' WHERE id = ?1",
        ),
        InFlight::Deliveries => (
            "SELECT id, status = 'sending' FROM deliveries WHERE status IN ('sending', 'pending', 'retry')",
            "UPDATE deliveries SET status = 'sent', sent_at = ?2, last_error = 'sent just before a crash (not confirmed)' WHERE id = ?1",
            "UPDATE deliveries SET status = 'pending' WHERE id = ?1",
        ),
    };
    let rows: Vec<(i64, bool)> = {
        let mut st = c.prepare(select)?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    let (mut sent, mut requeued) = (0, 0);
    for (id, in_flight) in rows {
        if ended.contains(&id) {
            c.execute(sent_sql, params![id, Ts(now)])?;
            sent += 1;
        } else if in_flight {
            c.execute(requeue_sql, [id])?;
            requeued += 1;
        }
    }
    Ok((sent, requeued))
}

/// For the fault tests: `OUTREACH_FAILPOINT=<name>:<n>` makes the first `n` calls of
/// the store operation `name` fail as a full disk would (`SQLITE_FULL`). Only
/// `outcome write` (recording how a delivery ended) has one. Never set in production.
pub(crate) fn failpoint(name: &str) -> anyhow::Result<()> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static ARMED: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static HITS: AtomicU32 = AtomicU32::new(0);
    let armed = ARMED.get_or_init(|| {
        let v = std::env::var("OUTREACH_FAILPOINT").ok()?;
        let (n, count) = v.rsplit_once(':')?;
        Some((n.to_string(), count.parse().ok()?))
    });
    if let Some((n, count)) = armed
        && n == name
        && HITS.fetch_add(1, Ordering::Relaxed) < *count
    {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some(format!("failpoint {name}")),
        );
        return Err(anyhow::Error::new(e).context("Failed to record a delivery outcome"));
    }
    Ok(())
}

/// A store failure that no retry of the same work can fix: the disk or the database is
/// broken. While one lasts nothing may be acknowledged (no MOVE, no send). Other errors
/// (a busy database after the timeout, a constraint) concern the work at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("disk full: the database cannot grow; free space on its disk")]
    DiskFull,
    #[error("disk error: reading or writing the database failed")]
    Io,
    #[error("the database file is damaged; restore it from a backup")]
    Corrupt,
    #[error("the database file cannot be opened")]
    CannotOpen,
}

impl Fault {
    /// The fault behind an error, if it is one. Growing SQLite's shared-memory index
    /// (`-shm`, which the first connection to open the database truncates and writes
    /// anew) fails only for want of space: that is a full disk too.
    pub fn of(e: &anyhow::Error) -> Option<Fault> {
        e.chain().find_map(|c| {
            let err = c.downcast_ref::<rusqlite::Error>()?;
            if err.sqlite_error().is_some_and(|x| x.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE) {
                return Some(Fault::DiskFull);
            }
            match err.sqlite_error_code()? {
                rusqlite::ErrorCode::DiskFull => Some(Fault::DiskFull),
                rusqlite::ErrorCode::SystemIoFailure => Some(Fault::Io),
                rusqlite::ErrorCode::DatabaseCorrupt => Some(Fault::Corrupt),
                rusqlite::ErrorCode::CannotOpen => Some(Fault::CannotOpen),
                _ => None,
            }
        })
    }
}

/// An exclusive lock that keeps a second daemon off the same database.
/// Held for the life of the value; the OS releases it when the process dies.
pub struct DaemonLock {
    _file: File,
    path: PathBuf,
}

/// The path of a file kept beside the database (`<db><suffix>`), its folder created.
pub fn beside_database(db_path: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let mut name = db_path.as_os_str().to_owned();
    name.push(suffix);
    let path = PathBuf::from(name);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("Failed to create the folder {}", dir.display()))?;
    }
    Ok(path)
}

/// Opens `path` for appending, creating it readable and writable by its owner only
/// (mode 0600); an existing file is made owner-only too. For the files beside the
/// database: they name the people in it.
pub fn private_file(path: &Path) -> anyhow::Result<File> {
    let file = File::options()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("Failed to open {}", path.display()))?;
    restrict_existing(path);
    Ok(file)
}

/// Creates an empty database file, owner-only, when there is none. An existing one is
/// never opened here: closing a descriptor of a file drops every POSIX lock the process
/// holds on it, SQLite's included (and a daemon has several connections open).
fn create_private(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    match File::options().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("Failed to create the database {}", path.display())),
    }
}

/// Takes group and other permissions away from an existing file (by its path: no
/// descriptor is opened, see [`create_private`]). A file of another user cannot be
/// changed: that is said in the log, and the work goes on.
fn restrict_existing(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0
        && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
    {
        tracing::warn!(path = %path.display(), error = %e, "could not make the file readable by its owner only");
    }
}

impl DaemonLock {
    pub fn acquire(db_path: &Path) -> anyhow::Result<Self> {
        let path = beside_database(db_path, ".lock")?;
        let file = private_file(&path).with_context(|| format!("Failed to open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another outreach daemon is already using the database {} (lock {} is held); stop it first",
                db_path.display(),
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("Failed to lock {}", path.display()))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        drop(Db::open(&p).unwrap());
        let db = Db::open(&p).unwrap();
        let v: usize = db.conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, MIGRATIONS.len());
    }

    #[test]
    fn a_full_disk_is_a_fault_in_plain_words_and_a_busy_database_is_not() {
        let sqlite = |code| {
            anyhow::Error::from(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None))
                .context("Failed to commit")
        };
        let full = sqlite(rusqlite::ffi::SQLITE_FULL);
        assert_eq!(Fault::of(&full), Some(Fault::DiskFull));
        assert!(Fault::DiskFull.to_string().starts_with("disk full"));
        assert_eq!(Fault::of(&sqlite(rusqlite::ffi::SQLITE_IOERR_SHMSIZE)), Some(Fault::DiskFull));
        assert_eq!(Fault::of(&sqlite(rusqlite::ffi::SQLITE_IOERR)), Some(Fault::Io));
        assert_eq!(Fault::of(&sqlite(rusqlite::ffi::SQLITE_BUSY)), None);
        assert_eq!(Fault::of(&anyhow::anyhow!("something else")), None);
    }

    #[test]
    fn states_are_checked_by_the_database_too() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("db.sqlite")).unwrap();
        let bad = db.conn.execute(
            "INSERT INTO subscribers(email, status, source, created_at, token_nonce) VALUES ('a@b.nl', 'activ', 'x', 'now', 'n')",
            [],
        );
        assert!(bad.unwrap_err().to_string().contains("CHECK"), "a status outside the list is refused");
    }

    #[test]
    fn a_database_of_schema_version_2_migrates_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        {
            let mut c = Connection::open(&p).unwrap();
            let tx = c.transaction().unwrap();
            for (_, sql) in &MIGRATIONS[..2] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 2).unwrap();
            tx.execute_batch(
                "INSERT INTO contacts(id, email, first_seen_at) VALUES (1, 'a@b.nl', '2026-01-01T00:00:00.000Z');
                 INSERT INTO conversations(id, contact_id, category, subject_norm, created_at, updated_at) VALUES (1, 1, 'question', 'x', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
                 INSERT INTO messages(id, dedupe_key, category, reason, language, status, folder, conversation_id, received_at, filed_at) VALUES (1, 'k', 'question', 'r', 'nl', 'new', 'Vragen', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');
                 INSERT INTO outbox(id, kind, message_id, reply_to_msg, conversation_id, rcpt, raw, status, next_attempt_at, created_at) VALUES (1, 'auto_reply', 'm', 1, 1, 'a@b.nl', x'00', 'sent', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let db = Db::open(&p).unwrap();
        let m = db.get_message(crate::domain::ids::MessageRowId(1)).unwrap().unwrap();
        assert_eq!(
            (m.category, m.status),
            (crate::domain::Category::Question, crate::domain::state::MessageStatus::New)
        );
        assert_eq!(db.outbox_counts().unwrap().sent, 1);
        let fk: i64 = db.conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 0);
        let on: i64 = db.conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(on, 1, "foreign keys are on again after the rebuild");
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_database_its_wal_and_the_lock_are_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        let mut db = Db::open(&p).unwrap();
        db.write(|st| st.secret("x", || "y".into(), Utc::now())).unwrap();
        let _lock = DaemonLock::acquire(&p).unwrap();
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let f = beside_database(&p, suffix).unwrap();
            assert!(f.exists(), "{}", f.display());
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        drop(db);
        // A database left readable by others (an older version) is made owner-only.
        for suffix in ["", "-wal", "-shm"] {
            let f = beside_database(&p, suffix).unwrap();
            if f.exists() {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _db = Db::open(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&beside_database(&p, "-wal").unwrap()), 0o600);
        let on: i64 = _db.conn.query_row("PRAGMA secure_delete", [], |r| r.get(0)).unwrap();
        assert_eq!(on, 1, "secure_delete is on");
    }

    #[test]
    fn a_second_daemon_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        let first = DaemonLock::acquire(&p).unwrap();
        let err = DaemonLock::acquire(&p).err().expect("second lock must fail").to_string();
        assert!(err.contains("another outreach daemon"), "{err}");
        drop(first);
        DaemonLock::acquire(&p).unwrap();
    }
}
