-- outreach: rebuilds tables
-- outreach schema, version 5: the outbox kind 'notice_mailbox': the coordinator is told
-- once when the watched mailbox was recreated on the server (its UIDVALIDITY changed).
-- Adding a kind to the CHECK list means rebuilding the table.

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('auto_reply', 'notice_breaker', 'notice_no_stories', 'notice_suspect', 'notice_mailbox', 'proof', 'preview', 'confirm', 'welcome', 'unsubscribed')),
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
    rcpt_norm       TEXT NOT NULL DEFAULT '',     -- lower case, without a +tag
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
