//! Test harness: the real mail stack (deploy/mailstack), a `TestApp` per test with its
//! own database and config, and small IMAP/SMTP helpers. Tests that use the stack run
//! one at a time (they share the accounts) and reset the accounts first.

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::{SmtpTransport, Transport};
use outreach::inbox::parse::{ParsedMail, parse};
use serde_json::Value;

pub const USERS: [&str; 5] = ["contact", "alice", "bob", "coordinator", "catchall"];
const SPECIAL: [&str; 6] = ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"];

pub struct Stack {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub smtp_port: u16,
    pub imaps_port: u16,
    pub ca_cert: PathBuf,
}

/// The running mail stack; fails with instructions when it is not running.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let dir = PathBuf::from(std::env::var("OUTREACH_MAILSTACK_DIR").unwrap_or_else(|_| "/tmp/outreach-mailstack".into()));
        let env = std::fs::read_to_string(dir.join("mailstack.env")).unwrap_or_else(|_| {
            panic!("the mail stack is not running in {}: start it with `bash deploy/mailstack/start.sh` (or run `bash deploy/test.sh`)", dir.display())
        });
        let get = |k: &str| {
            env.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or_else(|| panic!("{k} missing in mailstack.env")).to_string()
        };
        let s = Stack {
            dir: dir.clone(),
            imap_port: get("MAILSTACK_IMAP_PORT").parse().unwrap(),
            smtp_port: get("MAILSTACK_SMTP_PORT").parse().unwrap(),
            imaps_port: get("MAILSTACK_IMAPS_PORT").parse().unwrap(),
            ca_cert: get("MAILSTACK_CA_CERT").into(),
        };
        for port in [s.imap_port, s.smtp_port] {
            TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| {
                panic!("the mail stack does not answer on 127.0.0.1:{port} ({e}): start it with `bash deploy/mailstack/start.sh`")
            });
        }
        s
    })
}

/// A value of the running stack's `mailstack.env` (e.g. `MAILSTACK_SINK_PORT`).
pub fn stack_value(key: &str) -> String {
    let env = std::fs::read_to_string(stack().dir.join("mailstack.env")).unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in mailstack.env"))
        .to_string()
}

/// Serialises tests that use the shared accounts.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the serial lock, lets Postfix finish (or drop) mail of earlier tests, and
/// empties every account.
pub fn fresh() -> MutexGuard<'static, ()> {
    let g = serial();
    drain_postfix();
    for u in USERS {
        reset(u);
    }
    g
}

pub fn addr(user: &str) -> String {
    if user.contains('@') { user.to_string() } else { format!("{user}@example.org") }
}

pub fn imap(user: &str) -> imap::Session<Box<dyn imap::ImapConnection>> {
    imap_at(stack().imap_port, user)
}

/// A session as `user` on the Dovecot listening on `port` (a second stack of a test's own).
pub fn imap_at(port: u16, user: &str) -> imap::Session<Box<dyn imap::ImapConnection>> {
    let client = imap::ClientBuilder::new("127.0.0.1", port)
        .mode(imap::ConnectionMode::Plaintext)
        .connect()
        .expect("IMAP connect");
    client.login(addr(user), "secret").map_err(|(e, _)| e).expect("IMAP login")
}

/// Waits up to 10 s for Postfix's queue to empty, then deletes what is left.
pub fn drain_postfix() {
    let conf = stack().dir.join("etc/postfix");
    let deadline = Instant::now() + Duration::from_secs(10);
    let _ = Command::new("postqueue").arg("-c").arg(&conf).arg("-f").env("MAIL_CONFIG", &conf).output();
    loop {
        let out = Command::new("postqueue").arg("-c").arg(&conf).arg("-p").env("MAIL_CONFIG", &conf).output();
        let empty = out.map(|o| String::from_utf8_lossy(&o.stdout).contains("Mail queue is empty")).unwrap_or(true);
        if empty {
            return;
        }
        if Instant::now() > deadline {
            let _ =
                Command::new("postsuper").arg("-c").arg(&conf).arg("-d").arg("ALL").env("MAIL_CONFIG", &conf).output();
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until Postfix's queue is empty: every mail handed to it (by the test or by
/// outreach) has been delivered to its mailbox. The positive event before an absence
/// check: after it, a mail that is not in a mailbox was never sent. Fails after 30 s.
pub fn wait_delivered() {
    wait_delivered_in(&stack().dir);
}

/// [`wait_delivered`] for the stack in `dir` (a second stack of a test's own).
pub fn wait_delivered_in(dir: &Path) {
    let conf = dir.join("etc/postfix");
    let deadline = Instant::now() + Duration::from_secs(30);
    let _ = Command::new("postqueue").arg("-c").arg(&conf).arg("-f").env("MAIL_CONFIG", &conf).output();
    loop {
        let out = Command::new("postqueue").arg("-c").arg(&conf).arg("-p").env("MAIL_CONFIG", &conf).output().unwrap();
        let queue = String::from_utf8_lossy(&out.stdout).to_string();
        if queue.contains("Mail queue is empty") {
            return;
        }
        assert!(Instant::now() < deadline, "Postfix still holds mail after 30 s:\n{queue}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The messages in `user`'s INBOX whose subject contains `needle`.
pub fn with_subject(user: &str, needle: &str) -> Vec<ParsedMail> {
    parsed(user, "INBOX").into_iter().filter(|m| m.subject.contains(needle)).collect()
}

/// Waits (up to `timeout`) until `user`'s INBOX holds `n` messages whose subject
/// contains `needle`; returns those found.
pub fn wait_subject(user: &str, needle: &str, n: usize, timeout: Duration) -> Vec<ParsedMail> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = with_subject(user, needle);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `f` holds (polling), failing with `what` after 20 s.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deletes every folder we may have created and empties the INBOX.
pub fn reset(user: &str) {
    let mut s = imap(user);
    let names: Vec<String> = s.list(None, Some("*")).unwrap().iter().map(|n| n.name().to_string()).collect();
    for n in names {
        if !SPECIAL.contains(&n.as_str()) {
            let _ = s.delete(&n);
        }
    }
    s.select("INBOX").unwrap();
    s.store("1:*", "+FLAGS.SILENT (\\Deleted)").ok();
    s.expunge().unwrap();
    let _ = s.logout();
}

/// Raw messages in a folder (empty when the folder does not exist).
pub fn fetch_all(user: &str, folder: &str) -> Vec<Vec<u8>> {
    let mut s = imap(user);
    let out = match s.examine(folder) {
        Ok(mb) if mb.exists > 0 => {
            s.fetch("1:*", "BODY.PEEK[]").unwrap().iter().filter_map(|f| f.body().map(<[u8]>::to_vec)).collect()
        }
        _ => Vec::new(),
    };
    let _ = s.logout();
    out
}

/// The flags of every message in a folder.
pub fn flags(user: &str, folder: &str) -> Vec<Vec<String>> {
    let mut s = imap(user);
    s.examine(folder).unwrap();
    let out =
        s.fetch("1:*", "FLAGS").unwrap().iter().map(|f| f.flags().iter().map(|x| format!("{x:?}")).collect()).collect();
    let _ = s.logout();
    out
}

pub fn count(user: &str, folder: &str) -> u32 {
    let mut s = imap(user);
    let n = s.examine(folder).map(|m| m.exists).unwrap_or(0);
    let _ = s.logout();
    n
}

pub fn parsed(user: &str, folder: &str) -> Vec<ParsedMail> {
    fetch_all(user, folder).iter().map(|r| parse(r).expect("parse")).collect()
}

/// Waits until `folder` of `user` holds at least `n` messages; returns the count.
pub fn wait_count(user: &str, folder: &str, n: u32, timeout: Duration) -> u32 {
    let deadline = Instant::now() + timeout;
    loop {
        let c = count(user, folder);
        if c >= n || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn append(user: &str, folder: &str, raw: &[u8]) {
    let mut s = imap(user);
    s.append(folder, raw).finish().unwrap_or_else(|e| panic!("APPEND to {folder}: {e}"));
    let _ = s.logout();
}

fn smtp() -> &'static SmtpTransport {
    static T: OnceLock<SmtpTransport> = OnceLock::new();
    T.get_or_init(|| SmtpTransport::builder_dangerous("127.0.0.1").port(stack().smtp_port).build())
}

/// Sends a raw message over SMTP. `envelope_from` None is the null sender `<>`.
pub fn send_raw(envelope_from: Option<&str>, to: &str, raw: &[u8]) {
    let env = Envelope::new(envelope_from.map(|f| addr(f).parse().unwrap()), vec![addr(to).parse().unwrap()]).unwrap();
    smtp().send_raw(&env, raw).expect("SMTP send");
}

static WEB_SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

/// A minimal HTTP/1.1 client for the daemon's pages: `(status, body)`; status 0 when
/// nothing answers.
pub fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    use std::io::Write;
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let Ok(mut s) = std::net::TcpStream::connect(host) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Where the logs of every daemon and CLI run of the test run are kept (debug level for
/// outreach), for the log check that `deploy/test.sh` runs after the suite
/// (`deploy/check_logs.py`: no full address, password or link token in any log line).
pub fn log_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("it-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A unique Message-ID for test mail.
pub fn new_id() -> String {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("t{}.{}.{}@test.example", std::process::id(), n, Instant::now().elapsed().as_nanos())
}

/// A simple mail. `headers` are extra header lines (without the trailing newline).
pub fn mail(from: &str, subject: &str, body: &str, headers: &[&str]) -> (String, Vec<u8>) {
    let id = new_id();
    let mut raw = format!(
        "From: {from}\r\nTo: contact@example.org\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    );
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    raw.push_str(&body.replace('\n', "\r\n"));
    raw.push_str("\r\n");
    (id, raw.into_bytes())
}

/// Sends a simple mail from `from_user` to contact@ and returns its Message-ID.
pub fn send_mail(from_user: &str, subject: &str, body: &str, headers: &[&str]) -> String {
    let (id, raw) = mail(&addr(from_user), subject, body, headers);
    let envelope = from_user.rsplit_once('<').map_or(from_user, |(_, a)| a.trim_end_matches('>'));
    send_raw(Some(envelope), "contact", &raw);
    id
}

/// An outreach instance: its own folder, database and config.
pub struct TestApp {
    /// Base URL of the daemon's web endpoints.
    pub web: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
    pub env: Vec<(String, String)>,
}

impl TestApp {
    /// Watches `user`'s INBOX and sends as that user.
    pub fn new(user: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outreach.db");
        let config = dir.path().join("outreach.toml");
        let st = stack();
        let web_port = 18200 + WEB_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 500;
        std::fs::write(
            &config,
            format!(
                r#"secret = "integration-test-secret-0123456789abcdef"
[database]
path = "{db}"
[imap]
host = "127.0.0.1"
port = {imap}
security = "none"
username = "{user}"
password = "secret"
poll_interval = 1
[smtp]
host = "127.0.0.1"
port = {smtp}
security = "none"
from = "Netwerk Met Andere Ogen <{user}>"
retry_base = 1
[coordinator]
address = "coordinator@example.org"
[web]
listen = "127.0.0.1:{web}"
base_url = "http://127.0.0.1:{web}"
"#,
                web = web_port,
                db = db.display(),
                imap = st.imap_port,
                smtp = st.smtp_port,
                user = addr(user)
            ),
        )
        .unwrap();
        Self { dir, config, db, env: Vec::new(), web: format!("http://127.0.0.1:{web_port}") }
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run_cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "outreach {} failed: {stdout}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Imports these addresses as active subscribers (with consent from 2025-01-01).
    pub fn import_active(&self, emails: impl IntoIterator<Item = String>) {
        let mut csv = String::from("email,consent_at\n");
        for e in emails {
            csv.push_str(&format!("{e},2025-01-01\n"));
        }
        let file = self.dir.path().join(format!("import-{}.csv", new_id()));
        std::fs::write(&file, csv).unwrap();
        self.ok(&["subscribers", "import", file.to_str().unwrap()]);
    }

    /// The same instance (folder, database, config) with a newsletter schedule.
    pub fn clone_with_schedule(&self, cron: &str) -> TestApp {
        let mut env = self.env.clone();
        env.push(("OUTREACH_NEWSLETTER__SCHEDULE".into(), cron.into()));
        TestApp {
            web: self.web.clone(),
            dir: tempfile::tempdir().unwrap(),
            config: self.config.clone(),
            db: self.db.clone(),
            env,
        }
    }

    /// Leaves `[web] listen` unset (the default address).
    pub fn without_web_listen(self) -> Self {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("listen =")).collect();
        std::fs::write(&self.config, kept.join("\n") + "\n").unwrap();
        self
    }

    /// A statement on the database (read-write), for setting up a test.
    pub fn exec(&self, q: &str) {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch(q).unwrap();
    }

    /// Waits until the daemon's web endpoints answer.
    pub fn wait_web(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while http("GET", &format!("{}/health", self.web), "").0 != 200 {
            assert!(Instant::now() < deadline, "web endpoints did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds an `OUTREACH_*` override.
    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The test clock of this instance: every command it runs reads its time from here
    /// (`OUTREACH_CLOCK_FILE`); without the file the clock is the system clock.
    pub fn clock_file(&self) -> PathBuf {
        self.db.with_extension("clock")
    }

    /// Sets the instance's clock (a running daemon follows within a second): "now" is
    /// `t` at this moment and runs on from there.
    pub fn set_clock(&self, t: chrono::DateTime<chrono::Utc>) {
        let tmp = self.db.with_extension("clock.tmp");
        std::fs::write(&tmp, outreach::domain::time::ts(t)).unwrap();
        std::fs::rename(&tmp, self.clock_file()).unwrap();
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_outreach"));
        c.arg("--config").arg(&self.config).env("RUST_LOG", "info,outreach=debug").env_remove("OUTREACH_CONFIG");
        c.env("OUTREACH_CLOCK_FILE", self.clock_file());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run_cli(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("run outreach");
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::write(log_dir().join(format!("cli-{}-{n}.log", std::process::id())), &out.stderr);
        out
    }

    /// `outreach poll --once`, which must succeed.
    pub fn poll(&self) -> String {
        let out = self.run_cli(&["poll", "--once"]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "poll --once failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// `outreach inbox list --json`.
    pub fn list(&self, args: &[&str]) -> Vec<Value> {
        let mut a = vec!["inbox", "list", "--json"];
        a.extend_from_slice(args);
        let out = self.run_cli(&a);
        assert!(out.status.success(), "inbox list failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("inbox list --json prints JSON")
    }

    pub fn status_json(&self) -> Value {
        let out = self.run_cli(&["status", "--json"]);
        assert!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Starts `outreach run`, logging to a file in the test folder.
    pub fn spawn(&self) -> Daemon {
        let log_path = log_dir().join(format!(
            "daemon-{}-{}.log",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = self.cmd().arg("run").stdout(Stdio::null()).stderr(log).spawn().expect("spawn outreach run");
        Daemon { child: Some(child), log: log_path }
    }

    /// Starts `outreach run` and waits until it has taken over the database.
    pub fn spawn_ready(&self) -> Daemon {
        let d = self.spawn();
        let pid = d.child.as_ref().unwrap().id();
        let q = format!("SELECT COUNT(*) FROM daemon_state WHERE key = 'daemon' AND value = 'running (pid {pid})'");
        assert_eq!(self.wait_sql(&q, 1, Duration::from_secs(20)), 1, "daemon did not start:\n{}", d.log_text());
        d
    }

    /// A read-only look at the database.
    pub fn sql<T: rusqlite::types::FromSql>(&self, q: &str) -> T {
        self.try_sql(q).unwrap()
    }

    fn try_sql<T: rusqlite::types::FromSql>(&self, q: &str) -> rusqlite::Result<T> {
        let c = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        c.busy_timeout(Duration::from_secs(10))?;
        c.query_row(q, [], |r| r.get(0))
    }

    /// Waits until the SQL count query returns at least `n`. A database that a starting daemon has
    /// created but not yet migrated counts as 0.
    pub fn wait_sql(&self, q: &str, n: i64, timeout: Duration) -> i64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v: i64 = match self.try_sql(q) {
                Ok(v) => v,
                Err(e) if !self.db.exists() || e.to_string().contains("no such table") => 0,
                Err(e) => panic!("{q}: {e}"),
            };
            if v >= n || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A running `outreach run`; killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("daemon did not stop within 20 s of SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs deploy/mailstack/restart.sh for one server.
pub fn stack_ctl(what: &str, action: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailstack/restart.sh");
    let st = Command::new("bash").arg(script).arg(&stack().dir).arg(what).arg(action).status().unwrap();
    assert!(st.success(), "restart.sh {what} {action} failed");
}

/// The corpus of real-world mails: tests/fixtures/corpus in the repository (see
/// tests/fixtures/README.md), or the directory in OUTREACH_CORPUS.
pub fn corpus_dir() -> PathBuf {
    std::env::var("OUTREACH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus"))
}

/// The corpus directory and its .eml files; fails when the corpus is missing or empty, so
/// the corpus tests never pass without having read it.
pub fn corpus() -> (PathBuf, Vec<PathBuf>) {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "the mail corpus is missing: {} is not a directory (the corpus is part of the \
         repository, in tests/fixtures/corpus; OUTREACH_CORPUS, when set, replaces it)",
        dir.display()
    );
    let files = eml_files(&dir);
    assert!(!files.is_empty(), "the mail corpus in {} has no .eml files", dir.display());
    (dir, files)
}

/// Every .eml file below `dir`, sorted.
pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
