//! The coordinator's own mail client is a desk too. On its own IMAP connection, every
//! `desk.sync_seconds` (20), the daemon:
//!
//! 1. carries out desk moves: a conversation recategorised at the desk or by the CLI
//!    has its messages moved on the server (found by Message-ID in the folder where we
//!    put them);
//! 2. puts a copy of each sent answer into its conversation's folder (`APPEND`, seen),
//!    so the mail client shows the whole thread;
//! 3. reads what is new in the category folders, in `filing.done` (`Afgehandeld`) and
//!    in the Sent folder (only UIDs above the last one seen, per folder and
//!    UIDVALIDITY) and turns the coordinator's moves into actions by "mail client": a
//!    filed message that turns up in `Afgehandeld` marks its conversation done; one that
//!    turns up in another category's folder recategorises it; a mail in Sent (or saved
//!    in `Afgehandeld`) that answers a conversation joins it as an answer and sets it `in
//!    behandeling` (`afgehandeld` when it is in `Afgehandeld`). Our own mail found there
//!    is never taken for theirs.
//!
//! Only the mailbox owner can put mail in these folders, so what is found there is the
//! coordinator's act; the headers only say which conversation it concerns.

use std::collections::{BTreeSet, HashSet};

use anyhow::Context;
use imap::types::Flag;
use imap_proto::NameAttribute;

use super::imap::ImapSource;
use super::{parse, triage};
use crate::config::Settings;
use crate::domain::Category;
use crate::domain::ids::{ConversationId, MessageRowId};
use crate::domain::state::{ConversationStatus, DeskEventKind};
use crate::domain::time::Clock;
use crate::store::Db;
use crate::store::desk::{ACTOR_MAIL_CLIENT, DeskMove};

/// Work per round, so one round stays short.
const BATCH: u32 = 200;
/// A mail in Sent larger than this is read by its header only.
const MAX_SENT_BYTES: u32 = 2 * 1024 * 1024;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub moved: usize,
    pub copied: usize,
    pub done: usize,
    pub recategorised: usize,
    pub answers: usize,
}

/// One round of the mail client's desk (see the module doc).
pub fn sync(src: &mut ImapSource, db: &mut Db, settings: &Settings, clock: &Clock) -> anyhow::Result<SyncStats> {
    let mut stats = SyncStats::default();
    // Every folder the coordinator may move mail into exists.
    let mut folders: BTreeSet<String> = Category::ALL
        .iter()
        .map(|c| settings.filing.folder_for(*c).to_string())
        .filter(|f| !f.trim().is_empty())
        .collect();
    folders.insert(settings.filing.done.clone());
    for f in &folders {
        src.ensure_folder(f)?;
    }
    // The folders as they are now (the filing side or the coordinator may have made some).
    let names = src.session().list(None, Some("*")).context("LIST failed")?;
    let existing: HashSet<String> = names.iter().map(|n| n.name().to_string()).collect();
    let marked_sent =
        names.iter().find(|n| n.attributes().contains(&NameAttribute::Sent)).map(|n| n.name().to_string());
    drop(names);
    desk_moves(src, db, &existing, &mut stats)?;
    answer_copies(src, db, clock, &mut stats)?;
    let sent = if settings.filing.sent.trim().is_empty() {
        marked_sent.or_else(|| existing.contains("Sent").then(|| "Sent".to_string()))
    } else {
        Some(settings.filing.sent.clone())
    };
    for folder in &folders {
        if existing.contains(folder) {
            read_folder(src, db, settings, folder, false, clock, &mut stats)?;
        }
    }
    // The Sent folder: `filing.sent`, else the one the server marks `\Sent` (RFC 6154),
    // else one named `Sent`.
    if let Some(sent) = sent.filter(|s| !folders.contains(s) && existing.contains(s)) {
        read_folder(src, db, settings, &sent, true, clock, &mut stats)?;
    }
    // Back to the watched mailbox, as the filing pass expects.
    let mailbox = src.mailbox().to_string();
    src.session().select(&mailbox).with_context(|| format!("Failed to select {mailbox:?} again"))?;
    Ok(stats)
}

fn desk_moves(
    src: &mut ImapSource,
    db: &mut Db,
    existing: &HashSet<String>,
    stats: &mut SyncStats,
) -> anyhow::Result<()> {
    let due = db.store().desk_moves_due(BATCH)?;
    for DeskMove { id, message_id, from, to } in due {
        let found = match &message_id {
            Some(mid) if existing.contains(&from) => {
                src.session().select(&from).with_context(|| format!("Failed to select {from:?}"))?;
                src.session()
                    .uid_search(format!("HEADER Message-ID {}", imap_string(&format!("<{mid}>"))))
                    .context("UID SEARCH HEADER failed")?
                    .into_iter()
                    .collect::<Vec<u32>>()
            }
            _ => Vec::new(),
        };
        if found.is_empty() {
            tracing::warn!(message = %id, from, to, "a desk move found the message no longer where it was; recorded as moved");
        } else {
            src.move_to(&found, &to)?;
            stats.moved += 1;
        }
        db.store().set_imap_folder(id, &to)?;
    }
    Ok(())
}

fn answer_copies(src: &mut ImapSource, db: &mut Db, clock: &Clock, stats: &mut SyncStats) -> anyhow::Result<()> {
    for (id, folder, raw) in db.store().copies_due(BATCH)? {
        src.ensure_folder(&folder)?;
        src.session()
            .append(&folder, &raw)
            .flag(Flag::Seen)
            .finish()
            .with_context(|| format!("APPEND of an answer's copy to {folder:?} failed"))?;
        db.store().set_copied(id, clock.now())?;
        stats.copied += 1;
    }
    Ok(())
}

/// Reads the mail that is new in `folder` since the last round.
fn read_folder(
    src: &mut ImapSource,
    db: &mut Db,
    settings: &Settings,
    folder: &str,
    is_sent: bool,
    clock: &Clock,
    stats: &mut SyncStats,
) -> anyhow::Result<()> {
    let mbox = src.session().examine(folder).with_context(|| format!("Failed to examine {folder:?}"))?;
    let validity = mbox.uid_validity.unwrap_or(0);
    let next = mbox.uid_next.unwrap_or(1);
    let key = format!("desk:{folder}");
    let Some((known_validity, highest)) = db.store().mailbox_state(&key)? else {
        // First sight: what is there already is not a move.
        db.store().set_mailbox_state(&key, validity, next.saturating_sub(1))?;
        return Ok(());
    };
    if known_validity != validity {
        tracing::warn!(folder, "UIDVALIDITY of a desk folder changed; reading it from now on");
        db.store().set_mailbox_state(&key, validity, next.saturating_sub(1))?;
        return Ok(());
    }
    if next.saturating_sub(1) <= highest {
        return Ok(());
    }
    let items = if is_sent {
        "(UID RFC822.SIZE BODY.PEEK[HEADER])"
    } else {
        "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES FROM SUBJECT)])"
    };
    let fetched: Vec<(u32, Vec<u8>, u32)> = src
        .session()
        .uid_fetch(format!("{}:*", highest + 1), items)
        .with_context(|| format!("UID FETCH in {folder:?} failed"))?
        .iter()
        .filter_map(|f| Some((f.uid?, f.header().unwrap_or_default().to_vec(), f.size.unwrap_or(0))))
        .filter(|(uid, _, _)| *uid > highest)
        .collect();
    let mut top = highest;
    for (uid, header, size) in fetched {
        top = top.max(uid);
        let Some(head) = parse::parse(&header) else { continue };
        let Some(mid) = head.message_id.clone() else { continue };
        if db.store().is_ours(&mid)? {
            continue;
        }
        let filed = db.store().filed_by_message_id(&mid)?;
        let done_folder = folder == settings.filing.done;
        if let Some((row, Some(was))) = filed.iter().find(|(_, f)| f.is_some()).cloned() {
            if was != folder && !is_sent {
                moved_by_client(db, settings, row, folder, done_folder, clock, stats)?;
            }
            continue;
        }
        if filed.is_empty() && (is_sent || done_folder) {
            // The coordinator's own answer, sent from their client.
            let text = if size <= MAX_SENT_BYTES {
                let body = src
                    .session()
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                    .context("UID FETCH of a sent mail failed")?
                    .iter()
                    .find_map(|f| f.body().map(<[u8]>::to_vec))
                    .unwrap_or_default();
                parse::parse(&body).map(|m| triage::own_words(&m.text)).unwrap_or_default()
            } else {
                String::new()
            };
            client_answer(db, &head, &mid, text.trim(), done_folder, clock, stats)?;
        }
    }
    db.store().set_mailbox_state(&key, validity, top)?;
    Ok(())
}

fn moved_by_client(
    db: &mut Db,
    settings: &Settings,
    row: MessageRowId,
    folder: &str,
    done_folder: bool,
    clock: &Clock,
    stats: &mut SyncStats,
) -> anyhow::Result<()> {
    let now = clock.now();
    db.write(|st| {
        st.set_imap_folder(row, folder)?;
        let Some(c) = st.conversation_of(row)? else { return Ok(()) };
        if done_folder {
            if st.conversation_status(c)? != Some(ConversationStatus::Done) {
                let from = st.move_conversation(c, ConversationStatus::Done, now)?;
                let detail = format!("{from} -> {} (moved to {folder})", ConversationStatus::Done);
                st.record_desk_event(c, DeskEventKind::Done, ACTOR_MAIL_CLIENT, "", &detail, now)?;
                stats.done += 1;
            }
            return Ok(());
        }
        let Some(category) = settings.filing.category_of_folder(folder) else { return Ok(()) };
        let summary = st.conversation_summary(c)?;
        let before = summary.as_ref().map(|s| s.category);
        if before != Some(category) && !(before == Some(Category::Followup) && category == Category::Question) {
            // The other messages of the conversation follow it to its new folder.
            st.recategorise(c, category, folder, now)?;
            let detail = format!("{} -> {category} (moved to {folder})", before.map_or("?", Category::as_str));
            st.record_desk_event(c, DeskEventKind::Move, ACTOR_MAIL_CLIENT, "", &detail, now)?;
            stats.recategorised += 1;
        }
        // Taken out of `Afgehandeld` again: it waits again.
        if summary.is_some_and(|s| s.status == ConversationStatus::Done) {
            st.move_conversation(c, ConversationStatus::New, now)?;
            st.record_desk_event(c, DeskEventKind::Reopen, ACTOR_MAIL_CLIENT, "", &format!("moved to {folder}"), now)?;
        }
        Ok(())
    })
}

fn client_answer(
    db: &mut Db,
    head: &parse::ParsedMail,
    message_id: &str,
    text: &str,
    close: bool,
    clock: &Clock,
    stats: &mut SyncStats,
) -> anyhow::Result<()> {
    let mut ids: Vec<String> = head.references.clone();
    ids.extend(head.in_reply_to.iter().cloned());
    if ids.is_empty() {
        return Ok(());
    }
    let now = clock.now();
    db.write(|st| {
        let Some(c) = st.conversation_by_message_ids(&ids)? else { return Ok(()) };
        let c: ConversationId = follow_merges(st, c.id)?;
        if !st.record_client_answer(c, text, message_id, now)? {
            return Ok(());
        }
        let to = if close { ConversationStatus::Done } else { ConversationStatus::Open };
        if st.conversation_status(c)? != Some(to) {
            st.move_conversation(c, to, now)?;
        }
        stats.answers += 1;
        Ok(())
    })
}

fn follow_merges(st: crate::store::Store<'_>, c: ConversationId) -> anyhow::Result<ConversationId> {
    Ok(st.conversation_summary(c)?.and_then(|s| s.merged_into).unwrap_or(c))
}

/// An IMAP quoted string (RFC 3501 `quoted`): what a Message-ID may hold cannot break
/// out of it.
fn imap_string(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    format!("\"{}\"", clean.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_cannot_break_out_of_the_search_string() {
        assert_eq!(imap_string("<a\"b\\c@x>"), "\"<a\\\"b\\\\c@x>\"");
        assert_eq!(imap_string("<a\r\nX@y>"), "\"<aX@y>\"");
    }
}
