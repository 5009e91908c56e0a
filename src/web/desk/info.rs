//! `GET /desk/toegankelijkheid` (the accessibility statement), `GET /desk/desk.css`
//! (the one style sheet) and `POST /desk/taal` (the language switch, kept in a cookie).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{DeskPost, Visit, safe_return, see_other};
use crate::web::AppState;

/// The style sheet's path below `templates/`.
const STYLE: &str = "web/desk/desk.css";

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/toegankelijkheid", get(statement))
        .route("/desk/desk.css", get(style))
        .route("/desk/taal", post(language))
}

#[derive(Serialize)]
struct Statement {
    /// Where to report a problem.
    contact: String,
}

/// Readable without logging in: the statement is public.
async fn statement(State(st): State<AppState>, visit: Visit) -> Response {
    let contact = st.ctx.contact_address();
    visit.render(&st, StatusCode::OK, "accessibility", Statement { contact })
}

async fn style(State(st): State<AppState>) -> Response {
    let css = st.ctx.templates.asset(STYLE).unwrap_or_default().to_string();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("max-age=300")),
        ],
        css,
    )
        .into_response()
}

#[derive(Deserialize)]
struct LanguageForm {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    terug: String,
}

/// Keeps the language a year; back to the page the switch was on.
async fn language(State(_st): State<AppState>, post: DeskPost<LanguageForm>) -> Response {
    let lang = if post.form.lang == "en" { "en" } else { "nl" };
    let mut res = see_other(&safe_return(&post.form.terug));
    post.visit.set_cookie(&mut res, super::LANG_COOKIE, lang, Some(365 * 24 * 3600));
    res
}
