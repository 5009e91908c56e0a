//! The sent journal: one `write()` of a row id to an append-only file, made right before
//! the terminating `.` of its message goes out.
//!
//! Why not an UPDATE in SQLite: a commit ends with several more system calls (lock
//! releases) after the data is safe, and a crash in that stretch loses the mail (it was
//! recorded as sent but its end never went out). One append is the shortest possible
//! record: nothing runs between it and the write of the terminator. A process crash
//! keeps what was written (the page cache survives it).
//!
//! At start-up, rows still `sending` whose id is in the journal reached the end of their
//! message and count as sent; the others never did and are sent again. The journal is
//! emptied whenever no delivery is in flight.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use anyhow::Context;

pub struct SentJournal {
    file: Mutex<File>,
    path: PathBuf,
}

impl SentJournal {
    /// Opens (creating) the journal beside the database: `<db>.sent-journal`.
    pub fn open(db_path: &Path) -> anyhow::Result<Self> {
        Self::open_named(db_path, ".sent-journal")
    }

    /// A journal beside the database with its own suffix (one per kind of row).
    pub fn open_named(db_path: &Path, suffix: &str) -> anyhow::Result<Self> {
        let path = crate::store::beside_database(db_path, suffix)?;
        // Owner-only, like the database it belongs to.
        let file = crate::store::private_file(&path)
            .with_context(|| format!("Failed to open the sent journal {}", path.display()))?;
        Ok(Self { file: Mutex::new(file), path })
    }

    fn file(&self) -> anyhow::Result<std::sync::MutexGuard<'_, File>> {
        self.file.lock().map_err(|_| anyhow::anyhow!("journal lock poisoned"))
    }

    /// Records that the end of row `id`'s message is about to be written. One write call.
    pub fn record(&self, id: i64) -> anyhow::Result<()> {
        let line = format!("{id}\n");
        let mut f = self.file()?;
        f.write_all(line.as_bytes()).with_context(|| format!("Failed to append to {}", self.path.display()))
    }

    /// The ids recorded since the journal was last emptied.
    pub fn ids(&self) -> anyhow::Result<HashSet<i64>> {
        let mut f = self.file()?;
        let mut bytes = Vec::new();
        f.rewind()?;
        f.read_to_end(&mut bytes).with_context(|| format!("Failed to read {}", self.path.display()))?;
        // A torn last line (crash mid-write) cannot have been followed by the terminator,
        // and bytes that are not a line of digits (a damaged block) record nothing.
        let text = String::from_utf8_lossy(&bytes);
        let complete = text.rsplit_once('\n').map_or("", |(lines, _)| lines);
        Ok(complete.split('\n').filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Empties the journal; only when no delivery is in flight.
    pub fn clear(&self) -> anyhow::Result<()> {
        let f = self.file()?;
        f.set_len(0).with_context(|| format!("Failed to empty {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_and_damaged_bytes_record_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let j = SentJournal::open(&db).unwrap();
        j.record(3).unwrap();
        drop(j);
        let path = crate::store::beside_database(&db, ".sent-journal").unwrap();
        let mut f = File::options().append(true).open(&path).unwrap();
        f.write_all(b"\xff\xfe\n12\n4").unwrap(); // damaged bytes, a whole line, a torn one
        drop(f);
        let j = SentJournal::open(&db).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([3, 12]), "the torn 4 was never followed by its end");
    }

    #[test]
    fn records_survive_reopening_and_clear_empties() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let j = SentJournal::open(&db).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("x.db.sent-journal")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by the owner only");
        j.record(3).unwrap();
        j.record(7).unwrap();
        drop(j);
        let j = SentJournal::open(&db).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([3, 7]));
        j.clear().unwrap();
        assert!(j.ids().unwrap().is_empty());
        j.record(9).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([9]));
    }
}
