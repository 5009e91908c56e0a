//! What the commands share: opening the store, parsing a language, delivering what a
//! command queued, and printing text that came in by mail.

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

/// Text from a mail (or a story) made safe to print on a terminal: every control
/// character (C0, DEL, C1: an ANSI escape sequence starts with one) is shown escaped,
/// like `\u{1b}`, so a sender cannot clear the screen, move the cursor or hide text.
/// Newlines and tabs stay (a CR only as part of CRLF).
pub(super) fn printable(s: &str) -> String {
    escape_controls(s, true)
}

/// The same for one cell of a one-line table: newlines and tabs are escaped too.
pub(super) fn printable_line(s: &str) -> String {
    escape_controls(s, false)
}

fn escape_controls(s: &str, keep_lines: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let kept = keep_lines && (c == '\n' || c == '\t' || (c == '\r' && chars.peek() == Some(&'\n')));
        if c.is_control() && !kept {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_mail_are_printed_escaped_lines_and_tabs_stay() {
        let body = "Hallo\x1b[2J\x1b[1;1H nep\r\nregel 2\tkolom\x07\x08\x7f\u{9b}31m\rover\u{0}";
        assert_eq!(
            printable(body),
            "Hallo\\u{1b}[2J\\u{1b}[1;1H nep\r\nregel 2\tkolom\\u{7}\\u{8}\\u{7f}\\u{9b}31m\\u{d}over\\u{0}"
        );
        assert!(!printable(body).chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'));
        assert_eq!(printable_line("Re: a\nb\tc\x1b]0;titel\x07"), "Re: a\\u{a}b\\u{9}c\\u{1b}]0;titel\\u{7}");
        assert_eq!(printable("Gewone tekst: één, ü, 😀"), "Gewone tekst: één, ü, 😀");
    }
}
