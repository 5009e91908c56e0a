//! outreach runs the contact address of the ambassador network *Inclusieve samenwerking
//! met ouders* (Netwerk Met Andere Ogen): it reads the inbox over IMAP, files every
//! message, answers the sender at once in their language, and never loops.
//!
//! # Layout
//!
//! Rooms from the bottom up; each uses only rooms below it (checked by
//! `tests/it/architecture.rs`; the whole picture in `docs/ARCHITECTURE.md`).
//!
//! ```text
//!  cli ─────────────┬──────────────► web (confirm, unsubscribe, archive)
//!   │               ▼                  │
//!   └──────────► app (daemon tasks, poll --once, deliver now)
//!                   │
//!  IMAP ──► inbox (imap, parse, triage, filing) ──► newsletter (subscribers, stories,
//!                   │                                issues, render, send, schedule)
//!                   └──────────────┬──────────────────┘
//!                                  ▼
//!                  outbox (compose, deliver, journal) ──► SMTP
//!                                  │
//!        store (typed SQL, migrations, Shared)   config   templates
//!                                  │
//!                 domain (addresses, categories, ids, states, clock)
//! ```
//!
//! - [`domain`]: pure types: addresses, categories, languages, row ids, state machines,
//!   the clock.
//! - [`config`]: settings from one TOML file plus `OUTREACH_<SECTION>__<KEY>` overrides.
//! - [`store`]: SQLite (WAL), the embedded migrations and typed operations per table
//!   group; the only module that speaks SQL.
//! - [`templates`]: every text a person reads (handlebars), built in and overridable.
//! - [`oauth2`]: access tokens for IMAP and SMTP (XOAUTH2): fetched, cached, renewed; the
//!   device-code login; every known refusal as one sentence saying what to fix.
//! - [`outbox`]: composing mail with lettre and delivering it with retries.
//! - [`newsletter`]: subscribers (double opt-in, unsubscribe), stories, issues: rendering,
//!   scheduling, delivery per (issue, subscriber), bounces, link tokens.
//! - [`inbox`]: IMAP source, parsing (mail-parser), triage (pure), filing pipeline.
//! - [`app`]: the daemon (`run`), a single pass (`poll --once`), delivering now.
//! - [`web`]: the confirm, unsubscribe and archive pages.
//! - [`cli`]: clap commands.
//! - [`tls`], [`telemetry`]: rustls client config; logging.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod inbox;
pub mod newsletter;
pub mod oauth2;
pub mod outbox;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod tls;
pub mod web;
