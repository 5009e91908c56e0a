//! Delivers newsletter issues: one row per (issue, subscriber), claimed (`sending`,
//! committed) before any network I/O, rendered at send time from the issue's
//! [`Skeleton`], sent with a rate limit over a fixed number of lanes, and settled per
//! row: `sent`, `retry` (4xx, with back-off), `failed` (5xx or too many attempts),
//! `skipped` (unsubscribed meanwhile).
//!
//! Each lane is a thread with its own store connection and its own SMTP session
//! ([`crate::outbox::wire`]): it claims 64 rows, sends them one by one, and records their
//! outcomes in the transaction that claims the next 64.
//!
//! **Exactly once.** Each delivery's id is appended to a journal
//! (`<db>.newsletter-journal`) right before the end of its message goes out, and a refusal
//! of that end is appended after it (see [`crate::outbox::journal`]); a row still
//! `sending` after a crash counts as sent exactly when its end went out and was not
//! refused, and is sent again otherwise (it never reached the server). Outcomes are kept
//! until they are committed: a write that fails (a busy database, a full disk) is tried
//! again with back-off, and what a lane could not write is handed over to the next pass.
//! The journal is emptied only when every outcome is committed and on disk.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
use crate::outbox::wire::{self, Session};
use crate::outbox::{DeliveryStats, RetryPolicy, Settled, Worker, with_retries};
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
        b = b.header(list_unsubscribe(ctx, url)).header(ListUnsubscribePost("List-Unsubscribe=One-Click".into()));
    }
    let msg = b.multipart(MultiPart::alternative_plain_html(text, html))?;
    Ok(msg.formatted())
}

/// Every copy of an issue in one language, less what is personal: built once with
/// [`build_message_from`] (so each copy is exactly what it would build) around marker
/// values, then cut at them. A copy is then its own four headers (To, Message-ID, Date,
/// List-Unsubscribe, formatted by lettre's header types), the shared headers, and the
/// two personalised bodies between the shared MIME parts.
pub struct CopyTemplate {
    /// The shared headers, each ending in CRLF.
    shared_head: String,
    /// The body before the text part's content, between it and the HTML part's, after.
    body: [Vec<u8>; 3],
}

const SLOT_TEXT: &str = "OUTREACH-SLOT-TEXT";
const SLOT_HTML: &str = "OUTREACH-SLOT-HTML";
/// The headers each copy has its own value of.
const PERSONAL_HEADERS: [&str; 4] = ["to", "message-id", "date", "list-unsubscribe"];

impl CopyTemplate {
    pub fn new(ctx: &Ctx, subject: &str) -> anyhow::Result<Self> {
        let to = EmailAddress::parse("slot@slot.invalid").map_err(|e| anyhow::anyhow!(e))?;
        let e = Envelope {
            to: &to,
            to_name: None,
            subject,
            message_id: "slot@slot.invalid",
            unsubscribe_url: Some("https://slot.invalid/unsubscribe/slot"),
        };
        let qp = |slot: &str| {
            Body::dangerous_pre_encoded(
                slot.as_bytes().to_vec(),
                lettre::message::header::ContentTransferEncoding::QuotedPrintable,
            )
        };
        let raw = build_message_from(ctx, &e, qp(SLOT_TEXT), qp(SLOT_HTML), DateTime::<Utc>::UNIX_EPOCH)?;
        let raw = String::from_utf8(raw).context("the message template is not UTF-8")?;
        let (head, body) = raw.split_once("\r\n\r\n").context("the message template has no body")?;
        let mut shared_head = String::with_capacity(head.len());
        let mut keep = true;
        for line in head.split("\r\n") {
            if !line.starts_with([' ', '\t']) {
                let name = line.split_once(':').map_or("", |(n, _)| n).trim().to_ascii_lowercase();
                keep = !PERSONAL_HEADERS.contains(&name.as_str());
            }
            if keep {
                shared_head.push_str(line);
                shared_head.push_str("\r\n");
            }
        }
        let (before, rest) = body.split_once(SLOT_TEXT).context("no text slot")?;
        let (between, after) = rest.split_once(SLOT_HTML).context("no HTML slot")?;
        anyhow::ensure!(!after.contains(SLOT_TEXT) && !after.contains(SLOT_HTML), "a slot twice");
        Ok(Self { shared_head, body: [before.into(), between.into(), after.into()] })
    }

    /// One copy: what [`build_message_from`] builds from the same values.
    pub fn copy(&self, ctx: &Ctx, e: &Envelope<'_>, text_qp: &[u8], html_qp: &[u8], now: DateTime<Utc>) -> Vec<u8> {
        use lettre::message::header::{Date, Headers, MessageId, To};
        let name = e.to_name.map(crate::domain::clean_text).filter(|n| !n.is_empty());
        let mut personal = Headers::new();
        personal.set(To::from(lettre::message::Mailboxes::new().with(Mailbox::new(name, e.to.to_lettre()))));
        personal.set(MessageId::from(format!("<{}>", e.message_id)));
        personal.set(Date::new(SystemTime::from(now)));
        if let Some(url) = e.unsubscribe_url {
            personal.set(list_unsubscribe(ctx, url));
        }
        let personal = personal.to_string();
        let [before, between, after] = &self.body;
        let mut out = Vec::with_capacity(
            personal.len()
                + self.shared_head.len()
                + 2
                + before.len()
                + text_qp.len()
                + between.len()
                + html_qp.len()
                + after.len(),
        );
        for part in
            [personal.as_bytes(), self.shared_head.as_bytes(), b"\r\n", before, text_qp, between, html_qp, after]
        {
            out.extend_from_slice(part);
        }
        out
    }
}

/// The `List-Unsubscribe` header of a copy: the https link and the mailto with its token.
fn list_unsubscribe(ctx: &Ctx, url: &str) -> ListUnsubscribe {
    let token = url.rsplit('/').next().unwrap_or("");
    ListUnsubscribe(format!("<{url}>, <mailto:{}?subject=afmelden%20{token}>", ctx.contact_address()))
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

    /// Waits (on the lane's thread) for the next slot.
    fn wait(&self) {
        if let Some(slot) = self.reserve(Instant::now()) {
            std::thread::sleep(slot.saturating_duration_since(Instant::now()));
        }
    }
}

/// An issue rendered for one language, its subject, and the template of its copies.
struct Rendered {
    skeleton: Skeleton,
    subject: String,
    template: CopyTemplate,
}

/// Sends due deliveries of issues that are `sending`.
pub struct Sender {
    db: Shared,
    lanes: Arc<Lanes>,
}

/// What the lanes share.
struct Lanes {
    ctx: Ctx,
    wire: wire::Client,
    journal: SentJournal,
    skeletons: Mutex<HashMap<(IssueId, Language), Arc<Rendered>>>,
    pacer: Pacer,
    sent_total: AtomicUsize,
    db_path: std::path::PathBuf,
    /// Outcomes a lane could not commit, and rows it claimed but did not start: kept
    /// until the next pass commits them.
    unrecorded: Mutex<Vec<(DeliveryId, DeliveryUpdate)>>,
}

impl Sender {
    /// Opens the sender on the database and settles what a crash left in flight.
    pub async fn open(ctx: Ctx, db_path: &std::path::Path) -> anyhow::Result<Self> {
        let db = Shared::new(Db::open(db_path)?.without_fsync_per_commit()?);
        let journal = SentJournal::open_named(db_path, ".newsletter-journal")?;
        let (sent, requeued) =
            crate::outbox::settle_leftovers(&db, &journal, true, ctx.clock.now(), |db, ended, now| {
                db.write(|st| st.recover_deliveries(ended, now))
            })
            .await?;
        if sent + requeued > 0 {
            tracing::warn!(sent, requeued, "settled newsletter deliveries that were in flight during a crash");
        }
        let lanes = ctx.settings.newsletter.concurrency.max(1) as usize;
        let wire = wire::Client::new(&ctx.settings.smtp, lanes)?.with_tokens(ctx.tokens.clone());
        let pacer = Pacer::new(ctx.settings.newsletter.rate_per_minute);
        let lanes = Lanes {
            ctx,
            wire,
            journal,
            skeletons: Mutex::new(HashMap::new()),
            pacer,
            sent_total: AtomicUsize::new(0),
            db_path: db_path.to_path_buf(),
            unrecorded: Mutex::new(Vec::new()),
        };
        Ok(Self { db, lanes: Arc::new(lanes) })
    }

    /// Messages sent by this sender so far (for progress output).
    pub fn sent_total(&self) -> usize {
        self.lanes.sent_total.load(Ordering::Relaxed)
    }

    /// Starts the issues a person approved, sends everything due now with
    /// `concurrency` lanes until nothing is left, then marks finished issues `sent`.
    pub async fn deliver_due(&self) -> anyhow::Result<DeliveryStats> {
        let ctx = self.lanes.ctx.clone();
        for (issue, n) in self.db.run(move |db| db.write(|st| ctx.start_approved(st, ctx.clock.now()))).await? {
            tracing::info!(issue = %issue, deliveries = n, "approved issue: sending started");
        }
        self.db.run(|db| db.store().skip_inactive()).await?;
        self.record_unrecorded().await?;
        let lanes: Vec<_> = (0..self.lanes.ctx.settings.newsletter.concurrency.max(1))
            .map(|_| {
                let lanes = self.lanes.clone();
                tokio::task::spawn_blocking(move || lanes.lane())
            })
            .collect();
        let mut stats = DeliveryStats::default();
        let mut failed = None;
        for lane in futures_util::future::join_all(lanes).await {
            match lane.context("a sending lane panicked").and_then(|r| r) {
                Ok(s) => stats.add(&s),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // No lane runs and every outcome is committed: once they are on disk, the
        // journal's proof is no longer needed. Rows a panicked lane left `sending` are
        // settled by it as after a crash.
        let now = self.lanes.ctx.clock.now();
        let (sent, requeued) =
            crate::outbox::settle_leftovers(&self.db, &self.lanes.journal, false, now, |db, ended, now| {
                db.write(|st| st.recover_deliveries(ended, now))
            })
            .await?;
        if sent + requeued > 0 {
            tracing::warn!(sent, requeued, "settled newsletter deliveries a lane left in flight");
        }
        let finished = self.db.run(move |db| db.write(|st| st.finish_issues(now))).await?;
        for id in finished {
            tracing::info!(issue = %id, "newsletter issue finished");
            self.lanes.skeletons.lock().unwrap_or_else(PoisonError::into_inner).retain(|(i, _), _| *i != id);
        }
        Ok(stats)
    }

    /// Commits what lanes of an earlier pass could not; kept again when that fails.
    async fn record_unrecorded(&self) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut *self.lanes.unrecorded.lock().unwrap_or_else(PoisonError::into_inner));
        if pending.is_empty() {
            return Ok(());
        }
        let kept = pending.clone();
        let now = self.lanes.ctx.clock.now();
        let written = self
            .db
            .run(move |db| {
                with_retries("record newsletter outcomes kept from an earlier pass", || {
                    db.write(|st| {
                        for (id, u) in &pending {
                            st.record_delivery(*id, u, now)?;
                        }
                        Ok(())
                    })
                })
            })
            .await;
        if written.is_err() {
            self.lanes.unrecorded.lock().unwrap_or_else(PoisonError::into_inner).extend(kept);
        }
        written
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
}

impl Lanes {
    fn skeleton(&self, db: &Db, issue_id: IssueId, lang: Language) -> anyhow::Result<Arc<Rendered>> {
        if let Some(s) = self.skeletons.lock().unwrap_or_else(PoisonError::into_inner).get(&(issue_id, lang)) {
            return Ok(s.clone());
        }
        let issue = db.store().issue(issue_id)?.context("issue vanished")?;
        let content = self.ctx.issue_content(db.store(), &issue)?;
        let template = CopyTemplate::new(&self.ctx, &issue.subject)?;
        let built = Arc::new(Rendered {
            skeleton: self.ctx.renderer.skeleton(&content, lang)?,
            subject: issue.subject,
            template,
        });
        self.skeletons.lock().unwrap_or_else(PoisonError::into_inner).insert((issue_id, lang), built.clone());
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
    fn render(&self, db: &Db, d: &Claimed, now: DateTime<Utc>) -> anyhow::Result<Vec<u8>> {
        let r = self.skeleton(db, d.issue, d.language)?;
        let unsub = self.ctx.unsubscribe_url(d.subscriber, &d.nonce, now);
        let (text, html) = r.skeleton.personalize_qp(d.name.as_deref(), &unsub);
        let to = EmailAddress::parse(&d.email).map_err(|e| anyhow::anyhow!(e))?;
        let e = Envelope {
            to: &to,
            to_name: d.name.as_deref(),
            subject: &r.subject,
            message_id: &d.message_id,
            unsubscribe_url: Some(&unsub),
        };
        Ok(r.template.copy(&self.ctx, &e, &text, &html, now))
    }

    /// One lane, on its own thread. When it stops on an error, what it holds (outcomes
    /// not committed, rows claimed and not started) is kept for the next pass.
    fn lane(&self) -> anyhow::Result<DeliveryStats> {
        let mut db = Db::open(&self.db_path)?.without_fsync_per_commit()?.memory_mapped()?;
        let mut stats = DeliveryStats::default();
        let mut queue: VecDeque<Claimed> = VecDeque::new();
        let mut done: Vec<(DeliveryId, DeliveryUpdate)> = Vec::with_capacity(BATCH as usize);
        let mut session: Option<(Session, bool)> = None;
        let result = self.lane_loop(&mut db, &mut session, &mut queue, &mut done, &mut stats);
        if let Some((s, _)) = session {
            self.wire.checkin(s);
        }
        if result.is_err() {
            let mut kept = self.unrecorded.lock().unwrap_or_else(PoisonError::into_inner);
            kept.append(&mut done);
            kept.extend(queue.drain(..).map(|d| (d.id, DeliveryUpdate::Unstarted)));
        }
        result.map(|()| stats)
    }

    fn lane_loop(
        &self,
        db: &mut Db,
        session: &mut Option<(Session, bool)>,
        queue: &mut VecDeque<Claimed>,
        done: &mut Vec<(DeliveryId, DeliveryUpdate)>,
        stats: &mut DeliveryStats,
    ) -> anyhow::Result<()> {
        // Before each message, the subscriber is checked again: whoever left meanwhile
        // gets nothing more. Outcomes wait for the batch's end safely: after a crash the
        // journal tells which of the `sending` rows went out.
        let policy = RetryPolicy::from_settings(&self.ctx.settings.smtp);
        loop {
            let Some(d) = queue.front() else {
                let now = self.ctx.clock.now();
                let claimed = with_retries("record newsletter outcomes", || {
                    db.write(|st| {
                        for (id, u) in done.iter() {
                            st.record_delivery(*id, u, now)?;
                        }
                        st.claim_deliveries(BATCH, now)
                    })
                })?;
                done.clear();
                if claimed.is_empty() {
                    return Ok(());
                }
                queue.extend(claimed);
                continue;
            };
            let subscriber = d.subscriber;
            if !with_retries("check a subscriber", || db.store().still_active(subscriber))? {
                let d = queue.pop_front().expect("checked non-empty");
                done.push((d.id, DeliveryUpdate::Skipped("unsubscribed before it was sent".into())));
                continue;
            }
            let d = queue.pop_front().expect("checked non-empty");
            self.pacer.wait();
            let now = self.ctx.clock.now();
            let raw = match self.render(db, &d, now) {
                Ok(raw) => raw,
                Err(e) => {
                    let error = crate::domain::redact_addresses(&format!("could not render: {e:#}"));
                    stats.failed("newsletter", d.id.get(), error.clone());
                    done.push((d.id, DeliveryUpdate::Failed(error)));
                    continue;
                }
            };
            let from = self.envelope_from(d.id);
            let outcome = self.wire.send_recorded(session, &self.journal, d.id.get(), &from, &d.email, &raw);
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
        &self.lanes.ctx.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers unfolded and sorted, the body with its MIME boundary named `B`.
    fn normalised(raw: &[u8]) -> (Vec<String>, String) {
        let raw = String::from_utf8(raw.to_vec()).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut lines: Vec<String> = Vec::new();
        for l in head.split("\r\n") {
            match lines.last_mut() {
                Some(last) if l.starts_with([' ', '\t']) => last.push_str(l),
                _ => lines.push(l.to_string()),
            }
        }
        let boundary = lines.iter().find_map(|l| l.split("boundary=\"").nth(1)).unwrap().split('"').next().unwrap();
        let body = body.replace(boundary, "B");
        let mut lines: Vec<String> = lines.iter().map(|l| l.replace(boundary, "B")).collect();
        lines.sort();
        (lines, body)
    }

    #[test]
    fn a_copy_from_the_template_is_the_message_lettre_builds() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        let settings =
            std::sync::Arc::new(crate::config::Settings::from_toml(crate::config::tests::MINIMAL, Vec::new()).unwrap());
        let templates = std::sync::Arc::new(crate::templates::Templates::load(None).unwrap());
        let ctx = Ctx::new(settings, templates, &mut db, crate::domain::time::Clock::system()).unwrap();
        let subject =
            "Nieuwsbrief december: één verhaal over \"samen\" werken, met een lange onderwerpregel die gevouwen wordt";
        let template = CopyTemplate::new(&ctx, subject).unwrap();
        let to = EmailAddress::parse("zoe.de.vries@example.nl").unwrap();
        let text = b"Beste Zo=C3=AB,\r\n\r\nEen regel.\r\n.begint met een punt=\r\n".to_vec();
        let html = b"<p>Beste Zo=C3=AB,</p>\r\n".to_vec();
        let now = Utc::now();
        for name in [Some("Zoë de Vries-El Amrani, \"bestuur\" <x>"), None, Some("Ann\r\nBcc: x@evil.test")] {
            let e = Envelope {
                to: &to,
                to_name: name,
                subject,
                message_id: "abc.123@example.org",
                unsubscribe_url: Some("https://n.example.org/unsubscribe/AbC-_123"),
            };
            let ours = template.copy(&ctx, &e, &text, &html, now);
            let lettres = build_message_from(
                &ctx,
                &e,
                Body::dangerous_pre_encoded(
                    text.clone(),
                    lettre::message::header::ContentTransferEncoding::QuotedPrintable,
                ),
                Body::dangerous_pre_encoded(
                    html.clone(),
                    lettre::message::header::ContentTransferEncoding::QuotedPrintable,
                ),
                now,
            )
            .unwrap();
            assert_eq!(normalised(&ours), normalised(&lettres), "{}", String::from_utf8_lossy(&ours));
        }
    }

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
