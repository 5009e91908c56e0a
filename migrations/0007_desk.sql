-- outreach: rebuilds tables
-- outreach schema: the coordinator's desk.
-- - conversations.status: 'nieuw' -> 'in behandeling' -> 'afgehandeld', back to 'nieuw'
--   when the person writes again; merged_into points at the conversation it joined.
-- - messages.imap_folder: where the message is on the server now.
-- - messages.to_addrs / cc_addrs: who else the mail went to (space separated, lower
--   case), so that an answer keeps every recipient.
-- - desk_events: every action of the coordinator (answer, note, done, reopen, move,
--   merge), who did it ('cli', 'mail client' or a desk user's address) and when.
-- - messages_fts: full-text search (FTS5) over subject, sender and text, kept in step
--   with messages by triggers (retention and erasure clear it too).
-- - outbox: kind 'answer' (the coordinator's reply, with extra recipients in `cc` and a
--   copy for the conversation's folder) and 'digest' / 'desk_login'. Adding a kind to the
--   CHECK list means rebuilding the table.

ALTER TABLE conversations ADD COLUMN status TEXT NOT NULL DEFAULT 'nieuw'
    CHECK (status IN ('nieuw', 'in behandeling', 'afgehandeld'));
ALTER TABLE conversations ADD COLUMN merged_into INTEGER REFERENCES conversations(id);
-- A conversation whose every message was marked done is handled.
UPDATE conversations SET status = 'afgehandeld'
 WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id AND m.status = 'new');
CREATE INDEX conversations_status ON conversations(status, updated_at);

-- Where the message is on the server now (set when our MOVE succeeded); a desk move
-- changes `folder` and the daemon moves it from `imap_folder` there.
ALTER TABLE messages ADD COLUMN imap_folder TEXT;
UPDATE messages SET imap_folder = folder WHERE moved_at IS NOT NULL;
ALTER TABLE messages ADD COLUMN to_addrs TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN cc_addrs TEXT NOT NULL DEFAULT '';
CREATE INDEX messages_conversation ON messages(conversation_id, id);

CREATE TABLE desk_events (
    id              INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    kind            TEXT NOT NULL CHECK (kind IN ('answer', 'note', 'done', 'reopen', 'move', 'merge')),
    actor           TEXT NOT NULL,
    at              TEXT NOT NULL,
    body            TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    outbox_id       INTEGER REFERENCES outbox(id),
    message_id      TEXT                          -- an answer seen in the mail client: its Message-ID
);
CREATE INDEX desk_events_conversation ON desk_events(conversation_id, id);
CREATE UNIQUE INDEX desk_events_client_answer ON desk_events(message_id) WHERE message_id IS NOT NULL;

CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, sender, body, content = '', contentless_delete = 1, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_fts(rowid, subject, sender, body)
    SELECT id, subject, coalesce(from_addr, '') || ' ' || coalesce(from_name, ''), body_text FROM messages;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, subject, sender, body)
    VALUES (new.id, new.subject, coalesce(new.from_addr, '') || ' ' || coalesce(new.from_name, ''), new.body_text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.id;
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, from_addr, from_name, body_text ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.id;
    INSERT INTO messages_fts(rowid, subject, sender, body)
    VALUES (new.id, new.subject, coalesce(new.from_addr, '') || ' ' || coalesce(new.from_name, ''), new.body_text);
END;

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('auto_reply', 'notice_breaker', 'notice_no_stories', 'notice_suspect', 'notice_mailbox', 'notice_login', 'proof', 'preview', 'confirm', 'welcome', 'unsubscribed', 'answer', 'digest', 'desk_login')),
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
    rcpt_domain     TEXT NOT NULL DEFAULT '',
    cc              TEXT NOT NULL DEFAULT '',     -- further envelope recipients, space separated
    copy_folder     TEXT,                         -- an answer: the folder its copy goes to
    copied_at       TEXT                          -- when that copy was appended
);
INSERT INTO outbox_new SELECT id, kind, message_id, reply_to_msg, conversation_id, envelope_from, rcpt, raw, status,
    attempts, next_attempt_at, last_error, created_at, sent_at, subscriber_id, issue_id, story_id, rcpt_norm,
    rcpt_domain, '', NULL, NULL FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE UNIQUE INDEX outbox_one_reply_per_message ON outbox(reply_to_msg) WHERE kind = 'auto_reply';
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_kind_created ON outbox(kind, created_at);
CREATE INDEX outbox_rcpt_kind_created ON outbox(rcpt_norm, kind, created_at);
CREATE INDEX outbox_domain_kind_created ON outbox(rcpt_domain, kind, created_at);
CREATE INDEX outbox_copies ON outbox(kind, status) WHERE copy_folder IS NOT NULL AND copied_at IS NULL;
