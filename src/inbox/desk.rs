//! The coordinator's actions on a conversation, the same from the CLI, the web desk and
//! the mail client: answer, note, done, reopen, move, merge. Each is recorded with who
//! did it (`cli`, `mail client` or a desk user's address) and when.
//!
//! Commands name a filed message (the ids `inbox list` shows) and act on its
//! conversation, following merges.

use std::time::SystemTime;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};

use super::triage;
use crate::config::Settings;
use crate::domain::ids::{ConversationId, MessageRowId, OutboxId};
use crate::domain::state::{ConversationStatus, DeskEventKind, OutboxKind};
use crate::domain::{Category, EmailAddress, Language, case_reference};
use crate::outbox::compose;
use crate::store::desk::{ConversationSummary, Recipients};
use crate::store::{Db, FiledMessage, NewOutgoing, Store};

/// References kept in an answer (the oldest one and the latest ones).
const MAX_REFERENCES: usize = 20;
/// Lines of the earlier message quoted under an answer.
const QUOTE_LINES: usize = 20;
/// Longest answer text accepted (the desk's form and `--body` alike).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The coordinator's desk over one store.
pub struct Desk<'a> {
    settings: &'a Settings,
}

/// An answer that was queued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answered {
    pub conversation: ConversationId,
    pub outbox_id: OutboxId,
    pub message_id: String,
    pub to: String,
    pub cc: Vec<String>,
    pub status: ConversationStatus,
}

impl<'a> Desk<'a> {
    pub fn new(settings: &'a Settings) -> Self {
        Self { settings }
    }

    /// The conversation of filed message `id` (after merges), or a clear error.
    pub fn conversation_of(&self, st: Store<'_>, id: MessageRowId) -> anyhow::Result<ConversationId> {
        if st.conversation_of(id)?.is_none() && !st.message_exists(id)? {
            bail!("no filed message with id {id}");
        }
        st.conversation_of(id)?
            .with_context(|| format!("message {id} belongs to no conversation (it was never sorted)"))
    }

    /// Marks the conversation handled.
    pub fn done(
        &self,
        db: &mut Db,
        id: MessageRowId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationSummary> {
        self.set_status(db, id, ConversationStatus::Done, DeskEventKind::Done, actor, now)
    }

    /// Puts the conversation back to `nieuw`: it waits again.
    pub fn reopen(
        &self,
        db: &mut Db,
        id: MessageRowId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationSummary> {
        self.set_status(db, id, ConversationStatus::New, DeskEventKind::Reopen, actor, now)
    }

    fn set_status(
        &self,
        db: &mut Db,
        id: MessageRowId,
        to: ConversationStatus,
        kind: DeskEventKind,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationSummary> {
        db.write(|st| {
            let c = self.conversation_of(st, id)?;
            if st.conversation_status(c)? != Some(to) {
                let from = st.move_conversation(c, to, now)?;
                st.record_desk_event(c, kind, actor, "", &format!("{from} -> {to}"), now)?;
            }
            st.conversation_summary(c)?.context("conversation vanished")
        })
    }

    /// An internal note: kept with the conversation, never mailed.
    pub fn note(
        &self,
        db: &mut Db,
        id: MessageRowId,
        text: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationSummary> {
        let text = text.trim();
        if text.is_empty() {
            bail!("the note is empty");
        }
        if text.len() > MAX_ANSWER_BYTES {
            bail!("the note is longer than {} KiB", MAX_ANSWER_BYTES / 1024);
        }
        db.write(|st| {
            let c = self.conversation_of(st, id)?;
            st.record_desk_event(c, DeskEventKind::Note, actor, text, "", now)?;
            st.touch(c, now)?;
            st.conversation_summary(c)?.context("conversation vanished")
        })
    }

    /// Recategorises the conversation; its messages get the category's folder and the
    /// daemon moves them there on the server.
    pub fn move_to(
        &self,
        db: &mut Db,
        id: MessageRowId,
        category: Category,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationSummary> {
        if category == Category::Followup {
            bail!("followup is not a category of its own: move it to question, join, story, ... instead");
        }
        let folder = self.settings.filing.folder_for(category).to_string();
        if folder.trim().is_empty() {
            bail!("no folder is configured for {category} (key `filing.{category}`)");
        }
        db.write(|st| {
            let c = self.conversation_of(st, id)?;
            let before = st.conversation_summary(c)?.context("conversation vanished")?.category;
            let moved = st.recategorise(c, category, &folder, now)?;
            st.record_desk_event(
                c,
                DeskEventKind::Move,
                actor,
                "",
                &format!("{before} -> {category} ({} message(s) to {folder})", moved.len()),
                now,
            )?;
            st.conversation_summary(c)?.context("conversation vanished")
        })
    }

    /// Joins the conversation of `id` into that of `into`.
    pub fn merge(
        &self,
        db: &mut Db,
        id: MessageRowId,
        into: MessageRowId,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ConversationSummary> {
        db.write(|st| {
            let from = self.conversation_of(st, id)?;
            let to = self.conversation_of(st, into)?;
            st.merge_conversations(from, to, now)?;
            let detail = format!("{} merged into {}", case_reference(from), case_reference(to));
            st.record_desk_event(from, DeskEventKind::Merge, actor, "", &detail, now)?;
            st.record_desk_event(to, DeskEventKind::Merge, actor, "", &detail, now)?;
            st.conversation_summary(to)?.context("conversation vanished")
        })
    }

    /// Answers filed message `id`: a real reply from the network's address to whoever
    /// it came from, every other recipient kept (except our own addresses), threaded
    /// (`In-Reply-To`, `References`), with the signature and the message quoted short.
    /// Queued in the outbox; a copy goes into the conversation's folder once sent. With
    /// `close`, the conversation is then `afgehandeld`, else `in behandeling`.
    pub fn reply(
        &self,
        db: &mut Db,
        id: MessageRowId,
        body: &str,
        close: bool,
        actor: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Answered> {
        let body = body.trim_end();
        if body.trim().is_empty() {
            bail!("the answer is empty");
        }
        if body.len() > MAX_ANSWER_BYTES {
            bail!("the answer is longer than {} KiB", MAX_ANSWER_BYTES / 1024);
        }
        let from = self.settings.from_mailbox()?;
        let own = self.settings.own_addresses();
        db.write(|st| {
            let c = self.conversation_of(st, id)?;
            let m = st.filed_message(id)?.with_context(|| format!("no filed message with id {id}"))?;
            let to = answer_address(&m)
                .with_context(|| format!("message {id} has no valid sender address to answer (From: {:?})", m.from))?;
            if own.iter().any(|o| o.normalized() == to.normalized()) {
                bail!("message {id} came from our own address; there is nobody to answer");
            }
            let cc = keep_recipients(&st.recipients(id)?, &to, &own);
            let refs = thread_references(&st.references_of(id)?, m.message_id.as_deref());
            let text = answer_text(body, &self.settings.desk.signature, &m);
            let message_id = compose::new_message_id(&from);
            let raw = compose::answer(
                &from,
                &compose::Answer {
                    to: &to,
                    cc: &cc,
                    subject: &answer_subject(&m.subject, &case_reference(c), m.language),
                    in_reply_to: m.message_id.as_deref(),
                    references: &refs,
                },
                &message_id,
                text,
                SystemTime::from(now),
            )?;
            let envelope_from = from.email.to_string();
            let mut out = NewOutgoing::new(OutboxKind::Answer, message_id.clone(), envelope_from, to.to_string(), raw);
            out.conversation_id = Some(c);
            out.cc = cc.iter().map(|a| a.to_string()).collect();
            out.copy_folder = Some(m.folder.clone());
            let outbox_id = st.enqueue(&out, now)?;
            let status = if close { ConversationStatus::Done } else { ConversationStatus::Open };
            if st.conversation_status(c)? != Some(status) {
                st.move_conversation(c, status, now)?;
            }
            st.record_answer(c, actor, body, if close { "sent and closed" } else { "" }, outbox_id, now)?;
            Ok(Answered { conversation: c, outbox_id, message_id, to: to.to_string(), cc: out.cc, status })
        })
    }
}

/// Conversations listed in one digest (the rest are counted).
const DIGEST_ITEMS: u32 = 50;
/// The `daemon_state` key that holds the last digest slot dealt with.
const DIGEST_STATE: &str = "desk.digest";

/// The daily digest: at `desk.digest_time` in the schedule's time zone, one short mail
/// to the coordinator listing what waits, the longest waiting first, with links to the
/// desk; none when nothing waits. Each day's slot is dealt with once (a daemon that was
/// down at the time sends it when it starts, the same day). Returns the number of
/// conversations listed when a digest was queued.
pub fn digest_if_due(
    db: &mut Db,
    settings: &Settings,
    templates: &crate::templates::Templates,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<usize>> {
    let Some(at) = settings.desk.digest_at()? else { return Ok(None) };
    let tz = settings.newsletter.timezone()?;
    let local = now.with_timezone(&tz);
    let Some(slot) = local.date_naive().and_time(at).and_local_timezone(tz).earliest() else { return Ok(None) };
    let slot = slot.with_timezone(&Utc);
    if now < slot {
        return Ok(None);
    }
    let slot_text = crate::domain::time::ts(slot);
    let done = db.states()?.into_iter().any(|(k, v, _)| k == DIGEST_STATE && v >= slot_text);
    if done {
        return Ok(None);
    }
    let Some(to) = settings.coordinator.address.as_deref() else {
        db.set_state(DIGEST_STATE, &slot_text, now)?;
        tracing::warn!("no digest: coordinator.address is not set");
        return Ok(None);
    };
    let to = EmailAddress::parse(to).map_err(|e| anyhow::anyhow!("key `coordinator.address`: {e}"))?;
    let from = settings.from_mailbox()?;
    db.write(|st| {
        let waiting = st.waiting_conversations(DIGEST_ITEMS)?;
        let total: i64 = st.waiting_counts()?.iter().map(|(_, _, n)| n).sum();
        if waiting.is_empty() {
            st.set_state(DIGEST_STATE, &slot_text, now)?;
            return Ok(None);
        }
        #[derive(serde::Serialize)]
        struct Item {
            case_ref: String,
            subject: String,
            from: String,
            waiting: String,
            category: String,
            status: String,
            link: String,
        }
        #[derive(serde::Serialize)]
        struct Data {
            one: bool,
            count: i64,
            items: Vec<Item>,
            more: i64,
            desk: String,
            time: String,
        }
        let base = settings.base_url();
        let items: Vec<Item> = waiting
            .iter()
            .map(|c| Item {
                case_ref: c.case_reference.clone(),
                subject: crate::domain::repeatable(&c.subject, 100),
                from: crate::domain::repeatable(c.contact_name.as_deref().or(c.contact.as_deref()).unwrap_or("?"), 60),
                waiting: c
                    .waiting_since
                    .unwrap_or(c.updated_at)
                    .with_timezone(&tz)
                    .format("%d-%m-%Y %H:%M")
                    .to_string(),
                category: category_nl(c.category).to_string(),
                status: c.status.to_string(),
                link: format!("{base}/desk/gesprekken/{}", c.id),
            })
            .collect();
        let data = Data {
            one: total == 1,
            count: total,
            more: (total - items.len() as i64).max(0),
            items,
            desk: format!("{base}/desk"),
            time: at.format("%H:%M").to_string(),
        };
        let body = templates.render("notice/digest.nl.txt", &data)?;
        let subject = if total == 1 {
            "outreach: 1 gesprek wacht".to_string()
        } else {
            format!("outreach: {total} gesprekken wachten")
        };
        let message_id = compose::new_message_id(&from);
        let raw = compose::notice(&from, &to, &subject, &message_id, body, SystemTime::from(now))?;
        st.enqueue(
            &NewOutgoing::new(OutboxKind::Digest, message_id, from.email.to_string(), to.to_string(), raw),
            now,
        )?;
        st.set_state(DIGEST_STATE, &slot_text, now)?;
        Ok(Some(data.count as usize))
    })
}

/// A category as the coordinator reads it.
pub fn category_nl(c: Category) -> &'static str {
    match c {
        Category::Join => "aanmelding",
        Category::Question | Category::Followup => "vraag",
        Category::Unsubscribe => "afmelding",
        Category::Automatic => "automatische mail",
        Category::Bounce => "onbestelbaar",
        Category::Review => "te beoordelen",
        Category::Story => "verhaal",
    }
}

/// Where an answer goes: the Reply-To the person gave, else From.
fn answer_address(m: &FiledMessage) -> Option<EmailAddress> {
    m.reply_to.as_deref().or(m.from.as_deref()).and_then(|a| EmailAddress::parse(a).ok())
}

/// The other recipients an answer keeps: To and Cc of the original, without our own
/// addresses, without the one it goes to, each once.
fn keep_recipients(r: &Recipients, to: &EmailAddress, own: &[EmailAddress]) -> Vec<EmailAddress> {
    let mut seen = vec![to.normalized()];
    seen.extend(own.iter().map(EmailAddress::normalized));
    let mut out = Vec::new();
    for a in r.to.iter().chain(&r.cc) {
        let Ok(a) = EmailAddress::parse(a) else { continue };
        if !seen.contains(&a.normalized()) {
            seen.push(a.normalized());
            out.push(a);
        }
    }
    out
}

/// `References` of an answer: the original's, then the original itself, bounded (the
/// first one and the latest ones are kept, RFC 5322 3.6.4).
fn thread_references(refs: &[String], original: Option<&str>) -> Vec<String> {
    let mut all: Vec<String> = refs.to_vec();
    if let Some(o) = original {
        all.push(o.to_string());
    }
    if all.len() > MAX_REFERENCES {
        let first = all[0].clone();
        let tail = all.split_off(all.len() - (MAX_REFERENCES - 1));
        all = std::iter::once(first).chain(tail).collect();
    }
    all
}

/// `Re: <subject> [MAO-n]` (the case reference lets an answer to the answer find its
/// conversation even without `References`).
fn answer_subject(subject: &str, case_ref: &str, language: Language) -> String {
    let s = crate::domain::clean_text(subject);
    let base = if s.is_empty() {
        match language {
            Language::English => "Your message".to_string(),
            _ => "Uw bericht".to_string(),
        }
    } else {
        s
    };
    let lower = base.to_lowercase();
    let with_re =
        if ["re:", "antw:", "aw:", "sv:"].iter().any(|p| lower.starts_with(p)) { base } else { format!("Re: {base}") };
    if with_re.contains(case_ref) { with_re } else { format!("{with_re} {case_ref}") }
}

/// The answer's text: what the coordinator wrote, the signature, and the message it
/// answers quoted short (its own words only, at most [`QUOTE_LINES`] lines).
fn answer_text(body: &str, signature: &str, m: &FiledMessage) -> String {
    let mut out = body.replace("\r\n", "\n");
    if !signature.trim().is_empty() {
        out.push_str("\n\n");
        out.push_str(signature.trim_end());
    }
    let own = triage::own_words(m.body.as_deref().unwrap_or_default());
    let lines: Vec<&str> = own.lines().collect();
    let lines = {
        let mut l = lines;
        while l.last().is_some_and(|x| x.trim().is_empty()) {
            l.pop();
        }
        l
    };
    if !lines.is_empty() {
        let who = m.from_name.clone().or_else(|| m.from.clone()).unwrap_or_default();
        let who = crate::domain::repeatable(&who, 60);
        let when = m.received_at.with_timezone(&chrono_tz::Europe::Amsterdam);
        out.push_str("\n\n");
        out.push_str(&match m.language {
            Language::English => format!("On {}, {who} wrote:", when.format("%-d %B %Y %H:%M")),
            _ => format!("Op {} schreef {who}:", when.format("%d-%m-%Y %H:%M")),
        });
        out.push('\n');
        for l in lines.iter().take(QUOTE_LINES) {
            out.push_str(if l.is_empty() { ">" } else { "> " });
            out.push_str(l);
            out.push('\n');
        }
        if lines.len() > QUOTE_LINES {
            out.push_str("> [...]\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn an_answer_keeps_every_recipient_but_ourselves_and_the_sender() {
        let r = Recipients {
            to: vec!["contact@example.org".into(), "ouder@example.nl".into()],
            cc: vec!["Juf@School.example".into(), "ann@example.nl".into(), "ouder@example.nl".into()],
        };
        let kept = keep_recipients(&r, &addr("ann@example.nl"), &[addr("contact@example.org")]);
        let kept: Vec<String> = kept.iter().map(|a| a.to_string()).collect();
        assert_eq!(kept, ["ouder@example.nl", "juf@school.example"]);
    }

    #[test]
    fn references_stay_bounded_and_keep_the_first_and_latest() {
        let refs: Vec<String> = (0..30).map(|i| format!("r{i}@x")).collect();
        let out = thread_references(&refs, Some("orig@x"));
        assert_eq!(out.len(), MAX_REFERENCES);
        assert_eq!(out[0], "r0@x");
        assert_eq!(out.last().unwrap(), "orig@x");
        assert_eq!(thread_references(&[], Some("o@x")), ["o@x"]);
    }

    #[test]
    fn the_subject_gets_re_once_and_the_case_reference() {
        assert_eq!(answer_subject("Vraag over school", "[MAO-4]", Language::Dutch), "Re: Vraag over school [MAO-4]");
        assert_eq!(answer_subject("RE: Vraag [MAO-4]", "[MAO-4]", Language::Dutch), "RE: Vraag [MAO-4]");
        assert_eq!(answer_subject("", "[MAO-4]", Language::English), "Re: Your message [MAO-4]");
    }
}
