//! `outreach inbox ...`.

use std::io::Write;

use anyhow::{Context, bail};

use super::common::{printable, printable_line};
use super::{InboxCommand, local_time};
use crate::config::Settings;
use crate::domain::Category;
use crate::domain::state::MessageStatus;
use crate::domain::time::ts;
use crate::store::{Db, MessageFilter};

pub(super) fn inbox(settings: &Settings, cmd: &InboxCommand) -> anyhow::Result<i32> {
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
            if *json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                // Everything here may hold what a sender wrote: printed with controls escaped.
                println!("Message {} {}", m.id, printable_line(m.case_reference.as_deref().unwrap_or("")));
                println!(
                    "From:      {}{}",
                    m.from_name.as_deref().map(|n| format!("{} ", printable_line(n))).unwrap_or_default(),
                    m.from.as_deref().map(|f| format!("<{}>", printable_line(f))).unwrap_or_default()
                );
                println!("Subject:   {}", printable_line(&m.subject));
                println!("Received:  {}", local_time(&ts(m.received_at)));
                println!("Category:  {} (why: {})", m.category, printable_line(&m.reason));
                println!("Language:  {}", m.language.code());
                println!("Status:    {}", m.status);
                println!("Folder:    {}{}", m.folder, if m.moved { "" } else { " (not moved yet)" });
                println!("Reply:     {}", printable_line(&m.reply_note));
                println!();
                println!("{}", printable(m.body.as_deref().unwrap_or_default()));
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
