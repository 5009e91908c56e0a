//! Command-line interface: argument parsing and printing only; the work is in the parts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono_tz::Europe::Amsterdam;
use clap::{Args, Parser, Subcommand};

mod news;

use crate::config::{self, Settings};
use crate::domain::Category;
use crate::domain::ids::MessageRowId;
use crate::domain::state::MessageStatus;
use crate::domain::time::ts;
use crate::store::{DaemonLock, Db, MessageFilter};

/// outreach: files, answers and follows up every mail to the network's contact address.
#[derive(Debug, Parser)]
#[command(name = "outreach", version, about)]
pub struct Cli {
    /// The config file (TOML). Every key can be overridden by OUTREACH_<SECTION>__<KEY>.
    #[arg(long, short, global = true, env = "OUTREACH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text (logs go to stderr).
    #[arg(long, global = true, env = "OUTREACH_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example config file.
    Init {
        /// Where to write it (default: the --config path, else ./outreach.toml).
        path: Option<PathBuf>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon: watch the mailbox (IDLE, else polling) and deliver the outbox.
    Run,
    /// File everything in the mailbox and deliver the outbox, then exit.
    Poll {
        /// Run one pass and exit (the only mode; the daemon is `outreach run`).
        #[arg(long)]
        once: bool,
    },
    /// What was filed.
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// Connection state, queue sizes and the last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Check the config file and print the effective settings (secrets hidden).
    CheckConfig,
    /// Newsletter subscribers: list, add, remove, import, export.
    #[command(subcommand)]
    Subscribers(news::SubscribersCommand),
    /// Ambassadors (who write stories).
    #[command(subcommand)]
    Ambassadors(news::AmbassadorsCommand),
    /// Ambassador stories: add, list, show, approve, reject.
    #[command(subcommand)]
    Stories(news::StoriesCommand),
    /// Newsletter issues: preview, send, status, approve, cancel, resend-missed.
    #[command(subcommand)]
    Newsletter(news::NewsletterCommand),
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// List filed messages, oldest first.
    List(ListArgs),
    /// Show one filed message with its text.
    Show {
        id: MessageRowId,
        #[arg(long)]
        json: bool,
    },
    /// Mark a message as handled (status `done`), or back to `new` with --reopen.
    Done {
        id: MessageRowId,
        #[arg(long)]
        reopen: bool,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// join, question, unsubscribe, followup, automatic, bounce or review.
    #[arg(long)]
    category: Option<String>,
    /// new or done.
    #[arg(long)]
    status: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long)]
    json: bool,
}

impl Cli {
    fn settings(&self) -> anyhow::Result<Settings> {
        let path = self.config.as_deref().context(
            "no config file given: use --config FILE or set OUTREACH_CONFIG (outreach init writes an example)",
        )?;
        Settings::load(path, std::env::vars())
    }

    /// Runs the command; the returned code is the process exit code.
    pub async fn execute(self) -> anyhow::Result<i32> {
        match &self.command {
            Command::Init { path, force } => {
                init(path.as_deref().or(self.config.as_deref()).unwrap_or(Path::new("outreach.toml")), *force)
            }
            Command::CheckConfig => {
                let s = self.settings()?;
                println!("{s:#?}");
                Ok(0)
            }
            Command::Run => {
                crate::app::run(Arc::new(self.settings()?), crate::web::serve).await?;
                Ok(0)
            }
            Command::Poll { once } => {
                if !once {
                    bail!("`outreach poll` needs --once (the daemon is `outreach run`)");
                }
                poll(Arc::new(self.settings()?)).await
            }
            Command::Inbox(cmd) => inbox(&self.settings()?, cmd),
            Command::Status { json } => status(&self.settings()?, *json),
            Command::Subscribers(cmd) => news::subscribers(self.settings()?, cmd).await,
            Command::Ambassadors(cmd) => news::ambassadors(self.settings()?, cmd),
            Command::Stories(cmd) => news::stories(self.settings()?, cmd),
            Command::Newsletter(cmd) => news::newsletter(self.settings()?, cmd).await,
        }
    }
}

fn init(path: &Path, force: bool) -> anyhow::Result<i32> {
    if path.exists() && !force {
        bail!("{} already exists; use --force to overwrite it", path.display());
    }
    std::fs::write(path, config::EXAMPLE).with_context(|| format!("Failed to write {}", path.display()))?;
    eprintln!(
        "Wrote an example config to {}. Fill in the [imap] and [smtp] keys, then run: outreach --config {} poll --once",
        path.display(),
        path.display()
    );
    Ok(0)
}

async fn poll(settings: Arc<Settings>) -> anyhow::Result<i32> {
    let r = crate::app::poll_once(settings).await?;
    let (i, o, n) = (&r.inbox, &r.outbox, &r.newsletter);
    println!(
        "inbox: {} in mailbox, {} filed, {} already filed, {} moved, {} auto-replies queued; outbox: {} sent, {} deferred, {} failed; newsletter: {} sent, {} deferred, {} failed",
        i.seen,
        i.filed,
        i.replayed,
        i.moved,
        i.replies_queued,
        o.sent,
        o.deferred,
        o.failed,
        n.sent,
        n.deferred,
        n.failed
    );
    if i.left > 0 {
        eprintln!("error: {} message(s) could not be filed and are still in the mailbox (see the log)", i.left);
        return Ok(1);
    }
    if o.deferred + o.failed > 0 {
        eprintln!(
            "error: {} mail(s) could not be delivered ({} will be retried, {} failed permanently): {}",
            o.deferred + o.failed,
            o.deferred,
            o.failed,
            o.last_error.as_deref().unwrap_or("unknown error")
        );
        return Ok(1);
    }
    Ok(0)
}

/// A time as the coordinator reads it (Amsterdam); text that is no time stays as it is.
pub(crate) fn local_time(ts: &str) -> String {
    crate::domain::time::parse_ts(ts)
        .map_or_else(|| ts.to_string(), |t| t.with_timezone(&Amsterdam).format("%Y-%m-%d %H:%M").to_string())
}

fn inbox(settings: &Settings, cmd: &InboxCommand) -> anyhow::Result<i32> {
    let db = Db::open(&settings.database.path)?;
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
            let rows = db.list_messages(&MessageFilter { category, status, limit: a.limit })?;
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
                    let from: String = m.from.as_deref().unwrap_or("?").chars().take(30).collect();
                    let subject: String = m.subject.chars().take(60).collect();
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
            if *json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                println!("Message {} {}", m.id, m.case_reference.as_deref().unwrap_or(""));
                println!(
                    "From:      {}{}",
                    m.from_name.as_deref().map(|n| format!("{n} ")).unwrap_or_default(),
                    m.from.as_deref().map(|f| format!("<{f}>")).unwrap_or_default()
                );
                println!("Subject:   {}", m.subject);
                println!("Received:  {}", local_time(&ts(m.received_at)));
                println!("Category:  {} (why: {})", m.category, m.reason);
                println!("Language:  {}", m.language.code());
                println!("Status:    {}", m.status);
                println!("Folder:    {}{}", m.folder, if m.moved { "" } else { " (not moved yet)" });
                println!("Reply:     {}", m.reply_note);
                println!();
                println!("{}", m.body.unwrap_or_default());
            }
            Ok(0)
        }
        InboxCommand::Done { id, reopen } => {
            let status = if *reopen { MessageStatus::New } else { MessageStatus::Done };
            if !db.set_message_status(*id, status)? {
                bail!("no filed message with id {id}");
            }
            println!("message {id} is now {status}");
            Ok(0)
        }
    }
}

fn status(settings: &Settings, json: bool) -> anyhow::Result<i32> {
    let db = Db::open(&settings.database.path)?;
    let running = DaemonLock::acquire(&settings.database.path).is_err();
    let states: std::collections::BTreeMap<String, (String, String)> =
        db.states()?.into_iter().map(|(k, v, t)| (k, (v, ts(t)))).collect();
    let outbox = db.outbox_counts()?;
    let counts = db.message_counts()?;
    let unmoved = db.unmoved_count()?;
    let failed = db.failed_outgoing(5)?;
    let subscribers: std::collections::BTreeMap<String, i64> =
        db.store().subscriber_counts()?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    let mut issues = Vec::new();
    for i in db.store().issues()?.into_iter().take(5) {
        let counts: std::collections::BTreeMap<String, i64> =
            db.store().delivery_counts(i.id)?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        issues.push((i, counts));
    }
    let get = |k: &str| states.get(k).map(|(v, t)| (v.clone(), t.clone()));
    if json {
        let v = serde_json::json!({
            "daemon_running": running,
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
    for (id, rcpt, e) in failed {
        let domain = rcpt.rsplit_once('@').map_or("", |(_, d)| d);
        println!("failed:   #{id} to …@{domain}: {e}");
    }
    Ok(0)
}
