#!/usr/bin/env bash
# Newsletter benchmark: an issue with three stories to COUNT subscribers, delivered to
# Postfix's smtp-sink on loopback by `outreach newsletter send`, beside `smtp-source`
# sending COUNT messages of the same size with the same number of connections, in one
# run. Prints wall time, messages per second, peak memory (max RSS) and the ratio.
#   bash bench/newsletter.sh [COUNT] [CONCURRENCY]     (default 10000 and 4)
# Memory at scale: bash bench/newsletter.sh 100000
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


measure smtp-source smtp-source -c -l "$SIZE" -m "$COUNT" -s "$CONC" -f contact@example.org -t lezer@bench.example 127.0.0.1:2526
measure "outreach newsletter send" "$BIN" --config "$WORK/bench.toml" newsletter send
grep -q "newsletter: $COUNT sent" "$WORK/outreach newsletter send.out" || { echo "not all sent:"; cat "$WORK/outreach newsletter send.out"; exit 1; }
SENT=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT COUNT(*) FROM deliveries WHERE status='sent'\").fetchone()[0])" "$WORK/outreach.db")
python3 - "$(cat "$WORK/smtp-source.rate")" "$(cat "$WORK/outreach newsletter send.rate")" "$SENT" <<'PY'
import sys
src, ours, sent = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print(f"  deliveries recorded sent: {sent}; outreach reaches {100 * ours / src:.0f} % of smtp-source's rate (target >= 70 %)")
PY
