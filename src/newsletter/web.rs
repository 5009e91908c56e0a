//! The web endpoints of `outreach run` (axum), at `[web] listen`, linked as `[web] base_url`:
//!
//! - `GET /confirm/TOKEN`: confirms a subscription (double opt-in) and says so;
//! - `GET /unsubscribe/TOKEN`: a page with one button; `POST /unsubscribe/TOKEN`:
//!   unsubscribes at once (RFC 8058 one-click: no cookies, no login, any body);
//! - `GET /archive`, `GET /archive/ID`: sent issues, without personal data.
//!
//! A forged, truncated or unknown token gets the same clear page (404), an expired
//! confirmation link its own (410); never a 500 for bad input. Pages are Dutch, or
//! English for subscribers who wrote in English.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::Ctx;
use super::tokens::{self, Purpose, TokenError};
use crate::domain::Language;
use crate::outbox::{SharedDb, blocking};
use crate::store::news;

#[derive(Clone)]
struct AppState {
    ctx: Ctx,
    db: SharedDb,
    wake_outbox: Arc<Notify>,
}

#[derive(Serialize, Default)]
struct Page {
    lang: &'static str,
    title: String,
    paragraphs: Vec<String>,
    form_action: Option<String>,
    button: Option<String>,
    issues: Vec<IssueLink>,
}

#[derive(Serialize)]
struct IssueLink {
    url: String,
    subject: String,
    date: String,
}

fn t(lang: Language, nl: &str, en: &str) -> String {
    match lang {
        Language::Dutch => nl.to_string(),
        Language::English => en.to_string(),
    }
}

impl AppState {
    fn render(&self, status: StatusCode, lang: Language, mut page: Page) -> Response {
        page.lang = lang.code();
        match self.ctx.renderer.page(&page) {
            Ok(html) => (status, html_headers(), html).into_response(),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "web page template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Er ging iets mis. Something went wrong.").into_response()
            }
        }
    }

    fn bad_link(&self, e: TokenError) -> Response {
        let (status, title, text) = match e {
            TokenError::Expired => (
                StatusCode::GONE,
                "Deze link is verlopen",
                "Deze link is te oud. Mail ons gerust opnieuw, dan sturen we een nieuwe. (This link has expired.)",
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "Deze link werkt niet",
                "We kennen deze link niet. Misschien is hij niet helemaal gekopieerd. Kopieer de hele link uit de mail, of mail ons. (This link is not valid.)",
            ),
        };
        self.render(
            status,
            Language::Dutch,
            Page { title: title.into(), paragraphs: vec![text.into()], ..Default::default() },
        )
    }
}

fn html_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src https:; form-action 'self'",
            ),
        ),
        // Tokens are in the URL: never send it on.
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

enum Done {
    Confirmed(Language),
    AlreadyActive(Language),
    NotPending(Language),
    Unsubscribed(Language),
    AlreadyOut(Language),
    UnsubscribePage(Language),
    Bad(TokenError),
}

async fn confirm(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let ctx = st.ctx.clone();
    let r = blocking(&st.db, move |db| {
        let sub =
            match ctx.subscriber_by_token(db.conn(), &token, Purpose::Confirm, Some(tokens::CONFIRM_VALID_HOURS))? {
                Ok(s) => s,
                Err(e) => return Ok(Done::Bad(e)),
            };
        let lang = Language::parse(&sub.language).unwrap_or(Language::Dutch);
        let source = format!("link: confirmation link clicked ({})", crate::store::ts(Utc::now()));
        match sub.status.as_str() {
            "pending" => {
                db.write(|c| ctx.confirm(c, sub.id, &source, Utc::now()))?;
                Ok(Done::Confirmed(lang))
            }
            "active" => Ok(Done::AlreadyActive(lang)),
            _ => Ok(Done::NotPending(lang)),
        }
    })
    .await;
    st.wake_outbox.notify_one();
    respond(&st, r)
}

async fn unsubscribe_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let ctx = st.ctx.clone();
    let r = blocking(&st.db, move |db| {
        Ok(match ctx.subscriber_by_token(db.conn(), &token, Purpose::Unsubscribe, None)? {
            Ok(s) if s.status == "active" || s.status == "pending" => {
                Done::UnsubscribePage(Language::parse(&s.language).unwrap_or(Language::Dutch))
            }
            Ok(s) => Done::AlreadyOut(Language::parse(&s.language).unwrap_or(Language::Dutch)),
            Err(e) => Done::Bad(e),
        })
    })
    .await;
    respond(&st, r)
}

async fn unsubscribe_post(State(st): State<AppState>, Path(token): Path<String>, body: String) -> Response {
    let ctx = st.ctx.clone();
    let one_click = body.contains("List-Unsubscribe=One-Click");
    let r = blocking(&st.db, move |db| {
        let sub = match ctx.subscriber_by_token(db.conn(), &token, Purpose::Unsubscribe, None)? {
            Ok(s) => s,
            Err(e) => return Ok(Done::Bad(e)),
        };
        let lang = Language::parse(&sub.language).unwrap_or(Language::Dutch);
        let source = if one_click { "link: List-Unsubscribe one-click POST" } else { "link: unsubscribe page" };
        if db.write(|c| ctx.unsubscribe(c, sub.id, source, true, Utc::now()))? {
            Ok(Done::Unsubscribed(lang))
        } else {
            Ok(Done::AlreadyOut(lang))
        }
    })
    .await;
    st.wake_outbox.notify_one();
    respond(&st, r)
}

fn respond(st: &AppState, r: anyhow::Result<Done>) -> Response {
    let page = |lang, title: String, text: String| {
        st.render(StatusCode::OK, lang, Page { title, paragraphs: vec![text], ..Default::default() })
    };
    match r {
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "web request failed");
            st.render(
                StatusCode::SERVICE_UNAVAILABLE,
                Language::Dutch,
                Page {
                    title: "Even geen verbinding".into(),
                    paragraphs: vec!["Het lukte nu niet. Probeer het over een paar minuten opnieuw. (Please try again in a few minutes.)".into()],
                    ..Default::default()
                },
            )
        }
        Ok(Done::Bad(e)) => st.bad_link(e),
        Ok(Done::Confirmed(l)) => page(
            l,
            t(l, "Je aanmelding is bevestigd", "Your subscription is confirmed"),
            t(
                l,
                "Dank je wel! Je krijgt vanaf nu de nieuwsbrief. We sturen je ook een korte welkomstmail.",
                "Thank you! From now on you will receive the newsletter. We are also sending you a short welcome e-mail.",
            ),
        ),
        Ok(Done::AlreadyActive(l)) => page(
            l,
            t(l, "Je was al aangemeld", "You were already subscribed"),
            t(
                l,
                "Je aanmelding was al bevestigd. Je hoeft niets meer te doen.",
                "Your subscription was already confirmed. There is nothing more to do.",
            ),
        ),
        Ok(Done::NotPending(l)) => page(
            l,
            t(l, "Deze link werkt niet meer", "This link no longer works"),
            t(
                l,
                "Je bent afgemeld. Wil je de nieuwsbrief weer? Mail ons, dan sturen we een nieuwe link.",
                "You have unsubscribed. Want the newsletter again? E-mail us and we will send a new link.",
            ),
        ),
        Ok(Done::Unsubscribed(l)) => page(
            l,
            t(l, "Je bent afgemeld", "You have unsubscribed"),
            t(
                l,
                "Je krijgt de nieuwsbrief niet meer. We sturen je nog één korte mail als bevestiging.",
                "You will not receive the newsletter any more. We will send one short e-mail to confirm.",
            ),
        ),
        Ok(Done::AlreadyOut(l)) => page(
            l,
            t(l, "Je bent al afgemeld", "You have already unsubscribed"),
            t(
                l,
                "Je krijgt de nieuwsbrief niet meer. Je hoeft niets te doen.",
                "You no longer receive the newsletter. There is nothing more to do.",
            ),
        ),
        Ok(Done::UnsubscribePage(l)) => st.render(
            StatusCode::OK,
            l,
            Page {
                title: t(l, "Afmelden voor de nieuwsbrief", "Unsubscribe from the newsletter"),
                paragraphs: vec![t(
                    l,
                    "Wil je de nieuwsbrief niet meer ontvangen? Klik dan op de knop.",
                    "Don't want to receive the newsletter any more? Then click the button.",
                )],
                form_action: Some(String::new()),
                button: Some(t(l, "Afmelden", "Unsubscribe")),
                ..Default::default()
            },
        ),
    }
}

async fn archive_index(State(st): State<AppState>) -> Response {
    let ctx = st.ctx.clone();
    let r = blocking(&st.db, move |db| {
        let tz = ctx.settings.newsletter.timezone()?;
        Ok(news::list_issues(db.conn())?
            .into_iter()
            .filter(|i| i.status == "sent" || i.status == "sending")
            .map(|i| IssueLink {
                url: ctx.archive_url(Some(i.id)),
                date: i
                    .started_at
                    .as_deref()
                    .and_then(crate::store::parse_ts)
                    .map(|t| t.with_timezone(&tz).format("%d-%m-%Y").to_string())
                    .unwrap_or_default(),
                subject: i.subject,
            })
            .collect::<Vec<_>>())
    })
    .await;
    match r {
        Ok(issues) => {
            let text = if issues.is_empty() {
                "Er is nog geen nieuwsbrief verschenen."
            } else {
                "Alle nummers van de nieuwsbrief:"
            };
            st.render(
                StatusCode::OK,
                Language::Dutch,
                Page {
                    title: st.ctx.settings.newsletter.title.clone(),
                    paragraphs: vec![text.into()],
                    issues,
                    ..Default::default()
                },
            )
        }
        Err(e) => respond(&st, Err(e)),
    }
}

async fn archive_issue(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else { return not_found(&st) };
    let r = blocking(&st.db, move |db| news::archive(db.conn(), id)).await;
    match r {
        Ok(Some((_, html))) => (StatusCode::OK, html_headers(), html).into_response(),
        Ok(None) => not_found(&st),
        Err(e) => respond(&st, Err(e)),
    }
}

fn not_found(st: &AppState) -> Response {
    st.render(
        StatusCode::NOT_FOUND,
        Language::Dutch,
        Page {
            title: "Niet gevonden".into(),
            paragraphs: vec!["Deze pagina bestaat niet. (Not found.)".into()],
            ..Default::default()
        },
    )
}

async fn health() -> &'static str {
    "ok"
}

/// The router, for `outreach run` and for tests.
pub fn router(ctx: Ctx, db: SharedDb, wake_outbox: Arc<Notify>) -> Router {
    let state = AppState { ctx, db, wake_outbox };
    Router::new()
        .route("/confirm/{token}", get(confirm).post(confirm))
        .route("/unsubscribe/{token}", get(unsubscribe_page).post(unsubscribe_post))
        .route("/archive", get(archive_index))
        .route("/archive/{id}", get(archive_issue))
        .route("/", get(archive_index))
        .route("/health", get(health))
        .fallback(|State(st): State<AppState>| async move { not_found(&st) })
        .with_state(state)
}

/// Serves the endpoints on `listener` until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Ctx,
    db: SharedDb,
    wake_outbox: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(listen = %ctx.settings.web.listen(), base_url = %ctx.base_url(), "web endpoints listening");
    axum::serve(listener, router(ctx, db, wake_outbox))
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}
