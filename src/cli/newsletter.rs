//! `outreach newsletter ...`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::common::{deliver_now, lang, open, time_or_empty};
use super::local_time;
use crate::config::Settings;
use crate::domain::ids::IssueId;
use crate::domain::state::{IssueStatus, OutboxKind};
use crate::domain::{EmailAddress, Language};
use crate::newsletter::MadeIssue;
use crate::newsletter::send::{Envelope, build_message};
use crate::store::{Db, NewOutgoing};

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

pub async fn newsletter(settings: Settings, cmd: &NewsletterCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    let now = ctx.clock.now();
    match cmd {
        NewsletterCommand::Preview { out, to, language } => {
            preview(&ctx, &mut db, out.as_deref(), to.as_deref(), language.as_deref()).await
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
        NewsletterCommand::Status { issue: None, json, .. } => issues_status(&db, *json),
        NewsletterCommand::Status { issue: Some(id), missed, json } => issue_status(&db, *id, *missed, *json),
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
            let n = db.write(|st| st.requeue_missed(*issue, crate::store::desk::ACTOR_CLI, now))?;
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

/// `newsletter preview`: the next issue as a subscriber would get it.
async fn preview(
    ctx: &crate::newsletter::Ctx,
    db: &mut Db,
    out: Option<&std::path::Path>,
    to: Option<&str>,
    language: Option<&str>,
) -> anyhow::Result<i32> {
    let now = ctx.clock.now();
    let Some(content) = ctx.next_content(db.store(), now)? else {
        bail!("there are no approved stories for the next issue (outreach stories list; outreach stories approve ID)");
    };
    let to_addr = to.map(EmailAddress::parse).transpose().map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let sub = match &to_addr {
        Some(a) => db.store().subscriber_by_email(a.as_str())?,
        None => None,
    };
    let lang = match language {
        Some(l) => lang(l)?,
        None => sub.as_ref().map_or(Language::Dutch, |s| s.language),
    };
    let skeleton = ctx.renderer.skeleton(&content, lang)?;
    let unsub = match &sub {
        Some(s) => ctx.unsubscribe_url(s.id, &s.token_nonce, now),
        None => ctx.preview_unsubscribe_url(),
    };
    let (html, text) = skeleton.personalize(sub.as_ref().and_then(|s| s.name.as_deref()), &unsub);
    if let Some(path) = out {
        std::fs::write(path, &html).with_context(|| format!("Failed to write {}", path.display()))?;
        println!("wrote the HTML of the next issue to {}", path.display());
    }
    if let Some(addr) = &to_addr {
        let message_id = crate::outbox::compose::new_message_id(&ctx.from);
        let raw = build_message(
            ctx,
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
        let mail = NewOutgoing::new(OutboxKind::Preview, message_id, ctx.from.email.to_string(), addr.to_string(), raw);
        db.write(|st| st.enqueue(&mail, now))?;
        println!("preview queued for {addr}");
        deliver_now(ctx, false).await?;
    }
    if out.is_none() && to.is_none() {
        println!("Subject: {}\n", content.subject);
        print!("{text}");
    }
    Ok(0)
}

/// `newsletter status`: every issue with its delivery counts.
fn issues_status(db: &Db, json: bool) -> anyhow::Result<i32> {
    let issues = db.store().issues()?;
    let mut rows = Vec::new();
    for i in issues {
        let counts: std::collections::BTreeMap<String, i64> =
            db.store().delivery_counts(i.id)?.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        rows.push((i, counts));
    }
    if json {
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

/// `newsletter status ISSUE`: what happened per recipient.
fn issue_status(db: &Db, id: IssueId, missed: bool, json: bool) -> anyhow::Result<i32> {
    let i = db.store().issue(id)?.with_context(|| format!("there is no issue {id}"))?;
    let lines = db.store().deliveries_of(id, missed)?;
    if json {
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
        let counts = db.store().delivery_counts(id)?;
        println!("{}", counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "));
    }
    Ok(0)
}
