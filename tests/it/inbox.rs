//! The inbox end to end: filing, folders, replies, loops, follow-ups, hostile input.

use std::time::Duration;

use crate::helpers::{
    TestApp, addr, corpus, count, fetch_all, fresh, mail, parsed, send_mail, send_raw, wait_count, wait_delivered,
};
use outreach::inbox::parse::parse;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn by_subject<'a>(rows: &'a [Value], subject: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["subject"] == subject)
        .unwrap_or_else(|| panic!("no row with subject {subject:?} in {rows:#?}"))
}

#[test]
fn each_category_is_filed_and_answered_in_the_senders_language() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let join_id = send_mail(
        "\"Alice Jansen\" <alice@example.org>",
        "Ambassadeursnetwerk Inclusieve Samenwerking met Ouders",
        "Hallo,\n\nIk wil graag ambassadeur worden. Ik werk als jeugdverpleegkundige.\n\nGroet, Alice",
        &[],
    );
    let question_id = send_mail(
        "Bob <bob@example.org>",
        "How do I involve parents?",
        "Hello,\n\nI am a teacher and I would like to know how I can involve parents more in school meetings. Thank you!\n\nBob",
        &[],
    );
    let unsub_id = send_mail(
        "coordinator@example.org",
        "Nieuwsbrief",
        "Beste mensen,\n\nIk wil me graag afmelden voor de nieuwsbrief.\n\nGroeten",
        &[],
    );
    assert_eq!(wait_count("contact", "INBOX", 3, T), 3);
    let out = app.poll();
    assert!(out.contains("3 filed"), "{out}");

    // Filed in the right folder and row.
    assert_eq!(count("contact", "INBOX"), 0, "the INBOX is empty after filing");
    assert_eq!(count("contact", "Aanmeldingen"), 1);
    assert_eq!(count("contact", "Vragen"), 1);
    assert_eq!(count("contact", "Afmeldingen"), 1);
    // Fetched with BODY.PEEK[]: a person still sees the mails as unread.
    for folder in ["Aanmeldingen", "Vragen", "Afmeldingen"] {
        let f = crate::helpers::flags("contact", folder);
        assert!(f.iter().all(|m| !m.iter().any(|x| x.contains("Seen"))), "{folder}: {f:?}");
    }
    // (and the check above can see a \Seen flag when there is one)
    let mut s = crate::helpers::imap("contact");
    s.select("Vragen").unwrap();
    s.store("1", "+FLAGS (\\Seen)").unwrap();
    let _ = s.logout();
    assert!(crate::helpers::flags("contact", "Vragen")[0].iter().any(|x| x.contains("Seen")));
    let rows = app.list(&[]);
    assert_eq!(rows.len(), 3);
    let join = by_subject(&rows, "Ambassadeursnetwerk Inclusieve Samenwerking met Ouders");
    assert_eq!(join["category"], "join");
    assert_eq!(join["language"], "nl");
    assert_eq!(join["folder"], "Aanmeldingen");
    assert_eq!(join["from"], "alice@example.org");
    assert_eq!(join["status"], "new");
    assert_eq!(join["auto_replied"], true);
    assert!(join["reason"].as_str().unwrap().contains("ambassadeursnetwerk"), "{}", join["reason"]);
    for key in [
        "id",
        "from",
        "subject",
        "category",
        "reason",
        "language",
        "status",
        "folder",
        "received_at",
        "conversation_id",
        "auto_replied",
    ] {
        assert!(join.get(key).is_some(), "JSON field {key} missing: {join}");
    }
    let q = by_subject(&rows, "How do I involve parents?");
    assert_eq!(
        (q["category"].as_str(), q["language"].as_str(), q["folder"].as_str()),
        (Some("question"), Some("en"), Some("Vragen"))
    );
    let u = by_subject(&rows, "Nieuwsbrief");
    assert_eq!(
        (u["category"].as_str(), u["language"].as_str(), u["folder"].as_str()),
        (Some("unsubscribe"), Some("nl"), Some("Afmeldingen"))
    );
    // --category and --status filter.
    assert_eq!(app.list(&["--category", "join"]).len(), 1);
    assert_eq!(app.list(&["--status", "new"]).len(), 3);
    assert_eq!(app.list(&["--status", "done"]).len(), 0);

    // Each sender gets the right reply in the right language, with the RFC 3834 headers.
    for (user, orig_id, subject, needle) in [
        ("alice", &join_id, "Ambassadeursnetwerk Inclusieve Samenwerking met Ouders", "aanmelding"),
        ("bob", &question_id, "How do I involve parents?", "Thank you for your message"),
        ("coordinator", &unsub_id, "Nieuwsbrief", "afmelding ontvangen"),
    ] {
        assert_eq!(wait_count(user, "INBOX", 1, T), 1, "{user} got no reply");
        let raw = &fetch_all(user, "INBOX")[0];
        let m = parse(raw).unwrap();
        assert_eq!(m.header("auto-submitted"), Some("auto-replied"), "{user}");
        assert_eq!(m.in_reply_to, vec![orig_id.clone()], "{user}");
        assert!(m.references.contains(orig_id), "{user}");
        assert!(m.subject.starts_with(&format!("Auto: {subject} [MAO-")), "{user}: {}", m.subject);
        assert!(m.text.contains(needle), "{user}: {}", m.text);
        assert_eq!(m.return_path(), Some("<>"), "auto-replies use the null envelope sender");
        assert_eq!(m.from.as_ref().unwrap().as_str(), "contact@example.org");
    }
    assert!(parsed("alice", "INBOX")[0].text.contains("Beste Alice Jansen"));

    // `inbox show` gives the text and the reason.
    let id = join["id"].as_i64().unwrap().to_string();
    let out = app.run_cli(&["inbox", "show", &id, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(shown["body"].as_str().unwrap().contains("jeugdverpleegkundige"));
    let out = app.run_cli(&["inbox", "show", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Category:  join"));

    // A second pass changes nothing.
    app.poll();
    assert_eq!(app.list(&[]).len(), 3);
    let sent: i64 = app.sql("SELECT COUNT(*) FROM outbox WHERE status = 'sent'");
    assert_eq!(sent, 3);
}

#[test]
fn automatic_mail_gets_no_reply() {
    let _g = fresh();
    let app = TestApp::new("contact");
    // Out-of-office with Auto-Submitted (Exchange form).
    send_mail(
        "alice@example.org",
        "Automatisch antwoord: Nieuwsbrief",
        "Ik ben afwezig tot maandag.",
        &[
            "Auto-Submitted: auto-replied",
            "X-Auto-Response-Suppress: All",
            "X-MS-Exchange-Inbox-Rules-Loop: alice@example.org",
        ],
    );
    // Out-of-office without any header (Apple/older clients): only the subject tells.
    send_mail("bob@example.org", "Afwezig: Re: Vraag", "Ik ben op vakantie tot 3 januari.", &[]);
    // Gmail vacation responder.
    send_mail("coordinator@example.org", "Out of Office", "I am away.", &["Auto-Submitted: auto-replied"]);
    // A mailing list post.
    send_mail(
        "alice@example.org",
        "[ouders] Bijeenkomst",
        "Wie komt er?",
        &["List-Id: <ouders.lists.example.org>", "Precedence: list"],
    );
    // A noreply sender.
    send_mail("noreply@example.org", "Je bestelling", "Bedankt voor je bestelling.", &[]);
    // A DSN bounce with the null envelope sender.
    let dsn = "From: Mail Delivery System <MAILER-DAEMON@example.org>\r\nTo: contact@example.org\r\nSubject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; example.org\r\n\r\nFinal-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n--b1--\r\n";
    send_raw(None, "contact", dsn.as_bytes());
    // Our own auto-reply coming back to us.
    send_mail(
        "contact@example.org",
        "Auto: Vraag [MAO-99]",
        "Dank je wel voor je bericht.",
        &["Auto-Submitted: auto-replied"],
    );
    assert_eq!(wait_count("contact", "INBOX", 7, T), 7);
    app.poll();

    let rows = app.list(&[]);
    assert_eq!(rows.len(), 7, "{rows:#?}");
    for r in &rows {
        assert!(matches!(r["category"].as_str(), Some("automatic" | "bounce")), "not automatic: {r:#}");
        assert_eq!(r["auto_replied"], false, "{r:#}");
        assert_eq!(r["folder"], "Automatisch");
        assert_eq!(r["status"], "done");
        assert!(!r["reason"].as_str().unwrap().is_empty());
    }
    let dsn_row = by_subject(&rows, "Undelivered Mail Returned to Sender");
    assert_eq!(dsn_row["category"], "bounce");
    assert!(by_subject(&rows, "Afwezig: Re: Vraag")["reason"].as_str().unwrap().contains("subject"));
    let outbox: i64 = app.sql("SELECT COUNT(*) FROM outbox");
    assert_eq!(outbox, 0, "nothing queued");
    assert_eq!(count("contact", "Automatisch"), 7);
    wait_delivered();
    for u in ["alice", "bob", "coordinator", "catchall", "contact"] {
        assert_eq!(count(u, "INBOX"), 0, "{u} received something");
    }
}

#[test]
fn two_responders_do_not_loop() {
    let _g = fresh();
    // Two outreach instances: one answers contact@, the other answers bob@.
    let contact = TestApp::new("contact");
    let bobs = TestApp::new("bob");
    send_mail("alice@example.org", "Vraag over het netwerk", "Hallo, hoe werkt het netwerk precies?", &[]);
    // Bob writes to contact@; contact@ answers Bob; Bob's responder must not answer that.
    send_mail("bob@example.org", "Aanmelding", "Ik wil graag meedoen.", &[]);
    assert_eq!(wait_count("contact", "INBOX", 2, T), 2);
    for _ in 0..4 {
        contact.poll();
        wait_delivered();
        bobs.poll();
        wait_delivered();
    }
    let bob_rows = bobs.list(&[]);
    assert_eq!(bob_rows.len(), 1, "bob's responder saw contact's auto-reply: {bob_rows:#?}");
    assert_eq!(bob_rows[0]["category"], "automatic");
    assert_eq!(bob_rows[0]["auto_replied"], false);
    assert_eq!(contact.list(&[]).len(), 2, "contact got nothing back from bob's responder");
    let contact_sent: i64 = contact.sql("SELECT COUNT(*) FROM outbox");
    let bob_sent: i64 = bobs.sql("SELECT COUNT(*) FROM outbox");
    assert_eq!((contact_sent, bob_sent), (2, 0));

    // A naive responder (no Auto-Submitted, like FreeScout) answering our reply: it is a
    // follow-up in a known conversation, so it gets no second reply.
    let ours = parsed("alice", "INBOX");
    assert_eq!(ours.len(), 1);
    let our_id = ours[0].message_id.clone().unwrap();
    for i in 0..3 {
        let (_, raw) = mail(
            "alice@example.org",
            &format!("Re: {}", ours[0].subject),
            &format!("Bedankt! ({i})"),
            &[&format!("In-Reply-To: <{our_id}>"), &format!("References: <{our_id}>")],
        );
        send_raw(Some("alice"), "contact", &raw);
    }
    assert_eq!(wait_count("contact", "INBOX", 3, T), 3);
    contact.poll();
    let followups = contact.list(&["--category", "followup"]);
    assert_eq!(followups.len(), 3);
    let sent: i64 = contact.sql("SELECT COUNT(*) FROM outbox");
    assert_eq!(sent, 2, "no reply to follow-ups");
    wait_delivered();
    assert_eq!(count("alice", "INBOX"), 1, "alice got exactly one auto-reply");
}

#[test]
fn one_reply_per_sender_per_window_and_follow_ups_join_their_conversation() {
    let _g = fresh();
    let app = TestApp::new("contact");
    let first = send_mail("alice@example.org", "Aanmelding ambassadeur", "Ik wil graag ambassadeur worden.", &[]);
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    assert_eq!(wait_count("alice", "INBOX", 1, T), 1);
    let reply = &parsed("alice", "INBOX")[0];
    let reply_id = reply.message_id.clone().unwrap();
    let conv = app.list(&[])[0]["conversation_id"].as_i64().unwrap();
    assert!(reply.subject.contains(&format!("[MAO-{conv}]")));

    // 1. An answer to our reply (In-Reply-To our Message-ID).
    let (_, raw) = mail(
        "alice@example.org",
        &format!("Re: {}", reply.subject),
        "Nog een vraag: wanneer is de eerste bijeenkomst?\n\n> Dank je wel voor je aanmelding",
        &[&format!("In-Reply-To: <{reply_id}>"), &format!("References: <{first}> <{reply_id}>")],
    );
    send_raw(Some("alice"), "contact", &raw);
    // 2. Only the case reference in the subject (a client that drops In-Reply-To).
    send_mail("alice@example.org", &format!("Mijn gegevens [MAO-{conv}]"), "Hierbij mijn telefoonnummer.", &[]);
    // 3. Same sender, same subject, no headers.
    send_mail("alice@example.org", "RE: Aanmelding ambassadeur", "Vergeten te zeggen: ik werk in Utrecht.", &[]);
    // 4. A new question from the same sender within the window: filed, not answered.
    send_mail("alice@example.org", "Vraag over intervisie", "Hoe organiseren jullie intervisie?", &[]);
    assert_eq!(wait_count("contact", "INBOX", 4, T), 4);
    app.poll();

    let rows = app.list(&[]);
    assert_eq!(rows.len(), 5);
    let followups: Vec<&Value> = rows.iter().filter(|r| r["category"] == "followup").collect();
    assert_eq!(followups.len(), 3, "{rows:#?}");
    for f in &followups {
        assert_eq!(f["conversation_id"].as_i64(), Some(conv), "{f:#}");
        assert_eq!(f["folder"], "Aanmeldingen", "a follow-up goes where its conversation is");
        assert_eq!(f["auto_replied"], false);
    }
    let reasons: Vec<&str> = followups.iter().map(|f| f["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().any(|r| r.contains("In-Reply-To")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("case reference")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("same sender and subject")), "{reasons:?}");
    let q = by_subject(&rows, "Vraag over intervisie");
    assert_eq!(q["category"], "question");
    assert_eq!(q["auto_replied"], false);
    assert_ne!(q["conversation_id"].as_i64(), Some(conv));
    let shown: Value =
        serde_json::from_slice(&app.run_cli(&["inbox", "show", &q["id"].to_string(), "--json"]).stdout).unwrap();
    assert!(shown["reply_note"].as_str().unwrap().contains("within 24 hours"), "{shown:#}");
    wait_delivered();
    assert_eq!(count("alice", "INBOX"), 1, "exactly one auto-reply in the window");

    // With a window of 0 hours... not allowed; a 1-hour window and a row aged 2 hours
    // would reply again: that rule is covered by the pure policy test.
}

#[test]
fn header_injection_does_not_reach_the_reply() {
    let _g = fresh();
    let app = TestApp::new("contact");
    // RFC 2047 encoded words that decode to CR/LF + a header.
    let evil_name = "=?UTF-8?B?QW5uDQpCY2M6IGJvYkBleGFtcGxlLm9yZw==?="; // "Ann\r\nBcc: bob@example.org"
    let evil_subject = "=?UTF-8?B?VnJhYWcNCkJjYzogYm9iQGV4YW1wbGUub3JnDQpYLUluamVjdGVkOiAx?="; // "Vraag\r\nBcc: bob@example.org\r\nX-Injected: 1"
    let id = crate::helpers::new_id();
    let raw = format!(
        "From: {evil_name} <alice@example.org>\r\nTo: contact@example.org\r\nSubject: {evil_subject}\r\nMessage-ID: <{id}>\r\n\r\nHallo, ik heb een vraag over ouderbetrokkenheid.\r\n"
    );
    send_raw(Some("alice"), "contact", raw.as_bytes());
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    assert_eq!(wait_count("alice", "INBOX", 1, T), 1);
    let raw = String::from_utf8(fetch_all("alice", "INBOX").remove(0)).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap();
    for line in head.lines() {
        assert!(!line.starts_with("Bcc:") && !line.starts_with("X-Injected:"), "injected header: {line}\n{head}");
    }
    wait_delivered();
    assert_eq!(count("bob", "INBOX"), 0, "the injected Bcc received nothing");
    let m = parse(raw.as_bytes()).unwrap();
    assert!(m.subject.starts_with("Auto: Vraag Bcc: bob@example.org X-Injected: 1"), "{}", m.subject);
}

#[test]
fn every_corpus_mail_is_filed_without_panic() {
    let (dir, files) = corpus();
    let _g = fresh();
    let app = TestApp::new("contact").with_env("OUTREACH_AUTOREPLY__MAX_PER_HOUR", "1000");
    assert!(files.len() > 100, "the corpus in {} has only {} .eml files", dir.display(), files.len());
    let mut appended = 0;
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        crate::helpers::append("contact", "INBOX", &raw);
        appended += 1;
    }
    assert_eq!(count("contact", "INBOX"), appended);
    let out = app.run_cli(&["poll", "--once"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("task panicked") && matches!(out.status.code(), Some(0 | 1)), "{stdout}\n{stderr}");
    assert!(out.status.code().is_some(), "killed by a signal: {stderr}");
    eprintln!("corpus: {stdout}");
    assert_eq!(count("contact", "INBOX"), 0, "everything left the INBOX: {stdout}\n{stderr}");
    // Files that share a Message-ID are one message: filed once, moved with the first.
    let distinct = {
        let mut keys: Vec<String> = files
            .iter()
            .map(|f| {
                let raw = std::fs::read(f).unwrap();
                let mid = parse(&raw).and_then(|m| m.message_id);
                outreach::inbox::parse::dedupe_key(mid.as_deref(), &raw)
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    let rows = app.list(&[]);
    assert!(
        rows.len() >= distinct.saturating_sub(2) && rows.len() <= files.len(),
        "{} rows for {} files ({distinct} distinct)",
        rows.len(),
        files.len()
    );
    // No bounce in the corpus is ever answered.
    let answered_bounces: i64 = app.sql("SELECT COUNT(*) FROM messages WHERE category = 'bounce' AND auto_replied = 1");
    assert_eq!(answered_bounces, 0);
    let mut by_cat = std::collections::BTreeMap::new();
    for r in &rows {
        *by_cat.entry(r["category"].as_str().unwrap().to_string()).or_insert(0) += 1;
    }
    eprintln!("corpus: {} files, {} rows, by category {by_cat:?}", files.len(), rows.len());
}

#[test]
fn auto_replies_go_to_reply_to_when_present() {
    let _g = fresh();
    let app = TestApp::new("contact");
    send_mail(
        "alice@example.org",
        "Vraag",
        "Hallo, mijn vraag gaat over ouderavonden.",
        &["Reply-To: Bob <bob@example.org>"],
    );
    assert_eq!(wait_count("contact", "INBOX", 1, T), 1);
    app.poll();
    assert_eq!(wait_count("bob", "INBOX", 1, T), 1);
    wait_delivered();
    assert_eq!(count("alice", "INBOX"), 0);
    let m = &parsed("bob", "INBOX")[0];
    assert_eq!(m.header("auto-submitted"), Some("auto-replied"));
    let _ = addr("bob");
}
