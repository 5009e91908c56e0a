//! The subscriber lifecycle `pending -> active -> unsubscribed | bounced` and the short
//! mails that go with it. The moves themselves are checked by the store
//! ([`crate::store::subscribers::SubscriberMove`]).

use std::time::SystemTime;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Ctx;
use crate::domain::ids::SubscriberId;
use crate::domain::state::{OutboxKind, SubscriberStatus};
use crate::domain::{EmailAddress, Language, clean_text};
use crate::outbox::compose;
use crate::store::subscribers::{NewSubscriber, Subscriber, SubscriberMove};
use crate::store::{NewOutgoing, Store};

/// What asking to subscribe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribed {
    /// New or again pending: a confirmation mail was queued.
    ConfirmationSent(SubscriberId),
    /// Pending, and a confirmation went out less than a day ago: none sent (backscatter cap).
    ConfirmationRecent(SubscriberId),
    /// Already [`CONFIRMATIONS_PER_WINDOW`] confirmations in [`CONFIRMATION_WINDOW_DAYS`]
    /// days: none sent, until the person answers one of them or the coordinator adds them.
    ConfirmationLimit(SubscriberId),
    /// Active at once (an import that states consent).
    Activated(SubscriberId),
    AlreadyActive(SubscriberId),
    /// Unsubscribed or bounced earlier, and an import may not bring them back.
    Kept(SubscriberId, SubscriberStatus),
    /// Erased on request earlier: never mailed again (unless they sign up again by mail).
    Suppressed,
}

/// At most this many confirmation mails go to one subscriber in
/// [`CONFIRMATION_WINDOW_DAYS`] days (besides at most one a day): anyone can ask for the
/// newsletter in someone else's name, so a stranger's request may not become a stream of
/// mail. `subscribers add` by the coordinator is not held to it.
pub const CONFIRMATIONS_PER_WINDOW: u32 = 3;
pub const CONFIRMATION_WINDOW_DAYS: i64 = 30;

/// The bare SHA-256 that earlier versions kept of erased addresses; still checked (see
/// [`super::person`]), no longer written.
pub fn email_hash(email: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(email.trim().to_lowercase().as_bytes()))
}

/// The `source` of a subscriber the coordinator adds on the web desk: this prefix and
/// the desk user's address (`subscribers add` records `cli`).
pub const DESK_SOURCE: &str = "desk: ";

/// Whether a subscriber `source` is the coordinator acting: `subscribers add` (`cli`) or
/// the web desk ([`DESK_SOURCE`] and the desk user's address).
pub fn by_coordinator(source: &str) -> bool {
    source == "cli" || source.starts_with(DESK_SOURCE)
}

/// Whether a confirmation mail to `s` must wait: one went out less than a day ago, or
/// [`CONFIRMATIONS_PER_WINDOW`] went out in the last [`CONFIRMATION_WINDOW_DAYS`] days
/// (counted in the outbox, by what was queued to this subscriber). The coordinator
/// ([`by_coordinator`]) is a person acting and is held only to the first.
fn confirmation_held(
    st: Store<'_>,
    s: &Subscriber,
    source: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Subscribed>> {
    if !by_coordinator(source) {
        let since = now - chrono::Duration::days(CONFIRMATION_WINDOW_DAYS);
        if st.confirmations_queued_since(s.id, since)? >= CONFIRMATIONS_PER_WINDOW {
            return Ok(Some(Subscribed::ConfirmationLimit(s.id)));
        }
    }
    if s.confirm_sent_at.is_some_and(|t| now - t < chrono::Duration::hours(24)) {
        return Ok(Some(Subscribed::ConfirmationRecent(s.id)));
    }
    Ok(None)
}

impl Ctx {
    /// Asks `email` to subscribe (double opt-in) or, with `consent`, subscribes at once.
    #[allow(clippy::too_many_arguments)]
    pub fn subscribe(
        &self,
        st: Store<'_>,
        email: &EmailAddress,
        name: Option<&str>,
        language: Language,
        source: &str,
        consent: Option<(&str, DateTime<Utc>)>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Subscribed> {
        // An address erased on request is never added again by anyone else; the person
        // may sign up again by mail, through double opt-in like anyone.
        let by_themself = consent.is_none() && source.starts_with("mail");
        if !by_themself && self.is_erased(st, email)? {
            return Ok(Subscribed::Suppressed);
        }
        let name = name.map(clean_text).filter(|n| !n.is_empty());
        let existing = st.subscriber_by_email(email.as_str())?;
        let id = match existing {
            Some(s) if s.status == SubscriberStatus::Active => return Ok(Subscribed::AlreadyActive(s.id)),
            // An import never brings back someone who left, nor mails a pending one again.
            Some(s) if source == "import" && (s.status != SubscriberStatus::Pending || consent.is_none()) => {
                return Ok(Subscribed::Kept(s.id, s.status));
            }
            Some(s) if s.status == SubscriberStatus::Pending => {
                if let Some((how, at)) = consent {
                    st.move_subscriber(s.id, SubscriberMove::Activate { consent_source: how }, at)?;
                    return Ok(Subscribed::Activated(s.id));
                }
                if let Some(held) = confirmation_held(st, &s, source, now)? {
                    return Ok(held);
                }
                s.id
            }
            Some(s) => {
                // Unsubscribed or bounced before, and asking again (themselves, or someone
                // in their name: the same caps hold).
                if let Some(held) = confirmation_held(st, &s, source, now)? {
                    return Ok(held);
                }
                st.move_subscriber(s.id, SubscriberMove::AskAgain { source }, now)?;
                s.id
            }
            None => {
                let status = if consent.is_some() { SubscriberStatus::Active } else { SubscriberStatus::Pending };
                let id = st.insert_subscriber(
                    &NewSubscriber {
                        email: email.as_str(),
                        name: name.as_deref(),
                        language,
                        status,
                        source,
                        consent,
                        nonce: &super::tokens::new_nonce(),
                    },
                    now,
                )?;
                if consent.is_some() {
                    return Ok(Subscribed::Activated(id));
                }
                id
            }
        };
        let s = st.subscriber(id)?.context("subscriber vanished")?;
        self.queue_subscriber_mail(st, &s, SubscriberMail::Confirm, now)?;
        st.set_confirm_sent(id, now)?;
        Ok(Subscribed::ConfirmationSent(id))
    }

    /// A pending subscriber confirms (link or reply): active, consent recorded, welcome mail.
    /// Returns false when they were already active (a second click).
    pub fn confirm(
        &self,
        st: Store<'_>,
        id: SubscriberId,
        consent_source: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let Some(s) = st.subscriber(id)? else { anyhow::bail!("no subscriber {id}") };
        if s.status != SubscriberStatus::Pending {
            return Ok(false);
        }
        st.move_subscriber(id, SubscriberMove::Activate { consent_source }, now)?;
        let s = st.subscriber(id)?.context("subscriber vanished")?;
        self.queue_subscriber_mail(st, &s, SubscriberMail::Welcome, now)?;
        tracing::info!(subscriber = %id, via = consent_source.split(':').next().unwrap_or(""), "subscription confirmed");
        Ok(true)
    }

    /// Unsubscribes at once; `confirm_by_mail` queues the short confirmation mail.
    /// Returns false when they were not subscribed (nothing changed, no mail).
    pub fn unsubscribe(
        &self,
        st: Store<'_>,
        id: SubscriberId,
        source: &str,
        confirm_by_mail: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        if !st.move_subscriber(id, SubscriberMove::Unsubscribe { source }, now)? {
            return Ok(false);
        }
        tracing::info!(subscriber = %id, via = source.split(':').next().unwrap_or(""), "unsubscribed");
        if confirm_by_mail && let Some(s) = st.subscriber(id)? {
            self.queue_subscriber_mail(st, &s, SubscriberMail::Unsubscribed, now)?;
        }
        Ok(true)
    }

    /// Queues one of the short mails about a subscription.
    pub fn queue_subscriber_mail(
        &self,
        st: Store<'_>,
        s: &Subscriber,
        kind: SubscriberMail,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let lang = s.language;
        #[derive(Serialize)]
        struct Data<'a> {
            name: &'a str,
            title: &'a str,
            confirm_url: String,
            unsubscribe_url: String,
            archive_url: String,
        }
        let data = Data {
            name: s.name.as_deref().unwrap_or(""),
            title: &self.settings.newsletter.title,
            confirm_url: self.confirm_url(s, now),
            unsubscribe_url: self.unsubscribe_url(s.id, &s.token_nonce, now),
            archive_url: self.archive_url(None),
        };
        let (template, subject) = kind.template_and_subject(lang, &self.settings.newsletter.title);
        let body = self.templates.render(&format!("{template}.{}.txt", lang.code()), &data)?;
        let to = EmailAddress::parse(&s.email).map_err(|e| anyhow::anyhow!(e))?;
        let message_id = compose::new_message_id(&self.from);
        let raw = compose::notice(&self.from, &to, &subject, &message_id, body, SystemTime::from(now))?;
        let mut mail =
            NewOutgoing::new(kind.kind(), message_id.clone(), self.from.email.to_string(), to.to_string(), raw);
        mail.subscriber_id = Some(s.id);
        st.enqueue(&mail, now)?;
        Ok(message_id)
    }
}

/// A spreadsheet opens a cell starting with `=`, `+`, `-` or `@` as a formula: such a
/// value is written with a leading `'` (OWASP, CSV injection).
fn csv_cell(s: String) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s }
}

/// Subscribers with their consent records as CSV that is safe to open in a spreadsheet
/// (`subscribers export`, the desk's download).
pub fn export_csv(rows: Vec<Subscriber>, out: impl std::io::Write) -> anyhow::Result<()> {
    let time = |t: Option<DateTime<Utc>>| t.map(crate::domain::time::ts).unwrap_or_default();
    let mut w = csv::Writer::from_writer(out);
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
                time(s.consent_at),
                crate::domain::time::ts(s.created_at),
                time(s.confirmed_at),
                time(s.unsubscribed_at),
                s.unsubscribe_source.unwrap_or_default(),
                time(s.bounced_at),
            ]
            .map(csv_cell),
        )?;
    }
    w.flush()?;
    Ok(())
}

/// The short mails about a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberMail {
    Confirm,
    Welcome,
    Unsubscribed,
}

impl SubscriberMail {
    fn kind(self) -> OutboxKind {
        match self {
            Self::Confirm => OutboxKind::Confirm,
            Self::Welcome => OutboxKind::Welcome,
            Self::Unsubscribed => OutboxKind::Unsubscribed,
        }
    }

    fn template_and_subject(self, lang: Language, title: &str) -> (&'static str, String) {
        match (self, lang) {
            (Self::Confirm, Language::Dutch) => ("subscribe/confirm", format!("Bevestig je aanmelding: {title}")),
            (Self::Confirm, Language::English) => ("subscribe/confirm", format!("Please confirm: {title}")),
            (Self::Welcome, Language::Dutch) => ("subscribe/welcome", format!("Welkom bij de {title}")),
            (Self::Welcome, Language::English) => ("subscribe/welcome", format!("Welcome to the {title}")),
            (Self::Unsubscribed, Language::Dutch) => ("subscribe/unsubscribed", format!("Je bent afgemeld: {title}")),
            (Self::Unsubscribed, Language::English) => {
                ("subscribe/unsubscribed", format!("You have unsubscribed: {title}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Settings;
    use crate::domain::time::Clock;
    use crate::store::Db;
    use crate::templates::Templates;

    fn setup() -> (tempfile::TempDir, Ctx, Db) {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("t.db")).unwrap();
        let settings = Arc::new(Settings::from_toml(crate::config::tests::MINIMAL, Vec::new()).unwrap());
        let templates = Arc::new(Templates::load(None).unwrap());
        let ctx = Ctx::new(settings, templates, &mut db, Clock::system()).unwrap();
        (dir, ctx, db)
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn days(d: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::days(d)
    }

    #[test]
    fn at_most_one_confirmation_a_day_and_three_in_thirty_days_unless_the_coordinator_adds_them() {
        let (_dir, ctx, mut db) = setup();
        let addr = EmailAddress::parse("victim@example.org").unwrap();
        let ask = |db: &mut Db, source: &str, now| {
            db.write(|st| ctx.subscribe(st, &addr, None, Language::Dutch, source, None, now)).unwrap()
        };
        let by_mail = "mail <x@y>";
        let Subscribed::ConfirmationSent(id) = ask(&mut db, by_mail, t0()) else {
            panic!("first request: a confirmation")
        };
        // A hundred more on the same day: none.
        for i in 1..=100 {
            let now = t0() + chrono::Duration::minutes(i * 10);
            assert_eq!(ask(&mut db, by_mail, now), Subscribed::ConfirmationRecent(id), "request {i} on day 0");
        }
        assert_eq!(ask(&mut db, by_mail, days(1)), Subscribed::ConfirmationSent(id), "day 1");
        assert_eq!(ask(&mut db, by_mail, days(1) + chrono::Duration::hours(23)), Subscribed::ConfirmationRecent(id));
        assert_eq!(ask(&mut db, by_mail, days(2)), Subscribed::ConfirmationSent(id), "day 2: the third");
        assert_eq!(ask(&mut db, by_mail, days(3)), Subscribed::ConfirmationLimit(id), "day 3: three in 30 days");
        // The coordinator adding them is a person acting: only the daily rule holds.
        let h = chrono::Duration::hours;
        assert_eq!(ask(&mut db, "cli", days(3) + h(1)), Subscribed::ConfirmationSent(id), "subscribers add");
        assert_eq!(ask(&mut db, "cli", days(3) + h(2)), Subscribed::ConfirmationRecent(id));
        assert_eq!(ask(&mut db, "desk: c@example.org", days(3) + h(3)), Subscribed::ConfirmationRecent(id), "desk");
        for d in [4, 10, 31] {
            assert_eq!(ask(&mut db, by_mail, days(d)), Subscribed::ConfirmationLimit(id), "day {d}");
        }
        let queued = |db: &Db| db.store().confirmations_queued_since(id, t0() - chrono::Duration::days(1)).unwrap();
        assert_eq!(queued(&db), 4, "four confirmation mails in the outbox");
        // The window rolls: 30 days after the third, only one (the coordinator's) is in it.
        assert_eq!(ask(&mut db, by_mail, days(32) + h(2)), Subscribed::ConfirmationSent(id), "day 32");
        // An import never mails a pending address again.
        assert!(matches!(ask(&mut db, "import", days(40)), Subscribed::Kept(..)));
        // The person answers one of them: active, and asking again sends nothing.
        assert!(db.write(|st| ctx.confirm(st, id, "link: test", days(41))).unwrap());
        assert_eq!(ask(&mut db, by_mail, days(42)), Subscribed::AlreadyActive(id));
        assert_eq!(queued(&db), 5);
    }

    #[test]
    fn someone_who_left_is_held_to_the_same_caps_when_asked_for_again() {
        let (_dir, ctx, mut db) = setup();
        let addr = EmailAddress::parse("left@example.org").unwrap();
        let ask = |db: &mut Db, now| {
            db.write(|st| ctx.subscribe(st, &addr, None, Language::Dutch, "mail <x@y>", None, now)).unwrap()
        };
        let Subscribed::ConfirmationSent(id) = ask(&mut db, t0()) else { panic!("a confirmation") };
        let unsubscribe = |db: &mut Db, now| db.write(|st| ctx.unsubscribe(st, id, "test", false, now)).unwrap();
        assert!(unsubscribe(&mut db, t0() + chrono::Duration::hours(1)));
        // Asked for again within the day: back to pending would mean a second mail today.
        assert_eq!(ask(&mut db, t0() + chrono::Duration::hours(2)), Subscribed::ConfirmationRecent(id));
        let status = |db: &Db| db.store().subscriber(id).unwrap().unwrap().status;
        assert_eq!(status(&db), SubscriberStatus::Unsubscribed, "nothing changed");
        assert_eq!(ask(&mut db, days(1)), Subscribed::ConfirmationSent(id));
        assert!(unsubscribe(&mut db, days(1) + chrono::Duration::hours(1)));
        assert_eq!(ask(&mut db, days(2)), Subscribed::ConfirmationSent(id));
        assert!(unsubscribe(&mut db, days(2) + chrono::Duration::hours(1)));
        assert_eq!(ask(&mut db, days(3)), Subscribed::ConfirmationLimit(id));
        assert_eq!(status(&db), SubscriberStatus::Unsubscribed, "the cap leaves them where they were");
    }

    #[test]
    fn a_cell_a_spreadsheet_would_read_as_a_formula_is_written_as_text() {
        for formula in [
            "=HYPERLINK(\"https://evil.example\",\"klik\")",
            "+31 6 12345678",
            "-2+3",
            "@SUM(A1:A2)",
            "\t=1+1",
            "\r=1+1",
        ] {
            assert_eq!(csv_cell(formula.to_string()), format!("'{formula}"), "{formula:?}");
        }
        for plain in ["ann@example.org", "Ann de Vries", "", "2026-01-01T00:00:00Z", "a=b", "x-y"] {
            assert_eq!(csv_cell(plain.to_string()), plain, "{plain:?}");
        }
        assert!(by_coordinator("cli") && by_coordinator("desk: c@example.org"));
        assert!(!by_coordinator("mail <x@y>") && !by_coordinator("import") && !by_coordinator("desk"));
    }
}
