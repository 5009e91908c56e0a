//! The inbox: turns each message in the watched mailbox into a filed one.
//!
//! fetch (`BODY.PEEK[]`) -> parse -> automatic? -> follow-up? -> classify -> language ->
//! **one transaction** (message, contact, conversation, auto-reply) -> commit -> MOVE.
//! A crash anywhere re-sees the message; the dedupe key stops a second filing or reply.

pub mod imap;
pub mod parse;
pub mod triage;

use std::time::SystemTime;

use chrono::{DateTime, Duration, Utc};
use lettre::message::Mailbox;

use self::imap::{FetchedMessage, ImapSource};
use self::parse::ParsedMail;
use self::triage::{ReplyContext, ReplyDecision};
use crate::config::Settings;
use crate::domain::{Category, EmailAddress, Language, case_reference};
use crate::newsletter::{self, Ctx, Subscribed, bounce};
use crate::outbox::compose;
use crate::store::news;
use crate::store::{self, ConversationRef, Db, NewMessage, NewOutgoing, Tx};
use crate::templates::{ReplyData, Templates};

/// Bytes fetched per IMAP command and filed per transaction (bounds memory).
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
const BATCH_MESSAGES: usize = 200;

/// The filing rules, built once from the settings.
pub struct Pipeline<'a> {
    settings: &'a Settings,
    templates: &'a Templates,
    news: &'a Ctx,
    own: Vec<EmailAddress>,
    from: Mailbox,
}

/// The outcome for one message.
#[derive(Debug, Clone)]
pub struct Filed {
    pub uid: u32,
    pub message_row: i64,
    pub folder: String,
    /// False when the message had been filed before (a replay after a crash).
    pub new: bool,
    pub category: Category,
    pub replied: bool,
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

impl<'a> Pipeline<'a> {
    pub fn new(news: &'a Ctx) -> anyhow::Result<Self> {
        let settings = &*news.settings;
        Ok(Self {
            settings,
            templates: &news.templates,
            news,
            own: settings.own_addresses(),
            from: settings.from_mailbox()?,
        })
    }

    /// Files a batch of fetched messages in one transaction, each in its own savepoint.
    /// A message that fails is filed for review with the error as its reason; a storage
    /// failure (disk full, I/O error) aborts the batch so nothing gets moved.
    pub fn file_batch(
        &self,
        db: &mut Db,
        batch: &[FetchedMessage],
        uidvalidity: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Filed>> {
        let mut tx = db.begin()?;
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            // A bug while filing one message (a panic) must not stop the queue: that
            // message's changes are rolled back and it is filed for review instead.
            let filed = tx.savepoint(|tx| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.file_one(tx, m, uidvalidity, now)))
                    .unwrap_or_else(|p| {
                        let what = p
                            .downcast_ref::<&str>()
                            .map(ToString::to_string)
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        Err(anyhow::anyhow!("internal error (panic): {what}"))
                    })
            });
            match filed {
                Ok(f) => out.push(f),
                Err(e) if store::is_fatal_storage_error(&e) => return Err(e),
                Err(e) => {
                    tracing::warn!(uid = m.meta.uid, error = %format!("{e:#}"), "filing failed; filing for review");
                    let reason = format!("review: filing failed: {e:#}");
                    match tx.savepoint(|tx| self.file_review(tx, m, None, uidvalidity, &reason, now)) {
                        Ok(f) => out.push(f),
                        Err(e) if store::is_fatal_storage_error(&e) => return Err(e),
                        Err(e) => {
                            tracing::error!(uid = m.meta.uid, error = %format!("{e:#}"), "could not file even for review; left in the mailbox")
                        }
                    }
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn file_one(&self, tx: &Tx<'_>, m: &FetchedMessage, uidvalidity: u32, now: DateTime<Utc>) -> anyhow::Result<Filed> {
        let parsed = parse::parse(&m.raw);
        if m.header_only {
            let reason = format!(
                "review: message is {} bytes, over the limit of {} (imap.max_message_size); not downloaded",
                m.meta.size, self.settings.imap.max_message_size
            );
            return self.file_review(tx, m, parsed.as_ref(), uidvalidity, &reason, now);
        }
        let Some(mail) = parsed else {
            return self.file_review(tx, m, None, uidvalidity, "review: could not be parsed as a mail message", now);
        };
        let key = parse::dedupe_key(mail.message_id.as_deref(), &m.raw);
        if let Some(f) = self.replayed(tx, m, &key)? {
            return Ok(f);
        }
        if mail.parts > parse::MAX_PARTS {
            let reason = format!("review: {} MIME parts (limit {})", mail.parts, parse::MAX_PARTS);
            return self.file_review(tx, m, Some(&mail), uidvalidity, &reason, now);
        }
        let language = triage::detect_language(&mail);
        let automatic = triage::detect_automatic(&mail, &self.own);
        let mut ids: Vec<String> = mail.references.clone();
        ids.extend(mail.in_reply_to.iter().cloned());
        let by_ids = tx.conversation_by_message_ids(&ids)?;

        let subject_norm = triage::normalize_subject(&mail.subject);
        let mut contact: Option<(i64, Option<String>)> = None;
        // A story sent in by a known ambassador: (title, ambassador).
        let mut story: Option<(String, news::Ambassador)> = None;
        // Handled by the newsletter (a confirmation, a proof answer): filed as done, no reply.
        let mut handled = false;
        let (mut category, mut reason, conversation, new_conversation) = if let Some((cat, rule)) = automatic {
            let mut reason = format!("{}: {rule}", cat.as_str());
            // Only delivery reports count as bounces; an out-of-office sent to the bounce
            // address is filed as automatic mail and counts for nothing.
            if cat == Category::Bounce
                && let Some(b) = bounce::find(tx.conn(), &self.news.signer, &m.raw)?
            {
                let note = bounce::apply(tx.conn(), &b, self.settings.newsletter.soft_bounce_limit, now)?;
                reason = format!("{reason}; newsletter: {note}");
            }
            (cat, reason, by_ids, false)
        } else {
            if let Some(from) = &mail.from {
                contact =
                    Some(tx.upsert_contact(&from.normalized(), mail.from_name.as_deref(), language.code(), now)?);
            }
            if let Some((cat, why)) = self.newsletter_answer(tx, &mail, &ids, now)? {
                handled = true;
                (cat, why, by_ids, false)
            } else if let Some((title, amb)) = newsletter::stories::mail_title(&mail.subject).zip(
                mail.from.as_ref().map(|f| news::ambassador_by_email(tx.conn(), f.as_str())).transpose()?.flatten(),
            ) {
                let why = format!("story: \"Verhaal:\"/\"Story:\" subject from ambassador {}", amb.name);
                story = Some((title, amb));
                let conv = ConversationRef {
                    id: tx.create_conversation(contact.as_ref().map(|c| c.0), "story", &subject_norm, now)?,
                    category: "story".into(),
                };
                (Category::Story, why, Some(conv), true)
            } else {
                match self.follow_up(tx, &mail, by_ids, contact.as_ref().map(|c| c.0), &subject_norm)? {
                    Some((conv, why)) => (Category::Followup, format!("followup: {why}"), Some(conv), false),
                    None => {
                        let (cat, why) = triage::classify(&mail);
                        let conv = ConversationRef {
                            id: tx.create_conversation(
                                contact.as_ref().map(|c| c.0),
                                cat.as_str(),
                                &subject_norm,
                                now,
                            )?,
                            category: cat.as_str().into(),
                        };
                        (cat, why, Some(conv), true)
                    }
                }
            }
        };
        // Consent to publish: "ja" in answer to the reply to a story.
        if category == Category::Followup
            && let Some(conv) = conversation.as_ref().filter(|c| c.category == "story")
            && triage::says_yes(&mail)
            && let Some(story_id) = news::story_by_conversation(tx.conn(), conv.id)?
        {
            let source = format!("mail: \"ja\" in <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
            news::record_story_consent(tx.conn(), story_id, &source, now)?;
            reason = format!("{reason}; story {story_id}: consent to publish recorded");
        }
        // A request for the newsletter: double opt-in. When the mail asks for nothing
        // else, the confirmation mail is its answer.
        let mut no_reply: Option<String> = None;
        if matches!(category, Category::Join | Category::Question)
            && new_conversation
            && let Some(words) = triage::asks_for_newsletter(&mail)
            && let Some(addr) = mail.reply_address().cloned()
            && !self.own.iter().any(|o| o.normalized() == addr.normalized())
        {
            let source = format!("mail <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
            let outcome =
                self.news.subscribe(tx.conn(), &addr, mail.from_name.as_deref(), language, &source, None, now)?;
            let note = match outcome {
                Subscribed::ConfirmationSent(_) => "confirmation mail queued",
                Subscribed::ConfirmationRecent(_) => "pending; a confirmation went out less than a day ago",
                Subscribed::AlreadyActive(_) => "already subscribed",
                Subscribed::Activated(_) | Subscribed::Kept(..) => "subscription unchanged",
                Subscribed::Suppressed => "address erased earlier on request; not subscribed",
            };
            reason = format!("{reason}; newsletter request ({words}): {note}");
            if !triage::asks_to_join_network(&mail) {
                category = Category::Join;
                no_reply = Some(format!("newsletter request: {note}; no auto-reply"));
            }
        }
        if let Some(c) = &conversation {
            tx.touch_conversation(c.id, now)?;
        }
        let folder = match (category, &conversation) {
            (Category::Followup, Some(c)) => {
                self.folder_for(Category::parse(&c.category).unwrap_or(Category::Question))
            }
            _ => self.folder_for(category),
        };
        let reply_addr = mail.reply_address().cloned();
        let decision = triage::decide_reply(&ReplyContext {
            enabled: self.settings.autoreply.enabled,
            category,
            automatic: automatic_category(category),
            new_conversation,
            has_reply_address: reply_addr.is_some(),
            reply_address_is_ours: reply_addr
                .as_ref()
                .is_some_and(|a| self.own.iter().any(|o| o.normalized() == a.normalized())),
            last_auto_reply_to_sender: contact.as_ref().and_then(|c| c.1.as_deref()).and_then(store::parse_ts),
            window: Duration::hours(i64::try_from(self.settings.autoreply.window_hours).unwrap_or(i64::MAX / 3600)),
            replies_last_hour: tx.auto_replies_since(now - Duration::hours(1))?,
            max_per_hour: self.settings.autoreply.max_per_hour,
            now,
        });
        let decision = match (no_reply, handled) {
            (Some(why), _) => ReplyDecision::NoReply(why),
            (None, true) => ReplyDecision::NoReply("newsletter answer handled; no auto-reply".into()),
            (None, false) => decision,
        };
        // "afmelden" by mail: unsubscribed at once. The auto-reply confirms it; without
        // one, a short confirmation mail does.
        if category == Category::Unsubscribe
            && let Some(sub) = self.subscriber_leaving(tx, &mail)?
        {
            let source = format!("mail <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
            let replying = decision == ReplyDecision::Reply;
            if self.news.unsubscribe(tx.conn(), sub, &source, !replying, now)? {
                reason = format!("{reason}; newsletter: subscriber {sub} unsubscribed");
            }
        }
        let reply_note = match &decision {
            ReplyDecision::Reply => "auto-reply queued".to_string(),
            ReplyDecision::NoReply(why) | ReplyDecision::BreakerOpen(why) => why.clone(),
        };
        let row = tx.insert_message(
            &NewMessage {
                dedupe_key: key,
                message_id: mail.message_id.clone(),
                in_reply_to: mail.in_reply_to.first().cloned(),
                refs: mail.references.clone(),
                from_addr: mail.from.as_ref().map(|a| a.to_string()).or_else(|| mail.from_raw.clone()),
                from_name: mail.from_name.clone(),
                reply_to: mail.reply_to.as_ref().map(|a| a.to_string()),
                subject: mail.subject.clone(),
                body_text: mail.text.clone(),
                category: category.as_str().into(),
                reason,
                language: language.code().into(),
                status: if category.needs_person() && !handled { "new" } else { "done" }.into(),
                folder: folder.clone(),
                reply_note,
                auto_replied: false,
                conversation_id: conversation.as_ref().map(|c| c.id),
                size: i64::try_from(m.meta.size).unwrap_or(i64::MAX),
                received_at: m.meta.internal_date,
                date_header: mail.date,
                uidvalidity: Some(uidvalidity),
                uid: Some(m.meta.uid),
            },
            now,
        )?;
        let mut story_id = None;
        if let Some((title, amb)) = &story {
            let body = mail.text.trim();
            story_id = Some(news::insert_story(
                tx.conn(),
                &news::NewStory {
                    title,
                    ambassador_id: amb.id,
                    body_md: if body.is_empty() { "(geen tekst)" } else { body },
                    photo_url: None,
                    photo_alt: None,
                    source: "mail",
                    message_id: Some(row),
                    consent_source: None,
                },
                now,
            )?);
        }
        let mut replied = false;
        match decision {
            ReplyDecision::Reply => {
                let (to, conv) =
                    (reply_addr.expect("decided with an address"), conversation.as_ref().expect("new conversation").id);
                let has_photo = story.as_ref().is_some_and(|(_, a)| a.photo_url.is_some());
                self.queue_reply(tx, &mail, &to, category, language, row, conv, has_photo, now)?;
                if let Some((contact_id, _)) = contact {
                    tx.set_contact_replied(contact_id, now)?;
                }
                replied = true;
            }
            ReplyDecision::BreakerOpen(_) => self.tell_coordinator_breaker(tx, &mail, now)?,
            ReplyDecision::NoReply(_) => {}
        }
        if let Some(id) = story_id {
            tracing::info!(story = id, "story submitted by mail");
        }
        Ok(Filed { uid: m.meta.uid, message_row: row, folder, new: true, category, replied })
    }

    /// A reply to one of our newsletter mails: "ja"/"yes" to a confirmation, or
    /// VERZENDEN / STOP from the coordinator to a proof. `None`: not such an answer.
    fn newsletter_answer(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<(Category, String)>> {
        let c = tx.conn();
        let from_coordinator =
            mail.from.as_ref().zip(self.news.coordinator()).is_some_and(|(f, co)| f.normalized() == co.normalized());
        for id in ids.iter().rev() {
            let Some(out) = news::outgoing_by_message_id(c, id)? else { continue };
            match (out.kind.as_str(), out.subscriber_id, out.issue_id) {
                ("confirm", Some(sub), _) if triage::says_yes(mail) => {
                    let source = format!("mail: \"ja\" in <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
                    let done = self.news.confirm(c, sub, &source, now)?;
                    let note = if done { "confirmed by reply" } else { "already confirmed" };
                    return Ok(Some((Category::Join, format!("newsletter: subscription {note}"))));
                }
                ("proof", _, Some(issue)) if from_coordinator => return self.proof_answer(c, mail, issue, now),
                _ => {}
            }
        }
        if from_coordinator
            && let Some(issue) = proof_reference(&mail.subject)
            && news::issue(c, issue)?.is_some_and(|i| i.status == "proof")
        {
            return self.proof_answer(c, mail, issue, now);
        }
        Ok(None)
    }

    fn proof_answer(
        &self,
        c: &rusqlite::Connection,
        mail: &ParsedMail,
        issue: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<(Category, String)>> {
        let by = format!("coordinator by mail <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
        let status = news::issue(c, issue)?.map(|i| i.status).unwrap_or_default();
        let note = match (triage::proof_answer(mail), status.as_str()) {
            (None, _) => return Ok(None),
            (Some(_), s) if s != "proof" => format!("answer to the proof of issue {issue}, which is {s} already"),
            (Some(triage::ProofAnswer::Send), _) => {
                let n = self.news.approve(c, issue, &by, now)?;
                format!("proof of issue {issue} approved (VERZENDEN): sending to {n} subscribers")
            }
            (Some(triage::ProofAnswer::Stop), _) => {
                self.news.cancel(c, issue, &by, now)?;
                format!("proof of issue {issue} cancelled (STOP)")
            }
        };
        Ok(Some((Category::Question, format!("newsletter: {note}"))))
    }

    /// The subscriber an unsubscribe mail is about: by the token that our mailto link
    /// puts in the subject, else by the sender's address.
    fn subscriber_leaving(&self, tx: &Tx<'_>, mail: &ParsedMail) -> anyhow::Result<Option<i64>> {
        let c = tx.conn();
        for word in mail.subject.split_whitespace() {
            if let Ok(s) = self.news.subscriber_by_token(c, word, newsletter::tokens::Purpose::Unsubscribe, None)? {
                return Ok(Some(s.id));
            }
        }
        let Some(from) = &mail.from else { return Ok(None) };
        Ok(news::subscriber_by_email(c, from.as_str())?.map(|s| s.id))
    }

    /// A message filed before (same dedupe key): move it where it went the first time.
    fn replayed(&self, tx: &Tx<'_>, m: &FetchedMessage, key: &str) -> anyhow::Result<Option<Filed>> {
        Ok(tx.find_filed(key)?.map(|(row, folder)| Filed {
            uid: m.meta.uid,
            message_row: row,
            folder,
            new: false,
            category: Category::Review,
            replied: false,
        }))
    }

    /// Which conversation this message continues, and why: References/In-Reply-To (ours
    /// included), then a `[MAO-n]` case reference, then sender plus normalised subject.
    fn follow_up(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        by_ids: Option<ConversationRef>,
        contact: Option<i64>,
        subject_norm: &str,
    ) -> anyhow::Result<Option<(ConversationRef, String)>> {
        if let Some(c) = by_ids {
            let why = format!("In-Reply-To/References match conversation {}", case_reference(c.id));
            return Ok(Some((c, why)));
        }
        if let Some(id) = triage::case_reference_in(&mail.subject)
            && let Some(c) = tx.conversation(id)?
        {
            return Ok(Some((c, format!("case reference {} in subject", case_reference(id)))));
        }
        if let Some(contact) = contact
            && !subject_norm.is_empty()
            && let Some(c) = tx.conversation_by_subject(contact, subject_norm)?
        {
            let why = format!("same sender and subject as conversation {}", case_reference(c.id));
            return Ok(Some((c, why)));
        }
        Ok(None)
    }

    fn file_review(
        &self,
        tx: &Tx<'_>,
        m: &FetchedMessage,
        mail: Option<&ParsedMail>,
        uidvalidity: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Filed> {
        let key = match mail.and_then(|p| p.message_id.as_deref()) {
            Some(mid) => parse::dedupe_key(Some(mid), &m.raw),
            None => parse::dedupe_key(None, &[m.raw.as_slice(), &m.meta.size.to_le_bytes()].concat()),
        };
        if let Some(f) = self.replayed(tx, m, &key)? {
            return Ok(f);
        }
        let folder = self.folder_for(Category::Review);
        let row = tx.insert_message(
            &NewMessage {
                dedupe_key: key,
                message_id: mail.and_then(|p| p.message_id.clone()),
                in_reply_to: mail.and_then(|p| p.in_reply_to.first().cloned()),
                refs: mail.map(|p| p.references.clone()).unwrap_or_default(),
                from_addr: mail.and_then(|p| p.from.as_ref().map(|a| a.to_string()).or_else(|| p.from_raw.clone())),
                from_name: mail.and_then(|p| p.from_name.clone()),
                reply_to: None,
                subject: mail.map(|p| p.subject.clone()).unwrap_or_default(),
                body_text: mail.map(|p| p.text.clone()).unwrap_or_default(),
                category: Category::Review.as_str().into(),
                reason: reason.into(),
                language: Language::Dutch.code().into(),
                status: "new".into(),
                folder: folder.clone(),
                reply_note: "not answered: a person reviews it first".into(),
                auto_replied: false,
                conversation_id: None,
                size: i64::try_from(m.meta.size).unwrap_or(i64::MAX),
                received_at: m.meta.internal_date,
                date_header: mail.and_then(|p| p.date),
                uidvalidity: Some(uidvalidity),
                uid: Some(m.meta.uid),
            },
            now,
        )?;
        Ok(Filed { uid: m.meta.uid, message_row: row, folder, new: true, category: Category::Review, replied: false })
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_reply(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        to: &EmailAddress,
        category: Category,
        language: Language,
        row: i64,
        conversation: i64,
        has_photo: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let case_ref = case_reference(conversation);
        let name = mail.from_name.clone().unwrap_or_default();
        let body = self.templates.reply(
            category,
            language,
            &ReplyData { name: &name, subject: &mail.subject, case_ref: &case_ref, has_photo },
        )?;
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::auto_reply(
            &self.from,
            &compose::ReplyTo {
                to,
                to_name: mail.from_name.as_deref().filter(|_| mail.reply_to.is_none()),
                original_subject: &mail.subject,
                original_message_id: mail.message_id.as_deref(),
                original_references: &mail.references,
                case_ref: &case_ref,
            },
            &message_id,
            body,
            SystemTime::from(now),
        )?;
        tx.enqueue(
            &NewOutgoing {
                kind: "auto_reply".into(),
                message_id,
                reply_to_msg: Some(row),
                conversation_id: Some(conversation),
                envelope_from: self.settings.smtp.envelope_from.clone(),
                rcpt: to.to_string(),
                raw,
                ..Default::default()
            },
            now,
        )?;
        tx.set_auto_replied(row, &format!("auto-reply queued to {} in {}", to.domain(), language.code()))?;
        Ok(())
    }

    /// Tells the coordinator, at most once an hour, that the circuit breaker is open.
    fn tell_coordinator_breaker(&self, tx: &Tx<'_>, mail: &ParsedMail, now: DateTime<Utc>) -> anyhow::Result<()> {
        let Some(addr) = self.settings.coordinator.address.as_deref().and_then(|a| EmailAddress::parse(a).ok()) else {
            tracing::warn!("auto-reply circuit breaker is open and no coordinator.address is configured");
            return Ok(());
        };
        if tx.queued_kind_since("notice_breaker", now - Duration::hours(1))? {
            return Ok(());
        }
        tracing::warn!(
            limit = self.settings.autoreply.max_per_hour,
            "auto-reply circuit breaker opened; telling the coordinator"
        );
        #[derive(serde::Serialize)]
        struct Data<'a> {
            count: u64,
            limit: u64,
            subject: &'a str,
        }
        let count = tx.auto_replies_since(now - Duration::hours(1))?;
        let body = self.templates.render(
            "notice/breaker.nl.txt",
            &Data { count, limit: self.settings.autoreply.max_per_hour, subject: &mail.subject },
        )?;
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::notice(
            &self.from,
            &addr,
            "outreach: automatische antwoorden gepauzeerd",
            &message_id,
            body,
            SystemTime::from(now),
        )?;
        tx.enqueue(
            &NewOutgoing {
                kind: "notice_breaker".into(),
                message_id,
                reply_to_msg: None,
                conversation_id: None,
                envelope_from: self.from.email.to_string(),
                rcpt: addr.to_string(),
                raw,
                ..Default::default()
            },
            now,
        )?;
        Ok(())
    }

    fn folder_for(&self, c: Category) -> String {
        let f = &self.settings.filing;
        match c {
            Category::Join => f.join.clone(),
            Category::Question | Category::Followup => f.question.clone(),
            Category::Unsubscribe => f.unsubscribe.clone(),
            Category::Automatic => f.automatic.clone(),
            Category::Bounce => f.bounce.clone(),
            Category::Review => f.review.clone(),
            Category::Story => f.story.clone(),
        }
    }
}

/// `[PROEF n]` in a subject: the issue a proof answer is about.
fn proof_reference(subject: &str) -> Option<i64> {
    let i = subject.find("[PROEF ")?;
    let rest = &subject[i + 7..];
    rest[..rest.find(']')?].trim().parse().ok()
}

fn automatic_category(c: Category) -> bool {
    matches!(c, Category::Automatic | Category::Bounce)
}

/// One pass over the watched mailbox: file everything in it and move it to its folder.
/// `on_committed` runs after each committed batch (the daemon wakes the outbox there).
pub fn process_mailbox(
    src: &mut ImapSource,
    db: &mut Db,
    pipeline: &Pipeline<'_>,
    max_size: u64,
    mut on_committed: impl FnMut(&[Filed]),
) -> anyhow::Result<PassStats> {
    let mut stats = PassStats::default();
    let mailbox = src.mailbox().to_string();
    if let Some((validity, _)) = db.mailbox_state(&mailbox)?
        && validity != src.uidvalidity
    {
        // Dedupe is by Message-ID or content hash, not UID: nothing is filed or answered twice.
        tracing::warn!(mailbox, old = validity, new = src.uidvalidity, "UIDVALIDITY changed; rescanning the mailbox");
    }
    let uids = src.search_all()?;
    stats.seen = uids.len();
    // Filed messages no longer in the mailbox were moved (a crash may have come between
    // the MOVE and recording it): record it now.
    let present: std::collections::HashSet<u32> = uids.iter().copied().collect();
    let gone: Vec<i64> = db
        .unmoved_uids(src.uidvalidity)?
        .into_iter()
        .filter(|(_, uid)| !present.contains(uid))
        .map(|(id, _)| id)
        .collect();
    if !gone.is_empty() {
        db.mark_moved(&gone)?;
    }
    if uids.is_empty() {
        return Ok(stats);
    }
    let metas = src.fetch_meta(&uids)?;
    let mut batch: Vec<imap::MessageMeta> = Vec::new();
    let mut bytes = 0;
    let mut highest = 0;
    for (i, meta) in metas.iter().enumerate() {
        batch.push(*meta);
        bytes += meta.size.min(max_size);
        highest = highest.max(meta.uid);
        if bytes >= BATCH_BYTES || batch.len() >= BATCH_MESSAGES || i + 1 == metas.len() {
            let (big, small): (Vec<_>, Vec<_>) = batch.drain(..).partition(|m| m.size > max_size);
            bytes = 0;
            let t0 = std::time::Instant::now();
            let mut fetched = src.fetch_bodies(&small)?;
            fetched.extend(src.fetch_headers(&big)?);
            let t1 = std::time::Instant::now();
            let filed = pipeline.file_batch(db, &fetched, src.uidvalidity, Utc::now())?;
            let t2 = std::time::Instant::now();
            drop(fetched);
            for f in &filed {
                if f.new {
                    stats.filed += 1;
                } else {
                    stats.replayed += 1;
                }
                stats.replies_queued += usize::from(f.replied);
            }
            on_committed(&filed);
            // Commit first, then move (guarantee 1): group by folder.
            let mut by_folder: Vec<(&str, Vec<u32>, Vec<i64>)> = Vec::new();
            for f in &filed {
                match by_folder.iter_mut().find(|(folder, _, _)| *folder == f.folder) {
                    Some((_, uids, rows)) => {
                        uids.push(f.uid);
                        rows.push(f.message_row);
                    }
                    None => by_folder.push((&f.folder, vec![f.uid], vec![f.message_row])),
                }
            }
            let mut moved_rows = Vec::with_capacity(filed.len());
            for (folder, uids, rows) in by_folder {
                src.move_to(&uids, folder)?;
                stats.moved += uids.len();
                moved_rows.extend(rows);
            }
            db.mark_moved(&moved_rows)?;
            tracing::debug!(
                messages = filed.len(),
                fetch_ms = (t1 - t0).as_millis(),
                file_ms = (t2 - t1).as_millis(),
                move_ms = t2.elapsed().as_millis(),
                "batch"
            );
        }
    }
    db.set_mailbox_state(&mailbox, src.uidvalidity, highest)?;
    stats.left = stats.seen - stats.moved;
    Ok(stats)
}
