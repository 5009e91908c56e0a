-- outreach: rebuilds tables
-- outreach schema, version 3: every status, kind, category and language column only
-- holds the values the code knows (src/domain/state.rs), by a CHECK constraint. SQLite
-- cannot add a constraint to a table, so each table is rebuilt (create, copy, drop,
-- rename: https://www.sqlite.org/lang_altertable.html#otheralter), with foreign keys off
-- during the migration and checked before it commits. Values stay as they were; the
-- one new value is the issue status 'approved' (a proof a person approved, waiting for
-- the newsletter task to start the send).

CREATE TABLE conversations_new (
    id           INTEGER PRIMARY KEY,
    contact_id   INTEGER REFERENCES contacts(id),
    category     TEXT NOT NULL CHECK (category IN ('join', 'question', 'unsubscribe', 'followup', 'automatic', 'bounce', 'review', 'story')),
    subject_norm TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
INSERT INTO conversations_new SELECT id, contact_id, category, subject_norm, created_at, updated_at FROM conversations;
DROP TABLE conversations;
ALTER TABLE conversations_new RENAME TO conversations;
CREATE INDEX conversations_contact_subject ON conversations(contact_id, subject_norm);

CREATE TABLE messages_new (
    id              INTEGER PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,
    message_id      TEXT,
    in_reply_to     TEXT,
    refs            TEXT,
    from_addr       TEXT,
    from_name       TEXT,
    reply_to        TEXT,
    subject         TEXT NOT NULL DEFAULT '',
    body_text       TEXT NOT NULL DEFAULT '',
    category        TEXT NOT NULL CHECK (category IN ('join', 'question', 'unsubscribe', 'followup', 'automatic', 'bounce', 'review', 'story')),
    reason          TEXT NOT NULL,
    language        TEXT NOT NULL CHECK (language IN ('nl', 'en')),
    status          TEXT NOT NULL CHECK (status IN ('new', 'done')),
    folder          TEXT NOT NULL,
    reply_note      TEXT NOT NULL DEFAULT '',
    auto_replied    INTEGER NOT NULL DEFAULT 0,
    conversation_id INTEGER REFERENCES conversations(id),
    size            INTEGER NOT NULL DEFAULT 0,
    received_at     TEXT NOT NULL,
    date_header     TEXT,
    filed_at        TEXT NOT NULL,
    moved_at        TEXT,
    uidvalidity     INTEGER,
    uid             INTEGER
);
INSERT INTO messages_new SELECT id, dedupe_key, message_id, in_reply_to, refs, from_addr, from_name, reply_to, subject,
    body_text, category, reason, language, status, folder, reply_note, auto_replied, conversation_id, size, received_at,
    date_header, filed_at, moved_at, uidvalidity, uid FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_message_id ON messages(message_id);
CREATE INDEX messages_category_status ON messages(category, status);

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('auto_reply', 'notice_breaker', 'notice_no_stories', 'proof', 'preview', 'confirm', 'welcome', 'unsubscribed')),
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
    story_id        INTEGER REFERENCES stories(id)
);
INSERT INTO outbox_new SELECT id, kind, message_id, reply_to_msg, conversation_id, envelope_from, rcpt, raw, status,
    attempts, next_attempt_at, last_error, created_at, sent_at, subscriber_id, issue_id, story_id FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE UNIQUE INDEX outbox_one_reply_per_message ON outbox(reply_to_msg) WHERE kind = 'auto_reply';
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_kind_created ON outbox(kind, created_at);

CREATE TABLE subscribers_new (
    id                  INTEGER PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE,
    name                TEXT,
    language            TEXT NOT NULL DEFAULT 'nl' CHECK (language IN ('nl', 'en')),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'active', 'unsubscribed', 'bounced')),
    source              TEXT NOT NULL,
    consent_source      TEXT,
    consent_at          TEXT,
    created_at          TEXT NOT NULL,
    confirmed_at        TEXT,
    confirm_sent_at     TEXT,
    unsubscribed_at     TEXT,
    unsubscribe_source  TEXT,
    bounced_at          TEXT,
    bounce_reason       TEXT,
    soft_bounces        INTEGER NOT NULL DEFAULT 0,
    token_nonce         TEXT NOT NULL
);
INSERT INTO subscribers_new SELECT id, email, name, language, status, source, consent_source, consent_at, created_at,
    confirmed_at, confirm_sent_at, unsubscribed_at, unsubscribe_source, bounced_at, bounce_reason, soft_bounces,
    token_nonce FROM subscribers;
DROP TABLE subscribers;
ALTER TABLE subscribers_new RENAME TO subscribers;
CREATE INDEX subscribers_status ON subscribers(status);

CREATE TABLE stories_new (
    id             INTEGER PRIMARY KEY,
    title          TEXT NOT NULL,
    ambassador_id  INTEGER NOT NULL REFERENCES ambassadors(id),
    body_md        TEXT NOT NULL,
    photo_url      TEXT,
    photo_alt      TEXT,
    status         TEXT NOT NULL CHECK (status IN ('submitted', 'approved', 'published', 'rejected')),
    source         TEXT NOT NULL,
    message_id     INTEGER REFERENCES messages(id),
    consent_at     TEXT,
    consent_source TEXT,
    created_at     TEXT NOT NULL,
    approved_at    TEXT,
    rejected_at    TEXT,
    published_at   TEXT,
    issue_id       INTEGER REFERENCES issues(id)
);
INSERT INTO stories_new SELECT id, title, ambassador_id, body_md, photo_url, photo_alt, status, source, message_id,
    consent_at, consent_source, created_at, approved_at, rejected_at, published_at, issue_id FROM stories;
DROP TABLE stories;
ALTER TABLE stories_new RENAME TO stories;
CREATE INDEX stories_status ON stories(status);

CREATE TABLE issues_new (
    id               INTEGER PRIMARY KEY,
    subject          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('new', 'proof', 'approved', 'sending', 'sent', 'cancelled', 'dropped', 'skipped')),
    slot             TEXT UNIQUE,
    created_at       TEXT NOT NULL,
    proof_message_id TEXT,
    proof_deadline   TEXT,
    approved_at      TEXT,
    approved_by      TEXT,
    cancelled_at     TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    archive_html     TEXT,
    note             TEXT
);
INSERT INTO issues_new SELECT id, subject, status, slot, created_at, proof_message_id, proof_deadline, approved_at,
    approved_by, cancelled_at, started_at, finished_at, archive_html, note FROM issues;
DROP TABLE issues;
ALTER TABLE issues_new RENAME TO issues;

CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY,
    issue_id        INTEGER NOT NULL REFERENCES issues(id),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers(id),
    message_id      TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'retry', 'failed', 'bounced', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT,
    bounced_at      TEXT,
    bounce_status   TEXT,
    UNIQUE (issue_id, subscriber_id)
);
INSERT INTO deliveries_new SELECT id, issue_id, subscriber_id, message_id, status, attempts, next_attempt_at,
    last_error, sent_at, bounced_at, bounce_status FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);
