//! `outreach ambassadors ...` and `outreach stories ...`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::common::{open, printable, printable_line, time_or_empty};
use super::local_time;
use crate::config::Settings;
use crate::domain::EmailAddress;
use crate::domain::ids::StoryId;
use crate::domain::state::StoryStatus;
use crate::newsletter::stories;
use crate::store::desk::ACTOR_CLI;

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
                        printable_line(&s.ambassador).chars().take(24).collect::<String>(),
                        printable_line(&s.title)
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
                // A story may have come by mail: printed with controls escaped.
                println!("Story {}: {}", s.id, printable_line(&s.title));
                println!(
                    "By:      {}{}",
                    printable_line(&s.ambassador),
                    if s.role.is_empty() { String::new() } else { format!(", {}", printable_line(&s.role)) }
                );
                println!("Status:  {}", s.status);
                println!(
                    "Consent: {}",
                    s.consent_source.as_deref().map_or("none yet".to_string(), |c| format!(
                        "{} ({})",
                        printable_line(c),
                        local_time(&time_or_empty(s.consent_at))
                    ))
                );
                println!();
                println!("{}", printable(&s.body_md));
            }
            Ok(0)
        }
        StoriesCommand::Approve { id, consent } => {
            db.write(|st| stories::approve(st, *id, consent.as_deref(), ACTOR_CLI, now))?;
            println!("story {id} approved: it goes into the next issue");
            Ok(0)
        }
        StoriesCommand::Reject { id } => {
            db.write(|st| stories::reject(st, *id, ACTOR_CLI, now))?;
            println!("story {id} rejected");
            Ok(0)
        }
    }
}
