//! Privacy end to end: `person erase` leaves nothing of a person in the database file,
//! its WAL or the journals; the keyed hash keeps an import from adding them again while
//! their own sign-up goes through double opt-in; and at debug level the logs hold no
//! address, no password and no link token, nor do stored errors or `status`.

use std::time::Duration;

use crate::helpers::*;

const T: Duration = Duration::from_secs(30);
/// A distinctive person (a foreign domain: mail to her lands in catchall@).
const WHO: &str = "wilhelmina.zonnebloem@ouderkracht.test";
const NAME: &str = "Wilhelmina Zonnebloem";

fn from() -> String {
    format!("{NAME} <{WHO}>")
}

/// The token at the end of the first URL in `text` that contains `path`.
fn token_after(text: &str, path: &str) -> String {
    let i = text.find(path).unwrap_or_else(|| panic!("no {path} in:\n{text}"));
    text[i + path.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

/// Runs a command that must succeed; keeps its stderr (the log) in `logs`.
fn cli(app: &TestApp, args: &[&str], logs: &mut String) -> String {
    let out = app.run_cli(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "outreach {} failed: {stdout}\n{stderr}", args.join(" "));
    logs.push_str(&stderr);
    stdout.to_string()
}

/// Whether `bytes` contain `needle`, ASCII case ignored.
fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Every full address (`local@domain`) in a text. A local part does not start right
/// after a backslash: `\n@media` in a logged style sheet is a newline and a CSS rule.
fn full_addresses(text: &str) -> Vec<String> {
    let local = |c: char| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
    let mut found = Vec::new();
    for (i, _) in text.match_indices('@') {
        let mut before: String = text[..i].chars().rev().take_while(|c| local(*c)).collect();
        if text[..i - before.len()].ends_with('\\') {
            before.pop();
        }
        let after: String =
            text[i + 1..].chars().take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-').collect();
        if !before.is_empty() && after.chars().any(char::is_alphanumeric) {
            found.push(format!("{}@{after}", before.chars().rev().collect::<String>()));
        }
    }
    found
}

#[test]
fn person_erase_leaves_no_trace_and_debug_logs_hold_no_address_password_or_token() {
    let _g = fresh();
    let app = TestApp::new("contact").with_env("RUST_LOG", "debug").with_env("OUTREACH_NEWSLETTER__SCHEDULE", "");
    let mut logs = String::new();
    let mut d = app.spawn_ready();

    // She writes a question: filed and answered.
    send_mail(
        &from(),
        "Vraag over de bijeenkomst",
        &format!(
            "Beste mensen,\n\nWaar is de bijeenkomst van volgende maand?\n\nMet vriendelijke groet,\n{NAME}\n{WHO}"
        ),
        &[],
    );
    let reply = wait_subject("catchall", "Vraag over de bijeenkomst", 1, T);
    assert_eq!(reply.len(), 1, "the auto-reply\n{}", d.log_text());
    assert!(reply[0].text.contains(NAME), "the reply greets her by name: {}", reply[0].text);

    // She asks for the newsletter and confirms by replying "ja".
    send_mail(&from(), "Nieuwsbrief", &format!("Hallo,\n\nIk wil graag de nieuwsbrief ontvangen.\n\n{NAME}"), &[]);
    let confirm = wait_subject("catchall", "Bevestig je aanmelding", 1, T);
    assert_eq!(confirm.len(), 1, "confirmation mail\n{}", d.log_text());
    let confirm_token = token_after(&confirm[0].text, "/confirm/");
    let mid = confirm[0].message_id.clone().unwrap();
    send_mail(
        &from(),
        &format!("Re: {}", confirm[0].subject),
        &format!("Ja\n\n{NAME}"),
        &[&format!("In-Reply-To: <{mid}>"), &format!("References: <{mid}>")],
    );
    let active = format!("SELECT COUNT(*) FROM subscribers WHERE email = '{WHO}' AND status = 'active'");
    assert_eq!(app.wait_sql(&active, 1, T), 1, "{}", d.log_text());
    assert_eq!(wait_subject("catchall", "Welkom", 1, T).len(), 1, "welcome mail");

    // She gets an issue.
    let story = app.dir.path().join("story.md");
    std::fs::write(
        &story,
        "---\ntitle: Naast de ouders\nambassador: Fatima El Amrani\nrole: intern begeleider\n---\nWerk vanuit je hart.\n",
    )
    .unwrap();
    cli(&app, &["stories", "add", story.to_str().unwrap()], &mut logs);
    cli(&app, &["stories", "approve", "1"], &mut logs);
    cli(&app, &["newsletter", "send"], &mut logs);
    let issue = wait_subject("catchall", "Naast de ouders", 1, T);
    assert_eq!(issue.len(), 1, "the issue\n{}", d.log_text());
    assert!(issue[0].text.contains(NAME), "personalised: {}", issue[0].text);
    let unsubscribe_token = token_after(issue[0].header("list-unsubscribe").unwrap(), "/unsubscribe/");
    assert!(confirm_token.len() >= 20 && unsubscribe_token.len() >= 20, "{confirm_token} {unsubscribe_token}");

    // A reply the server refuses with an answer that quotes the address (no such mailbox).
    send_mail("Ghost <ghost@example.org>", "Vraag", "Hallo, ik heb een vraag.", &[]);
    assert_eq!(app.wait_sql("SELECT COUNT(*) FROM outbox WHERE status = 'failed'", 1, T), 1, "{}", d.log_text());
    let error: String = app.sql("SELECT last_error FROM outbox WHERE status = 'failed'");
    assert!(error.contains("550") && error.contains("…@example.org"), "{error}");
    assert!(full_addresses(&error).is_empty(), "a stored error keeps only the domain: {error}");

    // Everything about her is there, in the export.
    let export: serde_json::Value =
        serde_json::from_str(&cli(&app, &["person", "export", WHO, "--json"], &mut logs)).unwrap();
    assert_eq!(export["found"], true, "{export:#}");
    assert_eq!(export["contact"]["name"], NAME, "{export:#}");
    assert!(export["messages"].as_array().unwrap().len() >= 3, "question, sign-up, ja: {export:#}");
    assert!(export["messages"][0]["body"].as_str().unwrap().contains("bijeenkomst"), "{export:#}");
    assert_eq!(export["subscribers"][0]["status"], "active", "{export:#}");
    assert!(export["subscribers"][0]["consent_source"].as_str().unwrap().starts_with("mail:"), "{export:#}");
    assert_eq!(export["deliveries"][0]["status"], "sent", "{export:#}");
    assert!(export["outbox"].as_array().unwrap().len() >= 3, "reply, confirmation, welcome: {export:#}");
    assert!(export["outbox"][0].get("raw").is_none(), "no bytes");
    assert!(export["conversations"].as_array().unwrap().len() >= 2, "{export:#}");
    let summary = cli(&app, &["person", "export", WHO], &mut logs);
    assert!(summary.contains("everything stored about") && summary.contains("Vraag over de bijeenkomst"), "{summary}");

    // Erased while the daemon runs.
    let out = app.run_cli(&["person", "erase", WHO]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("erased"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("could not be emptied"), "{stderr}");
    logs.push_str(&stderr);

    // Byte for byte: neither her address nor her name in the file, its WAL or the journals.
    let mut files = vec![app.db.clone()];
    for suffix in ["-wal", ".sent-journal", ".newsletter-journal"] {
        let mut p = app.db.clone().into_os_string();
        p.push(suffix);
        files.push(p.into());
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        for needle in [WHO, "wilhelmina", "zonnebloem"] {
            assert!(!holds(&bytes, needle), "{needle} is still in {} ({} bytes)", f.display(), bytes.len());
        }
    }
    assert!(std::fs::metadata(&app.db).unwrap().len() > 0);
    // The database, its WAL and shared memory, the lock and the journals: owner only.
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm", ".lock", ".sent-journal", ".newsletter-journal"] {
        let mut p = app.db.clone().into_os_string();
        p.push(suffix);
        let mode = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")).permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{p:?} is readable by others");
    }
    let export: serde_json::Value =
        serde_json::from_str(&cli(&app, &["person", "export", WHO, "--json"], &mut logs)).unwrap();
    assert_eq!((export["found"].as_bool(), export["erased"].as_bool()), (Some(false), Some(true)), "{export:#}");
    for list in ["messages", "conversations", "subscribers", "deliveries", "outbox", "stories"] {
        assert!(export[list].as_array().unwrap().is_empty(), "{list}: {export:#}");
    }
    assert!(export["contact"].is_null(), "{export:#}");
    let hashes: String = app.sql("SELECT group_concat(email_hash) FROM suppressed");
    assert!(hashes.starts_with("hmac-sha256:") && !hashes.contains(','), "one keyed hash: {hashes}");

    // An import that lists her again does not subscribe her.
    let csv = app.dir.path().join("list.csv");
    std::fs::write(&csv, format!("email,name,consent_at\n{WHO},{NAME},2025-01-01\nnew@elders.test,Nieuw,2025-01-01\n"))
        .unwrap();
    let out = cli(&app, &["subscribers", "import", csv.to_str().unwrap()], &mut logs);
    assert!(out.contains("erased earlier on request") && out.contains("1 added"), "{out}");
    let back: i64 = app.sql(&format!("SELECT COUNT(*) FROM subscribers WHERE email = '{WHO}'"));
    assert_eq!(back, 0);

    // Her own sign-up by mail, two days later: double opt-in as for anyone.
    app.set_clock(chrono::Utc::now() + chrono::Duration::days(2));
    send_mail(&from(), "Nieuwsbrief", "Hallo,\n\nIk wil de nieuwsbrief toch weer ontvangen.", &[]);
    let pending = format!("SELECT COUNT(*) FROM subscribers WHERE email = '{WHO}' AND status = 'pending'");
    assert_eq!(app.wait_sql(&pending, 1, T), 1, "{}", d.log_text());
    assert_eq!(wait_subject("catchall", "Bevestig je aanmelding", 2, T).len(), 2, "a new confirmation mail");
    assert_eq!(app.sql::<i64>(&active), 0, "pending, not active");

    // `status` shows no full address, though an error and a failed mail are recorded.
    let status = cli(&app, &["status"], &mut logs);
    let status_json = cli(&app, &["status", "--json"], &mut logs);
    assert!(status.contains("failed:") && status.contains("…@example.org"), "{status}");
    for s in [&status, &status_json] {
        assert!(full_addresses(s).is_empty(), "status shows {:?}:\n{s}", full_addresses(s));
    }

    assert!(d.terminate().success(), "{}", d.log_text());
    logs.push_str(&d.log_text());
    assert!(logs.contains("DEBUG"), "the logs are at debug level: {logs}");
    assert_no_address_password_or_token(&logs, &[&confirm_token, &unsubscribe_token]);
}

/// The logs hold no full address (of the test accounts or anyone), not her name, no
/// password (the test accounts' password is `secret`; neither the IMAP LOGIN nor the SMTP
/// AUTH line), and no link token.
fn assert_no_address_password_or_token(logs: &str, tokens: &[&str]) {
    let addresses = full_addresses(logs);
    assert!(addresses.is_empty(), "full addresses in the log: {addresses:?}\n{logs}");
    if let Some(line) = logs.lines().find(|l| l.to_lowercase().contains("zonnebloem")) {
        panic!("her name in the log: {line}");
    }
    for line in logs.lines() {
        let words: Vec<&str> =
            line.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_')).filter(|w| !w.is_empty()).collect();
        assert!(!words.contains(&"secret"), "a password in the log: {line}");
        assert!(!line.contains(" LOGIN ") && !line.contains("AUTH PLAIN") && !line.contains("AUTH LOGIN"), "{line}");
        // AUTH PLAIN's base64 of "\0contact@example.org\0secret".
        assert!(!line.contains("AGNvbnRhY3RAZXhhbXBsZS5vcmcAc2VjcmV0"), "{line}");
        for t in tokens {
            assert!(!line.contains(t), "a link token in the log: {line}");
        }
    }
}
