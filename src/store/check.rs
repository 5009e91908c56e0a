//! Looking after the database file itself: an online backup (SQLite's backup API, safe
//! while the daemon runs and writes), and a check of a database file (integrity, foreign
//! keys, schema version, permissions) that changes nothing: no migration, no new file, no
//! change of permissions. `outreach db backup`, `outreach db check` and `outreach doctor`
//! use them.

use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{MIGRATIONS, beside_database};

/// How thoroughly [`inspect`] reads the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// `quick_check`: every page and row is read, indexes are not compared with their
    /// tables (the doctor's check: seconds for a large file).
    Quick,
    /// `integrity_check`: also every index against its table (`outreach db check`).
    Full,
}

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub struct Health {
    /// Migrations applied to the file (`user_version`).
    pub schema_version: usize,
    /// Migrations this binary knows.
    pub known_version: usize,
    /// What the integrity check reported, at most 20 lines; empty when the file is sound.
    pub damage: Vec<String>,
    /// Rows whose foreign key points at no row.
    pub foreign_key_violations: u64,
}

impl Health {
    /// Migrations the daemon will apply when it next starts.
    pub fn pending_migrations(&self) -> usize {
        self.known_version.saturating_sub(self.schema_version)
    }

    /// Written by a newer outreach: this binary cannot use it.
    pub fn newer_than_binary(&self) -> bool {
        self.schema_version > self.known_version
    }

    /// Nothing wrong: no damage, no broken foreign key, a schema this binary knows.
    pub fn sound(&self) -> bool {
        self.damage.is_empty() && self.foreign_key_violations == 0 && !self.newer_than_binary()
    }
}

/// Checks the database at `path` without changing it. A file that is no SQLite database
/// (or whose first page is damaged) is reported as damage, not as an error; an error is a
/// file that cannot be opened at all (missing, no permission).
pub fn inspect(path: &Path, depth: Depth) -> anyhow::Result<Health> {
    if !path.is_file() {
        bail!("there is no database at {}", path.display());
    }
    let conn = open_existing(path)?;
    let known_version = MIGRATIONS.len();
    let unreadable = |e: rusqlite::Error| -> anyhow::Result<Health> {
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => Ok(Health {
                schema_version: 0,
                known_version,
                damage: vec![format!("not an SQLite database, or damaged beyond reading ({e})")],
                foreign_key_violations: 0,
            }),
            _ => Err(e).with_context(|| format!("Failed to read the database {}", path.display())),
        }
    };
    let schema_version: usize = match conn.query_row("PRAGMA user_version", [], |r| r.get(0)) {
        Ok(v) => v,
        Err(e) => return unreadable(e),
    };
    let sql = match depth {
        Depth::Quick => "PRAGMA quick_check(20)",
        Depth::Full => "PRAGMA integrity_check(20)",
    };
    let lines: Vec<String> = match conn
        .prepare(sql)
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>())
    {
        Ok(lines) => lines,
        Err(e) => return unreadable(e),
    };
    let damage = if lines == ["ok"] { Vec::new() } else { lines };
    let foreign_key_violations: u64 =
        match conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)) {
            Ok(n) => n,
            Err(e) if damage.is_empty() => return unreadable(e),
            Err(_) => 0,
        };
    Ok(Health { schema_version, known_version, damage, foreign_key_violations })
}

/// A file of the database (the file, its WAL and shared memory, the lock, the journals)
/// that users other than its owner may read or write.
#[derive(Debug, Clone)]
pub struct LooseFile {
    pub path: PathBuf,
    pub mode: u32,
}

/// The files of the database at `path` that are not owner-only (the daemon makes its
/// files 0600; an older version or a copy by hand may have left them open).
pub fn loose_files(path: &Path) -> Vec<LooseFile> {
    ["", "-wal", "-shm", ".lock", ".sent-journal", ".newsletter-journal"]
        .iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = PathBuf::from(name);
            let mode = std::fs::metadata(&file).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then_some(LooseFile { path: file, mode })
        })
        .collect()
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub bytes: u64,
    pub schema_version: usize,
}

/// Copies the database at `src` to `dest` with SQLite's online backup: one read
/// transaction over the whole file, so the copy is the database as it was at one moment,
/// while the daemon goes on writing (WAL: a reader does not block writers). The copy is
/// written beside `dest` first (owner-only), checked (`quick_check`), synced, then
/// renamed into place; it is a single file (rollback journal mode) that needs no `-wal`.
/// An existing `dest` is only replaced with `replace`.
pub fn backup(src: &Path, dest: &Path, replace: bool) -> anyhow::Result<BackupReport> {
    if !src.is_file() {
        bail!("there is no database at {}", src.display());
    }
    if dest.exists() && !replace {
        bail!("{} already exists; use --force to replace it", dest.display());
    }
    if let (Ok(a), Ok(b)) = (src.canonicalize(), dest.canonicalize())
        && a == b
    {
        bail!("the backup cannot replace the database itself");
    }
    let name = dest.file_name().with_context(|| format!("{} is not a file name", dest.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(".partial");
    let partial = dest.with_file_name(partial_name);
    // Left by a backup that was killed: it was never renamed, so it is no backup.
    let _ = std::fs::remove_file(&partial);
    let result = copy_into(src, &partial).and_then(|schema_version| {
        std::fs::rename(&partial, dest)
            .with_context(|| format!("Failed to move the backup into place at {}", dest.display()))?;
        if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        let bytes = std::fs::metadata(dest)?.len();
        Ok(BackupReport { bytes, schema_version })
    });
    if result.is_err() {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut n = partial.as_os_str().to_owned();
            n.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(n));
        }
    }
    result
}

/// The backup proper, into the new file `partial`; returns the schema version copied.
fn copy_into(src: &Path, partial: &Path) -> anyhow::Result<usize> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("Failed to create {}", partial.display()))?;
    let from = open_existing(src)?;
    let mut to = Connection::open(partial).with_context(|| format!("Failed to open {}", partial.display()))?;
    {
        let backup = Backup::new(&from, &mut to).context("Failed to start the backup")?;
        // All pages in one step: one read transaction, one consistent copy. Busy only
        // while another connection recovers the WAL: wait a little and try again.
        let mut busy = 0;
        loop {
            match backup.step(-1).context("The backup failed")? {
                StepResult::Done => break,
                StepResult::More => {}
                _ => {
                    busy += 1;
                    if busy > 600 {
                        bail!("the database stayed busy for a minute; try again");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    drop(from);
    // One self-contained file: a restored copy needs no -wal beside it (the daemon
    // switches it back to WAL when it opens it).
    let _: String = to.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    let check: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        bail!("the copy is damaged ({check}): the database itself probably is; run `outreach db check`");
    }
    let schema_version: usize = to.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    drop(to);
    let file = File::open(partial)?;
    file.sync_all().with_context(|| format!("Failed to write {} to disk", partial.display()))?;
    std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o600))?;
    Ok(schema_version)
}

/// Opens an existing database read-write without creating it, applying migrations or
/// changing its permissions. SQLite, run by root, gives any `-wal` and `-shm` it creates
/// the owner of the database file.
fn open_existing(path: &Path) -> anyhow::Result<Connection> {
    beside_database(path, "")?;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("Failed to open the database {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Db;

    #[test]
    fn a_backup_is_a_sound_owner_only_single_file_and_is_not_overwritten_unasked() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("db.sqlite");
        let mut db = Db::open(&db_path).unwrap();
        db.write(|st| st.secret("x", || "y".into(), chrono::Utc::now())).unwrap();
        let dest = dir.path().join("backup.sqlite");
        let report = backup(&db_path, &dest, false).unwrap();
        assert!(report.bytes > 0);
        assert_eq!(report.schema_version, MIGRATIONS.len());
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!dir.path().join("backup.sqlite-wal").exists(), "a single file");
        let health = inspect(&dest, Depth::Full).unwrap();
        assert!(health.sound() && health.pending_migrations() == 0, "{health:?}");
        let err = backup(&db_path, &dest, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        backup(&db_path, &dest, true).unwrap();
        let copy = Db::open(&dest).unwrap();
        assert_eq!(copy.store().secret("x", || "other".into(), chrono::Utc::now()).unwrap(), "y");
        assert!(backup(&db_path, &db_path, true).is_err(), "never over the database itself");
    }

    #[test]
    fn a_file_that_is_no_database_and_a_damaged_page_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.sqlite");
        std::fs::write(&junk, vec![b'x'; 8192]).unwrap();
        let h = inspect(&junk, Depth::Quick).unwrap();
        assert!(!h.sound() && h.damage[0].contains("not an SQLite database"), "{h:?}");

        let p = dir.path().join("db.sqlite");
        {
            let mut db = Db::open(&p).unwrap();
            db.write(|st| st.secret("x", || "y".repeat(3000), chrono::Utc::now())).unwrap();
            db.compact(true).unwrap();
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let page = 4096;
        assert!(bytes.len() > 3 * page);
        // Scribble over the b-tree page headers of every page but the first.
        for start in (page..bytes.len()).step_by(page) {
            bytes[start..start + 12].fill(0xA5);
        }
        std::fs::write(&p, bytes).unwrap();
        let h = inspect(&p, Depth::Quick).unwrap();
        assert!(!h.sound() && !h.damage.is_empty(), "{h:?}");
        assert!(inspect(&dir.path().join("missing.sqlite"), Depth::Quick).is_err());
    }

    #[test]
    fn loose_files_are_those_others_may_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.sqlite");
        drop(Db::open(&p).unwrap());
        assert!(loose_files(&p).is_empty());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loose = loose_files(&p);
        assert_eq!(loose.len(), 1);
        assert_eq!(loose[0].mode, 0o644);
    }
}
