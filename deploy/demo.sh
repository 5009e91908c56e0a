#!/usr/bin/env bash
# The demo: starts the local mail stack and the outreach daemon against it, mails the
# contact address as a new ambassador would, and shows what happened. Ctrl-C stops it.
#   bash deploy/demo.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export OUTREACH_MAILSTACK_DIR=${OUTREACH_MAILSTACK_DIR:-/tmp/outreach-mailstack}
CONFIG=$ROOT/deploy/dev.toml
BIN=$ROOT/target/release/outreach

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Packages (Dovecot, Postfix) and the release build"
bash deploy/mailstack/install.sh
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }
cargo build --release --locked --quiet

say "Local mail stack: IMAP 127.0.0.1:1143, SMTP 127.0.0.1:2525, users contact@, coordinator@, alice@, bob@example.org (password: secret)"
bash deploy/mailstack/start.sh "$OUTREACH_MAILSTACK_DIR"
rm -rf /tmp/outreach-dev

DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    say "Stopped the daemon. The mail stack keeps running; stop it with: bash deploy/mailstack/stop.sh"
}
trap cleanup EXIT
trap "exit 130" INT TERM

say "Starting the daemon: $BIN --config deploy/dev.toml run"
"$BIN" --config "$CONFIG" run &
DAEMON=$!
sleep 2

say "Alice mails the contact address to join the network (Dutch), Bob asks a question (English)"
python3 - <<'PY'
import smtplib, time
from email.message import EmailMessage
def send(frm, name, subject, body):
    m = EmailMessage()
    m["From"] = f"{name} <{frm}>"; m["To"] = "contact@example.org"; m["Subject"] = subject
    m.set_content(body)
    with smtplib.SMTP("127.0.0.1", 2525) as s:
        s.send_message(m)
send("alice@example.org", "Alice Jansen", "Ambassadeursnetwerk Inclusieve Samenwerking met Ouders",
     "Hallo,\n\nIk werk als jeugdverpleegkundige en ik wil graag ambassadeur worden.\n\nGroet, Alice")
send("bob@example.org", "Bob Smith", "How do I involve parents more?",
     "Hello,\n\nI am a teacher. How can I involve parents more in school meetings?\n\nThanks, Bob")
PY
sleep 3

say "What was filed: outreach inbox list"
"$BIN" --config "$CONFIG" inbox list
say "Status: outreach status"
"$BIN" --config "$CONFIG" status
say "The auto-reply in Alice's mailbox"
python3 - <<'PY'
import imaplib, email
m = imaplib.IMAP4("127.0.0.1", 1143); m.login("alice@example.org", "secret"); m.select("INBOX")
ids = m.search(None, "ALL")[1][0].split()
if not ids:
    print("(no reply yet)")
else:
    msg = email.message_from_bytes(m.fetch(ids[-1], "(RFC822)")[1][0][1])
    for h in ("From", "To", "Subject", "Auto-Submitted", "In-Reply-To"):
        print(f"{h}: {msg[h]}")
    print()
    print(msg.get_payload(decode=True).decode())
PY
say "The newsletter: an ambassador's story, Bob subscribed with recorded consent, one issue sent"
"$BIN" --config "$CONFIG" stories add deploy/demo-story.md
"$BIN" --config "$CONFIG" stories approve 1
"$BIN" --config "$CONFIG" subscribers add bob@example.org --name "Bob Smith" --language en --consent "asked at the demo"
"$BIN" --config "$CONFIG" newsletter send
sleep 3
"$BIN" --config "$CONFIG" newsletter status 1
python3 - <<'PY'
import imaplib, email
m = imaplib.IMAP4("127.0.0.1", 1143); m.login("bob@example.org", "secret"); m.select("INBOX")
for i in m.search(None, "ALL")[1][0].split():
    msg = email.message_from_bytes(m.fetch(i, "(RFC822)")[1][0][1])
    if msg["List-Id"]:
        for h in ("From", "To", "Subject", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "Precedence"):
            print(f"{h}: {msg[h]}")
PY
echo "Archive: http://127.0.0.1:8080/archive (unsubscribe: the link in Bob's copy)"

say "The daemon keeps running: mail contact@example.org on 127.0.0.1:2525 and watch it answer. Ctrl-C stops it."
wait "$DAEMON"
