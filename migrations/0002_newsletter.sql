-- outreach schema, version 2: subscribers, ambassadors, stories, newsletter issues and
-- their deliveries. Times are UTC text (RFC 3339).

-- Settings the daemon generates once (e.g. the token secret when none is configured).
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- A newsletter subscriber. status: pending | active | unsubscribed | bounced.
CREATE TABLE subscribers (
    id                  INTEGER PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE,     -- lower case, as given (a +tag is kept)
    name                TEXT,
    language            TEXT NOT NULL DEFAULT 'nl',
    status              TEXT NOT NULL,
    source              TEXT NOT NULL,            -- how they asked: mail | cli | import | link
    consent_source      TEXT,                     -- which mail, link or import gave consent
    consent_at          TEXT,
    created_at          TEXT NOT NULL,
    confirmed_at        TEXT,
    confirm_sent_at     TEXT,                     -- last confirmation mail (one per day at most)
    unsubscribed_at     TEXT,
    unsubscribe_source  TEXT,
    bounced_at          TEXT,
    bounce_reason       TEXT,
    soft_bounces        INTEGER NOT NULL DEFAULT 0, -- issues in a row with a soft bounce
    token_nonce         TEXT NOT NULL             -- mixed into its link tokens; new nonce = old links die
);
CREATE INDEX subscribers_status ON subscribers(status);

-- Addresses erased on request: only a hash is kept, so they are never mailed again.
CREATE TABLE suppressed (
    email_hash TEXT PRIMARY KEY,
    erased_at  TEXT NOT NULL
);

CREATE TABLE ambassadors (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL DEFAULT '',
    photo_url  TEXT,
    email      TEXT UNIQUE,                       -- lower case; lets them submit stories by mail
    created_at TEXT NOT NULL
);

-- status: submitted | approved | published | rejected.
CREATE TABLE stories (
    id             INTEGER PRIMARY KEY,
    title          TEXT NOT NULL,
    ambassador_id  INTEGER NOT NULL REFERENCES ambassadors(id),
    body_md        TEXT NOT NULL,
    photo_url      TEXT,
    photo_alt      TEXT,
    status         TEXT NOT NULL,
    source         TEXT NOT NULL,                 -- file path or 'mail'
    message_id     INTEGER REFERENCES messages(id),
    consent_at     TEXT,                          -- the ambassador's consent to publish
    consent_source TEXT,
    created_at     TEXT NOT NULL,
    approved_at    TEXT,
    rejected_at    TEXT,
    published_at   TEXT,
    issue_id       INTEGER REFERENCES issues(id)
);
CREATE INDEX stories_status ON stories(status);

-- A newsletter issue. status: proof | sending | sent | cancelled | dropped | skipped.
CREATE TABLE issues (
    id               INTEGER PRIMARY KEY,
    subject          TEXT NOT NULL,
    status           TEXT NOT NULL,
    slot             TEXT UNIQUE,                 -- the cron time it was scheduled for (NULL: sent by hand)
    created_at       TEXT NOT NULL,
    proof_message_id TEXT,
    proof_deadline   TEXT,
    approved_at      TEXT,
    approved_by      TEXT,
    cancelled_at     TEXT,
    started_at       TEXT,
    finished_at      TEXT,
    archive_html     TEXT,                        -- the web archive page: no personal data
    note             TEXT
);

CREATE TABLE issue_stories (
    issue_id INTEGER NOT NULL REFERENCES issues(id),
    story_id INTEGER NOT NULL REFERENCES stories(id),
    position INTEGER NOT NULL,
    PRIMARY KEY (issue_id, story_id)
);

-- One row per (issue, subscriber): the guarantee that each gets it once.
-- status: pending | sending | sent | retry | failed | bounced | skipped.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    issue_id        INTEGER NOT NULL REFERENCES issues(id),
    subscriber_id   INTEGER NOT NULL REFERENCES subscribers(id),
    message_id      TEXT NOT NULL UNIQUE,         -- chosen at enqueue, kept across retries
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT,
    bounced_at      TEXT,
    bounce_status   TEXT,                         -- e.g. 5.1.1
    UNIQUE (issue_id, subscriber_id)
);
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);

-- Transactional mails about a subscriber or an issue go through the outbox.
ALTER TABLE outbox ADD COLUMN subscriber_id INTEGER REFERENCES subscribers(id);
ALTER TABLE outbox ADD COLUMN issue_id INTEGER REFERENCES issues(id);
ALTER TABLE outbox ADD COLUMN story_id INTEGER REFERENCES stories(id);
