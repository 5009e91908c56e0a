//! Delivers newsletter issues: one row per (issue, subscriber), claimed (`sending`,
//! committed) before any network I/O, rendered at send time from the issue's
//! [`Skeleton`], sent over pooled SMTP connections with a rate limit and a fixed number
//! of lanes, and settled per row: `sent`, `retry` (4xx, with back-off), `failed` (5xx or
//! too many attempts), `skipped` (unsubscribed meanwhile).
//!
//! Crash safety is the outbox's: each delivery's id is appended to a journal
//! (`<db>.newsletter-journal`) right before the end of its message goes out, so after
//! a crash a `sending` row counts as sent exactly when its end was written. Rows claimed
//! but not started are simply sent again: duplicates are bounded by the lanes, and in
//! practice none occur (see docs/BENCHMARKS.md).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::message::{Body, Mailbox, Message, MultiPart};

use super::Ctx;
use super::render::Skeleton;
use crate::domain::ids::{DeliveryId, IssueId};
use crate::domain::{EmailAddress, Language};
use crate::outbox::compose::{AutoResponseSuppress, ListId, ListUnsubscribe, ListUnsubscribePost, Precedence};
use crate::outbox::journal::SentJournal;
use crate::outbox::{DeliveryStats, Mailer, RetryPolicy, Settled, Worker};
use crate::store::deliveries::{Claimed, DeliveryUpdate};
use crate::store::{Db, Shared};

/// Deliveries a lane claims at a time.
const BATCH: u32 = 64;

/// Who a newsletter message goes to and what it is.
pub struct Envelope<'a> {
    pub to: &'a EmailAddress,
    pub to_name: Option<&'a str>,
    pub subject: &'a str,
    pub message_id: &'a str,
    /// The subscriber's own unsubscribe link; `None` for a proof.
    pub unsubscribe_url: Option<&'a str>,
}

/// The `List-Id` value: configured, or derived from the From address.
pub fn list_id(ctx: &Ctx) -> String {
    let n = &ctx.settings.newsletter;
    if n.list_id.is_empty() {
        format!("\"{}\" <nieuwsbrief.{}>", n.title.replace('"', ""), ctx.from.email.domain())
    } else {
        n.list_id.clone()
    }
}

/// A newsletter message (multipart/alternative, text and HTML) with the list headers
/// (RFC 2369, 2919, 8058), built with lettre's types.
pub fn build_message(
    ctx: &Ctx,
    e: &Envelope<'_>,
    text: &str,
    html: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    build_message_from(ctx, e, Body::new(text.to_string()), Body::new(html.to_string()), now)
}

/// [`build_message`] with bodies that may be encoded already.
pub fn build_message_from(
    ctx: &Ctx,
    e: &Envelope<'_>,
    text: Body,
    html: Body,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    let name = e.to_name.map(crate::domain::clean_text).filter(|n| !n.is_empty());
    let mut b = Message::builder()
        .from(ctx.from.clone())
        .to(Mailbox::new(name, e.to.to_lettre()))
        .subject(crate::domain::clean_text(e.subject))
        .message_id(Some(format!("<{}>", e.message_id)))
        .date(SystemTime::from(now))
        .header(ListId(list_id(ctx)))
        .header(Precedence("bulk".into()))
        .header(AutoResponseSuppress);
    if let Some(url) = e.unsubscribe_url {
        let token = url.rsplit('/').next().unwrap_or("");
        b = b
            .header(ListUnsubscribe(format!("<{url}>, <mailto:{}?subject=afmelden%20{token}>", ctx.contact_address())))
            .header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
    }
    let msg = b.multipart(MultiPart::alternative_plain_html(text, html))?;
    Ok(msg.formatted())
}

/// Spaces sends evenly to stay under `rate_per_minute` (0: no limit).
struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate_per_minute: u32) -> Self {
        let interval = (rate_per_minute > 0).then(|| Duration::from_secs(60) / rate_per_minute);
        Self { interval, next: Mutex::new(Instant::now()) }
    }

    /// The moment the next send may start, reserved: never earlier than `now`, and one
    /// interval after the previous reservation. `None` without a limit.
    fn reserve(&self, now: Instant) -> Option<Instant> {
        let interval = self.interval?;
        let mut next = self.next.lock().expect("pacer lock");
        let slot = (*next).max(now);
        *next = slot + interval;
        Some(slot)
    }

    async fn wait(&self) {
        if let Some(slot) = self.reserve(Instant::now()) {
            tokio::time::sleep_until(slot.into()).await;
        }
    }
}

/// An issue rendered for one language, and its subject.
type Rendered = (Skeleton, String);

/// Sends due deliveries of issues that are `sending`.
pub struct Sender {
    ctx: Ctx,
    db: Shared,
    mailer: Mailer,
    journal: SentJournal,
    skeletons: Mutex<HashMap<(IssueId, Language), Arc<Rendered>>>,
    pacer: Pacer,
    sent_total: AtomicUsize,
    db_path: std::path::PathBuf,
}

impl Sender {
    /// Opens the sender on the database and settles what a crash left in flight.
    pub async fn open(ctx: Ctx, db_path: &std::path::Path) -> anyhow::Result<Self> {
        let db = Shared::new(Db::open(db_path)?.without_fsync_per_commit()?);
        let journal = SentJournal::open_named(db_path, ".newsletter-journal")?;
        let ended = journal.ids()?;
        let now = ctx.clock.now();
        let (sent, requeued) = db.run(move |db| db.write(|st| st.recover_deliveries(&ended, now))).await?;
        journal.clear()?;
        if sent + requeued > 0 {
            tracing::warn!(sent, requeued, "settled newsletter deliveries that were in flight during a crash");
        }
        let mut smtp = ctx.settings.smtp.clone();
        smtp.pool_size = ctx.settings.newsletter.concurrency;
        let mailer = Mailer::new(&smtp)?.with_tokens(ctx.tokens.clone());
        let pacer = Pacer::new(ctx.settings.newsletter.rate_per_minute);
        Ok(Self {
            ctx,
            db,
            mailer,
            journal,
            skeletons: Mutex::new(HashMap::new()),
            pacer,
            sent_total: AtomicUsize::new(0),
            db_path: db_path.to_path_buf(),
        })
    }

    /// Messages sent by this sender so far (for progress output).
    pub fn sent_total(&self) -> usize {
        self.sent_total.load(Ordering::Relaxed)
    }

    /// Starts the issues a person approved, sends everything due now with
    /// `concurrency` lanes until nothing is left, then marks finished issues `sent`.
    pub async fn deliver_due(&self) -> anyhow::Result<DeliveryStats> {
        let ctx = self.ctx.clone();
        for (issue, n) in self.db.run(move |db| db.write(|st| ctx.start_approved(st, ctx.clock.now()))).await? {
            tracing::info!(issue = %issue, deliveries = n, "approved issue: sending started");
        }
        self.db.run(|db| db.store().skip_inactive()).await?;
        let lanes = (0..self.ctx.settings.newsletter.concurrency.max(1)).map(|_| self.lane());
        let mut stats = DeliveryStats::default();
        for lane in futures_util::future::join_all(lanes).await {
            stats.add(&lane?);
        }
        self.journal.clear()?;
        let now = self.ctx.clock.now();
        let finished = self.db.run(move |db| db.write(|st| st.finish_issues(now))).await?;
        for id in finished {
            tracing::info!(issue = %id, "newsletter issue finished");
            self.skeletons.lock().expect("skeleton cache").retain(|(i, _), _| *i != id);
        }
        Ok(stats)
    }

    /// The daemon's newsletter worker: see [`crate::outbox::run_worker`].
    pub async fn run_worker(
        self,
        wake: Arc<tokio::sync::Notify>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        crate::outbox::run_worker(&self, "newsletter", wake, shutdown).await
    }

    /// When the next delivery is due (a retry), if any.
    pub async fn next_due(&self) -> Option<DateTime<Utc>> {
        self.db.run(|db| db.store().next_delivery_due()).await.ok().flatten()
    }

    async fn skeleton(&self, issue_id: IssueId, lang: Language) -> anyhow::Result<Arc<Rendered>> {
        if let Some(s) = self.skeletons.lock().expect("skeleton cache").get(&(issue_id, lang)) {
            return Ok(s.clone());
        }
        let ctx = self.ctx.clone();
        let built = self
            .db
            .run(move |db| {
                let issue = db.store().issue(issue_id)?.context("issue vanished")?;
                let content = ctx.issue_content(db.store(), &issue)?;
                Ok(Arc::new((ctx.renderer.skeleton(&content, lang)?, issue.subject)))
            })
            .await?;
        self.skeletons.lock().expect("skeleton cache").insert((issue_id, lang), built.clone());
        Ok(built)
    }

    fn envelope_from(&self, delivery_id: DeliveryId) -> String {
        let n = &self.ctx.settings.newsletter;
        let base = if n.bounce_address.is_empty() { self.ctx.contact_address() } else { n.bounce_address.clone() };
        match (n.plus_addressing, base.rsplit_once('@')) {
            (true, Some((local, domain))) => {
                let local = local.split_once('+').map_or(local, |(l, _)| l);
                format!("{local}+{}@{domain}", self.ctx.signer.bounce_tag(delivery_id))
            }
            _ => base,
        }
    }

    /// Renders one subscriber's copy.
    async fn render(&self, d: &Claimed, now: DateTime<Utc>) -> anyhow::Result<Vec<u8>> {
        let sk = self.skeleton(d.issue, d.language).await?;
        let (skeleton, subject) = (&sk.0, &sk.1);
        let unsub = self.ctx.unsubscribe_url(d.subscriber, &d.nonce, now);
        let (text, html) = skeleton.personalize_encoded(d.name.as_deref(), &unsub);
        let to = EmailAddress::parse(&d.email).map_err(|e| anyhow::anyhow!(e))?;
        build_message_from(
            &self.ctx,
            &Envelope {
                to: &to,
                to_name: d.name.as_deref(),
                subject,
                message_id: &d.message_id,
                unsubscribe_url: Some(&unsub),
            },
            text,
            html,
            now,
        )
    }

    async fn lane(&self) -> anyhow::Result<DeliveryStats> {
        // Each lane has its own connection, used off the runtime like every store call
        // (`Shared::run`): when its batch is done, it records the outcomes and claims the
        // next batch in one transaction; before each message, it checks that the
        // subscriber is still subscribed right now. Outcomes wait for the batch's end
        // safely: after a crash the journal tells which of the `sending` rows went out.
        let db = Shared::new(Db::open(&self.db_path)?.without_fsync_per_commit()?.memory_mapped()?);
        let mut stats = DeliveryStats::default();
        let mut queue: VecDeque<Claimed> = VecDeque::new();
        let mut done: Vec<(DeliveryId, DeliveryUpdate)> = Vec::with_capacity(BATCH as usize);
        let policy = RetryPolicy::from_settings(&self.ctx.settings.smtp);
        loop {
            if queue.is_empty() {
                let outcomes = std::mem::take(&mut done);
                let now = self.ctx.clock.now();
                let claimed = db
                    .run(move |db| {
                        db.write(|st| {
                            for (id, u) in &outcomes {
                                st.record_delivery(*id, u, now)?;
                            }
                            st.claim_deliveries(BATCH, now)
                        })
                    })
                    .await?;
                if claimed.is_empty() {
                    return Ok(stats);
                }
                queue.extend(claimed);
            }
            let d = queue.pop_front().expect("checked non-empty");
            let subscriber = d.subscriber;
            if !db.run(move |db| db.store().still_active(subscriber)).await? {
                done.push((d.id, DeliveryUpdate::Skipped("unsubscribed before it was sent".into())));
                continue;
            }
            self.pacer.wait().await;
            let now = self.ctx.clock.now();
            let raw = match self.render(&d, now).await {
                Ok(raw) => raw,
                Err(e) => {
                    let error = crate::domain::redact_addresses(&format!("could not render: {e:#}"));
                    stats.failed("newsletter", d.id.get(), error.clone());
                    done.push((d.id, DeliveryUpdate::Failed(error)));
                    continue;
                }
            };
            let from = self.envelope_from(d.id);
            let outcome = self.mailer.send_recorded(&self.journal, d.id.get(), &from, &d.email, &raw).await;
            let update = match stats.settle(outcome, d.attempts, policy, "newsletter", d.id.get(), now) {
                Settled::Sent => {
                    self.sent_total.fetch_add(1, Ordering::Relaxed);
                    DeliveryUpdate::Sent
                }
                Settled::Retry(at, e) => DeliveryUpdate::Retry(at, e),
                Settled::Failed(e) => DeliveryUpdate::Failed(e),
            };
            done.push((d.id, update));
        }
    }
}

impl Worker for Sender {
    fn pass(&self) -> impl Future<Output = anyhow::Result<DeliveryStats>> + Send {
        self.deliver_due()
    }
    fn next_due(&self) -> impl Future<Output = Option<DateTime<Utc>>> + Send {
        Sender::next_due(self)
    }
    fn clock(&self) -> &crate::domain::time::Clock {
        &self.ctx.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_spaces_sends_evenly_across_lanes() {
        let p = Pacer::new(120);
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..5).map(|_| p.reserve(t0).unwrap() - t0).collect();
        assert_eq!(slots, (0..5).map(|i| Duration::from_millis(500 * i)).collect::<Vec<_>>());
        // After a pause, no burst to catch up: the next slot is now.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(p.reserve(later), Some(later));
        assert_eq!(p.reserve(later), Some(later + Duration::from_millis(500)));
        assert_eq!(Pacer::new(0).reserve(t0), None);
    }
}
