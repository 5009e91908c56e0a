#!/usr/bin/env python3
"""The log check after a full test run (deploy/test.sh): in every log line that outreach
wrote during the integration tests (at debug level; the OAuth2 tests at trace level), no
full e-mail address, no password, no link token and no bearer token (a JWT, the word after
"Bearer", an XOAUTH2 string, an access or refresh token value). Usage: check_logs.py DIR.
Exits 1 and prints the lines when one is found."""
import pathlib
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A tracing line: "2026-12-01T14:27:29.704421Z  WARN target: message ..."
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR)\s")
ADDRESS = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
TOKEN = re.compile(r"/(confirm|unsubscribe|desk/login)/[A-Za-z0-9_\-]{16,}")
# The test password is "secret"; "client secret" is prose (what to fix, Entra's errors).
PASSWORD = re.compile(r"(?<![A-Za-z0-9_\-])(?<!client )secret(?![A-Za-z0-9_\-])")
AUTH = re.compile(r" LOGIN |AUTH PLAIN|AUTH LOGIN|AUTH XOAUTH2|AUTHENTICATE (?!failed)")
BEARER = re.compile(
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\."  # a JWT (header.claims.signature)
    r"|auth=Bearer"  # an XOAUTH2 initial response
    r"|[Bb]earer [A-Za-z0-9._~+/\-]{16,}"  # an Authorization header's token
    r"|(access|refresh)_token\\?\"?\s*[:=]\s*\\?\"?[A-Za-z0-9._~+/\-]{8,}"  # a token in a form or JSON
)

def main() -> int:
    root = pathlib.Path(sys.argv[1])
    files = sorted(root.glob("*.log"))
    if not files:
        print(f"check_logs: no logs in {root}: the integration tests did not run")
        return 1
    lines = found = 0
    for f in files:
        for raw in f.read_text(errors="replace").splitlines():
            line = ANSI.sub("", raw)
            if not LOG_LINE.match(line):
                continue
            lines += 1
            what = [n for n, r in (("address", ADDRESS), ("token", TOKEN), ("password", PASSWORD), ("auth", AUTH), ("bearer token", BEARER)) if r.search(line)]
            if what:
                found += 1
                if found <= 20:
                    print(f"{f.name}: {', '.join(what)}: {line[:300]}")
    print(f"check_logs: {lines} log lines in {len(files)} files, {found} with an address, password or token")
    return 1 if found else 0

if __name__ == "__main__":
    sys.exit(main())
