//! The newsletter: `GET /desk/nieuwsbrief` (the next issue as it will look: a proof that
//! waits, else the approved stories as the next issue would take them; and every issue),
//! `GET /desk/nieuwsbrief/ID` (one issue: its state, per-recipient status, preview) with
//! `POST .../goedkeuren` and `.../annuleren` (`newsletter approve` / `cancel`) and
//! `.../opnieuw` (`newsletter resend-missed`), all by the desk user.
//!
//! The HTML version is shown in a sandboxed frame from `GET /desk/nieuwsbrief/voorbeeld`
//! (the next issue) or `/desk/nieuwsbrief/ID/voorbeeld`: served with a policy of its own
//! (`sandbox`, no script, only its own inline style and https images, framed only by the
//! desk), so the mail's HTML runs nothing and reaches nothing of the desk. The text
//! version is shown on the page, escaped. `?taal=en` shows the English version.
//!
//! An approval only records the decision (as a proof answer does); the newsletter task
//! starts the send within seconds, and the page says so.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{DeskAction, DeskPage, ErrorLink, local_time, see_other, text};
use crate::domain::Language;
use crate::domain::ids::IssueId;
use crate::domain::state::{DeliveryStatus, IssueStatus};
use crate::newsletter::render::IssueContent;
use crate::store::deliveries::DeliveryLine;
use crate::store::issues::Issue;
use crate::web::AppState;

/// The most recipients the list of those who did not get an issue shows.
const MISSED_LIMIT: usize = 500;

/// The policy of the preview: a sandbox (no script, no forms, no same origin), its own
/// inline style, images over https only, framed by the desk only.
const PREVIEW_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https:; form-action 'none'; frame-ancestors 'self'; base-uri 'none'";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/nieuwsbrief", get(overview))
        .route("/desk/nieuwsbrief/voorbeeld", get(next_preview))
        .route("/desk/nieuwsbrief/{id}", get(view))
        .route("/desk/nieuwsbrief/{id}/voorbeeld", get(issue_preview))
        .route("/desk/nieuwsbrief/{id}/goedkeuren", post(approve))
        .route("/desk/nieuwsbrief/{id}/annuleren", post(cancel))
        .route("/desk/nieuwsbrief/{id}/opnieuw", post(resend))
}

#[derive(Deserialize, Default)]
struct PageQuery {
    #[serde(default)]
    taal: String,
    #[serde(default)]
    gedaan: String,
}

impl PageQuery {
    fn language(&self) -> Language {
        if self.taal == "en" { Language::English } else { Language::Dutch }
    }
}

/// The issue as it will look: the frame's address and the text version.
#[derive(Serialize)]
struct Look {
    subject: String,
    frame: String,
    text: String,
    /// This page in the other language, and that language's name.
    other_href: String,
    other_label: String,
    language_label: String,
}

/// The preview of `content` in `lang`: `(html, text)` as a reader who is not a
/// subscriber would get it.
fn render(st: &AppState, content: &IssueContent, lang: Language) -> anyhow::Result<(String, String)> {
    let skeleton = st.ctx.renderer.skeleton(content, lang)?;
    Ok(skeleton.personalize(None, &st.ctx.preview_unsubscribe_url()))
}

fn look(st: &AppState, page: &DeskPage, content: &IssueContent, frame: &str, lang: Language) -> anyhow::Result<Look> {
    let (_, text_version) = render(st, content, lang)?;
    let path = page.here.split('?').next().unwrap_or("/desk/nieuwsbrief");
    let (other_href, other_key, this_key) = match lang {
        Language::Dutch => (format!("{path}?taal=en"), "preview_in_english", "preview_language_nl"),
        Language::English => (path.to_string(), "preview_in_dutch", "preview_language_en"),
    };
    let query = if lang == Language::English { "?taal=en" } else { "" };
    Ok(Look {
        subject: content.subject.clone(),
        frame: format!("{frame}{query}"),
        text: text_version,
        other_href,
        other_label: page.text(st, other_key),
        language_label: page.text(st, this_key),
    })
}

#[derive(Serialize)]
struct IssueRow {
    href: String,
    subject: String,
    status: &'static str,
    status_label: String,
    when: String,
    counts: String,
}

#[derive(Serialize)]
struct OverviewData {
    flash: Option<String>,
    /// The proof that waits for an answer, if any.
    proof: Option<ProofData>,
    /// Else the next issue as the approved stories make it.
    next: Option<Look>,
    next_slot_text: String,
    issues: Vec<IssueRow>,
}

#[derive(Serialize)]
struct ProofData {
    id: i64,
    deadline: String,
    look: Look,
}

/// What the overview reads from the store.
struct Read {
    issues: Vec<(Issue, Vec<(DeliveryStatus, i64)>)>,
    /// The oldest proof that waits, with its content.
    proof: Option<(Issue, IssueContent)>,
    next: Option<IssueContent>,
}

/// The counts of an issue's deliveries, in words ("3 verstuurd, 1 mislukt").
fn counts_text(t: &serde_json::Value, counts: &[(DeliveryStatus, i64)]) -> String {
    counts
        .iter()
        .map(|(s, n)| format!("{n} {}", text(t, &format!("delivery_status.{}", s.as_str()))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn issue_row(st: &AppState, t: &serde_json::Value, i: &Issue, counts: &[(DeliveryStatus, i64)]) -> IssueRow {
    let subject = if i.subject.is_empty() { text(t, "issue_no_subject") } else { i.subject.clone() };
    IssueRow {
        href: format!("/desk/nieuwsbrief/{}", i.id),
        subject,
        status: i.status.as_str(),
        status_label: text(t, &format!("issue_status.{}", i.status.as_str())),
        when: local_time(st, i.started_at.or(i.slot).unwrap_or(i.created_at)),
        counts: counts_text(t, counts),
    }
}

async fn overview(State(st): State<AppState>, page: DeskPage, Query(q): Query<PageQuery>) -> Response {
    let ctx = st.ctx.clone();
    let r = st
        .db
        .run(move |db| {
            let s = db.store();
            let mut issues = Vec::new();
            for i in s.issues()?.into_iter().rev() {
                let counts = s.delivery_counts(i.id)?;
                issues.push((i, counts));
            }
            let proof = match issues.iter().rev().find(|(i, _)| i.status == IssueStatus::Proof) {
                Some((i, _)) => Some((i.clone(), ctx.issue_content(s, i)?)),
                None => None,
            };
            let next = if proof.is_none() { ctx.next_content(s, ctx.clock.now())? } else { None };
            Ok(Read { issues, proof, next })
        })
        .await;
    let read = match r {
        Ok(r) => r,
        Err(e) => return super::failed(&page, &st, e),
    };
    let t = page.texts(&st);
    let lang = q.language();
    let looked = (|| -> anyhow::Result<_> {
        let proof = match &read.proof {
            Some((i, c)) => Some(ProofData {
                id: i.id.get(),
                deadline: i.proof_deadline.map(|d| local_time(&st, d)).unwrap_or_default(),
                look: look(&st, &page, c, &format!("/desk/nieuwsbrief/{}/voorbeeld", i.id), lang)?,
            }),
            None => None,
        };
        let next = match &read.next {
            Some(c) => Some(look(&st, &page, c, "/desk/nieuwsbrief/voorbeeld", lang)?),
            None => None,
        };
        Ok((proof, next))
    })();
    let (proof, next) = match looked {
        Ok(x) => x,
        Err(e) => return super::failed(&page, &st, e),
    };
    let next_slot_text = super::next_slot_text(&st, t);
    let issues = read.issues.iter().map(|(i, c)| issue_row(&st, t, i, c)).collect();
    let data = OverviewData { flash: page.flash(&st, &q.gedaan), proof, next, next_slot_text, issues };
    page.render(&st, StatusCode::OK, "newsletter", data)
}

/// One recipient who did not get the issue (yet).
#[derive(Serialize)]
struct Missed {
    email: String,
    status: String,
    detail: String,
}

#[derive(Serialize)]
struct Count {
    label: String,
    n: i64,
}

#[derive(Serialize)]
struct IssueData {
    i: IssueRow,
    id: i64,
    flash: Option<String>,
    errors: Vec<ErrorLink>,
    approved: Option<String>,
    deadline: Option<String>,
    can_approve: bool,
    can_cancel: bool,
    counts: Vec<Count>,
    total: i64,
    missed: Vec<Missed>,
    missed_more: bool,
    /// Failed or retrying deliveries exist: "send to those who missed it" can do something.
    can_resend: bool,
    look: Option<Look>,
}

struct IssueRead {
    issue: Issue,
    counts: Vec<(DeliveryStatus, i64)>,
    missed: Vec<DeliveryLine>,
    content: Option<IssueContent>,
}

fn parse_id(s: &str) -> Option<IssueId> {
    super::row_id(s).map(IssueId)
}

async fn read_issue(st: &AppState, id: IssueId) -> anyhow::Result<Option<IssueRead>> {
    let ctx = st.ctx.clone();
    st.db
        .run(move |db| {
            let s = db.store();
            let Some(issue) = s.issue(id)? else { return Ok(None) };
            let counts = s.delivery_counts(id)?;
            let missed = s.deliveries_of(id, true)?;
            let content = if s.issue_story_ids(id)?.is_empty() { None } else { Some(ctx.issue_content(s, &issue)?) };
            Ok(Some(IssueRead { issue, counts, missed, content }))
        })
        .await
}

fn not_found(st: &AppState, page: &DeskPage) -> Response {
    page.not_found(st, "issue_not_found", "/desk/nieuwsbrief", "nav_newsletter")
}

/// Shows issue `id`; `error` is what went wrong with an action on it.
async fn show(
    st: &AppState,
    page: &DeskPage,
    id: &str,
    q: &PageQuery,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let Some(id) = parse_id(id) else { return not_found(st, page) };
    let read = match read_issue(st, id).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(st, page),
        Err(e) => return super::failed(page, st, e),
    };
    let t = page.texts(st);
    let i = &read.issue;
    let look = match &read.content {
        Some(c) => match look(st, page, c, &format!("/desk/nieuwsbrief/{id}/voorbeeld"), q.language()) {
            Ok(l) => Some(l),
            Err(e) => return super::failed(page, st, e),
        },
        None => None,
    };
    let missed_more = read.missed.len() > MISSED_LIMIT;
    let can_resend = read.missed.iter().any(|d| matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Retry));
    let missed = read
        .missed
        .iter()
        .take(MISSED_LIMIT)
        .map(|d| Missed {
            email: d.email.clone(),
            status: text(t, &format!("delivery_status.{}", d.status.as_str())),
            detail: match d.status {
                DeliveryStatus::Retry => text(t, "delivery_attempts")
                    .replace("{}", &d.attempts.to_string())
                    .replace("{detail}", d.detail.as_deref().unwrap_or("")),
                _ => d.detail.clone().unwrap_or_default(),
            },
        })
        .collect();
    let mut by_state = read.counts.clone();
    by_state.sort_by_key(|(s, _)| DeliveryStatus::ALL.iter().position(|x| x == s));
    let counts: Vec<Count> = by_state
        .iter()
        .map(|(s, n)| Count { label: text(t, &format!("delivery_status.{}", s.as_str())), n: *n })
        .collect();
    let approved = i.approved_at.map(|at| {
        // `desk: ADDRESS` reads as the address; the CLI's and a proof answer's as they are.
        let by = i.approved_by.as_deref().unwrap_or_default();
        let by = by.strip_prefix(crate::newsletter::subscribers::DESK_SOURCE).unwrap_or(by);
        text(t, "issue_approved_by").replacen("{}", &local_time(st, at), 1).replacen("{}", by, 1)
    });
    let data = IssueData {
        i: issue_row(st, t, i, &read.counts),
        id: id.get(),
        flash: page.flash(st, &q.gedaan),
        errors: error.map(|e| vec![ErrorLink { field: String::new(), text: e }]).unwrap_or_default(),
        approved,
        deadline: i.proof_deadline.filter(|_| i.status == IssueStatus::Proof).map(|d| local_time(st, d)),
        can_approve: i.status == IssueStatus::Proof,
        can_cancel: matches!(
            i.status,
            IssueStatus::Proof | IssueStatus::Approved | IssueStatus::Sending | IssueStatus::New
        ),
        total: counts.iter().map(|c| c.n).sum(),
        counts,
        missed,
        missed_more,
        can_resend,
        look,
    };
    page.render(st, status, "issue", data)
}

async fn view(
    State(st): State<AppState>,
    page: DeskPage,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    show(&st, &page, &id, &q, StatusCode::OK, None).await
}

/// The preview of `content` with its own policy (see the module documentation).
fn framed(st: &AppState, page: &DeskPage, content: &IssueContent, lang: Language) -> Response {
    let html = match render(st, content, lang) {
        Ok((html, _)) => html,
        Err(e) => return super::failed(page, st, e),
    };
    let mut res = (StatusCode::OK, super::super::html_headers(), html).into_response();
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PREVIEW_CSP));
    res
}

async fn next_preview(State(st): State<AppState>, page: DeskPage, Query(q): Query<PageQuery>) -> Response {
    let ctx = st.ctx.clone();
    match st.db.run(move |db| ctx.next_content(db.store(), ctx.clock.now())).await {
        Ok(Some(c)) => framed(&st, &page, &c, q.language()),
        Ok(None) => page.not_found(&st, "news_no_stories", "/desk/nieuwsbrief", "nav_newsletter"),
        Err(e) => super::failed(&page, &st, e),
    }
}

async fn issue_preview(
    State(st): State<AppState>,
    page: DeskPage,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(id) = parse_id(&id) else { return not_found(&st, &page) };
    match read_issue(&st, id).await {
        Ok(Some(IssueRead { content: Some(c), .. })) => framed(&st, &page, &c, q.language()),
        Ok(_) => not_found(&st, &page),
        Err(e) => super::failed(&page, &st, e),
    }
}

/// Runs an action on issue `id` as the desk user; back to the issue with a word on what
/// was done (the key `f` returns), or with what went wrong.
async fn act(
    st: &AppState,
    page: &DeskPage,
    id: &str,
    f: impl FnOnce(&crate::newsletter::Ctx, crate::store::Store<'_>, IssueId, &str) -> anyhow::Result<&'static str>
    + Send
    + 'static,
) -> Response {
    let Some(iid) = parse_id(id) else { return not_found(st, page) };
    let ctx = st.ctx.clone();
    let by = page.source();
    let r = st
        .db
        .run(move |db| {
            if db.store().issue(iid)?.is_none() {
                return Ok(None);
            }
            Ok(Some(db.write(|tx| f(&ctx, tx, iid, &by))))
        })
        .await;
    // A proof queues a mail; an approval or a send again has copies for the sender.
    st.wake.outbox.notify_one();
    st.wake.sender.notify_one();
    let q = PageQuery::default();
    match r {
        Ok(Some(Ok(flash))) => see_other(&format!("/desk/nieuwsbrief/{iid}?gedaan={flash}")),
        Ok(None) => not_found(st, page),
        Ok(Some(Err(e))) => {
            let why = super::refusal(page.texts(st), &e);
            show(st, page, id, &q, StatusCode::UNPROCESSABLE_ENTITY, Some(why)).await
        }
        Err(e) => super::failed(page, st, e),
    }
}

async fn approve(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<super::Nothing>) -> Response {
    let now = st.ctx.clock.now();
    act(&st, &action.page, &id, move |ctx, tx, iid, by| ctx.approve(tx, iid, by, now).map(|()| "proef_goedgekeurd"))
        .await
}

async fn cancel(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<super::Nothing>) -> Response {
    let now = st.ctx.clock.now();
    act(&st, &action.page, &id, move |ctx, tx, iid, by| ctx.cancel(tx, iid, by, now).map(|()| "geannuleerd")).await
}

async fn resend(State(st): State<AppState>, Path(id): Path<String>, action: DeskAction<super::Nothing>) -> Response {
    let now = st.ctx.clock.now();
    act(&st, &action.page, &id, move |_, tx, iid, by| {
        Ok(if tx.requeue_missed(iid, by, now)? > 0 { "opnieuw" } else { "opnieuw_niemand" })
    })
    .await
}
