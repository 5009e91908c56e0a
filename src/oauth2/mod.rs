//! OAuth2 access tokens for IMAP and SMTP (XOAUTH2): fetched with the `oauth2` crate from
//! the configured endpoint (client credentials, or the refresh token of a device-code
//! login), cached, and renewed before they expire.
//!
//! - [`Tokens`]: one per process, shared by the IMAP side, the outbox and the newsletter
//!   sender. [`Tokens::bearer`] gives the cached token until its renewal time (a quarter
//!   of its life before it expires, at most 5 minutes before), then fetches a new one.
//!   With the device-code flow every refresh may rotate the refresh token: the new one
//!   is saved in the database at once, before the access token is used.
//! - Each side reports whether its login worked ([`Tokens::report`]); the store keeps
//!   it, so that `outreach status` and the daemon's watch can say what to fix
//!   ([`AuthProblem`]) and since when.
//! - [`login`]: `outreach login`, the device-code login of a person.
//! - [`check`]: fetch one token and say how it went (for `outreach doctor`).
//!
//! No token or secret is ever logged, shown or put in an error: errors carry only what the
//! endpoint or server said about them. [`Bearer`] and the settings print as redacted.

mod problem;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ::oauth2::basic::{BasicClient, BasicErrorResponse};
use ::oauth2::{
    AuthType, ClientId, ClientSecret, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, HttpClientError,
    RefreshToken, RequestTokenError, Scope, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Flow, OAuth2Endpoints, Provider, Settings};
use crate::domain::time::Clock;
use crate::store::{Db, Shared};

pub use problem::{AuthProblem, ProblemKind};

type Client = BasicClient<EndpointNotSet, EndpointMaybeSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet>;
type Http = ::oauth2::reqwest::Client;

/// Which login a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Imap,
    Smtp,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Imap => "imap",
            Side::Smtp => "smtp",
        }
    }
}

/// An access token and when to stop using it. Prints as redacted.
#[derive(Clone)]
pub struct Bearer {
    token: SecretString,
    /// When a new one should be fetched (and an IMAP session logged in again).
    pub renew_at: Instant,
    /// How long the endpoint said it is valid.
    pub lifetime: Duration,
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer").field("token", &"[REDACTED]").field("lifetime", &self.lifetime).finish()
    }
}

impl Bearer {
    fn new(token: String, lifetime: Duration, now: Instant) -> Self {
        Self { token: SecretString::from(token), renew_at: now + lifetime - renew_margin(lifetime), lifetime }
    }

    /// The token itself, for the one place that sends it (XOAUTH2).
    pub fn secret(&self) -> &str {
        self.token.expose_secret()
    }

    /// The XOAUTH2 initial response before base64: `user=U^Aauth=Bearer T^A^A`.
    pub fn xoauth2(&self, user: &str) -> String {
        format!("user={user}\x01auth=Bearer {}\x01\x01", self.secret())
    }

    /// Whether it is still to be used.
    pub fn fresh(&self) -> bool {
        Instant::now() < self.renew_at
    }
}

/// How long before a token expires it is renewed: a quarter of its life, at most five
/// minutes (Exchange ends an IMAP session whose token expired).
fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 4).min(Duration::from_secs(300))
}

/// A token's life when the endpoint does not say (`expires_in` is optional in RFC 6749).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// The token source of one process. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    http: Http,
    flow: Flow,
    scopes: Vec<Scope>,
    /// Which app a stored refresh token belongs to: the token endpoint and the client id.
    app: String,
    db: Shared,
    clock: Clock,
    runtime: tokio::runtime::Handle,
    cache: Mutex<Option<Bearer>>,
    /// One fetch at a time: the others wait for it and take its token.
    fetching: tokio::sync::Mutex<()>,
    /// What each side last wrote to the store (to write a success only once a minute).
    reported: Mutex<[Option<(bool, Instant)>; 2]>,
}

impl Tokens {
    /// The token source for `settings` when IMAP or SMTP uses OAuth2, else `None`. Must be
    /// called inside the tokio runtime (its handle serves the blocking IMAP thread).
    pub fn for_settings(settings: &Settings, clock: Clock) -> anyhow::Result<Option<Self>> {
        if !settings.uses_oauth2() {
            return Ok(None);
        }
        let db = Shared::new(Db::open(&settings.database.path)?);
        Self::new(settings, db, clock).map(Some)
    }

    fn new(settings: &Settings, db: Shared, clock: Clock) -> anyhow::Result<Self> {
        let o = &settings.oauth2;
        let endpoints = o.endpoints()?;
        let runtime =
            tokio::runtime::Handle::try_current().context("the OAuth2 token source needs the tokio runtime")?;
        Ok(Self {
            inner: Arc::new(Inner {
                client: client(settings, &endpoints)?,
                http: http_client()?,
                flow: o.flow,
                scopes: endpoints.scopes.iter().cloned().map(Scope::new).collect(),
                app: app_key(&endpoints, &o.client_id),
                db,
                clock,
                runtime,
                cache: Mutex::new(None),
                fetching: tokio::sync::Mutex::new(()),
                reported: Mutex::new([None, None]),
            }),
        })
    }

    /// A token that is still fresh: the cached one, else a new one. A failure is recorded
    /// for `side` (its login cannot work without a token).
    pub async fn bearer(&self, side: Side) -> Result<Bearer, AuthProblem> {
        if let Some(b) = self.cached() {
            return Ok(b);
        }
        let _one = self.inner.fetching.lock().await;
        if let Some(b) = self.cached() {
            return Ok(b);
        }
        match self.fetch().await {
            Ok(b) => {
                tracing::debug!(lifetime = ?b.lifetime, renew_in = ?b.renew_at.saturating_duration_since(Instant::now()), "new OAuth2 access token");
                *self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner) = Some(b.clone());
                Ok(b)
            }
            Err(p) => {
                tracing::warn!(side = side.as_str(), problem = p.code(), error = %p, "no OAuth2 access token");
                self.report(side, Err(&p)).await;
                Err(p)
            }
        }
    }

    /// [`Tokens::bearer`] for the blocking IMAP thread (never from async code).
    pub fn bearer_blocking(&self, side: Side) -> Result<Bearer, AuthProblem> {
        self.inner.runtime.block_on(self.bearer(side))
    }

    fn cached(&self) -> Option<Bearer> {
        self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner).clone().filter(Bearer::fresh)
    }

    /// Drops the cached token: the server said it expired (Exchange's `BYE Session
    /// invalidated - AccessTokenExpired`), so the next login fetches a new one.
    pub fn forget(&self) {
        self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// Records whether a login with a token worked on `side`, for `outreach status` and
    /// the alert. A success is written at most once a minute.
    pub async fn report(&self, side: Side, result: Result<(), &AuthProblem>) {
        let ok = result.is_ok();
        {
            let mut last = self.inner.reported.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = &mut last[side as usize];
            if ok && slot.is_some_and(|(was_ok, at)| was_ok && at.elapsed() < Duration::from_secs(60)) {
                return;
            }
            *slot = Some((ok, Instant::now()));
        }
        let now = self.inner.clock.now();
        let failed = result.err().map(|p| (p.code(), p.to_string()));
        let written = self
            .inner
            .db
            .run(move |db| match failed {
                None => db.store().oauth2_login_ok(side.as_str(), now),
                Some((code, detail)) => db.store().oauth2_login_failed(side.as_str(), code, &detail, now),
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %format!("{e:#}"), "could not record the login state");
        }
    }

    /// [`Tokens::report`] for the blocking IMAP thread.
    pub fn report_blocking(&self, side: Side, result: Result<(), &AuthProblem>) {
        self.inner.runtime.block_on(self.report(side, result));
    }

    /// A new access token from the endpoint (client credentials, or the stored refresh
    /// token, whose rotated successor is saved before this returns).
    async fn fetch(&self) -> Result<Bearer, AuthProblem> {
        let i = &self.inner;
        let started = Instant::now();
        let response = match i.flow {
            Flow::ClientCredentials => i
                .client
                .exchange_client_credentials()
                .map_err(unset)?
                .add_scopes(i.scopes.clone())
                .request_async(&i.http)
                .await
                .map_err(|e| token_error(e, i.flow))?,
            Flow::DeviceCode => {
                let stored = i.db.run(|db| db.store().oauth2_refresh_token()).await.map_err(store_problem)?;
                let refresh = match stored {
                    Some((app, token)) if app == i.app => RefreshToken::new(token),
                    Some(_) => {
                        return Err(AuthProblem::new(
                            ProblemKind::NotLoggedIn,
                            "the stored login is for another app or endpoint",
                        ));
                    }
                    None => return Err(AuthProblem::new(ProblemKind::NotLoggedIn, "")),
                };
                let r = i
                    .client
                    .exchange_refresh_token(&refresh)
                    .map_err(unset)?
                    .add_scopes(i.scopes.clone())
                    .request_async(&i.http)
                    .await
                    .map_err(|e| token_error(e, i.flow))?;
                if let Some(next) = r.refresh_token() {
                    self.save_refresh_token(next.secret().clone()).await.map_err(store_problem)?;
                }
                r
            }
        };
        let lifetime = response.expires_in().unwrap_or(DEFAULT_LIFETIME);
        Ok(Bearer::new(response.access_token().secret().clone(), lifetime, started))
    }

    async fn save_refresh_token(&self, token: String) -> anyhow::Result<()> {
        let (app, now) = (self.inner.app.clone(), self.inner.clock.now());
        self.inner.db.run(move |db| db.store().save_oauth2_refresh_token(&app, &token, now)).await?;
        tracing::debug!("saved the rotated OAuth2 refresh token");
        Ok(())
    }
}

/// The `oauth2` client for the settings: the endpoints, the client id and the secret (sent
/// in the request body, as Entra and Google both take it).
fn client(settings: &Settings, e: &OAuth2Endpoints) -> anyhow::Result<Client> {
    let o = &settings.oauth2;
    let token_url = TokenUrl::new(e.token_url.clone()).context("key `oauth2.token_url`: not a URL")?;
    let device_url = e
        .device_url
        .clone()
        .map(DeviceAuthorizationUrl::new)
        .transpose()
        .context("key `oauth2.device_url`: not a URL")?;
    let mut c = BasicClient::new(ClientId::new(o.client_id.trim().to_string()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri_option(Some(token_url))
        .set_device_authorization_url_option(device_url);
    if let Some(s) = o.client_secret.as_ref().filter(|s| !s.expose_secret().is_empty()) {
        c = c.set_client_secret(ClientSecret::new(s.expose_secret().to_string()));
    }
    Ok(c)
}

/// The HTTP client: rustls, no redirects (RFC 6749 section 3.1), bounded in time.
fn http_client() -> anyhow::Result<Http> {
    ::oauth2::reqwest::ClientBuilder::new()
        .redirect(::oauth2::reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .context("Failed to set up the HTTP client for OAuth2")
}

fn app_key(e: &OAuth2Endpoints, client_id: &str) -> String {
    format!("{} {}", e.token_url, client_id.trim())
}

/// An endpoint the flow needs is not set (the config checks prevent it).
fn unset(e: ::oauth2::ConfigurationError) -> AuthProblem {
    AuthProblem::new(ProblemKind::TokenRefused, e.to_string())
}

fn store_problem(e: anyhow::Error) -> AuthProblem {
    AuthProblem::new(ProblemKind::TokenRefused, format!("the database failed: {e:#}"))
}

/// What a token endpoint's refusal means. Only the endpoint's error code and description
/// are kept: a response body that is not an error could hold a token.
fn token_error<T: ::oauth2::ErrorResponse + ErrorParts>(
    e: RequestTokenError<HttpClientError<::oauth2::reqwest::Error>, T>,
    flow: Flow,
) -> AuthProblem {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let (code, description) = r.parts();
            let said = match &description {
                Some(d) => format!("{code}: {d}"),
                None => code.clone(),
            };
            AuthProblem::known(&said).unwrap_or_else(|| {
                let kind = match code.as_str() {
                    "invalid_grant" if flow == Flow::DeviceCode => ProblemKind::LoginRevoked,
                    "invalid_scope" => ProblemKind::WrongScope,
                    "access_denied" | "consent_required" => ProblemKind::ConsentMissing,
                    _ => ProblemKind::TokenRefused,
                };
                AuthProblem::new(kind, said)
            })
        }
        RequestTokenError::Request(e) => AuthProblem::new(ProblemKind::Unreachable, error_chain(&e)),
        RequestTokenError::Parse(_, _) => {
            AuthProblem::new(ProblemKind::TokenRefused, "its answer was not a token response (a proxy or wrong URL?)")
        }
        RequestTokenError::Other(s) => AuthProblem::new(ProblemKind::TokenRefused, s),
    }
}

/// The error code and description of a token endpoint's error response.
trait ErrorParts {
    fn parts(&self) -> (String, Option<String>);
}

impl ErrorParts for BasicErrorResponse {
    fn parts(&self) -> (String, Option<String>) {
        (self.error().as_ref().to_string(), self.error_description().cloned())
    }
}

impl ErrorParts for ::oauth2::DeviceCodeErrorResponse {
    fn parts(&self) -> (String, Option<String>) {
        (self.error().as_ref().to_string(), self.error_description().cloned())
    }
}

/// An error and its causes on one line (a request's URL is the endpoint's, no secret).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// What `outreach login` shows a person: where to go and which code to type.
#[derive(Debug, Clone)]
pub struct DevicePrompt {
    pub url: String,
    pub code: String,
    /// The URL with the code in it, when the endpoint gives one.
    pub url_with_code: Option<String>,
    pub expires_in: Duration,
}

/// `outreach login`: a device-code login. Asks the endpoint for a code, hands it to
/// `show`, waits until the person has logged in (or the code expires), and keeps the
/// refresh token in the database.
pub async fn login(settings: &Settings, clock: Clock, show: impl FnOnce(&DevicePrompt)) -> anyhow::Result<()> {
    let o = &settings.oauth2;
    if !settings.uses_oauth2() {
        anyhow::bail!("imap.auth and smtp.auth are not \"oauth2\": there is nothing to log in to");
    }
    if o.flow != Flow::DeviceCode {
        anyhow::bail!(
            "oauth2.flow is \"client_credentials\": the app logs in with its secret, no person needs to (set flow = \"device_code\" for a person's login)"
        );
    }
    let endpoints = o.endpoints()?;
    let db = Shared::new(Db::open(&settings.database.path)?);
    let tokens = Tokens::new(settings, db, clock)?;
    let i = &tokens.inner;
    let details: StandardDeviceAuthorizationResponse = i
        .client
        .exchange_device_code()
        .map_err(unset)?
        .add_scopes(i.scopes.clone())
        .request_async(&i.http)
        .await
        .map_err(|e| token_error(e, Flow::DeviceCode))?;
    show(&DevicePrompt {
        url: details.verification_uri().to_string(),
        code: details.user_code().secret().clone(),
        url_with_code: details.verification_uri_complete().map(|u| u.secret().clone()),
        expires_in: details.expires_in(),
    });
    let token = i
        .client
        .exchange_device_access_token(&details)
        .map_err(unset)?
        .request_async(&i.http, tokio::time::sleep, None)
        .await
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(r) if r.error().as_ref() == "expired_token" => anyhow::anyhow!(
                "the code expired before the login was done: run `outreach login` again and log in within {} minutes",
                details.expires_in().as_secs() / 60
            ),
            RequestTokenError::ServerResponse(r) if r.error().as_ref() == "access_denied" => {
                anyhow::anyhow!("the login was refused in the browser: run `outreach login` again")
            }
            e => anyhow::Error::new(token_error(e, Flow::DeviceCode)),
        })?;
    let refresh = token.refresh_token().ok_or_else(|| {
        anyhow::anyhow!(
            "the login worked but gave no refresh token, so it cannot be kept: add offline_access to oauth2.scope ({})",
            endpoints.scopes.join(" ")
        )
    })?;
    tokens.save_refresh_token(refresh.secret().clone()).await?;
    tracing::info!("device-code login stored");
    Ok(())
}

/// What [`check`] found: a token could be had, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub provider: Provider,
    pub flow: Flow,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// How long the new token is valid.
    pub valid_for: Duration,
    /// Device code: a login is stored (it was used, and rotated, for this token).
    pub refresh_token_stored: bool,
}

/// Fetches one access token with the settings, for `outreach doctor`: `Ok` with what was
/// found, or the problem in plain words ([`AuthProblem`]'s `Display` says what to fix).
/// With the device-code flow this uses (and so rotates) the stored login. Records no
/// login state; needs the tokio runtime.
pub async fn check(settings: &Settings) -> Result<TokenInfo, AuthProblem> {
    let o = &settings.oauth2;
    let setup = |e: anyhow::Error| AuthProblem::new(ProblemKind::TokenRefused, format!("{e:#}"));
    let endpoints = o.endpoints().map_err(setup)?;
    let provider = o.provider.ok_or_else(|| AuthProblem::new(ProblemKind::TokenRefused, "no oauth2.provider"))?;
    let db = Shared::new(Db::open(&settings.database.path).map_err(setup)?);
    let tokens = Tokens::new(settings, db, Clock::system()).map_err(setup)?;
    let bearer = tokens.fetch().await?;
    Ok(TokenInfo {
        provider,
        flow: o.flow,
        token_url: endpoints.token_url,
        scopes: endpoints.scopes,
        valid_for: bearer.lifetime,
        refresh_token_stored: o.flow == Flow::DeviceCode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_a_quarter_of_its_life_early_at_most_five_minutes() {
        assert_eq!(renew_margin(Duration::from_secs(20)), Duration::from_secs(5));
        assert_eq!(renew_margin(Duration::from_secs(3600)), Duration::from_secs(300));
        let now = Instant::now();
        let b = Bearer::new("s3cr3t-value".into(), Duration::from_secs(60), now);
        assert_eq!(b.renew_at, now + Duration::from_secs(45));
        assert!(!format!("{b:?}").contains("s3cr3t"), "a bearer prints redacted");
        assert_eq!(b.xoauth2("contact@example.org"), "user=contact@example.org\x01auth=Bearer s3cr3t-value\x01\x01");
    }
}
