-- Darter manager schema, MySQL/MariaDB dialect. Timestamps are BIGINT
-- milliseconds since the Unix epoch (UTC) in every backend. Indexed text is
-- VARCHAR because MySQL cannot index TEXT without a prefix length. MySQL has
-- no partial indexes, so "one default cluster" is kept by the store's
-- transactions alone here.
CREATE TABLE clusters (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    description TEXT NOT NULL,
    config TEXT NOT NULL,
    scopes TEXT NOT NULL,
    is_default BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE schedulers (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    hostname VARCHAR(255) NOT NULL,
    ip VARCHAR(64) NOT NULL,
    port BIGINT NOT NULL,
    idc VARCHAR(1024) NOT NULL,
    location VARCHAR(1024) NOT NULL,
    state VARCHAR(16) NOT NULL CHECK (state IN ('active', 'inactive')),
    last_keepalive_at BIGINT NOT NULL,
    cluster_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY schedulers_member (hostname, ip, cluster_id),
    KEY schedulers_cluster_state (cluster_id, state),
    CONSTRAINT schedulers_cluster FOREIGN KEY (cluster_id) REFERENCES clusters (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE seed_peers (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    hostname VARCHAR(255) NOT NULL,
    ip VARCHAR(64) NOT NULL,
    port BIGINT NOT NULL,
    download_port BIGINT NOT NULL,
    idc VARCHAR(1024) NOT NULL,
    location VARCHAR(1024) NOT NULL,
    state VARCHAR(16) NOT NULL CHECK (state IN ('active', 'inactive')),
    last_keepalive_at BIGINT NOT NULL,
    cluster_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE KEY seed_peers_member (hostname, ip, cluster_id),
    KEY seed_peers_cluster_state (cluster_id, state),
    CONSTRAINT seed_peers_cluster FOREIGN KEY (cluster_id) REFERENCES clusters (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role VARCHAR(16) NOT NULL CHECK (role IN ('root', 'guest')),
    created_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE personal_access_tokens (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    token_hash VARCHAR(255) NOT NULL UNIQUE,
    user_id BIGINT NOT NULL,
    expires_at BIGINT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT personal_access_tokens_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
