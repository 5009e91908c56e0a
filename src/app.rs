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
use crate::store::{self, DaemonLock, Db, FaultNote, Shared};
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

/// Records a state for `outreach status` at start-up. A full disk does not stop the
/// start: the daemon comes up, says "disk full" and waits for space (see `DiskFull`);
/// any other failure does.
fn starting_state(db: &Db, key: &str, value: &str, clock: &Clock) -> anyhow::Result<()> {
    match db.set_state(key, value, clock.now()) {
        Err(e) if store::Fault::of(&e) == Some(store::Fault::DiskFull) => {
            tracing::warn!(key, "disk full: the daemon's state could not be recorded; starting anyway");
            Ok(())
        }
        r => r,
    }
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
    // The first connection stays open: while it does, the others need no new space.
    let Some(db) = open_when_there_is_space(&settings.database.path, &mut term, &mut int).await? else {
        tracing::info!("stopped while waiting for space on the disk");
        return Ok(());
    };
    let ctx = context(settings.clone())?;
    let clock = ctx.clock.clone();
    starting_state(&db, "daemon", &format!("running (pid {})", std::process::id()), &clock)?;
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
    // Every part runs as a task; the first one that ends on its own (an error, a panic,
    // or a return) stops the daemon with an error, so that systemd restarts it whole
    // (deploy/outreach.service: Restart=on-failure). No part runs on silently dead.
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(supervised("IMAP side", async move {
        imap.await.unwrap_or_else(|e| Err(anyhow::anyhow!("the IMAP thread ended: {e}")))
    }));
    tasks.spawn(supervised("outbox worker", outbox.run_worker(wake.clone(), stop_rx.clone())));
    tasks.spawn(supervised("newsletter sender", sender.run_worker(wake_sender.clone(), stop_rx.clone())));
    tasks.spawn(supervised(
        "newsletter scheduler",
        newsletter::schedule::run(ctx.clone(), shared.clone(), wake_sender.clone(), wake.clone(), stop_rx.clone()),
    ));
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

/// Opens the database for the daemon. While the disk is too full even for that (the
/// first connection to open it writes SQLite's shared-memory index anew, which needs
/// room), says "disk full" in the log and in `status` (the [`FaultNote`]) and tries
/// again, 2 s apart doubling up to [`DISK_FULL_RETRY_MAX`], instead of exiting into a
/// restart loop. None when stopped meanwhile.
async fn open_when_there_is_space(
    path: &std::path::Path,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Option<Db>> {
    let fault = store::Fault::DiskFull;
    let (mut note, mut since, mut wait) = (None, None, Duration::ZERO);
    loop {
        match Db::open(path) {
            Ok(db) => return Ok(Some(db)),
            Err(e) if store::Fault::of(&e) == Some(fault) => {
                wait = (wait * 2).clamp(Duration::from_secs(2), DISK_FULL_RETRY_MAX);
                tracing::error!(%fault, error = %format!("{e:#}"), retry_in = ?wait, "disk full: the database cannot be opened; waiting for space");
                let since = *since.get_or_insert_with(|| Clock::from_env().now());
                if note.is_none() {
                    note = FaultNote::open(path).ok();
                }
                if let Some(n) = &note {
                    let _ = n.set(&format!("{fault}; the daemon waits for space to open the database"), since);
                }
                tokio::select! {
                    _ = term.recv() => return Ok(None),
                    _ = int.recv() => return Ok(None),
                    () = tokio::time::sleep(jitter(wait)) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
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
            starting_state(db, "web", &format!("listening on {listen} ({})", settings.base_url()), clock)?;
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

/// The longest wait between two attempts to file while the disk is full.
const DISK_FULL_RETRY_MAX: Duration = Duration::from_secs(30);

/// Connect, file, wait (IDLE or poll), repeat; reconnect with back-off on errors.
/// A full disk pauses filing (see [`DiskFull`]); any other broken store ends it: then
/// nothing more may be acknowledged. After each committed batch the outbox and the
/// newsletter sender are woken (`wake`).
fn imap_loop(ctx: &Ctx, wake: &[Arc<Notify>], stop: &StopFlag, interrupter: &Interrupter) -> anyhow::Result<()> {
    let clock = &ctx.clock;
    let settings = &*ctx.settings;
    let mut db = Db::open(&settings.database.path)?;
    let pipeline = Pipeline::new(ctx)?;
    let mut disk_full = DiskFull::new(&settings.database.path)?;
    let mut delay = Duration::from_secs(1);
    let idle_refresh = Duration::from_secs(settings.imap.idle_refresh);
    let poll = Duration::from_secs(settings.imap.poll_interval);
    while !stop.is_stopped() {
        let mut src = match ImapSource::connect(&settings.imap) {
            Ok(src) => {
                // Best effort: on a full disk the pass below says what is wrong.
                let _ = db.set_state("imap", "connected", clock.now());
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
                    disk_full.over(&db, clock);
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
                Err(e) if store::Fault::of(&e) == Some(store::Fault::DiskFull) => {
                    delay = (delay * 2).min(DISK_FULL_RETRY_MAX);
                    disk_full.report(&db, clock, &e, delay);
                    break;
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

/// A full disk under the database, as the IMAP side lives with it. Filing stops before
/// anything is moved (the batch's transaction fails, so nothing is acknowledged) and
/// nothing is sent without its record (the outbox's claim is a write too); the daemon
/// stays up and tries again every few seconds, at most [`DISK_FULL_RETRY_MAX`] apart,
/// and goes on by itself once there is space. `outreach status` and the log say "disk
/// full" meanwhile: the status through the [`FaultNote`] beside the database, because the
/// database may not take even that one row.
struct DiskFull {
    note: FaultNote,
    since: Option<chrono::DateTime<chrono::Utc>>,
}

impl DiskFull {
    fn new(db_path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self { note: FaultNote::open(db_path)?, since: None })
    }

    fn report(&mut self, db: &Db, clock: &Clock, e: &anyhow::Error, retry_in: Duration) {
        let fault = store::Fault::DiskFull;
        let since = *self.since.get_or_insert_with(|| clock.now());
        tracing::error!(
            %fault,
            error = %format!("{e:#}"),
            retry_in = ?retry_in,
            "disk full: filing paused; the mail stays in the mailbox and nothing is sent until there is space"
        );
        if let Err(e) = self.note.set(&format!("{fault}; filing paused, the mail waits in the mailbox"), since) {
            tracing::warn!(error = %format!("{e:#}"), "could not note the full disk for `outreach status`");
        }
        // Best effort: the database may not take it.
        let _ = db.set_state("last_error", &format!("store: {fault}"), clock.now());
    }

    fn over(&mut self, db: &Db, clock: &Clock) {
        let Some(since) = self.since.take() else { return };
        tracing::info!(since = %crate::domain::time::ts(since), "disk space is back: filing resumed");
        let _ = self.note.clear();
        let _ = db.set_state("imap", "connected (filing resumed after the disk was full)", clock.now());
    }
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
