#!/usr/bin/env python3
"""Deterministic mutated mail generator (stdlib only), for bench/mutated.sh.

  mutate.py CORPUS DEST [--count 10000] [--seed 1]

Reads every .eml below CORPUS (tests/fixtures/corpus) and writes COUNT mutated variants
as a Maildir in DEST/{cur,new,tmp}. Each variant is one corpus mail with a Message-ID of
its own, then one to three of these mutations:

  flip       1-40 random bytes XORed with a random value
  truncate   cut at a random offset (headers included)
  dup        one header line repeated 2-200 times
  drop       1-4 header lines removed (From, Subject, Date, Content-Type, ...)
  boundary   MIME boundaries broken: the parameter changed, emptied or unquoted, the
             closing delimiter removed, or part delimiters mangled
  huge       a header line of 8-200 KB (unfolded, folded, or a References list of
             thousands of ids)
  charset    odd charsets: utf-7, utf-16, x-unknown, iso-2022-jp, an empty or binary
             charset name, in Content-Type or in encoded words of the Subject
  nest       the mail wrapped in 1-60 levels of multipart/mixed or message/rfc822,
             or followed by hundreds of sibling parts
  endings    line ends turned into bare CR, mixed CR/LF/CRLF, or NUL bytes in headers

and a first header line `X-Mutant: N ops` (so no two variants are the same bytes).
Same seed -> byte-identical output, file names included. Prints a JSON summary.
"""
import argparse
import json
import os
import random
import re
import sys

OPS = ["flip", "truncate", "dup", "drop", "boundary", "huge", "charset", "nest", "endings"]
CHARSETS = [b"utf-7", b"utf-16", b"UTF-16BE", b"x-unknown", b"iso-2022-jp", b"gb18030", b"",
            b"\"\"", b"koi8-r\x00", b"unicode-1-1-utf-7", b"windows-1258", b"x-mac-cyrillic",
            b"\xd0\xba\xd0\xbe\xd0\xb8", b"us-ascii; charset=utf-8", b"utf-8" * 40]


def split_head(raw):
    """(head, sep, body): the header block, the blank line, the rest."""
    m = re.search(rb"\r?\n\r?\n", raw)
    if not m:
        return raw, b"", b""
    return raw[:m.start()], raw[m.start():m.end()], raw[m.end():]


def header_lines(head):
    """Header fields with their continuation lines, as byte strings ending in \\n."""
    lines = re.split(rb"(?<=\n)", head + b"\n")
    fields = []
    for ln in lines:
        if not ln:
            continue
        if fields and ln[:1] in (b" ", b"\t"):
            fields[-1] += ln
        else:
            fields.append(ln)
    return fields


def set_message_id(raw, n):
    head, sep, body = split_head(raw)
    mid = b"Message-ID: <mutant-%d@mutated.test>\n" % n
    fields = [f for f in header_lines(head) if not f.lower().startswith(b"message-id:")]
    return b"".join(fields[:1] + [mid] + fields[1:]).rstrip(b"\n") + (sep or b"\n\n") + body


def flip(rng, raw):
    b = bytearray(raw)
    for _ in range(rng.randint(1, 40)):
        if b:
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    return bytes(b)


def truncate(rng, raw):
    return raw[: rng.randint(1, max(1, len(raw) - 1))]


def dup(rng, raw):
    head, sep, body = split_head(raw)
    fields = header_lines(head)
    if not fields:
        return raw
    i = rng.randrange(len(fields))
    # At most ~200 KB of repeats (a repeated huge line would only fill the disk).
    times = min(rng.randint(2, 200), max(2, 200_000 // len(fields[i])))
    fields[i:i + 1] = [fields[i]] * times
    return b"".join(fields).rstrip(b"\n") + sep + body


def drop(rng, raw):
    head, sep, body = split_head(raw)
    fields = header_lines(head)
    wanted = (b"from:", b"subject:", b"date:", b"content-type:", b"mime-version:", b"message-id:",
              b"to:", b"content-transfer-encoding:", b"reply-to:")
    for _ in range(rng.randint(1, 4)):
        cands = [i for i, f in enumerate(fields) if f.lower().startswith(wanted)] or list(range(len(fields)))
        if not cands:
            break
        del fields[rng.choice(cands)]
    return b"".join(fields).rstrip(b"\n") + sep + body


def boundary(rng, raw):
    m = re.search(rb'boundary="?([^";\r\n]+)"?', raw, re.I)
    if not m:
        # Not multipart: make it claim to be, with a boundary that never comes.
        head, sep, body = split_head(raw)
        return head + b"\nContent-Type: multipart/mixed; boundary=\"nowhere\"" + (sep or b"\n\n") + body
    b = m.group(1)
    kind = rng.randrange(5)
    if kind == 0:   # the parameter no longer matches the delimiters
        return raw[:m.start(1)] + b + b"X" + raw[m.end(1):]
    if kind == 1:   # an empty boundary
        return raw[:m.start()] + b'boundary=""' + raw[m.end():]
    if kind == 2:   # no closing delimiter
        return raw.replace(b"--" + b + b"--", b"")
    if kind == 3:   # some delimiters mangled
        parts = raw.split(b"--" + b)
        out = parts[0]
        for p in parts[1:]:
            out += (b"--" + b[:-1] if rng.random() < 0.5 else b"--" + b) + p
        return out
    # unquoted with spaces and a semicolon inside
    return raw[:m.start()] + b"boundary=" + b + b" ;x; " + raw[m.end():]


def huge(rng, raw):
    head, sep, body = split_head(raw)
    size = rng.randint(8_000, 200_000)
    kind = rng.randrange(3)
    if kind == 0:
        line = b"X-Long: " + b"a" * size
    elif kind == 1:
        words = [b"woord%d" % i for i in range(size // 8)]
        line = b"Subject: " + b"\n ".join(b" ".join(words[i:i + 8]) for i in range(0, len(words), 8))
    else:
        ids = [b"<ref%d.%d@mutated.test>" % (i, rng.randrange(10**9)) for i in range(size // 30)]
        line = b"References: " + b"\n ".join(ids)
    fields = header_lines(head)
    fields.insert(rng.randint(0, len(fields)), line + b"\n")
    return b"".join(fields).rstrip(b"\n") + (sep or b"\n\n") + body


def charset(rng, raw):
    cs = rng.choice(CHARSETS)
    if rng.random() < 0.5 and re.search(rb"charset=", raw, re.I):
        return re.sub(rb'charset="?[^";\r\n]*"?', b'charset="' + cs + b'"', raw, count=rng.randint(1, 5), flags=re.I)
    head, sep, body = split_head(raw)
    word = b"=?" + cs + b"?" + rng.choice([b"B?", b"Q?"]) + bytes(rng.randrange(33, 127) for _ in range(40)).replace(b"?", b"_") + b"?="
    return b"Subject: " + word + b" " + word + b"\n" + head + (sep or b"\n\n") + body


def nest(rng, raw):
    if rng.random() < 0.3:
        # Hundreds of sibling parts (around the parser's part limit of 500).
        n = rng.randint(200, 800)
        parts = b"".join(b"--sib\nContent-Type: text/plain\n\npart %d\n" % i for i in range(n))
        head, sep, body = split_head(raw)
        return (b"From: ann@example.nl\nSubject: many parts\nMIME-Version: 1.0\n"
                b"Content-Type: multipart/mixed; boundary=sib\n\n" + parts + b"--sib\nContent-Type: message/rfc822\n\n" + raw + b"\n--sib--\n")
    out = raw
    for level in range(rng.randint(1, 60)):
        if rng.random() < 0.5:
            out = (b"Content-Type: multipart/mixed; boundary=\"lvl%d\"\n\n--lvl%d\n" % (level, level)
                   + out + b"\n--lvl%d--\n" % level)
        else:
            out = b"Content-Type: message/rfc822\n\n" + out
    return b"From: ann@example.nl\nSubject: nested\nMIME-Version: 1.0\n" + out


def endings(rng, raw):
    kind = rng.randrange(3)
    if kind == 0:
        return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r")
    if kind == 1:
        return re.sub(rb"\r?\n", lambda _: rng.choice([b"\n", b"\r\n", b"\r", b"\n\r"]), raw)
    head, sep, body = split_head(raw)
    b = bytearray(head)
    for _ in range(rng.randint(1, 10)):
        if b:
            b.insert(rng.randrange(len(b)), 0)
    return bytes(b) + sep + body


def main():
    p = argparse.ArgumentParser()
    p.add_argument("corpus")
    p.add_argument("dest")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.corpus) for f in fs if f.endswith(".eml"))
    if not files:
        sys.exit(f"mutate.py: no .eml files in {a.corpus}")
    # Line ends as LF (the Maildir convention), so that the Message-ID of every variant can
    # be replaced (old Mac mail ends lines with a bare CR); `endings` brings such ends back.
    sources = [re.sub(rb"\r\n?", b"\n", open(f, "rb").read()) for f in files]
    # Mails over 500 KB are taken less often (they would fill the mailbox, not test more).
    weights = [0.1 if len(s) > 500_000 else 1.0 for s in sources]
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(a.dest, sub), exist_ok=True)
    counts = {op: 0 for op in OPS}
    total = 0
    biggest = 0
    for n in range(a.count):
        raw = set_message_id(rng.choices(sources, weights)[0], n)
        ops = rng.sample(OPS, rng.randint(1, 3))
        for op in ops:
            raw = globals()[op](rng, raw)
            counts[op] += 1
        raw = b"X-Mutant: %d %s\n" % (n, " ".join(ops).encode()) + raw
        total += len(raw)
        biggest = max(biggest, len(raw))
        name = "%d.M%dP1Q%d.mutated:2," % (1700000000 + n, n, n)
        with open(os.path.join(a.dest, "cur", name), "wb") as f:
            f.write(raw)
    print(json.dumps({"messages": a.count, "sources": len(files), "seed": a.seed, "MB": round(total / 1e6, 1),
                      "size_max": biggest, "mutations": counts}))


if __name__ == "__main__":
    main()
