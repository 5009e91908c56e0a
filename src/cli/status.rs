//! `outreach status`.

use super::local_time;
use crate::config::Settings;
use crate::domain::redact_addresses;
use crate::domain::time::ts;
use crate::store::{self, DaemonLock, Db, FaultNote};

pub(super) fn status(settings: &Settings, json: bool) -> anyhow::Result<i32> {
    let running = DaemonLock::acquire(&settings.database.path).is_err();
    let db = match Db::open(&settings.database.path) {
        Ok(db) => db,
        Err(e) if store::Fault::of(&e) == Some(store::Fault::DiskFull) => {
            return without_database(settings, running, json, &e);
        }
        Err(e) => return Err(e),
    };
    let states: std::collections::BTreeMap<String, (String, String)> =
        db.states()?.into_iter().map(|(k, v, t)| (k, (redact_addresses(&v), ts(t)))).collect();
    let outbox = db.outbox_counts()?;
    let counts = db.message_counts()?;
    let unmoved = db.unmoved_count()?;
    // Only the domain of an address is shown: the recipient, and any address an older
    // error text quotes (new ones are stored without).
    let failed: Vec<_> = db
        .failed_outgoing(5)?
        .into_iter()
        .map(|(id, rcpt, e)| {
            let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d).to_string();
            (id, format!("…@{domain}"), redact_addresses(&e))
        })
        .collect();
    let subscribers: std::collections::BTreeMap<String, i64> =
        db.store().subscriber_counts()?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    let mut issues = Vec::new();
    for i in db.store().issues()?.into_iter().take(5) {
        let counts: std::collections::BTreeMap<String, i64> =
            db.store().delivery_counts(i.id)?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        issues.push((i, counts));
    }
    let get = |k: &str| states.get(k).map(|(v, t)| (v.clone(), t.clone()));
    // A fault the running daemon lives with (a full disk): noted beside the database,
    // which may not take it.
    let fault = if running { FaultNote::read(&settings.database.path) } else { None };
    if json {
        let v = serde_json::json!({
            "daemon_running": running,
            "fault": fault.as_ref().map(|(f, t)| serde_json::json!({"fault": f, "since": ts(*t)})),
            "imap": get("imap").map(|(v, t)| serde_json::json!({"state": v, "since": t})),
            "smtp": get("smtp").map(|(v, t)| serde_json::json!({"state": v, "since": t})),
            "web": get("web").map(|(v, t)| serde_json::json!({"state": v, "since": t})),
            "last_error": get("last_error").map(|(v, t)| serde_json::json!({"error": v, "at": t})),
            "outbox": outbox,
            "messages": counts.iter().map(|(c, s, n)| serde_json::json!({"category": c, "status": s, "count": n})).collect::<Vec<_>>(),
            "not_moved": unmoved,
            "failed_recent": failed.iter().map(|(id, rcpt, e)| serde_json::json!({"id": id, "to": rcpt, "error": e})).collect::<Vec<_>>(),
            "subscribers": subscribers,
            "newsletter": issues.iter().map(|(i, c)| serde_json::json!({"issue": i.id, "status": i.status, "subject": i.subject, "deliveries": c})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("daemon:   {}", if running { "running" } else { "not running" });
    if let Some((f, t)) = &fault {
        println!("FAULT:    {f} (since {})", local_time(&ts(*t)));
    }
    for part in ["imap", "smtp", "web"] {
        match get(part) {
            Some((v, t)) => println!("{part}:     {v} (since {})", local_time(&t)),
            None if part == "web" => println!("web:      not started yet (outreach run serves the pages)"),
            None => println!("{part}:     no connection made yet"),
        }
    }
    println!(
        "outbox:   {} queued ({} waiting for a retry{}), {} sending, {} sent, {} failed",
        outbox.queued,
        outbox.retrying,
        outbox.next_attempt_at.map(|t| format!(", next at {}", local_time(&ts(t)))).unwrap_or_default(),
        outbox.sending,
        outbox.sent,
        outbox.failed
    );
    let total: i64 = counts.iter().map(|c| c.2).sum();
    println!("filed:    {total} messages, {unmoved} not moved to their folder yet");
    for (c, s, n) in &counts {
        println!("          {c:11} {s:5} {n}");
    }
    println!(
        "subscribers: {}",
        if subscribers.is_empty() {
            "none".to_string()
        } else {
            subscribers.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
        }
    );
    for (i, c) in &issues {
        let detail = c.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
        println!(
            "newsletter: issue {} {} {}",
            i.id,
            i.status,
            if detail.is_empty() { String::new() } else { format!("({detail})") }
        );
    }
    match get("last_error") {
        Some((v, t)) => println!("last error: {v} (at {})", local_time(&t)),
        None => println!("last error: none"),
    }
    for (id, to, e) in failed {
        println!("failed:   #{id} to {to}: {e}");
    }
    Ok(0)
}

/// What can be said when the database cannot even be opened for want of space: whether
/// the daemon runs, the fault it noted, and why the rest is missing. Exit code 1.
fn without_database(settings: &Settings, running: bool, json: bool, e: &anyhow::Error) -> anyhow::Result<i32> {
    let fault = FaultNote::read(&settings.database.path).filter(|_| running);
    let why = format!("{}: {}", store::Fault::DiskFull, redact_addresses(&format!("{e:#}")));
    if json {
        let v = serde_json::json!({
            "daemon_running": running,
            "fault": fault.as_ref().map(|(f, t)| serde_json::json!({"fault": f, "since": ts(*t)})),
            "database_error": why,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("daemon:   {}", if running { "running" } else { "not running" });
        if let Some((f, t)) = &fault {
            println!("FAULT:    {f} (since {})", local_time(&ts(*t)));
        }
        println!("database: cannot be opened now: {why}");
    }
    Ok(1)
}
