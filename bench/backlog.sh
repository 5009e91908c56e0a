#!/usr/bin/env bash
# Backlog benchmark: 10,000 mixed mails (3-30 KB, ~3% with a ~200 KB attachment) in
# contact@'s INBOX. Times, in one run and on the same mailbox:
#   1. mbsync (isync) copying the mailbox to a local Maildir (the baseline),
#   2. outreach poll --once filing all of it (auto-replies off: filing only),
#   3. outreach poll --once filing all of it and sending every auto-reply to smtp-sink.
# Prints wall time, messages per second and peak memory (max RSS) of each.
#   bash bench/backlog.sh [COUNT]          (default 10000; needs root, installs packages)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT=${1:-10000}
# shellcheck source=bench/lib.sh
. bench/lib.sh
prepare outreach-bench
MAILDIR=$STACK/mail/example.org/contact/Maildir

# Generate the backlog once (deterministic, so it is cached across runs); each run
# below starts from a copy of it.
CACHE=/tmp/outreach-bench-backlog-$COUNT
if [ ! -s "$CACHE/summary.json" ]; then
    rm -rf "$CACHE"
    python3 deploy/mailstack/gen_mailbox.py maildir "$CACHE/maildir" --count "$COUNT" >"$CACHE.summary.tmp"
    mv "$CACHE.summary.tmp" "$CACHE/summary.json"
fi
ln -s "$CACHE/maildir" "$WORK/backlog"
echo "backlog: $(cat "$CACHE/summary.json")"

load_backlog() {
    # Replace contact's mailbox with the backlog; let Dovecot index it before timing.
    rm -rf "$MAILDIR"
    mkdir -p "$MAILDIR"
    cp -a "$CACHE/maildir/." "$MAILDIR/"
    chown -R mail:mail "$STACK/mail/example.org/contact"
    python3 - <<'PY'
import imaplib
m = imaplib.IMAP4("127.0.0.1", 1143); m.login("contact@example.org", "secret")
typ, data = m.select("INBOX"); print("  INBOX holds", data[0].decode(), "messages"); m.logout()
PY
}


# 1. mbsync: IMAP -> local Maildir.
cat >"$WORK/mbsyncrc" <<EOF2
IMAPAccount contact
Host 127.0.0.1
Port 1143
User contact@example.org
Pass secret
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account contact

MaildirStore local
Path $WORK/mbsync/
Inbox $WORK/mbsync/INBOX

Channel inbox
Far :remote:INBOX
Near :local:
Sync Pull
Create Near
SyncState *
EOF2
echo "run 1: mbsync copies the mailbox"
load_backlog
mkdir -p "$WORK/mbsync"
measure "mbsync (copy only)" mbsync -c "$WORK/mbsyncrc" inbox

# 2. outreach, filing only.
{
    base_config "$WORK/filing.db" 2526
    printf '[autoreply]\nenabled = false\n'
} >"$WORK/outreach.toml"
echo "run 2: outreach files the mailbox (auto-replies off)"
load_backlog
measure "outreach poll (filing)" "$BIN" --config "$WORK/outreach.toml" poll --once
tail -1 "$WORK/outreach poll (filing).out" | sed 's/^/  /'

# 3. outreach, filing and answering every mail (replies to smtp-sink).
echo "run 3: outreach files the mailbox and sends every auto-reply (to smtp-sink)"
load_backlog
sed -e "s|filing.db|replies.db|" -e "s|enabled = false|max_per_hour = 1000000\nmax_per_domain_per_hour = 1000000|" "$WORK/outreach.toml" >"$WORK/replies.toml"
measure "outreach poll (+ replies)" "$BIN" --config "$WORK/replies.toml" poll --once
tail -1 "$WORK/outreach poll (+ replies).out" | sed 's/^/  /'

# Leave contact's mailbox empty for whatever runs next.
rm -rf "$MAILDIR"; mkdir -p "$MAILDIR"; chown -R mail:mail "$STACK/mail/example.org/contact"
