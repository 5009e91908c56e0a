//! Subscribers, stories and newsletters end to end against the real mail stack.

use std::time::{Duration, Instant};

use crate::helpers::*;
use outreach::inbox::parse::ParsedMail;

const T: Duration = Duration::from_secs(30);

/// Adds an approved story from a Markdown file; returns its id.
fn approved_story(app: &TestApp, title: &str, body: &str) -> i64 {
    let path = app.dir.path().join(format!("story-{}.md", new_id()));
    std::fs::write(
        &path,
        format!("---\ntitle: {title}\nambassador: Fatima El Amrani\nrole: intern begeleider\n---\n{body}\n"),
    )
    .unwrap();
    let out = app.ok(&["stories", "add", path.to_str().unwrap()]);
    let id: i64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    app.ok(&["stories", "approve", &id.to_string()]);
    id
}

/// The messages in `user`'s INBOX whose subject contains `needle`.
fn with_subject(user: &str, needle: &str) -> Vec<ParsedMail> {
    parsed(user, "INBOX").into_iter().filter(|m| m.subject.contains(needle)).collect()
}

fn wait_subject(user: &str, needle: &str, n: usize, timeout: Duration) -> Vec<ParsedMail> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = with_subject(user, needle);
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The first URL in a text that starts with `prefix`.
fn url_in(text: &str, prefix: &str) -> String {
    let i = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
    text[i..].split(|c: char| c.is_whitespace() || c == '>' || c == '"').next().unwrap().to_string()
}

fn status_of(app: &TestApp, email: &str) -> String {
    app.sql(&format!("SELECT status FROM subscribers WHERE email = '{email}'"))
}

#[test]
fn lifecycle_by_mail_and_link_and_nothing_after_unsubscribing() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut d = app.spawn_ready();
    app.wait_web();

    // Alice asks by mail and confirms by link.
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
    assert!(page.contains("Je aanmelding is bevestigd"), "{page}");
    assert_eq!(status_of(&app, "alice@example.org"), "active");
    let consent: String = app.sql("SELECT consent_source FROM subscribers WHERE email = 'alice@example.org'");
    assert!(consent.starts_with("link:"), "{consent}");
    assert_eq!(wait_subject("alice", "Welkom", 1, T).len(), 1, "welcome mail");
    // The link again: a clear page, no second welcome.
    let (code, page) = http("GET", &link, "");
    assert_eq!(code, 200);
    assert!(page.contains("al aangemeld"), "{page}");

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
    // Replayed: same answer, no second mail.
    let (code, page) = http("POST", &https, "List-Unsubscribe=One-Click");
    assert_eq!(code, 200);
    assert!(page.contains("al afgemeld"), "{page}");

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
    std::thread::sleep(Duration::from_secs(2));
    for u in ["alice", "bob", "catchall"] {
        assert!(with_subject(u, "Samen aan tafel").is_empty(), "{u} got an issue after unsubscribing");
    }
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
    std::thread::sleep(Duration::from_secs(1));
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
        assert!(lu.contains(&format!("<{}/unsubscribe/", app.web)) && lu.contains("<mailto:contact@example.org?subject="), "{lu}");
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
            let greeting = if n % 10 == 0 { format!("Dear S{n},") } else { format!("Beste S{n},") };
            assert!(m.text.contains(&greeting), "personalised: {}", m.text);
        }
    }
    issue_to.sort();
    assert_eq!(issue_to, active, "each active subscriber exactly once, nobody else");
    let status = app.ok(&["newsletter", "status", "1"]);
    assert!(status.contains("120 sent"), "{status}");
}

#[test]
fn kill_9_during_a_send_to_2000_subscribers_then_restart_delivers_all_with_few_duplicates() {
    use rand::Rng;
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut csv = String::from("email,consent_at\n");
    for i in 0..2000 {
        csv.push_str(&format!("k{i}@crash.test,2025-01-01\n"));
    }
    let file = app.dir.path().join("k.csv");
    std::fs::write(&file, csv).unwrap();
    app.ok(&["subscribers", "import", file.to_str().unwrap()]);
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
    std::thread::sleep(Duration::from_secs(2));
    let ids: Vec<String> = {
        let mut s = imap("catchall");
        s.examine("INBOX").unwrap();
        let fetched = s.fetch("1:*", "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]").unwrap();
        fetched
            .iter()
            .filter_map(|f| f.header().map(|h| String::from_utf8_lossy(h).trim().to_string()))
            .collect()
    };
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    let duplicates = ids.len() - unique.len();
    println!(
        "kill -9 during a send to 2000: {} kills at (sent, in flight) = {kills:?}; {} messages arrived, {} distinct, {duplicates} duplicate(s) (concurrency {concurrency})",
        kills.len(),
        ids.len(),
        unique.len()
    );
    assert!(arrived >= 2000);
    assert_eq!(unique.len(), 2000, "every subscriber got the issue");
    assert!(duplicates as i64 <= concurrency, "{duplicates} duplicates");
}
