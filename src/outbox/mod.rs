//! The outbox: the one way mail leaves. Rows in the store, delivered by lettre over
//! pooled SMTP connections; 4xx and connection errors are retried with exponential
//! back-off and jitter, 5xx is recorded as a permanent failure. The only module that sends.
//!
//! **When a row counts as sent.** SMTP has no exactly-once: a server that received the
//! final `.` delivers, whatever happens to us after. So the row's id is appended to the
//! [`journal`] from inside the message iterator that lettre drains *just before* it
//! writes the final `.` (see [`RecordBeforeEnd`]). After a crash, a row still `sending`
//! whose id is in the journal counts as sent; one that is not never reached its end
//! (the server discarded it) and is sent again. The server's answer to the `.` (250,
//! 4xx, 5xx) then settles the row in the store; a refused end is journalled too
//! (`-<id>`, synced) before that, so that a crash in between does not count it as sent.
//! The remaining window, between the append and the write of the terminator, can only
//! lose a mail, never send it twice: the side RFC 3834 practice prefers for auto-replies.
//!
//! **Outcomes are kept until committed.** A write of an outcome that fails (a busy
//! database after its timeout, a full disk) is tried again with back-off
//! ([`with_retries`]); when that fails too, the outcome is kept for the next pass, and
//! the journal is emptied only after a pass in which every outcome was committed, and
//! made durable ([`settle_leftovers`]). Until then its entry is the only proof that the
//! mail went out.
//!
//! The newsletter lanes send with [`wire`], a pipelining client of our own, under the
//! same rules.

pub mod compose;
pub mod journal;
mod net;
pub mod wire;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

use crate::config::{AuthMethod, Security, SmtpSettings};
use crate::domain::ids::OutboxId;
use crate::domain::time::Clock;
use crate::domain::{EmailAddress, redact_addresses};
use crate::oauth2::{AuthProblem, Side, Tokens};
use crate::store::{Db, Shared};
use journal::SentJournal;

/// Connections idle longer than this are not reused (servers drop idle clients).
pub(crate) const POOL_IDLE: Duration = Duration::from_secs(50);

type SmtpError = lettre::transport::smtp::Error;

/// The SMTP side: lettre connections, pooled.
pub struct Mailer {
    host: String,
    port: u16,
    timeout: Duration,
    security: Security,
    /// STARTTLS parameters (lettre upgrades the connection).
    tls: Option<TlsParameters>,
    /// Implicit TLS (SMTPS) configuration.
    wrapper: Option<Arc<rustls::ClientConfig>>,
    auth: SmtpAuth,
    hello: ClientId,
    pool_size: usize,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

/// An SMTP connection and, when it logged in with a token, until when it may be reused
/// (the token's renewal time: a server may end a session whose token expired).
struct Conn {
    smtp: AsyncSmtpConnection,
    token_until: Option<Instant>,
}

impl std::ops::Deref for Conn {
    type Target = AsyncSmtpConnection;
    fn deref(&self) -> &AsyncSmtpConnection {
        &self.smtp
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut AsyncSmtpConnection {
        &mut self.smtp
    }
}

impl Conn {
    fn reusable(&self) -> bool {
        !self.has_broken() && self.token_until.is_none_or(|t| Instant::now() < t)
    }
}

/// How the SMTP side logs in (`smtp.auth`).
enum SmtpAuth {
    /// No AUTH (a relay that trusts us by address).
    None,
    Password(Credentials),
    /// AUTH XOAUTH2 as `user`, with a token from `tokens` (given by [`Mailer::with_tokens`]).
    OAuth2 {
        user: String,
        tokens: Option<Tokens>,
    },
}

/// A step of making an SMTP connection, to say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectStep {
    /// TCP: the host or port does not answer.
    Reach,
    /// The greeting or the EHLO.
    Greeting,
    /// Implicit TLS or STARTTLS.
    Tls,
    /// AUTH.
    Login,
}

/// What [`Mailer::probe`] found.
#[derive(Debug, Clone)]
pub struct SmtpProbe {
    /// The name the server gave in its EHLO answer.
    pub server: String,
    /// Whether the session was encrypted (TLS or STARTTLS).
    pub encrypted: bool,
    /// Whether it logged in (AUTH); false when no login is configured.
    pub logged_in: bool,
}

/// How one delivery attempt ended.
#[derive(Debug)]
pub enum Outcome {
    Sent,
    /// 4xx, timeouts, connection errors before the end of the message: try again later.
    Transient(String),
    /// 5xx or a message we cannot send at all: stop and record.
    Permanent(String),
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone)]
pub struct DeliveryStats {
    pub sent: usize,
    pub deferred: usize,
    pub failed: usize,
    pub last_error: Option<String>,
}

/// What to record after a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Sent,
    /// Try again at this time.
    Retry(DateTime<Utc>, String),
    Failed(String),
}

/// When to retry and when to give up (from `[smtp] retry_base` and `max_attempts`).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_attempts: u32,
}

impl RetryPolicy {
    pub fn from_settings(s: &SmtpSettings) -> Self {
        Self { base: Duration::from_secs(s.retry_base), max_attempts: s.max_attempts }
    }
}

impl DeliveryStats {
    /// Turns the outcome of attempt number `attempts` into what to record (4xx: retry with
    /// back-off until `max_attempts`, then failed; 5xx: failed), counts it, and logs
    /// deferrals and failures. `what` and `id` name the row in the log.
    pub fn settle(
        &mut self,
        outcome: Outcome,
        attempts: u32,
        policy: RetryPolicy,
        what: &str,
        id: i64,
        now: DateTime<Utc>,
    ) -> Settled {
        match outcome {
            Outcome::Sent => {
                self.sent += 1;
                Settled::Sent
            }
            Outcome::Transient(e) if attempts < policy.max_attempts => {
                let at = now + chrono::Duration::from_std(backoff(policy.base, attempts)).unwrap_or_default();
                tracing::warn!(what, id, attempt = attempts, retry_at = %at, error = %e, "delivery deferred");
                self.deferred += 1;
                self.last_error = Some(e.clone());
                Settled::Retry(at, e)
            }
            Outcome::Transient(e) => self.failed(what, id, format!("gave up after {attempts} attempts: {e}")),
            Outcome::Permanent(e) => self.failed(what, id, e),
        }
    }

    /// Counts and logs a failure that will not be retried.
    pub fn failed(&mut self, what: &str, id: i64, e: String) -> Settled {
        tracing::error!(what, id, error = %e, "delivery failed");
        self.failed += 1;
        self.last_error = Some(e.clone());
        Settled::Failed(e)
    }

    pub(crate) fn add(&mut self, o: &DeliveryStats) {
        self.sent += o.sent;
        self.deferred += o.deferred;
        self.failed += o.failed;
        if o.last_error.is_some() {
            self.last_error.clone_from(&o.last_error);
        }
    }
}

/// The unwind that stops a message whose journal record failed.
struct JournalFailed;

/// Yields the message, then records the row in the journal when lettre asks for more,
/// which it does right before writing the terminating `.`.
struct RecordBeforeEnd<'a, F: FnOnce() -> anyhow::Result<()>> {
    data: Option<&'a [u8]>,
    commit: Option<F>,
    committed: &'a mut Option<anyhow::Result<()>>,
}

impl<'a, F: FnOnce() -> anyhow::Result<()>> Iterator for RecordBeforeEnd<'a, F> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if let Some(d) = self.data.take() {
            return Some(d);
        }
        // Inline, one write call: nothing may run between the record and the terminator.
        if let Some(commit) = self.commit.take() {
            let recorded = commit();
            let failed = recorded.is_err();
            *self.committed = Some(recorded);
            if failed {
                // Without its record, the end of the message must not go out: unwind out
                // of lettre before it writes the terminating `.` (the caller catches this
                // and drops the connection; the server discards the unfinished message).
                std::panic::resume_unwind(Box::new(JournalFailed));
            }
        }
        None
    }
}

impl Mailer {
    /// The SMTP command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(s: &SmtpSettings) -> anyhow::Result<Self> {
        let tls = match s.security {
            Security::None => None,
            Security::Starttls | Security::Tls => {
                let mut b = TlsParameters::builder(s.host.clone());
                if let Some(ca) = &s.ca_file {
                    for der in crate::tls::read_pem_certs(ca)? {
                        b = b.add_root_certificate(Certificate::from_der(der.to_vec()).context("smtp.ca_file")?);
                    }
                }
                Some(b.build_rustls().context("Failed to set up TLS for SMTP")?)
            }
        };
        let auth = match (s.auth, &s.username, &s.password) {
            (AuthMethod::Oauth2, Some(u), _) => SmtpAuth::OAuth2 { user: u.clone(), tokens: None },
            (AuthMethod::Oauth2, None, _) => anyhow::bail!("key `smtp.username`: expected the mailbox to send as"),
            (AuthMethod::Password, Some(u), Some(p)) => {
                SmtpAuth::Password(Credentials::new(u.clone(), p.expose_secret().to_string()))
            }
            _ => SmtpAuth::None,
        };
        let wrapper = match s.security {
            Security::Tls => Some(crate::tls::client_config(s.ca_file.as_deref())?),
            _ => None,
        };
        Ok(Self {
            host: s.host.clone(),
            port: s.port,
            timeout: Duration::from_secs(s.timeout),
            security: s.security,
            tls,
            wrapper,
            auth,
            hello: ClientId::default(),
            pool_size: s.pool_size as usize,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A new connection: TCP (no Nagle, see [`net`]), TLS (implicit, or STARTTLS which is
    /// then required), EHLO, AUTH.
    async fn connect(&self) -> Result<Conn, String> {
        self.connect_steps().await.map_err(|(_, e)| e)
    }

    /// [`Mailer::connect`], saying at which step it failed.
    async fn connect_steps(&self) -> Result<Conn, (ConnectStep, String)> {
        let smtp = |step| move |e: SmtpError| (step, error_text(&e));
        let io = |step| move |e: std::io::Error| (step, e.to_string());
        let stream = net::tcp(&self.host, self.port).await.map_err(io(ConnectStep::Reach))?;
        let mut conn = match &self.wrapper {
            Some(config) => {
                let stream = net::tls(stream, &self.host, config.clone()).await.map_err(io(ConnectStep::Tls))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                    .await
                    .map_err(smtp(ConnectStep::Greeting))?
            }
            None => AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                .await
                .map_err(smtp(ConnectStep::Greeting))?,
        };
        if let (Security::Starttls, Some(tls)) = (self.security, &self.tls) {
            conn.starttls(tls.clone(), &self.hello).await.map_err(smtp(ConnectStep::Tls))?;
        }
        let token_until = match &self.auth {
            SmtpAuth::None => None,
            SmtpAuth::Password(c) => {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c).await.map_err(|e| {
                    let said = error_text(&e);
                    (ConnectStep::Login, AuthProblem::password_refused(&said).map_or(said, |p| p.to_string()))
                })?;
                None
            }
            SmtpAuth::OAuth2 { user, tokens } => {
                let tokens = tokens
                    .as_ref()
                    .ok_or((ConnectStep::Login, "smtp.auth = \"oauth2\" but no token source was set up".to_string()))?;
                let token = tokens.bearer(Side::Smtp).await.map_err(|p| (ConnectStep::Login, p.to_string()))?;
                let login = Credentials::new(user.clone(), token.secret().to_string());
                if let Err(e) = conn.auth(&[Mechanism::Xoauth2], &login).await {
                    let p = AuthProblem::token_refused_by_server(&error_text(&e));
                    tokens.report(Side::Smtp, Err(&p)).await;
                    return Err((ConnectStep::Login, p.to_string()));
                }
                tokens.report(Side::Smtp, Ok(())).await;
                Some(token.renew_at)
            }
        };
        Ok(Conn { smtp: conn, token_until })
    }

    /// Logs in with tokens from `tokens` when `smtp.auth` is `oauth2`.
    pub fn with_tokens(mut self, tokens: Option<Tokens>) -> Self {
        if let (SmtpAuth::OAuth2 { tokens: slot, .. }, Some(t)) = (&mut self.auth, tokens) {
            *slot = Some(t);
        }
        self
    }

    /// Connects, greets (EHLO), secures and logs in as a delivery would, then says QUIT:
    /// no mail is sent (`outreach doctor`). Unbounded in time: the caller bounds it.
    pub async fn probe(&self) -> Result<SmtpProbe, (ConnectStep, String)> {
        let mut conn = self.connect_steps().await?;
        let probe = SmtpProbe {
            server: conn.smtp.server_info().name().to_string(),
            encrypted: conn.smtp.is_encrypted(),
            logged_in: !matches!(self.auth, SmtpAuth::None),
        };
        let _ = conn.smtp.quit().await;
        Ok(probe)
    }

    /// A pooled connection when a fresh one is idle, else a new one; `true` when reused.
    async fn checkout(&self) -> Result<(Conn, bool), String> {
        loop {
            let pooled = self.idle.lock().expect("pool lock").pop();
            match pooled {
                Some((c, since)) if since.elapsed() < POOL_IDLE && c.reusable() => return Ok((c, true)),
                Some((mut c, _)) => c.abort().await,
                None => return Ok((self.connect().await?, false)),
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        if !conn.reusable() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.pool_size {
            idle.push((conn, Instant::now()));
        }
    }

    /// After an error reply the session goes on (RSET) unless it broke.
    async fn release_after_error(&self, mut conn: Conn, e: &SmtpError) {
        if (e.is_permanent() || e.is_transient()) && conn.command(Rset).await.is_ok() {
            self.checkin(conn);
        } else {
            conn.abort().await;
        }
    }

    /// One SMTP transaction whose end is recorded in `journal` under `id` (see the module
    /// doc), bounded in time: lettre has no per-command timeout on a custom transport.
    /// Timed out after the end of the message went out: counted as sent.
    pub async fn send_recorded(
        &self,
        journal: &SentJournal,
        id: i64,
        envelope_from: &str,
        rcpt: &str,
        raw: &[u8],
    ) -> Outcome {
        self.send_recorded_cc(journal, id, envelope_from, rcpt, &[], raw).await
    }

    /// [`Mailer::send_recorded`] to further recipients too (`cc`): the message goes out
    /// once with every recipient the server accepts; one it refuses for good is left out
    /// (and logged by domain), the first recipient decides the outcome.
    pub async fn send_recorded_cc(
        &self,
        journal: &SentJournal,
        id: i64,
        envelope_from: &str,
        rcpt: &str,
        cc: &[String],
        raw: &[u8],
    ) -> Outcome {
        let recorded = std::sync::atomic::AtomicBool::new(false);
        let record = || {
            recorded.store(true, std::sync::atomic::Ordering::SeqCst);
            journal.record(id)
        };
        let limit = self.timeout * 4;
        let outcome = match tokio::time::timeout(limit, self.send_raw_cc(envelope_from, rcpt, cc, raw, record)).await {
            Ok(outcome) => outcome,
            Err(_) if recorded.load(std::sync::atomic::Ordering::SeqCst) => Outcome::Sent,
            Err(_) => Outcome::Transient(format!("SMTP transaction timed out after {} s", limit.as_secs())),
        };
        // Recorded, then refused at its end (or the record itself failed): not delivered.
        // Said in the journal before the outcome is committed, so that a crash in between
        // does not count it as sent.
        if recorded.load(std::sync::atomic::Ordering::SeqCst)
            && !matches!(outcome, Outcome::Sent)
            && let Err(e) = journal.refused(id)
        {
            tracing::error!(error = %format!("{e:#}"), "the sent journal could not record a refusal");
        }
        outcome
    }

    /// One SMTP transaction: `envelope_from` (empty: the null sender) to `rcpt`.
    pub async fn send_raw(
        &self,
        envelope_from: &str,
        rcpt: &str,
        raw: &[u8],
        record_end: impl FnOnce() -> anyhow::Result<()>,
    ) -> Outcome {
        self.send_raw_cc(envelope_from, rcpt, &[], raw, record_end).await
    }

    async fn send_raw_cc(
        &self,
        envelope_from: &str,
        rcpt: &str,
        cc: &[String],
        raw: &[u8],
        record_end: impl FnOnce() -> anyhow::Result<()>,
    ) -> Outcome {
        let extra: Vec<EmailAddress> = cc.iter().filter_map(|a| EmailAddress::parse(a).ok()).collect();
        let (from, rcpt) = match envelope_addresses(envelope_from, rcpt) {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let mut commit = Some(record_end);
        // A pooled connection that the server closed meanwhile fails at MAIL FROM: one
        // more try on a new connection, before any of the message was sent.
        for last_try in [false, true] {
            let (mut conn, reused) = match self.checkout().await {
                Ok(c) => c,
                Err(e) => {
                    return Outcome::Transient(format!("cannot connect to {}:{}: {e}", self.host, self.port));
                }
            };
            let mut wire = match WireEnvelope::new(from.as_ref(), &rcpt, raw, conn.server_info()) {
                Ok(w) => w,
                Err(why) => {
                    self.checkin(conn);
                    return Outcome::Permanent(why);
                }
            };
            // Further recipients go along as the first one does; one that needs SMTPUTF8
            // where the server has none is left out.
            let utf8 = conn.server_info().supports_feature(Extension::SmtpUtfEight);
            let extra: Vec<lettre::Address> = extra
                .iter()
                .filter(|a| {
                    let ok = utf8 || !a.needs_smtputf8();
                    if !ok {
                        tracing::warn!(rcpt_domain = %a.domain(), "a further recipient needs SMTPUTF8, which the server lacks; sent without it");
                    }
                    ok
                })
                .map(EmailAddress::to_lettre)
                .collect();
            if extra.iter().any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii())
                && !wire.params.contains(&MailParameter::SmtpUtfEight)
            {
                wire.params.push(MailParameter::SmtpUtfEight);
            }
            let envelope = async {
                conn.command(Mail::new(wire.from, wire.params)).await?;
                conn.command(Rcpt::new(wire.rcpt, vec![])).await?;
                for a in &extra {
                    match conn.command(Rcpt::new(a.clone(), vec![])).await {
                        Ok(_) => {}
                        Err(e) if e.is_permanent() => {
                            tracing::warn!(rcpt_domain = %a.domain(), error = %error_text(&e), "a further recipient was refused; sent without it");
                        }
                        Err(e) => return Err(e),
                    }
                }
                conn.command(Data).await
            }
            .await;
            if let Err(e) = envelope {
                if reused && !last_try && !e.is_permanent() && !e.is_transient() {
                    conn.abort().await;
                    continue;
                }
                let outcome = classify(&e);
                self.release_after_error(conn, &e).await;
                return outcome;
            }
            tracing::debug!(reused, "envelope accepted; sending the message");
            let mut committed = None;
            let iter = RecordBeforeEnd { data: Some(raw), commit: commit.take(), committed: &mut committed };
            let result = {
                use futures_util::FutureExt;
                std::panic::AssertUnwindSafe(conn.message_iter(iter)).catch_unwind().await
            };
            let result = match result {
                Ok(r) => r,
                Err(payload) if payload.is::<JournalFailed>() => {
                    drop(conn);
                    let why = committed.and_then(Result::err).map(|e| format!("{e:#}")).unwrap_or_default();
                    tracing::error!(error = %why, "the sent journal could not record the end of a message; not sent");
                    return Outcome::Transient(format!("not sent: the sent journal could not be written ({why})"));
                }
                Err(payload) => std::panic::resume_unwind(payload),
            };
            tracing::debug!(ok = result.is_ok(), committed = committed.is_some(), "message answered");
            return match result {
                Ok(_) => {
                    self.checkin(conn);
                    Outcome::Sent
                }
                Err(e) if e.is_permanent() || e.is_transient() => {
                    let outcome = classify(&e);
                    self.release_after_error(conn, &e).await;
                    outcome
                }
                // The connection broke before the end of the message: nothing was delivered.
                Err(e) if committed.is_none() => {
                    conn.abort().await;
                    Outcome::Transient(format!("connection lost while sending: {}", error_text(&e)))
                }
                // It broke after the end: the server most likely delivered; never send twice.
                Err(e) => {
                    conn.abort().await;
                    tracing::warn!(error = %error_text(&e), "connection lost after the end of the message; counted as sent");
                    Outcome::Sent
                }
            };
        }
        Outcome::Transient("no usable SMTP connection".into())
    }
}

/// The envelope's addresses, parsed (`envelope_from` empty: the null sender); a bad one
/// is a permanent failure.
fn envelope_addresses(envelope_from: &str, rcpt: &str) -> Result<(Option<EmailAddress>, EmailAddress), Outcome> {
    let rcpt =
        EmailAddress::parse(rcpt).map_err(|e| Outcome::Permanent(redact_addresses(&format!("bad recipient: {e}"))))?;
    let from = match envelope_from {
        "" => None,
        f => Some(
            EmailAddress::parse(f)
                .map_err(|e| Outcome::Permanent(redact_addresses(&format!("bad envelope sender: {e}"))))?,
        ),
    };
    Ok((from, rcpt))
}

/// Why a mail to an internationalised local part is not sent (shown to the coordinator).
pub const NEEDS_SMTPUTF8: &str = "the address has non-ASCII characters before the @ \
     (an internationalised address, RFC 6531) and our mail server does not offer SMTPUTF8, \
     so it was not sent";

/// One SMTP transaction's envelope as it goes on the wire to a server whose EHLO
/// answer was `server`: the addresses' domains as A-labels (valid everywhere), SMTPUTF8
/// when an address's local part is not ASCII (RFC 6531), 8BITMIME for 8-bit content.
#[derive(Debug)]
pub struct WireEnvelope {
    pub from: Option<lettre::Address>,
    pub rcpt: lettre::Address,
    pub params: Vec<MailParameter>,
}

impl WireEnvelope {
    /// `Err` (why, for the record) when an address needs SMTPUTF8 and the server does not
    /// offer it: such a mail is never sent as raw UTF-8, which servers refuse (501) or
    /// mangle.
    pub fn new(
        from: Option<&EmailAddress>,
        rcpt: &EmailAddress,
        raw: &[u8],
        server: &lettre::transport::smtp::extension::ServerInfo,
    ) -> Result<Self, String> {
        let mut params = Vec::new();
        if from.is_some_and(EmailAddress::needs_smtputf8) || rcpt.needs_smtputf8() {
            if !server.supports_feature(Extension::SmtpUtfEight) {
                return Err(NEEDS_SMTPUTF8.to_string());
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() && server.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Ok(Self { from: from.map(EmailAddress::to_lettre), rcpt: rcpt.to_lettre(), params })
    }
}

fn classify(e: &SmtpError) -> Outcome {
    if e.is_permanent() {
        Outcome::Permanent(format!("SMTP refused permanently: {}", error_text(e)))
    } else {
        Outcome::Transient(format!("SMTP temporary failure: {}", error_text(e)))
    }
}

/// The text of an SMTP error on one line, with any address in it (servers quote the
/// recipient: `550 5.1.1 <ann@example.nl>: ...`) cut to its domain, so it can be logged,
/// stored and shown.
fn error_text(e: &SmtpError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let inner_text = inner.to_string();
        // lettre's own text already holds the server's answer that its source repeats.
        if !s.contains(&inner_text) {
            s.push_str(": ");
            s.push_str(&inner_text);
        }
        src = inner.source();
    }
    redact_addresses(&s.replace(['\r', '\n'], " "))
}

/// When to try again after `attempts` failed attempts: `base * 2^(attempts-1)`, with
/// ±20 % jitter, capped at one hour.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let capped = exp.min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.8..1.2);
    capped.mul_f64(jitter)
}

/// Settles rows in flight that no lane holds: at start-up (a crash), and after each pass
/// (a lane that panicked). `recover` moves the rows still `sending` (those whose end the
/// journal recorded count as sent, the others are queued again); then, once every
/// outcome is on disk, the journal is emptied. Only when no lane runs: a lane's own rows
/// are `sending` too. After a pass that journalled nothing, nothing is done unless
/// `at_start`. Returns `(sent, requeued)`.
pub async fn settle_leftovers(
    db: &Shared,
    journal: &SentJournal,
    at_start: bool,
    now: DateTime<Utc>,
    recover: impl FnOnce(&mut Db, &std::collections::HashSet<i64>, DateTime<Utc>) -> anyhow::Result<(usize, usize)>
    + Send
    + 'static,
) -> anyhow::Result<(usize, usize)> {
    let dirty = journal.is_dirty();
    if !dirty && !at_start {
        return Ok((0, 0));
    }
    let ended = journal.ids()?;
    let settled = db
        .run(move |db| {
            let settled = recover(db, &ended, now)?;
            if dirty {
                db.make_durable(now)?;
            }
            Ok(settled)
        })
        .await?;
    if dirty {
        journal.clear()?;
    }
    Ok(settled)
}

/// Tries of a store write that records outcomes before the caller gives up for now.
const WRITE_TRIES: u32 = 5;

/// Runs a store write (on the calling thread, which it may put to sleep), trying again
/// with back-off (0.1 s doubling, 1.5 s in all) when it fails: a busy database after its
/// timeout, a full disk. The caller keeps what it wanted to write when all tries fail.
pub fn with_retries<T>(what: &str, mut write: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut delay = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match write() {
            Ok(v) => return Ok(v),
            Err(e) if tries < WRITE_TRIES => {
                tracing::warn!(what, tries, error = %format!("{e:#}"), "a store write failed; trying again");
                std::thread::sleep(delay);
                delay *= 2;
                tries += 1;
            }
            Err(e) => return Err(e.context(format!("Failed to {what} ({tries} tries)"))),
        }
    }
}

/// The outbox: its store connection, the SMTP side and the sent journal.
pub struct Outbox {
    db: Shared,
    mailer: Mailer,
    journal: Arc<SentJournal>,
    settings: SmtpSettings,
    clock: Clock,
    /// Outcomes whose write failed: kept until they are committed (see `deliver_due`).
    unrecorded: Mutex<Vec<(OutboxId, Settled)>>,
}

impl Outbox {
    /// Opens the outbox on the database at `db_path` and settles what a crash left in flight.
    /// With `smtp.auth = "oauth2"` it logs in with tokens from `tokens`.
    pub async fn open(
        db_path: &std::path::Path,
        settings: SmtpSettings,
        clock: Clock,
        tokens: Option<Tokens>,
    ) -> anyhow::Result<Self> {
        let db = Shared::new(Db::open(db_path)?.without_fsync_per_commit()?);
        let journal = Arc::new(SentJournal::open(db_path)?);
        let mailer = Mailer::new(&settings)?.with_tokens(tokens);
        let (sent, requeued) =
            settle_leftovers(&db, &journal, true, clock.now(), |db, ended, now| db.recover_in_flight(ended, now))
                .await?;
        if sent + requeued > 0 {
            tracing::warn!(sent, requeued, "settled mail that was being sent during a crash");
        }
        Ok(Self { db, mailer, journal, settings, clock, unrecorded: Mutex::new(Vec::new()) })
    }

    /// Commits the outcomes whose write failed before; they stay kept when it fails again.
    async fn record_unrecorded(&self) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut *self.unrecorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if pending.is_empty() {
            return Ok(());
        }
        let kept = pending.clone();
        let now = self.clock.now();
        let written = self
            .db
            .run(move |db| {
                with_retries("record the outcome of mail sent earlier", || {
                    for (id, settled) in &pending {
                        record_outcome(db, *id, settled, now)?;
                    }
                    Ok(())
                })
            })
            .await;
        if written.is_err() {
            self.unrecorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(kept);
        }
        written
    }

    /// Sends every row that is due now, with up to `pool_size` transactions at a time,
    /// until none is left. Each row is recorded as soon as its own transaction ends.
    pub async fn deliver_due(&self) -> anyhow::Result<DeliveryStats> {
        self.record_unrecorded().await?;
        let lanes = (0..self.settings.pool_size.max(1)).map(|_| self.deliver_lane());
        let mut stats = DeliveryStats::default();
        for lane in futures_util::future::join_all(lanes).await {
            stats.add(&lane?);
        }
        // No lane runs and every outcome is committed: once they are on disk, the
        // journal's proof is no longer needed.
        settle_leftovers(&self.db, &self.journal, false, self.clock.now(), |db, ended, now| {
            db.recover_in_flight(ended, now)
        })
        .await?;
        if stats.sent + stats.deferred + stats.failed > 0 {
            let last = stats.last_error.clone();
            let now = self.clock.now();
            self.db
                .run(move |db| {
                    match &last {
                        Some(e) => {
                            db.set_state("smtp", &format!("error: {e}"), now)?;
                            db.set_state("last_error", &format!("smtp: {e}"), now)?;
                        }
                        None => db.set_state("smtp", "ok", now)?,
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(stats)
    }

    /// One lane of [`Outbox::deliver_due`]: claim a row, send it, record the outcome, repeat.
    async fn deliver_lane(&self) -> anyhow::Result<DeliveryStats> {
        let mut stats = DeliveryStats::default();
        let policy = RetryPolicy::from_settings(&self.settings);
        loop {
            let now = self.clock.now();
            let Some(row) = self.db.run(move |db| db.claim_due(1, now)).await?.pop() else {
                return Ok(stats);
            };
            let id: OutboxId = row.id;
            tracing::debug!(id = %id, attempt = row.attempts, "claimed");
            let outcome = self
                .mailer
                .send_recorded_cc(&self.journal, id.get(), &row.envelope_from, &row.rcpt, &row.cc, &row.raw)
                .await;
            let now = self.clock.now();
            let settled = stats.settle(outcome, row.attempts, policy, row.kind.as_str(), id.get(), now);
            if settled == Settled::Sent {
                let domain = row.rcpt.rsplit_once('@').map_or("", |(_, d)| d);
                tracing::info!(id = %id, kind = %row.kind, rcpt_domain = %domain, "sent");
            }
            // Kept until committed: without it, the row would stay `sending` and only the
            // journal would know that it went out.
            let kept = settled.clone();
            let written = self
                .db
                .run(move |db| with_retries("record the outcome of a mail", || record_outcome(db, id, &settled, now)))
                .await;
            if let Err(e) = written {
                self.unrecorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((id, kept));
                return Err(e);
            }
        }
    }

    /// The daemon's outbox worker: see [`run_worker`].
    pub async fn run_worker(self, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        run_worker(&self, "outbox", wake, shutdown).await
    }
}

impl Worker for Outbox {
    fn pass(&self) -> impl Future<Output = anyhow::Result<DeliveryStats>> + Send {
        self.deliver_due()
    }
    async fn next_due(&self) -> Option<DateTime<Utc>> {
        self.db.run(|db| db.next_due()).await.ok().flatten()
    }
    fn clock(&self) -> &Clock {
        &self.clock
    }
}

fn record_outcome(db: &Db, id: OutboxId, settled: &Settled, now: DateTime<Utc>) -> anyhow::Result<()> {
    match settled {
        Settled::Sent => db.mark_sent(id, now),
        Settled::Retry(at, e) => db.mark_retry(id, *at, e),
        Settled::Failed(e) => db.mark_failed(id, e),
    }
}

/// Something that delivers in passes: the outbox and the newsletter sender.
pub trait Worker: Sync {
    /// Delivers everything due now.
    fn pass(&self) -> impl Future<Output = anyhow::Result<DeliveryStats>> + Send;
    /// When the next retry is due, if any.
    fn next_due(&self) -> impl Future<Output = Option<DateTime<Utc>>> + Send;
    /// The clock its retry times are read on.
    fn clock(&self) -> &Clock;
}

/// A daemon worker: runs a pass, then sleeps until woken, until the next retry is due,
/// or 2 s at most (work queued by another process, the CLI or the web page, is picked
/// up then), until shutdown. A pass in progress finishes first. A pass that fails (a
/// full disk: nothing can be claimed) is tried again after 2 s, doubling up to 30 s,
/// so a lasting fault does not spin or flood the log; new work wakes it at once.
pub async fn run_worker(
    worker: &impl Worker,
    what: &'static str,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut failing = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match worker.pass().await {
            Ok(s) => {
                failing = Duration::ZERO;
                if s.sent + s.deferred + s.failed > 0 {
                    tracing::info!(what, sent = s.sent, deferred = s.deferred, failed = s.failed, "delivery pass");
                }
            }
            Err(e) => {
                failing = (failing * 2).clamp(Duration::from_secs(2), Duration::from_secs(30));
                tracing::error!(what, error = %format!("{e:#}"), retry_in = ?failing, "delivery pass failed");
            }
        }
        let wait = if failing > Duration::ZERO {
            failing
        } else {
            worker.next_due().await.map_or(Duration::from_secs(2), |t| {
                (t - worker.clock().now()).to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(2))
            })
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ehlo: &str) -> lettre::transport::smtp::extension::ServerInfo {
        let response: lettre::transport::smtp::response::Response = ehlo.parse().unwrap();
        lettre::transport::smtp::extension::ServerInfo::from_response(&response).unwrap()
    }

    #[test]
    fn an_internationalised_address_goes_on_the_wire_as_the_server_allows() {
        let plain = server("250-mx.example\r\n250-8BITMIME\r\n250 PIPELINING\r\n");
        let utf8 = server("250-mx.example\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
        let a = |s: &str| EmailAddress::parse(s).unwrap();
        let from = a("contact@example.org");
        // An ASCII local part at an IDN domain: A-labels, no SMTPUTF8, to any server.
        let w = WireEnvelope::new(Some(&from), &a("Info@Bücher.example"), b"x", &plain).unwrap();
        assert_eq!(w.rcpt.to_string(), "info@xn--bcher-kva.example");
        assert!(w.params.is_empty(), "{:?}", w.params);
        // A non-ASCII local part: SMTPUTF8 when offered (and 8BITMIME for 8-bit content)...
        let jd = a("jdöe@mächine.example");
        let w = WireEnvelope::new(None, &jd, "To: jdöe".as_bytes(), &utf8).unwrap();
        assert_eq!(w.rcpt.to_string(), "jdöe@xn--mchine-bua.example");
        assert_eq!(w.params, vec![MailParameter::SmtpUtfEight, MailParameter::Body(MailBodyParameter::EightBitMime)]);
        // ...and never sent otherwise, with a reason a person understands.
        let e = WireEnvelope::new(None, &jd, b"x", &plain).unwrap_err();
        assert!(e.contains("does not offer SMTPUTF8"), "{e}");
        // The same for the envelope sender.
        assert!(WireEnvelope::new(Some(&jd), &from, b"x", &plain).is_err());
    }

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        let base = Duration::from_secs(30);
        let first = backoff(base, 1);
        assert!(first >= Duration::from_secs(24) && first <= Duration::from_secs(36), "{first:?}");
        let third = backoff(base, 3);
        assert!(third >= Duration::from_secs(96) && third <= Duration::from_secs(144), "{third:?}");
        assert!(backoff(base, 30) <= Duration::from_secs(4320));
    }
}
