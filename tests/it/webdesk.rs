//! The web desk (`/desk`) in a real browser: headless Chromium (Debian's `chromium`)
//! driven by `tests/browser/desk.mjs` and `pages.mjs` (puppeteer-core, axe-core) against
//! `outreach run` and the real mail stack. This side sends the mail, starts the daemon, sets a desk
//! password, runs the script, and checks the store and the mailboxes afterwards. Also
//! the login and CSRF rules over plain HTTP, without a browser.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, count, fresh, http, mail, send_raw, stack, wait_subject, wait_until};

const T: Duration = Duration::from_secs(30);
const DESK_USER: &str = "coordinator@example.org";
const PASSWORD: &str = "lang genoeg wachtwoord";

fn desk_app() -> TestApp {
    TestApp::new("contact").with_env("OUTREACH_DESK__USERS", DESK_USER).with_env("OUTREACH_DESK__SYNC_SECONDS", "1")
}

/// Sends a mail to the contact address and waits until it is filed; returns its row.
fn file(app: &TestApp, from: &str, subject: &str, body: &str, headers: &[&str]) -> Value {
    let (_, raw) = mail(from, subject, body, headers);
    let envelope = from.rsplit_once('<').map_or(from, |(_, a)| a.trim_end_matches('>'));
    send_raw(Some(envelope), "contact", &raw);
    crate::desk::filed(app, subject)
}

/// A question written in HTML (with a script, a tracking image, an event handler and a
/// `javascript:` link in it) with a PDF and a photo attached; checks what the CLI shows
/// of it and returns its row.
fn file_html_mail(app: &TestApp) -> Value {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let pdf = [b"%PDF-1.4\n".as_slice(), &[b'x'; 2391]].concat();
    let raw = format!(
        "From: Dirk Bakker <dirk@example.org>\r\nTo: contact@example.org\r\nSubject: Vraag over het verslag van de ouderavond\r\n\
         Message-ID: <{}>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0100\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
         --a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo,\r\n\r\nKun je het verslag van de ouderavond bekijken?\r\n\r\nDirk\r\n\
         --a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><head><style>body {{ display: none }}</style>\
         <script>window.mailScript = 1</script></head><body><p>Hallo,</p><p>Kun je het <b>verslag</b> van de ouderavond bekijken?</p>\
         <img src=\"https://tracker.invalid/pixel.gif\" onerror=\"window.mailScript = 2\">\
         <p><a href=\"javascript:window.mailScript = 3\">klik hier</a> of <a href=\"https://example.org/agenda\">de agenda</a></p>\
         <table><tr><td>Aanwezig</td><td>24 ouders</td></tr></table><p>Dirk</p></body></html>\r\n--a--\r\n\
         --m\r\nContent-Type: application/pdf; name=\"verslag ouderavond.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"verslag ouderavond.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --m\r\nContent-Type: image/jpeg; name=\"foto.jpg\"\r\nContent-Disposition: attachment; filename=\"foto.jpg\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--m--\r\n",
        crate::helpers::new_id(),
        b64(&pdf),
        b64(&[0xFF; 640]),
    );
    send_raw(Some("dirk@example.org"), "contact", raw.as_bytes());
    let row = crate::desk::filed(app, "Vraag over het verslag van de ouderavond");
    let id = row["id"].as_i64().unwrap();
    let json = show(app, id);
    let names: Vec<(&str, u64, &str)> = json["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["size"].as_u64().unwrap(), a["content_type"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("verslag ouderavond.pdf", 2400, "application/pdf"), ("foto.jpg", 640, "image/jpeg")]);
    assert!(json["body_html"].as_str().unwrap().contains("<b>verslag</b>"), "the HTML is kept as it came");
    // An automatic mail in HTML joins no conversation: its HTML is not kept (its text is).
    let auto = raw
        .replace(
            "From: Dirk Bakker <dirk@example.org>",
            "From: Nieuwsbrief <noreply@example.org>\r\nAuto-Submitted: auto-generated",
        )
        .replace("Vraag over het verslag van de ouderavond", "Nieuws van de school")
        .replace(&format!("<{}>", row["message_id"].as_str().unwrap()), &format!("<{}>", crate::helpers::new_id()));
    send_raw(Some("noreply@example.org"), "contact", auto.as_bytes());
    let automatic = show(app, crate::desk::filed(app, "Nieuws van de school")["id"].as_i64().unwrap());
    assert_eq!(automatic["category"], "automatic", "{automatic:#}");
    assert!(
        automatic["body_html"].is_null() && automatic["body"].as_str().unwrap().contains("verslag"),
        "{automatic:#}"
    );
    assert_eq!(automatic["attachments"].as_array().unwrap().len(), 2, "its attachments are still listed");
    let text = app.ok(&["inbox", "show", &id.to_string()]);
    assert!(
        text.contains("Attached:  verslag ouderavond.pdf (2.4 kB, application/pdf)")
            && text.contains("foto.jpg (640 bytes, image/jpeg)"),
        "{text}"
    );
    row
}

fn show(app: &TestApp, id: i64) -> Value {
    serde_json::from_str(&app.ok(&["inbox", "show", &id.to_string(), "--json"])).unwrap()
}

fn set_password(app: &TestApp, email: &str, password: &str) -> std::process::Output {
    let mut child = app
        .cmd()
        .args(["desk", "set-password", email])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `tests/browser/`, after checking that Chromium and the npm packages are there.
fn browser_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/puppeteer-core").is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and its npm packages: apt-get install chromium; (cd tests/browser && npm ci) \
         (bash deploy/test.sh does both)"
    );
    dir
}

/// Runs `node SCRIPT` in `tests/browser/` against `app` with `vars`; fails the test with
/// its output and the daemon's log unless every check passed.
fn run_browser(app: &TestApp, daemon: &crate::helpers::Daemon, script: &str, vars: &[(&str, String)]) {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let out = Command::new("node")
        .arg(script)
        .current_dir(browser_dir())
        .env("DESK_URL", &app.web)
        .env("DESK_USER", DESK_USER)
        .env("DESK_PASSWORD", PASSWORD)
        .env("IMAP_PORT", stack().imap_port.to_string())
        .env("MAIL_PASSWORD", "secret")
        .env("CLOCK_FILE", app.clock_file())
        .env("SCREENSHOT_DIR", &shots)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("run node tests/browser/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" passed, 0 failed"),
        "the browser test {script} failed:\n{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log_text()
    );
}

#[test]
fn the_web_desk_in_a_browser_logs_in_by_mail_answers_and_refuses_what_is_forged() {
    browser_dir();
    let _g = fresh();
    let app = desk_app();
    let mut daemon = app.spawn_ready();
    app.wait_web();

    let q = file(
        &app,
        "\"Alice Jansen\" <alice@example.org>",
        "Vraag over het oudergesprek",
        "Hallo,\n\nHoe kan ik ouders beter betrekken bij het oudergesprek op school? <b>Graag</b> een tip.\n\nAlice",
        &["Cc: Bob <bob@example.org>, contact@example.org"],
    );
    let other =
        file(&app, "bob@example.org", "Een tolk bij de ouderavond", "Hallo,\n\nKan er een tolk komen?\n\nBob", &[]);
    let third = file(
        &app,
        "Carla de Vries <carla@elders.example>",
        "Nog een vraag over de tolk",
        "Hallo,\n\nWelke talen spreekt de tolk?\n\nCarla",
        &[],
    );
    let html = file_html_mail(&app);
    let conv = |r: &Value| r["conversation_id"].as_i64().unwrap();

    // A password for the desk user (the CLI), and none for an address outside desk.users.
    let out = set_password(&app, DESK_USER, PASSWORD);
    assert!(out.status.success(), "set-password: {}", String::from_utf8_lossy(&out.stderr));
    let refused = set_password(&app, "alice@example.org", PASSWORD);
    assert!(!refused.status.success(), "only a desk user gets a password");
    assert!(!set_password(&app, DESK_USER, "kort").status.success(), "a short password is refused");
    let stored: String = app.sql("SELECT hash FROM desk_passwords");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(PASSWORD), "an argon2id hash is kept: {stored}");

    let vars = [
        ("CONV_QUESTION", conv(&q).to_string()),
        ("CONV_OTHER", conv(&other).to_string()),
        ("CONV_THIRD", conv(&third).to_string()),
        ("CONV_HTML", conv(&html).to_string()),
    ];
    run_browser(&app, &daemon, "desk.mjs", &vars);

    // Every action was recorded with the desk user's address; the refused POSTs added nothing.
    let id = q["id"].as_i64().unwrap();
    let view = show(&app, id);
    let events = view["conversation"]["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["note", "note", "answer", "reopen", "done", "answer"], "{events:#?}");
    assert!(events.iter().all(|e| e["actor"] == DESK_USER), "{events:#?}");
    assert_eq!(events[2]["detail"], "sent and closed");
    assert_eq!(view["conversation"]["status"], "in behandeling", "answered again by keyboard");

    // The answers arrive in Alice's mailbox, threaded, with Bob kept in Cc.
    let got = wait_subject("alice", "Re: Vraag over het oudergesprek", 2, T);
    assert_eq!(got.len(), 2, "both answers reach the sender");
    let first = got.iter().find(|m| m.text.contains("Begin met luisteren")).expect("the send-and-close answer");
    assert_eq!(first.cc.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["bob@example.org"]);
    assert!(first.text.contains("> Hoe kan ik ouders beter betrekken"), "quoted: {}", first.text);
    assert!(got.iter().any(|m| m.text.contains("vraag wat de ouders zelf willen")), "the keyboard answer");

    // Moved and merged.
    let o = show(&app, other["id"].as_i64().unwrap());
    assert_eq!(o["conversation"]["category"], "join");
    let merged: i64 = app.sql(&format!("SELECT merged_into FROM conversations WHERE id = {}", conv(&third)));
    assert_eq!(merged, conv(&other));
    wait_until("the moved mail in Aanmeldingen on the server", || count("contact", "Aanmeldingen") >= 1);

    // Only hashes are kept; the login mails' bytes are emptied once sent.
    let odd: i64 = app
        .sql("SELECT COUNT(*) FROM desk_login_links WHERE length(token_hash) <> 64 OR token_hash GLOB '*[^0-9a-f]*'");
    assert_eq!(odd, 0, "login links are kept as SHA-256 hex");
    let links: i64 = app.sql("SELECT COUNT(*) FROM desk_login_links");
    assert_eq!(links, 3, "the first login, the expired one, the keyboard login");
    let raw: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'desk_login' AND length(raw) > 0");
    assert_eq!(raw, 0, "no login link left in the outbox");
    let unknown: i64 =
        app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'desk_login' AND rcpt <> 'coordinator@example.org'");
    assert_eq!(unknown, 0, "no mail to an address outside desk.users");
    daemon.terminate();
}

/// The stories, newsletter, subscribers and privacy pages in a browser (`pages.mjs`), and
/// the public pages checked with axe-core too. This side sets up what the pages act on:
/// three subscribers (one whose server refuses mail), a story in a proof (made by the
/// schedule, as `newsletter.rs` does), a story with consent and one without; afterwards
/// it checks that every action was recorded with the desk user.
#[test]
fn the_desk_pages_approve_a_story_and_a_proof_remove_a_subscriber_and_export_and_erase_a_person() {
    browser_dir();
    let _g = fresh();
    let app = desk_app();
    app.ok(&["subscribers", "add", "alice@example.org", "--consent", "paper form"]);
    app.ok(&["subscribers", "add", "bob@example.org", "--name", "Bob de Boer", "--consent", "paper form"]);
    app.ok(&["subscribers", "add", "mallory@rejected.test", "--consent", "paper form"]);
    let proof_title = "Proef van de maand";
    let p = crate::newsletter::added_story(&app, proof_title, "Eerst de **proef**.");
    app.ok(&["stories", "approve", &p.to_string()]);
    crate::newsletter::poll_with_a_due_slot(&app, 0);
    let proof: String = app.sql("SELECT status FROM issues WHERE id = 1");
    assert_eq!(proof, "proof");
    let ready_title = "Samen aan tafel";
    let ready = crate::newsletter::added_story(&app, ready_title, "We zaten **samen** aan tafel.");
    let no_consent = crate::newsletter::added_story(&app, "Een tolk bij het gesprek", "De tolk hielp.");
    app.exec(&format!("UPDATE stories SET consent_at = NULL, consent_source = NULL WHERE id = {no_consent}"));
    let mut daemon = app.spawn_ready();
    app.wait_web();
    assert!(set_password(&app, DESK_USER, PASSWORD).status.success());

    let vars = [
        ("STORY_READY", ready.to_string()),
        ("STORY_NO_CONSENT", no_consent.to_string()),
        ("PROOF_TITLE", proof_title.to_string()),
        ("READY_TITLE", ready_title.to_string()),
        ("FAILING_RECIPIENT", "mallory@rejected.test".to_string()),
    ];
    run_browser(&app, &daemon, "pages.mjs", &vars);

    // Stories: approved and rejected by the desk user; the consent says how and by whom.
    let decided = |id: i64, col: &str| -> String { app.sql(&format!("SELECT {col} FROM stories WHERE id = {id}")) };
    assert_eq!(decided(ready, "status"), "approved");
    assert_eq!(decided(ready, "approved_by"), DESK_USER);
    assert_eq!(decided(no_consent, "approved_by"), DESK_USER);
    let consent = decided(no_consent, "consent_source");
    assert_eq!(consent, format!("coordinator: Aan de telefoon, 3 januari (desk: {DESK_USER})"));
    let added: String = app.sql(
        "SELECT source || ' | ' || status || ' | ' || rejected_by FROM stories WHERE title = 'Een nieuw verhaal van de balie'",
    );
    assert_eq!(added, format!("desk: {DESK_USER} | rejected | {DESK_USER}"));
    let body: String = app.sql("SELECT body_md FROM stories WHERE title = 'Een nieuw verhaal van de balie'");
    assert!(body.starts_with("Ouders weten **veel**."), "kept as Markdown: {body}");

    // The proof: approved by the desk user, sent, and sent again to the one it missed.
    let issue: String = app.sql("SELECT approved_by || ' | ' || note FROM issues WHERE id = 1");
    assert_eq!(issue, format!("desk: {DESK_USER} | resend to those it missed, by desk: {DESK_USER}"));
    assert_eq!(wait_subject("alice", proof_title, 1, T).len(), 1, "the approved proof reaches a subscriber");

    // Subscribers: Bob removed, then erased; Dirk active with the consent as typed;
    // Carla pending with a confirmation mail (which pages.mjs confirmed).
    let erased: i64 =
        app.sql("SELECT COUNT(*) FROM subscribers WHERE email = 'bob@example.org' OR name IS 'Bob de Boer'");
    assert_eq!(erased, 0, "Bob is erased");
    let suppressed: i64 = app.sql("SELECT COUNT(*) FROM suppressed");
    assert_eq!(suppressed, 1, "only a hash of Bob's address is kept");
    let dirk: String = app.sql(
        "SELECT status || ' | ' || source || ' | ' || consent_source FROM subscribers WHERE email = 'dirk@elders.example'",
    );
    let desk = format!("desk: {DESK_USER}");
    assert_eq!(dirk, format!("active | {desk} | {desk}: formulier op de bijeenkomst"));
    let carla: String = app.sql("SELECT source FROM subscribers WHERE email = 'carla@elders.example'");
    assert_eq!(carla, desk);
    assert_eq!(crate::newsletter::status_of(&app, "carla@elders.example"), "active", "confirmed by the link");
    assert_eq!(crate::newsletter::status_of(&app, "alice@example.org"), "unsubscribed", "by the unsubscribe page");
    daemon.terminate();
}

/// The rules without a browser: a page needs a session; a post needs its token.
#[test]
fn desk_pages_need_a_session_and_every_post_its_token() {
    let _g = fresh();
    let app = desk_app();
    let mut daemon = app.spawn_ready();
    app.wait_web();
    let (status, _) = http("GET", &format!("{}/desk/gesprekken", app.web), "");
    assert_eq!(status, 303, "to the login page");
    let (status, body) = http("GET", &format!("{}/desk/login", app.web), "");
    assert_eq!(status, 200);
    assert!(body.contains("lang=\"nl\"") && body.contains("name=\"csrf\""), "{body}");
    // No cookie, so no token to match: refused, and no mail queued.
    let (status, _) = http("POST", &format!("{}/desk/login", app.web), &format!("email={DESK_USER}"));
    assert_eq!(status, 403);
    let (status, _) = http("POST", &format!("{}/desk/gesprekken/1/afgehandeld", app.web), "csrf=x");
    assert_eq!(status, 403);
    let (status, _) =
        http("GET", &format!("{}/desk/login/bm90LWEtcmVhbC10b2tlbi1hdC1hbGwtMDEyMzQ1Njc4OQ", app.web), "");
    assert_eq!(status, 404, "an unknown link");
    let (status, css) = http("GET", &format!("{}/desk/desk.css", app.web), "");
    assert!(status == 200 && css.contains(":focus-visible"), "the style sheet");
    let queued: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'desk_login'");
    assert_eq!(queued, 0);
    daemon.terminate();
}

/// The response head of a GET (status line and headers), read raw.
fn head(url: &str) -> String {
    use std::io::Read;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_once("\r\n\r\n").map_or(resp.clone(), |(h, _)| h.to_string())
}

/// Behind https (`web.base_url`), every desk cookie is `Secure` too; desk pages have
/// their own CSP (no inline style) and are never cached.
#[test]
fn desk_cookies_are_secure_behind_https_and_pages_strict() {
    let _g = crate::helpers::serial();
    let app = desk_app().with_env("OUTREACH_WEB__BASE_URL", "https://balie.example.org");
    let mut daemon = app.spawn_ready();
    app.wait_web();
    let h = head(&format!("{}/desk/login", app.web)).to_ascii_lowercase();
    let cookie = h.lines().find(|l| l.starts_with("set-cookie: desk_csrf=")).unwrap_or_else(|| panic!("{h}"));
    for part in ["httponly", "samesite=strict", "path=/desk", "secure"] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let csp = h.lines().find(|l| l.starts_with("content-security-policy:")).unwrap();
    assert!(csp.contains("style-src 'self'") && !csp.contains("unsafe-inline") && !csp.contains("script"), "{csp}");
    assert!(h.contains("cache-control: no-store"), "{h}");
    assert!(h.contains("strict-transport-security"), "{h}");
    daemon.terminate();
}
