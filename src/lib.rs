//! outreach runs the contact address of the ambassador network *Inclusieve samenwerking
//! met ouders* (Netwerk Met Andere Ogen): it reads the inbox over IMAP, files every
//! message, answers the sender at once in their language, and never loops.
//!
//! # Layout
//!
//! ```text
//!  IMAP (IDLE, else poll)                                   SMTP (pooled)
//!  contact inbox ──► inbox::imap ──► inbox (parse, triage) ──► store ◄── outbox ──► relay
//!       ▲                                  │ one transaction     ▲
//!       └──────────── UID MOVE to folder ◄─┘ after the commit    └── auto-replies, notices
//! ```
//!
//! - [`config`]: settings from one TOML file plus `OUTREACH_<SECTION>__<KEY>` overrides.
//! - [`domain`]: pure types: addresses, categories, languages, case references.
//! - [`store`]: SQLite (WAL) and the embedded migrations; the only module with SQL.
//! - [`inbox`]: IMAP source, parsing (mail-parser), triage (pure), filing pipeline.
//! - [`outbox`]: composing mail with lettre and delivering it with retries.
//! - [`newsletter`]: subscribers (double opt-in, unsubscribe), stories, issues: rendering,
//!   scheduling, delivery per (issue, subscriber), bounces, and the web endpoints.
//! - [`templates`]: handlebars texts, built in and overridable.
//! - [`tls`]: rustls client config with an optional private CA.
//! - [`app`]: the daemon (`run`) and a single pass (`poll --once`).
//! - [`cli`]: clap commands; printing only.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod inbox;
pub mod newsletter;
pub mod outbox;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod tls;
pub mod web;
