//! The sent journal: one `write()` of a row id to an append-only file, made right before
//! the terminating `.` of its message goes out.
//!
//! Why not an UPDATE in SQLite: a commit ends with several more system calls (lock
//! releases) after the data is safe, and a crash in that stretch loses the mail (it was
//! recorded as sent but its end never went out). One append is the shortest possible
//! record: nothing runs between it and the write of the terminator. A process crash
//! keeps what was written (the page cache survives it).
//!
//! **Format.** One line per event, in order: `<id>` when the end of row `id`'s message
//! is about to be written, `-<id>` when the server then refused that end (4xx/5xx to the
//! final `.`: not delivered). A row's last line decides: the ids whose last line is
//! positive reached the end of their message and were not refused. A torn last line (a
//! crash mid-write) records nothing, nor do bytes that are not a line of digits; a record
//! whose write fails is cut off again, so a half-written line can never join the next one.
//!
//! **On disk.** Appending costs no fsync on the sending path: a syncer thread calls
//! `fdatasync` when there are records it has not synced yet, at most every
//! [`SYNC_INTERVAL`], so each record reaches the disk within about 25 ms of being written
//! (one `fdatasync` costs ~3 ms on the project's machine: one per message would cap
//! sending at ~300 messages a second per connection, and syncing without a pause took
//! 11 % of the CPU of a send). A refusal is synced before it returns (rare, and a lost
//! refusal would make a refused copy count as sent).
//!
//! **Emptying.** The owner empties the journal only when every row it recorded has its
//! outcome committed durably (see [`SentJournal::clear`]); until then an entry is the
//! only proof that its message went out.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::Context;

/// The shortest time between two syncs of the syncer thread.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

pub struct SentJournal {
    shared: Arc<Shared>,
    syncer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the syncer when there is something to sync, and waiters when it synced.
    cond: Condvar,
    /// A second descriptor of the file, for `fdatasync` outside the lock.
    sync_fd: File,
    path: PathBuf,
}

struct State {
    file: File,
    /// The length of the file after the last whole record.
    len: u64,
    /// Records appended / synced so far (counters, never reset).
    appended: u64,
    synced: u64,
    /// Something was recorded since the journal was last emptied.
    dirty: bool,
    /// Why records are refused: a failed record could not be cut off again, or a sync
    /// failed. Cleared when the journal is emptied successfully.
    broken: Option<String>,
    stop: bool,
    /// The syncer waits for records (only then does a record wake it).
    idle: bool,
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
        let len = file.metadata()?.len();
        let sync_fd = file.try_clone()?;
        let state = State { file, len, appended: 0, synced: 0, dirty: len > 0, broken: None, stop: false, idle: false };
        let shared = Arc::new(Shared { state: Mutex::new(state), cond: Condvar::new(), sync_fd, path });
        let s = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn(move || s.sync_loop())
            .context("Failed to start the journal's sync thread")?;
        Ok(Self { shared, syncer: Some(syncer) })
    }

    /// Records that the end of row `id`'s message is about to be written. One write call.
    pub fn record(&self, id: i64) -> anyhow::Result<()> {
        self.shared.append(id)
    }

    /// Records that the server refused the end of row `id`'s message (it was not
    /// delivered), and waits until that is on disk.
    pub fn refused(&self, id: i64) -> anyhow::Result<()> {
        self.shared.append(-id)?;
        self.shared.sync_data()
    }

    /// The ids whose message end went out, by the last line recorded for each since the
    /// journal was last emptied.
    pub fn ids(&self) -> anyhow::Result<HashSet<i64>> {
        let mut st = self.shared.lock()?;
        let mut bytes = Vec::new();
        st.file.rewind()?;
        st.file.read_to_end(&mut bytes).with_context(|| format!("Failed to read {}", self.shared.path.display()))?;
        Ok(parse(&bytes))
    }

    /// Whether anything was recorded since the journal was last emptied.
    pub fn is_dirty(&self) -> bool {
        self.shared.lock().is_ok_and(|st| st.dirty)
    }

    /// Empties the journal. Only when every row it recorded has its outcome committed,
    /// durably (a power loss must not take back an outcome whose proof is gone).
    pub fn clear(&self) -> anyhow::Result<()> {
        let mut st = self.shared.lock()?;
        st.file.set_len(0).with_context(|| format!("Failed to empty {}", self.shared.path.display()))?;
        st.len = 0;
        st.dirty = false;
        st.broken = None;
        Ok(())
    }
}

impl Drop for SentJournal {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stop = true;
        }
        self.shared.cond.notify_all();
        if let Some(t) = self.syncer.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> anyhow::Result<MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| anyhow::anyhow!("journal lock poisoned"))
    }

    fn append(&self, value: i64) -> anyhow::Result<()> {
        let mut line = itoa_line(value);
        let mut st = self.lock()?;
        if let Some(why) = &st.broken {
            anyhow::bail!("the sent journal {} refuses records: {why}", self.path.display());
        }
        let bytes = line.as_bytes_mut();
        if let Err(e) = st.file.write_all(bytes) {
            // Cut a partial line off again, so that the next record cannot complete it.
            let len = st.len;
            if let Err(cut) = st.file.set_len(len) {
                st.broken = Some(format!("a failed record could not be cut off ({cut})"));
            }
            return Err(e).with_context(|| format!("Failed to append to {}", self.path.display()));
        }
        st.len += bytes.len() as u64;
        st.appended += 1;
        st.dirty = true;
        let wake = st.idle;
        drop(st);
        if wake {
            self.cond.notify_all();
        }
        Ok(())
    }

    /// Syncs now, on the caller's thread.
    fn sync_data(&self) -> anyhow::Result<()> {
        let target = self.lock()?.appended;
        self.sync_fd.sync_data().with_context(|| format!("Failed to sync {}", self.path.display()))?;
        let mut st = self.lock()?;
        st.synced = st.synced.max(target);
        Ok(())
    }

    /// The syncer: `fdatasync` whenever records were appended since the last one.
    fn sync_loop(&self) {
        loop {
            let target = {
                let Ok(mut st) = self.state.lock() else { return };
                while st.appended == st.synced && !st.stop {
                    st.idle = true;
                    st = match self.cond.wait(st) {
                        Ok(st) => st,
                        Err(_) => return,
                    };
                }
                st.idle = false;
                if st.appended == st.synced {
                    return;
                }
                st.appended
            };
            let started = std::time::Instant::now();
            let result = self.sync_fd.sync_data();
            let Ok(mut st) = self.state.lock() else { return };
            match result {
                Ok(()) => st.synced = st.synced.max(target),
                Err(e) => {
                    // Whether the records reached the disk is unknown: refuse new ones
                    // (nothing is sent) until the journal is emptied.
                    tracing::error!(path = %self.path.display(), error = %e, "the sent journal could not be synced");
                    st.broken = Some(format!("syncing failed ({e})"));
                    st.synced = target;
                }
            }
            // A pause, so that one sync covers the records of many messages (records
            // made meanwhile do not wake it: that would cost them a futex call each).
            let stop = st.stop;
            drop(st);
            let rest = SYNC_INTERVAL.saturating_sub(started.elapsed());
            if !stop && !rest.is_zero() {
                std::thread::sleep(rest);
            }
        }
    }
}

/// `value` and a newline, without an allocation.
fn itoa_line(value: i64) -> LineBuf {
    let mut buf = LineBuf { bytes: [0; 24], start: 24 };
    buf.start -= 1;
    buf.bytes[buf.start] = b'\n';
    let mut n = value.unsigned_abs();
    loop {
        buf.start -= 1;
        buf.bytes[buf.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        buf.start -= 1;
        buf.bytes[buf.start] = b'-';
    }
    buf
}

struct LineBuf {
    bytes: [u8; 24],
    start: usize,
}

impl LineBuf {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

/// The ids whose last complete line is positive.
fn parse(bytes: &[u8]) -> HashSet<i64> {
    // A torn last line (crash mid-write) cannot have been followed by the terminator,
    // and bytes that are not a line of digits (a damaged block) record nothing.
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => return HashSet::new(),
    };
    let mut ended = HashSet::new();
    for line in complete.split(|&b| b == b'\n') {
        let Some(v) = std::str::from_utf8(line).ok().and_then(|l| l.trim().parse::<i64>().ok()) else {
            continue;
        };
        if v > 0 {
            ended.insert(v);
        } else {
            ended.remove(&-v);
        }
    }
    ended
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
        assert!(!j.is_dirty());
        j.record(3).unwrap();
        j.record(7).unwrap();
        drop(j);
        let j = SentJournal::open(&db).unwrap();
        assert!(j.is_dirty(), "records from before count as unsettled");
        assert_eq!(j.ids().unwrap(), HashSet::from([3, 7]));
        j.clear().unwrap();
        assert!(j.ids().unwrap().is_empty() && !j.is_dirty());
        j.record(9).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([9]));
    }

    #[test]
    fn the_last_line_of_a_row_decides_and_records_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let j = SentJournal::open(&db).unwrap();
        // 5 refused at its end, then sent on a later attempt; 6 refused; 8 sent, then
        // refused, then its next attempt never reached its end.
        for v in [5, 6, 8] {
            j.record(v).unwrap();
        }
        j.refused(5).unwrap();
        j.refused(6).unwrap();
        j.refused(8).unwrap();
        j.record(5).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([5]));
        // The syncer catches up with what was appended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let st = j.shared.lock().unwrap();
            if st.synced == st.appended {
                break;
            }
            drop(st);
            assert!(std::time::Instant::now() < deadline, "the syncer never synced");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let text = std::fs::read_to_string(dir.path().join("x.db.sent-journal")).unwrap();
        assert_eq!(text, "5\n6\n8\n-5\n-6\n-8\n5\n");
        assert_eq!(itoa_line(-1234567890123).as_bytes_mut(), b"-1234567890123\n");
        assert_eq!(itoa_line(0).as_bytes_mut(), b"0\n");
    }

    #[test]
    fn a_failed_record_is_cut_off_and_never_joins_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let j = SentJournal::open(&db).unwrap();
        j.record(1).unwrap();
        // A half-written line, as a write that failed midway would leave it, then cut off
        // the way `append` does.
        {
            let mut st = j.shared.lock().unwrap();
            st.file.write_all(b"2").unwrap();
            let len = st.len;
            st.file.set_len(len).unwrap();
        }
        j.record(3).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([1, 3]), "no 23");
        // A journal that refuses records (a cut that failed) refuses until emptied.
        j.shared.lock().unwrap().broken = Some("test".into());
        assert!(j.record(4).is_err());
        j.clear().unwrap();
        j.record(4).unwrap();
        assert_eq!(j.ids().unwrap(), HashSet::from([4]));
    }
}
