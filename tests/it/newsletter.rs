//! Subscribers, stories and newsletters end to end against the real mail stack.

use std::time::Duration;

use crate::helpers::*;
use outreach::inbox::parse::ParsedMail;

const T: Duration = Duration::from_secs(30);

/// Adds a story from a Markdown file (submitted, with the coordinator's consent);
/// returns its id.
pub(crate) fn added_story(app: &TestApp, title: &str, body: &str) -> i64 {
    let path = app.dir.path().join(format!("story-{}.md", new_id()));
    std::fs::write(
        &path,
        format!("---\ntitle: {title}\nambassador: Fatima El Amrani\nrole: intern begeleider\n---\n{body}\n"),
    )
    .unwrap();
    let out = app.ok(&["stories", "add", path.to_str().unwrap()]);
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Adds an approved story from a Markdown file; returns its id.
pub(crate) fn approved_story(app: &TestApp, title: &str, body: &str) -> i64 {
    let id = added_story(app, title, body);
    app.ok(&["stories", "approve", &id.to_string()]);
    id
}

/// The first URL in a text that starts with `prefix`.
pub(crate) fn url_in(text: &str, prefix: &str) -> String {
    let i = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
    text[i..].split(|c: char| c.is_whitespace() || c == '>' || c == '"').next().unwrap().to_string()
}

/// The Message-ID header of every mail in `user`'s INBOX, one per mail.
fn message_ids(user: &str) -> Vec<String> {
    let mut s = imap(user);
    s.examine("INBOX").unwrap();
    let fetched = s.fetch("1:*", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]").unwrap();
    fetched.iter().filter_map(|f| f.header().map(|h| String::from_utf8_lossy(h).trim().to_string())).collect()
}

pub(crate) fn status_of(app: &TestApp, email: &str) -> String {
    app.sql(&format!("SELECT status FROM subscribers WHERE email = '{email}'"))
}

#[test]
fn lifecycle_by_mail_and_link_and_nothing_after_unsubscribing() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut d = app.spawn_ready();
    app.wait_web();
    let status = app.status_json();
    assert!(status["web"]["state"].as_str().unwrap().starts_with("listening on 127.0.0.1:"), "{status:#}");

    // Alice asks by mail and confirms by the button behind the link.
    send_mail(
        "Alice <alice@example.org>",
        "Nieuwsbrief",
        "Hallo,\n\nIk wil graag de nieuwsbrief ontvangen.\n\nAlice",
        &[],
    );
    let confirm = wait_subject("alice", "Bevestig je aanmelding", 1, T);
    assert_eq!(confirm.len(), 1, "confirmation mail\n{}", d.log_text());
    assert_eq!(confirm[0].header("auto-submitted"), Some("auto-generated"));
    assert_eq!(status_of(&app, "alice@example.org"), "pending");
    // Only the confirmation: the mail asked for nothing else, so no auto-reply too.
    assert_eq!(count("alice", "INBOX"), 1);
    let link = url_in(&confirm[0].text, &format!("{}/confirm/", app.web));
    let (code, page) = http("GET", &link, "");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("<form method=\"post\"") && page.contains("<button"), "{page}");
    assert_eq!(status_of(&app, "alice@example.org"), "pending", "a GET must not confirm (link scanners)");
    let (code, page) = http("POST", &link, "");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Je aanmelding is bevestigd"), "{page}");
    assert_eq!(status_of(&app, "alice@example.org"), "active");
    let consent: String = app.sql("SELECT consent_source FROM subscribers WHERE email = 'alice@example.org'");
    assert!(consent.starts_with("link:"), "{consent}");
    assert_eq!(wait_subject("alice", "Welkom", 1, T).len(), 1, "welcome mail");
    // The link again: confirming gave her new link tokens, so it is dead; a clear page
    // that says why, no second welcome.
    let (code, page) = http("POST", &link, "");
    assert_eq!(code, 404);
    assert!(page.contains("Deze link werkt niet") && page.contains("al aangemeld of afgemeld"), "{page}");

    // Bob asks in English and confirms by replying "yes".
    send_mail(
        "Bob <bob@example.org>",
        "Newsletter",
        "Hi,\n\nI would like to receive your newsletter please.\n\nBob",
        &[],
    );
    let confirm = wait_subject("bob", "Please confirm", 1, T);
    assert_eq!(confirm.len(), 1, "English confirmation\n{}", d.log_text());
    let mid = confirm[0].message_id.clone().unwrap();
    send_mail(
        "Bob <bob@example.org>",
        &format!("Re: {}", confirm[0].subject),
        "Yes!\n\n> Or reply to this e-mail with \"yes\".",
        &[&format!("In-Reply-To: <{mid}>"), &format!("References: <{mid}>")],
    );
    assert_eq!(
        app.wait_sql("SELECT COUNT(*) FROM subscribers WHERE email = 'bob@example.org' AND status = 'active'", 1, T),
        1
    );
    assert_eq!(wait_subject("bob", "Welcome", 1, T).len(), 1);

    // Dora subscribes with recorded consent (foreign domain: lands in catchall).
    app.ok(&["subscribers", "add", "dora@elders.test", "--name", "Dora", "--consent", "form at the meeting"]);

    // An issue: each gets it once, personalised.
    approved_story(&app, "Ga naast de ouders staan", "Werk **mensgericht** en vanuit je hart.");
    app.ok(&["newsletter", "send"]);
    let a = wait_subject("alice", "Ga naast de ouders staan", 1, T);
    let b = wait_subject("bob", "Ga naast de ouders staan", 1, T);
    let c = wait_subject("catchall", "Ga naast de ouders staan", 1, T);
    assert_eq!((a.len(), b.len(), c.len()), (1, 1, 1), "{}", d.log_text());
    assert!(a[0].text.contains("Beste Alice"), "{}", a[0].text);
    assert!(b[0].text.contains("Dear Bob"), "English for Bob: {}", b[0].text);

    // The archive page of the issue: the story, nobody's name or address.
    let (code, archive) = http("GET", &format!("{}/archive/1", app.web), "");
    assert_eq!(code, 200);
    assert!(archive.contains("Ga naast de ouders staan") && archive.contains("mensgericht"), "{archive}");
    for personal in ["Alice", "alice@", "Bob", "Dora", "/unsubscribe/"] {
        assert!(!archive.contains(personal), "archive shows {personal}");
    }
    let (code, index) = http("GET", &format!("{}/archive", app.web), "");
    assert!(code == 200 && index.contains("/archive/1"), "{index}");

    // Alice: one-click POST (RFC 8058) to her List-Unsubscribe URL.
    let lu = a[0].header("list-unsubscribe").unwrap().to_string();
    let https = url_in(&lu, &format!("{}/unsubscribe/", app.web));
    let (code, page) = http("POST", &https, "List-Unsubscribe=One-Click");
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Je bent afgemeld"));
    assert_eq!(status_of(&app, "alice@example.org"), "unsubscribed");
    let src: String = app.sql("SELECT unsubscribe_source FROM subscribers WHERE email = 'alice@example.org'");
    assert!(src.contains("one-click"), "{src}");
    assert_eq!(wait_subject("alice", "Je bent afgemeld", 1, T).len(), 1, "one short confirmation");
    // Replayed: unsubscribing gave her new link tokens, so the link is dead; no second mail.
    let (code, page) = http("POST", &https, "List-Unsubscribe=One-Click");
    assert_eq!(code, 404);
    assert!(page.contains("Deze link werkt niet"), "{page}");
    assert_eq!(status_of(&app, "alice@example.org"), "unsubscribed");

    // Bob: the footer link shows a page with one button (a GET changes nothing), then the button.
    let footer = url_in(&b[0].text, &format!("{}/unsubscribe/", app.web));
    let (code, page) = http("GET", &footer, "");
    assert_eq!(code, 200);
    assert!(page.contains("<form method=\"post\"") && page.contains("<button"), "{page}");
    assert_eq!(status_of(&app, "bob@example.org"), "active", "a GET must not unsubscribe (link scanners)");
    let (code, _) = http("POST", &footer, "List-Unsubscribe=One-Click");
    assert_eq!(code, 200);
    assert_eq!(status_of(&app, "bob@example.org"), "unsubscribed");

    // Dora: a mail saying "afmelden".
    send_mail("Dora <dora@elders.test>", "Afmelden", "Graag afmelden voor de nieuwsbrief.", &[]);
    assert_eq!(
        app.wait_sql(
            "SELECT COUNT(*) FROM subscribers WHERE email = 'dora@elders.test' AND status = 'unsubscribed'",
            1,
            T
        ),
        1
    );
    let confirmations = wait_subject("catchall", "Afmelden", 1, T);
    assert_eq!(confirmations.len(), 1, "the auto-reply confirms it");
    assert!(confirmations[0].text.contains("geen nieuwsbrief meer"), "{}", confirmations[0].text);

    // The next issue reaches nobody of them.
    approved_story(&app, "Samen aan tafel", "Een tweede verhaal.");
    app.ok(&["newsletter", "send"]);
    assert_eq!(app.wait_sql("SELECT COUNT(*) FROM issues WHERE id = 2 AND status = 'sent'", 1, T), 1);
    wait_delivered();
    for u in ["alice", "bob", "catchall"] {
        assert!(with_subject(u, "Samen aan tafel").is_empty(), "{u} got an issue after unsubscribing");
    }
    let status = app.status_json();
    assert_eq!(status["subscribers"]["unsubscribed"], 3, "{status:#}");
    assert_eq!(status["newsletter"][0]["status"], "sent", "{status:#}");
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn an_issue_to_200_subscribers_of_mixed_status_reaches_each_active_one_once() {
    let _g = fresh();
    let app = TestApp::new("contact");
    // 119 active (consent in the file), 30 pending (no consent), 51 that become
    // unsubscribed (30) or bounced (21) before the issue.
    let mut csv = String::from("email,name,language,consent_source,consent_at\n");
    for i in 0..200 {
        let consent = if (119..149).contains(&i) { "" } else { "2025-05-01" };
        let lang = if i % 10 == 0 { "en" } else { "nl" };
        csv.push_str(&format!("s{i}@mixed.test,S{i},{lang},paper form,{consent}\n"));
    }
    csv.push_str("not-an-address,Bad,nl,,\n");
    let file = app.dir.path().join("list.csv");
    std::fs::write(&file, &csv).unwrap();
    let out = app.ok(&["subscribers", "import", file.to_str().unwrap(), "--source", "ledenlijst 2025"]);
    assert!(out.contains("line 202: not-an-address: rejected"), "{out}");
    assert!(out.contains("170 added, 30 confirmation mail(s), 0 unchanged, 1 rejected"), "{out}");
    // The same file again changes nothing.
    let again = app.ok(&["subscribers", "import", file.to_str().unwrap(), "--source", "ledenlijst 2025"]);
    assert!(again.contains("0 added, 0 confirmation mail(s), 200 unchanged, 1 rejected"), "{again}");
    app.exec(
        "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = '2026-01-01T00:00:00.000Z' WHERE email IN (SELECT email FROM subscribers WHERE status = 'active' ORDER BY id LIMIT 30 OFFSET 119);
         UPDATE subscribers SET status = 'bounced', bounced_at = '2026-01-01T00:00:00.000Z' WHERE email IN (SELECT email FROM subscribers WHERE status = 'active' ORDER BY id LIMIT 21 OFFSET 119);",
    );
    // A name with CR/LF cannot add a header.
    app.ok(&["subscribers", "add", "eve@mixed.test", "--name", "Eve\r\nBcc: victim@evil.test", "--consent", "test"]);
    let active: Vec<String> = {
        let c = rusqlite::Connection::open(&app.db).unwrap();
        let mut st = c.prepare("SELECT email FROM subscribers WHERE status = 'active' ORDER BY email").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(active.len(), 120);
    let counts: Vec<(String, i64)> = {
        let c = rusqlite::Connection::open(&app.db).unwrap();
        let mut st = c.prepare("SELECT status, COUNT(*) FROM subscribers GROUP BY status ORDER BY status").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(
        counts,
        vec![("active".into(), 120), ("bounced".into(), 21), ("pending".into(), 30), ("unsubscribed".into(), 30)]
    );

    approved_story(
        &app,
        "Werk mensgericht",
        "Vanuit je hart. <script>alert('x')</script><iframe src=\"https://evil.test\"></iframe> <b onmouseover=\"x()\">vet</b>",
    );
    let out = app.ok(&["newsletter", "send"]);
    assert!(out.contains("120 subscriber(s)") && out.contains("120 sent"), "{out}");

    assert!(wait_count("catchall", "INBOX", 150, T) >= 150);
    wait_delivered();
    let raws = fetch_all("catchall", "INBOX");
    let mut issue_to = Vec::new();
    let mut unsub_urls = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for raw in &raws {
        let m = outreach::inbox::parse::parse(raw).unwrap();
        let to = String::from_utf8_lossy(raw)
            .lines()
            .find_map(|l| l.strip_prefix("To:"))
            .map(|v| v.rsplit('<').next().unwrap().trim().trim_end_matches('>').to_string())
            .unwrap();
        if m.subject.starts_with("Bevestig je aanmelding") || m.subject.starts_with("Please confirm") {
            let sub = status_of(&app, &to);
            assert_eq!(sub, "pending", "a confirmation only goes to pending addresses");
            continue;
        }
        assert!(m.subject.contains("Werk mensgericht"), "unexpected mail {}", m.subject);
        issue_to.push(to.clone());
        let text = String::from_utf8_lossy(raw).to_string();
        let head = text.split("\r\n\r\n").next().unwrap();
        let lu = m.header("list-unsubscribe").unwrap();
        assert!(
            lu.contains(&format!("<{}/unsubscribe/", app.web)) && lu.contains("<mailto:contact@example.org?subject="),
            "{lu}"
        );
        assert_eq!(m.header("list-unsubscribe-post"), Some("List-Unsubscribe=One-Click"));
        assert!(m.header("list-id").unwrap().contains("<nieuwsbrief.example.org>"));
        assert_eq!(m.header("precedence"), Some("bulk"));
        assert!(ids.insert(m.message_id.clone().unwrap()), "unique Message-ID");
        assert!(unsub_urls.insert(lu.to_string()), "each subscriber has their own unsubscribe link");
        assert!(head.contains("multipart/alternative"), "{head}");
        assert!(text.contains("Content-Type: text/plain") && text.contains("Content-Type: text/html"));
        assert!(!text.contains("<script") && !text.contains("<iframe") && !text.contains("onmouseover"), "sanitized");
        assert!(head.lines().all(|l| !l.starts_with("Bcc:")), "no injected header: {head}");
        if to == "eve@mixed.test" {
            assert!(m.text.contains("Beste Eve Bcc: victim@evil.test,"), "{}", m.text);
        } else {
            let n: usize = to.trim_start_matches('s').split('@').next().unwrap().parse().unwrap();
            let greeting = if n.is_multiple_of(10) { format!("Dear S{n},") } else { format!("Beste S{n},") };
            assert!(m.text.contains(&greeting), "personalised: {}", m.text);
        }
    }
    issue_to.sort();
    assert_eq!(issue_to, active, "each active subscriber exactly once, nobody else");
    let status = app.ok(&["newsletter", "status", "1"]);
    assert!(status.contains("120 sent"), "{status}");
}

#[test]
fn kill_9_during_a_send_to_2000_subscribers_then_restart_delivers_each_copy_exactly_once() {
    use rand::Rng;
    let _g = fresh();
    let app = TestApp::new("contact");
    app.import_active((0..2000).map(|i| format!("k{i}@crash.test")));
    approved_story(&app, "Verhaal voor iedereen", "Een verhaal voor 2.000 lezers.");
    let concurrency: i64 = 4;
    let mut d = app.spawn_ready();
    let out = app.ok(&["newsletter", "send"]);
    assert!(out.contains("2000 subscriber(s)") && out.contains("the running daemon sends it"), "{out}");
    let sent = "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'";
    let mut kills = Vec::new();
    let mut rng = rand::rng();
    let mut at = 0;
    for _ in 0..4 {
        at = rng.random_range(at + 100..at + 450).min(1900);
        let reached = app.wait_sql(sent, at, Duration::from_secs(60));
        d.kill9();
        let in_flight: i64 = app.sql("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'");
        kills.push((reached, in_flight));
        d = app.spawn();
    }
    assert_eq!(app.wait_sql(sent, 2000, Duration::from_secs(120)), 2000, "{}", d.log_text());
    assert_eq!(app.wait_sql("SELECT COUNT(*) FROM issues WHERE status = 'sent'", 1, T), 1);
    assert!(d.terminate().success(), "{}", d.log_text());
    let arrived = wait_count("catchall", "INBOX", 2000, Duration::from_secs(120));
    wait_delivered();
    let ids = message_ids("catchall");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    let duplicates = ids.len() - unique.len();
    println!(
        "kill -9 during a send to 2000: {} kills at (sent, in flight) = {kills:?}; {} messages arrived, {} distinct, {duplicates} duplicate(s) (concurrency {concurrency})",
        kills.len(),
        ids.len(),
        unique.len()
    );
    assert!(arrived >= 2000);
    // README: "nothing that went out is sent again and nothing is lost".
    assert_eq!(unique.len(), 2000, "every subscriber got the issue: none lost");
    assert_eq!(duplicates, 0, "nothing sent twice");
}

#[test]
fn outcome_writes_that_fail_then_a_kill_9_send_nothing_twice_and_lose_nothing() {
    let _g = fresh();
    // In each daemon process the first 12 writes of delivery outcomes fail as on a full
    // disk: a lane tries again with back-off, then hands what it holds to the next pass.
    let app = TestApp::new("contact").with_env("OUTREACH_FAILPOINT", "outcome write:12");
    app.import_active((0..300).map(|i| format!("w{i}@writefail.test")));
    approved_story(&app, "Als schrijven mislukt", "Tekst.");
    let mut d = app.spawn_ready();
    app.ok(&["newsletter", "send"]);
    // Copies went out and their outcomes could not be written: kill the daemon then.
    wait_until("an outcome write failed", || d.log_text().contains("a store write failed; trying again"));
    d.kill9();
    let in_flight: i64 = app.sql("SELECT COUNT(*) FROM deliveries WHERE status = 'sending'");
    assert!(in_flight > 0, "rows whose outcome was never written");
    // The restarted daemon meets the same failures, and finishes the issue.
    let mut d = app.spawn();
    assert_eq!(
        app.wait_sql("SELECT COUNT(*) FROM issues WHERE status = 'sent'", 1, Duration::from_secs(120)),
        1,
        "{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(log.contains("a store write failed; trying again"), "the writes failed after the restart too:\n{log}");
    let sent: i64 = app.sql("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'");
    assert_eq!(sent, 300, "{log}");
    assert!(d.terminate().success(), "{}", d.log_text());
    assert!(wait_count("catchall", "INBOX", 300, Duration::from_secs(60)) >= 300);
    wait_delivered();
    let ids = message_ids("catchall");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    println!(
        "outcome writes failing, kill -9 with {in_flight} rows in flight: {} arrived, {} distinct",
        ids.len(),
        unique.len()
    );
    assert_eq!(unique.len(), 300, "none lost");
    assert_eq!(ids.len(), 300, "none twice");
}

#[test]
fn an_issue_goes_out_over_smtps_and_over_starttls_with_auth() {
    let _g = fresh();
    let ca = stack().ca_cert.to_str().unwrap().to_string();
    for (security, port, who) in [("tls", "1465", "alice"), ("starttls", "1587", "bob")] {
        let app = TestApp::new("contact")
            .with_env("OUTREACH_SMTP__HOST", "localhost")
            .with_env("OUTREACH_SMTP__SECURITY", security)
            .with_env("OUTREACH_SMTP__PORT", port)
            .with_env("OUTREACH_SMTP__CA_FILE", &ca)
            .with_env("OUTREACH_SMTP__USERNAME", "contact@example.org")
            .with_env("OUTREACH_SMTP__PASSWORD", "secret");
        app.ok(&["subscribers", "add", &addr(who), "--consent", "test"]);
        let title = format!("Verhaal via {security}");
        approved_story(&app, &title, "Tekst.");
        let out = app.ok(&["newsletter", "send"]);
        assert!(out.contains("1 sent"), "{out}");
        assert_eq!(wait_subject(who, &title, 1, T).len(), 1, "{security}");
    }
}

/// Rewrites the stack's recipient_access table (which domains get 4xx/5xx) until dropped.
struct RecipientAccess {
    path: std::path::PathBuf,
    original: String,
}

impl RecipientAccess {
    fn new() -> Self {
        let path = stack().dir.join("etc/postfix/recipient_access");
        let original = std::fs::read_to_string(&path).unwrap();
        Self { path, original }
    }
    fn keep_only(&self, domains: &[&str]) {
        let kept: String = self
            .original
            .lines()
            .filter(|l| domains.iter().any(|d| l.starts_with(d)))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&self.path, kept).unwrap();
        stack_ctl("smtp", "restart");
    }
}

impl Drop for RecipientAccess {
    fn drop(&mut self) {
        std::fs::write(&self.path, &self.original).unwrap();
        stack_ctl("smtp", "restart");
    }
}

#[test]
fn smtp_4xx_is_retried_5xx_is_recorded_and_resend_missed_fixes_exactly_the_missed() {
    let _g = fresh();
    let access = RecipientAccess::new();
    let app = TestApp::new("contact");
    let mut csv = String::from("email,consent_at\n");
    for i in 0..8 {
        csv.push_str(&format!("ok{i}@fine.test,2025-01-01\n"));
    }
    csv.push_str("eve@tempfail.test,2025-01-01\nmallory@rejected.test,2025-01-01\n");
    let file = app.dir.path().join("l.csv");
    std::fs::write(&file, csv).unwrap();
    app.ok(&["subscribers", "import", file.to_str().unwrap()]);
    approved_story(&app, "Een verhaal over wachten", "Geduld.");
    let mut d = app.spawn_ready();
    app.ok(&["newsletter", "send"]);
    let q = |s: &str| format!("SELECT COUNT(*) FROM deliveries WHERE status = '{s}'");
    assert_eq!(app.wait_sql(&q("sent"), 8, T), 8, "{}", d.log_text());
    assert_eq!(app.wait_sql(&q("failed"), 1, T), 1);
    assert_eq!(
        app.wait_sql("SELECT COUNT(*) FROM deliveries WHERE status = 'retry' AND attempts >= 2", 1, T),
        1,
        "451 is retried\n{}",
        d.log_text()
    );
    let status = app.ok(&["newsletter", "status", "1"]);
    let line = |who: &str| status.lines().find(|l| l.starts_with(who)).unwrap_or_default().to_string();
    assert!(line("eve@tempfail.test").contains("retrying") && line("eve@tempfail.test").contains("451"), "{status}");
    assert!(
        line("mallory@rejected.test").contains("failed") && line("mallory@rejected.test").contains("550"),
        "{status}"
    );
    assert!(line("ok3@fine.test").contains("sent"), "{status}");
    let missed: serde_json::Value =
        serde_json::from_str(&app.ok(&["newsletter", "status", "1", "--missed", "--json"])).unwrap();
    let mut who: Vec<&str> = missed.as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap()).collect();
    who.sort();
    assert_eq!(who, ["eve@tempfail.test", "mallory@rejected.test"]);

    // The 4xx stops: the retry gets through.
    access.keep_only(&["rejected.test"]);
    assert_eq!(app.wait_sql(&q("sent"), 9, Duration::from_secs(60)), 9, "{}", d.log_text());
    // The 5xx stops too; resend-missed sends exactly the one that did not get it.
    access.keep_only(&[]);
    let out = app.ok(&["newsletter", "resend-missed", "1"]);
    assert!(out.contains("1 delivery(ies) queued again"), "{out}");
    assert_eq!(app.wait_sql(&q("sent"), 10, T), 10, "{}", d.log_text());
    let again = app.ok(&["newsletter", "resend-missed", "1"]);
    assert!(again.contains("0 delivery(ies)"), "{again}");
    assert!(d.terminate().success());
    drop(access);
    let got = wait_subject("catchall", "Een verhaal over wachten", 10, T);
    wait_delivered();
    let got = with_subject("catchall", "Een verhaal over wachten").len().max(got.len());
    assert_eq!(got, 10, "each of the 10 exactly once");
}

fn dsn(to: &str, rcpt: &str, action: &str, status: &str, original_id: &str) -> Vec<u8> {
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.elsewhere.test>\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{}>\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nAuto-Submitted: auto-replied\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"BND\"\r\n\r\n--BND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n\r\n--BND\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.elsewhere.test\r\n\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\nDiagnostic-Code: smtp; 550 {status} no such user\r\n\r\n--BND\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{original_id}>\r\nSubject: Nieuwsbrief\r\n\r\n--BND--\r\n",
        new_id()
    )
    .into_bytes()
}

#[test]
fn a_dsn_for_one_delivery_marks_that_subscriber_bounced_and_gets_no_reply() {
    let _g = fresh();
    let app = TestApp::new("contact");
    for who in ["alice", "bob"] {
        app.ok(&["subscribers", "add", &format!("{who}@example.org"), "--consent", "test"]);
    }
    approved_story(&app, "Een verhaal dat terugkaatst", "Tekst.");
    app.ok(&["newsletter", "send"]);
    let bob = wait_subject("bob", "terugkaatst", 1, T);
    let alice = wait_subject("alice", "terugkaatst", 1, T);
    assert_eq!((bob.len(), alice.len()), (1, 1));
    // The envelope sender of each copy carries its delivery's tag.
    let return_path = |m: &ParsedMail| m.header("return-path").unwrap().trim_matches(['<', '>', ' ']).to_string();
    let bob_verp = return_path(&bob[0]);
    assert!(bob_verp.starts_with("contact+b-") && bob_verp.ends_with("@example.org"), "{bob_verp}");
    assert_ne!(bob_verp, return_path(&alice[0]));

    // A hard bounce for Bob, a soft one (4.x.x) for Alice, and a delay warning for Alice.
    send_raw(
        None,
        &bob_verp,
        &dsn(&bob_verp, "bob@example.org", "failed", "5.1.1", bob[0].message_id.as_deref().unwrap()),
    );
    let alice_verp = return_path(&alice[0]);
    let alice_id = alice[0].message_id.clone().unwrap();
    send_raw(None, &alice_verp, &dsn(&alice_verp, "alice@example.org", "failed", "4.2.2", &alice_id));
    send_raw(None, &alice_verp, &dsn(&alice_verp, "alice@example.org", "delayed", "4.4.7", &alice_id));
    // An out-of-office sent to Alice's bounce address is not a bounce.
    send_raw(
        Some("alice@example.org"),
        &alice_verp,
        format!(
            "From: Alice <alice@example.org>\r\nTo: {alice_verp}\r\nSubject: Automatisch antwoord: Nieuwsbrief\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <{}>\r\n\r\nIk ben afwezig tot maandag.\r\n",
            new_id()
        )
        .as_bytes(),
    );
    assert_eq!(wait_count("contact", "INBOX", 4, T), 4);
    app.poll();
    assert_eq!(status_of(&app, "bob@example.org"), "bounced");
    assert_eq!(status_of(&app, "alice@example.org"), "active", "one soft bounce is not enough");
    let soft: i64 = app.sql("SELECT soft_bounces FROM subscribers WHERE email = 'alice@example.org'");
    assert_eq!(soft, 1, "the delay warning does not count");
    let filed = app.list(&["--category", "bounce"]);
    assert_eq!(filed.len(), 3);
    let ooo = app.list(&["--category", "automatic"]);
    assert_eq!(ooo.len(), 1, "the out-of-office");
    assert_eq!(ooo[0]["folder"], "Automatisch");
    for m in &filed {
        assert_eq!(m["category"], "bounce", "{m:#}");
        assert_eq!(m["folder"], "Automatisch");
        assert_eq!(m["auto_replied"], false);
    }
    assert!(filed.iter().any(|m| m["reason"].as_str().unwrap().contains("hard bounce 5.1.1")), "{filed:#?}");
    let replies: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'auto_reply'");
    assert_eq!(replies, 0);
    let status = app.ok(&["newsletter", "status", "1"]);
    assert!(status.lines().any(|l| l.starts_with("bob@example.org") && l.contains("bounced")), "{status}");
    // The next issue skips Bob.
    approved_story(&app, "Een tweede verhaal", "Tekst.");
    let out = app.ok(&["newsletter", "send"]);
    assert!(out.contains("1 subscriber(s)"), "{out}");
}

/// The one-time code a proof asks to put in the answer ("VERZENDEN 123456").
fn proof_code(proof_text: &str) -> String {
    let at = proof_text.find("VERZENDEN ").expect("the proof shows how to answer") + "VERZENDEN ".len();
    let code: String = proof_text[at..].chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{proof_text}");
    code
}

/// The monthly schedule of the tests, and its `n`-th slot from 2027 on (the 1st of the
/// month at 10:00 in Europe/Amsterdam), in UTC. Tests move the instance's clock to it.
const MONTHLY: &str = "0 0 10 1 * *";
fn slot(n: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono_tz::Europe::Amsterdam.with_ymd_and_hms(2027, 1 + n, 1, 10, 0, 0).unwrap().with_timezone(&chrono::Utc)
}

#[test]
fn the_schedule_fires_in_its_zone_skips_without_stories_and_waits_for_the_proof() {
    let _g = fresh();
    app_subscriber_alice_and_run(|app| {
        // 1. No stories: skipped, and the coordinator hears about it. The daemon sees the
        //    schedule an hour before the slot; then its clock is moved past the slot.
        let app1 = app.clone_with_schedule(MONTHLY);
        app.set_clock(slot(0) - chrono::Duration::hours(1));
        let mut d = app1.spawn_ready();
        assert_eq!(app.wait_sql("SELECT COUNT(*) FROM secrets WHERE name = 'schedule_since'", 1, T), 1);
        app.set_clock(slot(0) + chrono::Duration::seconds(1));
        assert_eq!(app.wait_sql("SELECT COUNT(*) FROM issues WHERE status = 'skipped'", 1, T), 1, "{}", d.log_text());
        let (got_slot, created): (String, String) = {
            let c = rusqlite::Connection::open(&app.db).unwrap();
            c.query_row("SELECT slot, created_at FROM issues", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap()
        };
        assert_eq!(got_slot, outreach::domain::time::ts(slot(0)), "the slot is the cron time in Europe/Amsterdam");
        let late = outreach::domain::time::parse_ts(&created).unwrap() - slot(0);
        assert!(late >= chrono::Duration::zero() && late < chrono::Duration::seconds(5), "fired {late} after the slot");
        let notice = wait_subject("coordinator", "geen verhalen", 1, T);
        assert_eq!(notice.len(), 1);
        assert!(notice[0].text.contains("geen goedgekeurde verhalen"));
        assert!(d.terminate().success());

        // 2. A story: a proof for the coordinator, approved by a reply VERZENDEN.
        approved_story(app, "Verhaal met proef", "Eerst de proef.");
        app.set_clock(slot(1) + chrono::Duration::seconds(1));
        let app2 = app.clone_with_schedule(MONTHLY);
        let mut d = app2.spawn_ready();
        let proof = wait_subject("coordinator", "[PROEF 2]", 1, T);
        assert_eq!(proof.len(), 1, "{}", d.log_text());
        assert!(proof[0].text.contains("VERZENDEN") && proof[0].text.contains("Eerst de proef"), "{}", proof[0].text);
        assert!(with_subject("alice", "Verhaal met proef").is_empty(), "nothing before approval");
        let mid = proof[0].message_id.clone().unwrap();
        let code = proof_code(&proof[0].text);
        // Forged answers: the right From and subject without the reference; the reference
        // without the code; the code from another address. None sends anything.
        send_mail("coordinator", &format!("Re: {}", proof[0].subject), &format!("VERZENDEN {code}"), &[]);
        send_mail(
            "coordinator",
            &format!("Re: {}", proof[0].subject),
            "VERZENDEN\n\nGroet, Co",
            &[&format!("In-Reply-To: <{mid}>"), &format!("References: <{mid}>")],
        );
        send_mail(
            "Co <co@elsewhere.example>",
            &format!("Re: {}", proof[0].subject),
            &format!("VERZENDEN {code}"),
            &[&format!("In-Reply-To: <{mid}>")],
        );
        assert_eq!(
            app.wait_sql("SELECT COUNT(*) FROM messages WHERE category = 'review' AND status = 'new'", 3, T),
            3,
            "forged answers are filed for review; {}",
            d.log_text()
        );
        let notices = wait_subject("coordinator", "ter controle", 1, T);
        assert_eq!(notices.len(), 1, "the coordinator is told once");
        let issue2: String = app.sql("SELECT status FROM issues WHERE id = 2");
        assert_eq!(issue2, "proof", "a forged answer sends nothing");
        // The real answer: a reply to the proof, from the coordinator, with the code.
        send_mail(
            "coordinator",
            &format!("Re: {}", proof[0].subject),
            &format!("VERZENDEN {code}\n\nGroet, Co"),
            &[&format!("In-Reply-To: <{mid}>"), &format!("References: <{mid}>")],
        );
        assert_eq!(wait_subject("alice", "Verhaal met proef", 1, T).len(), 1, "{}", d.log_text());
        assert_eq!(app.wait_sql("SELECT COUNT(*) FROM issues WHERE id = 2 AND status = 'sent'", 1, T), 1);
        assert_eq!(with_subject("coordinator", "ter controle").len(), 1, "told once, not once per forged mail");
        assert!(d.terminate().success());

        // 3. Another proof, answered STOP: not sent.
        approved_story(app, "Verhaal dat wacht", "Nog niet.");
        app.set_clock(slot(2) + chrono::Duration::seconds(1));
        let app3 = app.clone_with_schedule(MONTHLY);
        let mut d = app3.spawn_ready();
        let proof = wait_subject("coordinator", "[PROEF 3]", 1, T);
        assert_eq!(proof.len(), 1, "{}", d.log_text());
        let mid = proof[0].message_id.clone().unwrap();
        let code = proof_code(&proof[0].text);
        send_mail(
            "coordinator",
            &format!("Re: {}", proof[0].subject),
            &format!("STOP {code}"),
            &[&format!("In-Reply-To: <{mid}>")],
        );
        assert_eq!(
            app.wait_sql("SELECT COUNT(*) FROM issues WHERE id = 3 AND status = 'cancelled'", 1, T),
            1,
            "{}",
            d.log_text()
        );
        let copies: i64 = app.sql("SELECT COUNT(*) FROM deliveries WHERE issue_id = 3");
        assert_eq!(copies, 0, "a stopped proof has no copies to send");
        wait_delivered();
        assert!(with_subject("alice", "Verhaal dat wacht").is_empty(), "a stopped proof is not sent");
        let free: i64 = app.sql("SELECT COUNT(*) FROM stories WHERE title = 'Verhaal dat wacht' AND status = 'approved' AND issue_id IS NULL");
        assert_eq!(free, 1, "its story waits for the next issue");
        // The coordinator's answers were filed without an auto-reply.
        assert!(with_subject("coordinator", "Auto:").is_empty());
        assert!(d.terminate().success());
    });
}

fn app_subscriber_alice_and_run(f: impl FnOnce(&TestApp)) {
    let app = TestApp::new("contact");
    app.ok(&["subscribers", "add", "alice@example.org", "--consent", "test"]);
    f(&app);
}

#[test]
fn forged_truncated_and_replayed_tokens_get_clear_pages_never_a_500() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut d = app.spawn_ready();
    app.wait_web();
    app.ok(&["subscribers", "add", "alice@example.org", "--name", "Alice"]);
    let confirm = wait_subject("alice", "Bevestig je aanmelding", 1, T);
    assert_eq!(confirm.len(), 1, "{}", d.log_text());
    let link = url_in(&confirm[0].text, &format!("{}/confirm/", app.web));
    let token = link.rsplit('/').next().unwrap().to_string();
    let flip = |t: &str| {
        let mut b = t.as_bytes().to_vec();
        let i = b.len() - 3;
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let base = &app.web;
    for (what, url) in [
        ("forged", format!("{base}/confirm/{}", flip(&token))),
        ("truncated", format!("{base}/confirm/{}", &token[..token.len() - 5])),
        ("garbage", format!("{base}/confirm/%3Cscript%3E")),
        ("too long", format!("{base}/confirm/{}", "A".repeat(3000))),
        ("wrong purpose", format!("{base}/unsubscribe/{token}")),
    ] {
        let (code, page) = http("GET", &url, "");
        assert_eq!(code, 404, "{what}: {page}");
        assert!(page.contains("Deze link werkt niet"), "{what}: {page}");
        let (code, _) = http("POST", &url, "List-Unsubscribe=One-Click");
        assert!((400..500).contains(&code), "{what} POST: {code}");
    }
    assert_eq!(status_of(&app, "alice@example.org"), "pending", "no forged link did anything");
    let (code, page) = http("GET", &link, "");
    assert!(code == 200 && page.contains("<button"), "{page}");
    assert_eq!(http("POST", &link, "").0, 200);
    assert_eq!(status_of(&app, "alice@example.org"), "active");
    // Replayed: the status changed, so the link's token no longer verifies.
    let (code, page) = http("POST", &link, "");
    assert!(code == 404 && page.contains("Deze link werkt niet"), "replayed confirm: {page}");
    let welcome = wait_subject("alice", "Welkom", 1, T);
    let unsub = url_in(&welcome[0].text, &format!("{}/unsubscribe/", app.web));
    assert_eq!(http("POST", &unsub, "").0, 200);
    let (code, page) = http("POST", &unsub, "");
    assert!(code == 404 && page.contains("Deze link werkt niet"), "replayed unsubscribe: {page}");
    // An old confirmation link does not bring an unsubscribed address back.
    for method in ["GET", "POST"] {
        let (code, page) = http(method, &link, "");
        assert!(code == 404 && page.contains("Deze link werkt niet"), "{method}: {page}");
    }
    assert_eq!(status_of(&app, "alice@example.org"), "unsubscribed");
    assert_eq!(http("GET", &format!("{base}/archive/999"), "").0, 404);
    assert_eq!(http("GET", &format!("{base}/archive/abc"), "").0, 404);
    assert!(d.terminate().success());
}

#[test]
fn a_known_ambassador_sends_a_story_by_mail_and_it_needs_consent_before_approval() {
    let _g = fresh();
    let app = TestApp::new("contact");
    app.ok(&["ambassadors", "add", "Bob de Boer", "--role", "jeugdarts", "--email", "bob@example.org"]);
    let mut d = app.spawn_ready();
    send_mail("Bob <bob@example.org>", "Verhaal: Samen aan tafel", "Ik **zat** naast de ouders.\n\nZo begon het.", &[]);
    // Someone unknown with the same kind of subject is an ordinary question.
    send_mail("Alice <alice@example.org>", "Verhaal: van mij", "Mag ik ook iets vertellen?", &[]);
    assert_eq!(wait_count("contact", "Verhalen", 1, T), 1, "{}", d.log_text());
    assert_eq!(wait_count("contact", "Vragen", 1, T), 1);
    let reply = wait_subject("bob", "Samen aan tafel", 1, T);
    assert_eq!(reply.len(), 1);
    assert!(reply[0].text.contains("toestemming") && reply[0].text.contains("\"ja\""), "{}", reply[0].text);
    let stories: serde_json::Value = serde_json::from_str(&app.ok(&["stories", "list", "--json"])).unwrap();
    assert_eq!(stories[0]["title"], "Samen aan tafel");
    assert_eq!(stories[0]["status"], "submitted");
    assert_eq!(stories[0]["ambassador"], "Bob de Boer");
    assert!(stories[0]["consent_at"].is_null());
    let refused = app.run_cli(&["stories", "approve", "1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no consent to publish"));
    // Bob says yes to our reply: consent recorded with the story.
    let mid = reply[0].message_id.clone().unwrap();
    send_mail(
        "Bob <bob@example.org>",
        &format!("Re: {}", reply[0].subject),
        "Ja, dat mag.\n\n> Mogen we je verhaal publiceren?",
        &[&format!("In-Reply-To: <{mid}>")],
    );
    assert_eq!(app.wait_sql("SELECT COUNT(*) FROM stories WHERE consent_at IS NOT NULL", 1, T), 1, "{}", d.log_text());
    let consent: String = app.sql("SELECT consent_source FROM stories WHERE id = 1");
    assert!(consent.starts_with("mail:"), "{consent}");
    assert_eq!(wait_count("contact", "Verhalen", 2, T), 2, "the answer joins the story's folder");
    app.ok(&["stories", "approve", "1"]);
    let show = app.ok(&["stories", "show", "1"]);
    assert!(show.contains("approved") && show.contains("Ik **zat** naast de ouders."), "{show}");
    assert!(d.terminate().success());
}

/// Runs `poll --once` once before slot `n` (the schedule is seen) and once just after it
/// (its issue is made, with a proof), moving the instance's clock.
pub(crate) fn poll_with_a_due_slot(app: &TestApp, n: u32) {
    let scheduled = app.clone_with_schedule(MONTHLY);
    app.set_clock(slot(n) - chrono::Duration::hours(1));
    scheduled.poll();
    app.set_clock(slot(n) + chrono::Duration::seconds(1));
    scheduled.poll();
}

#[test]
fn an_unanswered_proof_is_sent_or_dropped_at_its_deadline_and_approve_and_cancel_work_from_the_cli() {
    let _g = fresh();
    for (action, expected) in [("send", "sent"), ("drop", "dropped")] {
        let app = TestApp::new("contact").with_env("OUTREACH_NEWSLETTER__PROOF_DEADLINE_ACTION", action);
        app.ok(&["subscribers", "add", "alice@example.org", "--consent", "test"]);
        approved_story(&app, &format!("Deadline {action}"), "Tekst.");
        poll_with_a_due_slot(&app, 0);
        let proofs: i64 = app.sql("SELECT COUNT(*) FROM issues WHERE status = 'proof'");
        assert_eq!(proofs, 1);
        assert_eq!(wait_subject("coordinator", &format!("Deadline {action}"), 1, T).len(), 1, "the proof");
        app.poll();
        let status: String = app.sql("SELECT status FROM issues");
        assert_eq!(status, "proof", "before the deadline nothing happens");
        app.set_clock(slot(0) + chrono::Duration::hours(49)); // past the 48-hour deadline
        app.poll();
        let status: String = app.sql("SELECT status FROM issues");
        assert_eq!(status, expected, "{action}");
        let want = usize::from(action == "send");
        assert_eq!(wait_subject("alice", &format!("Deadline {action}"), want, Duration::from_secs(5)).len(), want);
    }
    // `newsletter approve` and `newsletter cancel` on proofs.
    let app = TestApp::new("contact");
    app.ok(&["subscribers", "add", "bob@example.org", "--consent", "test"]);
    approved_story(&app, "Goedgekeurd via de opdrachtregel", "Tekst.");
    poll_with_a_due_slot(&app, 0);
    let out = app.ok(&["newsletter", "approve"]);
    assert!(out.contains("sending to 1 subscriber(s)"), "{out}");
    assert_eq!(wait_subject("bob", "Goedgekeurd via de opdrachtregel", 1, T).len(), 1);
    let refused = app.run_cli(&["newsletter", "approve"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("no issue is waiting"));
    approved_story(&app, "Geannuleerd via de opdrachtregel", "Tekst.");
    poll_with_a_due_slot(&app, 1);
    let out = app.ok(&["newsletter", "cancel"]);
    assert!(out.contains("cancelled"), "{out}");
    let free: i64 = app.sql("SELECT COUNT(*) FROM stories WHERE status = 'approved' AND issue_id IS NULL");
    assert_eq!(free, 1, "the story of a cancelled proof waits for the next issue");
    assert!(with_subject("bob", "Geannuleerd via de opdrachtregel").is_empty());
}

#[test]
fn two_daemons_on_one_machine_without_a_web_address_both_run() {
    let _g = fresh();
    let first = TestApp::new("contact").without_web_listen();
    let second = TestApp::new("alice").without_web_listen();
    let mut d1 = first.spawn_ready();
    let mut d2 = second.spawn_ready();
    wait_until("the second daemon says its web endpoints did not start", || {
        d2.log_text().contains("web endpoints not started")
    });
    // The second still files and answers mail.
    send_raw(
        Some("bob@example.org"),
        "alice",
        &mail("Bob <bob@example.org>", "Vraag", "Hoe werkt het netwerk?", &[]).1,
    );
    assert_eq!(second.wait_sql("SELECT COUNT(*) FROM messages", 1, T), 1, "{}", d2.log_text());
    assert!(d1.terminate().success());
    assert!(d2.terminate().success());
    // A configured address that is taken is an error that names the key.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port().to_string();
    let third = TestApp::new("contact").with_env("OUTREACH_WEB__LISTEN", &format!("127.0.0.1:{port}"));
    let out = third.cmd().arg("run").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.listen"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn retention_forgets_unconfirmed_sign_ups_and_old_mail_text() {
    let _g = fresh();
    let app = TestApp::new("contact").with_env("OUTREACH_RETENTION__FILED_MAIL_DAYS", "10");
    app.ok(&["subscribers", "add", "old@pending.test"]);
    app.ok(&["subscribers", "add", "kept@active.test", "--consent", "test"]);
    let (_, raw) = mail("Bob <bob@example.org>", "Vraag", "<p>Hoe kan ik meedoen aan een <b>bijeenkomst</b>?</p>", &[]);
    let raw = String::from_utf8(raw).unwrap().replace("text/plain", "text/html");
    send_raw(Some("bob@example.org"), "contact", raw.as_bytes());
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    let html: i64 = app.sql("SELECT body_html IS NOT NULL FROM messages");
    assert_eq!(html, 1, "the mail's HTML is kept while it is young");
    // 31 days later: a new sign-up, then the housekeeping of the next pass.
    app.set_clock(chrono::Utc::now() + chrono::Duration::days(31));
    app.ok(&["subscribers", "add", "new@pending.test"]);
    app.poll();
    let emails: Vec<String> = {
        let c = rusqlite::Connection::open(&app.db).unwrap();
        let mut st = c.prepare("SELECT email FROM subscribers ORDER BY email").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(emails, ["kept@active.test", "new@pending.test"], "a sign-up unconfirmed for 30 days is forgotten");
    let body: String = app.sql("SELECT body_text FROM messages");
    assert_eq!(body, "", "the text of old filed mail is removed");
    let html: i64 = app.sql("SELECT body_html IS NULL FROM messages");
    assert_eq!(html, 1, "and its HTML");
    let subject: String = app.sql("SELECT subject FROM messages");
    assert_eq!(subject, "Vraag", "what was filed stays");
    let raw: i64 = app.sql("SELECT length(raw) FROM outbox WHERE kind = 'auto_reply'");
    assert_eq!(raw, 0, "the bytes of old sent mail are removed");
    let leftover: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE rcpt = 'old@pending.test'");
    assert_eq!(leftover, 0, "nothing of the forgotten address stays in the outbox");
}

#[test]
fn an_address_that_unsubscribes_during_a_send_gets_nothing_after_that_moment() {
    let _g = fresh();
    // 20 messages a second: the send of 60 takes about three seconds.
    let app = TestApp::new("contact").with_env("OUTREACH_NEWSLETTER__RATE_PER_MINUTE", "1200");
    app.import_active((0..60).map(|i| format!("r{i:02}@during.test")));
    approved_story(&app, "Tijdens het versturen", "Tekst.");
    let mut d = app.spawn_ready();
    app.wait_web();
    app.ok(&["newsletter", "send"]);
    // Outcomes are recorded per batch; the arrivals show the progress.
    assert!(wait_count("catchall", "INBOX", 5, T) >= 5, "{}", d.log_text());
    // The last subscriber leaves by the one-click POST while the issue is going out.
    let (id, nonce): (i64, String) = {
        let c = rusqlite::Connection::open(&app.db).unwrap();
        c.query_row("SELECT id, token_nonce FROM subscribers WHERE email = 'r59@during.test'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let token = outreach::newsletter::tokens::Signer::new(b"integration-test-secret-0123456789abcdef").token(
        outreach::newsletter::tokens::Purpose::Unsubscribe,
        outreach::domain::ids::SubscriberId(id),
        &nonce,
        chrono::Utc::now(),
    );
    let (code, _) = http("POST", &format!("{}/unsubscribe/{token}", app.web), "List-Unsubscribe=One-Click");
    assert_eq!(code, 200);
    let arrived = count("catchall", "INBOX");
    assert!(arrived < 50, "the unsubscribe came during the send ({arrived} arrived)");
    assert_eq!(app.wait_sql("SELECT COUNT(*) FROM issues WHERE status = 'sent'", 1, T), 1, "{}", d.log_text());
    let last: String = app.sql("SELECT d.status FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE s.email = 'r59@during.test'");
    assert_eq!(last, "skipped");
    let sent: i64 = app.sql("SELECT COUNT(*) FROM deliveries WHERE status = 'sent'");
    assert_eq!(sent, 59);
    assert!(d.terminate().success());
    wait_delivered();
    let to_r59 = fetch_all("catchall", "INBOX")
        .iter()
        .filter(|r| {
            String::from_utf8_lossy(r).contains("To: r59@during.test")
                && String::from_utf8_lossy(r).contains("Tijdens het versturen")
        })
        .count();
    assert_eq!(to_r59, 0, "nothing after unsubscribing");
}

#[test]
fn the_mailto_unsubscribe_works_from_another_address_by_its_token() {
    let _g = fresh();
    let app = TestApp::new("contact");
    app.ok(&["subscribers", "add", "eve@mixed.test", "--name", "Eve", "--consent", "test"]);
    approved_story(&app, "Voor Eve", "Tekst.");
    app.ok(&["newsletter", "send"]);
    let copy = wait_subject("catchall", "Voor Eve", 1, T);
    assert_eq!(copy.len(), 1);
    // What a mail program does with the mailto: link in List-Unsubscribe.
    let lu = copy[0].header("list-unsubscribe").unwrap().to_string();
    let mailto = url_in(&lu, "mailto:");
    let (to, query) = mailto.trim_start_matches("mailto:").split_once('?').unwrap();
    assert_eq!(to, "contact@example.org");
    let subject = query.strip_prefix("subject=").unwrap().replace("%20", " ");
    assert!(subject.starts_with("afmelden "), "{subject}");
    // Sent from another address of hers: the token says who it is.
    send_mail("Eve <eve.thuis@elders.test>", &subject, "", &[]);
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    assert_eq!(status_of(&app, "eve@mixed.test"), "unsubscribed");
    let src: String = app.sql("SELECT unsubscribe_source FROM subscribers WHERE email = 'eve@mixed.test'");
    assert!(src.starts_with("mail <"), "{src}");
    // A forged token in the subject unsubscribes nobody.
    app.ok(&["subscribers", "add", "frank@mixed.test", "--consent", "test"]);
    send_mail("Mallory <mallory@elders.test>", "afmelden AQIAAAAAAAAAAgAHnLJxrdc_lMG8LEw84uceFy7i", "", &[]);
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    assert_eq!(status_of(&app, "frank@mixed.test"), "active");
}

#[test]
fn the_subscriber_story_and_preview_commands_do_what_they_say() {
    let _g = fresh();
    let app = TestApp::new("contact");
    app.ok(&["subscribers", "add", "ann@cli.test", "--name", "Ann", "--consent", "paper form"]);
    app.ok(&["subscribers", "add", "ben@cli.test", "--language", "en"]);
    let list: serde_json::Value = serde_json::from_str(&app.ok(&["subscribers", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["email"], "ann@cli.test");
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[0]["consent_source"], "cli: paper form");
    assert_eq!(list[1]["status"], "pending");
    assert_eq!(list[1]["language"], "en");
    let active: serde_json::Value =
        serde_json::from_str(&app.ok(&["subscribers", "list", "--status", "active", "--json"])).unwrap();
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert!(!app.run_cli(&["subscribers", "list", "--status", "gone"]).status.success());
    let csv = app.ok(&["subscribers", "export"]);
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("email,name,language,status,source,consent_source,consent_at"), "{csv}");
    assert!(csv.contains("ann@cli.test,Ann,nl,active,cli,cli: paper form,"), "{csv}");
    let json: serde_json::Value = serde_json::from_str(&app.ok(&["subscribers", "export", "--json"])).unwrap();
    assert!(json[1]["consent_at"].is_null(), "pending: no consent yet");

    // remove: unsubscribed at once with one short mail; --erase keeps only a hash.
    app.ok(&["subscribers", "remove", "ann@cli.test"]);
    assert_eq!(status_of(&app, "ann@cli.test"), "unsubscribed");
    assert_eq!(wait_subject("catchall", "Je bent afgemeld", 1, T).len(), 1);
    let out = app.ok(&["subscribers", "remove", "ben@cli.test", "--erase"]);
    assert!(out.contains("erased"), "{out}");
    let left: i64 = app.sql("SELECT COUNT(*) FROM subscribers WHERE email = 'ben@cli.test'");
    assert_eq!(left, 0);
    let again = app.run_cli(&["subscribers", "add", "ben@cli.test"]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never mailed again"));
    assert!(!app.run_cli(&["subscribers", "remove", "nobody@cli.test"]).status.success());

    // stories: reject, list by status, show as JSON; a bad file is a clear error.
    let path = app.dir.path().join("r.md");
    std::fs::write(&path, "---\ntitle: Niet dit\nambassador: Piet\nrole: leraar\n---\nTekst.\n").unwrap();
    app.ok(&["stories", "add", path.to_str().unwrap()]);
    app.ok(&["stories", "reject", "1"]);
    let rejected: serde_json::Value =
        serde_json::from_str(&app.ok(&["stories", "list", "--status", "rejected", "--json"])).unwrap();
    assert_eq!(rejected[0]["title"], "Niet dit");
    let shown: serde_json::Value = serde_json::from_str(&app.ok(&["stories", "show", "1", "--json"])).unwrap();
    assert_eq!((shown["status"].as_str(), shown["role"].as_str()), (Some("rejected"), Some("leraar")));
    std::fs::write(&path, "geen front matter").unwrap();
    let bad = app.run_cli(&["stories", "add", path.to_str().unwrap()]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("front matter"));

    // preview: as HTML to a file, as text, and by mail, exactly as a subscriber gets it.
    assert!(!app.run_cli(&["newsletter", "preview"]).status.success(), "no approved stories yet");
    approved_story(&app, "Een voorproefje", "Werk **mensgericht**.");
    let html = app.dir.path().join("p.html");
    app.ok(&["newsletter", "preview", "--out", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<html lang=\"nl\"") && page.contains("<strong>mensgericht</strong>"), "{page}");
    let text = app.ok(&["newsletter", "preview"]);
    assert!(
        text.starts_with("Subject: ") && text.contains("Een voorproefje") && text.contains("Beste lezer"),
        "{text}"
    );
    app.ok(&["newsletter", "preview", "--to", "alice@example.org", "--language", "en"]);
    let got = wait_subject("alice", "Een voorproefje", 1, T);
    assert_eq!(got.len(), 1);
    assert!(got[0].header("list-unsubscribe").is_some() && got[0].text.contains("Dear reader"), "{}", got[0].text);
    let issues: i64 = app.sql("SELECT COUNT(*) FROM issues");
    assert_eq!(issues, 0, "a preview makes no issue");
}
