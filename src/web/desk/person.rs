//! One person's data (AVG articles 15 and 17): `GET /desk/persoon?adres=...` says what is
//! stored about an address; `POST /desk/persoon/export` downloads all of it as JSON (as
//! `outreach person export --json`); `POST /desk/persoon/wissen` erases it (as
//! `outreach person erase`, through `Ctx::erase_person_everywhere`) after a confirmation
//! step: the address typed a second time. The address travels in a POST body for the
//! download and the erasure, not in a link.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{DeskAction, DeskPage, ErrorLink, FormState, field_errors, text};
use crate::domain::EmailAddress;
use crate::newsletter::person::{Erased, PersonExport};
use crate::web::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/persoon", get(lookup))
        .route("/desk/persoon/export", post(export))
        .route("/desk/persoon/wissen", post(erase))
}

#[derive(Deserialize, Default)]
struct LookupQuery {
    #[serde(default)]
    adres: String,
}

/// What is stored about them, in counts.
#[derive(Serialize)]
struct Summary {
    address: String,
    found: bool,
    erased: bool,
    lines: Vec<String>,
}

#[derive(Serialize, Default)]
struct PersonData {
    adres: FormState,
    errors: Vec<ErrorLink>,
    summary: Option<Summary>,
    confirm: FormState,
}

fn summary(t: &serde_json::Value, x: &PersonExport) -> Summary {
    let r = &x.record;
    let mut lines = Vec::new();
    let mut count = |n: usize, key: &str| {
        if n > 0 {
            lines.push(text(t, key).replace("{}", &n.to_string()));
        }
    };
    count(usize::from(r.contact.is_some()), "person_contact");
    count(r.messages.len(), "person_messages");
    count(r.conversations.len(), "person_conversations");
    count(r.subscribers.len(), "person_subscriptions");
    count(r.deliveries.len(), "person_deliveries");
    count(r.outbox.len(), "person_outbox");
    count(usize::from(r.ambassador.is_some()), "person_ambassador");
    count(r.stories.len(), "person_stories");
    Summary { address: x.address.clone(), found: x.found, erased: x.erased, lines }
}

/// Looks `adres` up and shows the page: the summary, or the field's error.
async fn show(st: &AppState, page: &DeskPage, adres: &str, confirm: FormState, status: StatusCode) -> Response {
    let t = page.texts(st);
    let mut data = PersonData { adres: FormState::new(adres), confirm, ..Default::default() };
    if !adres.trim().is_empty() {
        match EmailAddress::parse(adres) {
            Err(_) => data.adres.error = Some(text(t, "person_address_invalid")),
            Ok(addr) => {
                let ctx = st.ctx.clone();
                match st.db.run(move |db| ctx.person_export(db.store(), &addr)).await {
                    Ok(x) => data.summary = Some(summary(t, &x)),
                    Err(e) => return super::failed(page, st, e),
                }
            }
        }
    }
    data.errors = field_errors(&[("adres", &data.adres), ("bevestig", &data.confirm)]);
    let status = if data.adres.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { status };
    page.render(st, status, "person", data)
}

async fn lookup(State(st): State<AppState>, page: DeskPage, Query(q): Query<LookupQuery>) -> Response {
    show(&st, &page, &q.adres, FormState::default(), StatusCode::OK).await
}

#[derive(Deserialize, Default)]
struct PersonForm {
    #[serde(default)]
    adres: String,
    #[serde(default)]
    bevestig: String,
}

async fn export(State(st): State<AppState>, action: DeskAction<PersonForm>) -> Response {
    let DeskAction { page, form } = action;
    let Ok(addr) = EmailAddress::parse(&form.adres) else {
        return show(&st, &page, &form.adres, FormState::default(), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let ctx = st.ctx.clone();
    let r = st.db.run(move |db| Ok(serde_json::to_vec_pretty(&ctx.person_export(db.store(), &addr)?)?)).await;
    match r {
        Ok(json) => super::download("application/json", "persoon.json", json),
        Err(e) => super::failed(&page, &st, e),
    }
}

#[derive(Serialize)]
struct ErasedData {
    address: String,
    lines: Vec<String>,
    ambassadors: Vec<String>,
    /// The WAL could not be emptied now: erase again later to clear the last traces.
    again: bool,
}

async fn erase(State(st): State<AppState>, action: DeskAction<PersonForm>) -> Response {
    let DeskAction { page, form } = action;
    let Ok(addr) = EmailAddress::parse(&form.adres) else {
        return show(&st, &page, &form.adres, FormState::default(), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let typed = EmailAddress::parse(&form.bevestig).ok();
    if typed.as_ref() != Some(&addr) {
        let confirm =
            FormState { value: form.bevestig.clone(), error: Some(page.text(&st, "person_confirm_mismatch")) };
        return show(&st, &page, &form.adres, confirm, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    let ctx = st.ctx.clone();
    let who = addr.clone();
    let r = st.db.run(move |db| ctx.erase_person_everywhere(db, &who)).await;
    let (e, emptied): (Erased, bool) = match r {
        Ok(x) => x,
        Err(e) => return super::failed(&page, &st, e),
    };
    let t = page.texts(&st);
    let mut lines = Vec::new();
    for (n, key) in [
        (e.subscribers, "person_subscriptions"),
        (e.messages, "person_messages"),
        (e.conversations, "person_conversations"),
        (e.contacts, "person_contact"),
        (e.outgoing, "person_outbox"),
        (e.mentions + e.other_mail, "person_mentions"),
        (e.desk_logins, "person_desk_logins"),
    ] {
        if n > 0 {
            lines.push(text(t, key).replace("{}", &n.to_string()));
        }
    }
    let ambassadors = e
        .ambassadors_kept
        .iter()
        .map(|(name, n)| text(t, "person_ambassador_kept").replacen("{}", name, 1).replacen("{}", &n.to_string(), 1))
        .collect();
    let data = ErasedData { address: addr.to_string(), lines, ambassadors, again: !emptied };
    page.render(&st, StatusCode::OK, "person_erased", data)
}
