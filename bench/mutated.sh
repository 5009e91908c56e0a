#!/usr/bin/env bash
# Mutated mail through the whole pipeline, with the daemon's memory watched: COUNT
# (default 10,000) deterministic variants of the corpus mails (tests/fixtures/corpus,
# mutated by bench/mutate.py: byte flips, truncation, duplicated and removed headers,
# broken MIME boundaries, huge header lines, odd charsets, nested parts, odd line ends)
# are put straight into contact@'s INBOX (Maildir), then `outreach run` files them all
# (auto-replies to smtp-sink). Every 0.5 s the daemon's RSS (VmRSS) and the number of
# filed mails are sampled. Prints start, peak and end RSS and the RSS after each 1,000
# mails; then accounts for every mail (database rows, IMAP folders, INBOX empty) and
# checks the log for panics. Exits non-zero when a mail is missing or something panicked.
#   bash bench/mutated.sh [COUNT] [SEED]       (needs root; run under the shared lock:
#   flock -o /tmp/outreach-it.lock bash bench/mutated.sh; BENCH_WRAP="heaptrack -o FILE"
#   runs the daemon under a memory profiler)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT=${1:-10000}
SEED=${2:-1}
# shellcheck source=bench/lib.sh
. bench/lib.sh
prepare outreach-mutated
MAILDIR=$STACK/mail/example.org/contact/Maildir

# The variants, once per (COUNT, SEED, corpus, generator): cached across runs.
SUM=$(find tests/fixtures/corpus -name '*.eml' -print0 | sort -z | xargs -0 cat bench/mutate.py | md5sum | cut -c1-8)
CACHE=/tmp/outreach-bench-mutated-$COUNT-$SEED-$SUM
if [ ! -s "$CACHE/summary.json" ]; then
    rm -rf "$CACHE"
    python3 bench/mutate.py tests/fixtures/corpus "$CACHE/maildir" --count "$COUNT" --seed "$SEED" >"$CACHE.summary.tmp"
    mv "$CACHE.summary.tmp" "$CACHE/summary.json"
fi
echo "mutated mail: $(cat "$CACHE/summary.json")"

reset_contact() {
    rm -rf "$MAILDIR"; mkdir -p "$MAILDIR"; chown -R mail:mail "$STACK/mail/example.org/contact"
}
# Leave contact's mailbox empty for whatever runs next, also after a failure.
trap 'reset_contact; rm -rf "$WORK"' EXIT
reset_contact
cp -a "$CACHE/maildir/." "$MAILDIR/"
chown -R mail:mail "$STACK/mail/example.org/contact"

{
    base_config "$WORK/mutated.db" 2526
    printf '[autoreply]\nmax_per_hour = 1000000\nmax_per_domain_per_hour = 1000000\n'
} >"$WORK/outreach.toml"

python3 - "$BIN" "$WORK" "$COUNT" <<'PY'
import imaplib, os, re, signal, sqlite3, subprocess, sys, time
bin_, work, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = os.path.join(work, "mutated.db")
log_path = os.path.join(work, "daemon.log")

def imap():
    m = imaplib.IMAP4("127.0.0.1", 1143)
    m.login("contact@example.org", "secret")
    return m

m = imap(); typ, data = m.select("INBOX", readonly=True); m.logout()
print(f"  INBOX holds {data[0].decode()} messages")

def q(sql):
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            return c.execute(sql).fetchone()[0]
        finally:
            c.close()
    except sqlite3.Error:
        return 0

def rss_kb(pid):
    """(VmRSS, RssAnon) in KB: all resident memory, and the part that is not file pages
    (the heap; RssFile is the binary and the database's pages, which the kernel can drop)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
        return tuple(int(re.search(k + r":\s+(\d+)", text).group(1)) for k in ("VmRSS", "RssAnon"))
    except (OSError, AttributeError):
        return None

log = open(log_path, "w")
env = dict(os.environ, RUST_LOG="info")
t0 = time.time()
# BENCH_WRAP: a command to run the daemon under (e.g. "heaptrack -o /tmp/h"), for finding
# where memory goes.
wrap = os.environ.get("BENCH_WRAP", "").split()
d = subprocess.Popen(wrap + [bin_, "--config", os.path.join(work, "outreach.toml"), "run"], stdout=subprocess.DEVNULL, stderr=log, env=env)

def daemon_pid():
    """The daemon's own pid (under BENCH_WRAP, the wrapper's child): the process of our
    binary whose command line names this run's config."""
    cfg = os.path.join(work, "outreach.toml")
    for _ in range(100):
        for p in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
                if os.path.realpath(f"/proc/{p}/exe") == os.path.realpath(bin_) and cfg.encode() in cmd:
                    return int(p)
            except OSError:
                pass
        time.sleep(0.1)
    sys.exit("the daemon did not start")

pid = daemon_pid()
samples = []  # (seconds, filed, moved, (rss_kb, anon_kb))
last_progress, last_filed = time.time(), -1
while True:
    time.sleep(0.5)
    rss = rss_kb(pid)
    if rss is None or d.poll() is not None:
        print(f"  the daemon exited early (code {d.poll()}); see its log:")
        log.flush(); print(open(log_path).read()[-3000:]); sys.exit(1)
    filed = q("SELECT COUNT(*) FROM messages")
    moved = q("SELECT COUNT(*) FROM messages WHERE moved_at IS NOT NULL")
    busy = q("SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'sending')")
    samples.append((time.time() - t0, filed, moved, rss))
    if filed != last_filed:
        last_filed, last_progress = filed, time.time()
    if filed >= count and moved >= filed and busy == 0:
        break
    # Fewer rows than mails: a replay (a mail filed before) gets no row of its own. Done
    # when nothing moves any more and the INBOX is empty.
    if time.time() - last_progress > 5 and moved >= filed and busy == 0:
        m = imap(); typ, data = m.select("INBOX", readonly=True); m.logout()
        if int(data[0]) == 0:
            break
    if time.time() - last_progress > 60:
        print(f"  no progress for 60 s at {filed} filed; stopping"); break
elapsed = time.time() - t0
os.kill(pid, signal.SIGTERM)
code = d.wait(timeout=120)
log.close()

done = max(s[1] for s in samples)
busy_until = next(s[0] for s in samples if s[1] == done)
print(f"  filed {done} mails in {busy_until:.0f} s ({done / busy_until:.0f} mails/s); daemon exit code {code}")
for i, what in ((0, "RSS"), (1, "RSS anon")):
    peak = max(s[3][i] for s in samples)
    print(f"  {what}: start {samples[0][3][i] / 1024:.1f} MB, peak {peak / 1024:.1f} MB, end {samples[-1][3][i] / 1024:.1f} MB ({len(samples)} samples, every 0.5 s)")
series, k = [], 1000
for t, filed, _, rss in samples:
    while filed >= k:
        series.append((k, t, rss)); k += 1000
for i, what in ((0, "RSS"), (1, "RSS anon")):
    print(f"  {what} after each 1,000 mails: " + ", ".join(f"{n // 1000}k {rss[i] / 1024:.1f}" for n, _, rss in series) + " (MB)")
# The peak within each 1,000: flat means no step up from one thousand to the next.
peaks, lo = [], 0
for n, t, _ in series:
    peaks.append(max(s[3][0] for s in samples if lo <= s[1] <= n) / 1024); lo = n
print("  peak RSS within each 1,000: " + ", ".join(f"{p:.1f}" for p in peaks) + " (MB)")

# Every mail accounted for.
rows = q("SELECT COUNT(*) FROM messages")
review = q("SELECT COUNT(*) FROM messages WHERE category = 'review'")
by_cat = {}
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
for cat, n in c.execute("SELECT category, COUNT(*) FROM messages GROUP BY category ORDER BY 2 DESC"):
    by_cat[cat] = n
panicked_rows = c.execute("SELECT COUNT(*) FROM messages WHERE reason LIKE '%panic%'").fetchone()[0]
reasons = {}
for (r,) in c.execute("SELECT reason FROM messages WHERE category = 'review'"):
    key = re.sub(r"\d+", "N", re.sub(r"<[^>]*>", "<...>", r))[:70]
    reasons[key] = reasons.get(key, 0) + 1
reasons = sorted(((r, n) for r, n in reasons.items()), key=lambda x: -x[1])[:6]
errors = {}
for (e,) in c.execute("SELECT COALESCE(last_error, '') FROM outbox WHERE status = 'failed'"):
    key = re.sub(r"\d+", "N", e)[:90]
    errors[key] = errors.get(key, 0) + 1
sent = c.execute("SELECT COUNT(*) FROM outbox WHERE status = 'sent'").fetchone()[0]
failed = c.execute("SELECT COUNT(*) FROM outbox WHERE status = 'failed'").fetchone()[0]
c.close()
m = imap()
folders = {}
for line in m.list()[1]:
    name = line.decode().rsplit(' "." ', 1)[-1].strip().strip('"')
    typ, data = m.select(f'"{name}"', readonly=True)
    if typ == "OK":
        folders[name] = int(data[0])
m.logout()
in_folders = sum(n for f, n in folders.items() if f != "INBOX")
text = open(log_path, errors="replace").read()
panics = len(re.findall(r"panicked", text))
if rows < count:
    print(f"  {count - rows} replays: a mail with the Message-ID and content of one filed before goes to its folder without a row")
print(f"  database: {rows} messages filed ({review} for review): " + ", ".join(f"{k} {v}" for k, v in by_cat.items()))
print("  review reasons: " + "; ".join(f"{n} x {r}" for r, n in reasons))
print(f"  IMAP: INBOX {folders.get('INBOX', 0)}, in the category folders {in_folders}: " + ", ".join(f"{f} {n}" for f, n in sorted(folders.items()) if n))
print(f"  outbox: {sent} auto-replies sent (to smtp-sink), {failed} failed" + "".join(f"; {n} x {e}" for e, n in errors.items()))
print(f"  panics: {panics} in the daemon log, {panicked_rows} mails filed after a caught panic")
ok = rows <= count and in_folders == count and folders.get("INBOX", 0) == 0 and panics == 0 and panicked_rows == 0 and code == 0
print("  every mail accounted for, no panic" if ok else "  FAILED: a mail is missing or something panicked")
sys.exit(0 if ok else 1)
PY
