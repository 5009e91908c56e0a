-- outreach schema: logging in to the web desk (`/desk`).
-- - desk_login_links: one-time links mailed to a desk user; only a SHA-256 hash of the
--   token is kept (the token itself is only in the mail), valid until expires_at, used
--   once (used_at).
-- - desk_sessions: a browser's login; only a SHA-256 hash of the session id (the cookie)
--   is kept; csrf is the token every form of that session carries; ended_at on logout.
-- - desk_passwords: an optional password per desk user (argon2id, PHC string).
-- - desk_login_attempts: asking for a link or trying a password, keyed by a hash of the
--   address or of the client's IP address, for the rate limit; old rows are pruned.

CREATE TABLE desk_login_links (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    email       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX desk_login_links_expires ON desk_login_links(expires_at);

CREATE TABLE desk_sessions (
    id           INTEGER PRIMARY KEY,
    session_hash TEXT NOT NULL UNIQUE,
    email        TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    ended_at     TEXT
);
CREATE INDEX desk_sessions_expires ON desk_sessions(expires_at);

CREATE TABLE desk_passwords (
    email  TEXT PRIMARY KEY,
    hash   TEXT NOT NULL,
    set_at TEXT NOT NULL
);

CREATE TABLE desk_login_attempts (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    at  TEXT NOT NULL
);
CREATE INDEX desk_login_attempts_key ON desk_login_attempts(key, at);
