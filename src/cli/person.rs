//! `outreach person ...`: everything stored about one person, shown or erased.

use std::io::Write;

use clap::Subcommand;

use super::common::open;
use super::local_time;
use crate::config::Settings;
use crate::domain::time::ts;
use crate::domain::{EmailAddress, clean_text};
use crate::newsletter::Ctx;
use crate::newsletter::person::PersonExport;
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum PersonCommand {
    /// Print everything stored about one person: contact, mail with its text,
    /// conversations, subscription with its consent record, newsletter deliveries, mail we
    /// queued for them (without its bytes), stories when they are an ambassador.
    Export {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// Erase one person from every table. Only a keyed hash of the address is kept, so
    /// no import or command adds them again; they can still sign up again themselves.
    Erase { address: String },
}

pub fn person(settings: Settings, cmd: &PersonCommand) -> anyhow::Result<i32> {
    let (ctx, mut db) = open(settings)?;
    match cmd {
        PersonCommand::Export { address, json } => {
            let addr = parse(address)?;
            let export = ctx.person_export(db.store(), &addr)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&export)?);
            } else {
                print_export(&export)?;
            }
            Ok(0)
        }
        PersonCommand::Erase { address } => {
            let addr = parse(address)?;
            erase(&ctx, &mut db, &addr)?;
            Ok(0)
        }
    }
}

fn parse(address: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(address).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Erases the person (one transaction), rewrites the file so nothing of them is left in
/// it or its WAL, and says what was done. Shared with `subscribers remove --erase`.
pub(super) fn erase(ctx: &Ctx, db: &mut Db, addr: &EmailAddress) -> anyhow::Result<()> {
    let (e, emptied) = ctx.erase_person_everywhere(db, addr)?;
    println!(
        "erased {addr}: {} subscription(s), {} message(s) they sent, {} conversation(s), {} contact(s), \
         {} mail(s) to them, {} other text(s) that named them, {} mail(s) to others that named them",
        e.subscribers, e.messages, e.conversations, e.contacts, e.outgoing, e.mentions, e.other_mail
    );
    if e.desk_logins > 0 {
        println!(
            "their web desk logins ({}: links, sessions, a password) were ended; remove the address from \
             `desk.users` too, or it can ask for a new link",
            e.desk_logins
        );
    }
    println!("only a keyed hash of the address is kept: no import or command adds it again");
    for (name, stories) in &e.ambassadors_kept {
        println!(
            "ambassador {name} can no longer send stories from this address; the name and {stories} story(ies) \
             stay (published with consent): `outreach stories reject ID` takes one out"
        );
    }
    if !emptied {
        eprintln!(
            "warning: the database file was rewritten, but its WAL file was in use and could not be emptied now; \
             run this command again when the daemon is idle"
        );
    }
    println!("their mail is still in the mailbox folders: delete it there too");
    Ok(())
}

fn print_export(x: &PersonExport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let r = &x.record;
    if !x.found {
        writeln!(out, "nothing is stored about {}", x.address)?;
    }
    if x.erased {
        writeln!(out, "{} was erased on request: only a keyed hash of the address is kept", x.address)?;
    }
    if !x.found {
        return Ok(());
    }
    writeln!(out, "everything stored about {}:", x.address)?;
    if let Some(c) = &r.contact {
        writeln!(
            out,
            "contact #{}: {} {}, first mail {}, last auto-reply {}",
            c.id,
            c.email,
            clean_text(c.name.as_deref().unwrap_or("(no name)")),
            local_time(&ts(c.first_seen_at)),
            c.last_auto_reply_at.map_or("none".to_string(), |t| local_time(&ts(t)))
        )?;
    }
    writeln!(out, "mail they sent: {}", r.messages.len())?;
    for m in &r.messages {
        writeln!(
            out,
            "  #{} {} {} {}: \"{}\" ({} characters of text; `outreach inbox show {}` shows it)",
            m.id,
            local_time(&ts(m.received_at)),
            m.category,
            m.status,
            clean_text(&m.subject),
            m.body.as_deref().map_or(0, |b| b.chars().count()),
            m.id
        )?;
    }
    for c in &r.conversations {
        writeln!(out, "conversation {} {}: \"{}\"", c.case_reference, c.category, clean_text(&c.subject))?;
    }
    for s in &r.subscribers {
        writeln!(
            out,
            "subscriber #{} {}: {}, asked by {}, consent: {} at {}",
            s.id,
            s.email,
            s.status,
            clean_text(&s.source),
            clean_text(s.consent_source.as_deref().unwrap_or("none")),
            s.consent_at.map_or("-".to_string(), |t| local_time(&ts(t)))
        )?;
    }
    for d in &r.deliveries {
        writeln!(
            out,
            "  newsletter issue {} \"{}\": {}{}",
            d.issue_id,
            clean_text(&d.issue_subject),
            d.status,
            d.detail.as_deref().map(|e| format!(" ({})", clean_text(e))).unwrap_or_default()
        )?;
    }
    for o in &r.outbox {
        writeln!(
            out,
            "mail to them #{} {} {} on {}{}",
            o.id,
            o.kind,
            o.status,
            local_time(&ts(o.created_at)),
            o.last_error.as_deref().map(|e| format!(" ({})", clean_text(e))).unwrap_or_default()
        )?;
    }
    if let Some(a) = &r.ambassador {
        writeln!(out, "ambassador #{} {} ({})", a.id, clean_text(&a.name), clean_text(&a.role))?;
    }
    for s in &r.stories {
        writeln!(out, "story #{} \"{}\": {}", s.id, clean_text(&s.title), s.status)?;
    }
    writeln!(out, "all of it, with the text of each mail: outreach person export {} --json", x.address)?;
    Ok(())
}
