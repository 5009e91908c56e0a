use clap::Parser;
use outreach::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run) {
        fixed_mmap_threshold();
    }
    // Every log line loses full addresses and anything that looks like a bearer token.
    outreach::telemetry::init(cli.log_json, |line| {
        outreach::domain::redact_tokens(&outreach::domain::redact_addresses(line))
    });
    match cli.execute().await {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The glibc tunable that keeps the daemon's memory flat.
const MMAP_THRESHOLD: &str = "glibc.malloc.mmap_threshold=131072";

/// Keeps the daemon's heap from creeping up. glibc's malloc raises its mmap threshold to
/// the largest block freed (up to 32 MB); after the first multi-megabyte mail, such
/// buffers come from the heap instead and fragment it, and the daemon's memory grows with
/// every large mail (bench/mutated.sh: 37 -> 60 MB over 30,000 mutated mails). With a
/// fixed threshold of 128 KB they go back to the kernel when freed: flat at ~30 MB
/// (docs/RELIABILITY.md, "Mutated mail"). glibc reads tunables only at start-up and
/// setting one needs `unsafe`, so the daemon starts itself once more with it (same
/// process id). Other C libraries ignore the variable.
fn fixed_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.contains("glibc.malloc.mmap_threshold") {
        return;
    }
    let value = if tunables.is_empty() { MMAP_THRESHOLD.to_string() } else { format!("{tunables}:{MMAP_THRESHOLD}") };
    let Ok(exe) = std::env::current_exe() else { return };
    // `exec` only returns on failure; the daemon then runs on with glibc's defaults.
    let err = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("GLIBC_TUNABLES", value).exec();
    eprintln!("note: could not restart with {MMAP_THRESHOLD} ({err}); running with glibc's defaults");
}
