//! `GET /desk`: what waits (per category and status), the oldest waiting question and
//! how long it waits, and the next newsletter with its state.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;

use super::{DeskPage, age, category_label, local_time, text, url_encode};
use crate::domain::Category;
use crate::domain::state::{ConversationStatus, IssueStatus};
use crate::store::desk::ConversationSummary;
use crate::store::issues::Issue;
use crate::web::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/desk", get(overview))
}

#[derive(Serialize)]
struct OverviewData {
    rows: Vec<WaitRow>,
    total_text: String,
    oldest: Option<Oldest>,
    next_slot_text: String,
    issues: Vec<IssueRow>,
}

/// One category's waiting conversations: `nieuw` and `in behandeling`.
#[derive(Serialize)]
struct WaitRow {
    category: String,
    new: i64,
    open: i64,
    href_new: String,
    href_open: String,
}

#[derive(Serialize)]
struct Oldest {
    href: String,
    case_reference: String,
    subject: String,
    contact: String,
    waits_text: String,
    since: String,
}

#[derive(Serialize)]
struct IssueRow {
    subject: String,
    state: String,
    detail: String,
}

/// What the store says, read in one go.
struct Read {
    counts: Vec<(Category, ConversationStatus, i64)>,
    waiting: Vec<ConversationSummary>,
    issues: Vec<Issue>,
}

async fn overview(State(st): State<AppState>, page: DeskPage) -> Response {
    let r = st
        .db
        .run(|db| {
            let s = db.store();
            let mut issues = Vec::new();
            for status in [IssueStatus::New, IssueStatus::Proof, IssueStatus::Approved, IssueStatus::Sending] {
                issues.extend(s.issues_with_status(status)?);
            }
            Ok(Read { counts: s.waiting_counts()?, waiting: s.waiting_conversations(200)?, issues })
        })
        .await;
    let read = match r {
        Ok(r) => r,
        Err(e) => return super::failed(&page, &st, e),
    };
    let t = page.texts(&st);
    let now = st.ctx.clock.now();
    let mut rows: Vec<WaitRow> = Vec::new();
    for (category, status, n) in &read.counts {
        let label = category_label(t, *category);
        let i = match rows.iter().position(|r| r.category == label) {
            Some(i) => i,
            None => {
                let href = |s: ConversationStatus| {
                    format!("/desk/gesprekken?categorie={}&status={}", category.as_str(), url_encode(s.as_str()))
                };
                rows.push(WaitRow {
                    category: label,
                    new: 0,
                    open: 0,
                    href_new: href(ConversationStatus::New),
                    href_open: href(ConversationStatus::Open),
                });
                rows.len() - 1
            }
        };
        match status {
            ConversationStatus::New => rows[i].new += n,
            _ => rows[i].open += n,
        }
    }
    let oldest = read.waiting.iter().find(|c| matches!(c.category, Category::Question | Category::Followup)).map(|c| {
        let since = c.waiting_since.unwrap_or(c.updated_at);
        Oldest {
            href: format!("/desk/gesprekken/{}", c.id),
            case_reference: c.case_reference.clone(),
            subject: c.subject.clone(),
            contact: c.contact_name.clone().or_else(|| c.contact.clone()).unwrap_or_default(),
            waits_text: text(t, "oldest_waits").replace("{}", &age(t, since, now)),
            since: local_time(&st, since),
        }
    });
    let next_slot_text = super::next_slot_text(&st, t);
    let issues = read
        .issues
        .iter()
        .map(|i| IssueRow {
            subject: i.subject.clone(),
            state: text(t, &format!("issue_status.{}", i.status.as_str())),
            detail: match (i.status, i.proof_deadline) {
                (IssueStatus::Proof, Some(d)) => text(t, "issue_proof_deadline").replace("{}", &local_time(&st, d)),
                _ => String::new(),
            },
        })
        .collect();
    let total: i64 = read.counts.iter().map(|(_, _, n)| n).sum();
    let total_text =
        text(t, if total == 1 { "waiting_total_one" } else { "waiting_total" }).replace("{}", &total.to_string());
    let data = OverviewData { rows, total_text, oldest, next_slot_text, issues };
    page.render(&st, StatusCode::OK, "overview", data)
}
