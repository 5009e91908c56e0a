//! The web endpoints of `outreach run` (axum), at `[web] listen`, linked as `[web] base_url`:
//!
//! - `GET /confirm/TOKEN`: a page with one button, changing nothing (mail security
//!   gateways open every link in a mail, so a GET never gives consent); `POST
//!   /confirm/TOKEN` (the button): confirms the subscription (double opt-in);
//! - `GET /unsubscribe/TOKEN`: a page with one button; `POST /unsubscribe/TOKEN`:
//!   unsubscribes at once (RFC 8058 one-click: no cookies, no login, any body);
//! - `GET /archive`, `GET /archive/ID`: sent issues, without personal data;
//! - `/desk/...`: the coordinator's web desk ([`desk`]), behind a login.
//!
//! A forged, truncated or unknown token gets the same clear page (404), an expired
//! confirmation link its own (410); never a 500 for bad input. A link whose subscriber
//! changed status since it was sent (confirmed, left) no longer verifies and gets the
//! same page as a forged one. Pages are templates (`templates/web/`), Dutch, or English
//! for subscribers who wrote in English. Every response carries the headers of
//! [`security_headers`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::sync::watch;

use crate::app::Wake;
use crate::domain::Language;
use crate::domain::ids::IssueId;
use crate::domain::state::{IssueStatus, SubscriberStatus};
use crate::newsletter::Ctx;
use crate::newsletter::tokens::{self, Purpose, TokenError};
use crate::store::Shared;

pub(crate) mod desk;

#[derive(Clone)]
pub(crate) struct AppState {
    ctx: Ctx,
    db: Shared,
    /// Wakes the outbox (a mail was queued) and the newsletter sender.
    wake: Wake,
    /// Whether the pages are served over https (`web.base_url`): cookies get `Secure`.
    https: bool,
}

/// What a page template may use.
#[derive(Serialize, Default)]
struct Page {
    lang: &'static str,
    title: String,
    issues: Vec<IssueLink>,
}

#[derive(Serialize)]
struct IssueLink {
    url: String,
    subject: String,
    date: String,
}

impl AppState {
    /// Renders `templates/web/<page>.<lang>.html` with `page`.
    fn render(&self, status: StatusCode, page: &str, lang: Language, mut data: Page) -> Response {
        data.lang = lang.code();
        match self.ctx.templates.page(page, lang, &data) {
            Ok(html) => (status, html_headers(), html).into_response(),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "web page template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Er ging iets mis. Something went wrong.").into_response()
            }
        }
    }

    fn bad_link(&self, e: TokenError) -> Response {
        match e {
            TokenError::Expired => self.render(StatusCode::GONE, "link_expired", Language::Dutch, Page::default()),
            _ => self.render(StatusCode::NOT_FOUND, "link_invalid", Language::Dutch, Page::default()),
        }
    }
}

fn html_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// The headers every response gets (pages, errors, health): no framing, no `<base>`,
/// no scripts, no content sniffing, no referrer (tokens are in the URL), and HSTS when
/// the pages are served over https (`web.base_url`). The desk's pages (`desk`) load
/// their style sheet from the server and allow no inline style either; they may frame
/// only the desk's own newsletter preview, which sets a stricter policy of its own
/// ([`desk::news`]: sandboxed, no script) that is kept.
fn security_headers(https: bool, desk: bool) -> Vec<(HeaderName, HeaderValue)> {
    let csp = if desk {
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    } else {
        "default-src 'none'; style-src 'unsafe-inline'; img-src https:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    };
    let mut h = vec![
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    if https {
        h.push((header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000")));
    }
    h
}

enum Done {
    ConfirmPage(Language),
    Confirmed(Language),
    AlreadyActive(Language),
    NotPending(Language),
    Unsubscribed(Language),
    AlreadyOut(Language),
    UnsubscribePage(Language),
    Bad(TokenError),
}

/// The confirmation link: a page with one button. It changes nothing, so a link scanner
/// that opens it gives no consent.
async fn confirm_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let ctx = st.ctx.clone();
    let r = st
        .db
        .run(move |db| {
            Ok(
                match ctx.subscriber_by_token(
                    db.store(),
                    &token,
                    Purpose::Confirm,
                    Some(tokens::CONFIRM_VALID_HOURS),
                )? {
                    Ok(s) => match s.status {
                        SubscriberStatus::Pending => Done::ConfirmPage(s.language),
                        SubscriberStatus::Active => Done::AlreadyActive(s.language),
                        _ => Done::NotPending(s.language),
                    },
                    Err(e) => Done::Bad(e),
                },
            )
        })
        .await;
    respond(&st, r)
}

/// The button on the confirmation page: confirms the subscription.
async fn confirm_post(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let ctx = st.ctx.clone();
    let r = st
        .db
        .run(move |db| {
            let sub = match ctx.subscriber_by_token(
                db.store(),
                &token,
                Purpose::Confirm,
                Some(tokens::CONFIRM_VALID_HOURS),
            )? {
                Ok(s) => s,
                Err(e) => return Ok(Done::Bad(e)),
            };
            let now = ctx.clock.now();
            let source = format!("link: confirmation button pressed ({})", crate::domain::time::ts(now));
            match sub.status {
                SubscriberStatus::Pending => {
                    db.write(|st| ctx.confirm(st, sub.id, &source, now))?;
                    Ok(Done::Confirmed(sub.language))
                }
                SubscriberStatus::Active => Ok(Done::AlreadyActive(sub.language)),
                _ => Ok(Done::NotPending(sub.language)),
            }
        })
        .await;
    st.wake.outbox.notify_one();
    respond(&st, r)
}

async fn unsubscribe_page(State(st): State<AppState>, Path(token): Path<String>) -> Response {
    let ctx = st.ctx.clone();
    let r = st
        .db
        .run(move |db| {
            Ok(match ctx.subscriber_by_token(db.store(), &token, Purpose::Unsubscribe, None)? {
                Ok(s) if matches!(s.status, SubscriberStatus::Active | SubscriberStatus::Pending) => {
                    Done::UnsubscribePage(s.language)
                }
                Ok(s) => Done::AlreadyOut(s.language),
                Err(e) => Done::Bad(e),
            })
        })
        .await;
    respond(&st, r)
}

async fn unsubscribe_post(State(st): State<AppState>, Path(token): Path<String>, body: String) -> Response {
    let ctx = st.ctx.clone();
    let one_click = body.contains("List-Unsubscribe=One-Click");
    let r = st
        .db
        .run(move |db| {
            let sub = match ctx.subscriber_by_token(db.store(), &token, Purpose::Unsubscribe, None)? {
                Ok(s) => s,
                Err(e) => return Ok(Done::Bad(e)),
            };
            let lang = sub.language;
            let source = if one_click { "link: List-Unsubscribe one-click POST" } else { "link: unsubscribe page" };
            if db.write(|st| ctx.unsubscribe(st, sub.id, source, true, ctx.clock.now()))? {
                Ok(Done::Unsubscribed(lang))
            } else {
                Ok(Done::AlreadyOut(lang))
            }
        })
        .await;
    st.wake.outbox.notify_one();
    respond(&st, r)
}

fn respond(st: &AppState, r: anyhow::Result<Done>) -> Response {
    let (page, lang) = match r {
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "web request failed");
            return st.render(StatusCode::SERVICE_UNAVAILABLE, "unavailable", Language::Dutch, Page::default());
        }
        Ok(Done::Bad(e)) => return st.bad_link(e),
        Ok(Done::ConfirmPage(l)) => ("confirm", l),
        Ok(Done::Confirmed(l)) => ("confirmed", l),
        Ok(Done::AlreadyActive(l)) => ("already_active", l),
        Ok(Done::NotPending(l)) => ("not_pending", l),
        Ok(Done::Unsubscribed(l)) => ("unsubscribed", l),
        Ok(Done::AlreadyOut(l)) => ("already_out", l),
        Ok(Done::UnsubscribePage(l)) => ("unsubscribe", l),
    };
    st.render(StatusCode::OK, page, lang, Page::default())
}

async fn archive_index(State(st): State<AppState>) -> Response {
    let ctx = st.ctx.clone();
    let r = st
        .db
        .run(move |db| {
            let tz = ctx.settings.newsletter.timezone()?;
            Ok(db
                .store()
                .issues()?
                .into_iter()
                .filter(|i| matches!(i.status, IssueStatus::Sent | IssueStatus::Sending))
                .map(|i| IssueLink {
                    url: ctx.archive_url(Some(i.id)),
                    date: i.started_at.map(|t| t.with_timezone(&tz).format("%d-%m-%Y").to_string()).unwrap_or_default(),
                    subject: i.subject,
                })
                .collect::<Vec<_>>())
        })
        .await;
    match r {
        Ok(issues) => {
            let title = st.ctx.settings.newsletter.title.clone();
            st.render(StatusCode::OK, "archive", Language::Dutch, Page { title, issues, ..Default::default() })
        }
        Err(e) => respond(&st, Err(e)),
    }
}

async fn archive_issue(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<IssueId>() else { return not_found(&st) };
    let r = st.db.run(move |db| db.store().archive(id)).await;
    match r {
        Ok(Some((_, html))) => (StatusCode::OK, html_headers(), html).into_response(),
        Ok(None) => not_found(&st),
        Err(e) => respond(&st, Err(e)),
    }
}

fn not_found(st: &AppState) -> Response {
    st.render(StatusCode::NOT_FOUND, "not_found", Language::Dutch, Page::default())
}

async fn health() -> &'static str {
    "ok"
}

/// The router, for `outreach run` and for tests.
pub fn router(ctx: Ctx, db: Shared, wake: Wake) -> Router {
    let https = ctx.base_url().to_ascii_lowercase().starts_with("https://");
    let state = AppState { ctx, db, wake, https };
    Router::new()
        .route("/confirm/{token}", get(confirm_page).post(confirm_post))
        .route("/unsubscribe/{token}", get(unsubscribe_page).post(unsubscribe_post))
        .route("/archive", get(archive_index))
        .route("/archive/{id}", get(archive_issue))
        .route("/", get(archive_index))
        .route("/health", get(health))
        .merge(desk::routes())
        .fallback(|State(st): State<AppState>| async move { not_found(&st) })
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let desk = desk::is_desk_path(req.uri().path());
            let mut res = next.run(req).await;
            for (name, value) in security_headers(https, desk) {
                // A desk response with a policy of its own (the sandboxed preview) keeps it.
                if desk && name == header::CONTENT_SECURITY_POLICY && res.headers().contains_key(&name) {
                    continue;
                }
                res.headers_mut().insert(name, value);
            }
            res
        }))
        .with_state(state)
}

/// At most this many connections at a time; past it, new ones are closed at once.
const MAX_CONNECTIONS: usize = 256;
/// A client must send its request headers within this time (slow clients hold nothing).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request (its body read and answered) within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest request body: the pages' forms are a few bytes.
const MAX_BODY: usize = 16 * 1024;

/// Serves the endpoints on `listener` until shutdown, within limits: a header timeout, a
/// request timeout, a body size limit and a connection limit; on shutdown, requests in
/// progress finish (for at most 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: Ctx,
    db: Shared,
    wake: Wake,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(listen = %ctx.settings.web.listen(), base_url = %ctx.base_url(), "web endpoints listening");
    let app = limited(router(ctx, db, wake));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "web: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(limit = MAX_CONNECTIONS, "web: too many connections; one refused");
            continue;
        };
        // The client's address, for the desk's login rate limit (`ConnectInfo`).
        let with_peer = tower_layer::Layer::layer(&axum::Extension(axum::extract::ConnectInfo(peer)), app.clone());
        let service = hyper_util::service::TowerToHyperService::new(with_peer);
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("web: requests still open at shutdown"),
    }
    Ok(())
}

/// The router with its per-request limits: body size and total time.
fn limited(app: Router) -> Router {
    app.layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)).layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
                Ok(response) => response,
                Err(_) => (StatusCode::REQUEST_TIMEOUT, "Request timeout").into_response(),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(h: &[(HeaderName, HeaderValue)], name: HeaderName) -> Option<&str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn every_response_forbids_framing_base_and_sniffing_and_https_adds_hsts() {
        for (https, desk) in [(false, false), (true, false), (false, true), (true, true)] {
            let h = security_headers(https, desk);
            let csp = get(&h, header::CONTENT_SECURITY_POLICY).unwrap();
            for directive in ["default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"] {
                assert!(csp.contains(directive), "{csp}");
            }
            assert_eq!(get(&h, header::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
            assert_eq!(get(&h, header::REFERRER_POLICY), Some("no-referrer"));
            let hsts = get(&h, header::STRICT_TRANSPORT_SECURITY);
            assert_eq!(hsts, https.then_some("max-age=31536000"), "HSTS only over https");
            assert_eq!(csp.contains("unsafe-inline"), !desk, "the desk allows no inline style: {csp}");
            assert!(!csp.contains("script-src"), "no scripts: {csp}");
        }
    }
}
