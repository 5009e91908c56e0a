//! `outreach subscribers ...`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::common::{deliver_now, lang, open};
use super::local_time;
use crate::config::Settings;
use crate::domain::EmailAddress;
use crate::domain::state::SubscriberStatus;
use crate::newsletter::subscribers::export_csv;
use crate::newsletter::{Subscribed, csv_import};
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// List subscribers.
    List {
        /// pending, active, unsubscribed or bounced.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Add a subscriber: pending with a confirmation mail (double opt-in), or active at
    /// once with --consent saying how they gave it.
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// nl or en.
        #[arg(long, default_value = "nl")]
        language: String,
        /// How and when they consented, e.g. "form at the meeting of 2026-11-12": then
        /// they are active at once, without a confirmation mail.
        #[arg(long)]
        consent: Option<String>,
    },
    /// Unsubscribe someone at once (they get a short confirmation mail). With --erase,
    /// erase the person from every table instead (as `outreach person erase`): only a
    /// keyed hash of the address is kept, so it is never added again.
    Remove {
        email: String,
        #[arg(long)]
        erase: bool,
        /// No confirmation mail.
        #[arg(long)]
        quiet: bool,
    },
    /// Import a CSV file: header row with email (required), name, language, consent_source, consent_at.
    Import {
        file: PathBuf,
        /// Where the list comes from (recorded as the consent source of its rows).
        #[arg(long, alias = "consent-source", default_value = "imported list")]
        source: String,
        #[arg(long)]
        json: bool,
    },
    /// Export all subscribers with their consent records (CSV, or JSON with --json).
    Export {
        #[arg(long)]
        json: bool,
    },
}

pub async fn subscribers(settings: Settings, cmd: &SubscribersCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = ctx.clock.now();
    match cmd {
        SubscribersCommand::List { status, json } => list(&db, status.as_deref(), *json),
        SubscribersCommand::Add { email, name, language, consent } => {
            let addr = EmailAddress::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
            let language = lang(language)?;
            let consent = consent.as_deref().map(|c| format!("cli: {c}"));
            let r = db.write(|st| {
                ctx.subscribe(st, &addr, name.as_deref(), language, "cli", consent.as_deref().map(|c| (c, now)), now)
            })?;
            let code = match r {
                Subscribed::ConfirmationSent(id) => {
                    println!("subscriber {id} {addr} is pending: a confirmation mail was queued");
                    0
                }
                Subscribed::ConfirmationRecent(id) => {
                    println!("subscriber {id} {addr}: no confirmation mail sent, one went out less than a day ago");
                    0
                }
                Subscribed::ConfirmationLimit(id) => {
                    println!("subscriber {id} {addr}: no confirmation mail sent, three went out in the last 30 days");
                    0
                }
                Subscribed::Activated(id) => {
                    println!("subscriber {id} {addr} is active (consent recorded)");
                    0
                }
                Subscribed::AlreadyActive(id) => {
                    println!("subscriber {id} {addr} was already active");
                    0
                }
                Subscribed::Kept(id, status) => {
                    println!("subscriber {id} {addr} stays {status}");
                    0
                }
                Subscribed::Suppressed => {
                    eprintln!("error: {addr} was erased on request and is never mailed again");
                    1
                }
            };
            deliver_now(&ctx, false).await?;
            Ok(code)
        }
        SubscribersCommand::Remove { email, erase, quiet } => {
            let addr = EmailAddress::parse(email).map_err(|e| anyhow::anyhow!("{e}"))?;
            let Some(s) = db.store().subscriber_by_email(addr.as_str())? else {
                bail!("{addr} is not a subscriber");
            };
            if *erase {
                // Erasing the subscriber erases the person: every table, not only this one.
                super::person::erase(&ctx, &mut db, &addr)?;
                return Ok(0);
            }
            let changed = db.write(|st| ctx.unsubscribe(st, s.id, "cli: outreach subscribers remove", !quiet, now))?;
            if changed {
                println!("subscriber {} {addr} unsubscribed", s.id);
            } else {
                println!("subscriber {} {addr} was already {}", s.id, s.status);
            }
            deliver_now(&ctx, false).await?;
            Ok(0)
        }
        SubscribersCommand::Import { file, source, json } => {
            let lines = csv_import::import(&ctx, &mut db, file, source, now)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                for l in &lines {
                    println!("line {}: {}: {}: {}", l.line, l.email, l.action, l.detail);
                }
                let count = |a: &str| lines.iter().filter(|l| l.action == a).count();
                println!(
                    "{} line(s): {} added, {} confirmation mail(s), {} unchanged, {} rejected",
                    lines.len(),
                    count("added"),
                    count("confirmation_sent"),
                    count("unchanged"),
                    count("rejected")
                );
            }
            deliver_now(&ctx, false).await?;
            Ok(0)
        }
        SubscribersCommand::Export { json } => export(&db, *json),
    }
}

/// `subscribers list`.
fn list(db: &Db, status: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let status = status
        .map(|s| {
            SubscriberStatus::parse(s)
                .with_context(|| format!("unknown status {s:?}; expected pending, active, unsubscribed or bounced"))
        })
        .transpose()?;
    let rows = db.store().subscribers(status)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{:>5}  {:12}  {:4}  {:16}  {:40}  NAME", "ID", "STATUS", "LANG", "SINCE", "EMAIL")?;
        for s in &rows {
            let since = crate::domain::time::ts(s.confirmed_at.unwrap_or(s.created_at));
            writeln!(
                out,
                "{:>5}  {:12}  {:4}  {:16}  {:40}  {}",
                s.id,
                s.status,
                s.language.code(),
                local_time(&since),
                s.email,
                s.name.as_deref().unwrap_or("")
            )?;
        }
        writeln!(out, "{} subscriber(s)", rows.len())?;
    }
    Ok(0)
}

/// `subscribers export`: JSON, or CSV safe to open in a spreadsheet.
fn export(db: &Db, json: bool) -> anyhow::Result<i32> {
    let rows = db.store().subscribers(None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        export_csv(rows, std::io::stdout().lock())?;
    }
    Ok(0)
}
