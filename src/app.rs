//! Running it: the daemon (`outreach run`) and a single pass (`outreach poll --once`).
//!
//! The IMAP side is blocking and runs on its own thread; the outbox worker runs on the
//! tokio runtime. New mail in the queue wakes the worker at once (a `Notify`).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use rand::Rng;
use tokio::sync::{Notify, watch};

use crate::config::{AuthMethod, Settings};
use crate::domain::state::OutboxKind;
use crate::domain::time::Clock;
use crate::inbox::imap::{self, ImapSource, Interrupter};
use crate::inbox::{PassStats, Pipeline, process_mailbox};
use crate::newsletter::{self, Ctx, send::Sender};
use crate::oauth2::{AuthProblem, Side, Tokens};
use crate::outbox::{DeliveryStats, Outbox};
use crate::store::oauth2::LoginHealth;
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
        let pass = connect_imap(s, c.tokens.as_ref()).and_then(|(mut src, _)| {
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
    let outbox =
        Outbox::open(&settings.database.path, settings.smtp.clone(), ctx.clock.clone(), ctx.tokens.clone()).await?;
    let delivery = outbox.deliver_due().await;
    let sender = Sender::open(ctx, &settings.database.path).await?;
    let news = sender.deliver_due().await;
    let inbox = inbox.context("Reading the mailbox failed")?;
    let outbox = delivery.context("Delivering the outbox failed")?;
    let newsletter = news.context("Sending the newsletter failed")?;
    Ok(PollReport { inbox, outbox, newsletter })
}

/// What the web side wakes: the outbox (a mail was queued) and the newsletter sender (an
/// issue was approved or sent again), so that neither waits for its next round.
#[derive(Clone, Default)]
pub struct Wake {
    pub outbox: Arc<Notify>,
    pub sender: Arc<Notify>,
}

/// The daemon: IMAP (IDLE, else polling) on a thread, the outbox worker beside it,
/// until SIGTERM or SIGINT. Returns an error when a part stopped on its own.
/// `serve_web` serves the web endpoints on the listener (the web room sits above this
/// one, so the caller hands it in: `crate::web::serve`).
pub async fn run<W, F>(settings: Arc<Settings>, serve_web: W) -> anyhow::Result<()>
where
    W: FnOnce(tokio::net::TcpListener, Ctx, Shared, Wake, watch::Receiver<bool>) -> F + Send + 'static,
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
    let outbox =
        Outbox::open(&settings.database.path, settings.smtp.clone(), clock.clone(), ctx.tokens.clone()).await?;
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
    tasks.spawn(supervised("login watch", watch_logins(ctx.clone(), wake.clone(), stop_rx.clone())));
    tasks.spawn(supervised("desk digest", desk_digest(ctx.clone(), shared.clone(), wake.clone(), stop_rx.clone())));
    let mut web_stop = stop_rx.clone();
    tasks.spawn(supervised("web server", async move {
        match listener {
            Some(l) => {
                let web_wake = Wake { outbox: wake.clone(), sender: wake_sender.clone() };
                serve_web(l, ctx.clone(), shared, web_wake, stop_rx).await
            }
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
        let (mut src, token_until) = match connect_imap(settings, ctx.tokens.as_ref()) {
            Ok(connected) => {
                // Best effort: on a full disk the pass below says what is wrong.
                let _ = db.set_state("imap", "connected", clock.now());
                connected
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
        let mut relogin = false;
        loop {
            let woken = |_: &[crate::inbox::Filed]| wake.iter().for_each(|w| w.notify_one());
            let moved =
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
                        stats.moved > 0
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
                };
            if stop.is_stopped() {
                break;
            }
            // A session logged in with a token ends before the token expires (Exchange
            // ends it with `BYE ... AccessTokenExpired` after): log in again with a new
            // one. What arrived meanwhile stays in the mailbox for the next pass.
            let token_left = token_until.map(|t| t.saturating_duration_since(Instant::now()));
            if token_left.is_some_and(|left| left < Duration::from_secs(1)) {
                tracing::info!("the IMAP session's token is due for renewal; logging in again");
                relogin = true;
                break;
            }
            let wait_cap = |d: Duration| token_left.map_or(d, |left| d.min(left));
            // Mail that arrived during the pass was announced in the answer to one of its
            // commands (MOVE's answer is not even read for it), and IDLE waits for the next
            // announcement only: so after a pass that moved mail, look once more first.
            if src.mail_arrived_meanwhile() || moved {
                tracing::debug!(
                    moved,
                    "looking at the mailbox again before waiting: mail may have arrived during the pass"
                );
                continue;
            }
            if settings.imap.idle && src.has_idle() {
                let _ = db.set_state("imap", "idle", clock.now());
                if let Err(e) = src.idle(wait_cap(idle_refresh), interrupter) {
                    if !stop.is_stopped() {
                        if imap::token_expired(&e)
                            && let Some(t) = &ctx.tokens
                        {
                            // Logged in again after the usual short wait, with a new token.
                            tracing::info!("the server ended the session: its token expired; logging in again");
                            t.forget();
                        } else {
                            tracing::warn!(error = %format!("{e:#}"), "IDLE ended with an error; reconnecting");
                            record_error(&db, clock, "imap", &e);
                        }
                    }
                    break;
                }
            } else {
                let _ = db.set_state("imap", "polling", clock.now());
                if stop.wait(wait_cap(poll)) {
                    break;
                }
            }
        }
        src.logout();
        if relogin {
            continue;
        }
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

/// Connects to the mailbox and logs in as `imap.auth` says: with the password, or with an
/// OAuth2 token from `tokens` (whose login result is recorded for `status`). Returns the
/// session and, with a token, when the session should end to log in with a new one.
pub fn connect_imap(settings: &Settings, tokens: Option<&Tokens>) -> anyhow::Result<(ImapSource, Option<Instant>)> {
    if settings.imap.auth == AuthMethod::Password {
        return Ok((ImapSource::connect(&settings.imap)?, None));
    }
    let tokens = tokens.context("imap.auth = \"oauth2\" but no token source was set up")?;
    let token = tokens.bearer_blocking(Side::Imap)?;
    match ImapSource::connect_with_token(&settings.imap, &token) {
        Ok(src) => {
            tokens.report_blocking(Side::Imap, Ok(()));
            Ok((src, Some(token.renew_at)))
        }
        Err(e) => {
            if let Some(p) = e.downcast_ref::<AuthProblem>() {
                tokens.report_blocking(Side::Imap, Err(p));
            }
            Err(e)
        }
    }
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
        let (mut src, token_until) = match connect_imap(settings, ctx.tokens.as_ref()) {
            Ok(connected) => connected,
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
            // A session logged in with a token ends before the token does.
            if token_until.is_some_and(|t| t <= Instant::now()) {
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
    let outbox = Outbox::open(path, ctx.settings.smtp.clone(), ctx.clock.clone(), ctx.tokens.clone())
        .await?
        .deliver_due()
        .await?;
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

/// How often the login watch looks.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Watches the OAuth2 logins: when one side has not logged in for
/// `oauth2.alert_after_minutes`, the coordinator gets one mail (through whatever still
/// works: the outbox when SMTP works, else a flagged message in the review folder of
/// the contact mailbox when IMAP works, else the outbox, which sends it once SMTP works
/// again) and the log says so every hour until a login works. Never silent.
async fn watch_logins(ctx: Ctx, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    if ctx.tokens.is_none() {
        let _ = stop.changed().await;
        return Ok(());
    }
    let db = Shared::new(Db::open(&ctx.settings.database.path)?);
    loop {
        if let Err(e) = check_logins(&ctx, &db, &wake).await {
            tracing::error!(error = %format!("{e:#}"), "the login watch failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

async fn check_logins(ctx: &Ctx, db: &Shared, wake: &Notify) -> anyhow::Result<()> {
    let health = db.run(|db| db.store().oauth2_health()).await?;
    let now = ctx.clock.now();
    let after = chrono::Duration::minutes(i64::try_from(ctx.settings.oauth2.alert_after_minutes).unwrap_or(i64::MAX));
    let failing = |side: &str| health.iter().any(|h| h.side == side && h.failing_since.is_some());
    for h in &health {
        let Some(since) = h.failing_since else { continue };
        if now - since < after || h.logged_at.is_some_and(|l| now - l < chrono::Duration::hours(1)) {
            continue;
        }
        let minutes = (now - since).num_minutes();
        let detail = h.detail.clone().unwrap_or_default();
        tracing::error!(
            side = %h.side,
            minutes,
            problem = h.problem.as_deref().unwrap_or(""),
            "no successful login for {minutes} minutes: {detail}"
        );
        let alerted = h.alerted_at.is_none();
        if alerted {
            alert_coordinator(ctx, db, h, minutes, !failing("smtp"), !failing("imap")).await?;
            wake.notify_one();
        }
        let side = h.side.clone();
        db.run(move |db| db.store().oauth2_login_noted(&side, alerted, now)).await?;
    }
    Ok(())
}

/// The one notice to the coordinator about a failing login, through what still works.
async fn alert_coordinator(
    ctx: &Ctx,
    db: &Shared,
    h: &LoginHealth,
    minutes: i64,
    smtp_works: bool,
    imap_works: bool,
) -> anyhow::Result<()> {
    let Some(to) = ctx.coordinator() else {
        tracing::warn!("no coordinator.address configured; the login notice is only in the log");
        return Ok(());
    };
    #[derive(serde::Serialize)]
    struct Data<'a> {
        minutes: i64,
        what: &'a str,
        consequence: &'a str,
        problem: &'a str,
    }
    let (what, consequence) = if h.side == "imap" {
        ("lezen", "wordt nieuwe mail niet gelezen, niet in de mappen gezet en niet beantwoord.")
    } else {
        ("versturen", "gaan er geen antwoorden, bevestigingen of nieuwsbrieven de deur uit.")
    };
    let body = ctx.templates.render(
        "notice/login.nl.txt",
        &Data { minutes, what, consequence, problem: h.detail.as_deref().unwrap_or("") },
    )?;
    let subject = "outreach: inloggen op de contactmailbox lukt niet";
    let now = ctx.clock.now();
    // A password SMTP side has no login record: its last delivery says whether it works.
    let smtp_works = smtp_works
        && (ctx.settings.smtp.auth == AuthMethod::Oauth2
            || !db
                .run(|db| Ok(db.states()?.into_iter().any(|(k, v, _)| k == "smtp" && v.starts_with("error"))))
                .await?);
    if !smtp_works && imap_works {
        let (c, to2) = (ctx.clone(), to.clone());
        let raw = crate::outbox::compose::notice(
            &ctx.from,
            &to,
            subject,
            &crate::outbox::compose::new_message_id(&ctx.from),
            body.clone(),
            SystemTime::from(now),
        )?;
        let appended = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let (mut src, _) = connect_imap(&c.settings, c.tokens.as_ref())?;
            let folder = c.settings.filing.review.clone();
            let done = src.append_flagged(&folder, &raw);
            src.logout();
            done
        })
        .await
        .context("the IMAP task panicked")?;
        match appended {
            Ok(()) => {
                tracing::warn!(to = %to2.domain(), "told the coordinator in the review folder (SMTP does not work)");
                return Ok(());
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not put the login notice in the mailbox"),
        }
    }
    let c = ctx.clone();
    db.run(move |db| db.write(|st| c.notify_coordinator(st, OutboxKind::NoticeLogin, subject, body, None, now)))
        .await?;
    tracing::warn!(
        by_mail_now = smtp_works,
        "told the coordinator by mail that logging in fails (queued; it goes out as soon as SMTP works)"
    );
    Ok(())
}
