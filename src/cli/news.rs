//! `outreach subscribers|ambassadors|stories|newsletter ...`: printing only; the work is
//! in [`crate::newsletter`].

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;

use super::local_time;
use crate::config::Settings;
use crate::domain::{EmailAddress, Language};
use crate::newsletter::send::{Envelope, Sender, build_message};
use crate::newsletter::{Ctx, MadeIssue, Subscribed, csv_import, email_hash, stories};
use crate::outbox::Outbox;
use crate::store::news::{self, NewStory};
use crate::store::{DaemonLock, Db, NewOutgoing};

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
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Approve a story for the next issue. A story sent by mail needs the ambassador's
    /// consent first ("ja" to our reply), or --consent saying how it was given.
    Approve {
        id: i64,
        #[arg(long)]
        consent: Option<String>,
    },
    /// Reject a story: it is never published.
    Reject { id: i64 },
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
        issue: Option<i64>,
        /// Only the recipients who did not get it (yet).
        #[arg(long)]
        missed: bool,
        #[arg(long)]
        json: bool,
    },
    /// Approve a proof: the issue goes out (default: the issue waiting for approval).
    Approve { issue: Option<i64> },
    /// Cancel a proof (or stop an issue being sent).
    Cancel { issue: Option<i64> },
    /// Send an issue again to exactly those who did not get it (failed or still retrying).
    ResendMissed { issue: i64 },
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

/// Delivers queued mail now when no daemon runs (else the daemon does, within seconds).
async fn deliver_now(ctx: &Ctx, with_newsletter: bool) -> anyhow::Result<()> {
    let path = &ctx.settings.database.path;
    let Ok(_lock) = DaemonLock::acquire(path) else {
        println!("the running daemon sends it");
        return Ok(());
    };
    let outbox = Outbox::open(path, ctx.settings.smtp.clone()).await?;
    let o = outbox.deliver_due().await?;
    if with_newsletter {
        let sender = Sender::open(ctx.clone(), path).await?;
        let started = std::time::Instant::now();
        let total: u64 = Db::open(path)?.conn().query_row(
            "SELECT COUNT(*) FROM deliveries d JOIN issues i ON i.id = d.issue_id WHERE i.status = 'sending' AND d.status IN ('pending', 'retry')",
            [],
            |r| r.get(0),
        )?;
        // A progress bar on a terminal (stderr); nothing when output goes to a file.
        let bar = indicatif::ProgressBar::new(total).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} sent ({per_sec}, {eta} left)")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let n = {
            let ticker = async {
                loop {
                    bar.set_position(sender.sent_total() as u64);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            };
            tokio::select! {
                n = sender.deliver_due() => n?,
                () = ticker => unreachable!("the ticker never ends"),
            }
        };
        bar.finish_and_clear();
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
    if o.deferred + o.failed > 0 {
        eprintln!("warning: {} mail(s) not delivered yet: {}", o.deferred + o.failed, o.last_error.unwrap_or_default());
    }
    Ok(())
}

pub async fn subscribers(settings: Settings, cmd: &SubscribersCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = Utc::now();
    match cmd {
        SubscribersCommand::List { status, json } => {
            if let Some(s) = status
                && !["pending", "active", "unsubscribed", "bounced"].contains(&s.as_str())
            {
                bail!("unknown status {s:?}; expected pending, active, unsubscribed or bounced");
            }
            let rows = news::list_subscribers(db.conn(), status.as_deref())?;
            let mut out = std::io::stdout().lock();
            if *json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{:>5}  {:12}  {:4}  {:16}  {:40}  NAME", "ID", "STATUS", "LANG", "SINCE", "EMAIL")?;
                for s in &rows {
                    let since = s.confirmed_at.as_deref().unwrap_or(&s.created_at);
                    writeln!(
                        out,
                        "{:>5}  {:12}  {:4}  {:16}  {:40}  {}",
                        s.id,
                        s.status,
                        s.language,
                        local_time(since),
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
            let r = db.write(|c| {
                ctx.subscribe(c, &addr, name.as_deref(), language, "cli", consent.as_deref().map(|c| (c, now)), now)
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
            let Some(s) = news::subscriber_by_email(db.conn(), addr.as_str())? else {
                bail!("{addr} is not a subscriber");
            };
            let changed = db.write(|c| {
                let changed = ctx.unsubscribe(c, s.id, "cli: outreach subscribers remove", !quiet && !erase, now)?;
                if *erase {
                    news::erase(c, s.id, &email_hash(addr.as_str()), now)?;
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
            let rows = news::list_subscribers(db.conn(), None)?;
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
                    w.write_record([
                        s.email,
                        s.name.unwrap_or_default(),
                        s.language,
                        s.status,
                        s.source,
                        s.consent_source.unwrap_or_default(),
                        s.consent_at.unwrap_or_default(),
                        s.created_at,
                        s.confirmed_at.unwrap_or_default(),
                        s.unsubscribed_at.unwrap_or_default(),
                        s.unsubscribe_source.unwrap_or_default(),
                        s.bounced_at.unwrap_or_default(),
                    ])?;
                }
                w.flush()?;
            }
            Ok(0)
        }
    }
}

pub fn ambassadors(settings: Settings, cmd: &AmbassadorsCommand) -> anyhow::Result<i32> {
    let (_, mut db) = open(settings)?;
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
                db.write(|c| news::upsert_ambassador(c, name, role, photo.as_deref(), email.as_deref(), Utc::now()))?;
            println!("ambassador {id}: {name}");
            Ok(0)
        }
        AmbassadorsCommand::List { json } => {
            let rows = news::list_ambassadors(db.conn())?;
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
    let (_, mut db) = open(settings)?;
    let now = Utc::now();
    match cmd {
        StoriesCommand::Add { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("Failed to read {}", file.display()))?;
            let s = stories::parse(&text).with_context(|| format!("{}", file.display()))?;
            let email = s
                .email
                .as_deref()
                .map(|e| EmailAddress::parse(e).map(|a| a.to_string()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("{}: email: {e}", file.display()))?;
            let source = file.display().to_string();
            let id = db.write(|c| {
                let amb =
                    news::upsert_ambassador(c, &s.ambassador, &s.role, s.photo_url.as_deref(), email.as_deref(), now)?;
                news::insert_story(
                    c,
                    &NewStory {
                        title: &s.title,
                        ambassador_id: amb,
                        body_md: &s.body,
                        photo_url: s.photo_url.as_deref(),
                        photo_alt: s.photo_alt.as_deref(),
                        source: &source,
                        message_id: None,
                        consent_source: Some(&format!("coordinator: added from {source}")),
                    },
                    now,
                )
            })?;
            println!("story {id} added (submitted): {} by {}", s.title, s.ambassador);
            println!("approve it for the next issue with: outreach stories approve {id}");
            Ok(0)
        }
        StoriesCommand::List { status, json } => {
            let rows = news::list_stories(db.conn(), status.as_deref())?;
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
            let s = news::story(db.conn(), *id)?.with_context(|| format!("there is no story {id}"))?;
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
                        local_time(s.consent_at.as_deref().unwrap_or(""))
                    ))
                );
                println!();
                println!("{}", s.body_md);
            }
            Ok(0)
        }
        StoriesCommand::Approve { id, consent } => {
            let s = news::story(db.conn(), *id)?.with_context(|| format!("there is no story {id}"))?;
            if !["submitted", "rejected"].contains(&s.status.as_str()) {
                bail!("story {id} is {} already", s.status);
            }
            db.write(|c| {
                if let Some(how) = consent {
                    news::record_story_consent(c, *id, &format!("coordinator: {how}"), now)?;
                }
                if news::story(c, *id)?.is_some_and(|s| s.consent_at.is_none()) {
                    bail!(
                        "story {id} has no consent to publish yet: wait for the ambassador's \"ja\" to our reply, or give --consent \"how they agreed\""
                    );
                }
                news::set_story_status(c, *id, "approved", now)
            })?;
            println!("story {id} approved: it goes into the next issue");
            Ok(0)
        }
        StoriesCommand::Reject { id } => {
            let s = news::story(db.conn(), *id)?.with_context(|| format!("there is no story {id}"))?;
            if s.status == "published" {
                bail!("story {id} was published already");
            }
            db.write(|c| {
                c.execute("UPDATE stories SET issue_id = NULL WHERE id = ?1", [*id])?;
                news::set_story_status(c, *id, "rejected", now)
            })?;
            println!("story {id} rejected");
            Ok(0)
        }
    }
}

pub async fn newsletter(settings: Settings, cmd: &NewsletterCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = Utc::now();
    match cmd {
        NewsletterCommand::Preview { out, to, language } => {
            let stories = news::stories_ready(db.conn(), ctx.settings.newsletter.max_stories)?;
            if stories.is_empty() {
                bail!(
                    "there are no approved stories for the next issue (outreach stories list; outreach stories approve ID)"
                );
            }
            let to_addr =
                to.as_deref().map(EmailAddress::parse).transpose().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let sub = match &to_addr {
                Some(a) => news::subscriber_by_email(db.conn(), a.as_str())?,
                None => None,
            };
            let lang = match language {
                Some(l) => lang(l)?,
                None => sub.as_ref().and_then(|s| Language::parse(&s.language)).unwrap_or(Language::Dutch),
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
                db.write(|c| {
                    crate::store::enqueue(
                        c,
                        &NewOutgoing {
                            kind: "preview".into(),
                            message_id,
                            envelope_from: ctx.from.email.to_string(),
                            rcpt: addr.to_string(),
                            raw,
                            ..Default::default()
                        },
                        now,
                    )
                })?;
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
            match db.write(|c| ctx.make_issue(c, None, now))? {
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
            let issues = news::list_issues(db.conn())?;
            let mut rows = Vec::new();
            for i in issues {
                let counts: std::collections::BTreeMap<String, i64> =
                    news::delivery_counts(db.conn(), i.id)?.into_iter().collect();
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
                        local_time(i.started_at.as_deref().unwrap_or(&i.created_at)),
                        if i.subject.is_empty() { i.note.clone().unwrap_or_default() } else { i.subject.clone() },
                        if total > 0 { format!("\n           {total} recipient(s): {detail}") } else { String::new() }
                    );
                }
            }
            Ok(0)
        }
        NewsletterCommand::Status { issue: Some(id), missed, json } => {
            let i = news::issue(db.conn(), *id)?.with_context(|| format!("there is no issue {id}"))?;
            let lines = news::deliveries_of(db.conn(), *id, *missed)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                println!("issue {}: {} ({})", i.id, i.subject, i.status);
                for l in &lines {
                    let what = match l.status.as_str() {
                        "sent" => format!("sent {}", local_time(l.sent_at.as_deref().unwrap_or(""))),
                        "retry" => format!("retrying (attempt {}): {}", l.attempts, l.detail.as_deref().unwrap_or("")),
                        s => format!("{s}{}", l.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()),
                    };
                    println!("{:40}  {what}", l.email);
                }
                let counts = news::delivery_counts(db.conn(), *id)?;
                println!("{}", counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "));
            }
            Ok(0)
        }
        NewsletterCommand::Approve { issue } => {
            let id = waiting_issue(&db, *issue)?;
            let n = db.write(|c| ctx.approve(c, id, "cli: outreach newsletter approve", now))?;
            println!("issue {id} approved: sending to {n} subscriber(s)");
            deliver_now(&ctx, true).await?;
            Ok(0)
        }
        NewsletterCommand::Cancel { issue } => {
            let id = match issue {
                Some(id) => *id,
                None => waiting_issue(&db, None)?,
            };
            db.write(|c| ctx.cancel(c, id, "cli: outreach newsletter cancel", now))?;
            println!("issue {id} cancelled");
            Ok(0)
        }
        NewsletterCommand::ResendMissed { issue } => {
            news::issue(db.conn(), *issue)?.with_context(|| format!("there is no issue {issue}"))?;
            let n = db.write(|c| news::requeue_missed(c, *issue, now))?;
            println!("issue {issue}: {n} delivery(ies) queued again");
            if n > 0 {
                deliver_now(&ctx, true).await?;
            }
            Ok(0)
        }
    }
}

/// The issue given, else the one proof waiting for an answer.
fn waiting_issue(db: &Db, issue: Option<i64>) -> anyhow::Result<i64> {
    if let Some(id) = issue {
        return Ok(id);
    }
    let waiting = news::issues_with_status(db.conn(), "proof")?;
    match waiting.as_slice() {
        [one] => Ok(one.id),
        [] => bail!("no issue is waiting for approval (outreach newsletter status)"),
        many => bail!(
            "several issues wait for approval ({}); name one",
            many.iter().map(|i| i.id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}
