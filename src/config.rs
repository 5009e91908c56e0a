//! Settings: one TOML file, every key overridable by `OUTREACH_<SECTION>__<KEY>`.
//!
//! Loading is a figment of two layers, `file <- environment`, extracted into typed
//! `Settings` and then validated. Every error names the key and what was expected (and
//! the environment variable, when the value came from one), so an operator can fix it
//! without reading code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::domain::EmailAddress;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "OUTREACH_";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    #[serde(default)]
    pub filing: FilingSettings,
    #[serde(default)]
    pub autoreply: AutoReplySettings,
    #[serde(default)]
    pub coordinator: CoordinatorSettings,
    #[serde(default)]
    pub templates: TemplateSettings,
    #[serde(default)]
    pub newsletter: NewsletterSettings,
    #[serde(default)]
    pub web: WebSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub trust: TrustSettings,
    /// Signs the tokens in confirm and unsubscribe links (HMAC-SHA256). Give it from the
    /// environment in production (`OUTREACH_SECRET`); at least 32 characters. When it is
    /// missing, a random secret is generated once and kept in the database.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// A file that holds `secret` (e.g. a systemd credential, `%d/secret`); read at start
    /// and wins over `secret`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Path of the SQLite file; created when missing.
    pub path: PathBuf,
}

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain TCP. Only when configured explicitly (a local relay or test stack).
    None,
    /// Plain TCP upgraded with STARTTLS before login; fails when the server lacks it.
    Starttls,
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    /// Required unless `password_file` is given.
    #[serde(default = "no_secret")]
    pub password: SecretString,
    /// A file that holds the password (e.g. a systemd credential: `%d/imap-password`);
    /// read at start, wins over `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Use IMAP IDLE when the server offers it; poll otherwise.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// Seconds between polls when IDLE is off or unavailable.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: u64,
    /// Seconds after which an IDLE is re-issued (RFC 2177 asks for less than 29 minutes).
    #[serde(default = "default_idle_refresh")]
    pub idle_refresh: u64,
    /// Messages larger than this many bytes are filed for review without downloading them.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    /// A file that holds the password (e.g. `%d/smtp-password`); wins over `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The From of every mail we send, e.g. `"Netwerk Met Andere Ogen <contact@example.org>"`.
    pub from: String,
    /// Envelope sender (MAIL FROM) of auto-replies. Empty means the null sender `<>`
    /// (RFC 3834); set an address when the relay refuses the null sender.
    #[serde(default)]
    pub envelope_from: String,
    /// Pooled SMTP connections and concurrent deliveries.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Seconds before an SMTP command times out.
    #[serde(default = "default_smtp_timeout")]
    pub timeout: u64,
    /// Delivery attempts on temporary failures (4xx, connection errors) before giving up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay in seconds; doubles with each attempt (with jitter), capped at 1 hour.
    #[serde(default = "default_retry_base")]
    pub retry_base: u64,
}

/// IMAP folder per category. Defaults are Dutch: the coordinator reads them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilingSettings {
    pub join: String,
    pub question: String,
    pub unsubscribe: String,
    pub automatic: String,
    pub bounce: String,
    pub review: String,
    /// Stories sent in by ambassadors ("Verhaal: ..." / "Story: ...").
    pub story: String,
}

impl FilingSettings {
    /// Every folder with the key that names it.
    pub fn keyed(&self) -> [(&'static str, &str); 7] {
        [
            ("filing.join", &self.join),
            ("filing.question", &self.question),
            ("filing.unsubscribe", &self.unsubscribe),
            ("filing.automatic", &self.automatic),
            ("filing.bounce", &self.bounce),
            ("filing.review", &self.review),
            ("filing.story", &self.story),
        ]
    }
}

impl Default for FilingSettings {
    fn default() -> Self {
        Self {
            join: "Aanmeldingen".into(),
            question: "Vragen".into(),
            unsubscribe: "Afmeldingen".into(),
            automatic: "Automatisch".into(),
            bounce: "Automatisch".into(),
            review: "Te beoordelen".into(),
            story: "Verhalen".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoReplySettings {
    /// Send auto-replies at all.
    pub enabled: bool,
    /// At most one auto-reply per receiving address per this many hours.
    pub window_hours: u64,
    /// Circuit breaker: at most this many such mails per hour in total.
    pub max_per_hour: u64,
    /// At most this many such mails per hour to the addresses of one domain.
    pub max_per_domain_per_hour: u64,
    /// More addresses that are ours (aliases); mail from them is never answered.
    #[serde(deserialize_with = "list")]
    pub own_addresses: Vec<String>,
}

impl Default for AutoReplySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window_hours: 24,
            max_per_hour: 100,
            max_per_domain_per_hour: 30,
            own_addresses: Vec::new(),
        }
    }
}

/// Whom to believe about a mail's sender.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustSettings {
    /// The authserv-id of the server that receives our mail (RFC 8601), e.g.
    /// `mx.example.org`: its own `Authentication-Results` header is read, every other
    /// instance ignored; mail that fails DMARC for its From domain is never answered and
    /// never acts. Unset: no such header is read.
    pub authserv_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorSettings {
    /// Where notices for the coordinator go (e.g. the circuit breaker tripped).
    pub address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateSettings {
    /// A folder with templates that override the built-in ones, file by file.
    pub dir: Option<PathBuf>,
}

/// What to do with a proof nobody answered before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProofDeadlineAction {
    Send,
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewsletterSettings {
    /// When issues are made: a cron expression (`sec min hour day month weekday`, or the
    /// usual five fields without seconds), in `timezone`. Empty: no schedule.
    pub schedule: String,
    /// IANA time zone of the schedule, e.g. `Europe/Amsterdam`.
    pub timezone: String,
    /// At most this many approved stories per issue.
    pub max_stories: u32,
    /// Sending rate in messages per minute; 0 = as fast as the relay takes them.
    pub rate_per_minute: u32,
    /// SMTP transactions at the same time while sending an issue.
    pub concurrency: u32,
    /// Mail a proof of each scheduled issue to the coordinator first; it goes out when approved.
    pub proof: bool,
    /// Hours a proof waits for an answer.
    pub proof_deadline_hours: u64,
    /// What happens to an unanswered proof at its deadline: `send` or `drop`.
    pub proof_deadline_action: ProofDeadlineAction,
    /// `List-Id` of the newsletter (RFC 2919), e.g. `Nieuwsbrief <nieuwsbrief.example.org>`.
    /// Empty: derived from the From address.
    pub list_id: String,
    /// Envelope sender of newsletters; bounces come back here. Empty: the From address.
    pub bounce_address: String,
    /// Tag the bounce address per delivery (`contact+b-TOKEN@...`); needs plus addressing.
    pub plus_addressing: bool,
    /// Issues in a row with a soft bounce after which a subscriber counts as bounced.
    pub soft_bounce_limit: u32,
    /// The newsletter's name, in subjects and pages.
    pub title: String,
}

impl Default for NewsletterSettings {
    fn default() -> Self {
        Self {
            schedule: "0 0 10 1 * *".into(),
            timezone: "Europe/Amsterdam".into(),
            max_stories: 3,
            rate_per_minute: 0,
            concurrency: 4,
            proof: true,
            proof_deadline_hours: 48,
            proof_deadline_action: ProofDeadlineAction::Drop,
            list_id: String::new(),
            bounce_address: String::new(),
            plus_addressing: true,
            soft_bounce_limit: 3,
            title: "Nieuwsbrief Netwerk Met Andere Ogen".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Address the web endpoints (confirm, unsubscribe, archive) listen on. Not set: the
    /// default, and a daemon that finds it taken runs without them (with a warning).
    pub listen: Option<String>,
    /// The public URL of those endpoints, used in links in mail.
    pub base_url: String,
}

/// How long personal data is kept (AVG/GDPR, MAIL-RULES 6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Sign-ups never confirmed are deleted after this many days.
    pub unconfirmed_days: u32,
    /// After this many days the text of filed mail and the bytes of sent mail are removed
    /// from the store (what was filed, when and why stays). 0 keeps them.
    pub filed_mail_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { unconfirmed_days: 30, filed_mail_days: 0 }
    }
}

/// Where the web endpoints listen when `web.listen` is not set.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8080";

impl Default for WebSettings {
    fn default() -> Self {
        Self { listen: None, base_url: "http://127.0.0.1:8080".into() }
    }
}

impl WebSettings {
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or(DEFAULT_WEB_LISTEN)
    }
}

fn no_secret() -> SecretString {
    SecretString::from("")
}
fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_true() -> bool {
    true
}
fn default_poll_interval() -> u64 {
    60
}
fn default_idle_refresh() -> u64 {
    600
}
fn default_max_message_size() -> u64 {
    25 * 1024 * 1024
}
fn default_pool_size() -> u32 {
    4
}
fn default_smtp_timeout() -> u64 {
    30
}
fn default_max_attempts() -> u32 {
    10
}
fn default_retry_base() -> u64 {
    30
}

impl Settings {
    /// Reads `path`, applies `OUTREACH_*` overrides from `env`, and validates.
    pub fn load(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("Failed to read config file {}", path.display()))?;
        Self::from_toml(&text, env).with_context(|| format!("Invalid config file {}", path.display()))
    }

    /// Parses settings from TOML text plus environment overrides.
    pub fn from_toml(text: &str, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let credentials = env
            .iter()
            .find(|(k, _)| k == CREDENTIALS_DIRECTORY)
            .map(|(_, v)| PathBuf::from(v))
            .filter(|d| d.is_absolute());
        let mut settings: Settings =
            Figment::from(Toml::string(text)).merge(EnvOverrides::new(env)).extract_lossy().map_err(explain)?;
        settings.read_secret_files(credentials.as_deref())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads the secrets given as files (`imap.password_file`, `smtp.password_file`,
    /// `secret_file`): a file wins over the key itself. A relative path names a systemd
    /// credential, read from `credentials` (`$CREDENTIALS_DIRECTORY`) when that is set; a
    /// credential that was not given (no such file there) gives nothing, and neither does
    /// an empty file: the key in the config file counts then.
    fn read_secret_files(&mut self, credentials: Option<&Path>) -> anyhow::Result<()> {
        let read = |key: &str, file: &Path| match credentials {
            Some(dir) if file.is_relative() && !dir.join(file).exists() => Ok(None),
            Some(dir) if file.is_relative() => read_secret_file(key, &dir.join(file)),
            _ => read_secret_file(key, file),
        };
        if let Some(file) = &self.imap.password_file
            && let Some(p) = read("imap.password_file", file)?
        {
            self.imap.password = p;
        }
        if let Some(file) = &self.smtp.password_file
            && let Some(p) = read("smtp.password_file", file)?
        {
            self.smtp.password = Some(p);
        }
        if let Some(file) = &self.secret_file
            && let Some(p) = read("secret_file", file)?
        {
            self.secret = Some(p);
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (key, host) in [("imap.host", &self.imap.host), ("smtp.host", &self.smtp.host)] {
            if host.trim().is_empty() {
                bail!("key `{key}`: expected a host name or IP address, found an empty string");
            }
        }
        for (key, port) in [("imap.port", self.imap.port), ("smtp.port", self.smtp.port)] {
            if port == 0 {
                bail!("key `{key}`: expected a port between 1 and 65535, found 0");
            }
        }
        if self.imap.username.is_empty() {
            bail!("key `imap.username`: expected the login name of the contact mailbox");
        }
        if self.imap.password.expose_secret().is_empty() {
            bail!(
                "key `imap.password`: expected the mailbox password, or `imap.password_file` naming a file that holds it"
            );
        }
        self.from_mailbox()?;
        if !self.smtp.envelope_from.is_empty() {
            EmailAddress::parse(&self.smtp.envelope_from)
                .map_err(|e| anyhow::anyhow!("key `smtp.envelope_from`: {e}"))?;
        }
        if let Some(addr) = &self.coordinator.address {
            EmailAddress::parse(addr).map_err(|e| anyhow::anyhow!("key `coordinator.address`: {e}"))?;
        }
        for a in &self.autoreply.own_addresses {
            EmailAddress::parse(a).map_err(|e| anyhow::anyhow!("key `autoreply.own_addresses`: {e}"))?;
        }
        for (key, v) in [
            ("imap.poll_interval", self.imap.poll_interval),
            ("imap.idle_refresh", self.imap.idle_refresh),
            ("smtp.timeout", self.smtp.timeout),
            ("autoreply.window_hours", self.autoreply.window_hours),
        ] {
            if v == 0 {
                bail!("key `{key}`: expected a number greater than 0");
            }
        }
        if self.imap.idle_refresh >= 29 * 60 {
            bail!(
                "key `imap.idle_refresh`: expected fewer than 1740 seconds (RFC 2177: re-issue IDLE before 29 minutes)"
            );
        }
        if self.smtp.pool_size == 0 || self.smtp.max_attempts == 0 {
            bail!("keys `smtp.pool_size` and `smtp.max_attempts`: expected a number greater than 0");
        }
        let f = &self.filing;
        // Every folder but the story folder, which may be empty (checked below).
        for (key, folder) in f.keyed().into_iter().filter(|(key, _)| *key != "filing.story") {
            if folder.trim().is_empty() || folder.contains(['*', '%', '"', '\\', '\r', '\n']) {
                bail!("key `{key}`: expected a folder name without * % \" \\ or line breaks, found {folder:?}");
            }
            if folder.eq_ignore_ascii_case(&self.imap.mailbox) {
                bail!("key `{key}`: the folder must differ from the watched mailbox `{}`", self.imap.mailbox);
            }
        }
        if !f.story.trim().is_empty() && f.story.contains(['*', '%', '"', '\\', '\r', '\n']) {
            bail!("key `filing.story`: expected a folder name without * % \" \\ or line breaks, found {:?}", f.story);
        }
        self.validate_newsletter()?;
        for (key, file) in [("imap.ca_file", &self.imap.ca_file), ("smtp.ca_file", &self.smtp.ca_file)] {
            if let Some(file) = file
                && !file.is_file()
            {
                bail!("key `{key}`: expected a PEM file with a CA certificate, {} does not exist", file.display());
            }
        }
        Ok(())
    }

    fn validate_newsletter(&self) -> anyhow::Result<()> {
        let n = &self.newsletter;
        n.timezone()?;
        if !n.schedule.trim().is_empty() {
            parse_cron(&n.schedule).map_err(|e| anyhow::anyhow!("key `newsletter.schedule`: {e}"))?;
        }
        if n.concurrency == 0 || n.max_stories == 0 || n.soft_bounce_limit == 0 || n.proof_deadline_hours == 0 {
            bail!(
                "keys `newsletter.concurrency`, `newsletter.max_stories`, `newsletter.soft_bounce_limit` and `newsletter.proof_deadline_hours`: expected a number greater than 0"
            );
        }
        if !n.bounce_address.is_empty() {
            EmailAddress::parse(&n.bounce_address)
                .map_err(|e| anyhow::anyhow!("key `newsletter.bounce_address`: {e}"))?;
        }
        if !(n.list_id.is_empty() || n.list_id.contains('<') && n.list_id.ends_with('>')) {
            bail!("key `newsletter.list_id`: expected `Name <id.example.org>`, found {:?}", n.list_id);
        }
        self.web
            .listen()
            .parse::<std::net::SocketAddr>()
            .map_err(|e| anyhow::anyhow!("key `web.listen`: expected an address like 127.0.0.1:8080: {e}"))?;
        let base = self.web.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) || base.contains(['"', '<', '>', ' ']) {
            bail!("key `web.base_url`: expected an http(s) URL like https://nieuwsbrief.example.org, found {base:?}");
        }
        if let Some(s) = &self.secret
            && s.expose_secret().len() < 32
        {
            bail!("key `secret`: expected at least 32 characters (e.g. from `openssl rand -hex 32`)");
        }
        Ok(())
    }

    /// The public base URL without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.web.base_url.trim_end_matches('/')
    }

    /// The From mailbox of every mail we send.
    pub fn from_mailbox(&self) -> anyhow::Result<lettre::message::Mailbox> {
        self.smtp.from.parse().map_err(|e| {
            anyhow::anyhow!("key `smtp.from`: expected an address like \"Netwerk <contact@example.org>\": {e}")
        })
    }

    /// Every address that is ours: mail from them is never answered.
    pub fn own_addresses(&self) -> Vec<EmailAddress> {
        let mut out = Vec::new();
        if let Ok(m) = self.from_mailbox()
            && let Ok(a) = EmailAddress::parse(m.email.as_ref())
        {
            out.push(a);
        }
        if let Ok(a) = EmailAddress::parse(&self.imap.username) {
            out.push(a);
        }
        out.extend(self.autoreply.own_addresses.iter().filter_map(|a| EmailAddress::parse(a).ok()));
        out
    }
}

/// The secret in `file`, without one trailing line break (`echo secret > file` adds it);
/// `None` when the file is empty.
fn read_secret_file(key: &str, file: &Path) -> anyhow::Result<Option<SecretString>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("key `{key}`: cannot read {}: {e}", file.display()))?;
    let secret = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok((!secret.is_empty()).then(|| SecretString::from(secret.to_string())))
}

/// The variable systemd sets to the folder of a service's credentials (`LoadCredential=`).
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Name of the environment layer in figment's metadata.
const ENV_SOURCE: &str = "environment variable";

/// The environment layer: the `OUTREACH_<SECTION>__<KEY>` and `OUTREACH_SECRET` variables
/// among the given ones, by name without the prefix. Other `OUTREACH_*` variables
/// (`OUTREACH_CONFIG`, `OUTREACH_LOG_JSON`, ...) are not config keys and are left out.
///
/// Unlike figment's `Env`, it takes the variables as given (tests pass their own) and
/// keeps every value a string: `extract_lossy` reads numbers and booleans from strings,
/// and a password of digits stays a password.
struct EnvOverrides(BTreeMap<String, String>);

impl EnvOverrides {
    fn new(env: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            env.into_iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(ENV_PREFIX)?.to_string(), v)))
                .filter(|(k, _)| k == "SECRET" || k == "SECRET_FILE" || k.contains("__"))
                .collect(),
        )
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE).interpolater(|_: &Profile, keys: &[&str]| match keys {
            [section] if !section.starts_with("secret") => format!("{ENV_PREFIX}{}__*", section.to_ascii_uppercase()),
            _ => format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase()),
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        let mut sections: BTreeMap<String, Dict> = BTreeMap::new();
        for (name, value) in &self.0 {
            if name == "SECRET" || name == "SECRET_FILE" {
                root.insert(name.to_ascii_lowercase(), value.as_str().into());
                continue;
            }
            let Some((section, key)) = name.split_once("__").filter(|(s, k)| !s.is_empty() && !k.is_empty()) else {
                return Err(
                    format!("environment variable {ENV_PREFIX}{name}: expected {ENV_PREFIX}<SECTION>__<KEY>").into()
                );
            };
            let section = sections.entry(section.to_ascii_lowercase()).or_default();
            section.insert(key.to_ascii_lowercase(), value.as_str().into());
        }
        root.extend(sections.into_iter().map(|(section, keys)| (section, keys.into())));
        Ok(Profile::Default.collect(root))
    }
}

/// Renders figment's errors one a line, each naming the key and, when the value came from
/// the environment, the variable: ``key `imap.port` (environment variable OUTREACH_IMAP__PORT): ...``.
fn explain(error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let var = match (&e.metadata, &e.profile, &e.kind) {
                (_, _, figment::error::Kind::MissingField(_)) => None,
                (Some(md), Some(profile), _) if md.name == ENV_SOURCE && !e.path.is_empty() => {
                    Some(md.interpolate(profile, &e.path))
                }
                _ => None,
            };
            let what = e.kind.to_string();
            let what = what.trim_end();
            match var {
                Some(var) => format!("key `{key}` ({ENV_SOURCE} {var}): {what}"),
                None if key.is_empty() => what.to_string(),
                None => format!("key `{key}`: {what}"),
            }
        })
        .collect();
    anyhow::anyhow!(lines.join("\n"))
}

/// Deserializes a list from an array (TOML) or a comma-separated string (environment).
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of strings, or one string with the items separated by commas")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// The expression with a seconds field: five-field crons get `0` seconds.
pub fn normalize_cron(expr: &str) -> String {
    let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
    if expr.split(' ').count() == 5 { format!("0 {expr}") } else { expr }
}

/// Parses a cron expression (`newsletter.schedule`) the way the scheduler does.
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(&normalize_cron(expr))
        .map_err(|e| format!("expected a cron expression like \"0 0 10 1 * *\" (sec min hour day month weekday): {e}"))
}

impl NewsletterSettings {
    pub fn timezone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.timezone.parse().map_err(|_| {
            anyhow::anyhow!(
                "key `newsletter.timezone`: expected an IANA time zone like Europe/Amsterdam, found {:?}",
                self.timezone
            )
        })
    }
}

/// The commented example config that `outreach init` writes.
pub const EXAMPLE: &str = include_str!("../deploy/config.example.toml");

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The smallest valid config (no secret, no coordinator): for tests here and elsewhere.
    pub(crate) const MINIMAL: &str = r#"
[database]
path = "/tmp/x.db"
[imap]
host = "127.0.0.1"
port = 1143
security = "none"
username = "contact@example.org"
password = "secret"
[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
from = "Netwerk <contact@example.org>"
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn newsletter_keys_are_checked_and_the_secret_comes_from_the_environment() {
        let s = Settings::from_toml(MINIMAL, env(&[])).unwrap();
        assert_eq!(s.newsletter.timezone, "Europe/Amsterdam");
        assert!(s.newsletter.proof);
        assert_eq!(s.filing.story, "Verhalen");
        assert!(s.secret.is_none());
        let err = |pairs: &[(&str, &str)]| format!("{:#}", Settings::from_toml(MINIMAL, env(pairs)).unwrap_err());
        assert!(err(&[("OUTREACH_NEWSLETTER__TIMEZONE", "Mars/Olympus")]).contains("newsletter.timezone"));
        assert!(err(&[("OUTREACH_NEWSLETTER__SCHEDULE", "elke maandag")]).contains("newsletter.schedule"));
        assert!(err(&[("OUTREACH_NEWSLETTER__CONCURRENCY", "0")]).contains("newsletter.concurrency"));
        assert!(err(&[("OUTREACH_WEB__LISTEN", "overal")]).contains("web.listen"));
        assert!(err(&[("OUTREACH_WEB__BASE_URL", "ftp://x")]).contains("web.base_url"));
        assert!(err(&[("OUTREACH_SECRET", "kort")]).contains("secret"));
        assert!(err(&[("OUTREACH_NEWSLETTER__PROOF_DEADLINE_ACTION", "maybe")]).contains("proof_deadline_action"));
        let s = Settings::from_toml(MINIMAL, env(&[("OUTREACH_SECRET", &"x".repeat(40))])).unwrap();
        assert_eq!(s.secret.as_ref().unwrap().expose_secret().len(), 40);
    }

    #[test]
    fn minimal_config_gets_dutch_defaults() {
        let s = Settings::from_toml(MINIMAL, env(&[])).unwrap();
        assert_eq!(s.filing.join, "Aanmeldingen");
        assert_eq!(s.filing.review, "Te beoordelen");
        assert_eq!(s.autoreply.window_hours, 24);
        assert_eq!(s.autoreply.max_per_hour, 100);
        assert!(s.imap.idle);
        assert_eq!(s.imap.mailbox, "INBOX");
    }

    #[test]
    fn environment_overrides_any_key_with_type_conversion() {
        let s = Settings::from_toml(
            MINIMAL,
            env(&[
                ("OUTREACH_IMAP__PASSWORD", "12345"),
                ("OUTREACH_IMAP__PORT", "1993"),
                ("OUTREACH_IMAP__IDLE", "false"),
                ("OUTREACH_AUTOREPLY__MAX_PER_HOUR", "5000"),
                ("OUTREACH_CONFIG", "/x"),
            ]),
        )
        .unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(s.imap.password.expose_secret(), "12345");
        assert_eq!(s.imap.port, 1993);
        assert!(!s.imap.idle);
        assert_eq!(s.autoreply.max_per_hour, 5000);
    }

    #[test]
    fn missing_key_is_named() {
        let text = MINIMAL.replace("host = \"127.0.0.1\"\nport = 1143", "port = 1143");
        let err = format!("{:#}", Settings::from_toml(&text, env(&[])).unwrap_err());
        assert!(err.contains("imap") && err.contains("host"), "{err}");
    }

    #[test]
    fn wrong_value_is_named_with_expectation() {
        let err = format!("{:#}", Settings::from_toml(MINIMAL, env(&[("OUTREACH_IMAP__PORT", "abc")])).unwrap_err());
        assert!(err.contains("imap.port") && err.contains("abc"), "{err}");
        let err = format!(
            "{:#}",
            Settings::from_toml(
                &MINIMAL.replace("security = \"none\"\nusername", "security = \"ssl\"\nusername"),
                env(&[])
            )
            .unwrap_err()
        );
        assert!(err.contains("imap.security") && err.contains("starttls"), "{err}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = format!(
            "{:#}",
            Settings::from_toml(&format!("{MINIMAL}\n[filing]\nquestions = \"X\"\n"), env(&[])).unwrap_err()
        );
        assert!(err.contains("questions"), "{err}");
    }

    #[test]
    fn bad_from_address_is_named() {
        let err = format!(
            "{:#}",
            Settings::from_toml(MINIMAL, env(&[("OUTREACH_SMTP__FROM", "not an address")])).unwrap_err()
        );
        assert!(err.contains("smtp.from"), "{err}");
    }

    #[test]
    fn example_config_is_valid() {
        Settings::from_toml(EXAMPLE, env(&[])).unwrap();
    }

    #[test]
    fn the_readme_environment_examples_override_the_file() {
        let vars = [
            ("OUTREACH_IMAP__PASSWORD", "from-the-environment"),
            ("OUTREACH_SMTP__PORT", "587"),
            ("OUTREACH_AUTOREPLY__OWN_ADDRESSES", "info@example.org,secretariaat@example.org"),
        ];
        let with_key = format!("{MINIMAL}[autoreply]\nown_addresses = [\"oud@example.org\"]\n");
        for text in [MINIMAL, with_key.as_str()] {
            let s = Settings::from_toml(text, env(&vars)).unwrap();
            assert_eq!(s.imap.password.expose_secret(), "from-the-environment");
            assert_eq!(s.smtp.port, 587);
            assert_eq!(s.autoreply.own_addresses, ["info@example.org", "secretariaat@example.org"]);
        }
    }

    #[test]
    fn a_list_is_an_array_in_the_file_and_its_items_are_our_addresses() {
        let text = format!("{MINIMAL}[autoreply]\nown_addresses = [\"info@example.org\", \"bestuur@example.org\"]\n");
        let s = Settings::from_toml(&text, env(&[])).unwrap();
        assert_eq!(s.autoreply.own_addresses, ["info@example.org", "bestuur@example.org"]);
        assert!(s.own_addresses().iter().any(|a| a.as_str() == "bestuur@example.org"));
        let s = Settings::from_toml(
            MINIMAL,
            env(&[("OUTREACH_AUTOREPLY__OWN_ADDRESSES", " a@example.org , ,b@example.org ")]),
        )
        .unwrap();
        assert_eq!(s.autoreply.own_addresses, ["a@example.org", "b@example.org"]);
        let err = format!(
            "{:#}",
            Settings::from_toml(MINIMAL, env(&[("OUTREACH_AUTOREPLY__OWN_ADDRESSES", "info@example.org,geen adres")]))
                .unwrap_err()
        );
        assert!(err.contains("autoreply.own_addresses"), "{err}");
    }

    #[test]
    fn a_bool_and_a_number_come_from_the_environment() {
        let s = Settings::from_toml(
            MINIMAL,
            env(&[("OUTREACH_NEWSLETTER__PROOF", "false"), ("OUTREACH_RETENTION__FILED_MAIL_DAYS", "10")]),
        )
        .unwrap();
        assert!(!s.newsletter.proof);
        assert_eq!(s.retention.filed_mail_days, 10);
    }

    #[test]
    fn a_bad_number_from_the_environment_names_the_key_and_the_variable() {
        let err =
            format!("{:#}", Settings::from_toml(MINIMAL, env(&[("OUTREACH_SMTP__POOL_SIZE", "veel")])).unwrap_err());
        assert!(err.contains("smtp.pool_size") && err.contains("OUTREACH_SMTP__POOL_SIZE"), "{err}");
        assert!(err.contains("u32") && err.contains("veel"), "{err}");
    }

    #[test]
    fn the_secret_comes_from_outreach_secret() {
        let secret = "0123456789abcdef0123456789abcdef";
        let s = Settings::from_toml(MINIMAL, env(&[("OUTREACH_SECRET", secret)])).unwrap();
        assert_eq!(s.secret.unwrap().expose_secret(), secret);
    }

    #[test]
    fn other_outreach_variables_are_not_config_keys() {
        let s = Settings::from_toml(
            MINIMAL,
            env(&[
                ("OUTREACH_CONFIG", "/etc/outreach.toml"),
                ("OUTREACH_LOG_JSON", "true"),
                ("OUTREACH_MAILSTACK_DIR", "/tmp/mailstack"),
                ("OUTREACH_CORPUS", "/tmp/corpus"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(s.imap.port, 1143);
    }

    #[test]
    fn passwords_and_the_secret_come_from_files_for_systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let imap = write("imap-password", "uit-een-bestand\n");
        let smtp = write("smtp-password", "smtp-geheim\r\n");
        let secret = write("secret", &"s".repeat(40));
        let s = Settings::from_toml(
            MINIMAL,
            env(&[
                ("OUTREACH_IMAP__PASSWORD_FILE", &imap),
                ("OUTREACH_SMTP__PASSWORD_FILE", &smtp),
                ("OUTREACH_SECRET_FILE", &secret),
            ]),
        )
        .unwrap();
        assert_eq!(s.imap.password.expose_secret(), "uit-een-bestand", "the file wins over the key in the file");
        assert_eq!(s.smtp.password.as_ref().unwrap().expose_secret(), "smtp-geheim");
        assert_eq!(s.secret.as_ref().unwrap().expose_secret(), "s".repeat(40));
        assert!(!format!("{s:?}").contains("uit-een-bestand"), "a password read from a file stays hidden");
        let without = MINIMAL.replace("password = \"secret\"\n", "");
        let s = Settings::from_toml(&without, env(&[("OUTREACH_IMAP__PASSWORD_FILE", &imap)])).unwrap();
        assert_eq!(s.imap.password.expose_secret(), "uit-een-bestand");
        let err =
            |text: &str, pairs: &[(&str, &str)]| format!("{:#}", Settings::from_toml(text, env(pairs)).unwrap_err());
        let e = err(&without, &[]);
        assert!(e.contains("imap.password") && e.contains("password_file"), "{e}");
        let e = err(MINIMAL, &[("OUTREACH_IMAP__PASSWORD_FILE", "/nonexistent/imap-password")]);
        assert!(e.contains("imap.password_file") && e.contains("/nonexistent/imap-password"), "{e}");
        // An empty file (a credential not given, `SetCredential=ID:`) gives nothing.
        write("empty", "\n");
        let s = Settings::from_toml(
            MINIMAL,
            env(&[("OUTREACH_IMAP__PASSWORD_FILE", &format!("{}/empty", dir.path().display()))]),
        )
        .unwrap();
        assert_eq!(s.imap.password.expose_secret(), "secret", "the key in the file counts then");
        // A relative path names a systemd credential in $CREDENTIALS_DIRECTORY.
        let creds = dir.path().display().to_string();
        let s = Settings::from_toml(
            &without,
            env(&[
                ("CREDENTIALS_DIRECTORY", &creds),
                ("OUTREACH_IMAP__PASSWORD_FILE", "imap-password"),
                ("OUTREACH_SMTP__PASSWORD_FILE", "empty"),
                ("OUTREACH_SECRET_FILE", "not-given"),
            ]),
        )
        .unwrap();
        assert_eq!(s.imap.password.expose_secret(), "uit-een-bestand");
        assert!(s.smtp.password.is_none() && s.secret.is_none(), "a credential not given is no secret");
    }

    #[test]
    fn an_unknown_key_from_the_environment_names_the_variable() {
        let err = format!("{:#}", Settings::from_toml(MINIMAL, env(&[("OUTREACH_IMAP__PROT", "993")])).unwrap_err());
        assert!(err.contains("imap.prot") && err.contains("OUTREACH_IMAP__PROT"), "{err}");
        let err = format!("{:#}", Settings::from_toml(MINIMAL, env(&[("OUTREACH_IMAP__", "993")])).unwrap_err());
        assert!(err.contains("OUTREACH_IMAP__") && err.contains("<SECTION>__<KEY>"), "{err}");
    }
}
