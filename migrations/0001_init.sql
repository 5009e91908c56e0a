-- outreach schema, version 1. Append-only: later changes go in new files.

-- A person who wrote to us.
CREATE TABLE contacts (
    id                 INTEGER PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE,      -- normalized (lower case, no +tag)
    name               TEXT,
    language           TEXT,
    first_seen_at      TEXT NOT NULL,
    last_auto_reply_at TEXT                       -- for the one-reply-per-window rule
);

-- A thread: the first message and every follow-up.
CREATE TABLE conversations (
    id           INTEGER PRIMARY KEY,
    contact_id   INTEGER REFERENCES contacts(id),
    category     TEXT NOT NULL,
    subject_norm TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX conversations_contact_subject ON conversations(contact_id, subject_norm);

-- Every inbound message that was filed, exactly once.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,         -- 'mid:<Message-ID>' or 'sha256:<hash of raw bytes>'
    message_id      TEXT,                         -- without angle brackets
    in_reply_to     TEXT,
    refs            TEXT,                         -- space separated
    from_addr       TEXT,
    from_name       TEXT,
    reply_to        TEXT,
    subject         TEXT NOT NULL DEFAULT '',
    body_text       TEXT NOT NULL DEFAULT '',
    category        TEXT NOT NULL,
    reason          TEXT NOT NULL,                -- the rule or words that decided
    language        TEXT NOT NULL,
    status          TEXT NOT NULL,                -- new | done
    folder          TEXT NOT NULL,
    reply_note      TEXT NOT NULL DEFAULT '',     -- why (no) auto-reply
    auto_replied    INTEGER NOT NULL DEFAULT 0,
    conversation_id INTEGER REFERENCES conversations(id),
    size            INTEGER NOT NULL DEFAULT 0,
    received_at     TEXT NOT NULL,                -- IMAP INTERNALDATE, UTC
    date_header     TEXT,
    filed_at        TEXT NOT NULL,
    moved_at        TEXT,                         -- set once the IMAP MOVE succeeded
    uidvalidity     INTEGER,
    uid             INTEGER
);
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_category_status ON messages(category, status);

-- Every outgoing mail: the durable queue.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,                -- auto_reply | notice
    message_id      TEXT NOT NULL UNIQUE,         -- ours, without angle brackets, kept across retries
    reply_to_msg    INTEGER REFERENCES messages(id),
    conversation_id INTEGER REFERENCES conversations(id),
    envelope_from   TEXT NOT NULL DEFAULT '',     -- '' = null sender <>
    rcpt            TEXT NOT NULL,
    raw             BLOB NOT NULL,                -- the formatted message
    status          TEXT NOT NULL,                -- queued | sending | sent | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE UNIQUE INDEX outbox_one_reply_per_message ON outbox(reply_to_msg) WHERE kind = 'auto_reply';
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_kind_created ON outbox(kind, created_at);

-- IMAP position per watched mailbox (RFC 3501: UIDs only mean something with UIDVALIDITY).
CREATE TABLE mailbox_state (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    highest_uid INTEGER NOT NULL
);

-- What `outreach status` shows: connection states and the last error, written by the daemon.
CREATE TABLE daemon_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
