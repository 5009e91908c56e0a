//! The coordinator's web desk under `/desk`: pages rendered on the server from the
//! templates in `templates/web/desk/` (no script), every action a form that posts.
//!
//! - [`auth`]: login by a one-time link mailed to a `desk.users` address (or a
//!   password), sessions, logout, the rate limit;
//! - [`overview`]: what waits, the oldest question, the next newsletter;
//! - [`conversations`]: the list (filters, search) and one conversation with its actions;
//! - [`stories`]: stories by state, one story (approve, reject), a new one with a preview;
//! - [`news`]: the next issue as it will look, a proof approved or cancelled, the
//!   per-recipient status of an issue and sending it again to those it missed;
//! - [`subscribers`]: search, one subscriber with the consent record, add, remove, CSV;
//! - [`person`]: everything stored about one person, as a download, or erased;
//! - [`info`]: the accessibility statement and the language switch.
//!
//! # Adding a page
//!
//! 1. A module here with a `routes()` that returns its routes (full paths under
//!    `/desk`), merged in [`routes`]; a link in the menu is one line in [`NAV`].
//! 2. A GET handler takes a [`DeskPage`] (a logged-in visit: anyone else is sent to the
//!    login page) and ends with `page.render(&st, StatusCode::OK, "NAME", data)`, which
//!    renders `templates/web/desk/NAME.html.hbs` (listed in `src/templates.rs`) with
//!    `data` and the frame every page gets: `lang`, `t` (the texts of the visitor's
//!    language, `templates/web/desk/texts.*.json`), `csrf`, `user`, `nav`, `here`.
//! 3. The template starts with `{{#> desk/layout title=t.KEY}}` (header, menu, footer)
//!    and puts `{{> desk/csrf}}` in every form that posts.
//! 4. A POST handler takes a [`DeskAction<T>`] with `T` the form's fields (serde): the
//!    session and the CSRF token are checked before the handler runs (a form that may be
//!    posted before logging in takes a [`DeskPost<T>`]). It ends with a redirect
//!    ([`see_other`], "post/redirect/get"; a word on what was done goes along as
//!    `?gedaan=KEY`, shown by `{{> desk/flash}}` from [`DeskPage::flash`] and the text
//!    `flash.KEY`) or renders the page again with the errors, each tied to its field
//!    (`{{> desk/field ... error=...}}`) and listed at the top by `{{> desk/errors}}`
//!    (an [`ErrorLink`] per field).
//! 6. An action that the CLI also does calls the same function in `crate::newsletter` (or
//!    `crate::inbox::desk`) with the desk user as the actor ([`DeskPage::email`], or
//!    [`DeskPage::source`] where the CLI writes `cli: ...`): the rules live there, once.
//! 5. Reading or writing the store goes through `st.db.run(...)` (off the runtime); a
//!    failure shows the "unavailable" page ([`failed`]).

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::domain::Language;
use crate::domain::state::ConversationStatus;
use crate::store::desk_web::DeskSession;

pub mod auth;
pub mod conversations;
pub mod info;
pub mod mailhtml;
pub mod news;
pub mod overview;
pub mod person;
pub mod stories;
pub mod subscribers;

pub use auth::set_password;

/// The session cookie (a random id; the store keeps its hash).
const SESSION_COOKIE: &str = "desk_sessie";
/// Before login: the CSRF token of the login forms (double submit).
const PRE_CSRF_COOKIE: &str = "desk_csrf";
/// The language the visitor picked (`nl` or `en`).
const LANG_COOKIE: &str = "desk_taal";
/// The largest form the desk takes: an answer of 64 KiB, percent-encoded.
const MAX_FORM: usize = 256 * 1024;

/// The menu: (path, text key). A new page adds its line here.
pub const NAV: &[(&str, &str)] = &[
    ("/desk", "nav_overview"),
    ("/desk/gesprekken", "nav_conversations"),
    ("/desk/verhalen", "nav_stories"),
    ("/desk/nieuwsbrief", "nav_newsletter"),
    ("/desk/abonnees", "nav_subscribers"),
    ("/desk/persoon", "nav_person"),
];

/// Whether the menu item `href` is where `path` is: the page itself or one below it
/// (the overview, `/desk`, only itself).
fn is_current(path: &str, href: &str) -> bool {
    path == href || (href != "/desk" && path.strip_prefix(href).is_some_and(|rest| rest.starts_with('/')))
}

/// Whether a request path belongs to the desk (its own security headers).
pub fn is_desk_path(path: &str) -> bool {
    path == "/desk" || path.starts_with("/desk/")
}

/// Every desk route.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .merge(auth::routes())
        .merge(overview::routes())
        .merge(conversations::routes())
        .merge(stories::routes())
        .merge(news::routes())
        .merge(subscribers::routes())
        .merge(person::routes())
        .merge(info::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM))
}

/// The logged-in user of a visit.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub email: String,
    csrf: String,
    session_hash: String,
}

/// One request to the desk: who (if anyone is logged in), in which language, from where.
#[derive(Debug, Clone)]
pub struct Visit {
    pub lang: Language,
    pub user: Option<LoggedIn>,
    /// The login forms' CSRF token from its cookie; `fresh_pre_csrf` when there is none.
    pre_csrf: Option<String>,
    fresh_pre_csrf: String,
    /// Path and query of this request (to come back to after a language switch).
    pub here: String,
    pub ip: Option<IpAddr>,
    pub https: bool,
    /// The page loads itself once more from this address (see the login page).
    pub refresh: Option<String>,
}

/// A visit by a logged-in user. As an extractor it sends anyone else to the login page
/// (a GET) or refuses the request (403).
#[derive(Debug, Clone)]
pub struct DeskPage(pub Visit);

impl DeskPage {
    /// The desk user's address: the actor of what they do.
    pub fn email(&self) -> &str {
        &self.0.user.as_ref().expect("a DeskPage is logged in").email
    }

    /// Where the CLI records `cli: ...` (a subscriber's source, an issue's approval):
    /// `desk: ADDRESS`.
    pub fn source(&self) -> String {
        format!("{}{}", crate::newsletter::subscribers::DESK_SOURCE, self.email())
    }

    /// The word on what was just done (`?gedaan=KEY`, the text `flash.KEY`).
    pub fn flash(&self, st: &AppState, gedaan: &str) -> Option<String> {
        (!gedaan.is_empty() && gedaan.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .then(|| self.text(st, &format!("flash.{gedaan}")))
    }
}

impl std::ops::Deref for DeskPage {
    type Target = Visit;
    fn deref(&self) -> &Visit {
        &self.0
    }
}

/// A form posted to the desk, its CSRF token checked: the session's token when logged
/// in, else the login forms' cookie. `T` holds the other fields.
pub struct DeskPost<T> {
    pub visit: Visit,
    pub form: T,
}

/// A form posted by a logged-in user, its CSRF token checked (see [`DeskPost`]); anyone
/// else is refused (403).
pub struct DeskAction<T> {
    pub page: DeskPage,
    pub form: T,
}

/// What every desk page gets besides its own data.
#[derive(Serialize)]
struct Frame<'a, T: Serialize> {
    lang: &'static str,
    t: &'a serde_json::Value,
    csrf: &'a str,
    user: Option<&'a str>,
    nav: Vec<NavItem<'a>>,
    here: &'a str,
    other_lang: &'static str,
    refresh: Option<&'a str>,
    #[serde(flatten)]
    page: T,
}

#[derive(Serialize)]
struct NavItem<'a> {
    href: &'static str,
    label: &'a str,
    current: bool,
}

/// The query of a page an action leads back to: what was done (see [`DeskPage::flash`]).
#[derive(serde::Deserialize, Default)]
pub struct Gedaan {
    #[serde(default)]
    pub gedaan: String,
}

/// A choice in a `<select>`.
#[derive(Serialize)]
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The choices of a `<select>`, `current` selected.
pub fn options<'a>(items: impl Iterator<Item = (&'a str, String)>, current: &str) -> Vec<Opt> {
    items.map(|(value, label)| Opt { selected: value == current, value: value.to_string(), label }).collect()
}

/// A form field as the page shows it again: what was typed and what is wrong with it.
#[derive(Serialize, Default, Clone)]
pub struct FormState {
    pub value: String,
    pub error: Option<String>,
}

impl FormState {
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), error: None }
    }
}

/// An error at the top of a page, linking to its field (`{{> desk/errors}}`).
#[derive(Serialize, Clone)]
pub struct ErrorLink {
    /// The field's id (`#id`); empty for an error that is not about one field.
    pub field: String,
    pub text: String,
}

/// The errors of the fields `(id, state)` that have one, in the order given.
pub fn field_errors(fields: &[(&str, &FormState)]) -> Vec<ErrorLink> {
    fields
        .iter()
        .filter_map(|(id, f)| f.error.as_ref().map(|e| ErrorLink { field: (*id).to_string(), text: e.clone() }))
        .collect()
}

/// A file to download (`Content-Disposition: attachment`), never cached.
pub fn download(content_type: &'static str, filename: &str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// A page's data, or a form's fields, with nothing of its own.
#[derive(Serialize, serde::Deserialize, Default)]
pub struct Nothing {}

/// A page that says one thing: a title, a text and a link on.
#[derive(Serialize)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub link: Option<Link>,
}

#[derive(Serialize)]
pub struct Link {
    pub href: String,
    pub label: String,
}

impl Visit {
    fn from_parts(parts: &Parts, st: &AppState) -> Visit {
        let cookie = |name: &str| cookie(parts, name);
        let lang = match cookie(LANG_COOKIE).as_deref() {
            Some("en") => Language::English,
            _ => Language::Dutch,
        };
        let here = parts.uri.path_and_query().map_or("/desk", |p| p.as_str()).to_string();
        Visit {
            lang,
            user: None,
            pre_csrf: cookie(PRE_CSRF_COOKIE).filter(|c| c.len() >= 32 && c.len() <= 64),
            fresh_pre_csrf: random_token(),
            here,
            ip: client_ip(parts),
            https: st.https,
            refresh: None,
        }
    }

    /// The texts of the visit's language.
    pub fn texts<'a>(&self, st: &'a AppState) -> &'a serde_json::Value {
        st.ctx.templates.texts(self.lang)
    }

    /// One text of the visit's language (the key itself when missing).
    pub fn text(&self, st: &AppState, key: &str) -> String {
        text(self.texts(st), key)
    }

    /// The CSRF token this visit's forms carry.
    fn csrf(&self) -> &str {
        match (&self.user, &self.pre_csrf) {
            (Some(u), _) => &u.csrf,
            (None, Some(c)) => c,
            (None, None) => &self.fresh_pre_csrf,
        }
    }

    /// Renders `templates/web/desk/<page>.html` with `data` in the frame.
    pub fn render<T: Serialize>(&self, st: &AppState, status: StatusCode, page: &str, data: T) -> Response {
        let t = self.texts(st);
        let nav = NAV
            .iter()
            .map(|(href, key)| NavItem {
                href,
                label: t.get(*key).and_then(|v| v.as_str()).unwrap_or(key),
                current: is_current(self.here.split('?').next().unwrap_or(""), href),
            })
            .collect();
        let frame = Frame {
            lang: self.lang.code(),
            t,
            csrf: self.csrf(),
            user: self.user.as_ref().map(|u| u.email.as_str()),
            nav,
            here: &self.here,
            other_lang: if self.lang == Language::English { "nl" } else { "en" },
            refresh: self.refresh.as_deref(),
            page: data,
        };
        let mut res = match st.ctx.templates.render(&format!("web/desk/{page}.html"), &frame) {
            Ok(html) => (status, super::html_headers(), html).into_response(),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), page, "desk page template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Er ging iets mis. Something went wrong.").into_response()
            }
        };
        if self.user.is_none() && self.pre_csrf.is_none() {
            self.set_cookie(&mut res, PRE_CSRF_COOKIE, &self.fresh_pre_csrf, None);
        }
        res
    }

    /// The one-thing page, its texts named by keys.
    pub fn message(&self, st: &AppState, status: StatusCode, title: &str, text: &str, link: Option<Link>) -> Response {
        let data = Message { title: self.text(st, title), text: self.text(st, text), link };
        self.render(st, status, "message", data)
    }

    /// The "not found" page (404): the text `text` says what is missing; the link goes
    /// back to `back`, named by the text `label`.
    pub fn not_found(&self, st: &AppState, text: &str, back: &str, label: &str) -> Response {
        let link = Link { href: back.to_string(), label: self.text(st, label) };
        self.message(st, StatusCode::NOT_FOUND, "not_found_title", text, Some(link))
    }

    /// Refuses a request (403) with a page that says why (`<why>_title`, `<why>_text`)
    /// and links to the login page.
    pub fn refuse(&self, st: &AppState, why: &str) -> Response {
        let link = Link { href: "/desk/login".into(), label: self.text(st, "login_title") };
        self.message(st, StatusCode::FORBIDDEN, &format!("{why}_title"), &format!("{why}_text"), Some(link))
    }

    /// Adds a `Set-Cookie` for a desk cookie: HttpOnly, SameSite=Strict, path `/desk`,
    /// Secure over https; `max_age` in seconds (0 deletes it, None lasts the browser
    /// session).
    pub fn set_cookie(&self, res: &mut Response, name: &str, value: &str, max_age: Option<i64>) {
        let mut c = format!("{name}={value}; Path=/desk; HttpOnly; SameSite=Strict");
        if let Some(s) = max_age {
            c.push_str(&format!("; Max-Age={s}"));
        }
        if self.https {
            c.push_str("; Secure");
        }
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

impl FromRequestParts<AppState> for Visit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let mut visit = Visit::from_parts(parts, st);
        if let Some(id) = cookie(parts, SESSION_COOKIE) {
            let hash = hash_hex(&id);
            let now = st.ctx.clock.now();
            let lookup = hash.clone();
            let session = st.db.run(move |db| db.store().session(&lookup, now)).await;
            match session {
                Ok(Some(DeskSession { email, csrf, .. })) if auth::is_desk_user(&st.ctx.settings, &email) => {
                    visit.user = Some(LoggedIn { email, csrf, session_hash: hash });
                }
                Ok(_) => {}
                Err(e) => return Err(failed(&visit, st, e)),
            }
        }
        Ok(visit)
    }
}

impl FromRequestParts<AppState> for DeskPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let visit = Visit::from_parts_async(parts, st).await?;
        if visit.user.is_some() {
            return Ok(DeskPage(visit));
        }
        if parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD {
            Err(see_other(&format!("/desk/login?terug={}", url_encode(&visit.here))))
        } else {
            Err(visit.refuse(st, "refused_login"))
        }
    }
}

impl Visit {
    async fn from_parts_async(parts: &mut Parts, st: &AppState) -> Result<Visit, Response> {
        <Visit as FromRequestParts<AppState>>::from_request_parts(parts, st).await
    }
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for DeskAction<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let post = DeskPost::<T>::from_request(req, st).await?;
        if post.visit.user.is_none() {
            return Err(post.visit.refuse(st, "refused_login"));
        }
        Ok(DeskAction { page: DeskPage(post.visit), form: post.form })
    }
}

/// The field every posted form carries.
#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for DeskPost<T> {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let visit = Visit::from_parts_async(&mut parts, st).await?;
        let req = Request::from_parts(parts, body);
        let bytes = match axum::body::Bytes::from_request(req, st).await {
            Ok(b) => b,
            Err(e) => return Err(e.into_response()),
        };
        let given = serde_urlencoded::from_bytes::<CsrfField>(&bytes).map(|f| f.csrf).unwrap_or_default();
        let expected = match (&visit.user, &visit.pre_csrf) {
            (Some(u), _) => Some(u.csrf.as_str()),
            (None, Some(c)) => Some(c.as_str()),
            (None, None) => None,
        };
        if !expected.is_some_and(|e| same(e.as_bytes(), given.as_bytes())) {
            let why = if visit.user.is_some() || visit.pre_csrf.is_some() { "refused_csrf" } else { "refused_login" };
            return Err(visit.refuse(st, why));
        }
        match serde_urlencoded::from_bytes::<T>(&bytes) {
            Ok(form) => Ok(DeskPost { visit, form }),
            Err(e) => {
                tracing::debug!(error = %e, "desk form not understood");
                Err(visit.message(st, StatusCode::BAD_REQUEST, "bad_form_title", "bad_form_text", None))
            }
        }
    }
}

/// The value of cookie `name`, if the request has it.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// The client's address: the peer, or, when the peer is this machine (a reverse proxy),
/// the last address in `X-Forwarded-For` (the one the proxy added).
fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    if peer.is_loopback()
        && let Some(fwd) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(ip) = fwd.rsplit(',').next().and_then(|s| s.trim().parse().ok())
    {
        return Some(ip);
    }
    Some(peer)
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// SHA-256 of a token or session id, hex: what the store keeps.
pub fn hash_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A redirect after a POST (or to the login page).
pub fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location.to_string())]).into_response()
}

/// Percent-encodes a query value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A path to go back to within the desk; anything else becomes `/desk`.
pub fn safe_return(path: &str) -> String {
    let ok = is_desk_path(path.split('?').next().unwrap_or(""))
        && !path.contains("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control());
    if ok { path.to_string() } else { "/desk".to_string() }
}

/// The "try again later" page for a store failure.
pub fn failed(visit: &Visit, st: &AppState, e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "desk request failed");
    visit.message(st, StatusCode::SERVICE_UNAVAILABLE, "unavailable_title", "unavailable_text", None)
}

/// What the page says when an action was refused, in plain words: that someone else
/// changed the thing first (the state no longer allows it), or else that nothing
/// changed, with the technical reason last, for whoever keeps the desk running.
pub fn refusal(t: &serde_json::Value, e: &anyhow::Error) -> String {
    let why = crate::domain::redact_addresses(&format!("{e:#}"));
    tracing::info!(error = %why, "desk action refused");
    if crate::domain::state::is_not_now(e) {
        text(t, "action_not_now")
    } else {
        text(t, "action_failed").replace("{}", &format!("{e:#}"))
    }
}

/// A text from the catalogue; the key itself when missing (so a gap shows, and
/// `texts_have_the_same_keys` catches it).
pub fn text(t: &serde_json::Value, key: &str) -> String {
    let mut v = t;
    for part in key.split('.') {
        match v.get(part) {
            Some(x) => v = x,
            None => return key.to_string(),
        }
    }
    v.as_str().unwrap_or(key).to_string()
}

/// A time as the coordinator reads it: day, month, year and time in the newsletter's
/// time zone.
pub fn local_time(st: &AppState, t: DateTime<Utc>) -> String {
    let tz = st.ctx.settings.newsletter.timezone().unwrap_or(chrono_tz::Europe::Amsterdam);
    t.with_timezone(&tz).format("%d-%m-%Y %H:%M").to_string()
}

/// A row id from a path: a positive number.
pub fn row_id(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|n| *n > 0)
}

/// When the schedule makes the next newsletter, in words (or that there is no schedule).
pub fn next_slot_text(st: &AppState, t: &serde_json::Value) -> String {
    use crate::newsletter::schedule::{next_slot, parse_cron};
    let n = &st.ctx.settings.newsletter;
    let slot = parse_cron(&n.schedule)
        .ok()
        .filter(|_| !n.schedule.trim().is_empty())
        .zip(n.timezone().ok())
        .and_then(|(cron, tz)| next_slot(&cron, tz, st.ctx.clock.now()));
    match slot {
        Some(s) => text(t, "news_next_slot").replace("{}", &local_time(st, s)),
        None => text(t, "news_no_schedule"),
    }
}

/// How long since `since`, in words ("3 dagen", "5 uur", "12 minuten").
pub fn age(t: &serde_json::Value, since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = now - since;
    let (n, one, many) = if d.num_days() >= 1 {
        (d.num_days(), "age_day", "age_days")
    } else if d.num_hours() >= 1 {
        (d.num_hours(), "age_hour", "age_hours")
    } else {
        (d.num_minutes().max(0), "age_minute", "age_minutes")
    };
    text(t, if n == 1 { one } else { many }).replace("{}", &n.to_string())
}

/// The label of a conversation status (`status.<value>`).
pub fn status_label(t: &serde_json::Value, s: ConversationStatus) -> String {
    text(t, &format!("status.{}", s.as_str()))
}

/// The label of a category (`cat.<value>`).
pub fn category_label(t: &serde_json::Value, c: crate::domain::Category) -> String {
    text(t, &format!("cat.{}", c.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_desk_are_followed_back() {
        assert_eq!(safe_return("/desk/gesprekken?status=nieuw"), "/desk/gesprekken?status=nieuw");
        assert_eq!(safe_return("/desk"), "/desk");
        for bad in ["https://evil.example/desk", "//evil.example", "/desk//evil", "/deskx", "/desk/\\evil", "/archive"]
        {
            assert_eq!(safe_return(bad), "/desk", "{bad}");
        }
        assert_eq!(url_encode("/desk/a b?x=1&y"), "/desk/a%20b%3Fx%3D1%26y");
    }

    #[test]
    fn the_menu_marks_the_page_and_the_pages_below_it() {
        assert!(is_current("/desk", "/desk"));
        assert!(!is_current("/desk/verhalen", "/desk"));
        assert!(is_current("/desk/verhalen", "/desk/verhalen"));
        assert!(is_current("/desk/verhalen/3", "/desk/verhalen"));
        assert!(!is_current("/desk/verhalenx", "/desk/verhalen"));
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
        assert_eq!(random_token().len(), 43);
        assert_ne!(random_token(), random_token());
    }

    #[test]
    fn ages_read_as_words() {
        let t = serde_json::json!({"age_day": "1 dag", "age_days": "{} dagen", "age_hour": "1 uur", "age_hours": "{} uur", "age_minute": "1 minuut", "age_minutes": "{} minuten"});
        let now = Utc::now();
        assert_eq!(age(&t, now - chrono::Duration::days(3), now), "3 dagen");
        assert_eq!(age(&t, now - chrono::Duration::hours(1), now), "1 uur");
        assert_eq!(age(&t, now - chrono::Duration::minutes(5), now), "5 minuten");
        assert_eq!(age(&t, now + chrono::Duration::minutes(5), now), "0 minuten");
    }
}
