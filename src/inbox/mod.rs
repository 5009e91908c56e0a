//! The inbox: turns each message in the watched mailbox into a filed one.
//!
//! fetch (`BODY.PEEK[]`) -> parse -> automatic? -> follow-up? -> classify -> language ->
//! **one transaction** (message, contact, conversation, auto-reply) -> commit -> MOVE.
//! A crash anywhere re-sees the message; the dedupe key stops a second filing or reply.

pub mod auth;
mod filing;
pub mod imap;
pub mod parse;
pub mod triage;

use self::imap::ImapSource;
use crate::domain::Category;
use crate::domain::ids::MessageRowId;
use crate::domain::time::Clock;
use crate::store::Db;
pub use filing::Pipeline;

/// Bytes fetched per IMAP command and filed per transaction (bounds memory).
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
const BATCH_MESSAGES: usize = 200;

/// The outcome for one message.
#[derive(Debug, Clone)]
pub struct Filed {
    pub uid: u32,
    pub message_row: MessageRowId,
    pub folder: String,
    /// False when the message had been filed before (a replay after a crash).
    pub new: bool,
    pub category: Category,
    pub replied: bool,
}

impl Filed {
    /// A message filed before (a replay after a crash): it goes where it went the first time.
    fn replayed(m: &imap::FetchedMessage, row: MessageRowId, folder: String) -> Self {
        Filed { uid: m.meta.uid, message_row: row, folder, new: false, category: Category::Review, replied: false }
    }
}

/// Counts of one pass over the mailbox.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    pub seen: usize,
    pub filed: usize,
    pub replayed: usize,
    pub replies_queued: usize,
    pub moved: usize,
    pub left: usize,
}

/// One pass over the watched mailbox: file everything in it and move it to its folder,
/// in batches (bounded in bytes and count): fetch -> file (one transaction) -> commit ->
/// `on_committed` (the daemon wakes the senders there) -> MOVE -> record the move.
pub fn process_mailbox(
    src: &mut ImapSource,
    db: &mut Db,
    pipeline: &Pipeline<'_>,
    max_size: u64,
    clock: &Clock,
    mut on_committed: impl FnMut(&[Filed]),
) -> anyhow::Result<PassStats> {
    let mut stats = PassStats::default();
    let mailbox = src.mailbox().to_string();
    match db.store().mailbox_state(&mailbox)? {
        Some((validity, _)) if validity != src.uidvalidity => {
            // Dedupe is by Message-ID or content hash, not UID: nothing is filed or
            // answered twice; the coordinator is told once.
            pipeline.mailbox_recreated(db, &mailbox, validity, src.uidvalidity, clock.now())?;
            on_committed(&[]);
        }
        Some(_) => {}
        None => db.store().set_mailbox_state(&mailbox, src.uidvalidity, 0)?,
    }
    let uids = src.search_all()?;
    stats.seen = uids.len();
    record_moves_made_before(src, db, &uids, clock)?;
    if src.copies() {
        remove_copied(src, db)?;
    }
    if uids.is_empty() {
        return Ok(stats);
    }
    let metas = src.fetch_meta(&uids)?;
    let mut batch: Vec<imap::MessageMeta> = Vec::new();
    let mut bytes = 0;
    for (i, meta) in metas.iter().enumerate() {
        batch.push(*meta);
        bytes += meta.size.min(max_size);
        if bytes >= BATCH_BYTES || batch.len() >= BATCH_MESSAGES || i + 1 == metas.len() {
            bytes = 0;
            let filed = fetch_and_file(src, db, pipeline, std::mem::take(&mut batch), max_size, clock)?;
            for f in &filed {
                if f.new {
                    stats.filed += 1;
                } else {
                    stats.replayed += 1;
                }
                stats.replies_queued += usize::from(f.replied);
            }
            on_committed(&filed);
            stats.moved += move_filed(src, db, &filed, clock)?;
        }
    }
    let highest = metas.iter().map(|m| m.uid).max().unwrap_or(0);
    db.store().set_mailbox_state(&mailbox, src.uidvalidity, highest)?;
    if src.copies() {
        remove_copied(src, db)?;
    }
    stats.left = stats.seen - stats.moved;
    Ok(stats)
}

/// On a server without MOVE, filed messages were copied to their folder and flagged
/// `\Deleted` in the watched mailbox (our search skips them: `UNDELETED`); this removes
/// them. Ours are those this session flagged and those filed under this UIDVALIDITY
/// (left by an earlier run or a crash between the flag and the expunge).
///
/// With UIDPLUS, `UID EXPUNGE` removes exactly ours (RFC 4315). Without it the only
/// command left is a plain `EXPUNGE`, which removes *every* `\Deleted` message in the
/// mailbox (RFC 3501 6.4.3), including one a person marked deleted in their mail
/// program and may still take back. So it is sent only when every `\Deleted` message is
/// ours; while another one is there, ours stay flagged (hidden, never filed again) and
/// go with the first pass after it is gone. The window between the search and the
/// EXPUNGE is one round trip: a message someone flags in it was meant to go anyway.
/// Returns how many were removed.
fn remove_copied(src: &mut ImapSource, db: &Db) -> anyhow::Result<usize> {
    let deleted = src.search_deleted()?;
    if deleted.is_empty() {
        return Ok(0);
    }
    let filed = db.filed_uids_among(src.uidvalidity, &deleted)?;
    let (ours, others): (Vec<u32>, Vec<u32>) =
        deleted.iter().partition(|u| filed.contains(u) || src.flagged_by_us().contains(u));
    if ours.is_empty() {
        return Ok(0);
    }
    if src.has_uid_expunge() || others.is_empty() {
        src.expunge(&ours)?;
        tracing::debug!(removed = ours.len(), "filed copies expunged from the mailbox");
        Ok(ours.len())
    } else {
        tracing::warn!(
            ours = ours.len(),
            others = others.len(),
            "server lacks MOVE and UIDPLUS and another client has marked messages deleted: \
             the filed copies stay flagged \\Deleted until those are gone (a plain EXPUNGE would remove them too)"
        );
        Ok(0)
    }
}

/// Filed messages no longer in the mailbox were moved (a crash may have come between the
/// MOVE and recording it): record it now.
fn record_moves_made_before(src: &ImapSource, db: &mut Db, uids: &[u32], clock: &Clock) -> anyhow::Result<()> {
    let present: std::collections::HashSet<u32> = uids.iter().copied().collect();
    let gone: Vec<MessageRowId> = db
        .unmoved_uids(src.uidvalidity)?
        .into_iter()
        .filter(|(_, uid)| !present.contains(uid))
        .map(|(id, _)| id)
        .collect();
    if !gone.is_empty() {
        db.mark_moved(&gone, clock.now())?;
    }
    Ok(())
}

/// Fetches one batch (bodies, or headers only for mail over `max_size`) and files it in
/// one transaction.
fn fetch_and_file(
    src: &mut ImapSource,
    db: &mut Db,
    pipeline: &Pipeline<'_>,
    batch: Vec<imap::MessageMeta>,
    max_size: u64,
    clock: &Clock,
) -> anyhow::Result<Vec<Filed>> {
    let (big, small): (Vec<_>, Vec<_>) = batch.into_iter().partition(|m| m.size > max_size);
    let t0 = std::time::Instant::now();
    let mut fetched = src.fetch_bodies(&small)?;
    fetched.extend(src.fetch_headers(&big)?);
    let t1 = std::time::Instant::now();
    let filed = pipeline.file_batch(db, &fetched, src.uidvalidity, clock.now())?;
    tracing::debug!(
        messages = filed.len(),
        fetch_ms = (t1 - t0).as_millis(),
        file_ms = t1.elapsed().as_millis(),
        "batch filed"
    );
    Ok(filed)
}

/// Moves committed messages to their folders, grouped by folder (commit first, then
/// move: guarantee 1), and records the moves. Returns how many moved.
fn move_filed(src: &mut ImapSource, db: &mut Db, filed: &[Filed], clock: &Clock) -> anyhow::Result<usize> {
    let mut by_folder: Vec<(&str, Vec<u32>, Vec<MessageRowId>)> = Vec::new();
    for f in filed {
        match by_folder.iter_mut().find(|(folder, _, _)| *folder == f.folder) {
            Some((_, uids, rows)) => {
                uids.push(f.uid);
                rows.push(f.message_row);
            }
            None => by_folder.push((&f.folder, vec![f.uid], vec![f.message_row])),
        }
    }
    let mut moved = 0;
    let mut moved_rows = Vec::with_capacity(filed.len());
    for (folder, uids, rows) in by_folder {
        src.move_to(&uids, folder)?;
        moved += uids.len();
        moved_rows.extend(rows);
    }
    db.mark_moved(&moved_rows, clock.now())?;
    Ok(moved)
}
