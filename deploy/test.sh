#!/usr/bin/env bash
# The whole test suite: format and lint gates, unit tests, the integration tests
# against a real Dovecot + Postfix on loopback, and the Debian package (built and
# checked by deploy/package.sh). Installs what is missing (Debian, root).
#   bash deploy/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export OUTREACH_MAILSTACK_DIR=${OUTREACH_MAILSTACK_DIR:-/tmp/outreach-mailstack}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "packages"
bash deploy/mailstack/install.sh
command -v cc >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null; }
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true

step "mail stack in $OUTREACH_MAILSTACK_DIR"
bash deploy/mailstack/start.sh "$OUTREACH_MAILSTACK_DIR" --fresh
trap 'bash "$ROOT/deploy/mailstack/stop.sh" "$OUTREACH_MAILSTACK_DIR" >/dev/null 2>&1 || true' EXIT

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "unit tests"
cargo test --locked --lib --bins

step "integration tests (real IMAP and SMTP; one at a time, they share the accounts)"
rm -rf target/tmp/it-logs
cargo test --locked --test it -- --test-threads=1

step "log check: no full address, password or link token in any log line of the run"
python3 deploy/check_logs.py target/tmp/it-logs

step "Debian package: cargo deb (of the tests' build) and its contents (binary runs, units verify)"
OUTREACH_DEB_PROFILE=dev bash deploy/package.sh
