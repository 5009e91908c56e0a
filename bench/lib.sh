# Shared by the benchmark scripts (sourced from the repository root).

# prepare NAME: packages, the local mail stack and the release build. Sets STACK (the
# stack's folder), BIN (the release binary, or OUTREACH_BIN when set: to compare two
# builds side by side) and WORK (a scratch folder, removed on exit).
prepare() {
    export OUTREACH_MAILSTACK_DIR=${OUTREACH_MAILSTACK_DIR:-/tmp/outreach-mailstack}
    STACK=$OUTREACH_MAILSTACK_DIR
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    command -v /usr/bin/time >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
    bash deploy/mailstack/install.sh >/dev/null
    bash deploy/mailstack/start.sh "$STACK" >/dev/null
    if [ -n "${OUTREACH_BIN:-}" ]; then
        BIN=$OUTREACH_BIN
    else
        cargo build --release --locked --quiet
        BIN=$PWD/target/release/outreach
    fi
}

# The rest needs WORK and COUNT.

# measure NAME CMD...: runs CMD, prints wall time, messages per second and peak memory
# (max RSS), and keeps the rate in "$WORK/NAME.rate". Output goes to "$WORK/NAME.out".
measure() {
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/time -f "%M" -o "$WORK/rss" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || { echo "$name failed:"; tail -5 "$WORK/$name.err"; exit 1; }
    t1=$(date +%s.%N)
    python3 - "$name" "$t0" "$t1" "$(cat "$WORK/rss")" "$COUNT" "$WORK/$name.rate" <<'PY'
import sys
name, t0, t1, rss_kb, n, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
s = t1 - t0
print(f"  {name:28s} {s:7.2f} s  {n / s:8.0f} msg/s  peak RSS {rss_kb / 1024:6.1f} MB")
open(out, "w").write(str(n / s))
PY
}

# base_config DB_PATH SMTP_PORT: the [database], [imap] and [smtp] sections of a config
# against the local mail stack.
base_config() {
    cat <<TOML
[database]
path = "$1"
[imap]
host = "127.0.0.1"
port = 1143
security = "none"
username = "contact@example.org"
password = "secret"
[smtp]
host = "127.0.0.1"
port = $2
security = "none"
from = "Netwerk Met Andere Ogen <contact@example.org>"
TOML
}
