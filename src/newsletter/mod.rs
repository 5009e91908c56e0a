//! Subscribers, ambassador stories and newsletter issues.
//!
//! - [`Ctx`] holds what every part needs (settings, templates, the token signer, the
//!   clock, the OAuth2 tokens) and the links and notices they share.
//! - [`subscribers`]: the lifecycle `pending -> active -> unsubscribed | bounced` with
//!   the mails that go with it (confirmation, welcome, unsubscribed).
//! - [`issues`]: the life of an issue `proof -> approved -> sending -> sent` (or
//!   `cancelled`, `dropped`, `skipped`); [`stories`]: adding and approving stories.
//! - [`render`] turns an issue into HTML and text; [`send`] delivers it, one row per
//!   (issue, subscriber); [`schedule`] makes issues on the configured cron and runs the
//!   housekeeping; [`bounce`] reads DSNs; [`tokens`] signs the links in our mails.
//! - [`person`]: everything stored about one person, shown or erased on request.
//!
//! Every function that changes the store takes the caller's [`Store`], so the inbox can,
//! for example, unsubscribe someone in the same transaction that files their mail.

pub mod bounce;
pub mod csv_import;
pub mod issues;
pub mod person;
pub mod render;
pub mod schedule;
pub mod send;
pub mod stories;
pub mod subscribers;
pub mod tokens;

use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::domain::EmailAddress;
use crate::domain::ids::{IssueId, SubscriberId};
use crate::domain::state::OutboxKind;
use crate::domain::time::Clock;
use crate::oauth2::Tokens;
use crate::outbox::compose;
use crate::store::subscribers::Subscriber;
use crate::store::{Db, NewOutgoing, Store};
use crate::templates::Templates;
use render::Renderer;
use tokens::{Purpose, Signer};

pub use issues::MadeIssue;
pub use subscribers::{Subscribed, SubscriberMail, email_hash};

/// What the newsletter parts share. Cheap to clone.
#[derive(Clone)]
pub struct Ctx {
    pub settings: Arc<Settings>,
    pub templates: Arc<Templates>,
    pub renderer: Arc<Renderer>,
    pub signer: Signer,
    pub from: Mailbox,
    pub clock: Clock,
    /// OAuth2 tokens, when IMAP or SMTP logs in with them: one cache for the process.
    pub tokens: Option<Tokens>,
}

impl Ctx {
    /// Builds the context; the token secret comes from the config, or is generated once
    /// and kept in the database.
    pub fn new(settings: Arc<Settings>, templates: Arc<Templates>, db: &mut Db, clock: Clock) -> anyhow::Result<Self> {
        let secret = match &settings.secret {
            Some(s) => s.expose_secret().as_bytes().to_vec(),
            None => {
                let s = db.write(|st| st.secret("token", tokens::new_nonce, clock.now()))?;
                s.into_bytes()
            }
        };
        let renderer = Arc::new(Renderer::new(templates.clone()));
        let from = settings.from_mailbox()?;
        let tokens = Tokens::for_settings(&settings, clock.clone())?;
        Ok(Self { settings, templates, renderer, signer: Signer::new(&secret), from, clock, tokens })
    }

    pub fn base_url(&self) -> &str {
        self.settings.base_url()
    }

    pub fn confirm_url(&self, s: &Subscriber, now: DateTime<Utc>) -> String {
        format!("{}/confirm/{}", self.base_url(), self.signer.token(Purpose::Confirm, s.id, &s.token_nonce, now))
    }

    pub fn unsubscribe_url(&self, id: SubscriberId, nonce: &str, now: DateTime<Utc>) -> String {
        format!("{}/unsubscribe/{}", self.base_url(), self.signer.token(Purpose::Unsubscribe, id, nonce, now))
    }

    pub fn archive_url(&self, issue: Option<IssueId>) -> String {
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
        st: Store<'_>,
        token: &str,
        purpose: Purpose,
        valid_hours: Option<u32>,
    ) -> anyhow::Result<Result<Subscriber, tokens::TokenError>> {
        let id = match Signer::claimed_id(token, purpose) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let sub = st.subscriber(id)?;
        let nonce = sub.as_ref().map(|s| s.token_nonce.as_str());
        Ok(self
            .signer
            .verify(token, purpose, nonce, valid_hours, self.clock.now())
            .map(|_| sub.expect("verified implies known")))
    }

    /// Queues a short notice for the coordinator (when one is configured).
    pub fn notify_coordinator(
        &self,
        st: Store<'_>,
        kind: OutboxKind,
        subject: &str,
        body: String,
        issue_id: Option<IssueId>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(to) = self.coordinator() else {
            tracing::warn!(%kind, "no coordinator.address configured; notice not sent");
            return Ok(());
        };
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::notice(&self.from, &to, subject, &message_id, body, SystemTime::from(now))?;
        let mut mail = NewOutgoing::new(kind, message_id, self.from.email.to_string(), to.to_string(), raw);
        mail.issue_id = issue_id;
        st.enqueue(&mail, now)?;
        Ok(())
    }

    pub fn coordinator(&self) -> Option<EmailAddress> {
        self.settings.coordinator.address.as_deref().and_then(|a| EmailAddress::parse(a).ok())
    }
}
