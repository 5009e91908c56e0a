//! `outreach subscribers import FILE.csv`: a header row with `email` (required) and
//! `name`, `language`, `consent_source`, `consent_at` (optional). A row is `active` only
//! when it says when its consent was given (`consent_at`); otherwise it is `pending` and
//! gets a confirmation mail. Someone who unsubscribed is never brought back. Importing
//! the same file twice changes nothing. All rows go in one transaction.

use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;

use super::{Ctx, Subscribed};
use crate::domain::{EmailAddress, Language};
use crate::store::Db;

/// What the import did with one line.
#[derive(Debug, Clone, Serialize)]
pub struct ImportLine {
    pub line: u64,
    pub email: String,
    /// added | confirmation_sent | unchanged | rejected
    pub action: String,
    pub detail: String,
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc());
        }
    }
    for f in ["%Y-%m-%d", "%d-%m-%Y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        }
    }
    None
}

fn language(s: &str) -> Option<Language> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "nl" | "nld" | "dutch" | "nederlands" => Some(Language::Dutch),
        "en" | "eng" | "english" | "engels" => Some(Language::English),
        _ => None,
    }
}

/// Imports the file; `source` is the import's own consent source (e.g. "ledenlijst 2025").
pub fn import(
    ctx: &Ctx,
    db: &mut Db,
    path: &Path,
    source: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<ImportLine>> {
    let file = std::fs::File::open(path).with_context(|| format!("Failed to open {}", path.display()))?;
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
    let headers: Vec<String> = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let Some(email_col) = col("email") else {
        bail!("{}: the header row has no `email` column (found: {})", path.display(), headers.join(", "));
    };
    for h in &headers {
        if !["email", "name", "language", "consent_source", "consent_at"].contains(&h.as_str()) {
            bail!(
                "{}: unknown column `{h}` (known: email, name, language, consent_source, consent_at)",
                path.display()
            );
        }
    }
    let (name_col, lang_col, src_col, at_col) =
        (col("name"), col("language"), col("consent_source"), col("consent_at"));
    let mut records = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("{}: unreadable CSV", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        records.push((line, rec));
    }
    let file_name = path.file_name().map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().to_string());
    db.write(|st| {
        let mut out = Vec::with_capacity(records.len());
        for (line, rec) in &records {
            let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).unwrap_or("").trim();
            let raw_email = get(Some(email_col));
            let mut report = |action: &str, detail: String| {
                out.push(ImportLine { line: *line, email: raw_email.to_string(), action: action.into(), detail })
            };
            let email = match EmailAddress::parse(raw_email) {
                Ok(e) if !raw_email.is_empty() => e,
                Ok(_) | Err(_) => {
                    report("rejected", format!("line {line}: not a valid e-mail address: {raw_email:?}"));
                    continue;
                }
            };
            let Some(lang) = language(get(lang_col)) else {
                report("rejected", format!("line {line}: unknown language {:?} (use nl or en)", get(lang_col)));
                continue;
            };
            let consent_at = match get(at_col) {
                "" => None,
                s => match parse_time(s) {
                    Some(t) if t <= now => Some(t),
                    _ => {
                        report(
                            "rejected",
                            format!(
                                "line {line}: consent_at {s:?} is not a date in the past (use 2025-03-01 or RFC 3339)"
                            ),
                        );
                        continue;
                    }
                },
            };
            let consent_source = match get(src_col) {
                "" => format!("import {file_name} ({source})"),
                s => format!("import {file_name}: {s}"),
            };
            let name = Some(get(name_col)).filter(|n| !n.is_empty());
            let consent = consent_at.map(|t| (consent_source.as_str(), t));
            let (action, detail) = match ctx.subscribe(st, &email, name, lang, "import", consent, now)? {
                Subscribed::Activated(_) => ("added", "active: consent given at the time in the file".to_string()),
                Subscribed::ConfirmationSent(_) => {
                    ("confirmation_sent", "pending: no consent_at, so a confirmation mail was queued".into())
                }
                Subscribed::ConfirmationRecent(_) => {
                    ("unchanged", "pending: a confirmation went out less than a day ago".into())
                }
                Subscribed::ConfirmationLimit(_) => (
                    "unchanged",
                    "pending: three confirmations went out in 30 days; none until the person answers one".into(),
                ),
                Subscribed::AlreadyActive(_) => ("unchanged", "already active".into()),
                Subscribed::Kept(_, status) => {
                    ("unchanged", format!("kept as {status}: an import does not change this"))
                }
                Subscribed::Suppressed => ("unchanged", "erased earlier on request: never mailed again".into()),
            };
            report(action, detail);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_languages() {
        assert!(parse_time("2025-03-01").is_some());
        assert!(parse_time("2025-03-01T10:00:00Z").is_some());
        assert!(parse_time("01-03-2025").is_some());
        assert!(parse_time("gisteren").is_none());
        assert_eq!(language("EN"), Some(Language::English));
        assert_eq!(language(""), Some(Language::Dutch));
        assert_eq!(language("fr"), None);
    }
}
