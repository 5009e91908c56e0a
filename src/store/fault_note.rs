//! The store fault the daemon is living with (a full disk), kept beside the database in
//! `<db>.fault` for `outreach status`: while the disk is full the database itself may be
//! unable to record it. The file is made at start-up with its room already written, and
//! is rewritten in place from then on, which takes no new space on the disk.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::domain::time::{parse_ts, ts};

/// The room of the note, written in full at start-up.
const NOTE_BYTES: usize = 512;

pub struct FaultNote {
    file: File,
    path: PathBuf,
}

impl FaultNote {
    /// Opens (creating, owner-only) `<db>.fault` and empties it: a daemon starts without
    /// a fault.
    pub fn open(db_path: &Path) -> anyhow::Result<Self> {
        let path = super::beside_database(db_path, ".fault")?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("Failed to open {}", path.display()))?;
        super::restrict_existing(&path);
        let note = Self { file, path };
        note.write("")?;
        Ok(note)
    }

    /// Records the fault, with the time it began.
    pub fn set(&self, fault: &str, since: DateTime<Utc>) -> anyhow::Result<()> {
        self.write(&format!("{}\t{}", ts(since), fault.replace(['\n', '\r', '\t'], " ")))
    }

    /// The fault is over.
    pub fn clear(&self) -> anyhow::Result<()> {
        self.write("")
    }

    /// Overwrites the whole room in place: the text, then spaces.
    fn write(&self, text: &str) -> anyhow::Result<()> {
        let mut end = text.len().min(NOTE_BYTES - 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut buf = vec![b' '; NOTE_BYTES];
        buf[..end].copy_from_slice(&text.as_bytes()[..end]);
        buf[NOTE_BYTES - 1] = b'\n';
        self.file.write_all_at(&buf, 0).with_context(|| format!("Failed to write {}", self.path.display()))
    }

    /// The fault recorded beside the database at `db_path` and when it began, if any.
    pub fn read(db_path: &Path) -> Option<(String, DateTime<Utc>)> {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".fault");
        let text = std::fs::read_to_string(PathBuf::from(name)).ok()?;
        let (since, fault) = text.trim().split_once('\t')?;
        Some((fault.to_string(), parse_ts(since)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_noted_in_place_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let note = FaultNote::open(&db).unwrap();
        assert_eq!(FaultNote::read(&db), None);
        let t = parse_ts("2026-12-01T10:00:00Z").unwrap();
        note.set("disk full: free space\nplease", t).unwrap();
        assert_eq!(FaultNote::read(&db), Some(("disk full: free space please".to_string(), t)));
        let len = std::fs::metadata(dir.path().join("x.db.fault")).unwrap().len();
        note.set(&"é".repeat(600), t).unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("x.db.fault")).unwrap().len(), len, "never grows");
        note.clear().unwrap();
        assert_eq!(FaultNote::read(&db), None);
    }
}
