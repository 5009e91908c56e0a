#!/usr/bin/env python3
"""IDLE latency benchmark: from the SMTP 250 of a mail to contact@ until its
auto-reply is in the sender's mailbox, over N mails sent one at a time.

    python3 bench/latency.py [--count 100] [--bin target/release/outreach]

Needs the local mail stack (bash deploy/mailstack/start.sh) and a release build.
Each mail comes from its own address at latency.test, so every one is answered; the
replies land in catchall@example.org (the stack keeps mail for other domains there).
The reply is seen by polling catchall's INBOX with NOOP every 5 ms over IMAP.
"""
import argparse, imaplib, os, smtplib, statistics, subprocess, sys, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--count", type=int, default=100)
p.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "outreach"))
a = p.parse_args()

def imap(user):
    m = imaplib.IMAP4("127.0.0.1", 1143)
    m.login(user, "secret")
    return m

def empty(user):
    m = imap(user); m.select("INBOX")
    m.store("1:*", "+FLAGS.SILENT", "(\\Deleted)") if int(m.select("INBOX")[1][0]) else None
    m.expunge(); m.logout()

empty("contact@example.org"); empty("catchall@example.org")
work = tempfile.mkdtemp(prefix="outreach-latency.")
cfg = os.path.join(work, "outreach.toml")
open(cfg, "w").write(f"""[database]
path = "{work}/outreach.db"
[imap]
host = "127.0.0.1"
port = 1143
security = "none"
username = "contact@example.org"
password = "secret"
[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
from = "Netwerk Met Andere Ogen <contact@example.org>"
[autoreply]
max_per_hour = 100000
""")
log = open(os.path.join(work, "daemon.log"), "w")
daemon = subprocess.Popen([a.bin, "--config", cfg, "run"], stdout=log, stderr=log)
try:
    time.sleep(1.5)  # connected and idling
    watch = imap("catchall@example.org")
    seen = int(watch.select("INBOX")[1][0])
    smtp = smtplib.SMTP("127.0.0.1", 2525)
    lat = []
    for i in range(a.count):
        sender = f"lat{i}.{int(time.time())}@latency.test"
        msg = (f"From: {sender}\r\nTo: contact@example.org\r\nSubject: Vraag {i}\r\n"
               f"Message-ID: <lat{i}.{time.time()}@latency.test>\r\n\r\nHallo, ik heb een vraag over samenwerken met ouders.\r\n")
        smtp.sendmail(sender, ["contact@example.org"], msg)  # returns after the 250
        t0 = time.monotonic()
        while True:
            typ, data = watch.noop()
            n = int(watch.select("INBOX")[1][0])
            if n > seen:
                seen = n
                break
            if time.monotonic() - t0 > 30:
                sys.exit(f"no auto-reply for mail {i} within 30 s; see {work}/daemon.log")
            time.sleep(0.005)
        lat.append(time.monotonic() - t0)
    smtp.quit()
    lat.sort()
    p95 = lat[max(0, int(round(0.95 * len(lat))) - 1)]
    print(f"IDLE latency over {len(lat)} mails (SMTP 250 -> auto-reply in the sender's mailbox):")
    print(f"  median {statistics.median(lat) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, min {lat[0] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
finally:
    daemon.terminate()
    daemon.wait(timeout=20)
