//! Nobody acts in the network's name on a forged word (issue 7): third parties named in
//! Reply-To, sender authentication by our own server, forged bounces, reused Message-IDs.

use std::time::Duration;

use crate::helpers::{TestApp, fresh, mail, new_id, send_mail, send_raw, wait_count, wait_subject};

const T: Duration = Duration::from_secs(20);

/// Waits for `user` to have at least one mail whose subject contains `needle`.
fn wait_for_subject(user: &str, needle: &str) -> bool {
    !wait_subject(user, needle, 1, T).is_empty()
}

#[test]
fn ten_mails_naming_one_reply_to_get_that_address_at_most_one_mail() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let mut d = app.spawn_ready();
    // Ten "senders", one victim in Reply-To (delivered to the catch-all mailbox).
    for i in 0..10 {
        let (_, raw) = mail(
            &format!("Sender {i} <sender{i}@attack.example>"),
            "Ik wil graag ambassadeur worden",
            "Hallo, ik wil graag meedoen aan het netwerk. Groet",
            &["Reply-To: victim@victim.example"],
        );
        send_raw(Some(&format!("sender{i}@attack.example")), "contact", &raw);
    }
    // A marker: filed after the ten, answered; then every decision about the ten is made.
    send_mail("Alice <alice@example.org>", "Markeer", "Hoe kan ik vragen stellen over ouderbetrokkenheid?", &[]);
    assert!(wait_for_subject("alice", "Markeer"), "{}", d.log_text());
    let to_victim: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE rcpt_norm = 'victim@victim.example'");
    assert_eq!(to_victim, 1, "one mail to the Reply-To address, whatever the From");
    let windowed: i64 =
        app.sql("SELECT COUNT(*) FROM messages WHERE reply_note LIKE '%already got an auto-reply within%'");
    assert_eq!(windowed, 9, "the other nine say why they were not answered");
    assert_eq!(wait_count("catchall", "INBOX", 1, T), 1);
    assert!(d.terminate().success());
}

#[test]
fn a_reply_to_naming_a_list_or_noreply_address_is_never_answered() {
    let _g = fresh();
    let app = TestApp::new("contact");
    for reply_to in ["list-request@lists.example", "noreply@shop.example", "postmaster@victim.example"] {
        let (_, raw) = mail(
            "Bob <bob@example.org>",
            &format!("Vraag over {reply_to}"),
            "Hoe werkt het netwerk precies?",
            &[&format!("Reply-To: {reply_to}")],
        );
        send_raw(Some("bob@example.org"), "contact", &raw);
    }
    assert_eq!(wait_count("contact", "INBOX", 3, T), 3);
    app.poll();
    let replies: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'auto_reply'");
    assert_eq!(replies, 0);
    let notes: i64 = app.sql("SELECT COUNT(*) FROM messages WHERE reply_note LIKE '%never wants an answer%'");
    assert_eq!(notes, 3);
}

#[test]
fn with_an_authserv_id_a_dmarc_failure_is_not_answered_and_does_not_act_and_a_strangers_header_is_ignored() {
    let _g = fresh();
    let app = TestApp::new("contact").with_env("OUTREACH_TRUST__AUTHSERV_ID", "mx.test.example");
    app.ok(&["subscribers", "add", "bob@example.org", "--consent", "test"]);
    let mut d = app.spawn_ready();
    // Our server says DMARC failed for "Bob" asking to leave: nothing happens.
    send_mail(
        "Bob <bob@example.org>",
        "Afmelden",
        "Ik wil me afmelden voor de nieuwsbrief.",
        &[
            "Authentication-Results: mx.test.example; spf=fail smtp.mailfrom=example.org; dmarc=fail (p=reject) header.from=example.org",
        ],
    );
    // The same header written by anyone else is ignored: Alice is answered as usual.
    send_mail(
        "Alice <alice@example.org>",
        "Een vraag",
        "Hoe kan ik ouders beter betrekken?",
        &["Authentication-Results: elsewhere.example; dmarc=fail header.from=example.org"],
    );
    assert!(wait_for_subject("alice", "Een vraag"), "{}", d.log_text());
    let review: String = app.sql("SELECT reason FROM messages WHERE subject = 'Afmelden'");
    assert!(review.contains("dmarc=fail"), "{review}");
    let category: String = app.sql("SELECT category FROM messages WHERE subject = 'Afmelden'");
    assert_eq!(category, "review");
    let status: String = app.sql("SELECT status FROM subscribers WHERE email = 'bob@example.org'");
    assert_eq!(status, "active", "a failing sender does not act");
    let to_bob: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE rcpt_norm = 'bob@example.org'");
    assert_eq!(to_bob, 0, "and is not answered");
    assert!(d.terminate().success());
}

#[test]
fn a_forged_dsn_without_the_signed_tag_changes_no_subscriber() {
    let _g = fresh();
    let app = TestApp::new("contact");
    app.ok(&["subscribers", "add", "bob@example.org", "--consent", "test"]);
    let path = app.dir.path().join("story.md");
    std::fs::write(&path, "---\ntitle: Terugkaatsen\nambassador: Fatima\n---\nTekst.\n").unwrap();
    app.ok(&["stories", "add", path.to_str().unwrap()]);
    app.ok(&["stories", "approve", "1"]);
    app.ok(&["newsletter", "send"]);
    assert!(wait_for_subject("bob", "Terugkaatsen"));
    let copy: String = app.sql("SELECT message_id FROM deliveries");
    // A "delivery report" to the contact address (not to the signed bounce address),
    // naming Bob and quoting his copy's Message-ID: anyone could write this.
    let raw = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.elsewhere.test>\r\nTo: contact@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <{}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.elsewhere.test\r\n\r\nFinal-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{copy}>\r\n--B--\r\n",
        new_id()
    );
    send_raw(None, "contact", raw.as_bytes());
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    let reason: String = app.sql("SELECT reason FROM messages WHERE category = 'bounce'");
    assert!(reason.contains("nothing changed"), "{reason}");
    let status: String = app.sql("SELECT status FROM subscribers WHERE email = 'bob@example.org'");
    assert_eq!(status, "active");
    let delivery: String = app.sql("SELECT status FROM deliveries");
    assert_eq!(delivery, "sent");
}

#[test]
fn a_reused_message_id_with_other_content_is_filed_for_review_and_a_true_replay_is_not() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let id = new_id();
    let raw = |body: &str| {
        format!(
            "From: Bob <bob@example.org>\r\nTo: contact@example.org\r\nSubject: Vraag\r\nMessage-ID: <{id}>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0100\r\n\r\n{body}\r\n"
        )
        .into_bytes()
    };
    send_raw(Some("bob@example.org"), "contact", &raw("Hoe werkt het netwerk?"));
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    // The same mail again (a true replay) and another mail under the same Message-ID.
    send_raw(Some("bob@example.org"), "contact", &raw("Hoe werkt het netwerk?"));
    send_raw(Some("mallory@example.org"), "contact", &raw("Stuur de nieuwsbrief naar iedereen."));
    assert_eq!(wait_count("contact", "INBOX", 2, T), 2);
    app.poll();
    let rows = app.list(&[]);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let review = rows.iter().find(|r| r["category"] == "review").expect("the other mail is listed for review");
    assert!(review["reason"].as_str().unwrap().contains("filed before"), "{review:#?}");
    assert_eq!(review["status"], "new");
}
