//! Logging in to the desk.
//!
//! - `GET /desk/login`: the login page; `POST /desk/login` (an address): when the
//!   address is in `desk.users`, a one-time link is mailed to it (through the outbox,
//!   kind `desk_login`); the answer is the same page whether the address is known or not.
//! - `GET /desk/login/TOKEN`: a page with one button, changing nothing (mail scanners
//!   open links); `POST /desk/login/TOKEN` (the button): logs in. A link is valid for
//!   [`LINK_MINUTES`] minutes and once; only its hash is stored.
//! - `POST /desk/wachtwoord`: logs in with a password (argon2id), for users who set one
//!   with `outreach desk set-password`.
//! - `POST /desk/uitloggen`: ends the session.
//!
//! Asking for a link and trying a password count as attempts: at most
//! [`MAX_PER_ADDRESS`] per address and [`MAX_PER_IP`] per client address per
//! [`WINDOW_MINUTES`] minutes, known address or not.

use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::bail;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::{DeskPost, Link, Visit, hash_hex, random_token, safe_return, see_other, url_encode};
use crate::config::Settings;
use crate::domain::EmailAddress;
use crate::domain::state::OutboxKind;
use crate::outbox::compose;
use crate::store::desk_web::LoginLink;
use crate::store::{Db, NewOutgoing};
use crate::web::AppState;

/// How long a login link is valid.
pub const LINK_MINUTES: i64 = 15;
/// The rate limit's window.
pub const WINDOW_MINUTES: i64 = 15;
/// Attempts per address in the window.
pub const MAX_PER_ADDRESS: i64 = 5;
/// Attempts per client address in the window (a team behind one address).
pub const MAX_PER_IP: i64 = 20;
/// The shortest password `set-password` takes.
pub const MIN_PASSWORD: usize = 10;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/desk/login", get(login_page).post(ask_link))
        .route("/desk/login/{token}", get(link_page).post(use_link))
        .route("/desk/wachtwoord", post(password_login))
        .route("/desk/uitloggen", post(logout))
}

/// Whether `email` may use the desk (`desk.users`).
pub fn is_desk_user(settings: &Settings, email: &str) -> bool {
    let Ok(a) = EmailAddress::parse(email) else { return false };
    settings.desk.users.iter().filter_map(|u| EmailAddress::parse(u).ok()).any(|u| u.normalized() == a.normalized())
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    terug: Option<String>,
    opnieuw: Option<String>,
    uit: Option<String>,
}

/// The login page's data.
#[derive(Serialize, Default)]
struct LoginData {
    terug: String,
    notice: Option<String>,
    email: String,
    email_error: Option<String>,
    pw_email: String,
    pw_error: Option<String>,
    link_minutes: i64,
}

impl LoginData {
    fn new(terug: &str) -> Self {
        Self { terug: terug.to_string(), link_minutes: LINK_MINUTES, ..Default::default() }
    }
}

async fn login_page(State(st): State<AppState>, mut visit: Visit, Query(q): Query<LoginQuery>) -> Response {
    let terug = safe_return(q.terug.as_deref().unwrap_or("/desk"));
    if visit.user.is_some() {
        return see_other(&terug);
    }
    let mut data = LoginData::new(&terug);
    // A page opened from a link elsewhere (a mail) comes without the session cookie
    // (`SameSite=Strict`): the login page loads itself once more from here, and that
    // request carries it; when there is still no session, the form stays.
    if q.terug.is_some() && q.opnieuw.is_none() {
        visit.refresh = Some(format!("/desk/login?terug={}&opnieuw=1", url_encode(&terug)));
    }
    if q.uit.is_some() {
        data.notice = Some(visit.text(&st, "logged_out"));
    }
    visit.render(&st, StatusCode::OK, "login", data)
}

#[derive(Deserialize)]
struct AskLink {
    #[serde(default)]
    email: String,
    #[serde(default)]
    terug: String,
}

/// The keys an attempt counts under: the address and the client's address (hashed).
fn attempt_keys(visit: &Visit, email: &str) -> Vec<String> {
    let mut keys = vec![format!("address:{}", hash_hex(&email.to_lowercase()))];
    if let Some(ip) = visit.ip {
        keys.push(format!("ip:{}", hash_hex(&ip.to_string())));
    }
    keys
}

enum Attempt {
    /// Over the limit: nothing was done.
    Limited,
    Done,
}

/// Counts an attempt, refusing it when the address or the client is over the limit.
fn attempt(db: &mut Db, keys: &[String], now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Attempt> {
    db.write(|st| {
        let since = now - Duration::minutes(WINDOW_MINUTES);
        for k in keys {
            let max = if k.starts_with("ip:") { MAX_PER_IP } else { MAX_PER_ADDRESS };
            if st.login_attempts(k, since)? >= max {
                return Ok(Attempt::Limited);
            }
        }
        st.record_login_attempt(&keys.iter().map(String::as_str).collect::<Vec<_>>(), now)?;
        Ok(Attempt::Done)
    })
}

/// `POST /desk/login`: mails a link when the address may log in; the same answer either
/// way.
async fn ask_link(State(st): State<AppState>, post: DeskPost<AskLink>) -> Response {
    let visit = post.visit;
    let terug = safe_return(&post.form.terug);
    let email = post.form.email.trim().to_string();
    let Ok(address) = EmailAddress::parse(&email) else {
        let mut data = LoginData::new(&terug);
        data.email = email;
        data.email_error = Some(visit.text(&st, "login_email_invalid"));
        return visit.render(&st, StatusCode::UNPROCESSABLE_ENTITY, "login", data);
    };
    let known = is_desk_user(&st.ctx.settings, &email);
    let keys = attempt_keys(&visit, &address.normalized());
    let ctx = st.ctx.clone();
    let r = st
        .db
        .run(move |db| {
            let now = ctx.clock.now();
            if let Attempt::Limited = attempt(db, &keys, now)? {
                return Ok(Attempt::Limited);
            }
            if known {
                let token = random_token();
                let link = format!("{}/desk/login/{token}", ctx.base_url());
                let from = ctx.from.clone();
                let message_id = compose::new_message_id(&from);
                let body = ctx
                    .templates
                    .render("desk/login.nl.txt", &serde_json::json!({ "link": link, "minutes": LINK_MINUTES }))?;
                let raw = compose::notice(
                    &from,
                    &address,
                    "Je link om in te loggen op de balie",
                    &message_id,
                    body,
                    SystemTime::from(now),
                )?;
                db.write(|s| {
                    s.scrub_login_mail()?;
                    s.create_login_link(
                        &hash_hex(&token),
                        &address.normalized(),
                        now,
                        now + Duration::minutes(LINK_MINUTES),
                    )?;
                    let mail = NewOutgoing::new(
                        OutboxKind::DeskLogin,
                        message_id,
                        from.email.to_string(),
                        address.to_string(),
                        raw,
                    );
                    s.enqueue(&mail, now)?;
                    Ok(())
                })?;
            }
            Ok(Attempt::Done)
        })
        .await;
    match r {
        Ok(Attempt::Limited) => limited(&visit, &st),
        Ok(Attempt::Done) => {
            if known {
                st.wake.outbox.notify_one();
            }
            visit.message(&st, StatusCode::OK, "link_sent_title", "link_sent_text", None)
        }
        Err(e) => super::failed(&visit, &st, e),
    }
}

fn limited(visit: &Visit, st: &AppState) -> Response {
    let link = Link { href: "/desk/login".into(), label: visit.text(st, "login_title") };
    visit.message(st, StatusCode::TOO_MANY_REQUESTS, "limited_title", "limited_text", Some(link))
}

/// A link that does not log in: expired (410), used (410) or unknown (404).
fn bad_link(visit: &Visit, st: &AppState, state: &LoginLink) -> Response {
    let (status, why) = match state {
        LoginLink::Expired => (StatusCode::GONE, "link_expired"),
        LoginLink::Used => (StatusCode::GONE, "link_used"),
        _ => (StatusCode::NOT_FOUND, "link_unknown"),
    };
    let link = Link { href: "/desk/login".into(), label: visit.text(st, "login_again") };
    visit.message(st, status, &format!("{why}_title"), &format!("{why}_text"), Some(link))
}

#[derive(Serialize)]
struct LinkData {
    action: String,
}

/// `GET /desk/login/TOKEN`: one button; the link is not used yet.
async fn link_page(State(st): State<AppState>, visit: Visit, Path(token): Path<String>) -> Response {
    let hash = hash_hex(&token);
    let now = st.ctx.clock.now();
    match st.db.run(move |db| db.store().login_link(&hash, now)).await {
        Ok(LoginLink::Valid(_)) => {
            let data = LinkData { action: format!("/desk/login/{}", url_encode(&token)) };
            visit.render(&st, StatusCode::OK, "login_link", data)
        }
        Ok(other) => bad_link(&visit, &st, &other),
        Err(e) => super::failed(&visit, &st, e),
    }
}

/// `POST /desk/login/TOKEN`: uses the link and logs in.
async fn use_link(State(st): State<AppState>, Path(token): Path<String>, post: DeskPost<super::Nothing>) -> Response {
    let visit = post.visit;
    let hash = hash_hex(&token);
    let now = st.ctx.clock.now();
    let r = st
        .db
        .run(move |db| {
            db.write(|s| {
                let state = s.take_login_link(&hash, now)?;
                s.scrub_login_mail()?;
                Ok(state)
            })
        })
        .await;
    match r {
        Ok(LoginLink::Valid(email)) if is_desk_user(&st.ctx.settings, &email) => {
            start_session(&st, &visit, email, "/desk").await
        }
        Ok(LoginLink::Valid(_)) => bad_link(&visit, &st, &LoginLink::Unknown),
        Ok(other) => bad_link(&visit, &st, &other),
        Err(e) => super::failed(&visit, &st, e),
    }
}

/// Makes a session for `email`, sets its cookie and goes on to `to`.
async fn start_session(st: &AppState, visit: &Visit, email: String, to: &str) -> Response {
    let id = random_token();
    let hash = hash_hex(&id);
    let csrf = random_token();
    let now = st.ctx.clock.now();
    let hours = st.ctx.settings.desk.session_hours as i64;
    let r =
        st.db.run(move |db| db.store().create_session(&hash, &email, &csrf, now, now + Duration::hours(hours))).await;
    match r {
        Ok(()) => {
            tracing::info!("desk: a user logged in");
            let mut res = see_other(to);
            visit.set_cookie(&mut res, super::SESSION_COOKIE, &id, Some(hours * 3600));
            res
        }
        Err(e) => super::failed(visit, st, e),
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    terug: String,
}

/// A hash to verify against when the address has no password, so that the answer takes
/// as long either way.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// `POST /desk/wachtwoord`.
async fn password_login(State(st): State<AppState>, post: DeskPost<PasswordForm>) -> Response {
    let visit = post.visit;
    let f = post.form;
    let terug = safe_return(&f.terug);
    let email = f.email.trim().to_lowercase();
    let keys = attempt_keys(&visit, &email);
    let known = is_desk_user(&st.ctx.settings, &email);
    let ctx = st.ctx.clone();
    let who = email.clone();
    let r = st
        .db
        .run(move |db| {
            let now = ctx.clock.now();
            if let Attempt::Limited = attempt(db, &keys, now)? {
                return Ok(None);
            }
            Ok(Some(if known { db.store().desk_password(&who)? } else { None }))
        })
        .await;
    // Verified off the store's lock; against a stand-in hash when there is none, so the
    // answer takes as long either way.
    let r = match r {
        Ok(Some(stored)) => {
            let password = f.password.clone();
            tokio::task::spawn_blocking(move || {
                let ok = verify_password(&password, stored.as_deref().unwrap_or(dummy_hash()));
                Some(ok && stored.is_some())
            })
            .await
            .map_err(|e| anyhow::anyhow!("password check: {e}"))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match r {
        Ok(None) => limited(&visit, &st),
        Ok(Some(true)) => start_session(&st, &visit, email, &terug).await,
        Ok(Some(false)) => {
            let mut data = LoginData::new(&terug);
            data.pw_email = f.email;
            data.pw_error = Some(visit.text(&st, "login_password_wrong"));
            visit.render(&st, StatusCode::UNAUTHORIZED, "login", data)
        }
        Err(e) => super::failed(&visit, &st, e),
    }
}

/// `POST /desk/uitloggen`.
async fn logout(State(st): State<AppState>, post: DeskPost<super::Nothing>) -> Response {
    let visit = post.visit;
    if let Some(u) = &visit.user {
        let hash = u.session_hash.clone();
        let now = st.ctx.clock.now();
        if let Err(e) = st.db.run(move |db| db.store().end_session(&hash, now)).await {
            return super::failed(&visit, &st, e);
        }
    }
    let mut res = see_other("/desk/login?uit=1");
    visit.set_cookie(&mut res, super::SESSION_COOKIE, "", Some(0));
    res
}

/// An argon2id hash (PHC string) of a password, with a random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?
        .to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// `outreach desk set-password EMAIL`: sets a desk user's password (their sessions end).
pub fn set_password(settings: &Settings, email: &str, password: &str) -> anyhow::Result<()> {
    if !is_desk_user(settings, email) {
        bail!("{email} is not in desk.users: add it there first");
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password is too short: at least {MIN_PASSWORD} characters");
    }
    let hash = hash_password(password)?;
    let email = EmailAddress::parse(email).map_err(|e| anyhow::anyhow!(e))?.normalized();
    let mut db = Db::open(&settings.database.path)?;
    let now = crate::domain::time::Clock::from_env().now();
    db.write(|st| st.set_desk_password(&email, &hash, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(hash_password("correct horse battery").unwrap(), h, "a new salt each time");
    }
}
