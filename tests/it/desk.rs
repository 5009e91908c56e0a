//! The coordinator's desk from the CLI and from the mail client: conversations answered,
//! noted, closed, reopened, moved and merged, against the real stack.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    TestApp, addr, append, count, fresh, imap, mail, parsed, send_raw, wait_count, wait_subject, wait_until,
};

const T: Duration = Duration::from_secs(30);

/// A desk instance: the daemon reads the mail client's folders every second.
fn desk_app() -> TestApp {
    TestApp::new("contact").with_env("OUTREACH_DESK__SYNC_SECONDS", "1")
}

/// Sends `raw` to the contact address and waits until the daemon filed it; returns
/// the filed row.
pub(crate) fn filed(app: &TestApp, subject: &str) -> Value {
    let mut row = None;
    wait_until(&format!("{subject:?} filed"), || {
        row = app.list(&["--search", subject]).into_iter().find(|r| r["subject"] == subject);
        row.is_some()
    });
    row.unwrap()
}

fn show(app: &TestApp, id: i64) -> Value {
    serde_json::from_str(&app.ok(&["inbox", "show", &id.to_string(), "--json"])).unwrap()
}

fn conversation_status(app: &TestApp, id: i64) -> String {
    show(app, id)["conversation"]["status"].as_str().unwrap().to_string()
}

fn events(app: &TestApp, id: i64) -> Vec<(String, String)> {
    show(app, id)["conversation"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["actor"].as_str().unwrap().to_string()))
        .collect()
}

fn reply(app: &TestApp, id: i64, body: &str, extra: &[&str]) -> Value {
    let mut args =
        vec!["inbox".to_string(), "reply".into(), id.to_string(), "--body".into(), "-".into(), "--json".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child =
        app.cmd().args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "inbox reply failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn an_answer_from_the_cli_arrives_threaded_keeps_the_cc_and_is_copied_into_the_folder() {
    let _g = fresh();
    let app = desk_app();
    let mut daemon = app.spawn_ready();
    let (mid, raw) = mail(
        "\"Alice Jansen\" <alice@example.org>",
        "Vraag over het oudergesprek",
        "Hallo,\n\nHoe kan ik ouders beter betrekken bij het gesprek op school? Wat raden jullie aan?\n\nAlice",
        &["Cc: Bob <bob@example.org>, contact@example.org"],
    );
    send_raw(Some(&addr("alice")), "contact", &raw);
    let row = filed(&app, "Vraag over het oudergesprek");
    let id = row["id"].as_i64().unwrap();
    assert_eq!(row["cc"], serde_json::json!(["bob@example.org", "contact@example.org"]));
    assert_eq!(row["conversation_status"], "nieuw");

    let a = reply(&app, id, "Beste Alice,\n\nDank je voor je vraag. Begin met luisteren.\n", &[]);
    assert_eq!(a["to"], "alice@example.org");
    assert_eq!(a["cc"], serde_json::json!(["bob@example.org"]), "every recipient kept except ourselves");
    assert_eq!(a["status"], "in behandeling");

    // It reaches Alice threaded under her mail, with Bob in Cc, and Bob gets it too.
    let got = wait_subject("alice", "Re: Vraag over het oudergesprek", 1, T);
    assert_eq!(got.len(), 1, "the answer reaches the sender");
    let m = &got[0];
    assert_eq!(m.in_reply_to, vec![mid.clone()]);
    assert!(m.references.contains(&mid));
    assert_eq!(m.from.as_ref().unwrap().to_string(), "contact@example.org");
    assert_eq!(m.cc.iter().map(|a| a.to_string()).collect::<Vec<_>>(), ["bob@example.org"]);
    assert!(m.header("auto-submitted").is_none(), "a person's answer is not automatic");
    assert!(m.text.contains("Begin met luisteren"));
    assert!(m.text.contains("Met vriendelijke groet"), "the signature: {}", m.text);
    assert!(m.text.contains("> Hoe kan ik ouders beter betrekken"), "the message quoted: {}", m.text);
    assert_eq!(wait_subject("bob", "Re: Vraag over het oudergesprek", 1, T).len(), 1, "the Cc gets it too");

    // A copy in the conversation's folder, so the mail client shows the thread.
    wait_until("the answer's copy in Vragen", || {
        parsed("contact", "Vragen").iter().any(|p| p.subject.starts_with("Re: Vraag over het oudergesprek"))
    });
    assert_eq!(count("contact", "Vragen"), 2, "her mail and our answer");

    // Note, done, reopen: recorded with who and when.
    app.ok(&["inbox", "note", &id.to_string(), "Alice belt volgende week terug"]);
    let done: Value = serde_json::from_str(&app.ok(&["inbox", "done", &id.to_string(), "--json"])).unwrap();
    assert_eq!(done["status"], "afgehandeld");
    assert_eq!(app.list(&["--status", "done", "--search", "oudergesprek"]).len(), 1);
    app.ok(&["inbox", "reopen", &id.to_string()]);
    assert_eq!(conversation_status(&app, id), "nieuw");
    let ev = events(&app, id);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["answer", "note", "done", "reopen"]);
    assert!(ev.iter().all(|(_, who)| who == "cli"), "{ev:?}");
    let view = show(&app, id);
    assert_eq!(view["conversation"]["events"][1]["body"], "Alice belt volgende week terug");
    assert!(view["conversation"]["events"][0]["at"].as_str().unwrap().ends_with('Z'));

    // Send and close.
    let a = reply(&app, id, "Nog een tip: vraag wat ouders zelf willen.", &["--done"]);
    assert_eq!(a["status"], "afgehandeld");
    assert_eq!(wait_subject("alice", "Re: Vraag over het oudergesprek", 2, T).len(), 2);

    // She writes again: the conversation waits again.
    let (_, raw) = mail(
        "alice@example.org",
        "Re: Vraag over het oudergesprek",
        "Dank jullie! Nog een vraag: hoe zit het met tolken?",
        &[&format!("In-Reply-To: <{}>", a["message_id"].as_str().unwrap())],
    );
    send_raw(Some(&addr("alice")), "contact", &raw);
    wait_until("her follow-up joins the conversation", || {
        show(&app, id)["conversation"]["messages"].as_array().unwrap().len() == 2
    });
    assert_eq!(conversation_status(&app, id), "nieuw");
    daemon.terminate();
}

#[test]
fn search_since_merge_and_move_from_the_cli() {
    let _g = fresh();
    let app = desk_app();
    let mut daemon = app.spawn_ready();
    for (subject, body) in [
        ("Tolk bij gesprek", "Hallo,\n\nKan er een tolk bij het gesprek met de ouders zijn?\n\nAlice"),
        ("Nog iets over het gesprek", "Hallo,\n\nIk vergat te vragen: mag de tolk ook Arabisch spreken?\n\nAlice"),
    ] {
        let (_, raw) = mail("alice@example.org", subject, body, &[]);
        send_raw(Some(&addr("alice")), "contact", &raw);
    }
    let a = filed(&app, "Tolk bij gesprek")["id"].as_i64().unwrap();
    let b = filed(&app, "Nog iets over het gesprek")["id"].as_i64().unwrap();
    // Search over text and sender; words as prefixes, diacritics folded, syntax inert.
    assert_eq!(app.list(&["--search", "arabisch"]).len(), 1);
    assert_eq!(app.list(&["--search", "alice tolk"]).len(), 2);
    assert_eq!(app.list(&["--search", "\"NEAR(tolk"]).len(), 0);
    assert_eq!(app.list(&["--since", "1d"]).len(), 2);
    assert_eq!(app.list(&["--since", "2099-01-01"]).len(), 0);
    let bad = app.run_cli(&["inbox", "list", "--since", "gisteren"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));

    let ca = show(&app, a)["conversation_id"].as_i64().unwrap();
    assert_ne!(ca, show(&app, b)["conversation_id"].as_i64().unwrap(), "two subjects: two conversations");
    let merged: Value =
        serde_json::from_str(&app.ok(&["inbox", "merge", &b.to_string(), &a.to_string(), "--json"])).unwrap();
    assert_eq!(merged["id"].as_i64(), Some(ca));
    assert_eq!(show(&app, b)["conversation"]["id"].as_i64(), Some(ca), "b now shows a's conversation");
    assert_eq!(show(&app, a)["conversation"]["messages"].as_array().unwrap().len(), 2);
    let again = app.run_cli(&["inbox", "merge", &b.to_string(), &a.to_string()]);
    assert!(!again.status.success(), "merging into itself is refused");

    // Move: recategorised, and both mails move on the server.
    wait_count("contact", "Vragen", 2, T);
    app.ok(&["inbox", "move", &a.to_string(), "join"]);
    assert_eq!(wait_count("contact", "Aanmeldingen", 2, T), 2, "the daemon moves them on the server");
    assert_eq!(count("contact", "Vragen"), 0);
    assert_eq!(show(&app, a)["category"], "join");
    assert!(events(&app, a).iter().any(|(k, who)| k == "move" && who == "cli"));
    let bad = app.run_cli(&["inbox", "move", &a.to_string(), "nonsense"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown category"));
    let missing = app.run_cli(&["inbox", "done", "999999"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no filed message with id 999999"));
    daemon.terminate();
}

/// Moves the message with this subject (and no `Re:`) from one folder to another, as
/// Outlook would.
fn client_move(folder: &str, subject: &str, to: &str) {
    let mut s = imap("contact");
    s.select(folder).unwrap();
    let uids = s.uid_search(format!("SUBJECT \"{subject}\" NOT SUBJECT \"Re:\"")).unwrap();
    assert_eq!(uids.len(), 1, "{subject:?} in {folder}");
    let uid = uids.into_iter().next().unwrap().to_string();
    s.uid_mv(&uid, to).unwrap();
    let _ = s.logout();
}

#[test]
fn moves_and_answers_in_the_coordinators_mail_client_are_actions() {
    let _g = fresh();
    let app = desk_app();
    let mut daemon = app.spawn_ready();
    // The daemon has read the folders once (what is there already is no move).
    app.wait_sql("SELECT COUNT(*) FROM mailbox_state WHERE mailbox = 'desk:Afgehandeld'", 1, T);
    for (subject, body) in [
        ("Vraag een", "Hallo,\n\nHoe werkt het netwerk precies? Wat doen ambassadeurs?\n\nAlice"),
        ("Vraag twee", "Hallo,\n\nWaar vind ik de brochure van het netwerk?\n\nBob"),
        ("Vraag drie", "Hallo,\n\nWanneer is de volgende bijeenkomst?\n\nAlice"),
    ] {
        let (_, raw) = mail("alice@example.org", subject, body, &[]);
        send_raw(Some(&addr("alice")), "contact", &raw);
    }
    let one = filed(&app, "Vraag een")["id"].as_i64().unwrap();
    let two = filed(&app, "Vraag twee")["id"].as_i64().unwrap();
    let three = filed(&app, "Vraag drie");
    let three_id = three["id"].as_i64().unwrap();
    wait_count("contact", "Vragen", 3, T);
    app.wait_sql("SELECT COUNT(*) FROM messages WHERE imap_folder = 'Vragen'", 3, T);

    // Into Afgehandeld: done, by "mail client".
    client_move("Vragen", "Vraag een", "Afgehandeld");
    wait_until("moved into Afgehandeld marks it done", || conversation_status(&app, one) == "afgehandeld");
    assert!(events(&app, one).contains(&("done".into(), "mail client".into())));

    // Into another category's folder: recategorised.
    client_move("Vragen", "Vraag twee", "Aanmeldingen");
    wait_until("moved into Aanmeldingen recategorises it", || show(&app, two)["category"] == "join");
    assert!(events(&app, two).contains(&("move".into(), "mail client".into())));
    assert_eq!(count("contact", "Aanmeldingen"), 1, "nothing moved back");

    // The coordinator answers from their own client: the copy in Sent joins the
    // conversation and sets it "in behandeling".
    let (own_id, own) = mail(
        "contact@example.org",
        "Re: Vraag drie",
        "Beste Alice,\n\nDe volgende bijeenkomst is op 12 januari.\n\nGroet, de coördinator",
        &[&format!("In-Reply-To: <{}>", three["message_id"].as_str().unwrap())],
    );
    let own = String::from_utf8(own).unwrap().replace("To: contact@example.org", "To: alice@example.org");
    append("contact", "Sent", own.as_bytes());
    wait_until("the answer from the mail client joins", || conversation_status(&app, three_id) == "in behandeling");
    let view = show(&app, three_id);
    let ev = &view["conversation"]["events"][0];
    assert_eq!((ev["kind"].as_str(), ev["actor"].as_str()), (Some("answer"), Some("mail client")));
    assert!(ev["body"].as_str().unwrap().contains("12 januari"));
    assert_eq!(
        app.sql::<i64>(&format!("SELECT COUNT(*) FROM messages WHERE message_id = '{own_id}'")),
        0,
        "our own answer is never filed as new mail"
    );

    // An answer sent by `inbox reply` lands in Sent-like folders as ours: never taken for theirs.
    reply(&app, three_id, "Tot dan!", &[]);
    wait_until("the answer's copy in Vragen", || {
        parsed("contact", "Vragen").iter().any(|p| p.subject.starts_with("Re: Vraag drie"))
    });
    // A marker: a later client move is noticed, so the copy was read by then.
    client_move("Vragen", "Vraag drie", "Afgehandeld");
    wait_until("the marker move", || conversation_status(&app, three_id) == "afgehandeld");
    let answers: i64 = app.sql(&format!(
        "SELECT COUNT(*) FROM desk_events WHERE kind = 'answer' AND conversation_id = {}",
        view["conversation"]["id"]
    ));
    assert_eq!(answers, 2, "one from the mail client, one from the CLI; our copy is not a third");
    daemon.terminate();
}

#[test]
fn the_daily_digest_lists_what_waits_at_its_time_and_none_goes_when_nothing_waits() {
    use chrono::{TimeZone, Utc};
    let _g = fresh();
    let app = desk_app().with_env("OUTREACH_DESK__DIGEST_TIME", "08:00");
    // 07:00 in Amsterdam: before the digest's time.
    app.set_clock(Utc.with_ymd_and_hms(2026, 12, 2, 6, 0, 0).unwrap());
    let mut daemon = app.spawn_ready();
    let (_, raw) = mail(
        "alice@example.org",
        "Vraag voor de digest",
        "Hallo,\n\nWie kan mij helpen met een vraag over ouders?\n\nAlice",
        &[],
    );
    send_raw(Some(&addr("alice")), "contact", &raw);
    let id = filed(&app, "Vraag voor de digest")["id"].as_i64().unwrap();
    wait_delivered_marker(&app);
    assert!(crate::helpers::with_subject("coordinator", "gesprek").is_empty(), "no digest before its time");

    // 08:01 in Amsterdam: one digest with the waiting conversation and a link to it.
    app.set_clock(Utc.with_ymd_and_hms(2026, 12, 2, 7, 1, 0).unwrap());
    let got = wait_subject("coordinator", "1 gesprek wacht", 1, T);
    assert_eq!(got.len(), 1, "the digest arrives at its time");
    let conv = show(&app, id)["conversation_id"].as_i64().unwrap();
    assert!(got[0].text.contains("Vraag voor de digest"), "{}", got[0].text);
    assert!(got[0].text.contains(&format!("{}/desk/gesprekken/{conv}", app.web)), "{}", got[0].text);
    assert_eq!(got[0].header("auto-submitted"), Some("auto-generated"));

    // The next day nothing waits: the slot passes without a digest.
    app.ok(&["inbox", "done", &id.to_string()]);
    app.set_clock(Utc.with_ymd_and_hms(2026, 12, 3, 7, 1, 0).unwrap());
    app.wait_sql(
        "SELECT COUNT(*) FROM daemon_state WHERE key = 'desk.digest' AND value >= '2026-12-03T07:00:00Z'",
        1,
        T,
    );
    crate::helpers::wait_delivered();
    assert_eq!(crate::helpers::with_subject("coordinator", "outreach: ").len(), 1, "no digest when nothing waits");
    daemon.terminate();
}

/// Waits until everything the daemon queued so far went out and Postfix delivered it.
fn wait_delivered_marker(app: &TestApp) {
    app.wait_sql("SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')", 0, T);
    crate::helpers::wait_delivered();
}

#[test]
fn the_coordinators_answer_with_us_in_cc_joins_its_conversation_only_when_authenticated() {
    let _g = fresh();
    let app = desk_app().with_env("OUTREACH_TRUST__AUTHSERV_ID", "mx.example.org");
    let mut daemon = app.spawn_ready();
    let (mid, raw) = mail(
        "alice@example.org",
        "Vraag met cc",
        "Hallo,\n\nKunnen jullie mij bellen over een ouderavond?\n\nAlice",
        &[],
    );
    send_raw(Some(&addr("alice")), "contact", &raw);
    let id = filed(&app, "Vraag met cc")["id"].as_i64().unwrap();

    // Only the From header says it is the coordinator: filed, nothing changes.
    let (_, forged) = mail(
        "coordinator@example.org",
        "Re: Vraag met cc",
        "Beste Alice, ik bel je morgen.",
        &[&format!("In-Reply-To: <{mid}>"), "Cc: contact@example.org"],
    );
    send_raw(Some(&addr("coordinator")), "contact", &forged);
    wait_until("the unauthenticated one is filed", || {
        show(&app, id)["conversation"]["messages"].as_array().unwrap().len() == 2
    });
    assert_eq!(conversation_status(&app, id), "nieuw", "a claim changes nothing");
    assert!(events(&app, id).is_empty());

    // Authenticated by our receiving server: the coordinator's answer.
    let (answer_id, real) = mail(
        "coordinator@example.org",
        "Re: Vraag met cc",
        "Beste Alice, ik bel je vrijdag om tien uur.\n\nOp 1 dec schreef Alice:\n> Kunnen jullie mij bellen?",
        &[
            "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=example.org; dmarc=pass header.from=example.org",
            &format!("In-Reply-To: <{mid}>"),
            "Cc: contact@example.org",
        ],
    );
    send_raw(Some(&addr("coordinator")), "contact", &real);
    wait_until("the answer joins", || conversation_status(&app, id) == "in behandeling");
    let view = show(&app, id);
    let ev = &view["conversation"]["events"][0];
    assert_eq!((ev["kind"].as_str(), ev["actor"].as_str()), (Some("answer"), Some("mail client")));
    assert_eq!(ev["body"].as_str().map(str::trim), Some("Beste Alice, ik bel je vrijdag om tien uur."));
    let replies: i64 = app.sql(&format!(
        "SELECT COUNT(*) FROM outbox o JOIN messages m ON m.id = o.reply_to_msg WHERE m.message_id = '{answer_id}'"
    ));
    assert_eq!(replies, 0, "the team's own mail gets no auto-reply");
    daemon.terminate();
}
