//! Command-line interface: argument parsing and printing only; the work is in the parts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono_tz::Europe::Amsterdam;
use clap::{Args, Parser, Subcommand};

mod common;
mod db;
mod doctor;
mod inbox;
mod newsletter;
mod person;
mod status;
mod stories;
mod subscribers;

use crate::config::{self, Settings};
use crate::domain::ids::MessageRowId;

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
    /// Check everything the daemon needs (config, database, IMAP, SMTP, web address) and
    /// say what to fix; exits 1 when a check failed.
    Doctor {
        #[arg(long)]
        json: bool,
        /// Seconds each check may take.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// The database file: an online backup, a check.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Newsletter subscribers: list, add, remove, import, export.
    #[command(subcommand)]
    Subscribers(subscribers::SubscribersCommand),
    /// Ambassadors (who write stories).
    #[command(subcommand)]
    Ambassadors(stories::AmbassadorsCommand),
    /// Ambassador stories: add, list, show, approve, reject.
    #[command(subcommand)]
    Stories(stories::StoriesCommand),
    /// Newsletter issues: preview, send, status, approve, cancel, resend-missed.
    #[command(subcommand)]
    Newsletter(newsletter::NewsletterCommand),
    /// One person's data: export all of it, or erase it.
    #[command(subcommand)]
    Person(person::PersonCommand),
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
            Command::Doctor { json, timeout } => {
                doctor::doctor(self.config.as_deref(), *json, std::time::Duration::from_secs((*timeout).max(1))).await
            }
            Command::Db(cmd) => db::db(|| self.settings(), cmd),
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
            Command::Inbox(cmd) => inbox::inbox(&self.settings()?, cmd),
            Command::Status { json } => status::status(&self.settings()?, *json),
            Command::Subscribers(cmd) => subscribers::subscribers(self.settings()?, cmd).await,
            Command::Ambassadors(cmd) => stories::ambassadors(self.settings()?, cmd),
            Command::Stories(cmd) => stories::stories(self.settings()?, cmd),
            Command::Newsletter(cmd) => newsletter::newsletter(self.settings()?, cmd).await,
            Command::Person(cmd) => person::person(self.settings()?, cmd),
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
