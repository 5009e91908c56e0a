//! The outbox: the one way mail leaves. Rows in the store, delivered by lettre over a
//! pooled SMTP connection; 4xx and connection errors are retried with exponential back-off
//! and jitter, 5xx is recorded as a permanent failure. The only module that sends.

pub mod compose;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use rand::Rng;
use secrecy::ExposeSecret;
use tokio::sync::{Notify, watch};

use crate::config::{Security, SmtpSettings};
use crate::domain::EmailAddress;
use crate::store::{Db, OutboxRow};

/// The SMTP side: a pooled lettre transport.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// How one delivery attempt ended.
#[derive(Debug)]
pub enum Outcome {
    Sent,
    /// 4xx, timeouts, connection errors: try again later.
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

impl Mailer {
    pub fn new(s: &SmtpSettings) -> anyhow::Result<Self> {
        let tls_params = || -> anyhow::Result<TlsParameters> {
            let mut b = TlsParameters::builder(s.host.clone());
            if let Some(ca) = &s.ca_file {
                for der in crate::tls::read_pem_certs(ca)? {
                    b = b.add_root_certificate(Certificate::from_der(der.to_vec()).context("smtp.ca_file")?);
                }
            }
            b.build_rustls().context("Failed to set up TLS for SMTP")
        };
        let tls = match s.security {
            Security::None => Tls::None,
            Security::Starttls => Tls::Required(tls_params()?),
            Security::Tls => Tls::Wrapper(tls_params()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
            .port(s.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(s.timeout)))
            .pool_config(PoolConfig::new().max_size(s.pool_size).idle_timeout(Duration::from_secs(50)));
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(user.clone(), pass.expose_secret().to_string()));
        }
        Ok(Self { transport: b.build() })
    }

    /// One SMTP transaction for one outbox row.
    #[tracing::instrument(skip_all, fields(id = row.id, kind = %row.kind, message_id = %row.message_id), err(level = "debug"))]
    pub async fn send(&self, row: &OutboxRow) -> Result<(), String> {
        match self.attempt(row).await {
            Outcome::Sent => Ok(()),
            Outcome::Transient(e) | Outcome::Permanent(e) => Err(e),
        }
    }

    async fn attempt(&self, row: &OutboxRow) -> Outcome {
        let rcpt = match EmailAddress::parse(&row.rcpt) {
            Ok(a) => a.to_lettre(),
            Err(e) => return Outcome::Permanent(format!("bad recipient: {e}")),
        };
        let from = if row.envelope_from.is_empty() {
            None
        } else {
            match EmailAddress::parse(&row.envelope_from) {
                Ok(a) => Some(a.to_lettre()),
                Err(e) => return Outcome::Permanent(format!("bad envelope sender: {e}")),
            }
        };
        let envelope = match Envelope::new(from, vec![rcpt]) {
            Ok(e) => e,
            Err(e) => return Outcome::Permanent(format!("bad envelope: {e}")),
        };
        match self.transport.send_raw(&envelope, &row.raw).await {
            Ok(_) => Outcome::Sent,
            Err(e) if e.is_permanent() => Outcome::Permanent(format!("SMTP refused permanently: {}", error_text(&e))),
            Err(e) => Outcome::Transient(format!("SMTP temporary failure: {}", error_text(&e))),
        }
    }
}

fn error_text(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.replace(['\r', '\n'], " ")
}

/// When to try again after `attempts` failed attempts: `base * 2^(attempts-1)`, with
/// ±20 % jitter, capped at one hour.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let capped = exp.min(Duration::from_secs(3600));
    let jitter = rand::rng().random_range(0.8..1.2);
    capped.mul_f64(jitter)
}

/// The outbox store handle shared by the worker's blocking calls.
pub type SharedDb = Arc<Mutex<Db>>;

async fn blocking<T: Send + 'static>(
    db: &SharedDb,
    f: impl FnOnce(&mut Db) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = db.lock().map_err(|_| anyhow::anyhow!("store lock poisoned"))?;
        f(&mut guard)
    })
    .await
    .context("store task panicked")?
}

/// Sends every row that is due now, `pool_size` at a time, until none is left.
pub async fn deliver_due(db: &SharedDb, mailer: &Mailer, s: &SmtpSettings) -> anyhow::Result<DeliveryStats> {
    let mut stats = DeliveryStats::default();
    let (base, max_attempts, batch) = (Duration::from_secs(s.retry_base), s.max_attempts, s.pool_size);
    loop {
        let rows = blocking(db, move |db| db.claim_due(batch, Utc::now())).await?;
        if rows.is_empty() {
            break;
        }
        let attempts = rows.iter().map(|row| async move { (row, mailer.attempt(row).await) });
        let results = futures_util::future::join_all(attempts).await;
        let now = Utc::now();
        let mut updates = Vec::with_capacity(results.len());
        for (row, outcome) in results {
            let domain = row.rcpt.rsplit_once('@').map_or("", |(_, d)| d).to_string();
            match outcome {
                Outcome::Sent => {
                    tracing::info!(id = row.id, kind = %row.kind, rcpt_domain = %domain, "sent");
                    stats.sent += 1;
                    updates.push(Update::Sent(row.id));
                }
                Outcome::Transient(e) if row.attempts < max_attempts => {
                    let at = now + chrono::Duration::from_std(backoff(base, row.attempts)).unwrap_or_default();
                    tracing::warn!(id = row.id, rcpt_domain = %domain, attempt = row.attempts, retry_at = %at, error = %e, "delivery deferred");
                    stats.deferred += 1;
                    stats.last_error = Some(e.clone());
                    updates.push(Update::Retry(row.id, at, e));
                }
                Outcome::Transient(e) => {
                    let e = format!("gave up after {} attempts: {e}", row.attempts);
                    tracing::error!(id = row.id, rcpt_domain = %domain, error = %e, "delivery failed");
                    stats.failed += 1;
                    stats.last_error = Some(e.clone());
                    updates.push(Update::Failed(row.id, e));
                }
                Outcome::Permanent(e) => {
                    tracing::error!(id = row.id, rcpt_domain = %domain, error = %e, "delivery failed permanently");
                    stats.failed += 1;
                    stats.last_error = Some(e.clone());
                    updates.push(Update::Failed(row.id, e));
                }
            }
        }
        blocking(db, move |db| {
            for u in updates {
                match u {
                    Update::Sent(id) => db.mark_sent(id, now)?,
                    Update::Retry(id, at, e) => db.mark_retry(id, at, &e)?,
                    Update::Failed(id, e) => db.mark_failed(id, &e)?,
                }
            }
            Ok(())
        })
        .await?;
    }
    let state = match &stats.last_error {
        Some(e) => format!("error: {e}"),
        None => "ok".to_string(),
    };
    if stats.sent + stats.deferred + stats.failed > 0 {
        blocking(db, move |db| db.set_state("smtp", &state)).await?;
        if let Some(e) = stats.last_error.clone() {
            blocking(db, move |db| db.set_state("last_error", &format!("smtp: {e}"))).await?;
        }
    }
    Ok(stats)
}

enum Update {
    Sent(i64),
    Retry(i64, DateTime<Utc>, String),
    Failed(i64, String),
}

/// The daemon's outbox worker: delivers what is due, then sleeps until woken by new mail
/// in the queue, the next retry time, or shutdown. In-flight sends finish before it stops.
pub async fn run_worker(
    db: SharedDb,
    mailer: Mailer,
    settings: Arc<crate::config::Settings>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let requeued = blocking(&db, |db| db.requeue_in_flight()).await?;
    if requeued > 0 {
        tracing::warn!(requeued, "mail that was being sent during a crash is queued again");
    }
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if let Err(e) = deliver_due(&db, &mailer, &settings.smtp).await {
            tracing::error!(error = %format!("{e:#}"), "outbox pass failed");
        }
        let next = blocking(&db, |db| db.next_due()).await.ok().flatten();
        let wait = next.map_or(Duration::from_secs(60), |t| {
            (t - Utc::now()).to_std().unwrap_or(Duration::ZERO).min(Duration::from_secs(60))
        });
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
