-- outreach: rebuilds tables
-- outreach schema, version 4: what the trust rules need.
-- - messages.content_hash: a hash of what a mail says (sender, subject, date, text), so
--   a different mail with a known Message-ID is seen as different.
-- - issues.proof_code: the one-time code a proof answer must carry.
-- - outbox: the normalised recipient and its domain (the reply window and the caps are
--   keyed on who receives our mail), and the kind 'notice_suspect' (the coordinator is
--   told once of a mail that looked like an answer but proved nothing). Adding a kind
--   to the CHECK list means rebuilding the table.

ALTER TABLE messages ADD COLUMN content_hash TEXT;
ALTER TABLE issues ADD COLUMN proof_code TEXT;

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('auto_reply', 'notice_breaker', 'notice_no_stories', 'notice_suspect', 'proof', 'preview', 'confirm', 'welcome', 'unsubscribed')),
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
    lower(rcpt), lower(substr(rcpt, instr(rcpt, '@') + 1)) FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE UNIQUE INDEX outbox_one_reply_per_message ON outbox(reply_to_msg) WHERE kind = 'auto_reply';
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_kind_created ON outbox(kind, created_at);
CREATE INDEX outbox_rcpt_kind_created ON outbox(rcpt_norm, kind, created_at);
CREATE INDEX outbox_domain_kind_created ON outbox(rcpt_domain, kind, created_at);
