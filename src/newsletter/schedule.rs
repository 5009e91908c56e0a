//! The newsletter schedule: a cron expression in a time zone, fired by
//! tokio-cron-scheduler inside `outreach run`.
//!
//! The scheduler only keeps jobs in memory and does not catch up (MAIL-RULES 3), so the
//! truth is in SQLite: each cron time ("slot") makes at most one issue (`issues.slot` is
//! unique), and on every tick, every housekeeping round (30 s) and at start-up the
//! latest slot is made when it is due and has no issue yet. Slots older than a day, or
//! from before the schedule was first seen, are not caught up.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use croner::Cron;
use tokio::sync::{Notify, mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use super::{Ctx, MadeIssue};
pub use crate::config::{normalize_cron as normalize, parse_cron};
use crate::domain::time::{parse_ts, ts};
use crate::store::{Db, Shared};

/// How far back a missed slot is still made (the daemon was down at the time).
const CATCH_UP: chrono::Duration = chrono::Duration::hours(24);

/// The latest slot at or before `now`.
pub fn latest_slot(cron: &Cron, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // croner keeps the sub-seconds of its start time; a slot is a whole second (it is a key).
    let now = now.trunc_subsecs(0);
    cron.find_previous_occurrence(&now.with_timezone(&tz), true).ok().map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
}

/// The next slot after `now`.
pub fn next_slot(cron: &Cron, tz: chrono_tz::Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let now = now.trunc_subsecs(0);
    cron.find_next_occurrence(&now.with_timezone(&tz), false).ok().map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
}

/// Which slot is due now and not older than the catch-up window or `since`.
pub fn due_slot(cron: &Cron, tz: chrono_tz::Tz, since: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    latest_slot(cron, tz, now).filter(|s| *s >= since && now - *s <= CATCH_UP)
}

/// One round of housekeeping at `now` (the clock's time): make the due slot's issue,
/// start approved issues, apply the retention limits, settle proof deadlines. Returns
/// true when an issue started sending (wake the sender).
pub fn housekeeping(ctx: &Ctx, db: &mut Db, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let n = &ctx.settings.newsletter;
    let mut started = false;
    if !n.schedule.trim().is_empty() {
        let cron = parse_cron(&n.schedule).map_err(|e| anyhow::anyhow!(e))?;
        let tz = n.timezone()?;
        let since = db.write(|st| st.secret("schedule_since", || ts(now), now))?;
        let since = parse_ts(&since).unwrap_or(now);
        // A tick may come a moment before its slot: look a little ahead.
        if let Some(slot) = due_slot(&cron, tz, since, now + chrono::Duration::seconds(2)) {
            let made = db.write(|st| ctx.make_issue(st, Some(slot), now))?;
            match made {
                MadeIssue::Exists(_) => {}
                MadeIssue::Sending(id, count) => {
                    tracing::info!(issue = %id, slot = %slot, deliveries = count, "scheduled newsletter sending");
                    started = true;
                }
                other => tracing::info!(slot = %slot, outcome = ?other, "scheduled newsletter"),
            }
        }
    }
    let r = &ctx.settings.retention;
    let forgotten =
        db.write(|st| st.forget_unconfirmed(now - chrono::Duration::days(i64::from(r.unconfirmed_days.max(1)))))?;
    if forgotten > 0 {
        tracing::info!(forgotten, days = r.unconfirmed_days, "unconfirmed sign-ups forgotten");
    }
    if r.filed_mail_days > 0 {
        let (messages, sent) =
            db.write(|st| st.purge_mail_text(now - chrono::Duration::days(i64::from(r.filed_mail_days))))?;
        if messages + sent > 0 {
            tracing::info!(messages, sent, days = r.filed_mail_days, "old mail text removed from the store");
        }
    }
    let sent_at_deadline = db.write(|st| ctx.settle_proof_deadlines(st, now))?;
    let approved = db.write(|st| ctx.start_approved(st, now))?;
    Ok(started || sent_at_deadline > 0 || !approved.is_empty())
}

/// The scheduler task of `outreach run`: cron ticks plus a housekeeping round every
/// 30 s (every second when a test clock moves time). `wake` tells the sender and the
/// outbox that there is work.
pub async fn run(
    ctx: Ctx,
    db: Shared,
    wake_sender: Arc<Notify>,
    wake_outbox: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (tick_tx, mut tick_rx) = mpsc::unbounded_channel::<()>();
    let mut sched = None;
    let n = &ctx.settings.newsletter;
    if !n.schedule.trim().is_empty() {
        let s = JobScheduler::new().await?;
        let tz = n.timezone()?;
        let job = Job::new_async_tz(normalize(&n.schedule), tz, move |_id, _lock| {
            let tx = tick_tx.clone();
            Box::pin(async move {
                let _ = tx.send(());
            })
        })?;
        s.add(job).await?;
        s.start().await?;
        let cron = parse_cron(&n.schedule).map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(schedule = %n.schedule, timezone = %tz, next = ?next_slot(&cron, tz, ctx.clock.now()), "newsletter schedule active");
        sched = Some(s);
    }
    let round = if ctx.clock.is_system() { Duration::from_secs(30) } else { Duration::from_secs(1) };
    loop {
        let c = ctx.clone();
        let result = db.run(move |db| housekeeping(&c, db, c.clock.now())).await;
        match result {
            Ok(started) => {
                if started {
                    wake_sender.notify_one();
                }
                wake_outbox.notify_one();
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "newsletter housekeeping failed"),
        }
        tokio::select! {
            _ = tick_rx.recv() => tracing::info!("newsletter schedule fired"),
            _ = tokio::time::sleep(round) => {}
            _ = shutdown.changed() => break,
        }
    }
    if let Some(mut s) = sched {
        let _ = s.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use chrono_tz::Europe::Amsterdam;

    fn ams(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Amsterdam.with_ymd_and_hms(y, m, d, h, min, 0).single().unwrap().with_timezone(&Utc)
    }

    #[test]
    fn five_and_six_field_crons_parse_and_nonsense_does_not() {
        assert!(parse_cron("0 10 1 * *").is_ok());
        assert!(parse_cron("0 0 10 1 * *").is_ok());
        assert!(parse_cron("every monday").is_err());
        assert_eq!(normalize("0 10 * * Mon"), "0 0 10 * * Mon");
    }

    #[test]
    fn slots_are_in_the_configured_zone_across_dst_changes() {
        let cron = parse_cron("0 0 9 * * *").unwrap();
        // Winter: 09:00 in Amsterdam is 08:00 UTC; summer: 07:00 UTC.
        let winter = latest_slot(&cron, Amsterdam, ams(2026, 1, 15, 12, 0)).unwrap();
        assert_eq!(winter, Utc.with_ymd_and_hms(2026, 1, 15, 8, 0, 0).unwrap());
        let summer = latest_slot(&cron, Amsterdam, ams(2026, 7, 15, 12, 0)).unwrap();
        assert_eq!(summer, Utc.with_ymd_and_hms(2026, 7, 15, 7, 0, 0).unwrap());
        // The Sundays of the change (29 March and 25 October 2026): still 09:00 local.
        let spring = next_slot(&cron, Amsterdam, ams(2026, 3, 29, 1, 0)).unwrap();
        assert_eq!(spring, Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap());
        let autumn = next_slot(&cron, Amsterdam, ams(2026, 10, 25, 1, 0)).unwrap();
        assert_eq!(autumn, Utc.with_ymd_and_hms(2026, 10, 25, 8, 0, 0).unwrap());
        // 02:30 does not exist on 29 March; the 02:30 job runs once on 25 October.
        let cron = parse_cron("0 30 2 * * *").unwrap();
        let after_spring = next_slot(&cron, Amsterdam, ams(2026, 3, 29, 0, 0)).unwrap();
        assert!(after_spring >= Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap(), "{after_spring}");
        let first = next_slot(&cron, Amsterdam, ams(2026, 10, 25, 0, 0)).unwrap();
        let second = next_slot(&cron, Amsterdam, first).unwrap();
        assert!(second - first >= chrono::Duration::hours(23), "{first} then {second}");
    }

    #[test]
    fn slots_are_whole_seconds_whatever_the_time_of_asking() {
        let cron = parse_cron("*/10 * * * * *").unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 7).unwrap() + chrono::Duration::milliseconds(272);
        assert_eq!(latest_slot(&cron, Amsterdam, now), Some(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap()));
        assert_eq!(next_slot(&cron, Amsterdam, now), Some(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 10).unwrap()));
    }

    #[test]
    fn only_recent_slots_after_the_schedule_began_are_due() {
        let cron = parse_cron("0 0 10 1 * *").unwrap();
        let since = ams(2026, 11, 20, 0, 0);
        assert_eq!(due_slot(&cron, Amsterdam, since, ams(2026, 12, 1, 10, 5)), Some(ams(2026, 12, 1, 10, 0)));
        assert_eq!(due_slot(&cron, Amsterdam, since, ams(2026, 12, 3, 10, 5)), None, "too old to catch up");
        assert_eq!(due_slot(&cron, Amsterdam, ams(2026, 12, 2, 0, 0), ams(2026, 12, 1, 10, 5)), None);
    }
}
