//! Filing one message: the rules, in named steps, inside the batch's transaction.
//!
//! [`Pipeline::file_one`] reads as the list of steps: admit (parse, replay, limits) ->
//! sort (automatic, newsletter answer, story, follow-up, classification) -> story
//! consent -> newsletter request -> reply decision -> unsubscribe by mail -> record ->
//! answer. Each step only records decisions in the store; heavy work that a decision
//! starts (sending an approved issue) is done by the newsletter task after the commit.

use std::time::SystemTime;

use chrono::{DateTime, Duration, Utc};
use lettre::message::Mailbox;

use super::Filed;
use super::auth::{self, Dmarc};
use super::imap::FetchedMessage;
use super::parse::{self, ParsedMail};
use super::triage::{self, ReplyContext, ReplyDecision};
use crate::config::Settings;
use crate::domain::ids::{ContactId, ConversationId, IssueId, MessageRowId, StoryId, SubscriberId};
use crate::domain::state::{ConversationStatus, IssueStatus, MessageStatus, OutboxKind};
use crate::domain::{Category, EmailAddress, Language, case_reference, repeatable};
use crate::newsletter::{self, Ctx, Subscribed, bounce};
use crate::outbox::compose;
use crate::store::desk::Recipients;
use crate::store::stories::{Ambassador, NewStory};
use crate::store::{self, ConversationRef, Db, NewMessage, NewOutgoing, Tx};
use crate::templates::{ReplyData, Templates};

/// How many of a mail's In-Reply-To/References ids are looked up to find its thread.
const MAX_REFERENCES: usize = 20;

/// The filing rules, built once from the settings.
pub struct Pipeline<'a> {
    settings: &'a Settings,
    templates: &'a Templates,
    news: &'a Ctx,
    own: Vec<EmailAddress>,
    from: Mailbox,
}

/// What filing has decided about one message so far.
struct Decision {
    category: Category,
    reason: String,
    conversation: Option<ConversationRef>,
    new_conversation: bool,
    /// The sender as a contact, with the time of our last auto-reply to them.
    contact: Option<(ContactId, Option<DateTime<Utc>>)>,
    /// A story sent in by a known ambassador: (title, ambassador).
    story: Option<(String, Ambassador)>,
    /// Handled by the newsletter (a confirmation, a proof answer): filed as done, no reply.
    handled: bool,
    /// Why no auto-reply, decided before the reply rules run.
    no_reply: Option<String>,
    /// When the reply address last got an auto-reply, and how many mails on a stranger's
    /// word (auto-replies, confirmations) its domain got in the last hour (read before
    /// this mail queues any).
    last_to_recipient: Option<DateTime<Utc>>,
    to_domain_last_hour: u64,
    /// It looked like an answer that acts but proved nothing: the coordinator is told
    /// once (about this issue or story).
    suspect: Option<Suspect>,
    /// What a person's mail asks for, read once (None for automatic mail).
    intent: Option<triage::Intent>,
    /// From the network's own team (our addresses, the coordinator, a desk user) in a
    /// known conversation: their answer, sent from their own mail client with us in
    /// Cc/Bcc. `true` when our receiving server authenticated the sender (it then counts
    /// as an answer), `false` when only the From header says so (filed, nothing done).
    team_answer: Option<bool>,
}

/// A mail that looked like an answer that acts (a proof answer, consent to publish).
#[derive(Debug, Clone)]
struct Suspect {
    why: String,
    issue: Option<IssueId>,
    story: Option<StoryId>,
}

/// What an answer to one of our newsletter mails did.
enum Answer {
    /// Acted on (confirmed, approved, cancelled): filed as done, no reply.
    Handled(Category, String),
    /// Looked like such an answer but proved nothing: filed for review.
    Suspect(Suspect),
}

impl Decision {
    fn new(category: Category, reason: String, conversation: Option<ConversationRef>) -> Self {
        Self {
            category,
            reason,
            conversation,
            new_conversation: false,
            contact: None,
            story: None,
            handled: false,
            no_reply: None,
            last_to_recipient: None,
            to_domain_last_hour: 0,
            suspect: None,
            intent: None,
            team_answer: None,
        }
    }

    /// Files the mail for review instead: no reply, no action, the coordinator told.
    fn suspect(&mut self, s: Suspect) {
        self.category = Category::Review;
        self.reason = s.why.clone();
        self.no_reply = Some("not answered: a person reviews it first".into());
        self.suspect = Some(s);
    }
}

/// The first step's outcome: filed already (replay, review), or a mail to sort.
enum Admitted {
    Done(Filed),
    /// A mail to sort, with its dedupe key and content hash.
    Mail(Box<ParsedMail>, String, String),
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
        // Parsing is the costly part of a hostile mail: it happens before the write
        // transaction starts, so the write lock is held only for the decisions.
        let parsed: Vec<Option<ParsedMail>> = batch.iter().map(|m| parse::parse(&m.raw)).collect();
        let mut tx = db.begin()?;
        let mut out = Vec::with_capacity(batch.len());
        for (m, parsed) in batch.iter().zip(parsed) {
            // A bug while filing one message (a panic) must not stop the queue: that
            // message's changes are rolled back and it is filed for review instead.
            let filed = tx.savepoint(|tx| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.file_one(tx, m, parsed, uidvalidity, now)
                }))
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
                Err(e) if store::Fault::of(&e).is_some() => return Err(e),
                Err(e) => {
                    // The error may quote the mail (an address in it): only the domain is kept.
                    let error = crate::domain::redact_addresses(&format!("{e:#}"));
                    tracing::warn!(uid = m.meta.uid, %error, "filing failed; filing for review");
                    let reason = format!("review: filing failed: {error}");
                    match tx.savepoint(|tx| self.file_review(tx, m, None, None, uidvalidity, &reason, now)) {
                        Ok(f) => out.push(f),
                        Err(e) if store::Fault::of(&e).is_some() => return Err(e),
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

    /// Files one message: the steps in order.
    fn file_one(
        &self,
        tx: &Tx<'_>,
        m: &FetchedMessage,
        parsed: Option<ParsedMail>,
        uidvalidity: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Filed> {
        let (mail, key, hash) = match self.admit(tx, m, parsed, uidvalidity, now)? {
            Admitted::Done(f) => return Ok(f),
            Admitted::Mail(mail, key, hash) => (mail, key, hash),
        };
        if let Some(why) = self.unauthenticated(&mail) {
            return self.file_review(tx, m, Some(&mail), Some(key), uidvalidity, &why, now);
        }
        let language = triage::detect_language(&mail);
        let mut d = self.sort(tx, m, &mail, language, now)?;
        self.recipient_history(tx, &mail, &mut d, now)?;
        self.story_consent(tx, &mail, &mut d, now)?;
        self.newsletter_request(tx, &mail, language, &mut d, now)?;
        if let Some(c) = &d.conversation {
            tx.touch_conversation(c.id, now)?;
        }
        let folder = self.folder_of(&d);
        let reply_addr = mail.reply_address().cloned();
        let decision = self.reply_decision(tx, &d, reply_addr.as_ref(), now)?;
        self.unsubscribe_by_mail(tx, &mail, &mut d, &decision, now)?;
        let row = self.record(tx, m, &mail, (key, hash), language, &d, &folder, &decision, uidvalidity, now)?;
        self.conversation_waits(tx, &mail, &d, row, now)?;
        self.record_story(tx, &mail, &d, row, now)?;
        let replied = self.answer(tx, &mail, &d, decision, reply_addr, language, row, now)?;
        if let Some(s) = &d.suspect {
            self.tell_coordinator_suspect(tx, &mail, s, now)?;
        }
        Ok(Filed { uid: m.meta.uid, message_row: row, folder, new: true, category: d.category, replied })
    }

    /// Stops what must not be sorted: too large, unparseable, filed before (a replay
    /// after a crash), a known Message-ID with other content, too many MIME parts.
    fn admit(
        &self,
        tx: &Tx<'_>,
        m: &FetchedMessage,
        parsed: Option<ParsedMail>,
        uidvalidity: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Admitted> {
        if m.header_only {
            let reason = format!(
                "review: message is {} bytes, over the limit of {} (imap.max_message_size); not downloaded",
                m.meta.size, self.settings.imap.max_message_size
            );
            return Ok(Admitted::Done(self.file_review(tx, m, parsed.as_ref(), None, uidvalidity, &reason, now)?));
        }
        let Some(mail) = parsed else {
            let reason = "review: could not be parsed as a mail message";
            return Ok(Admitted::Done(self.file_review(tx, m, None, None, uidvalidity, reason, now)?));
        };
        let key = parse::dedupe_key(mail.message_id.as_deref(), &m.raw);
        let hash = parse::content_hash(&mail);
        if let Some((row, folder, known)) = tx.find_filed(&key)? {
            // Filed before: a replay after a crash, unless the same Message-ID now comes
            // with other content (anyone can write any Message-ID): then it is a mail of
            // its own, for a person to look at.
            if known.as_deref().is_none_or(|k| k == hash) {
                return Ok(Admitted::Done(Filed::replayed(m, row, folder)));
            }
            let own_key = format!("sha256:{hash}");
            if let Some((row, folder, _)) = tx.find_filed(&own_key)? {
                return Ok(Admitted::Done(Filed::replayed(m, row, folder)));
            }
            let reason = format!(
                "review: Message-ID <{}> was filed before (message {row}) with other content",
                mail.message_id.as_deref().unwrap_or("")
            );
            return Ok(Admitted::Done(self.file_review(
                tx,
                m,
                Some(&mail),
                Some(own_key),
                uidvalidity,
                &reason,
                now,
            )?));
        }
        if mail.parts > parse::MAX_PARTS {
            let reason = format!("review: {} MIME parts (limit {})", mail.parts, parse::MAX_PARTS);
            return Ok(Admitted::Done(self.file_review(tx, m, Some(&mail), Some(key), uidvalidity, &reason, now)?));
        }
        Ok(Admitted::Mail(Box::new(mail), key, hash))
    }

    /// With `trust.authserv_id`: a mail our receiving server found failing DMARC for its
    /// From domain is never answered and never acts; the reason for review.
    fn unauthenticated(&self, mail: &ParsedMail) -> Option<String> {
        let id = self.settings.trust.authserv_id.as_deref()?;
        match auth::dmarc(mail, id) {
            Dmarc::Fail { domain } => {
                let domain = domain.or_else(|| mail.from.as_ref().map(|f| f.domain().to_string())).unwrap_or_default();
                Some(format!(
                    "review: sender authentication failed ({id} says dmarc=fail for {domain}); not answered, nothing done"
                ))
            }
            _ => None,
        }
    }

    /// What the message is: automatic mail (bounces counted), an answer to one of our
    /// newsletter mails, a story, a follow-up, or a new join/question/unsubscribe.
    fn sort(
        &self,
        tx: &Tx<'_>,
        m: &FetchedMessage,
        mail: &ParsedMail,
        language: Language,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Decision> {
        // The last ids referred to (the closest in the thread) and at most MAX_REFERENCES of
        // them: a hostile mail with thousands of References cannot hold the write lock.
        let mut ids: Vec<String> = mail.references.clone();
        ids.extend(mail.in_reply_to.iter().cloned());
        if ids.len() > MAX_REFERENCES {
            ids.drain(..ids.len() - MAX_REFERENCES);
        }
        let by_ids = tx.conversation_by_message_ids(&ids)?;
        if let Some(conv) = by_ids.clone().filter(|_| self.sent_by_team(mail)) {
            let authenticated =
                self.settings.trust.authserv_id.as_deref().is_some_and(|id| auth::dmarc(mail, id) == Dmarc::Pass);
            let reason = if authenticated {
                "answer: sent by the team from their own mail client (Cc/Bcc to us), authenticated".to_string()
            } else {
                "followup: looks like the team's answer from their own mail client, but the sender is not \
                 authenticated (trust.authserv_id): filed, the conversation is left as it is"
                    .to_string()
            };
            let category = if conv.category == Category::Story { Category::Story } else { Category::Followup };
            let mut d = Decision::new(category, reason, Some(conv));
            d.handled = true;
            d.no_reply = Some("not answered: sent by the team".into());
            d.team_answer = Some(authenticated);
            return Ok(d);
        }
        if let Some((cat, rule)) = triage::detect_automatic(mail, &self.own) {
            let mut reason = format!("{}: {rule}", cat.as_str());
            // Only delivery reports count as bounces; an out-of-office sent to the bounce
            // address is filed as automatic mail and counts for nothing.
            if cat == Category::Bounce
                && let Some(b) = bounce::find(tx.store(), &self.news.signer, &m.raw)?
            {
                let note = bounce::apply(tx.store(), &b, self.settings.newsletter.soft_bounce_limit, now)?;
                reason = format!("{reason}; newsletter: {note}");
            }
            return Ok(Decision::new(cat, reason, by_ids));
        }
        let contact = match &mail.from {
            Some(from) => Some(tx.upsert_contact(&from.normalized(), mail.from_name.as_deref(), language, now)?),
            None => None,
        };
        let contact_id = contact.as_ref().map(|c| c.0);
        let subject_norm = triage::normalize_subject(&mail.subject);
        let mut d = if let Some(answer) = self.newsletter_answer(tx, mail, &ids, now)? {
            match answer {
                Answer::Handled(cat, why) => {
                    let mut d = Decision::new(cat, why, by_ids);
                    d.handled = true;
                    d
                }
                Answer::Suspect(s) => {
                    let mut d = Decision::new(Category::Review, String::new(), None);
                    d.suspect(s);
                    d
                }
            }
        } else if let Some((title, amb)) = newsletter::stories::mail_title(&mail.subject)
            .zip(mail.from.as_ref().map(|f| tx.store().ambassador_by_email(f.as_str())).transpose()?.flatten())
        {
            let why = format!("story: \"Verhaal:\"/\"Story:\" subject from ambassador {}", amb.name);
            let id = tx.create_conversation(contact_id, Category::Story, &subject_norm, now)?;
            let mut d = Decision::new(Category::Story, why, Some(ConversationRef { id, category: Category::Story }));
            d.new_conversation = true;
            d.story = Some((title, amb));
            d
        } else if let Some((conv, why)) = self.follow_up(tx, mail, by_ids, contact_id, &subject_norm)? {
            Decision::new(Category::Followup, format!("followup: {why}"), Some(conv))
        } else {
            let intent = triage::intent(mail);
            let cat = intent.category;
            let id = tx.create_conversation(contact_id, cat, &subject_norm, now)?;
            let mut d = Decision::new(cat, intent.reason.clone(), Some(ConversationRef { id, category: cat }));
            d.new_conversation = true;
            d.intent = Some(intent);
            d
        };
        d.contact = contact;
        Ok(d)
    }

    /// Reads what we sent the reply address on a stranger's word before this mail: the
    /// window and the domain cap are keyed on the address that receives our mail.
    fn recipient_history(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        d: &mut Decision,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        // Only a mail that may get an auto-reply or a confirmation needs them.
        if d.handled || matches!(d.category, Category::Automatic | Category::Bounce | Category::Review) {
            return Ok(());
        }
        if let Some(to) = mail.reply_address() {
            d.last_to_recipient = tx.last_auto_reply_to(to)?;
            d.to_domain_last_hour = tx.unasked_mails_to_domain_since(to.domain(), now - Duration::hours(1))?;
        }
        Ok(())
    }

    /// Consent to publish: "ja" in answer to our request for it (the reply to the story
    /// mail, referred to by In-Reply-To/References), from the ambassador's registered
    /// address. A "ja" in the story's conversation that is not both is filed for review.
    fn story_consent(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        d: &mut Decision,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if d.category != Category::Followup || !triage::says_yes(mail) {
            return Ok(());
        }
        let Some(conv) = d.conversation.as_ref().filter(|c| c.category == Category::Story) else { return Ok(()) };
        let Some(story) = tx.store().story_by_conversation(conv.id)? else { return Ok(()) };
        let (request, ambassador) = tx.store().story_consent_request(story)?;
        let answers_request =
            request.as_deref().is_some_and(|r| mail.in_reply_to.iter().chain(&mail.references).any(|id| id == r));
        let from_ambassador = ambassador
            .as_deref()
            .and_then(|a| EmailAddress::parse(a).ok())
            .zip(mail.from.as_ref())
            .is_some_and(|(a, f)| a.normalized() == f.normalized());
        if answers_request && from_ambassador {
            let source = format!("mail: \"ja\" in <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
            tx.store().record_story_consent(story, &source, now)?;
            d.reason = format!("{}; story {story}: consent to publish recorded", d.reason);
        } else {
            let missing = match (answers_request, from_ambassador) {
                (false, false) => "it does not answer our request for consent and is not from the ambassador's address",
                (false, true) => "it does not answer our request for consent (In-Reply-To/References)",
                _ => "it is not from the ambassador's registered address",
            };
            d.suspect(Suspect {
                why: format!("review: looks like consent to publish story {story}, but {missing}; nothing recorded"),
                issue: None,
                story: Some(story),
            });
        }
        Ok(())
    }

    /// A request for the newsletter: double opt-in. When the mail asks for nothing else,
    /// the confirmation mail is its answer. No confirmation goes to an address that got a
    /// mail from us on a stranger's word within the window.
    fn newsletter_request(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        language: Language,
        d: &mut Decision,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if !(matches!(d.category, Category::Join | Category::Question) && d.new_conversation) {
            return Ok(());
        }
        let intent = d.intent.get_or_insert_with(|| triage::intent(mail));
        let Some(words) = intent.newsletter.clone() else { return Ok(()) };
        let about_network = intent.about_network;
        let Some(addr) = mail.reply_address().cloned() else { return Ok(()) };
        if self.is_ours(&addr) || triage::unanswerable(&addr).is_some() {
            return Ok(());
        }
        // Confirmations have their own limits, kept per address by `subscribe` (one a
        // day, three in 30 days); the per-domain cap and the breaker count them too.
        let source = format!("mail <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
        let name = mail.from_name.as_deref().map(|n| repeatable(n, 60));
        let note = if d.to_domain_last_hour >= self.settings.autoreply.max_per_domain_per_hour {
            "no confirmation sent: too many mails to this domain in the last hour (autoreply.max_per_domain_per_hour)"
        } else {
            match self.news.subscribe(tx.store(), &addr, name.as_deref(), language, &source, None, now)? {
                Subscribed::ConfirmationSent(_) => "confirmation mail queued",
                Subscribed::ConfirmationRecent(_) => "pending; a confirmation went out less than a day ago",
                Subscribed::ConfirmationLimit(_) => "no confirmation sent: three went out in the last 30 days",
                Subscribed::AlreadyActive(_) => "already subscribed",
                Subscribed::Activated(_) | Subscribed::Kept(..) => "subscription unchanged",
                Subscribed::Suppressed => "address erased earlier on request; not subscribed",
            }
        };
        d.reason = format!("{}; newsletter request ({words}): {note}", d.reason);
        if !about_network {
            d.category = Category::Join;
            d.no_reply = Some(format!("newsletter request: {note}; no auto-reply"));
        }
        Ok(())
    }

    /// The reply window: at most one mail on a stranger's word per address in it.
    fn window(&self) -> Duration {
        Duration::hours(i64::try_from(self.settings.autoreply.window_hours).unwrap_or(i64::MAX / 3600))
    }

    /// Whether to answer, by the RFC 3834 rules, the window, the caps and the breaker.
    fn reply_decision(
        &self,
        tx: &Tx<'_>,
        d: &Decision,
        reply_addr: Option<&EmailAddress>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ReplyDecision> {
        if let Some(why) = &d.no_reply {
            return Ok(ReplyDecision::NoReply(why.clone()));
        }
        if d.handled {
            return Ok(ReplyDecision::NoReply("newsletter answer handled; no auto-reply".into()));
        }
        let a = &self.settings.autoreply;
        Ok(triage::decide_reply(&ReplyContext {
            enabled: a.enabled,
            category: d.category,
            automatic: matches!(d.category, Category::Automatic | Category::Bounce),
            new_conversation: d.new_conversation,
            has_reply_address: reply_addr.is_some(),
            reply_address_is_ours: reply_addr.is_some_and(|a| self.is_ours(a)),
            reply_address_unanswerable: reply_addr.and_then(triage::unanswerable),
            last_mail_to_recipient: d.last_to_recipient,
            window: self.window(),
            mails_to_domain_last_hour: d.to_domain_last_hour,
            max_per_domain_per_hour: a.max_per_domain_per_hour,
            replies_last_hour: tx.auto_replies_since(now - Duration::hours(1))?,
            max_per_hour: a.max_per_hour,
            now,
        }))
    }

    /// "afmelden" by mail: the sender's own address (or the one our link's token names)
    /// is unsubscribed at once: leaving stays easy. The confirmation goes to that address:
    /// by the auto-reply when that goes to the same address, else by a short mail.
    fn unsubscribe_by_mail(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        d: &mut Decision,
        decision: &ReplyDecision,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if d.category != Category::Unsubscribe {
            return Ok(());
        }
        let Some((sub, email)) = self.subscriber_leaving(tx, mail)? else { return Ok(()) };
        let source = format!("mail <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
        let reply_goes_there = *decision == ReplyDecision::Reply
            && mail
                .reply_address()
                .zip(EmailAddress::parse(&email).ok())
                .is_some_and(|(r, e)| r.normalized() == e.normalized());
        if self.news.unsubscribe(tx.store(), sub, &source, !reply_goes_there, now)? {
            d.reason = format!("{}; newsletter: subscriber {sub} unsubscribed", d.reason);
        }
        Ok(())
    }

    /// Stores the message row with every decision made.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        tx: &Tx<'_>,
        m: &FetchedMessage,
        mail: &ParsedMail,
        (dedupe_key, content_hash): (String, String),
        language: Language,
        d: &Decision,
        folder: &str,
        decision: &ReplyDecision,
        uidvalidity: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<MessageRowId> {
        let reply_note = match decision {
            ReplyDecision::Reply => "auto-reply queued".to_string(),
            ReplyDecision::NoReply(why) | ReplyDecision::BreakerOpen(why) => why.clone(),
        };
        tx.insert_message(
            &NewMessage {
                dedupe_key,
                content_hash: Some(content_hash),
                message_id: mail.message_id.clone(),
                in_reply_to: mail.in_reply_to.first().cloned(),
                refs: mail.references.clone(),
                from_addr: mail.from.as_ref().map(|a| a.to_string()).or_else(|| mail.from_raw.clone()),
                from_name: mail.from_name.clone(),
                reply_to: mail.reply_to.as_ref().map(|a| a.to_string()),
                subject: mail.subject.clone(),
                body_text: mail.text.clone(),
                // The desk shows a conversation's mail; automatic mail and bounces join
                // none, and their (often large) HTML would only fill the store.
                body_html: d.conversation.as_ref().and(mail.html.clone()),
                attachments: mail.attachments.clone(),
                category: d.category,
                reason: d.reason.clone(),
                language,
                status: if d.category.needs_person() && !d.handled { MessageStatus::New } else { MessageStatus::Done },
                folder: folder.to_string(),
                reply_note,
                auto_replied: false,
                conversation_id: d.conversation.as_ref().map(|c| c.id),
                size: i64::try_from(m.meta.size).unwrap_or(i64::MAX),
                received_at: m.meta.internal_date,
                date_header: mail.date,
                uidvalidity: Some(uidvalidity),
                uid: Some(m.meta.uid),
            },
            now,
        )
    }

    /// The desk's side of a filed mail: who else it went to (an answer keeps them), and
    /// the conversation's status: a person who writes again puts it back to `nieuw`; a
    /// new conversation that needs nobody (automatic mail, a handled unsubscribe) starts
    /// `afgehandeld`.
    fn conversation_waits(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        d: &Decision,
        row: MessageRowId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let st = tx.store();
        let list = |v: &[EmailAddress]| v.iter().map(|a| a.to_string()).collect();
        st.set_recipients(row, &Recipients { to: list(&mail.to), cc: list(&mail.cc) })?;
        let Some(c) = &d.conversation else { return Ok(()) };
        match d.team_answer {
            Some(true) => {
                let c = st.conversation_of(row)?.unwrap_or(c.id);
                let mid = mail.message_id.clone().unwrap_or_else(|| format!("row-{row}"));
                if st.record_client_answer(c, triage::own_words(&mail.text).trim(), &mid, now)?
                    && st.conversation_status(c)? != Some(ConversationStatus::Open)
                {
                    st.move_conversation(c, ConversationStatus::Open, now)?;
                }
                return Ok(());
            }
            Some(false) => return Ok(()),
            None => {}
        }
        let waits = d.category.needs_person() && !d.handled;
        let want = match (waits, d.new_conversation) {
            (true, _) => ConversationStatus::New,
            (false, true) => ConversationStatus::Done,
            (false, false) => return Ok(()),
        };
        if st.conversation_status(c.id)? != Some(want) {
            st.move_conversation(c.id, want, now)?;
        }
        Ok(())
    }

    /// A story sent in by mail becomes a submitted story (consent is asked by the reply).
    fn record_story(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        d: &Decision,
        row: MessageRowId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some((title, amb)) = &d.story else { return Ok(()) };
        let body = mail.text.trim();
        let id = tx.store().insert_story(
            &NewStory {
                title,
                ambassador: amb.id,
                body_md: if body.is_empty() { "(geen tekst)" } else { body },
                photo_url: None,
                photo_alt: None,
                source: "mail",
                message: Some(row),
                consent_source: None,
            },
            now,
        )?;
        tracing::info!(story = %id, "story submitted by mail");
        Ok(())
    }

    /// Queues the auto-reply, or tells the coordinator that the breaker is open.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        d: &Decision,
        decision: ReplyDecision,
        reply_addr: Option<EmailAddress>,
        language: Language,
        row: MessageRowId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        match decision {
            ReplyDecision::Reply => {
                let to = reply_addr.expect("decided with an address");
                let conv = d.conversation.as_ref().expect("new conversation").id;
                let has_photo = d.story.as_ref().is_some_and(|(_, a)| a.photo_url.is_some());
                self.queue_reply(tx, mail, &to, d.category, language, row, conv, has_photo, now)?;
                if let Some((contact, _)) = d.contact {
                    tx.set_contact_replied(contact, now)?;
                }
                Ok(true)
            }
            ReplyDecision::BreakerOpen(_) => {
                self.tell_coordinator_breaker(tx, mail, now)?;
                Ok(false)
            }
            ReplyDecision::NoReply(_) => Ok(false),
        }
    }

    /// Whether the From address is the team's: one of ours, the coordinator's, or a desk
    /// user's (a claim until [`auth::dmarc`] says otherwise).
    fn sent_by_team(&self, mail: &ParsedMail) -> bool {
        let Some(from) = &mail.from else { return false };
        let n = from.normalized();
        self.own.iter().any(|o| o.normalized() == n)
            || self
                .settings
                .coordinator
                .address
                .as_deref()
                .and_then(|a| EmailAddress::parse(a).ok())
                .is_some_and(|a| a.normalized() == n)
            || self.settings.desk.users.iter().filter_map(|a| EmailAddress::parse(a).ok()).any(|a| a.normalized() == n)
    }

    fn is_ours(&self, a: &EmailAddress) -> bool {
        self.own.iter().any(|o| o.normalized() == a.normalized())
    }

    /// A reply to one of our newsletter mails: "ja"/"yes" to a confirmation, or
    /// VERZENDEN / STOP to a proof. `None`: not such an answer.
    fn newsletter_answer(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Answer>> {
        let st = tx.store();
        for id in ids.iter().rev() {
            let Some(out) = st.outgoing_by_message_id(id)? else { continue };
            match (out.kind, out.subscriber, out.issue) {
                (OutboxKind::Confirm, Some(sub), _) if triage::says_yes(mail) => {
                    let source = format!("mail: \"ja\" in <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
                    let done = self.news.confirm(st, sub, &source, now)?;
                    let note = if done { "confirmed by reply" } else { "already confirmed" };
                    return Ok(Some(Answer::Handled(Category::Join, format!("newsletter: subscription {note}"))));
                }
                (OutboxKind::Proof, _, Some(issue)) if triage::proof_answer(mail).is_some() => {
                    return self.proof_answer(tx, mail, issue, now).map(Some);
                }
                _ => {}
            }
        }
        // `[PROEF n]` and VERZENDEN/STOP, but no reference to the proof mail itself.
        if let Some(issue) = proof_reference(&mail.subject)
            && triage::proof_answer(mail).is_some()
        {
            return Ok(Some(Answer::Suspect(Suspect {
                why: format!(
                    "review: looks like an answer to the proof of issue {issue}, but it does not reply to the proof mail (In-Reply-To/References); nothing done"
                ),
                issue: st.issue(issue)?.map(|i| i.id),
                story: None,
            })));
        }
        Ok(None)
    }

    /// VERZENDEN or STOP in reply to a proof. It counts only from the coordinator's
    /// address and with the proof's one-time code; then it records the decision (the send
    /// itself is started by the newsletter task after this transaction commits).
    fn proof_answer(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        issue: IssueId,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Answer> {
        let st = tx.store();
        let suspect = |why: String| Answer::Suspect(Suspect { why, issue: Some(issue), story: None });
        let Some(i) = st.issue(issue)? else {
            return Ok(suspect(format!("review: an answer to the proof of issue {issue}, which does not exist")));
        };
        let from_coordinator =
            mail.from.as_ref().zip(self.news.coordinator()).is_some_and(|(f, co)| f.normalized() == co.normalized());
        if !from_coordinator {
            return Ok(suspect(format!(
                "review: an answer to the proof of issue {issue}, but not from the coordinator's address; nothing done"
            )));
        }
        let has_code = i.proof_code.as_deref().is_some_and(|c| mail.text.contains(c) || mail.subject.contains(c));
        if !has_code {
            return Ok(suspect(format!(
                "review: an answer to the proof of issue {issue} without the proof's code; nothing done (answer with the code, or use `outreach newsletter approve`)"
            )));
        }
        if i.status != IssueStatus::Proof {
            let note = format!("newsletter: answer to the proof of issue {issue}, which is {} already", i.status);
            return Ok(Answer::Handled(Category::Question, note));
        }
        let by = format!("coordinator by mail <{}>", mail.message_id.as_deref().unwrap_or("no Message-ID"));
        let note = match triage::proof_answer(mail) {
            Some(triage::ProofAnswer::Send) => {
                self.news.approve(st, issue, &by, now)?;
                format!("proof of issue {issue} approved (VERZENDEN); the newsletter task sends it")
            }
            _ => {
                self.news.cancel(st, issue, &by, now)?;
                format!("proof of issue {issue} cancelled (STOP)")
            }
        };
        Ok(Answer::Handled(Category::Question, format!("newsletter: {note}")))
    }

    /// The subscriber an unsubscribe mail is about, with their address: by the token that
    /// our mailto link puts in the subject, else by the sender's own address.
    fn subscriber_leaving(&self, tx: &Tx<'_>, mail: &ParsedMail) -> anyhow::Result<Option<(SubscriberId, String)>> {
        let st = tx.store();
        for word in mail.subject.split_whitespace() {
            if let Ok(s) = self.news.subscriber_by_token(st, word, newsletter::tokens::Purpose::Unsubscribe, None)? {
                return Ok(Some((s.id, s.email)));
            }
        }
        let Some(from) = &mail.from else { return Ok(None) };
        Ok(st.subscriber_by_email(from.as_str())?.map(|s| (s.id, s.email)))
    }

    /// Which conversation this message continues, and why: References/In-Reply-To (ours
    /// included), then a `[MAO-n]` case reference, then sender plus normalised subject.
    fn follow_up(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        by_ids: Option<ConversationRef>,
        contact: Option<ContactId>,
        subject_norm: &str,
    ) -> anyhow::Result<Option<(ConversationRef, String)>> {
        if let Some(c) = by_ids {
            let why = format!("In-Reply-To/References match conversation {}", case_reference(c.id));
            return Ok(Some((c, why)));
        }
        if let Some(id) = triage::case_reference_in(&mail.subject).map(ConversationId)
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

    /// Files a message for a person to review, under `key` (by default its Message-ID,
    /// else a hash of its bytes), unless it was filed under that key before.
    #[allow(clippy::too_many_arguments)]
    fn file_review(
        &self,
        tx: &Tx<'_>,
        m: &FetchedMessage,
        mail: Option<&ParsedMail>,
        key: Option<String>,
        uidvalidity: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Filed> {
        let key = key.unwrap_or_else(|| match mail.and_then(|p| p.message_id.as_deref()) {
            Some(mid) => parse::dedupe_key(Some(mid), &m.raw),
            None => parse::dedupe_key(None, &[m.raw.as_slice(), &m.meta.size.to_le_bytes()].concat()),
        });
        if let Some((row, folder, _)) = tx.find_filed(&key)? {
            return Ok(Filed::replayed(m, row, folder));
        }
        let folder = self.folder_for(Category::Review);
        let row = tx.insert_message(
            &NewMessage {
                dedupe_key: key,
                content_hash: mail.map(parse::content_hash),
                message_id: mail.and_then(|p| p.message_id.clone()),
                in_reply_to: mail.and_then(|p| p.in_reply_to.first().cloned()),
                refs: mail.map(|p| p.references.clone()).unwrap_or_default(),
                from_addr: mail.and_then(|p| p.from.as_ref().map(|a| a.to_string()).or_else(|| p.from_raw.clone())),
                from_name: mail.and_then(|p| p.from_name.clone()),
                reply_to: None,
                subject: mail.map(|p| p.subject.clone()).unwrap_or_default(),
                body_text: mail.map(|p| p.text.clone()).unwrap_or_default(),
                // Mail for review joins no conversation: the desk does not show it.
                body_html: None,
                attachments: mail.map(|p| p.attachments.clone()).unwrap_or_default(),
                category: Category::Review,
                reason: reason.into(),
                language: Language::Dutch,
                status: MessageStatus::New,
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
        row: MessageRowId,
        conversation: ConversationId,
        has_photo: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let case_ref = case_reference(conversation);
        // A stranger's name and subject are repeated short and without links.
        let name = mail.from_name.as_deref().map(|n| repeatable(n, 60)).unwrap_or_default();
        let subject = repeatable(&mail.subject, 100);
        let body = self.templates.reply(
            category,
            language,
            &ReplyData { name: &name, subject: &subject, case_ref: &case_ref, has_photo },
        )?;
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::auto_reply(
            &self.from,
            &compose::ReplyTo {
                to,
                to_name: Some(name.as_str()).filter(|n| !n.is_empty() && mail.reply_to.is_none()),
                original_subject: &subject,
                original_message_id: mail.message_id.as_deref(),
                original_references: &mail.references,
                case_ref: &case_ref,
            },
            &message_id,
            body,
            SystemTime::from(now),
        )?;
        let mut reply = NewOutgoing::new(
            OutboxKind::AutoReply,
            message_id,
            self.settings.smtp.envelope_from.clone(),
            to.to_string(),
            raw,
        );
        reply.reply_to_msg = Some(row);
        reply.conversation_id = Some(conversation);
        tx.enqueue(&reply, now)?;
        tx.set_auto_replied(row, &format!("auto-reply queued to {} in {}", to.domain(), language.code()))?;
        Ok(())
    }

    /// Tells the coordinator, at most once an hour, that the circuit breaker is open.
    fn tell_coordinator_breaker(&self, tx: &Tx<'_>, mail: &ParsedMail, now: DateTime<Utc>) -> anyhow::Result<()> {
        let Some(addr) = self.news.coordinator() else {
            tracing::warn!("auto-reply circuit breaker is open and no coordinator.address is configured");
            return Ok(());
        };
        if tx.queued_kind_since(OutboxKind::NoticeBreaker, now - Duration::hours(1))? {
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
            &Data { count, limit: self.settings.autoreply.max_per_hour, subject: &repeatable(&mail.subject, 100) },
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
            &NewOutgoing::new(
                OutboxKind::NoticeBreaker,
                message_id,
                self.from.email.to_string(),
                addr.to_string(),
                raw,
            ),
            now,
        )?;
        Ok(())
    }

    /// Tells the coordinator that a mail looked like an answer that acts but proved
    /// nothing: once per issue or story (once a day for anything else).
    fn tell_coordinator_suspect(
        &self,
        tx: &Tx<'_>,
        mail: &ParsedMail,
        s: &Suspect,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(to) = self.news.coordinator() else { return Ok(()) };
        let told = if s.issue.is_some() || s.story.is_some() {
            tx.notice_queued(OutboxKind::NoticeSuspect, s.issue, s.story)?
        } else {
            tx.queued_kind_since(OutboxKind::NoticeSuspect, now - Duration::hours(24))?
        };
        if told {
            return Ok(());
        }
        #[derive(serde::Serialize)]
        struct Data<'a> {
            why: &'a str,
            subject: String,
            sender_domain: &'a str,
        }
        let body = self.templates.render(
            "notice/suspect.nl.txt",
            &Data {
                why: s.why.trim_start_matches("review: "),
                subject: repeatable(&mail.subject, 100),
                sender_domain: mail.from.as_ref().map_or("?", EmailAddress::domain),
            },
        )?;
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::notice(
            &self.from,
            &to,
            "outreach: een mail die iets wilde laten doen, ter controle",
            &message_id,
            body,
            SystemTime::from(now),
        )?;
        let mut notice =
            NewOutgoing::new(OutboxKind::NoticeSuspect, message_id, self.from.email.to_string(), to.to_string(), raw);
        notice.issue_id = s.issue;
        notice.story_id = s.story;
        tx.enqueue(&notice, now)?;
        tracing::warn!(issue = ?s.issue.map(|i| i.get()), story = ?s.story.map(|i| i.get()), "a mail that looked like an answer proved nothing; coordinator told");
        Ok(())
    }

    /// The watched mailbox has a new UIDVALIDITY (it was recreated or restored on the
    /// server): records the new value and queues one notice to the coordinator, in one
    /// transaction, so the coordinator is told once per change however many passes and
    /// reconnections follow. Nothing else changes: filing dedupes by Message-ID and
    /// content hash, not by UID.
    pub fn mailbox_recreated(
        &self,
        db: &mut Db,
        mailbox: &str,
        old: u32,
        new: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        tracing::warn!(mailbox, old, new, "UIDVALIDITY changed: the mailbox was recreated; rescanning it");
        let notice = match self.news.coordinator() {
            Some(to) => {
                #[derive(serde::Serialize)]
                struct Data<'a> {
                    mailbox: &'a str,
                    old: u32,
                    new: u32,
                }
                let body = self.templates.render("notice/mailbox.nl.txt", &Data { mailbox, old, new })?;
                let message_id = compose::new_message_id(&self.from);
                let raw = compose::notice(
                    &self.from,
                    &to,
                    &format!("outreach: de map {} is opnieuw aangemaakt", repeatable(mailbox, 60)),
                    &message_id,
                    body,
                    SystemTime::from(now),
                )?;
                Some(NewOutgoing::new(
                    OutboxKind::NoticeMailbox,
                    message_id,
                    self.from.email.to_string(),
                    to.to_string(),
                    raw,
                ))
            }
            None => {
                tracing::warn!("no coordinator.address is configured: nobody is told that the mailbox was recreated");
                None
            }
        };
        db.write(|s| {
            s.set_mailbox_state(mailbox, new, 0)?;
            if let Some(n) = &notice {
                s.enqueue(n, now)?;
            }
            Ok(())
        })
    }

    /// The folder of a decision: a follow-up goes where its conversation went.
    fn folder_of(&self, d: &Decision) -> String {
        match (d.category, &d.conversation) {
            (Category::Followup, Some(c)) => self.folder_for(c.category),
            (c, _) => self.folder_for(c),
        }
    }

    fn folder_for(&self, c: Category) -> String {
        self.settings.filing.folder_for(c).to_string()
    }
}

/// `[PROEF n]` in a subject: the issue a proof answer is about.
fn proof_reference(subject: &str) -> Option<IssueId> {
    let i = subject.find("[PROEF ")?;
    let rest = &subject[i + 7..];
    rest[..rest.find(']')?].trim().parse().ok().map(IssueId)
}
