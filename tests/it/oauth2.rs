//! OAuth2 end to end, against a real Dovecot and Postfix: a SECOND mail stack in its own
//! directory on its own ports (the shared one stays as it is), started with
//! `MAILSTACK_OAUTH2=1`: Dovecot's oauth2 passdb checks JWTs locally with a key this test
//! writes, so only a valid, unexpired token for the mailbox gets in, on IMAP and, through
//! Dovecot SASL, on Postfix's submission port. A token endpoint runs in this process
//! (plain HTTP on 127.0.0.1): client credentials, device code and refresh tokens with
//! strict rotation; it can refuse a secret, revoke logins and be down.
//!
//! Every outreach run here logs at trace level; no token or secret may appear in any line.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use outreach::inbox::parse::{ParsedMail, parse};
use serde_json::{Value, json};

use crate::helpers::*;

const T: Duration = Duration::from_secs(30);
/// How long the endpoint's tokens live: short, so that the tests see them expire.
const LIFE: u64 = 20;
const CLIENT_ID: &str = "outreach-test-app";

// The second stack's ports (the shared one uses 1143, 1993, 1024, 2525, 1587, 1465, 2526).
const IMAP: u16 = 31143;
const IMAPS: u16 = 31993;
const LMTP: u16 = 31024;
const SMTP: u16 = 32525;
const SUBMISSION: u16 = 31587;
const SMTPS: u16 = 31465;
const SINK: u16 = 32526;

/// The second stack, with OAuth2 on; stopped when dropped.
struct OAuthStack {
    dir: PathBuf,
    key: Vec<u8>,
}

impl OAuthStack {
    fn start() -> Self {
        let dir = PathBuf::from("/tmp/outreach-oauth2-stack");
        let key: [u8; 32] = rand::random();
        let key_file = PathBuf::from("/tmp/outreach-oauth2-stack.key");
        std::fs::write(&key_file, STANDARD.encode(key)).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailstack/start.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(&dir)
            .arg("--fresh")
            .env("MAILSTACK_OAUTH2", "1")
            .env("MAILSTACK_OAUTH2_KEY_FILE", &key_file)
            .envs(
                [
                    ("MAILSTACK_IMAP_PORT", IMAP),
                    ("MAILSTACK_IMAPS_PORT", IMAPS),
                    ("MAILSTACK_LMTP_PORT", LMTP),
                    ("MAILSTACK_SMTP_PORT", SMTP),
                    ("MAILSTACK_SUBMISSION_PORT", SUBMISSION),
                    ("MAILSTACK_SMTPS_PORT", SMTPS),
                    ("MAILSTACK_SINK_PORT", SINK),
                ]
                .map(|(k, v)| (k, v.to_string())),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the OAuth2 mail stack did not start:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir, key: key.to_vec() }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("etc/tls/ca.crt")
    }

    /// Successful XOAUTH2 logins of contact@ that Dovecot logged (IMAP).
    fn xoauth2_logins(&self) -> usize {
        let log = std::fs::read_to_string(self.dir.join("log/dovecot.log")).unwrap_or_default();
        log.matches("Login: user=<contact@example.org>, method=XOAUTH2").count()
    }

    fn mails(&self, user: &str, needle: &str) -> Vec<ParsedMail> {
        fetch_all_on(IMAP, user, "INBOX")
            .iter()
            .map(|r| parse(r).unwrap())
            .filter(|m| m.subject.contains(needle))
            .collect()
    }

    fn wait_mails(&self, user: &str, needle: &str, n: usize) -> Vec<ParsedMail> {
        let deadline = Instant::now() + T;
        loop {
            let found = self.mails(user, needle);
            if found.len() >= n || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Mail from `from` to contact@, by the stack's open SMTP port; returns the subject.
    /// (Each sender gets one auto-reply a day: a test that wants several uses several.)
    fn mail_to_contact(&self, from: &str, subject: &str) -> String {
        let (_, raw) = mail(from, subject, "Hallo,\n\nIk heb een vraag over het netwerk.\n\nGroet", &[]);
        let mut s = TcpStream::connect(("127.0.0.1", SMTP)).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut expect = |code: &str| {
            let mut line = String::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    break;
                }
            }
            assert!(line.starts_with(code), "SMTP said {line:?}, expected {code}");
        };
        expect("220");
        for (cmd, code) in [
            ("EHLO test.example\r\n", "250"),
            (&format!("MAIL FROM:<{from}>\r\n"), "250"),
            ("RCPT TO:<contact@example.org>\r\n", "250"),
            ("DATA\r\n", "354"),
        ] {
            s.write_all(cmd.as_bytes()).unwrap();
            expect(code);
        }
        s.write_all(&raw).unwrap();
        s.write_all(b".\r\nQUIT\r\n").unwrap();
        expect("250");
        subject.to_string()
    }
}

impl Drop for OAuthStack {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mailstack/stop.sh");
        let _ = Command::new("bash").arg(script).arg(&self.dir).stdout(Stdio::null()).status();
    }
}

/// The token endpoint's state.
struct Auth {
    key: Vec<u8>,
    port: u16,
    secret: String,
    down: bool,
    /// Every access and refresh token handed out (none may show up in a log).
    issued: Vec<String>,
    /// Refresh tokens that still work (each works once: strict rotation).
    refresh: HashSet<String>,
    /// Device codes: (device code, user code, approved).
    devices: Vec<(String, String, bool)>,
    access_tokens: usize,
    seq: u64,
}

/// A token endpoint on 127.0.0.1 that signs HS256 JWTs with the key Dovecot checks.
struct TokenServer {
    state: Arc<Mutex<Auth>>,
    quit: Arc<AtomicBool>,
    port: u16,
}

impl TokenServer {
    fn start(key: &[u8], secret: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Auth {
            key: key.to_vec(),
            port,
            secret: secret.to_string(),
            down: false,
            issued: Vec::new(),
            refresh: HashSet::new(),
            devices: Vec::new(),
            access_tokens: 0,
            seq: 0,
        }));
        let quit = Arc::new(AtomicBool::new(false));
        let (st, q) = (state.clone(), quit.clone());
        std::thread::spawn(move || {
            let mut listener = Some(listener);
            while !q.load(Ordering::SeqCst) {
                let down = st.lock().unwrap().down;
                match (&listener, down) {
                    (Some(_), true) => listener = None, // closed: connections are refused
                    (None, false) => listener = TcpListener::bind(("127.0.0.1", port)).ok(),
                    _ => {}
                }
                let Some(l) = &listener else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = handle(&st, s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { state, quit, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn set(&self, f: impl FnOnce(&mut Auth)) {
        f(&mut self.state.lock().unwrap());
    }
    fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }
    fn access_tokens(&self) -> usize {
        self.state.lock().unwrap().access_tokens
    }
    /// The person logs in in the browser with this code.
    fn approve(&self, user_code: &str) -> bool {
        let mut st = self.state.lock().unwrap();
        let found = st.devices.iter_mut().find(|d| d.1 == user_code);
        found.map(|d| d.2 = true).is_some()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::SeqCst);
    }
}

fn handle(state: &Mutex<Auth>, mut s: TcpStream) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut request = String::new();
    r.read_line(&mut request)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    let form: Vec<(String, String)> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (status, answer) = answer(&mut state.lock().unwrap(), path, &get);
    let body = answer.to_string();
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn answer(st: &mut Auth, path: &str, get: &dyn Fn(&str) -> String) -> (&'static str, Value) {
    let error = |code: &str, description: &str| json!({"error": code, "error_description": description});
    if get("client_id") != CLIENT_ID {
        return ("401 Unauthorized", error("invalid_client", "AADSTS700016: Application not found in the directory."));
    }
    st.seq += 1;
    match (path, get("grant_type").as_str()) {
        ("/devicecode", _) => {
            let (device, user) = (format!("dev-{}-{}", st.seq, rand::random::<u64>()), format!("KQ{}-TEST", st.seq));
            st.devices.push((device.clone(), user.clone(), false));
            let page = format!("http://127.0.0.1:{}/device", st.port);
            (
                "200 OK",
                json!({"device_code": device, "user_code": user, "verification_uri": page, "expires_in": 600, "interval": 1}),
            )
        }
        ("/token", "client_credentials") if get("client_secret") == st.secret => ("200 OK", issue(st, false)),
        ("/token", "client_credentials") => (
            "401 Unauthorized",
            error(
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 4f1c\r\nCorrelation ID: 9a2e",
            ),
        ),
        ("/token", "urn:ietf:params:oauth:grant-type:device_code") => {
            let code = get("device_code");
            match st.devices.iter().position(|d| d.0 == code) {
                Some(i) if st.devices[i].2 => {
                    st.devices.remove(i);
                    ("200 OK", issue(st, true))
                }
                Some(_) => ("400 Bad Request", error("authorization_pending", "AADSTS70016: pending")),
                None => ("400 Bad Request", error("expired_token", "AADSTS70019: expired")),
            }
        }
        ("/token", "refresh_token") if st.refresh.remove(&get("refresh_token")) => ("200 OK", issue(st, true)),
        ("/token", "refresh_token") => (
            "400 Bad Request",
            error(
                "invalid_grant",
                "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            ),
        ),
        _ => ("400 Bad Request", error("unsupported_grant_type", "no")),
    }
}

/// A token response: a JWT for contact@ that lives [`LIFE`] seconds, and a refresh token.
fn issue(st: &mut Auth, with_refresh: bool) -> Value {
    let now = chrono::Utc::now().timestamp();
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let head = part(json!({"alg": "HS256", "typ": "JWT"}));
    let claims = part(
        json!({"sub": "contact@example.org", "email": "contact@example.org", "iat": now, "exp": now + LIFE as i64, "jti": st.seq}),
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&st.key).unwrap();
    mac.update(format!("{head}.{claims}").as_bytes());
    let jwt = format!("{head}.{claims}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    st.issued.push(jwt.clone());
    st.access_tokens += 1;
    let mut v = json!({"token_type": "Bearer", "access_token": jwt, "expires_in": LIFE});
    if with_refresh {
        let refresh = format!("rt-{}-{}", st.seq, rand::random::<u64>());
        st.refresh.insert(refresh.clone());
        st.issued.push(refresh.clone());
        v["refresh_token"] = json!(refresh);
    }
    v
}

fn unescape(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An outreach instance on the OAuth2 stack: IMAP and submission over STARTTLS with the
/// stack's CA, `[oauth2]` pointing at the token server. `smtp` replaces the [smtp] keys
/// after host, port and from; `oauth2` adds keys to [oauth2]. Logs at trace level.
fn oauth_app(stack: &OAuthStack, server: &TokenServer, secret: &str, smtp: &str, oauth2: &str) -> TestApp {
    TestApp::with_config(&format!(
        r#"[imap]
host = "127.0.0.1"
port = {IMAP}
security = "starttls"
ca_file = "{ca}"
auth = "oauth2"
username = "contact@example.org"
poll_interval = 1
[smtp]
host = "127.0.0.1"
from = "Netwerk Met Andere Ogen <contact@example.org>"
retry_base = 1
{smtp}
[oauth2]
provider = "custom"
client_id = "{CLIENT_ID}"
token_url = "{token}"
device_url = "{device}"
scope = "https://outlook.office365.com/.default"
{oauth2}
"#,
        ca = stack.ca().display(),
        token = server.url("/token"),
        device = server.url("/devicecode"),
    ))
    .with_env("RUST_LOG", "trace")
    .with_env("OUTREACH_OAUTH2__CLIENT_SECRET", secret)
}

/// The [smtp] keys for the submission port with XOAUTH2.
fn smtp_xoauth2(stack: &OAuthStack) -> String {
    format!(
        "port = {SUBMISSION}\nsecurity = \"starttls\"\nca_file = \"{}\"\nauth = \"oauth2\"\nusername = \"contact@example.org\"",
        stack.ca().display()
    )
}

/// What each test starts with: the serial lock, the time it began (for the log check),
/// the OAuth2 stack and a token endpoint that expects `secret`.
fn begin(secret: &str) -> (std::sync::MutexGuard<'static, ()>, std::time::SystemTime, OAuthStack, TokenServer) {
    let guard = serial();
    let started = std::time::SystemTime::now();
    let stack = OAuthStack::start();
    let server = TokenServer::start(&stack.key, secret);
    (guard, started, stack, server)
}

/// What each test ends with: no log line of any outreach run since `since` holds a token
/// the endpoint issued, or one of `more` (secrets, codes).
fn assert_nothing_leaked(since: std::time::SystemTime, server: &TokenServer, more: &[&str]) {
    let mut secrets = server.issued();
    secrets.extend(more.iter().map(|s| s.to_string()));
    let mut lines = 0;
    for e in std::fs::read_dir(log_dir()).unwrap() {
        let p = e.unwrap().path();
        if std::fs::metadata(&p).and_then(|m| m.modified()).is_ok_and(|m| m < since) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        lines += text.lines().count();
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{} holds a secret or token", p.display());
        }
        assert!(!text.contains("auth=Bearer "), "{} holds an XOAUTH2 string", p.display());
    }
    assert!(lines > 0, "no logs were written");
}

/// The `oauth2.<side>` object of `status --json`.
fn login_state(app: &TestApp, side: &str) -> Value {
    app.status_json()["oauth2"][side].clone()
}

#[test]
fn the_daemon_files_and_answers_over_xoauth2_across_token_expiries_and_a_forced_logout() {
    let secret = format!("app-secret-{}", rand::random::<u64>());
    let (_g, started, stack, server) = begin(&secret);
    let app = oauth_app(&stack, &server, &secret, &smtp_xoauth2(&stack), "flow = \"client_credentials\"");
    let mut d = app.spawn_ready();

    // Mail arrives over about three token lives; each is filed and answered once. In the
    // middle the server ends the IDLE session (BYE), as Exchange does for an expired token.
    let mut subjects = Vec::new();
    let began = Instant::now();
    for n in 0..6 {
        if n == 3 {
            let kicked = Command::new("doveadm")
                .arg("-c")
                .arg(stack.dir.join("etc/dovecot/dovecot.conf"))
                .args(["kick", "contact@example.org"])
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&kicked.stdout).contains("kicked"), "{kicked:?}");
        }
        // Foreign senders: their answers are kept in catchall@.
        let from = format!("ouder{n}@ouders.test");
        let subject = stack.mail_to_contact(&from, &format!("Vraag {n} over XOAUTH2 {}", new_id()));
        let replies = stack.wait_mails("catchall", &subject, 1);
        assert_eq!(replies.len(), 1, "no answer to {subject:?}:\n{}", d.log_text());
        subjects.push(subject);
        // Spread the mail over the token lives (pacing only; nothing is asserted on time).
        let next = began + Duration::from_secs(11 * (n + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    wait_delivered_in(&stack.dir);
    for s in &subjects {
        assert_eq!(stack.mails("catchall", s).len(), 1, "{s:?} answered once");
    }
    let filed = app.list(&[]);
    assert_eq!(filed.len(), subjects.len(), "each mail filed once: {filed:#?}");
    assert!(filed.iter().all(|m| m["auto_replied"] == true && m["moved"] == true), "{filed:#?}");
    assert_eq!(fetch_all_on(IMAP, "contact", "INBOX").len(), 0, "everything left the inbox");

    // The tokens expired and were renewed several times, and the IMAP session logged in
    // again with each (plus once after the forced logout).
    assert!(server.access_tokens() >= 3, "{} tokens fetched", server.access_tokens());
    assert!(stack.xoauth2_logins() >= 4, "{} XOAUTH2 logins", stack.xoauth2_logins());
    let log = d.log_text();
    assert!(log.contains("due for renewal; logging in again"), "{log}");
    let status = app.status_json();
    assert_eq!(status["oauth2"]["imap"]["state"], "ok", "{status:#}");
    assert_eq!(status["oauth2"]["smtp"]["state"], "ok", "{status:#}");
    assert!(d.terminate().success());
    assert_nothing_leaked(started, &server, &[&secret]);
}

#[test]
fn a_device_code_login_is_kept_rotated_used_for_the_newsletter_and_a_revoked_one_says_so() {
    let (_g, started, stack, server) = begin("unused");
    let app = oauth_app(&stack, &server, "", &smtp_xoauth2(&stack), "flow = \"device_code\"");
    let status = app.ok(&["status"]);
    assert!(status.contains("not logged in yet: run `outreach login`"), "{status}");

    // `outreach login` shows the page and the code in Dutch and waits for the person.
    let mut login = app.cmd().arg("login").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut out = BufReader::new(login.stdout.take().unwrap());
    let mut shown = String::new();
    while !shown.contains("geldig") {
        assert!(out.read_line(&mut shown).unwrap() > 0, "outreach login ended early: {shown}");
    }
    assert!(shown.contains("Open deze pagina") && shown.contains(&server.url("/device")), "{shown}");
    let code = shown.lines().map(str::trim).find(|l| l.starts_with("KQ")).expect("a code").to_string();
    assert!(shown.contains("Vul daar deze code in"), "{shown}");
    assert!(server.approve(&code));
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(login.wait().unwrap().success(), "{shown}{rest}");
    assert!(rest.contains("Gelukt: je bent ingelogd"), "{rest}");
    let first: String = app.sql("SELECT refresh_token FROM oauth2_login");
    assert!(first.starts_with("rt-"));

    // Each run refreshes the token and keeps the rotated refresh token (the old one no
    // longer works at the endpoint): two passes in a row both log in.
    let subject = stack.mail_to_contact("alice@example.org", &format!("Vraag met apparaatcode {}", new_id()));
    app.poll();
    assert_eq!(stack.wait_mails("alice", &subject, 1).len(), 1);
    let second: String = app.sql("SELECT refresh_token FROM oauth2_login");
    assert_ne!(first, second, "the rotated refresh token is saved");
    app.poll();
    let third: String = app.sql("SELECT refresh_token FROM oauth2_login");
    assert_ne!(second, third);

    // The newsletter sender logs in with the same login.
    app.ok(&["subscribers", "add", "bob@example.org", "--name", "Bob", "--consent", "test"]);
    crate::newsletter::approved_story(&app, "Ouders aan tafel via XOAUTH2", "Een verhaal.");
    app.ok(&["newsletter", "send"]);
    assert_eq!(stack.wait_mails("bob", "Ouders aan tafel via XOAUTH2", 1).len(), 1);

    // The login is revoked: the next pass fails, and status says what to do.
    server.set(|a| a.refresh.clear());
    let out = app.run_cli(&["poll", "--once"]);
    assert!(!out.status.success());
    let imap = login_state(&app, "imap");
    assert_eq!(imap["problem"], "login_revoked", "{imap:#}");
    let status = app.ok(&["status"]);
    assert!(
        status.contains("The stored login is no longer valid (revoked, expired, or the password changed): run `outreach login` again"),
        "{status}"
    );
    assert!(status.contains("AADSTS50173"), "what the endpoint said is shown too: {status}");
    assert_nothing_leaked(started, &server, &[&code]);
}

#[test]
fn a_wrong_secret_and_an_unreachable_endpoint_speak_plainly_and_the_coordinator_is_told_once() {
    let secret = format!("the-right-secret-{}", rand::random::<u64>());
    let wrong = format!("an-old-secret-{}", rand::random::<u64>());
    let (_g, started, stack, server) = begin(&secret);
    // SMTP by the open port without AUTH: it works, so the notice goes out by mail.
    let app = oauth_app(
        &stack,
        &server,
        &wrong,
        &format!("port = {SMTP}\nsecurity = \"none\""),
        "flow = \"client_credentials\"\nalert_after_minutes = 30",
    );
    let mut d = app.spawn_ready();
    wait_until("the wrong secret is in status", || login_state(&app, "imap")["problem"] == "invalid_client");
    let status = app.ok(&["status"]);
    assert!(
        status.contains("The token endpoint refused the app's credentials (invalid client): check oauth2.client_id, oauth2.tenant and the client secret (its value, not its id)."),
        "{status}"
    );
    assert!(status.contains("AADSTS7000215") && !status.contains("Trace ID"), "{status}");

    // Past alert_after_minutes without a login: one mail to the coordinator and a log
    // line; an hour later the log says it again, and still only one mail.
    let t0 = chrono::Utc::now();
    app.set_clock(t0 + chrono::Duration::minutes(31));
    let notice = stack.wait_mails("coordinator", "inloggen op de contactmailbox lukt niet", 1);
    assert_eq!(notice.len(), 1, "{}", d.log_text());
    assert!(notice[0].text.contains("al 3") && notice[0].text.contains("minuten niet inloggen"), "{}", notice[0].text);
    assert!(notice[0].text.contains("invalid client"), "{}", notice[0].text);
    let repeats = || d.log_text().matches("no successful login for").count();
    wait_until("the log says it", || repeats() >= 1);
    app.set_clock(t0 + chrono::Duration::minutes(95));
    wait_until("the log says it again an hour later", || repeats() >= 2);
    wait_delivered_in(&stack.dir);
    assert_eq!(stack.mails("coordinator", "inloggen op de contactmailbox lukt niet").len(), 1, "told once");
    assert!(login_state(&app, "imap")["alerted_at"].is_string());
    assert!(d.terminate().success());

    // The endpoint is down: the pass fails and status says it cannot be reached.
    server.set(|a| a.down = true);
    assert!(!app.run_cli(&["poll", "--once"]).status.success());
    assert_eq!(login_state(&app, "imap")["problem"], "token_endpoint_unreachable");
    let status = app.ok(&["status"]);
    assert!(status.contains("The token endpoint cannot be reached: check the network"), "{status}");

    // Back, with the secret it expects: logging in works again and the mail is filed.
    server.set(|a| {
        a.down = false;
        a.secret = wrong.clone();
    });
    let subject = stack.mail_to_contact("alice@example.org", &format!("Weer bereikbaar {}", new_id()));
    app.poll();
    assert_eq!(stack.wait_mails("alice", &subject, 1).len(), 1);
    assert_eq!(login_state(&app, "imap")["state"], "ok");
    assert_nothing_leaked(started, &server, &[&secret, &wrong]);
}

#[test]
fn when_smtp_cannot_log_in_the_coordinator_finds_the_notice_flagged_in_the_review_folder() {
    let wrong = format!("an-expired-secret-{}", rand::random::<u64>());
    let (_g, started, stack, server) = begin("the-new-secret");
    // IMAP by password (it works), SMTP by XOAUTH2 with a secret the endpoint refuses.
    let app = oauth_app(&stack, &server, &wrong, &smtp_xoauth2(&stack), "alert_after_minutes = 30");
    let text = std::fs::read_to_string(&app.config).unwrap();
    let text = text.replace(
        "auth = \"oauth2\"\nusername = \"contact@example.org\"\npoll_interval",
        "password = \"secret\"\nusername = \"contact@example.org\"\npoll_interval",
    );
    std::fs::write(&app.config, text).unwrap();
    let mut d = app.spawn_ready();

    // A mail to answer: the answer cannot go out, and status says why.
    stack.mail_to_contact("alice@example.org", &format!("Vraag zonder antwoord {}", new_id()));
    wait_until("the SMTP login problem is in status", || login_state(&app, "smtp")["problem"] == "invalid_client");
    assert!(login_state(&app, "imap").is_null(), "IMAP logs in with its password");

    app.set_clock(chrono::Utc::now() + chrono::Duration::minutes(31));
    let review = || fetch_all_on(IMAP, "contact", "Te beoordelen");
    wait_until("the notice is in the review folder", || !review().is_empty());
    let notice = parse(&review()[0]).unwrap();
    assert!(notice.subject.contains("inloggen op de contactmailbox lukt niet"), "{}", notice.subject);
    assert!(notice.text.contains("mail te versturen") && notice.text.contains("invalid client"), "{}", notice.text);
    let mut s = imap_at(IMAP, "contact");
    s.examine("Te beoordelen").unwrap();
    let flags = s.fetch("1", "FLAGS").unwrap();
    assert!(flags.iter().next().unwrap().flags().contains(&imap::types::Flag::Flagged));
    let _ = s.logout();
    assert!(d.log_text().contains("told the coordinator in the review folder"), "{}", d.log_text());
    // An hour later the log says it again; the coordinator still has the one notice.
    app.set_clock(chrono::Utc::now() + chrono::Duration::minutes(95));
    wait_until("the log says it again", || d.log_text().matches("no successful login for").count() >= 2);
    assert_eq!(review().len(), 1, "one notice");
    assert!(d.terminate().success());
    assert_nothing_leaked(started, &server, &[&wrong]);
}
