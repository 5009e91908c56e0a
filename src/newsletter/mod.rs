//! Subscribers, ambassador stories and newsletter issues.
//!
//! - [`Ctx`] holds what every part needs (settings, templates, the token signer) and
//!   implements the subscriber lifecycle `pending -> active -> unsubscribed | bounced`
//!   with the mails that go with it (confirmation, welcome, unsubscribed), and the
//!   life of an issue `proof -> sending -> sent` (or `cancelled`, `dropped`, `skipped`).
//! - [`render`] turns an issue into HTML and text; [`send`] delivers it, one row per
//!   (issue, subscriber); [`schedule`] makes issues on the configured cron; [`bounce`]
//!   reads DSNs; [`web`] serves the confirm, unsubscribe and archive pages.
//!
//! Every function that changes the store takes the caller's connection or transaction,
//! so the inbox can, for example, unsubscribe someone in the same transaction that
//! files their mail.

pub mod bounce;
pub mod csv_import;
pub mod render;
pub mod schedule;
pub mod send;
pub mod stories;
pub mod tokens;
pub mod web;

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use rusqlite::Connection;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::config::{ProofDeadlineAction, Settings};
use crate::domain::{EmailAddress, Language};
use crate::outbox::compose;
use crate::store::news::{self, Subscriber};
use crate::store::{Db, NewOutgoing};
use crate::templates::Templates;
use render::{IssueContent, Renderer};
use tokens::{Purpose, Signer};

/// What the newsletter parts share. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    pub settings: Arc<Settings>,
    pub templates: Arc<Templates>,
    pub renderer: Arc<Renderer>,
    pub signer: Signer,
    pub from: Mailbox,
}

/// What asking to subscribe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// New or again pending: a confirmation mail was queued.
    ConfirmationSent(i64),
    /// Pending, and a confirmation went out less than a day ago: none sent (backscatter cap).
    ConfirmationRecent(i64),
    /// Active at once (an import that states consent).
    Activated(i64),
    AlreadyActive(i64),
    /// Unsubscribed or bounced earlier, and an import may not bring them back.
    Kept(i64, String),
    /// Erased on request earlier: never mailed again.
    Suppressed,
}

/// Hash kept of erased addresses.
pub fn email_hash(email: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

impl Ctx {
    /// Builds the context; the token secret comes from the config, or is generated once
    /// and kept in the database.
    pub fn new(settings: Arc<Settings>, templates: Arc<Templates>, db: &mut Db) -> anyhow::Result<Self> {
        let secret = match &settings.secret {
            Some(s) => s.expose_secret().as_bytes().to_vec(),
            None => {
                let s = db.write(|c| news::secret(c, "token", tokens::new_nonce, Utc::now()))?;
                s.into_bytes()
            }
        };
        let renderer = Arc::new(Renderer::load(settings.templates.dir.as_deref())?);
        let from = settings.from_mailbox()?;
        Ok(Self { settings, templates, renderer, signer: Signer::new(&secret), from })
    }

    pub fn base_url(&self) -> &str {
        self.settings.base_url()
    }

    pub fn confirm_url(&self, s: &Subscriber, now: DateTime<Utc>) -> String {
        format!("{}/confirm/{}", self.base_url(), self.signer.token(Purpose::Confirm, s.id, &s.token_nonce, now))
    }

    pub fn unsubscribe_url(&self, id: i64, nonce: &str, now: DateTime<Utc>) -> String {
        format!("{}/unsubscribe/{}", self.base_url(), self.signer.token(Purpose::Unsubscribe, id, nonce, now))
    }

    pub fn archive_url(&self, issue: Option<i64>) -> String {
        match issue {
            Some(id) => format!("{}/archive/{id}", self.base_url()),
            None => format!("{}/archive", self.base_url()),
        }
    }

    /// The address of the contact mailbox (where replies and unsubscribe mails go).
    pub fn contact_address(&self) -> String {
        EmailAddress::parse(&self.settings.imap.username)
            .map(|a| a.to_string())
            .unwrap_or_else(|_| self.from.email.to_string())
    }

    /// The subscriber a link token names, checked in the same way for unknown and forged
    /// tokens (same answer, same work).
    pub fn subscriber_by_token(
        &self,
        c: &Connection,
        token: &str,
        purpose: Purpose,
        valid_hours: Option<u32>,
    ) -> anyhow::Result<Result<Subscriber, tokens::TokenError>> {
        let id = match Signer::claimed_id(token, purpose) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let sub = news::subscriber_by_id(c, id)?;
        let nonce = sub.as_ref().map(|s| s.token_nonce.as_str());
        Ok(self
            .signer
            .verify(token, purpose, nonce, valid_hours, Utc::now())
            .map(|_| sub.expect("verified implies known")))
    }

    /// Asks `email` to subscribe (double opt-in) or, with `consent`, subscribes at once.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &self,
        c: &Connection,
        email: &EmailAddress,
        name: Option<&str>,
        language: Language,
        source: &str,
        consent: Option<(&str, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Subscribed> {
        if news::is_suppressed(c, &email_hash(email.as_str()))? {
            return Ok(Subscribed::Suppressed);
        }
        let name = name.map(crate::inbox::parse::clean_text).filter(|n| !n.is_empty());
        let existing = news::subscriber_by_email(c, email.as_str())?;
        let id = match existing {
            Some(s) if s.status == "active" => return Ok(Subscribed::AlreadyActive(s.id)),
            // An import never brings back someone who left, nor mails a pending one again.
            Some(s) if source == "import" && (s.status != "pending" || consent.is_none()) => {
                return Ok(Subscribed::Kept(s.id, s.status));
            }
            Some(s) if s.status == "pending" => {
                if let Some((how, at)) = consent {
                    news::activate(c, s.id, how, at)?;
                    return Ok(Subscribed::Activated(s.id));
                }
                let recent = s
                    .confirm_sent_at
                    .as_deref()
                    .and_then(crate::store::parse_ts)
                    .is_some_and(|t| now - t < chrono::Duration::hours(24));
                if recent {
                    return Ok(Subscribed::ConfirmationRecent(s.id));
                }
                s.id
            }
            Some(s) => {
                // Unsubscribed or bounced before, and asking again themselves.
                news::set_pending(c, s.id, source)?;
                s.id
            }
            None => {
                let status = if consent.is_some() { "active" } else { "pending" };
                let id = news::insert_subscriber(
                    c,
                    &news::NewSubscriber {
                        email: email.as_str(),
                        name: name.as_deref(),
                        language: language.code(),
                        status,
                        source,
                        consent_source: consent.map(|(how, _)| how),
                        consent_at: consent.map(|(_, at)| at),
                        nonce: &tokens::new_nonce(),
                    },
                    now,
                )?;
                if consent.is_some() {
                    return Ok(Subscribed::Activated(id));
                }
                id
            }
        };
        let s = news::subscriber_by_id(c, id)?.context("subscriber vanished")?;
        self.queue_subscriber_mail(c, &s, SubscriberMail::Confirm, now)?;
        news::set_confirm_sent(c, id, now)?;
        Ok(Subscribed::ConfirmationSent(id))
    }

    /// A pending subscriber confirms (link or reply): active, consent recorded, welcome mail.
    /// Returns false when they were already active (a second click).
    pub fn confirm(&self, c: &Connection, id: i64, consent_source: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let Some(s) = news::subscriber_by_id(c, id)? else { bail!("no subscriber {id}") };
        if s.status != "pending" {
            return Ok(false);
        }
        news::activate(c, id, consent_source, now)?;
        let s = news::subscriber_by_id(c, id)?.context("subscriber vanished")?;
        self.queue_subscriber_mail(c, &s, SubscriberMail::Welcome, now)?;
        tracing::info!(subscriber = id, via = consent_source.split(':').next().unwrap_or(""), "subscription confirmed");
        Ok(true)
    }

    /// Unsubscribes at once; `confirm_by_mail` queues the short confirmation mail.
    /// Returns false when they were not subscribed (nothing changed, no mail).
    pub fn unsubscribe(
        &self,
        c: &Connection,
        id: i64,
        source: &str,
        confirm_by_mail: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        if !news::unsubscribe(c, id, source, now)? {
            return Ok(false);
        }
        tracing::info!(subscriber = id, via = source.split(':').next().unwrap_or(""), "unsubscribed");
        if confirm_by_mail && let Some(s) = news::subscriber_by_id(c, id)? {
            self.queue_subscriber_mail(c, &s, SubscriberMail::Unsubscribed, now)?;
        }
        Ok(true)
    }

    /// Queues one of the short mails about a subscription.
    pub fn queue_subscriber_mail(
        &self,
        c: &Connection,
        s: &Subscriber,
        kind: SubscriberMail,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let lang = Language::parse(&s.language).unwrap_or(Language::Dutch);
        #[derive(Serialize)]
        struct Data<'a> {
            name: &'a str,
            title: &'a str,
            confirm_url: String,
            unsubscribe_url: String,
            archive_url: String,
        }
        let data = Data {
            name: s.name.as_deref().unwrap_or(""),
            title: &self.settings.newsletter.title,
            confirm_url: self.confirm_url(s, now),
            unsubscribe_url: self.unsubscribe_url(s.id, &s.token_nonce, now),
            archive_url: self.archive_url(None),
        };
        let (template, subject) = kind.template_and_subject(lang, &self.settings.newsletter.title);
        let body = self.templates.render(&format!("{template}.{}.txt", lang.code()), &data)?;
        let to = EmailAddress::parse(&s.email).map_err(|e| anyhow::anyhow!(e))?;
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::notice(&self.from, &to, &subject, &message_id, body, SystemTime::from(now))?;
        crate::store::enqueue(
            c,
            &NewOutgoing {
                kind: kind.kind().into(),
                message_id: message_id.clone(),
                envelope_from: self.from.email.to_string(),
                rcpt: to.to_string(),
                raw,
                subscriber_id: Some(s.id),
                ..Default::default()
            },
            now,
        )?;
        Ok(message_id)
    }

    /// Queues a short notice for the coordinator (when one is configured).
    pub fn notify_coordinator(
        &self,
        c: &Connection,
        kind: &str,
        subject: &str,
        body: String,
        issue_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(to) = self.coordinator() else {
            tracing::warn!(kind, "no coordinator.address configured; notice not sent");
            return Ok(());
        };
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::notice(&self.from, &to, subject, &message_id, body, SystemTime::from(now))?;
        crate::store::enqueue(
            c,
            &NewOutgoing {
                kind: kind.into(),
                message_id,
                envelope_from: self.from.email.to_string(),
                rcpt: to.to_string(),
                raw,
                issue_id,
                ..Default::default()
            },
            now,
        )?;
        Ok(())
    }

    pub fn coordinator(&self) -> Option<EmailAddress> {
        self.settings.coordinator.address.as_deref().and_then(|a| EmailAddress::parse(a).ok())
    }

    // ------------------------------------------------------------ issues

    /// The content of an issue made of these stories.
    pub fn content(&self, issue_id: Option<i64>, stories: Vec<news::Story>, now: DateTime<Utc>) -> IssueContent {
        let tz = self.settings.newsletter.timezone().unwrap_or(chrono_tz::Europe::Amsterdam);
        let local = now.with_timezone(&tz);
        let title = self.settings.newsletter.title.clone();
        let subject = match stories.first() {
            Some(s) => format!("{title}: {}", crate::inbox::parse::clean_text(&s.title)),
            None => title.clone(),
        };
        IssueContent {
            month0: chrono::Datelike::month0(&local),
            year: chrono::Datelike::year(&local),
            title,
            subject,
            stories,
            archive_url: self.archive_url(issue_id),
            from_address: self.contact_address(),
        }
    }

    fn issue_content(&self, c: &Connection, issue: &news::Issue) -> anyhow::Result<IssueContent> {
        let mut stories = Vec::new();
        for id in news::issue_story_ids(c, issue.id)? {
            stories.extend(news::story(c, id)?);
        }
        let created = crate::store::parse_ts(&issue.created_at).unwrap_or_else(Utc::now);
        let mut content = self.content(Some(issue.id), stories, created);
        content.subject.clone_from(&issue.subject);
        Ok(content)
    }

    /// Makes an issue of the approved stories not yet published. Scheduled issues
    /// (`slot`) get a proof first when `[newsletter] proof` is on; `now_send` issues go
    /// out at once. With no stories nothing is made, and for a slot the coordinator is
    /// told. Idempotent per slot.
    pub fn make_issue(
        &self,
        c: &Connection,
        slot: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<MadeIssue> {
        if let Some(slot) = slot
            && let Some(existing) = news::issue_by_slot(c, slot)?
        {
            return Ok(MadeIssue::Exists(existing.id));
        }
        let stories = news::stories_ready(c, self.settings.newsletter.max_stories)?;
        if stories.is_empty() {
            if let Some(slot) = slot {
                let id = news::create_issue(c, "", "skipped", Some(slot), &[], now)?;
                news::transition_issue(c, id, &["skipped"], "skipped", "no approved stories")?;
                #[derive(Serialize)]
                struct Data {
                    slot: String,
                }
                let tz = self.settings.newsletter.timezone()?;
                let body = self.templates.render(
                    "notice/no_stories.nl.txt",
                    &Data { slot: slot.with_timezone(&tz).format("%d-%m-%Y %H:%M").to_string() },
                )?;
                self.notify_coordinator(
                    c,
                    "notice_no_stories",
                    "Nieuwsbrief niet verstuurd: geen verhalen",
                    body,
                    Some(id),
                    now,
                )?;
                tracing::info!(slot = %slot, "scheduled newsletter skipped: no approved stories");
                return Ok(MadeIssue::Skipped(id));
            }
            return Ok(MadeIssue::NoStories);
        }
        let ids: Vec<i64> = stories.iter().map(|s| s.id).collect();
        let content = self.content(None, stories, now);
        let proof = slot.is_some() && self.settings.newsletter.proof;
        let id = news::create_issue(c, &content.subject, if proof { "proof" } else { "new" }, slot, &ids, now)?;
        if proof {
            self.send_proof(c, id, now)?;
            Ok(MadeIssue::Proof(id))
        } else {
            let n = self.start_sending(c, id, "outreach newsletter send", now)?;
            Ok(MadeIssue::Sending(id, n))
        }
    }

    /// Mails the proof of an issue to the coordinator.
    pub fn send_proof(&self, c: &Connection, issue_id: i64, now: DateTime<Utc>) -> anyhow::Result<()> {
        let issue = news::issue(c, issue_id)?.context("no such issue")?;
        let hours = self.settings.newsletter.proof_deadline_hours;
        let deadline = now + chrono::Duration::hours(i64::try_from(hours).unwrap_or(48));
        let Some(to) = self.coordinator() else {
            // Nobody to mail the proof to: it waits for `outreach newsletter approve`.
            tracing::warn!(
                issue = issue_id,
                "no coordinator.address: the proof is not mailed; approve it with `outreach newsletter approve`"
            );
            news::set_proof(c, issue_id, None, deadline)?;
            return Ok(());
        };
        let content = self.issue_content(c, &issue)?;
        let skeleton = self.renderer.skeleton(&content, Language::Dutch)?;
        let (html, text) = skeleton.personalize(None, &self.archive_url(None));
        let tz = self.settings.newsletter.timezone()?;
        #[derive(Serialize)]
        struct Data<'a> {
            subject: &'a str,
            recipients: i64,
            deadline: String,
            deadline_action: &'a str,
        }
        let recipients: i64 =
            c.query_row("SELECT COUNT(*) FROM subscribers WHERE status = 'active'", [], |r| r.get(0))?;
        let intro = self.templates.render(
            "notice/proof.nl.txt",
            &Data {
                subject: &issue.subject,
                recipients,
                deadline: deadline.with_timezone(&tz).format("%d-%m-%Y %H:%M").to_string(),
                deadline_action: match self.settings.newsletter.proof_deadline_action {
                    ProofDeadlineAction::Send => "vanzelf verstuurd",
                    ProofDeadlineAction::Drop => "niet verstuurd",
                },
            },
        )?;
        let message_id = compose::new_message_id(&self.from);
        let subject = format!("[PROEF {issue_id}] {}", issue.subject);
        let raw = send::build_message(
            self,
            &send::Envelope {
                to: &to,
                to_name: None,
                subject: &subject,
                message_id: &message_id,
                unsubscribe_url: None,
            },
            &format!("{intro}{text}"),
            &html,
            now,
        )?;
        crate::store::enqueue(
            c,
            &NewOutgoing {
                kind: "proof".into(),
                message_id: message_id.clone(),
                envelope_from: self.from.email.to_string(),
                rcpt: to.to_string(),
                raw,
                issue_id: Some(issue_id),
                ..Default::default()
            },
            now,
        )?;
        news::set_proof(c, issue_id, Some(&message_id), deadline)?;
        tracing::info!(issue = issue_id, "proof queued for the coordinator");
        Ok(())
    }

    /// The issue goes out: deliveries for every active subscriber. Returns how many.
    pub fn start_sending(&self, c: &Connection, issue_id: i64, by: &str, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let issue = news::issue(c, issue_id)?.context("no such issue")?;
        let content = self.issue_content(c, &issue)?;
        let archive = self.renderer.skeleton(&content, Language::Dutch)?.personalize(None, &self.archive_url(None)).0;
        let domain = self.from.email.domain().to_string();
        let n = news::start_sending(c, issue_id, by, &archive, &domain, now)?;
        tracing::info!(issue = issue_id, deliveries = n, by, "newsletter sending started");
        Ok(n)
    }

    /// Approves a proof (reply VERZENDEN or `newsletter approve`).
    pub fn approve(&self, c: &Connection, issue_id: i64, by: &str, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let issue = news::issue(c, issue_id)?.with_context(|| format!("there is no issue {issue_id}"))?;
        if issue.status != "proof" {
            bail!("issue {issue_id} is {}, not waiting for approval", issue.status);
        }
        self.start_sending(c, issue_id, by, now)
    }

    /// Cancels an issue (reply STOP or `newsletter cancel`): a proof is not sent; a
    /// sending issue stops (what went out stays out). Its unsent stories are free again.
    pub fn cancel(&self, c: &Connection, issue_id: i64, by: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
        let issue = news::issue(c, issue_id)?.with_context(|| format!("there is no issue {issue_id}"))?;
        match issue.status.as_str() {
            "proof" | "new" => {
                news::transition_issue(c, issue_id, &["proof", "new"], "cancelled", &format!("cancelled by {by}"))?;
                c.execute(
                    "UPDATE stories SET issue_id = NULL WHERE issue_id = ?1 AND status = 'approved'",
                    [issue_id],
                )?;
            }
            "sending" => {
                news::transition_issue(
                    c,
                    issue_id,
                    &["sending"],
                    "cancelled",
                    &format!("cancelled by {by} while sending"),
                )?;
                c.execute(
                    "UPDATE deliveries SET status = 'skipped', last_error = 'issue cancelled' WHERE issue_id = ?1 AND status IN ('pending', 'retry')",
                    [issue_id],
                )?;
            }
            s => bail!("issue {issue_id} is {s}; only a proof or an issue being sent can be cancelled"),
        }
        c.execute(
            "UPDATE issues SET cancelled_at = ?2 WHERE id = ?1",
            rusqlite::params![issue_id, crate::store::ts(now)],
        )?;
        tracing::info!(issue = issue_id, by, "newsletter cancelled");
        Ok(())
    }

    /// Proofs past their deadline are sent or dropped, as configured. Returns how many
    /// started sending.
    pub fn settle_proof_deadlines(&self, c: &Connection, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let mut n = 0;
        for issue in news::issues_with_status(c, "proof")? {
            let Some(deadline) = issue.proof_deadline.as_deref().and_then(crate::store::parse_ts) else { continue };
            if deadline > now {
                continue;
            }
            match self.settings.newsletter.proof_deadline_action {
                ProofDeadlineAction::Send => {
                    self.start_sending(c, issue.id, "proof deadline", now)?;
                    n += 1;
                }
                ProofDeadlineAction::Drop => {
                    news::transition_issue(c, issue.id, &["proof"], "dropped", "nobody answered the proof in time")?;
                    c.execute(
                        "UPDATE stories SET issue_id = NULL WHERE issue_id = ?1 AND status = 'approved'",
                        [issue.id],
                    )?;
                    tracing::info!(issue = issue.id, "proof unanswered; issue dropped");
                }
            }
        }
        Ok(n)
    }
}

/// What [`Ctx::make_issue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MadeIssue {
    Proof(i64),
    Sending(i64, usize),
    Skipped(i64),
    NoStories,
    Exists(i64),
}

/// The short mails about a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberMail {
    Confirm,
    Welcome,
    Unsubscribed,
}

impl SubscriberMail {
    fn kind(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Welcome => "welcome",
            Self::Unsubscribed => "unsubscribed",
        }
    }

    fn template_and_subject(self, lang: Language, title: &str) -> (&'static str, String) {
        match (self, lang) {
            (Self::Confirm, Language::Dutch) => ("subscribe/confirm", format!("Bevestig je aanmelding: {title}")),
            (Self::Confirm, Language::English) => ("subscribe/confirm", format!("Please confirm: {title}")),
            (Self::Welcome, Language::Dutch) => ("subscribe/welcome", format!("Welkom bij de {title}")),
            (Self::Welcome, Language::English) => ("subscribe/welcome", format!("Welcome to the {title}")),
            (Self::Unsubscribed, Language::Dutch) => ("subscribe/unsubscribed", format!("Je bent afgemeld: {title}")),
            (Self::Unsubscribed, Language::English) => {
                ("subscribe/unsubscribed", format!("You have unsubscribed: {title}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(extra: &str) -> (Ctx, Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            Arc::new(Settings::from_toml(&format!("{}{extra}", crate::config::tests::MINIMAL), Vec::new()).unwrap());
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        let templates = Arc::new(Templates::load(None).unwrap());
        (Ctx::new(settings, templates, &mut db).unwrap(), db, dir)
    }

    fn outbox_kinds(db: &Db) -> Vec<String> {
        let mut st = db.conn().prepare("SELECT kind FROM outbox ORDER BY id").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn double_opt_in_welcome_unsubscribe_and_the_daily_cap_on_confirmations() {
        let (ctx, mut db, _d) = ctx("");
        let now = Utc::now();
        let ann = EmailAddress::parse("ann@example.nl").unwrap();
        let r = db.write(|c| ctx.subscribe(c, &ann, Some("Ann"), Language::Dutch, "mail <x>", None, now)).unwrap();
        let Subscribed::ConfirmationSent(id) = r else { panic!("{r:?}") };
        let again = db.write(|c| ctx.subscribe(c, &ann, None, Language::Dutch, "mail <y>", None, now)).unwrap();
        assert_eq!(again, Subscribed::ConfirmationRecent(id), "one confirmation a day");
        assert!(db.write(|c| ctx.confirm(c, id, "link", now)).unwrap());
        assert!(!db.write(|c| ctx.confirm(c, id, "link", now)).unwrap(), "a second click changes nothing");
        assert!(db.write(|c| ctx.unsubscribe(c, id, "mail", true, now)).unwrap());
        assert!(!db.write(|c| ctx.unsubscribe(c, id, "mail", true, now)).unwrap());
        assert_eq!(outbox_kinds(&db), ["confirm", "welcome", "unsubscribed"]);
        let s = news::subscriber_by_id(db.conn(), id).unwrap().unwrap();
        assert_eq!((s.status.as_str(), s.consent_source.as_deref()), ("unsubscribed", Some("link")));
        // An import never brings them back; asking again themselves does (pending).
        let kept =
            db.write(|c| ctx.subscribe(c, &ann, None, Language::Dutch, "import", Some(("file", now)), now)).unwrap();
        assert_eq!(kept, Subscribed::Kept(id, "unsubscribed".into()));
        let back = db.write(|c| ctx.subscribe(c, &ann, None, Language::Dutch, "mail <z>", None, now)).unwrap();
        assert_eq!(back, Subscribed::ConfirmationSent(id));
        // Erased addresses are never mailed again.
        db.write(|c| news::erase(c, id, &email_hash(ann.as_str()), now)).unwrap();
        let gone = db.write(|c| ctx.subscribe(c, &ann, None, Language::Dutch, "mail", None, now)).unwrap();
        assert_eq!(gone, Subscribed::Suppressed);
    }

    #[test]
    fn a_scheduled_issue_without_a_coordinator_waits_for_approval_and_one_without_stories_is_skipped() {
        let (ctx, mut db, _d) = ctx("");
        let now = Utc::now();
        let slot = now - chrono::Duration::minutes(1);
        assert!(matches!(db.write(|c| ctx.make_issue(c, Some(slot), now)).unwrap(), MadeIssue::Skipped(_)));
        assert!(outbox_kinds(&db).is_empty(), "no coordinator to tell");
        assert!(matches!(db.write(|c| ctx.make_issue(c, Some(slot), now)).unwrap(), MadeIssue::Exists(_)));
        let amb = db.write(|c| news::upsert_ambassador(c, "Fatima", "ib", None, None, now)).unwrap();
        let story = db
            .write(|c| {
                news::insert_story(
                    c,
                    &news::NewStory {
                        title: "T",
                        ambassador_id: amb,
                        body_md: "x",
                        photo_url: None,
                        photo_alt: None,
                        source: "f",
                        message_id: None,
                        consent_source: Some("cli"),
                    },
                    now,
                )
            })
            .unwrap();
        db.write(|c| news::set_story_status(c, story, "approved", now)).unwrap();
        let later = now + chrono::Duration::minutes(1);
        let made = db.write(|c| ctx.make_issue(c, Some(later), later)).unwrap();
        let MadeIssue::Proof(id) = made else { panic!("{made:?}") };
        assert!(outbox_kinds(&db).is_empty(), "no proof mail without a coordinator");
        assert_eq!(news::issue(db.conn(), id).unwrap().unwrap().status, "proof");
        assert_eq!(db.write(|c| ctx.approve(c, id, "cli", later)).unwrap(), 0, "no subscribers yet");
        assert_eq!(news::story(db.conn(), story).unwrap().unwrap().status, "published");
    }
}
