//! Subscribers: `GET /desk/abonnees` (search by address or name, filter by status, and a
//! form to add someone), `POST /desk/abonnees/nieuw`, `GET /desk/abonnees/ID` (status and
//! consent record) with `POST .../afmelden`, and `GET /desk/abonnees/export.csv` (every
//! subscriber with the consent record, as `outreach subscribers export`).
//!
//! Adding asks how the person agreed, and that answer is required: either they get a mail
//! and confirm it themselves (double opt-in, as `subscribers add` without `--consent`),
//! or they said yes already and the form says how (as `--consent`); both go through
//! `Ctx::subscribe` with the source `desk: ADDRESS`. Removing is `Ctx::unsubscribe`, as
//! `subscribers remove` does it.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{
    DeskAction, DeskPage, ErrorLink, FormState, Gedaan, Opt, field_errors, local_time, options, see_other, text,
    url_encode,
};
use crate::domain::ids::SubscriberId;
use crate::domain::state::SubscriberStatus;
use crate::domain::{EmailAddress, Language};
use crate::newsletter::Subscribed;
use crate::newsletter::subscribers::export_csv;
use crate::store::subscribers::Subscriber;
use crate::web::AppState;

/// The most subscribers a list shows.
const LIST_LIMIT: usize = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/abonnees", get(list))
        .route("/desk/abonnees/nieuw", post(add))
        .route("/desk/abonnees/export.csv", get(export))
        .route("/desk/abonnees/{id}", get(view))
        .route("/desk/abonnees/{id}/afmelden", post(remove))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    zoek: String,
    #[serde(default)]
    status: String,
}

#[derive(Serialize)]
struct Row {
    href: String,
    email: String,
    name: String,
    status: &'static str,
    status_label: String,
    since: String,
}

/// The add form as the page shows it.
#[derive(Serialize, Default)]
struct AddForm {
    email: FormState,
    name: FormState,
    languages: Vec<Opt>,
    /// `mail` (they confirm by mail) or `ja` (they agreed already): required.
    how: FormState,
    how_mail: bool,
    how_yes: bool,
    consent: FormState,
}

#[derive(Serialize)]
struct ListData {
    zoek: String,
    statuses: Vec<Opt>,
    filtered: bool,
    rows: Vec<Row>,
    total_text: String,
    more: bool,
    errors: Vec<ErrorLink>,
    add: AddForm,
}

fn status_label(t: &serde_json::Value, s: SubscriberStatus) -> String {
    text(t, &format!("subscriber_status.{}", s.as_str()))
}

fn languages(t: &serde_json::Value, current: &str) -> Vec<Opt> {
    options([("nl", text(t, "language_nl")), ("en", text(t, "language_en"))].into_iter(), current)
}

fn matches(s: &Subscriber, words: &str) -> bool {
    let hay = format!("{} {}", s.email, s.name.as_deref().unwrap_or("")).to_lowercase();
    words.split_whitespace().all(|w| hay.contains(&w.to_lowercase()))
}

async fn render_list(st: &AppState, page: &DeskPage, q: ListQuery, status: StatusCode, add: AddForm) -> Response {
    let filter = SubscriberStatus::parse(&q.status);
    let words = q.zoek.trim().to_string();
    let search = words.clone();
    let found = st.db.run(move |db| db.store().find_subscribers(filter, |s| matches(s, &search), LIST_LIMIT)).await;
    let (total, found) = match found {
        Ok(x) => x,
        Err(e) => return super::failed(page, st, e),
    };
    let t = page.texts(st);
    let rows = found
        .iter()
        .take(LIST_LIMIT)
        .map(|s| Row {
            href: format!("/desk/abonnees/{}", s.id),
            email: s.email.clone(),
            name: s.name.clone().unwrap_or_default(),
            status: s.status.as_str(),
            status_label: status_label(t, s.status),
            since: local_time(st, s.confirmed_at.unwrap_or(s.created_at)),
        })
        .collect();
    let all_label = text(t, "filter_all");
    let statuses = options(
        std::iter::once(("", all_label)).chain(SubscriberStatus::ALL.iter().map(|s| (s.as_str(), status_label(t, *s)))),
        &q.status,
    );
    let errors = field_errors(&[("abonnee-email", &add.email), ("hoe-mail", &add.how), ("toestemming", &add.consent)]);
    let data = ListData {
        filtered: filter.is_some() || !words.is_empty(),
        zoek: q.zoek,
        statuses,
        total_text: text(t, if total == 1 { "subscribers_found_one" } else { "subscribers_found" })
            .replace("{}", &total.to_string()),
        more: total > LIST_LIMIT,
        rows,
        errors,
        add,
    };
    page.render(st, status, "subscribers", data)
}

async fn list(State(st): State<AppState>, page: DeskPage, Query(q): Query<ListQuery>) -> Response {
    let add = AddForm { languages: languages(page.texts(&st), "nl"), ..Default::default() };
    render_list(&st, &page, q, StatusCode::OK, add).await
}

#[derive(Deserialize, Default)]
struct AddFields {
    #[serde(default)]
    email: String,
    #[serde(default)]
    naam: String,
    #[serde(default)]
    taal: String,
    #[serde(default)]
    hoe: String,
    #[serde(default)]
    toestemming: String,
}

async fn add(State(st): State<AppState>, action: DeskAction<AddFields>) -> Response {
    let DeskAction { page, form: f } = action;
    let t = page.texts(&st);
    let addr = EmailAddress::parse(&f.email);
    let consent = f.toestemming.trim().to_string();
    let error = |bad: bool, key: &str| bad.then(|| text(t, key));
    let mut form = AddForm {
        email: FormState { value: f.email.clone(), error: error(addr.is_err(), "subscriber_email_invalid") },
        name: FormState::new(f.naam.clone()),
        languages: languages(t, &f.taal),
        how: FormState {
            value: f.hoe.clone(),
            error: error(!matches!(f.hoe.as_str(), "mail" | "ja"), "subscriber_how_missing"),
        },
        how_mail: f.hoe == "mail",
        how_yes: f.hoe == "ja",
        consent: FormState {
            value: consent.clone(),
            error: error(f.hoe == "ja" && consent.is_empty(), "subscriber_consent_missing"),
        },
    };
    let Ok(addr) = addr else {
        return render_list(&st, &page, ListQuery::default(), StatusCode::UNPROCESSABLE_ENTITY, form).await;
    };
    if form.how.error.is_some() || form.consent.error.is_some() {
        return render_list(&st, &page, ListQuery::default(), StatusCode::UNPROCESSABLE_ENTITY, form).await;
    }
    let language = if f.taal == "en" { Language::English } else { Language::Dutch };
    let name = Some(f.naam.trim().to_string()).filter(|n| !n.is_empty());
    let source = page.source();
    let ctx = st.ctx.clone();
    let now = ctx.clock.now();
    let how = (f.hoe == "ja").then(|| format!("{source}: {consent}"));
    let r = st
        .db
        .run(move |db| {
            db.write(|tx| {
                ctx.subscribe(tx, &addr, name.as_deref(), language, &source, how.as_deref().map(|c| (c, now)), now)
            })
        })
        .await;
    st.wake.outbox.notify_one();
    let (id, flash) = match r {
        Ok(Subscribed::ConfirmationSent(id)) => (id, "bevestiging"),
        Ok(Subscribed::ConfirmationRecent(id) | Subscribed::ConfirmationLimit(id)) => (id, "bevestiging_wacht"),
        Ok(Subscribed::Activated(id)) => (id, "actief"),
        Ok(Subscribed::AlreadyActive(id)) => (id, "al_actief"),
        Ok(Subscribed::Kept(id, _)) => (id, "ongewijzigd"),
        Ok(Subscribed::Suppressed) => {
            form.email.error = Some(text(t, "subscriber_erased"));
            return render_list(&st, &page, ListQuery::default(), StatusCode::UNPROCESSABLE_ENTITY, form).await;
        }
        Err(e) => return super::failed(&page, &st, e),
    };
    see_other(&format!("/desk/abonnees/{id}?gedaan={flash}"))
}

/// One line of the consent record: what and when.
#[derive(Serialize)]
struct Fact {
    label: String,
    value: String,
}

#[derive(Serialize)]
struct ViewData {
    id: i64,
    email: String,
    name: String,
    status: &'static str,
    status_label: String,
    language: String,
    record: Vec<Fact>,
    person_href: String,
    can_remove: bool,
    flash: Option<String>,
}

fn parse_id(s: &str) -> Option<SubscriberId> {
    super::row_id(s).map(SubscriberId)
}

/// How a source reads: the desk user, the CLI, a mail, a link, an import.
fn source_text(t: &serde_json::Value, s: &str) -> String {
    match s.strip_prefix(crate::newsletter::subscribers::DESK_SOURCE) {
        Some(rest) => text(t, "subscriber_source_desk").replace("{}", rest),
        None => s.to_string(),
    }
}

/// The consent record: how they asked, when they agreed and how, when they left.
fn record(st: &AppState, t: &serde_json::Value, s: &Subscriber) -> Vec<Fact> {
    let mut facts = vec![
        Fact { label: text(t, "record_source"), value: source_text(t, &s.source) },
        Fact { label: text(t, "record_created"), value: local_time(st, s.created_at) },
    ];
    let fact = |key: &str, value: String| Fact { label: text(t, key), value };
    match (&s.consent_source, s.consent_at) {
        (Some(how), Some(at)) => {
            facts.push(fact("record_consent", source_text(t, how)));
            facts.push(fact("record_consent_at", local_time(st, at)));
        }
        _ => facts.push(fact("record_consent", text(t, "record_consent_none"))),
    }
    if let Some(at) = s.unsubscribed_at {
        facts.push(fact("record_unsubscribed", local_time(st, at)));
        facts.push(fact("record_unsubscribe_source", source_text(t, s.unsubscribe_source.as_deref().unwrap_or(""))));
    }
    if let Some(at) = s.bounced_at {
        facts.push(fact("record_bounced", local_time(st, at)));
        facts.push(fact("record_bounce_reason", s.bounce_reason.clone().unwrap_or_default()));
    }
    facts
}

async fn view(State(st): State<AppState>, page: DeskPage, Path(id): Path<String>, Query(q): Query<Gedaan>) -> Response {
    let Some(id) = parse_id(&id) else { return not_found(&st, &page) };
    let s = match st.db.run(move |db| db.store().subscriber(id)).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found(&st, &page),
        Err(e) => return super::failed(&page, &st, e),
    };
    let t = page.texts(&st);
    let data = ViewData {
        id: s.id.get(),
        email: s.email.clone(),
        name: s.name.clone().unwrap_or_default(),
        status: s.status.as_str(),
        status_label: status_label(t, s.status),
        language: text(t, &format!("language_{}", s.language.code())),
        record: record(&st, t, &s),
        person_href: format!("/desk/persoon?adres={}", url_encode(&s.email)),
        can_remove: matches!(s.status, SubscriberStatus::Active | SubscriberStatus::Pending),
        flash: page.flash(&st, &q.gedaan),
    };
    page.render(&st, StatusCode::OK, "subscriber", data)
}

fn not_found(st: &AppState, page: &DeskPage) -> Response {
    page.not_found(st, "subscriber_not_found", "/desk/abonnees", "nav_subscribers")
}

#[derive(Deserialize, Default)]
struct RemoveForm {
    /// Present when the short confirmation mail should go out (the default).
    #[serde(default)]
    mail: Option<String>,
}

async fn remove(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<RemoveForm>) -> Response {
    let DeskAction { page, form } = action;
    let Some(id) = parse_id(&id) else { return not_found(&st, &page) };
    let ctx = st.ctx.clone();
    let source = page.source();
    let confirm = form.mail.is_some();
    let r = st
        .db
        .run(move |db| {
            if db.store().subscriber(id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(db.write(|tx| ctx.unsubscribe(tx, id, &source, confirm, ctx.clock.now()))?))
        })
        .await;
    st.wake.outbox.notify_one();
    match r {
        Ok(Some(true)) => see_other(&format!("/desk/abonnees/{id}?gedaan=afgemeld")),
        Ok(Some(false)) => see_other(&format!("/desk/abonnees/{id}?gedaan=was_afgemeld")),
        Ok(None) => not_found(&st, &page),
        Err(e) => super::failed(&page, &st, e),
    }
}

async fn export(State(st): State<AppState>, page: DeskPage) -> Response {
    let r = st
        .db
        .run(|db| {
            let mut out = Vec::new();
            export_csv(db.store().subscribers(None)?, &mut out)?;
            Ok(out)
        })
        .await;
    match r {
        Ok(csv) => super::download("text/csv; charset=utf-8", "abonnees.csv", csv),
        Err(e) => super::failed(&page, &st, e),
    }
}
