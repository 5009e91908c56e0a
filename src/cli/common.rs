//! What the newsletter commands share: opening the store, parsing a language, and
//! delivering what a command queued.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::domain::Language;
use crate::newsletter::Ctx;
use crate::store::Db;

pub(super) fn open(settings: Settings) -> anyhow::Result<(Ctx, Db)> {
    let settings = Arc::new(settings);
    let ctx = crate::app::context(settings.clone())?;
    let db = Db::open(&settings.database.path)?;
    Ok((ctx, db))
}

pub(super) fn lang(s: &str) -> anyhow::Result<Language> {
    Language::parse(s).with_context(|| format!("unknown language {s:?}; expected nl or en"))
}

/// Delivers queued mail now when no daemon runs (else the daemon does, within
/// seconds), with a progress bar on a terminal (stderr) for the newsletter.
pub(super) async fn deliver_now(ctx: &Ctx, with_newsletter: bool) -> anyhow::Result<()> {
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

pub(super) fn time_or_empty(t: Option<DateTime<Utc>>) -> String {
    t.map(crate::domain::time::ts).unwrap_or_default()
}
