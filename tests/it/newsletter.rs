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
