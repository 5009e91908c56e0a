use clap::Parser;
use outreach::cli::Cli;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
