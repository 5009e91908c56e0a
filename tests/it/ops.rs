//! Running it on a server: `outreach doctor` against the real stack and against each
//! kind of breakage, and `outreach db backup` / `db check` during a newsletter send.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;
use crate::newsletter::approved_story;

/// The checks, in the order `doctor --json` prints them (documented in the README).
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

/// `doctor` in plain text and as JSON: (exit code, text, JSON).
fn doctor(app: &TestApp, env: &[(&str, &str)]) -> (i32, String, Value) {
    let run = |json: bool| -> Output {
        let mut c = app.cmd();
        c.args(["doctor", "--timeout", "5"]);
        if json {
            c.arg("--json");
        }
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        // Kept for the log check of deploy/test.sh (no password or full address in a log).
        std::fs::write(log_dir().join(format!("doctor-{}.log", new_id())), &out.stderr).unwrap();
        out
    };
    let text = run(false);
    let json = run(true);
    assert_eq!(text.status.code(), json.status.code(), "the same exit code with and without --json");
    let v: Value = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("doctor --json prints JSON ({e}): {}", String::from_utf8_lossy(&json.stdout)));
    (text.status.code().unwrap(), String::from_utf8_lossy(&text.stdout).to_string(), v)
}

fn check<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name}: {v}"))
}

/// Sends through the stack's submission port (STARTTLS + AUTH), as a real relay wants.
fn with_submission(app: TestApp) -> TestApp {
    let ca = stack().ca_cert.display().to_string();
    app.with_env("OUTREACH_SMTP__PORT", &stack_value("MAILSTACK_SUBMISSION_PORT"))
        .with_env("OUTREACH_SMTP__SECURITY", "starttls")
        .with_env("OUTREACH_SMTP__USERNAME", "contact@example.org")
        .with_env("OUTREACH_SMTP__PASSWORD", "secret")
        .with_env("OUTREACH_SMTP__CA_FILE", &ca)
}

#[test]
fn doctor_against_the_real_stack_is_all_green_and_its_json_is_stable() {
    let _g = fresh();
    let app = with_submission(TestApp::new("contact"));
    // The IMAP password from a file, as a systemd credential gives it.
    let pw = app.dir.path().join("imap-password");
    std::fs::write(&pw, "secret\n").unwrap();
    let app = app
        .with_env("OUTREACH_IMAP__PASSWORD", "not-this-one")
        .with_env("OUTREACH_IMAP__PASSWORD_FILE", pw.to_str().unwrap());
    std::fs::set_permissions(&app.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    app.ok(&["status"]); // creates the database
    let (code, text, v) = doctor(&app, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["failed"], 0);
    assert_eq!(v["warnings"], 0, "{text}");
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, CHECKS);
    for c in v["checks"].as_array().unwrap() {
        let expected = if c["name"] == "oauth2" { "skipped" } else { "ok" };
        assert_eq!(c["status"], expected, "{c}");
        assert!(c["summary"].as_str().is_some_and(|s| !s.is_empty()) && c["millis"].is_u64(), "{c}");
        assert!(c["fix"].is_null(), "{c}");
    }
    assert!(check(&v, "imap_capabilities")["summary"].as_str().unwrap().contains("IDLE, MOVE, UIDPLUS"));
    assert!(check(&v, "smtp_login")["summary"].as_str().unwrap().contains("logged in (AUTH)"));
    // The plain run came first and created the missing folders; the JSON run found them.
    assert!(text.contains("created Aanmeldingen, Vragen"), "{text}");
    assert!(check(&v, "imap_folders")["summary"].as_str().unwrap().contains("Aanmeldingen, Vragen"), "{v}");
    assert!(
        text.contains("[ok]      imap login") && text.contains("Everything the daemon needs is in order."),
        "{text}"
    );
    assert_eq!(count("contact", "Vragen"), 0, "the folders exist now, nothing was moved");

    // With the daemon running, its web address is taken by the daemon itself: still green.
    let _d = app.spawn_ready();
    app.wait_web();
    let (code, text, v) = doctor(&app, &[]);
    assert_eq!(code, 0, "{text}");
    let web = check(&v, "web")["summary"].as_str().unwrap();
    assert!(web.contains("served by the running daemon"), "{web}");
}

#[test]
fn doctor_says_what_is_wrong_in_plain_words_and_exits_non_zero() {
    let _g = fresh();
    let app = with_submission(TestApp::new("contact"));
    app.ok(&["status"]);
    let failed = |env: &[(&str, &str)], name: &str, sentence: &str, fix: &str| {
        let (code, text, v) = doctor(&app, env);
        assert_eq!(code, 1, "{env:?}: {text}");
        assert_eq!(v["ok"], false);
        let c = check(&v, name);
        assert_eq!(c["status"], "failed", "{env:?}: {c}");
        let summary = c["summary"].as_str().unwrap();
        assert!(summary.contains(sentence), "{env:?}: {summary}");
        assert!(c["fix"].as_str().unwrap().contains(fix), "{env:?}: {c}");
        assert!(text.contains(sentence) && text.contains("fix: ") && text.contains("FAILED"), "{text}");
        v
    };
    // Wrong IMAP password: the login fails, the checks that need it are skipped.
    let v = failed(
        &[("OUTREACH_IMAP__PASSWORD", "wrong")],
        "imap_login",
        "the IMAP server refused the login",
        "imap.password",
    );
    assert_eq!(check(&v, "imap_folders")["status"], "skipped");
    assert_eq!(check(&v, "smtp_login")["status"], "ok", "the other checks still run");
    // The IMAP server is down: a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    failed(&[("OUTREACH_IMAP__PORT", &port)], "imap_login", "cannot reach the IMAP server", "imap.port");
    // Wrong SMTP password.
    failed(&[("OUTREACH_SMTP__PASSWORD", "wrong")], "smtp_login", "the SMTP server refused the login", "smtp.password");
    // A bad config value: the key is named, nothing else runs.
    let v = failed(&[("OUTREACH_IMAP__SECURITY", "ssl")], "config", "imap.security", "OUTREACH_");
    assert!(v["checks"].as_array().unwrap().iter().skip(1).all(|c| c["status"] == "skipped"), "{v}");
    // The database readable by others.
    std::fs::set_permissions(&app.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    failed(&[], "database", "can be read by other users (mode 0644)", "chmod 600");
    std::fs::set_permissions(&app.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, text, _) = doctor(&app, &[]);
    assert_eq!(code, 0, "{text}");
    // A damaged database file.
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", app.db.display()));
    }
    std::fs::write(&app.db, vec![0x5a; 64 * 1024]).unwrap();
    failed(&[], "database", "is damaged", "restore the latest backup");
    let out = app.run_cli(&["db", "check"]);
    assert_eq!(out.status.code(), Some(1), "db check fails on it too");
    assert!(String::from_utf8_lossy(&out.stdout).contains("DAMAGED"));
}

#[test]
fn a_backup_taken_during_a_newsletter_send_restores_to_a_database_that_db_check_accepts_and_the_daemon_opens() {
    let _g = fresh();
    let subscribers = 3000;
    // The sink throws everything away; 500 a second keeps the send going for seconds.
    let sink = stack_value("MAILSTACK_SINK_PORT");
    let app = TestApp::new("contact")
        .with_env("OUTREACH_SMTP__PORT", &sink)
        .with_env("OUTREACH_NEWSLETTER__RATE_PER_MINUTE", "30000");
    app.import_active((0..subscribers).map(|i| format!("b{i}@backup.test")));
    approved_story(&app, "Verhaal tijdens de back-up", "Tekst.");
    let mut d = app.spawn_ready();
    app.ok(&["newsletter", "send"]);
    let sent = "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'";
    assert!(app.wait_sql(sent, 300, Duration::from_secs(60)) >= 300, "{}", d.log_text());
    let backup = app.dir.path().join("backups/outreach-1.db");
    std::fs::create_dir_all(backup.parent().unwrap()).unwrap();
    let started = std::time::Instant::now();
    let out = app.ok(&["db", "backup", backup.to_str().unwrap()]);
    println!("db backup during a send to {subscribers}: {out}(wall {:.2} s)", started.elapsed().as_secs_f64());
    assert!(out.contains("backed up"), "{out}");
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600, "owner-only");
    let refused = app.run_cli(&["db", "backup", backup.to_str().unwrap()]);
    assert!(!refused.status.success(), "an existing backup is not overwritten without --force");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));

    // The send goes on to the end meanwhile.
    assert_eq!(app.wait_sql(sent, subscribers, Duration::from_secs(120)), subscribers, "{}", d.log_text());
    assert!(d.terminate().success(), "{}", d.log_text());

    // The backup is sound and was taken mid-send.
    let out = app.run_cli(&["db", "check", backup.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success() && v["ok"] == true, "{v}");
    assert_eq!((v["foreign_key_violations"].as_u64(), v["pending_migrations"].as_u64()), (Some(0), Some(0)), "{v}");
    let text = app.ok(&["db", "check", backup.to_str().unwrap()]);
    assert!(text.contains("integrity:    ok") && text.contains("(current)"), "{text}");
    let in_backup = |q: &str| -> i64 {
        let c = rusqlite::Connection::open_with_flags(&backup, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.query_row(q, [], |r| r.get(0)).unwrap()
    };
    let sent_then = in_backup(sent);
    assert!((300..subscribers).contains(&sent_then), "taken during the send: {sent_then} sent then");
    assert_eq!(in_backup("SELECT COUNT(*) FROM deliveries"), subscribers);

    // Restored in place of a database, the daemon opens it and finishes the issue.
    let restored = TestApp::new("contact")
        .with_env("OUTREACH_SMTP__PORT", &sink)
        .with_env("OUTREACH_NEWSLETTER__RATE_PER_MINUTE", "0");
    std::fs::copy(&backup, &restored.db).unwrap();
    let mut d = restored.spawn_ready();
    assert_eq!(restored.wait_sql(sent, subscribers, Duration::from_secs(120)), subscribers, "{}", d.log_text());
    assert_eq!(restored.wait_sql("SELECT COUNT(*) FROM issues WHERE status = 'sent'", 1, Duration::from_secs(30)), 1);
    assert!(d.terminate().success(), "{}", d.log_text());
    let after = restored.ok(&["db", "check"]);
    assert!(after.contains("integrity:    ok"), "{after}");
}
