#!/usr/bin/env bash
# Newsletter benchmark: an issue with three stories to COUNT subscribers, delivered to
# Postfix's smtp-sink on loopback by `outreach newsletter send`, beside `smtp-source`
# sending COUNT messages of the same size with the same number of connections, in one
# run: once with a new connection per message, once with `-d` (sessions reused, as
# outreach's are). Prints wall time, messages per second, peak memory (max RSS) and
# both ratios.
#   bash bench/newsletter.sh [COUNT] [CONCURRENCY]     (default 10000 and 4)
# Memory at scale: bash bench/newsletter.sh 100000
# BASE_BIN=/path/to/an/older/outreach also times that binary in the same run, on a copy
# of the same database (before/after comparisons on a shared machine).
# PERF=FILE records a profile of `outreach newsletter send` (perf record -g) into FILE.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT=${1:-10000}
CONC=${2:-4}
# shellcheck source=bench/lib.sh
. bench/lib.sh
prepare outreach-bench-nl

{
    echo 'secret = "benchmark-secret-0123456789abcdef0123"'
    base_config "$WORK/outreach.db" 2526
    printf '[newsletter]\nconcurrency = %s\nrate_per_minute = 0\nschedule = ""\n' "$CONC"
    printf '[web]\nbase_url = "https://nieuwsbrief.example.org"\n'
} >"$WORK/bench.toml"
O() { "$BIN" --config "$WORK/bench.toml" "$@"; }
export RUST_LOG=warn

python3 - "$WORK/subscribers.csv" "$COUNT" <<'PY'
import sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write("email,name,language,consent_at\n")
    for i in range(n):
        lang = "en" if i % 10 == 0 else "nl"
        f.write(f"lezer{i}@bench.example,Lezer {i},{lang},2025-01-01\n")
PY
O subscribers import "$WORK/subscribers.csv" >/dev/null
for i in 1 2 3; do
    python3 - "$WORK/story$i.md" "$i" <<'PY'
import sys
path, i = sys.argv[1], sys.argv[2]
para = ("Ik werk als intern begeleider op een basisschool. Elke week zit ik met ouders aan tafel. "
        "Ik leerde dat luisteren meer oplevert dan vertellen: ouders kennen hun kind het best. ") * 3
with open(path, "w") as f:
    f.write(f"---\ntitle: Verhaal {i}: ga naast de ouders staan\nambassador: Ambassadeur {i}\nrole: intern begeleider\n"
            f"photo: https://example.org/foto{i}.jpg\n---\n## Wat ik leerde\n\n{para}\n\n- luister\n- vraag door\n- werk samen\n\n"
            f"> Werk mensgericht en vanuit je hart.\n\n{para}\n")
PY
    O stories add "$WORK/story$i.md" >/dev/null
    O stories approve "$i" >/dev/null
done
# The size of one rendered message (smtp-source's -l): a preview through the real code path.
O newsletter preview --to lezer1@bench.example >/dev/null
SIZE=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT length(raw) FROM outbox WHERE kind='preview'\").fetchone()[0])" "$WORK/outreach.db")
echo "newsletter: 3 stories, $COUNT subscribers, $SIZE bytes per message, $CONC connections"

cp "$WORK/outreach.db" "$WORK/base.db"

measure smtp-source smtp-source -c -l "$SIZE" -m "$COUNT" -s "$CONC" -f contact@example.org -t lezer@bench.example 127.0.0.1:2526
measure "smtp-source -d" smtp-source -d -c -l "$SIZE" -m "$COUNT" -s "$CONC" -f contact@example.org -t lezer@bench.example 127.0.0.1:2526
if [ -n "${BASE_BIN:-}" ]; then
    sed "s|$WORK/outreach.db|$WORK/base.db|" "$WORK/bench.toml" >"$WORK/base.toml"
    measure "outreach (BASE_BIN)" "$BASE_BIN" --config "$WORK/base.toml" newsletter send
fi
PROFILE=()
[ -n "${PERF:-}" ] && PROFILE=(perf record -q -F 999 -g -o "$PERF" --)
measure "outreach newsletter send" "${PROFILE[@]}" "$BIN" --config "$WORK/bench.toml" newsletter send
grep -q "newsletter: $COUNT sent" "$WORK/outreach newsletter send.out" || { echo "not all sent:"; cat "$WORK/outreach newsletter send.out"; exit 1; }
SENT=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM deliveries WHERE status='sent'\").fetchone()[0])" "$WORK/outreach.db")
python3 - "$WORK" "$SENT" "${BASE_BIN:+outreach (BASE_BIN)}" <<'PY'
import sys, os
work, sent, base = sys.argv[1], sys.argv[2], sys.argv[3]
rate = lambda name: float(open(os.path.join(work, name + ".rate")).read())
src, reuse = rate("smtp-source"), rate("smtp-source -d")
print(f"  deliveries recorded sent: {sent}")
for name in ["outreach newsletter send"] + ([base] if base else []):
    ours = rate(name)
    print(f"  {name}: {100 * ours / reuse:.0f} % of smtp-source -d (target >= 60 %), {100 * ours / src:.0f} % of smtp-source")
PY
