//! `outreach db backup FILE` and `outreach db check [FILE]`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::config::Settings;
use crate::store::check::{self, Depth};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy the database to FILE, safely while the daemon runs and writes (SQLite's online
    /// backup); the copy is checked and readable by its owner only.
    Backup {
        file: PathBuf,
        /// Replace FILE when it exists.
        #[arg(long)]
        force: bool,
    },
    /// Check the database: integrity (every page, row and index), foreign keys, and the
    /// schema version against this binary's migrations. Exits 1 when something is wrong.
    Check {
        /// A database file to check instead of the configured one (e.g. a backup).
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn db(settings: impl FnOnce() -> anyhow::Result<Settings>, cmd: &DbCommand) -> anyhow::Result<i32> {
    match cmd {
        DbCommand::Backup { file, force } => {
            let settings = settings()?;
            let started = std::time::Instant::now();
            let r = check::backup(&settings.database.path, file, *force)?;
            println!(
                "backed up {} to {} ({:.1} MB, schema version {}) in {:.1} s",
                settings.database.path.display(),
                file.display(),
                r.bytes as f64 / 1e6,
                r.schema_version,
                started.elapsed().as_secs_f64()
            );
            Ok(0)
        }
        DbCommand::Check { file, json } => {
            let path = match file {
                Some(f) => f.clone(),
                None => settings()?.database.path,
            };
            db_check(&path, *json)
        }
    }
}

fn db_check(path: &Path, json: bool) -> anyhow::Result<i32> {
    let h = check::inspect(path, Depth::Full)?;
    let loose = check::loose_files(path);
    if json {
        let v = serde_json::json!({
            "path": path.display().to_string(),
            "ok": h.sound(),
            "damage": h.damage,
            "foreign_key_violations": h.foreign_key_violations,
            "schema_version": h.schema_version,
            "known_version": h.known_version,
            "pending_migrations": h.pending_migrations(),
            "loose_files": loose.iter().map(|l| serde_json::json!({"path": l.path.display().to_string(), "mode": format!("{:04o}", l.mode)})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("database:     {}", path.display());
        match h.damage.as_slice() {
            [] => println!("integrity:    ok (every page, row and index read)"),
            lines => {
                println!("integrity:    DAMAGED");
                for l in lines {
                    println!("              {l}");
                }
            }
        }
        match h.foreign_key_violations {
            0 => println!("foreign keys: ok"),
            n => println!("foreign keys: {n} row(s) point at rows that do not exist"),
        }
        let schema = if h.newer_than_binary() {
            "written by a newer outreach: this binary cannot use it".to_string()
        } else if h.pending_migrations() > 0 {
            format!("{} migration(s) pending, applied when the daemon starts", h.pending_migrations())
        } else {
            "current".to_string()
        };
        println!("schema:       version {} of {} ({schema})", h.schema_version, h.known_version);
        for l in &loose {
            println!(
                "warning:      {} can be read by other users (mode {:04o}): chmod 600 it",
                l.path.display(),
                l.mode
            );
        }
        if !h.sound() {
            eprintln!(
                "error: the database has problems: stop the daemon and restore the latest backup (README: \"Backups and upgrades\")"
            );
        }
    }
    Ok(if h.sound() { 0 } else { 1 })
}
