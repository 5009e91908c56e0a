//! `outreach subscribers|ambassadors|stories|newsletter ...`: arguments in, printing
//! out; the rules are in [`crate::newsletter`], the delivery in [`crate::app`].

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::local_time;
use crate::config::Settings;
use crate::domain::ids::{IssueId, StoryId};
use crate::domain::state::{IssueStatus, OutboxKind, StoryStatus, SubscriberStatus};
use crate::domain::{EmailAddress, Language};
use crate::newsletter::send::{Envelope, build_message};
use crate::newsletter::{Ctx, MadeIssue, Subscribed, csv_import, email_hash, stories};
use crate::store::{Db, NewOutgoing};

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
    /// also erase their data; only a hash of the address is kept so it is never mailed again.
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

#[derive(Debug, Subcommand)]
pub enum AmbassadorsCommand {
    /// Add an ambassador, or update the one with this name.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        role: String,
        /// Lets them send stories by mail ("Verhaal: ..." / "Story: ...").
        #[arg(long)]
        email: Option<String>,
        /// https URL of a photo.
        #[arg(long)]
        photo: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoriesCommand {
    /// Add a story from a Markdown file with front matter (title, ambassador, role).
    Add { file: PathBuf },
    /// List stories.
    List {
        /// submitted, approved, published or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one story.
    Show {
        id: StoryId,
        #[arg(long)]
        json: bool,
    },
    /// Approve a story for the next issue. A story sent by mail needs the ambassador's
    /// consent first ("ja" to our reply), or --consent saying how it was given.
    Approve {
        id: StoryId,
        #[arg(long)]
        consent: Option<String>,
    },
    /// Reject a story: it is never published.
    Reject { id: StoryId },
}

#[derive(Debug, Subcommand)]
pub enum NewsletterCommand {
    /// Show the next issue exactly as a subscriber gets it.
    Preview {
        /// Write the HTML version to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Mail the preview to this address (as that subscriber when they are one).
        #[arg(long)]
        to: Option<String>,
        /// nl or en (default: the subscriber's language, else nl).
        #[arg(long)]
        language: Option<String>,
    },
    /// Make the next issue of the approved stories and send it now (no proof).
    Send,
    /// Progress of all issues, or per recipient of one issue.
    Status {
        issue: Option<IssueId>,
        /// Only the recipients who did not get it (yet).
        #[arg(long)]
        missed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Approve a proof: the issue goes out (default: the issue waiting for approval).
    Approve { issue: Option<IssueId> },
    /// Cancel a proof (or stop an issue being sent).
    Cancel { issue: Option<IssueId> },
    /// Send an issue again to exactly those who did not get it (failed or still retrying).
    ResendMissed { issue: IssueId },
}

fn open(settings: Settings) -> anyhow::Result<(Ctx, Db)> {
    let settings = Arc::new(settings);
    let ctx = crate::app::context(settings.clone())?;
    let db = Db::open(&settings.database.path)?;
    Ok((ctx, db))
}

fn lang(s: &str) -> anyhow::Result<Language> {
    Language::parse(s).with_context(|| format!("unknown language {s:?}; expected nl or en"))
}

/// Delivers queued mail now when no daemon runs (else the daemon does, within
/// seconds), with a progress bar on a terminal (stderr) for the newsletter.
async fn deliver_now(ctx: &Ctx, with_newsletter: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sent ({per_sec}, {eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done = crate::app::deliver_now(ctx, with_newsletter, |total, sent| {
        bar.set_length(total);
        bar.set_position(sent);
    })
    .await?;
    bar.finish_and_clear();
    if !done.by_us {
        println!("the running daemon sends it");
        return Ok(());
    }
    if let Some(n) = done.newsletter {
        println!(
            "newsletter: {} sent, {} to retry, {} failed ({:.1} s)",
            n.sent,
            n.deferred,
            n.failed,
            started.elapsed().as_secs_f64()
        );
        if n.deferred > 0 {
            println!("retries follow with `outreach run` or `outreach poll --once`");
        }
    }
    let o = done.outbox;
    if o.deferred + o.failed > 0 {
        eprintln!("warning: {} mail(s) not delivered yet: {}", o.deferred + o.failed, o.last_error.unwrap_or_default());
    }
    Ok(())
}

fn time_or_empty(t: Option<DateTime<Utc>>) -> String {
    t.map(crate::domain::time::ts).unwrap_or_default()
}

/// A spreadsheet opens a cell starting with `=`, `+`, `-` or `@` as a formula: such a
/// value is written with a leading `'` (OWASP, CSV injection).
fn csv_cell(s: String) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s }
}

pub async fn subscribers(settings: Settings, cmd: &SubscribersCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = ctx.clock.now();
    match cmd {
        SubscribersCommand::List { status, json } => {
            let status = status
                .as_deref()
                .map(|s| {
                    SubscriberStatus::parse(s).with_context(|| {
                        format!("unknown status {s:?}; expected pending, active, unsubscribed or bounced")
                    })
                })
                .transpose()?;
            let rows = db.store().subscribers(status)?;
            let mut out = std::io::stdout().lock();
            if *json {
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
                    println!("subscriber {id} {addr} is pending: a confirmation went out less than a day ago");
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
            let changed = db.write(|st| {
                let changed = ctx.unsubscribe(st, s.id, "cli: outreach subscribers remove", !quiet && !erase, now)?;
                if *erase {
                    st.erase_subscriber(s.id, &email_hash(addr.as_str()), now)?;
                }
                Ok(changed)
            })?;
            match (changed, erase) {
                (_, true) => println!("subscriber {} erased; only a hash of the address is kept", s.id),
                (true, false) => println!("subscriber {} {addr} unsubscribed", s.id),
                (false, false) => println!("subscriber {} {addr} was already {}", s.id, s.status),
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
        SubscribersCommand::Export { json } => {
            let rows = db.store().subscribers(None)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                w.write_record([
                    "email",
                    "name",
                    "language",
                    "status",
                    "source",
                    "consent_source",
                    "consent_at",
                    "created_at",
                    "confirmed_at",
                    "unsubscribed_at",
                    "unsubscribe_source",
                    "bounced_at",
                ])?;
                for s in rows {
                    w.write_record(
                        [
                            s.email,
                            s.name.unwrap_or_default(),
                            s.language.code().to_string(),
                            s.status.to_string(),
                            s.source,
                            s.consent_source.unwrap_or_default(),
                            time_or_empty(s.consent_at),
                            crate::domain::time::ts(s.created_at),
                            time_or_empty(s.confirmed_at),
                            time_or_empty(s.unsubscribed_at),
                            s.unsubscribe_source.unwrap_or_default(),
                            time_or_empty(s.bounced_at),
                        ]
                        .map(csv_cell),
                    )?;
                }
                w.flush()?;
            }
            Ok(0)
        }
    }
}

pub fn ambassadors(settings: Settings, cmd: &AmbassadorsCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    match cmd {
        AmbassadorsCommand::Add { name, role, email, photo } => {
            let email = email
                .as_deref()
                .map(|e| EmailAddress::parse(e).map(|a| a.to_string()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--email: {e}"))?;
            if let Some(p) = photo
                && !crate::newsletter::render::safe_url(p)
            {
                bail!("--photo: expected an https:// URL, found {p:?}");
            }
            let id =
                db.write(|st| st.upsert_ambassador(name, role, photo.as_deref(), email.as_deref(), ctx.clock.now()))?;
            println!("ambassador {id}: {name}");
            Ok(0)
        }
        AmbassadorsCommand::List { json } => {
            let rows = db.store().ambassadors()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for a in rows {
                    println!("{:>4}  {:30}  {:30}  {}", a.id, a.name, a.role, a.email.unwrap_or_default());
                }
            }
            Ok(0)
        }
    }
}

pub fn stories(settings: Settings, cmd: &StoriesCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = ctx.clock.now();
    match cmd {
        StoriesCommand::Add { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("Failed to read {}", file.display()))?;
            let s = stories::parse(&text).with_context(|| format!("{}", file.display()))?;
            let source = file.display().to_string();
            let id =
                db.write(|st| stories::add(st, &s, &source, now)).with_context(|| format!("{}", file.display()))?;
            println!("story {id} added (submitted): {} by {}", s.title, s.ambassador);
            println!("approve it for the next issue with: outreach stories approve {id}");
            Ok(0)
        }
        StoriesCommand::List { status, json } => {
            let status = status
                .as_deref()
                .map(|s| {
                    StoryStatus::parse(s).with_context(|| {
                        format!("unknown status {s:?}; expected submitted, approved, published or rejected")
                    })
                })
                .transpose()?;
            let rows = db.store().stories(status)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:>4}  {:10}  {:7}  {:24}  TITLE", "ID", "STATUS", "CONSENT", "AMBASSADOR");
                for s in rows {
                    println!(
                        "{:>4}  {:10}  {:7}  {:24}  {}",
                        s.id,
                        s.status,
                        if s.consent_at.is_some() { "yes" } else { "no" },
                        s.ambassador.chars().take(24).collect::<String>(),
                        s.title
                    );
                }
            }
            Ok(0)
        }
        StoriesCommand::Show { id, json } => {
            let s = db.store().story(*id)?.with_context(|| format!("there is no story {id}"))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("Story {}: {}", s.id, s.title);
                println!(
                    "By:      {}{}",
                    s.ambassador,
                    if s.role.is_empty() { String::new() } else { format!(", {}", s.role) }
                );
                println!("Status:  {}", s.status);
                println!(
                    "Consent: {}",
                    s.consent_source.as_deref().map_or("none yet".to_string(), |c| format!(
                        "{c} ({})",
                        local_time(&time_or_empty(s.consent_at))
                    ))
                );
                println!();
                println!("{}", s.body_md);
            }
            Ok(0)
        }
        StoriesCommand::Approve { id, consent } => {
            db.write(|st| stories::approve(st, *id, consent.as_deref(), now))?;
            println!("story {id} approved: it goes into the next issue");
            Ok(0)
        }
        StoriesCommand::Reject { id } => {
            db.write(|st| stories::reject(st, *id, now))?;
            println!("story {id} rejected");
            Ok(0)
        }
    }
}

pub async fn newsletter(settings: Settings, cmd: &NewsletterCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = ctx.clock.now();
    match cmd {
        NewsletterCommand::Preview { out, to, language } => {
            let stories = db.store().stories_ready(ctx.settings.newsletter.max_stories)?;
            if stories.is_empty() {
                bail!(
                    "there are no approved stories for the next issue (outreach stories list; outreach stories approve ID)"
                );
            }
            let to_addr =
                to.as_deref().map(EmailAddress::parse).transpose().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let sub = match &to_addr {
                Some(a) => db.store().subscriber_by_email(a.as_str())?,
                None => None,
            };
            let lang = match language {
                Some(l) => lang(l)?,
                None => sub.as_ref().map_or(Language::Dutch, |s| s.language),
            };
            let content = ctx.content(None, stories, now);
            let skeleton = ctx.renderer.skeleton(&content, lang)?;
            let unsub = match &sub {
                Some(s) => ctx.unsubscribe_url(s.id, &s.token_nonce, now),
                None => format!("{}/unsubscribe/PREVIEW", ctx.base_url()),
            };
            let (html, text) = skeleton.personalize(sub.as_ref().and_then(|s| s.name.as_deref()), &unsub);
            if let Some(path) = out {
                std::fs::write(path, &html).with_context(|| format!("Failed to write {}", path.display()))?;
                println!("wrote the HTML of the next issue to {}", path.display());
            }
            if let Some(addr) = &to_addr {
                let message_id = crate::outbox::compose::new_message_id(&ctx.from);
                let raw = build_message(
                    &ctx,
                    &Envelope {
                        to: addr,
                        to_name: sub.as_ref().and_then(|s| s.name.as_deref()),
                        subject: &content.subject,
                        message_id: &message_id,
                        unsubscribe_url: Some(&unsub),
                    },
                    &text,
                    &html,
                    now,
                )?;
                let mail = NewOutgoing::new(
                    OutboxKind::Preview,
                    message_id,
                    ctx.from.email.to_string(),
                    addr.to_string(),
                    raw,
                );
                db.write(|st| st.enqueue(&mail, now))?;
                println!("preview queued for {addr}");
                deliver_now(&ctx, false).await?;
            }
            if out.is_none() && to.is_none() {
                println!("Subject: {}\n", content.subject);
                print!("{text}");
            }
            Ok(0)
        }
        NewsletterCommand::Send => {
            match db.write(|st| ctx.make_issue(st, None, now))? {
                MadeIssue::Sending(id, n) => println!("issue {id} is being sent to {n} subscriber(s)"),
                MadeIssue::NoStories => bail!(
                    "there are no approved stories, so there is nothing to send (outreach stories list; outreach stories approve ID)"
                ),
                other => bail!("unexpected outcome {other:?}"),
            }
            deliver_now(&ctx, true).await?;
            Ok(0)
        }
        NewsletterCommand::Status { issue: None, json, .. } => {
            let issues = db.store().issues()?;
            let mut rows = Vec::new();
            for i in issues {
                let counts: std::collections::BTreeMap<String, i64> =
                    db.store().delivery_counts(i.id)?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
                rows.push((i, counts));
            }
            if *json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(i, c)| {
                        let mut o = serde_json::to_value(i).unwrap_or_default();
                        o["deliveries"] = serde_json::to_value(c).unwrap_or_default();
                        o["recipients"] = c.values().sum::<i64>().into();
                        o
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                if rows.is_empty() {
                    println!("no issues yet");
                }
                for (i, c) in rows {
                    let total: i64 = c.values().sum();
                    let detail = c.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
                    println!(
                        "issue {:>3}  {:9}  {}  {}{}",
                        i.id,
                        i.status,
                        local_time(&crate::domain::time::ts(i.started_at.unwrap_or(i.created_at))),
                        if i.subject.is_empty() { i.note.clone().unwrap_or_default() } else { i.subject.clone() },
                        if total > 0 { format!("\n           {total} recipient(s): {detail}") } else { String::new() }
                    );
                }
            }
            Ok(0)
        }
        NewsletterCommand::Status { issue: Some(id), missed, json } => {
            let i = db.store().issue(*id)?.with_context(|| format!("there is no issue {id}"))?;
            let lines = db.store().deliveries_of(*id, *missed)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                println!("issue {}: {} ({})", i.id, i.subject, i.status);
                for l in &lines {
                    let what = match l.status {
                        crate::domain::state::DeliveryStatus::Sent => {
                            format!("sent {}", local_time(&time_or_empty(l.sent_at)))
                        }
                        crate::domain::state::DeliveryStatus::Retry => {
                            format!("retrying (attempt {}): {}", l.attempts, l.detail.as_deref().unwrap_or(""))
                        }
                        s => format!("{s}{}", l.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()),
                    };
                    println!("{:40}  {what}", l.email);
                }
                let counts = db.store().delivery_counts(*id)?;
                println!("{}", counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "));
            }
            Ok(0)
        }
        NewsletterCommand::Approve { issue } => {
            let id = waiting_issue(&db, *issue)?;
            let n = db.write(|st| {
                ctx.approve(st, id, "cli: outreach newsletter approve", now)?;
                Ok(ctx.start_approved(st, now)?.into_iter().map(|(_, n)| n).sum::<usize>())
            })?;
            println!("issue {id} approved: sending to {n} subscriber(s)");
            deliver_now(&ctx, true).await?;
            Ok(0)
        }
        NewsletterCommand::Cancel { issue } => {
            let id = match issue {
                Some(id) => *id,
                None => waiting_issue(&db, None)?,
            };
            db.write(|st| ctx.cancel(st, id, "cli: outreach newsletter cancel", now))?;
            println!("issue {id} cancelled");
            Ok(0)
        }
        NewsletterCommand::ResendMissed { issue } => {
            db.store().issue(*issue)?.with_context(|| format!("there is no issue {issue}"))?;
            let n = db.write(|st| st.requeue_missed(*issue, now))?;
            println!("issue {issue}: {n} delivery(ies) queued again");
            if n > 0 {
                deliver_now(&ctx, true).await?;
            }
            Ok(0)
        }
    }
}

/// The issue given, else the one proof waiting for an answer.
fn waiting_issue(db: &Db, issue: Option<IssueId>) -> anyhow::Result<IssueId> {
    if let Some(id) = issue {
        return Ok(id);
    }
    let waiting = db.store().issues_with_status(IssueStatus::Proof)?;
    match waiting.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no issue is waiting for approval (outreach newsletter status)"),
        many => bail!(
            "several issues wait for approval ({}); name one",
            many.iter().map(|i| i.id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}
