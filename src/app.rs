//! Running it: the daemon (`outreach run`) and a single pass (`outreach poll --once`).
//!
//! The IMAP side is blocking and runs on its own thread; the outbox worker runs on the
//! tokio runtime. New mail in the queue wakes the worker at once (a `Notify`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::domain::time::Clock;
use crate::inbox::imap::{ImapSource, Interrupter};
use crate::inbox::{PassStats, Pipeline, process_mailbox};
use crate::newsletter::{self, Ctx, send::Sender};
use crate::outbox::{DeliveryStats, Outbox};
use crate::store::{self, DaemonLock, Db, Shared};
use crate::templates::Templates;

/// A stop signal a blocking thread can wait on.
#[derive(Default)]
pub struct StopFlag {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl StopFlag {
    pub fn stop(&self) {
        *self.stopped.lock().expect("stop flag") = true;
        self.cv.notify_all();
    }
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock().expect("stop flag")
    }
    /// Sleeps up to `d`; true when stopped meanwhile.
    pub fn wait(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().expect("stop flag");
        let (guard, _) = self.cv.wait_timeout_while(guard, d, |s| !*s).expect("stop flag");
        *guard
    }
}

/// What `poll --once` did.
#[derive(Debug, Default)]
pub struct PollReport {
    pub inbox: PassStats,
    pub outbox: DeliveryStats,
    pub newsletter: DeliveryStats,
}

/// The newsletter context on a fresh store connection, with the clock from the
/// environment (the system clock unless a test sets `OUTREACH_CLOCK_FILE`).
pub fn context(settings: Arc<Settings>) -> anyhow::Result<Ctx> {
    let templates = Arc::new(Templates::load(settings.templates.dir.as_deref())?);
    let mut db = Db::open(&settings.database.path)?;
    Ctx::new(settings, templates, &mut db, Clock::from_env())
}

/// Records an error for `outreach status` (the store keeps only the domain of any
/// address in it: an IMAP error names the login).
fn record_error(db: &Db, clock: &Clock, part: &str, e: &anyhow::Error) {
    let _ = db.set_state(part, &format!("error: {e:#}"), clock.now());
    let _ = db.set_state("last_error", &format!("{part}: {e:#}"), clock.now());
}

/// Files everything in the mailbox, makes a scheduled newsletter that is due, then
/// delivers the outbox and the newsletter; once.
pub async fn poll_once(settings: Arc<Settings>) -> anyhow::Result<PollReport> {
    let _lock = DaemonLock::acquire(&settings.database.path)?;
    let ctx = context(settings.clone())?;
    let c = ctx.clone();
    let inbox = tokio::task::spawn_blocking(move || -> anyhow::Result<PassStats> {
        let s = &c.settings;
        let mut db = Db::open(&s.database.path)?;
        let pipeline = Pipeline::new(&c)?;
        let pass = ImapSource::connect(&s.imap).and_then(|mut src| {
            let stats = process_mailbox(&mut src, &mut db, &pipeline, s.imap.max_message_size, &c.clock, |_| {});
            src.logout();
            stats
        });
        match &pass {
            Ok(_) => db.set_state("imap", "ok (last poll)", c.clock.now())?,
            Err(e) => record_error(&db, &c.clock, "imap", e),
        }
        if let Err(e) = newsletter::schedule::housekeeping(&c, &mut db, c.clock.now()) {
            record_error(&db, &c.clock, "newsletter", &e);
        }
        pass
    })
    .await
    .context("IMAP task panicked")?;
    // Deliver what is queued even when IMAP failed: those replies were committed.
    let outbox = Outbox::open(&settings.database.path, settings.smtp.clone(), ctx.clock.clone()).await?;
    let delivery = outbox.deliver_due().await;
    let sender = Sender::open(ctx, &settings.database.path).await?;
    let news = sender.deliver_due().await;
    let inbox = inbox.context("Reading the mailbox failed")?;
    let outbox = delivery.context("Delivering the outbox failed")?;
    let newsletter = news.context("Sending the newsletter failed")?;
    Ok(PollReport { inbox, outbox, newsletter })
}

/// The daemon: IMAP (IDLE, else polling) on a thread, the outbox worker beside it,
/// until SIGTERM or SIGINT. Returns an error when a part stopped on its own.
/// `serve_web` serves the web endpoints on the listener (the web room sits above this
/// one, so the caller hands it in: `crate::web::serve`).
pub async fn run<W, F>(settings: Arc<Settings>, serve_web: W) -> anyhow::Result<()>
where
    W: FnOnce(tokio::net::TcpListener, Ctx, Shared, Arc<Notify>, watch::Receiver<bool>) -> F + Send + 'static,
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // Take over SIGTERM/SIGINT before anything else: a stop during start-up is clean too.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("Failed to install the SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("Failed to install the SIGINT handler")?;
    let lock = DaemonLock::acquire(&settings.database.path)?;
    let ctx = context(settings.clone())?;
    let db = Db::open(&settings.database.path)?;
    let clock = ctx.clock.clone();
    db.set_state("daemon", &format!("running (pid {})", std::process::id()), clock.now())?;
    let listener = bind_web(&settings, &db, &clock).await?;
    let outbox = Outbox::open(&settings.database.path, settings.smtp.clone(), clock.clone()).await?;
    let sender = Sender::open(ctx.clone(), &settings.database.path).await?;
    let shared = Shared::new(Db::open(&settings.database.path)?);
    let wake = Arc::new(Notify::new());
    let wake_sender = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = Arc::new(StopFlag::default());
    let interrupter = Interrupter::default();
    tracing::info!(lock = %lock.path().display(), "outreach daemon started");

    let imap = {
        let (ctx, stop, interrupter) = (ctx.clone(), stop.clone(), interrupter.clone());
        let wake = [wake.clone(), wake_sender.clone()];
        let handle = std::thread::Builder::new()
            .name("imap".into())
            .spawn(move || imap_loop(&ctx, &wake, &stop, &interrupter))
            .context("Failed to start the IMAP thread")?;
        tokio::task::spawn_blocking(move || {
            handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the IMAP thread panicked")))
        })
    };
    let desk = {
        let (ctx, stop) = (ctx.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("mail-client-desk".into())
            .spawn(move || mail_client_loop(&ctx, &stop))
            .context("Failed to start the mail client desk thread")?;
        tokio::task::spawn_blocking(move || {
            handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the mail client desk thread panicked")))
        })
    };
    // Every part runs as a task; the first one that ends on its own (an error, a panic,
    // or a return) stops the daemon with an error, so that systemd restarts it whole
    // (deploy/outreach.service: Restart=on-failure). No part runs on silently dead.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(supervised("IMAP side", async move {
        imap.await.unwrap_or_else(|e| Err(anyhow::anyhow!("the IMAP thread ended: {e}")))
    }));
    tasks.spawn(supervised("mail client desk", async move {
        desk.await.unwrap_or_else(|e| Err(anyhow::anyhow!("the mail client desk thread ended: {e}")))
    }));
    tasks.spawn(supervised("outbox worker", outbox.run_worker(wake.clone(), stop_rx.clone())));
    tasks.spawn(supervised("newsletter sender", sender.run_worker(wake_sender.clone(), stop_rx.clone())));
    tasks.spawn(supervised(
        "newsletter scheduler",
        newsletter::schedule::run(ctx.clone(), shared.clone(), wake_sender.clone(), wake.clone(), stop_rx.clone()),
    ));
    tasks.spawn(supervised("desk digest", desk_digest(ctx.clone(), shared.clone(), wake.clone(), stop_rx.clone())));
    let mut web_stop = stop_rx.clone();
    tasks.spawn(supervised("web server", async move {
        match listener {
            Some(l) => serve_web(l, ctx.clone(), shared, wake.clone(), stop_rx).await,
            None => {
                let _ = web_stop.changed().await;
                Ok(())
            }
        }
    }));

    let early = tokio::select! {
        _ = term.recv() => None,
        _ = int.recv() => None,
        Some(done) = tasks.join_next() => Some(done.unwrap_or_else(|e| ("a task", Err(anyhow::anyhow!("{e}"))))),
    };
    if let Some((name, result)) = &early {
        let why = match result {
            Ok(()) => "it returned".to_string(),
            Err(e) => format!("{e:#}"),
        };
        tracing::error!(part = name, error = %why, "a part of the daemon stopped on its own; stopping the daemon");
        let _ = db.set_state("daemon", &format!("stopping: the {name} stopped: {why}"), clock.now());
        let _ = db.set_state("last_error", &format!("daemon: the {name} stopped on its own: {why}"), clock.now());
    }
    tracing::info!("shutting down: finishing work in progress");
    stop.stop();
    interrupter.interrupt();
    let _ = stop_tx.send(true);
    let mut failures = Vec::new();
    if let Some((name, result)) = early {
        failures.push(format!(
            "the {name} stopped on its own: {}",
            result.err().map_or("it returned".into(), |e| format!("{e:#}"))
        ));
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok((name, Err(e))) = done {
            failures.push(format!("the {name} stopped: {e:#}"));
        }
    }
    let _ = db.set_state("daemon", "stopped", clock.now());
    let _ = db.set_state("web", "stopped", clock.now());
    if let Some(first) = failures.first() {
        anyhow::bail!("{first}");
    }
    tracing::info!("outreach daemon stopped");
    Ok(())
}

/// A part of the daemon, named, with a panic turned into an error.
async fn supervised(
    name: &'static str,
    part: impl Future<Output = anyhow::Result<()>>,
) -> (&'static str, anyhow::Result<()>) {
    use futures_util::FutureExt;
    let part = async move {
        failpoint(name);
        part.await
    };
    let result = std::panic::AssertUnwindSafe(part).catch_unwind().await.unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(anyhow::anyhow!("panicked: {what}"))
    });
    (name, result)
}

/// For the supervision test: `OUTREACH_FAILPOINT=<part name>` makes that part of the
/// daemon panic as it starts. Never set in production.
fn failpoint(name: &str) {
    if std::env::var("OUTREACH_FAILPOINT").is_ok_and(|v| v == name) {
        panic!("failpoint {name}");
    }
}

/// The web endpoints' listener at `[web] listen`. When that key is unset and the default
/// address is taken (another instance on this machine), the mail side runs without them;
/// links in mail then need an instance with `[web] listen` set.
async fn bind_web(settings: &Settings, db: &Db, clock: &Clock) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let listen = settings.web.listen();
    match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => {
            db.set_state("web", &format!("listening on {listen} ({})", settings.base_url()), clock.now())?;
            Ok(Some(l))
        }
        Err(e) if settings.web.listen.is_none() => {
            tracing::warn!(listen, error = %e, "web endpoints not started: the default address is in use; set [web] listen");
            let _ = db.set_state("web", &format!("not started: {listen} is in use ({e})"), clock.now());
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("key `web.listen`: cannot listen on {listen}")),
    }
}

/// Connect, file, wait (IDLE or poll), repeat; reconnect with back-off on errors.
/// Only a broken store ends it: then nothing more may be acknowledged. After each
/// committed batch the outbox and the newsletter sender are woken (`wake`).
fn imap_loop(ctx: &Ctx, wake: &[Arc<Notify>], stop: &StopFlag, interrupter: &Interrupter) -> anyhow::Result<()> {
    let clock = &ctx.clock;
    let settings = &*ctx.settings;
    let mut db = Db::open(&settings.database.path)?;
    let pipeline = Pipeline::new(ctx)?;
    let mut delay = Duration::from_secs(1);
    let idle_refresh = Duration::from_secs(settings.imap.idle_refresh);
    let poll = Duration::from_secs(settings.imap.poll_interval);
    while !stop.is_stopped() {
        let mut src = match ImapSource::connect(&settings.imap) {
            Ok(src) => {
                db.set_state("imap", "connected", clock.now())?;
                src
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "IMAP connection failed");
                record_error(&db, clock, "imap", &e);
                if stop.wait(jitter(delay)) {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(300));
                continue;
            }
        };
        loop {
            let woken = |_: &[crate::inbox::Filed]| wake.iter().for_each(|w| w.notify_one());
            match process_mailbox(&mut src, &mut db, &pipeline, settings.imap.max_message_size, clock, woken) {
                Ok(stats) => {
                    delay = Duration::from_secs(1);
                    if stats.seen > 0 {
                        tracing::info!(
                            seen = stats.seen,
                            filed = stats.filed,
                            replayed = stats.replayed,
                            replies = stats.replies_queued,
                            moved = stats.moved,
                            "mailbox pass"
                        );
                    }
                }
                Err(e) if let Some(fault) = store::Fault::of(&e) => {
                    tracing::error!(%fault, "the store failed");
                    record_error(&db, clock, "store", &e);
                    return Err(e.context("the store failed; stopping so that nothing is acknowledged"));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "IMAP pass failed; reconnecting");
                    record_error(&db, clock, "imap", &e);
                    break;
                }
            }
            if stop.is_stopped() {
                break;
            }
            if settings.imap.idle && src.has_idle() {
                let _ = db.set_state("imap", "idle", clock.now());
                if let Err(e) = src.idle(idle_refresh, interrupter) {
                    if !stop.is_stopped() {
                        tracing::warn!(error = %format!("{e:#}"), "IDLE ended with an error; reconnecting");
                        record_error(&db, clock, "imap", &e);
                    }
                    break;
                }
            } else {
                let _ = db.set_state("imap", "polling", clock.now());
                if stop.wait(poll) {
                    break;
                }
            }
        }
        src.logout();
        if !stop.is_stopped() && stop.wait(jitter(delay)) {
            break;
        }
    }
    Ok(())
}

/// The daily digest of what waits ([`crate::inbox::desk::digest_if_due`]), looked at
/// every second on the clock; a queued digest wakes the outbox.
async fn desk_digest(ctx: Ctx, db: Shared, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut last_error = String::new();
    loop {
        let c = ctx.clone();
        match db.run(move |db| crate::inbox::desk::digest_if_due(db, &c.settings, &c.templates, c.clock.now())).await {
            Ok(Some(n)) => {
                tracing::info!(waiting = n, "daily digest queued for the coordinator");
                wake.notify_one();
            }
            Ok(None) => last_error.clear(),
            // Said once, not every second: it is tried again each second.
            Err(e) if format!("{e:#}") != last_error => {
                last_error = format!("{e:#}");
                tracing::warn!(error = %last_error, "the daily digest could not be made");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// The coordinator's mail client as a desk ([`crate::inbox::mailclient`]), on its own
/// IMAP connection so that the watched mailbox stays in IDLE: a round every
/// `desk.sync_seconds`, reconnecting with back-off; only a broken store ends it.
fn mail_client_loop(ctx: &Ctx, stop: &StopFlag) -> anyhow::Result<()> {
    let clock = &ctx.clock;
    let settings = &*ctx.settings;
    let mut db = Db::open(&settings.database.path)?;
    let mut delay = Duration::from_secs(1);
    while !stop.is_stopped() {
        let mut src = match ImapSource::connect(&settings.imap) {
            Ok(src) => src,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "mail client desk: IMAP connection failed");
                if stop.wait(jitter(delay)) {
                    break;
                }
                delay = (delay * 2).min(Duration::from_secs(300));
                continue;
            }
        };
        loop {
            match crate::inbox::mailclient::sync(&mut src, &mut db, settings, clock) {
                Ok(s) => {
                    delay = Duration::from_secs(1);
                    if s != crate::inbox::mailclient::SyncStats::default() {
                        tracing::info!(
                            moved = s.moved,
                            copied = s.copied,
                            done = s.done,
                            recategorised = s.recategorised,
                            answers = s.answers,
                            "mail client desk round"
                        );
                    }
                }
                Err(e) if let Some(fault) = store::Fault::of(&e) => {
                    tracing::error!(%fault, "the store failed");
                    record_error(&db, clock, "store", &e);
                    return Err(e.context("the store failed; stopping so that nothing is acknowledged"));
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "mail client desk round failed; reconnecting");
                    record_error(&db, clock, "desk", &e);
                    break;
                }
            }
            if stop.wait(Duration::from_secs(settings.desk.sync_seconds)) {
                break;
            }
        }
        src.logout();
        if !stop.is_stopped() && stop.wait(jitter(delay)) {
            break;
        }
    }
    Ok(())
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// What [`deliver_now`] did.
#[derive(Debug, Default)]
pub struct Delivered {
    /// False when a running daemon holds the store: it sends within seconds.
    pub by_us: bool,
    pub outbox: DeliveryStats,
    pub newsletter: Option<DeliveryStats>,
}

/// Delivers queued mail now when no daemon runs (else the daemon does, within seconds),
/// for commands that queue mail. `progress` is told how many newsletter copies are to
/// go and, while sending, how many went.
pub async fn deliver_now(ctx: &Ctx, with_newsletter: bool, progress: impl Fn(u64, u64)) -> anyhow::Result<Delivered> {
    let path = &ctx.settings.database.path;
    let Ok(_lock) = DaemonLock::acquire(path) else {
        return Ok(Delivered::default());
    };
    let outbox = Outbox::open(path, ctx.settings.smtp.clone(), ctx.clock.clone()).await?.deliver_due().await?;
    let mut done = Delivered { by_us: true, outbox, newsletter: None };
    if with_newsletter {
        let sender = Sender::open(ctx.clone(), path).await?;
        let total = Db::open(path)?.store().deliveries_left()?;
        let ticker = async {
            loop {
                progress(total, sender.sent_total() as u64);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let stats = tokio::select! {
            n = sender.deliver_due() => n?,
            () = ticker => unreachable!("the ticker never ends"),
        };
        done.newsletter = Some(stats);
    }
    Ok(done)
}
