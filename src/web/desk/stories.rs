//! Stories: `GET /desk/verhalen` (by state: to decide on, waiting for the ambassador's
//! consent, approved, published, rejected), `GET /desk/verhalen/ID` (one story as the
//! newsletter shows its text) with `POST .../goedkeuren` and `.../afwijzen`, and
//! `GET|POST /desk/verhalen/nieuw` (a form; "Voorbeeld" shows the text as the newsletter
//! will, "Opslaan" adds it). Approving, rejecting and adding are
//! `newsletter::stories::{approve, reject, add}`, as `outreach stories` does them, with
//! the desk user recorded.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{DeskAction, DeskPage, ErrorLink, FormState, Gedaan, field_errors, local_time, see_other, text};
use crate::domain::ids::StoryId;
use crate::domain::state::StoryStatus;
use crate::newsletter::render::markdown_to_html;
use crate::newsletter::stories::{self, Problem, StoryFile};
use crate::store::stories::Story;
use crate::web::AppState;

/// The most stories a finished group (published, rejected) lists: the newest.
const FINISHED_LIMIT: usize = 50;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/verhalen", get(list))
        .route("/desk/verhalen/nieuw", get(new_form).post(new_post))
        .route("/desk/verhalen/{id}", get(view))
        .route("/desk/verhalen/{id}/goedkeuren", post(approve))
        .route("/desk/verhalen/{id}/afwijzen", post(reject))
}

/// Which stories belong to a group of the list.
type Belongs = fn(&Story) -> bool;

/// The groups of the list: (key, which stories, newest first).
const GROUPS: &[(&str, Belongs, bool)] = &[
    ("beslissen", |s| s.status == StoryStatus::Submitted && s.consent_at.is_some(), false),
    ("toestemming", |s| s.status == StoryStatus::Submitted && s.consent_at.is_none(), false),
    ("goedgekeurd", |s| s.status == StoryStatus::Approved, false),
    ("gepubliceerd", |s| s.status == StoryStatus::Published, true),
    ("afgewezen", |s| s.status == StoryStatus::Rejected, true),
];

#[derive(Serialize)]
struct Group {
    key: &'static str,
    /// Not `title`: inside a page, that is the page's title (the layout's parameter).
    heading: String,
    help: String,
    count: usize,
    rows: Vec<Row>,
    /// More stories than shown.
    more: bool,
}

#[derive(Serialize)]
struct Row {
    href: String,
    headline: String,
    byline: String,
    detail: String,
}

#[derive(Serialize)]
struct ListData {
    flash: Option<String>,
    groups: Vec<Group>,
}

async fn list(State(st): State<AppState>, page: DeskPage, Query(q): Query<Gedaan>) -> Response {
    let all = match st.db.run(|db| db.store().stories(None)).await {
        Ok(s) => s,
        Err(e) => return super::failed(&page, &st, e),
    };
    let t = page.texts(&st);
    let groups = GROUPS
        .iter()
        .map(|(key, belongs, newest_first)| {
            let mut rows: Vec<&Story> = all.iter().filter(|s| belongs(s)).collect();
            if *newest_first {
                rows.reverse();
            }
            let count = rows.len();
            let more = *newest_first && count > FINISHED_LIMIT;
            rows.truncate(if *newest_first { FINISHED_LIMIT } else { usize::MAX });
            Group {
                key,
                heading: text(t, &format!("story_group.{key}.title")),
                help: text(t, &format!("story_group.{key}.help")),
                count,
                rows: rows.into_iter().map(|s| row(&st, t, s)).collect(),
                more,
            }
        })
        .collect();
    page.render(&st, StatusCode::OK, "stories", ListData { flash: page.flash(&st, &q.gedaan), groups })
}

fn row(st: &AppState, t: &serde_json::Value, s: &Story) -> Row {
    let detail = match (s.status, s.published_at, s.issue_id) {
        (StoryStatus::Published, Some(at), _) => text(t, "story_published_on").replace("{}", &local_time(st, at)),
        (StoryStatus::Approved, _, Some(issue)) => text(t, "story_in_issue").replace("{}", &issue.to_string()),
        _ => text(t, "story_added_on").replace("{}", &local_time(st, s.created_at)),
    };
    Row {
        href: format!("/desk/verhalen/{}", s.id),
        headline: s.title.clone(),
        byline: byline(&s.ambassador, &s.role),
        detail,
    }
}

/// "Name, role" (the role only when there is one).
fn byline(ambassador: &str, role: &str) -> String {
    if role.trim().is_empty() { ambassador.to_string() } else { format!("{ambassador}, {role}") }
}

/// Who did it, in words: the CLI, or a desk user's address.
fn actor(t: &serde_json::Value, by: &str) -> String {
    if by == crate::store::desk::ACTOR_CLI { text(t, "actor_cli") } else { by.to_string() }
}

/// Where a story came from, in words.
fn source(t: &serde_json::Value, source: &str) -> String {
    match source.strip_prefix(crate::newsletter::subscribers::DESK_SOURCE) {
        _ if source == "mail" => text(t, "story_source_mail"),
        Some(who) => text(t, "story_source_desk").replace("{}", who),
        None => text(t, "story_source_file").replace("{}", source),
    }
}

#[derive(Serialize)]
struct Head {
    id: i64,
    title: String,
    byline: String,
    status: &'static str,
    status_label: String,
    consent: String,
    source: String,
    created: String,
    decided: Option<String>,
    photo_url: Option<String>,
    photo_alt: Option<String>,
    /// The text as the newsletter shows it: Markdown rendered and sanitised.
    html: String,
}

#[derive(Serialize)]
struct ViewData {
    s: Head,
    flash: Option<String>,
    errors: Vec<ErrorLink>,
    can_approve: bool,
    needs_consent: bool,
    can_reject: bool,
    consent: FormState,
}

fn view_data(st: &AppState, page: &DeskPage, s: &Story, consent: FormState, flash: Option<String>) -> ViewData {
    let t = page.texts(st);
    let consent_text = match (&s.consent_source, s.consent_at) {
        (Some(how), Some(at)) => format!("{} ({})", how, local_time(st, at)),
        _ => text(t, "story_consent_none"),
    };
    let decided = match s.status {
        StoryStatus::Approved | StoryStatus::Published => {
            s.approved_at.map(|at| (at, &s.approved_by, "story_approved_by"))
        }
        StoryStatus::Rejected => s.rejected_at.map(|at| (at, &s.rejected_by, "story_rejected_by")),
        StoryStatus::Submitted => None,
    }
    .map(|(at, by, key)| {
        let who = by.as_deref().map_or_else(|| "?".to_string(), |b| actor(t, b));
        text(t, key).replacen("{}", &local_time(st, at), 1).replacen("{}", &who, 1)
    });
    // The consent field is shown only while there is no consent: any other error is
    // about the action, and says so at the top only.
    let field = if s.consent_at.is_none() { "toestemming" } else { "" };
    let errors = field_errors(&[(field, &consent)]);
    ViewData {
        s: Head {
            id: s.id.get(),
            title: s.title.clone(),
            byline: byline(&s.ambassador, &s.role),
            status: s.status.as_str(),
            status_label: text(t, &format!("story_status.{}", s.status.as_str())),
            consent: consent_text,
            source: source(t, &s.source),
            created: local_time(st, s.created_at),
            decided,
            photo_url: s.photo_url.clone(),
            photo_alt: s.photo_alt.clone(),
            html: markdown_to_html(&s.body_md),
        },
        flash,
        errors,
        can_approve: matches!(s.status, StoryStatus::Submitted | StoryStatus::Rejected),
        needs_consent: s.consent_at.is_none(),
        can_reject: s.status != StoryStatus::Published && s.status != StoryStatus::Rejected,
        consent,
    }
}

fn parse_id(s: &str) -> Option<StoryId> {
    super::row_id(s).map(StoryId)
}

fn not_found(st: &AppState, page: &DeskPage) -> Response {
    page.not_found(st, "story_not_found", "/desk/verhalen", "nav_stories")
}

/// Shows story `id` with the approval form as given.
async fn show(
    st: &AppState,
    page: &DeskPage,
    id: &str,
    status: StatusCode,
    consent: FormState,
    flash: Option<String>,
) -> Response {
    let Some(id) = parse_id(id) else { return not_found(st, page) };
    match st.db.run(move |db| db.store().story(id)).await {
        Ok(Some(s)) => page.render(st, status, "story", view_data(st, page, &s, consent, flash)),
        Ok(None) => not_found(st, page),
        Err(e) => super::failed(page, st, e),
    }
}

async fn view(State(st): State<AppState>, page: DeskPage, Path(id): Path<String>, Query(q): Query<Gedaan>) -> Response {
    let flash = page.flash(&st, &q.gedaan);
    show(&st, &page, &id, StatusCode::OK, FormState::default(), flash).await
}

#[derive(Deserialize)]
struct ApproveForm {
    #[serde(default)]
    toestemming: String,
}

/// Runs a story action as the desk user; back to the story with a word on it, or with
/// what went wrong (a missing consent tied to its field).
async fn act(
    st: &AppState,
    page: &DeskPage,
    id: &str,
    flash: &str,
    consent: FormState,
    f: impl FnOnce(crate::store::Store<'_>, StoryId, &str, chrono::DateTime<chrono::Utc>) -> anyhow::Result<()>
    + Send
    + 'static,
) -> Response {
    let Some(sid) = parse_id(id) else { return not_found(st, page) };
    let who = page.email().to_string();
    let now = st.ctx.clock.now();
    let r = st
        .db
        .run(move |db| {
            if db.store().story(sid)?.is_none() {
                return Ok(None);
            }
            Ok(Some(db.write(|tx| f(tx, sid, &who, now))))
        })
        .await;
    let why = match r {
        Ok(Some(Ok(()))) => return see_other(&format!("/desk/verhalen/{sid}?gedaan={flash}")),
        Ok(None) => return not_found(st, page),
        Err(e) => return super::failed(page, st, e),
        Ok(Some(Err(e))) if e.downcast_ref::<stories::NoConsent>().is_some() => page.text(st, "story_consent_missing"),
        Ok(Some(Err(e))) => super::refusal(page.texts(st), &e),
    };
    let consent = FormState { error: Some(why), ..consent };
    show(st, page, id, StatusCode::UNPROCESSABLE_ENTITY, consent, None).await
}

async fn approve(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<ApproveForm>) -> Response {
    let DeskAction { page, form } = action;
    let how = form.toestemming.trim().to_string();
    let consent = FormState::new(how.clone());
    let desk = page.source();
    act(&st, &page, &id, "verhaal_goedgekeurd", consent, move |tx, sid, who, now| {
        let consent = (!how.is_empty()).then(|| format!("{how} ({desk})"));
        stories::approve(tx, sid, consent.as_deref(), who, now)
    })
    .await
}

async fn reject(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<super::Nothing>) -> Response {
    let page = action.page;
    act(&st, &page, &id, "verhaal_afgewezen", FormState::default(), stories::reject).await
}

/// The fields of the new-story form.
#[derive(Deserialize, Default)]
struct NewForm {
    #[serde(default)]
    titel: String,
    #[serde(default)]
    ambassadeur: String,
    #[serde(default)]
    rol: String,
    #[serde(default)]
    tekst: String,
    #[serde(default)]
    foto: String,
    #[serde(default)]
    foto_alt: String,
    /// `voorbeeld` (show the preview) or `opslaan` (add it).
    #[serde(default)]
    actie: String,
}

#[derive(Serialize)]
struct Preview {
    headline: String,
    byline: String,
    html: String,
    photo_url: Option<String>,
    photo_alt: Option<String>,
}

#[derive(Serialize, Default)]
struct NewData {
    errors: Vec<ErrorLink>,
    preview: Option<Preview>,
    titel: FormState,
    ambassadeur: FormState,
    rol: FormState,
    tekst: FormState,
    foto: FormState,
    foto_alt: FormState,
}

async fn new_form(State(st): State<AppState>, page: DeskPage) -> Response {
    page.render(&st, StatusCode::OK, "story_new", NewData::default())
}

impl NewForm {
    fn story(&self) -> StoryFile {
        let opt = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        StoryFile {
            title: self.titel.trim().to_string(),
            ambassador: self.ambassadeur.trim().to_string(),
            role: self.rol.trim().to_string(),
            photo_url: opt(&self.foto),
            photo_alt: opt(&self.foto_alt),
            email: None,
            body: self.tekst.replace("\r\n", "\n").trim().to_string(),
        }
    }
}

async fn new_post(State(st): State<AppState>, action: DeskAction<NewForm>) -> Response {
    let DeskAction { page, form } = action;
    let story = form.story();
    let problems = story.problems();
    let t = page.texts(&st);
    let field = |value: &str, problem: Option<Problem>, key: &str| FormState {
        value: value.to_string(),
        error: problem.filter(|p| problems.contains(p)).map(|_| text(t, key)),
    };
    let mut data = NewData {
        titel: field(&form.titel, Some(Problem::Missing("title")), "story_title_missing"),
        ambassadeur: field(&form.ambassadeur, Some(Problem::Missing("ambassador")), "story_ambassador_missing"),
        rol: field(&form.rol, None, ""),
        tekst: field(&form.tekst, Some(Problem::NoText), "story_text_missing"),
        foto: field(&form.foto, Some(Problem::PhotoUrl), "story_photo_invalid"),
        foto_alt: field(&form.foto_alt, None, ""),
        ..Default::default()
    };
    data.errors = field_errors(&[
        ("titel", &data.titel),
        ("ambassadeur", &data.ambassadeur),
        ("tekst", &data.tekst),
        ("foto", &data.foto),
    ]);
    if !problems.is_empty() {
        return page.render(&st, StatusCode::UNPROCESSABLE_ENTITY, "story_new", data);
    }
    if form.actie != "opslaan" {
        data.preview = Some(Preview {
            headline: story.title.clone(),
            byline: byline(&story.ambassador, &story.role),
            html: markdown_to_html(&story.body),
            photo_url: story.photo_url.clone(),
            photo_alt: story.photo_alt.clone(),
        });
        return page.render(&st, StatusCode::OK, "story_new", data);
    }
    let source = page.source();
    let now = st.ctx.clock.now();
    match st.db.run(move |db| db.write(|tx| stories::add(tx, &story, &source, now))).await {
        Ok(id) => see_other(&format!("/desk/verhalen/{id}?gedaan=verhaal_toegevoegd")),
        Err(e) => super::failed(&page, &st, e),
    }
}
