-- outreach: rebuilds tables
-- outreach schema, version 6: OAuth2 logins.
-- - oauth2_login: the refresh token of a device-code login (`outreach login`), one row,
--   with the app (token endpoint and client id) it was given to; every rotated refresh
--   token replaces it. The database file is readable by its owner only.
-- - oauth2_health: per side (imap, smtp) when a login with a token last worked, since
--   when it fails and why (a problem code and its sentence), when the coordinator was
--   told and when the log last said so.
-- - outbox: the kind 'notice_login' (the coordinator is told once that logging in has
--   failed for too long). Adding a kind to the CHECK list means rebuilding the table.

CREATE TABLE oauth2_login (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    client        TEXT NOT NULL,
    refresh_token TEXT NOT NULL,
    saved_at      TEXT NOT NULL
);

CREATE TABLE oauth2_health (
    side          TEXT PRIMARY KEY CHECK (side IN ('imap', 'smtp')),
    ok_at         TEXT,
    failing_since TEXT,
    problem       TEXT,
    detail        TEXT,
    alerted_at    TEXT,
    logged_at     TEXT
);

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('auto_reply', 'notice_breaker', 'notice_no_stories', 'notice_suspect', 'notice_mailbox', 'notice_login', 'proof', 'preview', 'confirm', 'welcome', 'unsubscribed')),
    message_id      TEXT NOT NULL UNIQUE,
    reply_to_msg    INTEGER REFERENCES messages(id),
    conversation_id INTEGER REFERENCES conversations(id),
    envelope_from   TEXT NOT NULL DEFAULT '',
    rcpt            TEXT NOT NULL,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT,
    subscriber_id   INTEGER REFERENCES subscribers(id),
    issue_id        INTEGER REFERENCES issues(id),
    story_id        INTEGER REFERENCES stories(id),
    rcpt_norm       TEXT NOT NULL DEFAULT '',
    rcpt_domain     TEXT NOT NULL DEFAULT ''
);
INSERT INTO outbox_new SELECT id, kind, message_id, reply_to_msg, conversation_id, envelope_from, rcpt, raw, status,
    attempts, next_attempt_at, last_error, created_at, sent_at, subscriber_id, issue_id, story_id,
    rcpt_norm, rcpt_domain FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE UNIQUE INDEX outbox_one_reply_per_message ON outbox(reply_to_msg) WHERE kind = 'auto_reply';
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_kind_created ON outbox(kind, created_at);
CREATE INDEX outbox_rcpt_kind_created ON outbox(rcpt_norm, kind, created_at);
CREATE INDEX outbox_domain_kind_created ON outbox(rcpt_domain, kind, created_at);
