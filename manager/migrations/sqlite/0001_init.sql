-- Darter manager schema, SQLite dialect. Timestamps are BIGINT milliseconds
-- since the Unix epoch (UTC) in every backend, so the Rust code and the three
-- schemas agree without per-driver date types.
CREATE TABLE clusters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    config TEXT NOT NULL,
    scopes TEXT NOT NULL,
    is_default BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- At most one default cluster, enforced by the database as well as the store.
CREATE UNIQUE INDEX clusters_single_default ON clusters (is_default) WHERE is_default;

CREATE TABLE schedulers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hostname TEXT NOT NULL,
    ip TEXT NOT NULL,
    port BIGINT NOT NULL,
    idc TEXT NOT NULL,
    location TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'inactive')),
    last_keepalive_at BIGINT NOT NULL,
    cluster_id BIGINT NOT NULL REFERENCES clusters (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (hostname, ip, cluster_id)
);
CREATE INDEX schedulers_cluster_state ON schedulers (cluster_id, state);

CREATE TABLE seed_peers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hostname TEXT NOT NULL,
    ip TEXT NOT NULL,
    port BIGINT NOT NULL,
    download_port BIGINT NOT NULL,
    idc TEXT NOT NULL,
    location TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'inactive')),
    last_keepalive_at BIGINT NOT NULL,
    cluster_id BIGINT NOT NULL REFERENCES clusters (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (hostname, ip, cluster_id)
);
CREATE INDEX seed_peers_cluster_state ON seed_peers (cluster_id, state);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('root', 'guest')),
    created_at BIGINT NOT NULL
);

CREATE TABLE personal_access_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX personal_access_tokens_user ON personal_access_tokens (user_id);
