//! `outreach doctor`: checks, one by one, what the daemon needs (the config, the
//! templates, the database, the OAuth2 token, the IMAP login, capabilities and folders,
//! the SMTP login, the web address) and prints a checklist in plain words with what to fix.
//! Each check is bounded in time; a check that needs an earlier one that failed is
//! skipped. Exit 1 when a check failed; warnings alone exit 0. Nothing is sent; the only
//! change it may make is to create a missing category folder, as the daemon would.

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Security, Settings};
use crate::domain::redact_addresses;
use crate::inbox::imap::{self, ImapSource};
use crate::outbox::{ConnectStep, Mailer};
use crate::store::DaemonLock;
use crate::store::check::{self, Depth};
use crate::templates::Templates;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Skipped,
    Warning,
    Failed,
}

/// One line of the checklist (and one object of `--json`).
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    /// What was found, in plain words.
    summary: String,
    /// What to do about it; for failures and some warnings.
    fix: Option<String>,
    millis: u64,
}

/// What one check found, part by part; its status is the worst part's.
struct Findings {
    status: Status,
    parts: Vec<String>,
    fixes: Vec<String>,
}

impl Findings {
    fn new() -> Self {
        Self { status: Status::Ok, parts: Vec::new(), fixes: Vec::new() }
    }
    fn add(&mut self, status: Status, part: impl Into<String>, fix: Option<String>) -> &mut Self {
        self.status = self.status.max(status);
        self.parts.push(part.into());
        self.fixes.extend(fix);
        self
    }
    fn ok(&mut self, part: impl Into<String>) -> &mut Self {
        self.add(Status::Ok, part, None)
    }
    fn warn(&mut self, part: impl Into<String>, fix: Option<String>) -> &mut Self {
        self.add(Status::Warning, part, fix)
    }
    fn fail(&mut self, part: impl Into<String>, fix: impl Into<String>) -> &mut Self {
        self.add(Status::Failed, part, Some(fix.into()))
    }
    fn done(self, name: &'static str, started: Instant) -> Check {
        Check {
            name,
            status: self.status,
            summary: self.parts.join("; "),
            fix: (!self.fixes.is_empty()).then(|| self.fixes.join(" ")),
            millis: started.elapsed().as_millis() as u64,
        }
    }
}

fn one(name: &'static str, status: Status, summary: String, fix: Option<String>, started: Instant) -> Check {
    let mut f = Findings::new();
    f.add(status, summary, fix);
    f.done(name, started)
}

fn skipped(name: &'static str, why: &str) -> Check {
    one(name, Status::Skipped, why.to_string(), None, Instant::now())
}

/// Runs `f` on a thread of its own and waits at most `limit` for it. A blocking call that
/// hangs (a server that never answers) is left behind: the process ends without it.
async fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("doctor".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    tokio::time::timeout(limit, rx).await.ok()?.ok()
}

pub(super) async fn doctor(config: Option<&Path>, json: bool, limit: Duration) -> anyhow::Result<i32> {
    let mut checks = Vec::new();
    let settings = match config {
        None => {
            checks.push(one(
                "config",
                Status::Failed,
                "no config file given".into(),
                Some("Use --config FILE or set OUTREACH_CONFIG (`outreach init FILE` writes an example).".into()),
                Instant::now(),
            ));
            None
        }
        Some(path) => {
            let (check, settings) = config_check(path);
            checks.push(check);
            settings
        }
    };
    match &settings {
        None => {
            for name in CHECKS.iter().skip(1) {
                checks.push(skipped(name, "needs a valid config"));
            }
        }
        Some(s) => run_checks(s, limit, &mut checks).await,
    }
    report(config, &checks, json)?;
    Ok(if checks.iter().any(|c| c.status == Status::Failed) { 1 } else { 0 })
}

/// The names of the checks, in order (stable: `--json` consumers key on them).
const CHECKS: [&str; 9] = [
    "config",
    "templates",
    "database",
    "oauth2",
    "imap_login",
    "imap_capabilities",
    "imap_folders",
    "smtp_login",
    "web",
];

async fn run_checks(s: &Settings, limit: Duration, checks: &mut Vec<Check>) {
    checks.push(templates_check(s));
    let started = Instant::now();
    let path = s.database.path.clone();
    checks.push(bounded(limit, move || database_check(&path, started)).await.unwrap_or_else(|| {
        one(
            "database",
            Status::Failed,
            format!("the database check did not finish within {} s", limit.as_secs()),
            Some("A very large or slow disk? Run `outreach db check` and see what it says.".into()),
            started,
        )
    }));
    let token = oauth2_check(s);
    let token_failed = token.status == Status::Failed;
    checks.push(token);
    if token_failed {
        checks.push(skipped("imap_login", "needs an OAuth2 token"));
        skip_rest_of_imap(checks, "needs an OAuth2 token");
    } else {
        imap_checks(s, limit, checks).await;
    }
    checks.push(smtp_check(s, limit).await);
    checks.push(web_check(s, limit).await);
}

fn config_check(path: &Path) -> (Check, Option<Settings>) {
    let started = Instant::now();
    let mut f = Findings::new();
    match Settings::load(path, std::env::vars()) {
        Err(e) => {
            f.fail(
                format!("the config file is not valid: {}", config_error(path, &e)),
                format!(
                    "Correct the key named in {} (or the OUTREACH_ variable named); `outreach init NEW.toml` writes a commented example.",
                    path.display()
                ),
            );
            (f.done("config", started), None)
        }
        Ok(s) => {
            f.ok(format!("{} is valid", path.display()));
            if let Some(mode) = secrets_readable_by_others(path) {
                f.warn(
                    format!("it holds a password or secret and other users can read it (mode {mode:04o})"),
                    Some(format!(
                        "chmod 640 {} (group of the service user), or move the secrets to files given by systemd credentials (imap.password_file, smtp.password_file, secret_file).",
                        path.display()
                    )),
                );
            }
            if s.smtp.username.is_some() && s.smtp.password.is_none() {
                f.fail(
                    "smtp.username is set but there is no password: mail would go out without a login",
                    "Set smtp.password_file (or smtp.password), or remove smtp.username for a relay without login.",
                );
            }
            (f.done("config", started), Some(s))
        }
    }
}

/// The error of a config file without the "Invalid config file PATH" it starts with,
/// one line.
fn config_error(path: &Path, e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let prefix = format!("Invalid config file {}: ", path.display());
    redact_addresses(text.strip_prefix(&prefix).unwrap_or(&text)).replace('\n', "; ")
}

/// The mode of a config file that other users may read while it has a password or
/// secret line in it.
fn secrets_readable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    let text = std::fs::read_to_string(path).ok()?;
    let has_secret = text.lines().map(str::trim_start).any(|l| {
        (l.starts_with("password") || l.starts_with("secret") || l.starts_with("client_secret"))
            && !l.contains("_file")
            && l.contains('=')
    });
    (mode & 0o004 != 0 && has_secret).then_some(mode)
}

fn templates_check(s: &Settings) -> Check {
    let started = Instant::now();
    let dir = s.templates.dir.as_deref();
    match Templates::load(dir) {
        Ok(_) => one(
            "templates",
            Status::Ok,
            match dir {
                Some(d) => format!("built in, with the files in {} taking their place", d.display()),
                None => "built in (no templates.dir)".into(),
            },
            None,
            started,
        ),
        Err(e) => one(
            "templates",
            Status::Failed,
            format!("a template does not load: {e:#}"),
            Some("Correct or remove that file in templates.dir; the built-in originals are in /usr/share/outreach/templates.".into()),
            started,
        ),
    }
}

/// The uid this process runs as (the owner of its own /proc entry).
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn database_check(path: &Path, started: Instant) -> Check {
    let mut f = Findings::new();
    if !path.exists() {
        f.warn(format!("there is no database at {} yet: the daemon creates it when it starts", path.display()), None);
        return f.done("database", started);
    }
    for l in check::loose_files(path) {
        f.fail(
            format!(
                "{} can be read by other users (mode {:04o}); it holds people's mail and addresses",
                l.path.display(),
                l.mode
            ),
            format!("chmod 600 {}", l.path.display()),
        );
    }
    if let (Ok(meta), Some(me)) = (std::fs::metadata(path), own_uid())
        && meta.uid() != me
    {
        if me == 0 {
            f.warn(
                format!("{} belongs to uid {}, and doctor runs as root", path.display(), meta.uid()),
                Some("Run doctor as the service user (sudo -u outreach outreach --config ... doctor) to see what the daemon sees.".into()),
            );
        } else {
            f.fail(
                format!(
                    "{} belongs to another user (uid {}) than the one running outreach (uid {me})",
                    path.display(),
                    meta.uid()
                ),
                format!("Run outreach as the user that owns the database, or chown that user {}.", path.display()),
            );
        }
    }
    match check::inspect(path, Depth::Quick) {
        Err(e) => {
            f.fail(
                format!("the database cannot be opened: {e:#}"),
                "Check that the file and its folder belong to the user that runs outreach.",
            );
        }
        Ok(h) => {
            if let Some(first) = h.damage.first() {
                f.fail(
                    format!("the database {} is damaged: {first}", path.display()),
                    "Stop the daemon, put the damaged file aside and restore the latest backup (README: \"Backups and upgrades\"); `outreach db check` lists the damage.",
                );
            }
            if h.foreign_key_violations > 0 {
                f.fail(
                    format!("{} row(s) point at rows that do not exist (foreign keys)", h.foreign_key_violations),
                    "Restore the latest backup; `outreach db check` shows the count.",
                );
            }
            if h.newer_than_binary() {
                f.fail(
                    format!(
                        "the database was written by a newer outreach (schema version {}, this one knows {})",
                        h.schema_version, h.known_version
                    ),
                    "Install that newer outreach again, or restore a backup made by this version.",
                );
            } else if h.pending_migrations() > 0 {
                f.warn(
                    format!(
                        "schema version {} of {}: {} migration(s) will be applied when the daemon starts",
                        h.schema_version,
                        h.known_version,
                        h.pending_migrations()
                    ),
                    Some("Take a backup first: outreach db backup FILE.".into()),
                );
            }
            if f.status == Status::Ok {
                f.ok(format!(
                    "{}: intact (quick check), foreign keys whole, schema version {} (current), owner-only",
                    path.display(),
                    h.schema_version
                ));
            }
        }
    }
    f.done("database", started)
}

/// OAUTH2-WIRE: the token check. In this branch IMAP and SMTP log in with a password
/// only; after the OAuth2 work is merged, this is the one place to call
/// `oauth2::check(...)` when `imap.auth` or `smtp.auth` is `oauth2` (fetch or refresh a
/// token, its refusal mapped to the plain-words sentence, status Failed with that
/// sentence as the fix), and keep the "not configured" answer below for `password`.
fn oauth2_check(_s: &Settings) -> Check {
    skipped("oauth2", "not configured: IMAP and SMTP log in with a password (imap.auth and smtp.auth = password)")
}

async fn imap_checks(s: &Settings, limit: Duration, checks: &mut Vec<Check>) {
    let started = Instant::now();
    let (host, port) = (s.imap.host.clone(), s.imap.port);
    let imap_settings = s.imap.clone();
    let connected = bounded(limit, move || ImapSource::connect(&imap_settings)).await;
    let mut source = match connected {
        None => {
            checks.push(one(
                "imap_login",
                Status::Failed,
                format!("no answer from the IMAP server at {host}:{port} within {} s", limit.as_secs()),
                Some("Check imap.host, imap.port and imap.security (TLS on a plain port, or the reverse, waits for ever) and that no firewall drops the connection.".into()),
                started,
            ));
            skip_rest_of_imap(checks, "needs an IMAP login");
            return;
        }
        Some(Err(e)) => {
            let text = redact_addresses(&format!("{e:#}"));
            let (summary, fix) = match imap::ConnectStep::of(&e) {
                imap::ConnectStep::Reach => (
                    format!("cannot reach the IMAP server: {text}"),
                    "Check imap.host and imap.port, that the server runs, and that no firewall blocks this machine.",
                ),
                imap::ConnectStep::Tls => (
                    format!("TLS with the IMAP server failed: {text}"),
                    "Check imap.security (\"tls\" for port 993, \"starttls\" for 143) and, for a private CA, imap.ca_file.",
                ),
                imap::ConnectStep::Login => (
                    format!("the IMAP server refused the login: {text}"),
                    "Check imap.username and imap.password (or imap.password_file). Microsoft 365 and Google no longer accept a password: use imap.auth = \"oauth2\" (README: \"Running it for real\").",
                ),
                imap::ConnectStep::Mailbox => (
                    format!("logged in, but the watched mailbox cannot be opened: {text}"),
                    "Check imap.mailbox (usually INBOX).",
                ),
                imap::ConnectStep::Other => {
                    (format!("the IMAP connection failed: {text}"), "Check imap.host, imap.port and imap.security.")
                }
            };
            checks.push(one("imap_login", Status::Failed, summary, Some(fix.into()), started));
            skip_rest_of_imap(checks, "needs an IMAP login");
            return;
        }
        Some(Ok(source)) => source,
    };
    checks.push(one(
        "imap_login",
        Status::Ok,
        format!("logged in at {host}:{port} ({}) and opened {}", security_words(s.imap.security), s.imap.mailbox),
        None,
        started,
    ));
    checks.push(capabilities_check(s, &source));
    let started = Instant::now();
    let folders = category_folders(s);
    let folder_check = bounded(limit, move || {
        let mut f = Findings::new();
        let (mut found, mut created) = (Vec::new(), Vec::new());
        for (key, folder) in folders {
            if source.has_folder(&folder) {
                found.push(folder);
                continue;
            }
            match source.ensure_folder(&folder) {
                Ok(()) => created.push(folder),
                Err(e) => {
                    f.fail(
                        format!("the folder {folder:?} does not exist and cannot be created: {}", redact_addresses(&format!("{e:#}"))),
                        format!("Create it in a mail program, set {key} to a folder that exists, or check the account's rights."),
                    );
                }
            }
        }
        source.logout();
        if !found.is_empty() {
            f.ok(format!("{} exist", found.join(", ")));
        }
        if !created.is_empty() {
            f.ok(format!("created {} (the daemon would have when filing)", created.join(", ")));
        }
        f
    })
    .await;
    checks.push(match folder_check {
        Some(f) => f.done("imap_folders", started),
        None => one(
            "imap_folders",
            Status::Failed,
            format!("the IMAP server did not answer LIST/CREATE within {} s", limit.as_secs()),
            Some("Try again; a server this slow also slows the daemon.".into()),
            started,
        ),
    });
}

/// The IMAP checks after the login, when they cannot run.
fn skip_rest_of_imap(checks: &mut Vec<Check>, why: &str) {
    checks.push(skipped("imap_capabilities", why));
    checks.push(skipped("imap_folders", why));
}

/// Each category folder once, with the key that names it.
fn category_folders(s: &Settings) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (key, folder) in s.filing.keyed() {
        if !folder.trim().is_empty() && !out.iter().any(|(_, x)| x == folder) {
            out.push((key, folder.to_string()));
        }
    }
    out
}

fn capabilities_check(s: &Settings, source: &ImapSource) -> Check {
    let started = Instant::now();
    let (idle, mv, uidplus) = source.capabilities();
    let mut f = Findings::new();
    let mut have: Vec<&str> = Vec::new();
    if idle {
        have.push("IDLE");
    } else {
        f.warn(
            format!(
                "no IDLE: the daemon polls the mailbox every {} s instead (imap.poll_interval)",
                s.imap.poll_interval
            ),
            None,
        );
    }
    if mv {
        have.push("MOVE");
    }
    if uidplus {
        have.push("UIDPLUS");
    }
    match (mv, uidplus) {
        (true, true) => {}
        (true, false) => {
            f.warn("no UIDPLUS: not needed while the server has MOVE (filed mail is moved with UID MOVE)", None);
        }
        (false, true) => {
            f.warn("no MOVE: filed mail is copied to its folder, flagged \\Deleted and removed with UID EXPUNGE", None);
        }
        (false, false) => {
            f.warn(
                format!(
                    "no MOVE and no UIDPLUS: filed mail is copied to its folder and flagged \\Deleted, but stays in {} until a mail program expunges it",
                    s.imap.mailbox
                ),
                Some("Let the coordinator's mail program expunge deleted mail (most do when leaving the folder).".into()),
            );
        }
    }
    if idle && !s.imap.idle {
        f.ok(format!("IDLE is switched off (imap.idle = false): the daemon polls every {} s", s.imap.poll_interval));
    }
    if !have.is_empty() {
        f.ok(format!("the server has {}", have.join(", ")));
    }
    f.done("imap_capabilities", started)
}

fn security_words(s: Security) -> &'static str {
    match s {
        Security::Tls => "TLS",
        Security::Starttls => "STARTTLS",
        Security::None => "plain, unencrypted",
    }
}

async fn smtp_check(s: &Settings, limit: Duration) -> Check {
    let started = Instant::now();
    let smtp = &s.smtp;
    let (host, port) = (&smtp.host, smtp.port);
    let mailer = match Mailer::new(smtp) {
        Ok(m) => m,
        Err(e) => {
            return one(
                "smtp_login",
                Status::Failed,
                format!("cannot set up SMTP: {e:#}"),
                Some("Check smtp.security and smtp.ca_file.".into()),
                started,
            );
        }
    };
    let probe = match tokio::time::timeout(limit, mailer.probe()).await {
        Err(_) => {
            return one(
                "smtp_login",
                Status::Failed,
                format!("no answer from the SMTP server at {host}:{port} within {} s", limit.as_secs()),
                Some("Check smtp.port and smtp.security (\"starttls\" for 587, \"tls\" for 465: the wrong one waits for ever) and that no firewall drops outgoing connections.".into()),
                started,
            );
        }
        Ok(p) => p,
    };
    let (summary, fix) = match probe {
        Ok(p) => {
            let login = if p.logged_in {
                "logged in (AUTH)".to_string()
            } else {
                "no login configured (smtp.username not set)".to_string()
            };
            let mut f = Findings::new();
            f.ok(format!(
                "{} at {host}:{port} answered EHLO ({}), {login}; no mail was sent",
                redact_addresses(&p.server),
                if p.encrypted { "encrypted" } else { "unencrypted" }
            ));
            if !p.encrypted && p.logged_in && !is_loopback(host) {
                f.warn(
                    "the password travels unencrypted to a server on another machine",
                    Some("Use smtp.security = \"starttls\" (587) or \"tls\" (465).".into()),
                );
            }
            return f.done("smtp_login", started);
        }
        Err((step, text)) => match step {
            ConnectStep::Reach => (
                format!("cannot reach the SMTP server at {host}:{port}: {text}"),
                "Check smtp.host and smtp.port (587 with starttls, 465 with tls), and that no firewall blocks outgoing connections.",
            ),
            ConnectStep::Greeting => (
                format!("the SMTP server at {host}:{port} did not greet as expected: {text}"),
                "Check smtp.port and smtp.security (port 465 needs security = \"tls\").",
            ),
            ConnectStep::Tls => (
                format!("TLS with the SMTP server failed: {text}"),
                "Check smtp.security (\"starttls\" for 587, \"tls\" for 465) and, for a private CA, smtp.ca_file.",
            ),
            ConnectStep::Login if text.contains("5.7.139") || text.contains("5.7.30") => (
                format!(
                    "the server refused the login because SMTP AUTH is switched off for this mailbox or tenant: {text}"
                ),
                "In Exchange Online: Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false, and use smtp.auth = \"oauth2\" (README: \"Running it for real\").",
            ),
            ConnectStep::Login => (
                format!("the SMTP server refused the login: {text}"),
                "Check smtp.username and smtp.password (or smtp.password_file).",
            ),
        },
    };
    one("smtp_login", Status::Failed, summary, Some(fix.into()), started)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

async fn web_check(s: &Settings, limit: Duration) -> Check {
    let started = Instant::now();
    let mut f = Findings::new();
    let listen = s.web.listen();
    let explicit = s.web.listen.is_some();
    match listen.parse::<SocketAddr>() {
        Err(e) => {
            f.fail(
                format!("web.listen {listen:?} is no address: {e}"),
                "Set web.listen to an address like 127.0.0.1:8080.",
            );
        }
        Ok(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                drop(l);
                f.ok(format!("{listen} is free: the daemon will serve its pages there"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let db = s.database.path.clone();
                let ours = bounded(limit, move || daemon_serves(&db, addr)).await.unwrap_or(false);
                if ours {
                    f.ok(format!("{listen} is served by the running daemon (GET /health answers)"));
                } else if explicit {
                    f.fail(
                        format!("web.listen {listen} is taken by another program"),
                        "Stop that program (ss -ltnp shows which) or set web.listen to a free address.",
                    );
                } else {
                    f.warn(
                        format!("the default address {listen} is taken by another program: the daemon then runs without its pages"),
                        Some("Set web.listen to a free address.".into()),
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                f.fail(
                    format!("binding {listen} needs privileges the daemon does not have"),
                    "Use a port above 1023 on 127.0.0.1 and put a reverse proxy in front (README: \"Running it for real\").",
                );
            }
            Err(e) => {
                f.fail(
                    format!("{listen} cannot be bound: {e}"),
                    "Use an address of this machine, e.g. 127.0.0.1:8080 behind a reverse proxy.",
                );
            }
        },
    }
    let base = s.base_url();
    let host = base.split_once("://").map_or("", |(_, rest)| rest).split(['/', ':']).next().unwrap_or("");
    if base.starts_with("https://") {
        f.ok(format!("links in mail point at {base}"));
    } else if is_loopback(host) {
        f.ok(format!("links in mail point at {base} (this machine only: fine for a test)"));
    } else {
        f.warn(
            format!("links in mail point at {base}: plain HTTP"),
            Some("Put a reverse proxy with TLS in front and set web.base_url to its https:// address.".into()),
        );
    }
    f.done("web", started)
}

/// Whether a daemon runs on this database and answers `GET /health` at `addr`.
fn daemon_serves(db: &Path, addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    if !db.exists() || DaemonLock::acquire(db).is_ok() {
        return false;
    }
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = Vec::new();
    let _ = s.take(4096).read_to_end(&mut resp);
    resp.starts_with(b"HTTP/1.1 200")
}

fn report(config: Option<&Path>, checks: &[Check], json: bool) -> anyhow::Result<()> {
    let failed = checks.iter().filter(|c| c.status == Status::Failed).count();
    let warnings = checks.iter().filter(|c| c.status == Status::Warning).count();
    if json {
        let v = serde_json::json!({
            "ok": failed == 0,
            "config": config.map(|p| p.display().to_string()),
            "failed": failed,
            "warnings": warnings,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("outreach doctor: {}", config.map_or_else(|| "no config file".into(), |p| p.display().to_string()));
    for c in checks {
        let mark = match c.status {
            Status::Ok => "[ok]     ",
            Status::Warning => "[warning]",
            Status::Failed => "[FAILED] ",
            Status::Skipped => "[skipped]",
        };
        println!("{mark} {:18} {}", c.name.replace('_', " "), c.summary);
        if let Some(fix) = &c.fix {
            let label = if c.status == Status::Failed { "fix:" } else { "note:" };
            println!("{:29}{label} {fix}", "");
        }
    }
    println!();
    match (failed, warnings) {
        (0, 0) => println!("Everything the daemon needs is in order."),
        (0, w) => println!("No failures; {w} warning(s) to read."),
        (n, _) => println!("{n} check(s) FAILED: fix what is marked and run `outreach doctor` again."),
    }
    Ok(())
}
