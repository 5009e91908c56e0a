//! Settings: one TOML file, every key overridable by `OUTREACH_<SECTION>__<KEY>`.
//!
//! Loading is `file -> env overrides -> typed Settings -> validate()`. Every error names
//! the key and what was expected, so an operator can fix it without reading code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

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
    /// Signs the tokens in confirm and unsubscribe links (HMAC-SHA256). Give it from the
    /// environment in production (`OUTREACH_SECRET`); at least 32 characters. When it is
    /// missing, a random secret is generated once and kept in the database.
    #[serde(default)]
    pub secret: Option<SecretString>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    pub host: String,
    #[serde(deserialize_with = "flex")]
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: SecretString,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Use IMAP IDLE when the server offers it; poll otherwise.
    #[serde(default = "default_true", deserialize_with = "flex")]
    pub idle: bool,
    /// Seconds between polls when IDLE is off or unavailable.
    #[serde(default = "default_poll_interval", deserialize_with = "flex")]
    pub poll_interval: u64,
    /// Seconds after which an IDLE is re-issued (RFC 2177 asks for less than 29 minutes).
    #[serde(default = "default_idle_refresh", deserialize_with = "flex")]
    pub idle_refresh: u64,
    /// Messages larger than this many bytes are filed for review without downloading them.
    #[serde(default = "default_max_message_size", deserialize_with = "flex")]
    pub max_message_size: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    #[serde(deserialize_with = "flex")]
    pub port: u16,
    pub security: Security,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The From of every mail we send, e.g. `"Netwerk Met Andere Ogen <contact@example.org>"`.
    pub from: String,
    /// Envelope sender (MAIL FROM) of auto-replies. Empty means the null sender `<>`
    /// (RFC 3834); set an address when the relay refuses the null sender.
    #[serde(default)]
    pub envelope_from: String,
    /// Pooled SMTP connections and concurrent deliveries.
    #[serde(default = "default_pool_size", deserialize_with = "flex")]
    pub pool_size: u32,
    /// Seconds before an SMTP command times out.
    #[serde(default = "default_smtp_timeout", deserialize_with = "flex")]
    pub timeout: u64,
    /// Delivery attempts on temporary failures (4xx, connection errors) before giving up.
    #[serde(default = "default_max_attempts", deserialize_with = "flex")]
    pub max_attempts: u32,
    /// First retry delay in seconds; doubles with each attempt (with jitter), capped at 1 hour.
    #[serde(default = "default_retry_base", deserialize_with = "flex")]
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
    #[serde(deserialize_with = "flex")]
    pub enabled: bool,
    /// At most one auto-reply per sender per this many hours.
    #[serde(deserialize_with = "flex")]
    pub window_hours: u64,
    /// Circuit breaker: at most this many auto-replies per hour in total.
    #[serde(deserialize_with = "flex")]
    pub max_per_hour: u64,
    /// More addresses that are ours (aliases); mail from them is never answered.
    pub own_addresses: Vec<String>,
}

impl Default for AutoReplySettings {
    fn default() -> Self {
        Self { enabled: true, window_hours: 24, max_per_hour: 100, own_addresses: Vec::new() }
    }
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
    #[serde(deserialize_with = "flex")]
    pub max_stories: u32,
    /// Sending rate in messages per minute; 0 = as fast as the relay takes them.
    #[serde(deserialize_with = "flex")]
    pub rate_per_minute: u32,
    /// SMTP transactions at the same time while sending an issue.
    #[serde(deserialize_with = "flex")]
    pub concurrency: u32,
    /// Mail a proof of each scheduled issue to the coordinator first; it goes out when approved.
    #[serde(deserialize_with = "flex")]
    pub proof: bool,
    /// Hours a proof waits for an answer.
    #[serde(deserialize_with = "flex")]
    pub proof_deadline_hours: u64,
    /// What happens to an unanswered proof at its deadline: `send` or `drop`.
    pub proof_deadline_action: ProofDeadlineAction,
    /// `List-Id` of the newsletter (RFC 2919), e.g. `Nieuwsbrief <nieuwsbrief.example.org>`.
    /// Empty: derived from the From address.
    pub list_id: String,
    /// Envelope sender of newsletters; bounces come back here. Empty: the From address.
    pub bounce_address: String,
    /// Tag the bounce address per delivery (`contact+b-TOKEN@...`); needs plus addressing.
    #[serde(deserialize_with = "flex")]
    pub plus_addressing: bool,
    /// Issues in a row with a soft bounce after which a subscriber counts as bounced.
    #[serde(deserialize_with = "flex")]
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
    #[serde(deserialize_with = "flex")]
    pub unconfirmed_days: u32,
    /// After this many days the text of filed mail and the bytes of sent mail are removed
    /// from the store (what was filed, when and why stays). 0 keeps them.
    #[serde(deserialize_with = "flex")]
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
        let mut root: toml::Table =
            text.parse().map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.to_string().trim()))?;
        apply_env(&mut root, env)?;
        let settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(root)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." { anyhow::anyhow!("{inner}") } else { anyhow::anyhow!("key `{path}`: {inner}") }
        })?;
        settings.validate()?;
        Ok(settings)
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
        for (key, folder) in [
            ("filing.join", &f.join),
            ("filing.question", &f.question),
            ("filing.unsubscribe", &f.unsubscribe),
            ("filing.automatic", &f.automatic),
            ("filing.bounce", &f.bounce),
            ("filing.review", &f.review),
        ] {
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
            crate::newsletter::schedule::parse_cron(&n.schedule)
                .map_err(|e| anyhow::anyhow!("key `newsletter.schedule`: {e}"))?;
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

/// Applies `OUTREACH_<SECTION>__<KEY>=value` overrides. Values are inserted as strings;
/// numeric and boolean fields accept strings (see [`flex`]).
fn apply_env(root: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<()> {
    let overrides: BTreeMap<String, String> = env
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(ENV_PREFIX).map(|rest| (rest.to_string(), v)))
        .filter(|(k, _)| k.contains("__") || k == "SECRET")
        .collect();
    for (name, value) in overrides {
        if name == "SECRET" {
            root.insert("secret".into(), toml::Value::String(value));
            continue;
        }
        let (section, key) = name.split_once("__").expect("filtered above");
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        if section.is_empty() || key.is_empty() {
            bail!("environment variable {ENV_PREFIX}{name}: expected {ENV_PREFIX}<SECTION>__<KEY>");
        }
        let table = root
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("environment variable {ENV_PREFIX}{name}: `{section}` is not a section"))?;
        let value = match table.get(&key) {
            // A list key (own_addresses) takes a comma-separated list.
            Some(toml::Value::Array(_)) => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| toml::Value::String(s.into()))
                    .collect(),
            ),
            _ => toml::Value::String(value),
        };
        table.insert(key, value);
    }
    Ok(())
}

/// Deserializes a number or boolean that may also be given as a string (from the environment).
fn flex<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<T: FromStr> Visitor<'_> for V<T>
    where
        T::Err: fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {}", std::any::type_name::<T>().rsplit("::").next().unwrap_or("value"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.trim()
                .parse()
                .map_err(|e| E::custom(format!("expected {}, found {v:?}: {e}", std::any::type_name::<T>())))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            self.visit_str(&v.to_string())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
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
}
