//! Conversations: `GET /desk/gesprekken` (the list, with the CLI's filters and search)
//! and `GET /desk/gesprekken/ID` (one conversation in order: their messages, our
//! auto-reply, answers, notes and what was done), with its actions, each a form that
//! posts to `/desk/gesprekken/ID/<action>`: `antwoord` (answer; "send and close" too),
//! `notitie`, `afgehandeld`, `heropen`, `verplaats`, `samenvoegen`. Every action is
//! recorded with the logged-in user's address.
//!
//! An answer carries the latest event and message the page showed; when someone
//! answered, noted or wrote since, the page comes back with what is new and asks to
//! send anyway. Mail is shown as its stored text, escaped; a mail's own HTML only after
//! [`super::mailhtml::sanitize`] (behind "show the mail with its layout"), never
//! executed; its attachments are listed by name, size and kind (the files stay in the
//! mailbox).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::mailhtml::{self, MailHtml};
use super::{
    DeskAction, DeskPage, FormState, Opt, age, category_label, local_time, options, see_other, status_label, text,
};
use crate::domain::ids::{ConversationId, MessageRowId};
use crate::domain::state::{ConversationStatus, DeskEventKind, OutboxKind};
use crate::domain::{Attachment, Category, Language, human_size};
use crate::inbox::desk::{Desk, MAX_ANSWER_BYTES};
use crate::inbox::triage::own_words;
use crate::store::desk::{ConversationFilter, ConversationView};
use crate::web::AppState;

/// The most conversations a list shows.
const LIST_LIMIT: u32 = 200;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/gesprekken", get(list))
        .route("/desk/gesprekken/{id}", get(view))
        .route("/desk/gesprekken/{id}/antwoord", post(answer))
        .route("/desk/gesprekken/{id}/notitie", post(note))
        .route("/desk/gesprekken/{id}/afgehandeld", post(done))
        .route("/desk/gesprekken/{id}/heropen", post(reopen))
        .route("/desk/gesprekken/{id}/verplaats", post(move_to))
        .route("/desk/gesprekken/{id}/samenvoegen", post(merge))
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    categorie: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    sinds: String,
    #[serde(default)]
    zoek: String,
}

#[derive(Serialize)]
struct ListData {
    categories: Vec<Opt>,
    statuses: Vec<Opt>,
    periods: Vec<Opt>,
    zoek: String,
    rows: Vec<Row>,
    /// The list stopped at its limit.
    more: bool,
    filtered: bool,
}

#[derive(Serialize)]
struct Row {
    href: String,
    case_reference: String,
    subject: String,
    contact: String,
    category: String,
    status: String,
    status_label: String,
    updated: String,
    waits: Option<String>,
}

/// The periods the list can look back: (value, text key, days).
const PERIODS: &[(&str, &str, i64)] =
    &[("", "period_all", 0), ("1", "period_day", 1), ("7", "period_week", 7), ("30", "period_month", 30)];

async fn list(State(st): State<AppState>, page: DeskPage, Query(q): Query<ListQuery>) -> Response {
    let now = st.ctx.clock.now();
    let days = PERIODS.iter().find(|p| p.0 == q.sinds).map_or(0, |p| p.2);
    let filter = ConversationFilter {
        category: Category::parse(&q.categorie),
        status: ConversationStatus::parse(&q.status),
        since: (days > 0).then(|| now - Duration::days(days)),
        search: Some(q.zoek.trim().to_string()).filter(|s| !s.is_empty()),
        limit: Some(LIST_LIMIT + 1),
    };
    let filtered = filter.category.is_some() || filter.status.is_some() || days > 0 || filter.search.is_some();
    let r = st.db.run(move |db| db.store().list_conversations(&filter)).await;
    let mut found = match r {
        Ok(f) => f,
        Err(e) => return super::failed(&page, &st, e),
    };
    let more = found.len() > LIST_LIMIT as usize;
    found.truncate(LIST_LIMIT as usize);
    let t = page.texts(&st);
    let all = text(t, "filter_all");
    let categories = options(
        std::iter::once(("", all.clone())).chain(Category::ALL.iter().map(|c| (c.as_str(), category_label(t, *c)))),
        &q.categorie,
    );
    let statuses = options(
        std::iter::once(("", all)).chain(ConversationStatus::ALL.iter().map(|s| (s.as_str(), status_label(t, *s)))),
        &q.status,
    );
    let periods = options(PERIODS.iter().map(|(v, k, _)| (*v, text(t, k))), &q.sinds);
    let rows = found
        .into_iter()
        .map(|c| Row {
            href: format!("/desk/gesprekken/{}", c.id),
            case_reference: c.case_reference.clone(),
            subject: subject_or_none(t, &c.subject),
            contact: c.contact_name.clone().or(c.contact.clone()).unwrap_or_default(),
            category: category_label(t, c.category),
            status: c.status.as_str().replace(' ', "-"),
            status_label: status_label(t, c.status),
            updated: local_time(&st, c.updated_at),
            waits: c.waiting_since.map(|w| age(t, w, now)),
        })
        .collect();
    let data = ListData { categories, statuses, periods, zoek: q.zoek, rows, more, filtered };
    page.render(&st, StatusCode::OK, "conversations", data)
}

fn subject_or_none(t: &serde_json::Value, s: &str) -> String {
    if s.trim().is_empty() { text(t, "no_subject") } else { s.to_string() }
}

/// One entry of a conversation's history.
#[derive(Serialize, Clone, Default)]
struct Item {
    kind: &'static str,
    heading: String,
    when: String,
    /// What a person wrote (their own words for a mail), shown as text.
    text: String,
    /// A mail's whole text, when it holds more than their own words.
    full: Option<String>,
    /// A mail's own HTML, sanitized (its markup is put in the page as it is).
    layout: Option<MailHtml>,
    /// The language the mail was written in (`lang` of its text).
    lang: Option<&'static str>,
    attachments: Vec<ShownAttachment>,
    detail: String,
    /// New since the page was opened (a conflict).
    new: bool,
}

/// An attachment as the page lists it.
#[derive(Serialize, Clone)]
struct ShownAttachment {
    name: String,
    size: String,
    /// What kind of file it is, in words, when that is a known kind.
    kind: Option<String>,
}

/// The text key of an attachment's kind, by its type (none for the rest: the name's
/// ending says it).
fn file_kind(content_type: &str) -> Option<&'static str> {
    let (main, sub) = content_type.split_once('/').unwrap_or((content_type, ""));
    Some(match (main, sub) {
        (_, "pdf") => "file_kind.pdf",
        ("image", _) => "file_kind.image",
        (_, "msword") | (_, "vnd.openxmlformats-officedocument.wordprocessingml.document") => "file_kind.word",
        (_, "vnd.ms-excel") | (_, "vnd.openxmlformats-officedocument.spreadsheetml.sheet") => "file_kind.excel",
        ("message", "rfc822" | "global") => "file_kind.mail",
        ("text", "calendar") => "file_kind.calendar",
        _ => return None,
    })
}

fn shown_attachments(t: &serde_json::Value, lang: Language, list: &[Attachment]) -> Vec<ShownAttachment> {
    list.iter()
        .map(|a| ShownAttachment {
            name: if a.name.is_empty() { text(t, "attachment_no_name") } else { a.name.clone() },
            // "2,4 kB" stays on one line.
            size: human_size(a.size, lang).replace(' ', "\u{a0}"),
            kind: file_kind(&a.content_type).map(|k| text(t, k)),
        })
        .collect()
}

#[derive(Serialize)]
struct Head {
    id: i64,
    case_reference: String,
    subject: String,
    contact: String,
    category: String,
    status: String,
    status_label: String,
    waits: Option<String>,
    created: String,
    done: bool,
}

#[derive(Serialize)]
struct ViewData {
    c: Head,
    items: Vec<Item>,
    seen_event: i64,
    seen_message: i64,
    flash: Option<String>,
    error: Option<String>,
    /// The field the error is about: the message at the top links to it.
    error_at: Option<&'static str>,
    conflict: Option<Vec<Item>>,
    answer: FormState,
    close: bool,
    note: FormState,
    merge: FormState,
    move_options: Vec<Opt>,
}

/// What the form of an action changes on the page shown again.
#[derive(Default)]
struct Shown {
    flash: Option<String>,
    error: Option<String>,
    answer: FormState,
    close: bool,
    note: FormState,
    merge: FormState,
    /// A conflict: what the page saw.
    seen: Option<(i64, i64)>,
}

/// The latest event and message ids in a conversation.
fn latest(v: &ConversationView) -> (i64, i64) {
    (v.events.iter().map(|e| e.id).max().unwrap_or(0), v.messages.iter().map(|m| m.id.get()).max().unwrap_or(0))
}

fn actor(t: &serde_json::Value, a: &str) -> String {
    match a {
        crate::store::desk::ACTOR_CLI => text(t, "actor_cli"),
        crate::store::desk::ACTOR_MAIL_CLIENT => text(t, "actor_mail_client"),
        other => other.to_string(),
    }
}

/// `"<from> -> <to> ..."` of a move, in words.
fn move_detail(t: &serde_json::Value, detail: &str) -> String {
    let mut parts = detail.split(" -> ");
    let from = parts.next().and_then(Category::parse);
    let to = parts.next().and_then(|s| s.split_whitespace().next()).and_then(Category::parse);
    match (from, to) {
        (Some(f), Some(to)) => {
            text(t, "move_detail").replacen("{}", &category_label(t, f), 1).replacen("{}", &category_label(t, to), 1)
        }
        _ => detail.to_string(),
    }
}

/// Each message's HTML sanitized (`None` without HTML), in the order of `v.messages`.
/// Off the async runtime: a hostile mail may cost tens of milliseconds.
async fn layouts(v: &ConversationView) -> Vec<Option<MailHtml>> {
    let raw: Vec<Option<String>> = v.messages.iter().map(|m| m.body_html.clone()).collect();
    let count = raw.len();
    tokio::task::spawn_blocking(move || raw.iter().map(|h| h.as_deref().map(mailhtml::sanitize)).collect())
        .await
        .unwrap_or_else(|_| vec![None; count])
}

fn view_data(
    st: &AppState,
    page: &DeskPage,
    v: &ConversationView,
    layouts: Vec<Option<MailHtml>>,
    shown: Shown,
) -> ViewData {
    let t = page.texts(st);
    let now = st.ctx.clock.now();
    let s = &v.summary;
    let (seen_event, seen_message) = shown.seen.unwrap_or_else(|| latest(v));
    let mut items: Vec<(DateTime<Utc>, Item)> = Vec::new();
    for (m, html) in v.messages.iter().zip(layouts) {
        let who = match (&m.from_name, &m.from) {
            (Some(n), Some(a)) => format!("{n} <{a}>"),
            (None, Some(a)) => a.clone(),
            (Some(n), None) => n.clone(),
            (None, None) => "?".into(),
        };
        let body = m.body.clone().unwrap_or_default();
        let own = own_words(&body).trim_end().to_string();
        let mut detail = String::new();
        if !m.cc.is_empty() {
            detail = format!("{}: {}", text(t, "cc"), m.cc.join(", "));
        }
        // Only when it holds more words than their own (line breaks do not count).
        let full = (!own.split_whitespace().eq(body.split_whitespace())).then(|| body.trim_end().to_string());
        items.push((
            m.received_at,
            Item {
                kind: "message",
                heading: format!(
                    "{} — {}",
                    text(t, "item_message").replace("{}", &who),
                    subject_or_none(t, &m.subject)
                ),
                when: local_time(st, m.received_at),
                text: if own.is_empty() { body.trim_end().to_string() } else { own },
                full,
                layout: html,
                lang: Some(m.language.code()),
                attachments: shown_attachments(t, page.lang, &m.attachments),
                detail,
                new: m.id.get() > seen_message,
            },
        ));
    }
    for o in v.sent.iter().filter(|o| o.kind == OutboxKind::AutoReply) {
        let body = crate::inbox::parse::parse(&o.raw).map(|p| p.text).unwrap_or_default();
        items.push((
            o.created_at,
            Item {
                kind: "auto_reply",
                heading: text(t, "item_auto_reply").replace("{}", &o.rcpt),
                when: local_time(st, o.created_at),
                text: body.trim_end().to_string(),
                detail: text(t, &format!("delivery.{}", o.status.as_str())),
                ..Default::default()
            },
        ));
    }
    for e in &v.events {
        let who = actor(t, &e.actor);
        let key = format!("item_{}", e.kind.as_str());
        let mut detail = match e.kind {
            DeskEventKind::Answer => {
                e.delivery.map(|d| text(t, &format!("delivery.{}", d.as_str()))).unwrap_or_default()
            }
            DeskEventKind::Move => move_detail(t, &e.detail),
            DeskEventKind::Merge => e.detail.replace(" merged into ", &format!(" {} ", text(t, "merged_into"))),
            _ => String::new(),
        };
        if e.kind == DeskEventKind::Answer && e.detail == "sent and closed" {
            detail = format!("{detail} — {}", text(t, "answer_closed"));
        }
        items.push((
            e.at,
            Item {
                kind: e.kind.as_str(),
                heading: text(t, &key).replace("{}", &who),
                when: local_time(st, e.at),
                text: e.body.clone(),
                detail,
                new: e.id > seen_event,
                ..Default::default()
            },
        ));
    }
    items.sort_by_key(|(at, _)| *at);
    let items: Vec<Item> = items.into_iter().map(|(_, i)| i).collect();
    let conflict = shown.seen.map(|_| items.iter().filter(|i| i.new).cloned().collect());
    let (seen_event, seen_message) = if shown.seen.is_some() { latest(v) } else { (seen_event, seen_message) };
    // A field's error is also said at the top of the page, linking to the field.
    let field_error = [("antwoord", &shown.answer), ("notitie", &shown.note), ("met", &shown.merge)]
        .into_iter()
        .find_map(|(id, f)| f.error.as_deref().map(|e| (id, e)));
    let move_options = options(
        Category::ALL.iter().filter(|c| **c != Category::Followup).map(|c| (c.as_str(), category_label(t, *c))),
        s.category.as_str(),
    );
    ViewData {
        c: Head {
            id: s.id.get(),
            case_reference: s.case_reference.clone(),
            subject: subject_or_none(t, &s.subject),
            contact: s.contact_name.clone().or(s.contact.clone()).unwrap_or_default(),
            category: category_label(t, s.category),
            status: s.status.as_str().replace(' ', "-"),
            status_label: status_label(t, s.status),
            waits: s.waiting_since.map(|w| age(t, w, now)),
            created: local_time(st, s.created_at),
            done: s.status == ConversationStatus::Done,
        },
        items,
        seen_event,
        seen_message,
        error: shown.error.or_else(|| field_error.map(|(_, e)| e.to_string())),
        error_at: field_error.map(|(id, _)| id),
        flash: shown.flash,
        conflict,
        answer: shown.answer,
        close: shown.close,
        note: shown.note,
        merge: shown.merge,
        move_options,
    }
}

/// Reads a conversation, following merges to the one it joined.
enum Loaded {
    View(Box<ConversationView>),
    MergedInto(ConversationId),
    Missing,
}

async fn load(st: &AppState, id: ConversationId) -> anyhow::Result<Loaded> {
    st.db
        .run(move |db| {
            let Some(v) = db.store().conversation_view(id)? else { return Ok(Loaded::Missing) };
            Ok(match v.summary.merged_into {
                Some(into) => Loaded::MergedInto(into),
                None => Loaded::View(Box::new(v)),
            })
        })
        .await
}

fn parse_id(s: &str) -> Option<ConversationId> {
    super::row_id(s).map(ConversationId)
}

fn not_found(st: &AppState, page: &DeskPage) -> Response {
    page.not_found(st, "not_found_text", "/desk/gesprekken", "nav_conversations")
}

/// Shows conversation `id` (status `status`), with `shown` from an action's form.
async fn show(st: &AppState, page: &DeskPage, id: &str, status: StatusCode, shown: Shown) -> Response {
    let Some(id) = parse_id(id) else { return not_found(st, page) };
    match load(st, id).await {
        Ok(Loaded::View(v)) => {
            let layouts = layouts(&v).await;
            page.render(st, status, "conversation", view_data(st, page, &v, layouts, shown))
        }
        Ok(Loaded::MergedInto(into)) => see_other(&format!("/desk/gesprekken/{into}")),
        Ok(Loaded::Missing) => not_found(st, page),
        Err(e) => super::failed(page, st, e),
    }
}

async fn view(
    State(st): State<AppState>,
    page: DeskPage,
    Path(id): Path<String>,
    Query(q): Query<super::Gedaan>,
) -> Response {
    let flash = page.flash(&st, &q.gedaan);
    show(&st, &page, &id, StatusCode::OK, Shown { flash, ..Default::default() }).await
}

/// What is wrong with a written text (an answer, a note): empty (`empty_key`) or too long.
fn text_error(st: &AppState, page: &DeskPage, body: &str, empty_key: &str) -> Option<String> {
    if body.trim().is_empty() {
        Some(page.text(st, empty_key))
    } else if body.len() > MAX_ANSWER_BYTES {
        Some(page.text(st, "answer_too_long"))
    } else {
        None
    }
}

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    sluit: Option<String>,
    #[serde(default)]
    gezien_event: i64,
    #[serde(default)]
    gezien_bericht: i64,
}

enum Outcome {
    Done(ConversationId),
    /// Someone acted since the page was opened: what the page saw.
    Conflict(i64, i64),
    Missing,
    Refused(anyhow::Error),
}

/// The signature of an action: the desk, the store, the conversation as it is now, who
/// acts, and when.
type Action = dyn FnOnce(&Desk<'_>, &mut crate::store::Db, &ConversationView, &str, DateTime<Utc>) -> anyhow::Result<Outcome>
    + Send;

/// Runs a desk action on conversation `id` (as the logged-in user), then goes on as
/// [`after`] says; an error of the action itself is shown on the page.
async fn perform(st: &AppState, page: &DeskPage, id: &str, flash: &str, shown: Shown, f: Box<Action>) -> Response {
    let Some(c) = parse_id(id) else { return not_found(st, page) };
    let ctx = st.ctx.clone();
    let who = page.email().to_string();
    let r = st
        .db
        .run(move |db| {
            let Some(v) = db.store().conversation_view(c)? else { return Ok(Outcome::Missing) };
            if v.messages.is_empty() {
                return Ok(Outcome::Missing);
            }
            let desk = Desk::new(&ctx.settings);
            Ok(f(&desk, db, &v, &who, ctx.clock.now()).unwrap_or_else(Outcome::Refused))
        })
        .await;
    st.wake.outbox.notify_one();
    after(st, page, id, r, flash, shown).await
}

/// The message an action names: the person's latest.
fn latest_message(v: &ConversationView) -> MessageRowId {
    v.messages.iter().max_by_key(|m| (m.received_at, m.id)).map(|m| m.id).expect("a conversation with messages")
}

/// After an action: to the conversation with a word on what was done, or back to the
/// page with what went wrong.
async fn after(
    st: &AppState,
    page: &DeskPage,
    id: &str,
    r: anyhow::Result<Outcome>,
    flash: &str,
    shown: Shown,
) -> Response {
    match r {
        Ok(Outcome::Done(c)) => see_other(&format!("/desk/gesprekken/{c}?gedaan={flash}")),
        Ok(Outcome::Missing) => not_found(st, page),
        Ok(Outcome::Conflict(e, m)) => {
            let shown = Shown { seen: Some((e, m)), ..shown };
            show(st, page, id, StatusCode::CONFLICT, shown).await
        }
        Ok(Outcome::Refused(e)) => {
            let error = super::refusal(page.texts(st), &e);
            show(st, page, id, StatusCode::UNPROCESSABLE_ENTITY, Shown { error: Some(error), ..shown }).await
        }
        Err(e) => super::failed(page, st, e),
    }
}

async fn answer(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<AnswerForm>) -> Response {
    let DeskAction { page, form: f } = action;
    let close = f.sluit.is_some();
    let body = f.body.replace("\r\n", "\n");
    let error = text_error(&st, &page, &body, "answer_empty");
    let shown = Shown { answer: FormState { value: body.clone(), error: error.clone() }, close, ..Default::default() };
    if error.is_some() {
        return show(&st, &page, &id, StatusCode::UNPROCESSABLE_ENTITY, shown).await;
    }
    let seen = (f.gezien_event, f.gezien_bericht);
    let flash = if close { "antwoord_sluit" } else { "antwoord" };
    let act = move |desk: &Desk<'_>, db: &mut crate::store::Db, v: &ConversationView, who: &str, now| {
        if latest(v) != seen {
            return Ok(Outcome::Conflict(seen.0, seen.1));
        }
        Ok(Outcome::Done(desk.reply(db, latest_message(v), &body, close, who, now)?.conversation))
    };
    perform(&st, &page, &id, flash, shown, Box::new(act)).await
}

#[derive(Deserialize)]
struct NoteForm {
    #[serde(default)]
    body: String,
}

async fn note(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<NoteForm>) -> Response {
    let DeskAction { page, form } = action;
    let body = form.body.replace("\r\n", "\n");
    let error = text_error(&st, &page, &body, "note_empty");
    let shown = Shown { note: FormState { value: body.clone(), error: error.clone() }, ..Default::default() };
    if error.is_some() {
        return show(&st, &page, &id, StatusCode::UNPROCESSABLE_ENTITY, shown).await;
    }
    let act = move |desk: &Desk<'_>, db: &mut crate::store::Db, v: &ConversationView, who: &str, now| {
        Ok(Outcome::Done(desk.note(db, latest_message(v), &body, who, now)?.id))
    };
    perform(&st, &page, &id, "notitie", shown, Box::new(act)).await
}

async fn done(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<super::Nothing>) -> Response {
    set_status(st, id, action.page, true).await
}

async fn reopen(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<super::Nothing>) -> Response {
    set_status(st, id, action.page, false).await
}

async fn set_status(st: AppState, id: String, page: DeskPage, done: bool) -> Response {
    let act = move |desk: &Desk<'_>, db: &mut crate::store::Db, v: &ConversationView, who: &str, now| {
        let m = latest_message(v);
        let s = if done { desk.done(db, m, who, now)? } else { desk.reopen(db, m, who, now)? };
        Ok(Outcome::Done(s.id))
    };
    let flash = if done { "afgehandeld" } else { "heropend" };
    perform(&st, &page, &id, flash, Shown::default(), Box::new(act)).await
}

#[derive(Deserialize)]
struct MoveForm {
    #[serde(default)]
    categorie: String,
}

async fn move_to(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<MoveForm>) -> Response {
    let DeskAction { page, form } = action;
    let Some(category) = Category::parse(&form.categorie) else {
        let error = page.text(&st, "move_unknown");
        return show(
            &st,
            &page,
            &id,
            StatusCode::UNPROCESSABLE_ENTITY,
            Shown { error: Some(error), ..Default::default() },
        )
        .await;
    };
    let act = move |desk: &Desk<'_>, db: &mut crate::store::Db, v: &ConversationView, who: &str, now| {
        Ok(Outcome::Done(desk.move_to(db, latest_message(v), category, who, now)?.id))
    };
    perform(&st, &page, &id, "verplaatst", Shown::default(), Box::new(act)).await
}

#[derive(Deserialize)]
struct MergeForm {
    #[serde(default)]
    met: String,
}

/// `MAO-12`, `[MAO-12]` or `12`.
fn parse_reference(s: &str) -> Option<ConversationId> {
    let digits: String = s
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches(|c: char| c.is_ascii_alphabetic() || c == '-' || c.is_whitespace())
        .to_string();
    parse_id(&digits)
}

async fn merge(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<MergeForm>) -> Response {
    let DeskAction { page, form } = action;
    let Some(c) = parse_id(&id) else { return not_found(&st, &page) };
    let value = form.met.trim().to_string();
    let field_error = |key: &str| Shown {
        merge: FormState { value: value.clone(), error: Some(page.text(&st, key)) },
        ..Default::default()
    };
    let Some(into) = parse_reference(&value) else {
        return show(&st, &page, &id, StatusCode::UNPROCESSABLE_ENTITY, field_error("merge_invalid")).await;
    };
    if into == c {
        return show(&st, &page, &id, StatusCode::UNPROCESSABLE_ENTITY, field_error("merge_self")).await;
    }
    let target = st.db.run(move |db| db.store().conversation_view(into)).await;
    let target = match target {
        Ok(Some(v)) if !v.messages.is_empty() => latest_message(&v),
        Ok(_) => return show(&st, &page, &id, StatusCode::UNPROCESSABLE_ENTITY, field_error("merge_missing")).await,
        Err(e) => return super::failed(&page, &st, e),
    };
    let act = move |desk: &Desk<'_>, db: &mut crate::store::Db, v: &ConversationView, who: &str, now| {
        Ok(Outcome::Done(desk.merge(db, latest_message(v), target, who, now)?.id))
    };
    let shown = Shown { merge: FormState { value, error: None }, ..Default::default() };
    perform(&st, &page, &id, "samengevoegd", shown, Box::new(act)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_reference_is_read_in_every_way_people_write_it() {
        for s in ["MAO-12", "[MAO-12]", "12", " mao-12 ", "MAO 12"] {
            assert_eq!(parse_reference(s), Some(ConversationId(12)), "{s}");
        }
        for s in ["", "MAO-", "abc", "0", "12abc"] {
            assert_eq!(parse_reference(s), None, "{s}");
        }
    }
}
