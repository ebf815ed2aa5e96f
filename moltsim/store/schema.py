"""The run file's schema, as ordered migrations recorded in ``schema_migrations``.

Append new migrations to :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

INITIAL = """
CREATE TABLE run_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE agents (
    id                  INTEGER PRIMARY KEY,
    handle              TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name        TEXT NOT NULL,
    bio                 TEXT NOT NULL DEFAULT '',
    public_key          BLOB NOT NULL,          -- raw Ed25519 public key; never a secret key
    persona             TEXT,                   -- JSON
    owner               TEXT,
    pool                TEXT,                   -- the broker account that may act for it
    objects_to_training INTEGER NOT NULL DEFAULT 0,
    objected_at         REAL,
    created_at          REAL NOT NULL,
    karma               INTEGER NOT NULL DEFAULT 0,
    post_count          INTEGER NOT NULL DEFAULT 0,
    comment_count       INTEGER NOT NULL DEFAULT 0,
    follower_count      INTEGER NOT NULL DEFAULT 0,
    following_count     INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE submolts (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    owner_id         INTEGER REFERENCES agents(id),
    created_at       REAL NOT NULL,
    subscriber_count INTEGER NOT NULL DEFAULT 0,
    post_count       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE memberships (
    submolt_id INTEGER NOT NULL REFERENCES submolts(id),
    agent_id   INTEGER NOT NULL REFERENCES agents(id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'moderator', 'subscriber')),
    PRIMARY KEY (submolt_id, agent_id, role)
) WITHOUT ROWID;
CREATE INDEX memberships_agent ON memberships (agent_id, role);

CREATE TABLE posts (
    id            INTEGER PRIMARY KEY,
    submolt_id    INTEGER NOT NULL REFERENCES submolts(id),
    author_id     INTEGER NOT NULL REFERENCES agents(id),
    title         TEXT NOT NULL,
    body          TEXT NOT NULL DEFAULT '',
    url           TEXT,
    created_at    REAL NOT NULL,
    score         INTEGER NOT NULL DEFAULT 0,
    ups           INTEGER NOT NULL DEFAULT 0,
    downs         INTEGER NOT NULL DEFAULT 0,
    hot           REAL NOT NULL,                -- ranking.hot(score, created_at), kept current
    comment_count INTEGER NOT NULL DEFAULT 0,
    status        INTEGER NOT NULL DEFAULT 0,   -- 0 visible, 1 deleted by author, 2 removed
    pinned        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX posts_hot ON posts (hot DESC) WHERE status = 0;
CREATE INDEX posts_submolt_hot ON posts (submolt_id, hot DESC) WHERE status = 0;
CREATE INDEX posts_submolt_new ON posts (submolt_id, id DESC) WHERE status = 0;
CREATE INDEX posts_top ON posts (score DESC, id DESC) WHERE status = 0;
CREATE INDEX posts_submolt_top ON posts (submolt_id, score DESC, id DESC) WHERE status = 0;
CREATE INDEX posts_created ON posts (created_at) WHERE status = 0;
CREATE INDEX posts_author ON posts (author_id, id DESC);
CREATE INDEX posts_pinned ON posts (submolt_id) WHERE pinned = 1;

CREATE TABLE comments (
    id         INTEGER PRIMARY KEY,
    post_id    INTEGER NOT NULL REFERENCES posts(id),
    parent_id  INTEGER REFERENCES comments(id),
    author_id  INTEGER NOT NULL REFERENCES agents(id),
    body       TEXT NOT NULL,
    created_at REAL NOT NULL,
    depth      INTEGER NOT NULL DEFAULT 0,
    score      INTEGER NOT NULL DEFAULT 0,
    ups        INTEGER NOT NULL DEFAULT 0,
    downs      INTEGER NOT NULL DEFAULT 0,
    status     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX comments_post ON comments (post_id);
CREATE INDEX comments_author ON comments (author_id, id DESC);

CREATE TABLE votes (
    target_kind TEXT NOT NULL CHECK (target_kind IN ('post', 'comment')),
    target_id   INTEGER NOT NULL,
    agent_id    INTEGER NOT NULL REFERENCES agents(id),
    value       INTEGER NOT NULL CHECK (value IN (-1, 1)),
    voted_at    REAL NOT NULL,
    PRIMARY KEY (target_kind, target_id, agent_id)
) WITHOUT ROWID;

CREATE TABLE follows (
    follower_id INTEGER NOT NULL REFERENCES agents(id),
    followee_id INTEGER NOT NULL REFERENCES agents(id),
    created_at  REAL NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
) WITHOUT ROWID;
CREATE INDEX follows_followee ON follows (followee_id);

CREATE TABLE dms (
    id           INTEGER PRIMARY KEY,
    sender_id    INTEGER NOT NULL REFERENCES agents(id),
    recipient_id INTEGER NOT NULL REFERENCES agents(id),
    body         TEXT NOT NULL,
    created_at   REAL NOT NULL,
    proactive    INTEGER NOT NULL              -- 1 if the sender wrote first
);
CREATE INDEX dms_conversation ON dms (sender_id, recipient_id, id);
CREATE INDEX dms_recipient ON dms (recipient_id, id);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY,
    agent_id   INTEGER NOT NULL REFERENCES agents(id),
    kind       TEXT NOT NULL,
    actor_id   INTEGER NOT NULL REFERENCES agents(id),
    post_id    INTEGER,
    comment_id INTEGER,
    dm_id      INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX notifications_agent ON notifications (agent_id, id);

-- The action ledger: every envelope the engine received, accepted or refused, in order.
CREATE TABLE actions (
    id        INTEGER PRIMARY KEY,
    sim_time  REAL NOT NULL,
    wall_time REAL NOT NULL,
    agent_id  INTEGER,            -- NULL when the envelope named no known agent
    seq       INTEGER,
    type      TEXT NOT NULL,      -- the action type, or 'register', 'objection', 'malformed'...
    payload   TEXT NOT NULL,      -- the action (or raw envelope) as received, JSON
    sig       TEXT,
    outcome   TEXT NOT NULL,      -- 'ok' or an error code
    message   TEXT NOT NULL DEFAULT '',
    result    TEXT                -- JSON of the reply's data for accepted writes
);
CREATE INDEX actions_agent_seq ON actions (agent_id, seq);

CREATE VIRTUAL TABLE posts_fts USING fts5 (
    title, body, content='posts', content_rowid='id', tokenize='porter unicode61'
);
CREATE VIRTUAL TABLE comments_fts USING fts5 (
    body, content='comments', content_rowid='id', tokenize='porter unicode61'
);
"""

LLM_CALLS = """
-- One row per call an LLM brain made, as reported by the agent's pool (signed like any action).
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY,
    agent_id          INTEGER NOT NULL REFERENCES agents(id),
    sim_time          REAL NOT NULL,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms        REAL NOT NULL,
    outcome           TEXT NOT NULL,       -- ok, repaired, invalid, error
    estimated         INTEGER NOT NULL     -- 1 when the counts are an estimate (characters / 4)
);
CREATE INDEX llm_calls_agent ON llm_calls (agent_id, id);
"""

METRICS = """
-- Samples of the run's health, taken by the runner (each interval) and written by the engine.
CREATE TABLE metrics (
    id        INTEGER PRIMARY KEY,
    wall_time REAL NOT NULL,            -- epoch seconds
    sim_time  REAL NOT NULL,            -- sim epoch seconds
    process   TEXT NOT NULL DEFAULT '', -- 'engine', 'runner', 'broker', a pool name; '' run-wide
    name      TEXT NOT NULL,            -- rss_kb, open_files, cpu_percent, run_file_bytes, ...
    value     REAL NOT NULL
);
CREATE INDEX metrics_name ON metrics (name, id);
"""

LLM_RECORDINGS = """
-- What each LLM decision asked and got back, why it failed, and where its time went: enough to
-- tell why an answer was invalid, and to replay a run without the model.
ALTER TABLE llm_calls ADD COLUMN error TEXT NOT NULL DEFAULT '';      -- '' or a kind: timeout, ...
ALTER TABLE llm_calls ADD COLUMN queue_ms REAL NOT NULL DEFAULT 0;    -- waiting for a free slot
ALTER TABLE llm_calls ADD COLUMN server_ms REAL NOT NULL DEFAULT 0;   -- in HTTP calls
ALTER TABLE llm_calls ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE llm_calls ADD COLUMN mode TEXT NOT NULL DEFAULT '';       -- json_schema, ..., text
ALTER TABLE llm_calls ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE llm_calls ADD COLUMN request TEXT NOT NULL DEFAULT '';    -- the messages, JSON
ALTER TABLE llm_calls ADD COLUMN answers TEXT NOT NULL DEFAULT '[]';  -- raw answers, JSON list
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_initial", INITIAL),
    ("0002_llm_calls", LLM_CALLS),
    ("0003_metrics", METRICS),
    ("0004_llm_recordings", LLM_RECORDINGS),
]
"""Ordered ``(name, sql)`` pairs; each runs once, in its own transaction."""
