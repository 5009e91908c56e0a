//! Consent that only a person gives: the confirmation link shows a button (a GET changes
//! nothing), sign-ups by mail cannot become a stream of confirmation mails, and the web
//! pages carry their security headers.

use std::io::{Read, Write};
use std::time::Duration;

use crate::helpers::*;
use crate::newsletter::{status_of, url_in};

const T: Duration = Duration::from_secs(30);

/// A raw HTTP request: `(status, headers in lower case, body)`.
fn http_full(method: &str, url: &str) -> (u16, Vec<(String, String)>, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Asserts the headers every response must carry; `https`: whether HSTS is expected.
fn assert_security_headers(what: &str, h: &[(String, String)], https: bool) {
    let csp = header(h, "content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP in {h:?}"));
    for d in ["default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"] {
        assert!(csp.contains(d), "{what}: {csp}");
    }
    assert_eq!(header(h, "x-content-type-options"), Some("nosniff"), "{what}");
    assert_eq!(header(h, "referrer-policy"), Some("no-referrer"), "{what}");
    let hsts = header(h, "strict-transport-security");
    assert_eq!(hsts, https.then_some("max-age=31536000"), "{what}: HSTS only when base_url is https");
}

#[test]
fn a_get_on_the_confirmation_link_changes_nothing_and_the_button_confirms() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut d = app.spawn_ready();
    app.wait_web();
    send_mail(
        "Alice <alice@example.org>",
        "Nieuwsbrief",
        "Hallo,\n\nIk wil graag de nieuwsbrief ontvangen.\n\nAlice",
        &[],
    );
    let confirm = wait_subject("alice", "Bevestig je aanmelding", 1, T);
    assert_eq!(confirm.len(), 1, "confirmation mail\n{}", d.log_text());
    let link = url_in(&confirm[0].text, &format!("{}/confirm/", app.web));

    // What a mail security gateway does: open the link, more than once, and look at it.
    for method in ["GET", "GET", "HEAD"] {
        let (code, headers, page) = http_full(method, &link);
        assert_eq!(code, 200, "{method}: {page}");
        assert_security_headers(&format!("{method} confirm page"), &headers, false);
        if method == "GET" {
            assert!(page.contains("<form method=\"post\"") && page.contains("<button"), "one button: {page}");
            assert!(page.contains("Bevestig je aanmelding"), "{page}");
        }
    }
    assert_eq!(status_of(&app, "alice@example.org"), "pending", "a GET never consents");
    let confirmed: i64 = app.sql("SELECT COUNT(*) FROM subscribers WHERE confirmed_at IS NOT NULL");
    assert_eq!(confirmed, 0);

    // A person presses the button.
    let (code, headers, page) = http_full("POST", &link);
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("Je aanmelding is bevestigd"), "{page}");
    assert_security_headers("POST confirm", &headers, false);
    assert_eq!(status_of(&app, "alice@example.org"), "active");
    let consent: String = app.sql("SELECT consent_source FROM subscribers WHERE email = 'alice@example.org'");
    assert!(consent.starts_with("link: confirmation button"), "{consent}");
    let welcome = wait_subject("alice", "Welkom", 1, T);
    assert_eq!(welcome.len(), 1, "welcome mail\n{}", d.log_text());
    // The welcome mail's unsubscribe link was made after the move: it works.
    let unsub = url_in(&welcome[0].text, &format!("{}/unsubscribe/", app.web));
    let (code, page) = http("GET", &unsub, "");
    assert!(code == 200 && page.contains("<button"), "{page}");

    // Error pages and the health check carry the headers too.
    for url in [format!("{}/nope", app.web), format!("{}/confirm/garbage", app.web), format!("{}/health", app.web)] {
        let (_, headers, _) = http_full("GET", &url);
        assert_security_headers(&url, &headers, false);
    }
    assert!(d.terminate().success(), "{}", d.log_text());
}

#[test]
fn with_an_https_base_url_every_page_asks_for_https_only() {
    let _g = fresh();
    let app = TestApp::new("contact").with_env("OUTREACH_WEB__BASE_URL", "https://nieuwsbrief.example.org");
    let mut d = app.spawn_ready();
    app.wait_web();
    for path in ["/archive", "/health", "/confirm/garbage"] {
        let (_, headers, _) = http_full("GET", &format!("{}{path}", app.web));
        assert_security_headers(path, &headers, true);
    }
    assert!(d.terminate().success(), "{}", d.log_text());
}

/// The messages filed from alice whose reason mentions `needle`.
fn filed_with(app: &TestApp, needle: &str) -> i64 {
    app.sql(&format!("SELECT COUNT(*) FROM messages WHERE reason LIKE '%{needle}%'"))
}

#[test]
fn a_hundred_sign_ups_for_one_address_get_one_confirmation_and_three_in_thirty_days_at_most() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let start = chrono::Utc::now();
    app.set_clock(start);
    let mut d = app.spawn_ready();
    let body = "Hallo,\n\nIk wil graag de nieuwsbrief ontvangen.\n\nGroet";
    // A hundred sign-ups on one day, each its own conversation (its own subject and
    // Message-ID), so each reaches the subscription rule.
    for i in 0..100 {
        send_mail("Alice <alice@example.org>", &format!("Aanmelding {i}"), body, &[]);
    }
    let n = app.wait_sql("SELECT COUNT(*) FROM messages", 100, Duration::from_secs(180));
    assert_eq!(n, 100, "all filed\n{}", d.log_text());
    assert_eq!(filed_with(&app, "confirmation mail queued"), 1);
    assert_eq!(filed_with(&app, "a confirmation went out less than a day ago"), 99, "{}", d.log_text());
    let confirmations = || -> i64 { app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'confirm'") };
    assert_eq!(confirmations(), 1);
    assert_eq!(wait_subject("alice", "Bevestig je aanmelding", 1, T).len(), 1, "{}", d.log_text());

    // One more request on each of the next four days: two more confirmations, then none.
    let expected = [(1, 2), (2, 3), (3, 3), (4, 3)];
    for (day, total) in expected {
        // A day and a few minutes after the previous request (the seconds that pass
        // between moving the clock and filing never make it less than a day).
        app.set_clock(start + chrono::Duration::days(day) + chrono::Duration::minutes(5 * day));
        send_mail("Alice <alice@example.org>", &format!("Nieuwsbrief dag {day}"), body, &[]);
        let filed = app.wait_sql("SELECT COUNT(*) FROM messages", 100 + day, T);
        assert_eq!(filed, 100 + day, "day {day} filed\n{}", d.log_text());
        assert_eq!(confirmations(), total, "day {day}");
    }
    assert_eq!(filed_with(&app, "three went out in the last 30 days"), 2, "days 3 and 4 hit the cap");
    assert_eq!(app.wait_sql("SELECT COUNT(*) FROM outbox WHERE kind = 'confirm' AND status = 'sent'", 3, T), 3);
    let got = wait_subject("alice", "Bevestig je aanmelding", 3, T);
    assert_eq!(got.len(), 3, "three confirmations in five days\n{}", d.log_text());
    assert_eq!(status_of(&app, "alice@example.org"), "pending");
    // Nothing else went to her: no auto-replies to the sign-ups either.
    assert_eq!(
        count("alice", "INBOX"),
        3,
        "{:?}",
        with_subject("alice", "").iter().map(|m| &m.subject).collect::<Vec<_>>()
    );

    // A person acts: the button of the first confirmation still works.
    let link = url_in(&got[0].text, &format!("{}/confirm/", app.web));
    app.wait_web();
    let (code, page) = http("POST", &link, "");
    assert_eq!(code, 200, "{page}");
    assert_eq!(status_of(&app, "alice@example.org"), "active");
    assert!(d.terminate().success(), "{}", d.log_text());
}
