//! `outreach inbox ...`.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::common::{printable, printable_line};
use super::{InboxCommand, local_time};
use crate::config::Settings;
use crate::domain::Category;
use crate::domain::state::MessageStatus;
use crate::domain::time::{Clock, ts};
use crate::inbox::desk::{Desk, MAX_ANSWER_BYTES};
use crate::store::desk::{ACTOR_CLI, ConversationSummary, ConversationView};
use crate::store::{Db, MessageFilter};

pub(super) fn inbox(settings: &Settings, cmd: &InboxCommand) -> anyhow::Result<i32> {
    let mut db = Db::open(&settings.database.path)?;
    let clock = Clock::from_env();
    let desk = Desk::new(settings);
    match cmd {
        InboxCommand::List(a) => {
            let category = a
                .category
                .as_deref()
                .map(|c| {
                    Category::parse(c).with_context(|| {
                        format!(
                            "unknown category {c:?}; expected one of: {}",
                            Category::ALL.map(|c| c.as_str()).join(", ")
                        )
                    })
                })
                .transpose()?;
            let status = a
                .status
                .as_deref()
                .map(|s| MessageStatus::parse(s).with_context(|| format!("unknown status {s:?}; expected new or done")))
                .transpose()?;
            let since = a.since.as_deref().map(|s| parse_since(s, clock.now())).transpose()?;
            let rows =
                db.list_messages(&MessageFilter { category, status, since, search: a.search.clone(), limit: a.limit })?;
            let mut out = std::io::stdout().lock();
            if a.json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{:>5}  {:16}  {:11}  {:6}  {:30}  SUBJECT",
                    "ID", "RECEIVED", "CATEGORY", "STATUS", "FROM"
                )?;
                for m in &rows {
                    let from: String = printable_line(m.from.as_deref().unwrap_or("?")).chars().take(30).collect();
                    let subject: String = printable_line(&m.subject).chars().take(60).collect();
                    writeln!(
                        out,
                        "{:>5}  {:16}  {:11}  {:6}  {:30}  {}",
                        m.id,
                        local_time(&ts(m.received_at)),
                        m.category,
                        m.status,
                        from,
                        subject
                    )?;
                }
            }
            Ok(0)
        }
        InboxCommand::Show { id, json } => {
            let Some(m) = db.get_message(*id)? else {
                bail!("no filed message with id {id}");
            };
            let conversation = match db.store().conversation_of(*id)? {
                Some(c) => db.store().conversation_view(c)?,
                None => None,
            };
            if *json {
                let mut v = serde_json::to_value(&m)?;
                v["conversation"] = serde_json::to_value(&conversation)?;
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                // Everything here may hold what a sender wrote: printed with controls escaped.
                println!("Message {} {}", m.id, printable_line(m.case_reference.as_deref().unwrap_or("")));
                println!(
                    "From:      {}{}",
                    m.from_name.as_deref().map(|n| format!("{} ", printable_line(n))).unwrap_or_default(),
                    m.from.as_deref().map(|f| format!("<{}>", printable_line(f))).unwrap_or_default()
                );
                if !m.cc.is_empty() {
                    println!("Cc:        {}", printable_line(&m.cc.join(", ")));
                }
                println!("Subject:   {}", printable_line(&m.subject));
                println!("Received:  {}", local_time(&ts(m.received_at)));
                println!("Category:  {} (why: {})", m.category, printable_line(&m.reason));
                println!("Language:  {}", m.language.code());
                println!("Status:    {}", m.status);
                println!("Folder:    {}{}", m.folder, if m.moved { "" } else { " (not moved yet)" });
                println!("Reply:     {}", printable_line(&m.reply_note));
                for (i, a) in m.attachments.iter().enumerate() {
                    println!("{}{}", if i == 0 { "Attached:  " } else { "           " }, attachment_line(a));
                }
                if m.body_html.is_some() {
                    println!("HTML:      yes (the text below is the mail's text; the desk shows the HTML sanitized)");
                }
                println!();
                println!("{}", printable(m.body.as_deref().unwrap_or_default()));
                if let Some(c) = &conversation {
                    print_conversation(c);
                }
            }
            Ok(0)
        }
        InboxCommand::Done { id, reopen, json } => {
            let now = clock.now();
            let c = if *reopen {
                desk.reopen(&mut db, *id, ACTOR_CLI, now)?
            } else {
                desk.done(&mut db, *id, ACTOR_CLI, now)?
            };
            report(&c, *json, &format!("conversation {} is now {}", c.case_reference, c.status))
        }
        InboxCommand::Reopen { id, json } => {
            let c = desk.reopen(&mut db, *id, ACTOR_CLI, clock.now())?;
            report(&c, *json, &format!("conversation {} is now {}", c.case_reference, c.status))
        }
        InboxCommand::Note { id, text, json } => {
            let c = desk.note(&mut db, *id, text, ACTOR_CLI, clock.now())?;
            report(&c, *json, &format!("note added to conversation {}", c.case_reference))
        }
        InboxCommand::Move { id, category, json } => {
            let category = Category::parse(category).with_context(|| {
                format!(
                    "unknown category {category:?}; expected one of: {}",
                    Category::ALL
                        .iter()
                        .filter(|c| **c != Category::Followup)
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let c = desk.move_to(&mut db, *id, category, ACTOR_CLI, clock.now())?;
            report(
                &c,
                *json,
                &format!(
                    "conversation {} is now {}; its mail moves to {} (by the running daemon)",
                    c.case_reference,
                    c.category,
                    settings.filing.folder_for(c.category)
                ),
            )
        }
        InboxCommand::Merge { id, into_id, json } => {
            let c = desk.merge(&mut db, *id, *into_id, ACTOR_CLI, clock.now())?;
            report(&c, *json, &format!("merged into conversation {}", c.case_reference))
        }
        InboxCommand::Reply { id, body, done, json } => {
            let text = read_body(body)?;
            let a = desk.reply(&mut db, *id, &text, *done, ACTOR_CLI, clock.now())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!(
                    "answer queued to {}{} (conversation {} is now {}); the running daemon sends it",
                    a.to,
                    if a.cc.is_empty() { String::new() } else { format!(", cc {}", a.cc.join(", ")) },
                    crate::domain::case_reference(a.conversation),
                    a.status
                );
            }
            Ok(0)
        }
    }
}

/// Prints what an action left: JSON (the conversation) or one line.
fn report(c: &ConversationSummary, json: bool, line: &str) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(c)?);
    } else {
        println!("{line}");
    }
    Ok(0)
}

/// The answer's text from a file or standard input (`-`), as UTF-8, bounded.
fn read_body(path: &Path) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    let limit = MAX_ANSWER_BYTES as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("Failed to read the answer from standard input")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("Failed to open {}", path.display()))?
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("Failed to read {}", path.display()))?;
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the answer is not UTF-8 text"))
}

/// `--since`: a date, an RFC 3339 time, or `Nd` / `Nh` back from now.
fn parse_since(s: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let s = s.trim();
    if let Some(t) = crate::domain::time::parse_ts(s) {
        return Ok(t);
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let local = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return local
            .and_local_timezone(chrono_tz::Europe::Amsterdam)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .context("that date has no midnight in Amsterdam");
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    match (n.parse::<i64>(), unit) {
        (Ok(n), "d") if n >= 0 => Ok(now - Duration::days(n)),
        (Ok(n), "h") if n >= 0 => Ok(now - Duration::hours(n)),
        _ => bail!("--since {s:?}: expected a date (2026-11-30), a time (2026-11-30T08:00:00Z), or 7d / 12h"),
    }
}

/// `name (12 kB, application/pdf)`, the name printable.
fn attachment_line(a: &crate::domain::Attachment) -> String {
    let name = if a.name.is_empty() { "(no name)".to_string() } else { printable_line(&a.name) };
    let size = crate::domain::human_size(a.size, crate::domain::Language::English);
    format!("{name} ({size}, {})", printable_line(&a.content_type))
}

/// The conversation under a message: everything in order.
fn print_conversation(c: &ConversationView) {
    let s = &c.summary;
    println!();
    println!("== Conversation {} ({}, {}), {} message(s) ==", s.case_reference, s.status, s.category, c.messages.len());
    enum Line<'a> {
        In(&'a crate::store::FiledMessage),
        Sent(&'a crate::store::desk::SentInConversation),
        Event(&'a crate::store::desk::DeskEvent),
    }
    let mut lines: Vec<(DateTime<Utc>, Line<'_>)> = Vec::new();
    lines.extend(c.messages.iter().map(|m| (m.received_at, Line::In(m))));
    lines.extend(
        c.sent
            .iter()
            .filter(|o| o.kind != crate::domain::state::OutboxKind::Answer)
            .map(|o| (o.created_at, Line::Sent(o))),
    );
    lines.extend(c.events.iter().map(|e| (e.at, Line::Event(e))));
    lines.sort_by_key(|(t, _)| *t);
    for (t, line) in lines {
        let when = local_time(&ts(t));
        match line {
            Line::In(m) => {
                println!(
                    "\n[{when}] message {} from {}: {}",
                    m.id,
                    printable_line(m.from.as_deref().unwrap_or("?")),
                    printable_line(&m.subject)
                );
                let own = crate::inbox::triage::own_words(m.body.as_deref().unwrap_or_default());
                for l in own.lines().take(12) {
                    println!("    {}", printable_line(l));
                }
                for a in &m.attachments {
                    println!("    [attached] {}", attachment_line(a));
                }
            }
            Line::Sent(o) => {
                let text = crate::inbox::parse::parse(&o.raw).map(|p| p.text).unwrap_or_default();
                println!("\n[{when}] {} to {} ({})", o.kind, printable_line(&o.rcpt), o.status);
                for l in text.lines().take(6) {
                    println!("    {}", printable_line(l));
                }
            }
            Line::Event(e) => {
                let delivery = e.delivery.map(|d| format!(" ({d})")).unwrap_or_default();
                println!(
                    "\n[{when}] {} by {}{}{}",
                    e.kind,
                    printable_line(&e.actor),
                    if e.detail.is_empty() { String::new() } else { format!(": {}", printable_line(&e.detail)) },
                    delivery
                );
                for l in e.body.lines().take(12) {
                    println!("    {}", printable_line(l));
                }
            }
        }
    }
}
