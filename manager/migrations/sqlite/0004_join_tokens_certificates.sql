-- Enrollment: join tokens (the secret is kept as its SHA-256) and the
-- certificates the manager issued as the cluster's CA, for revocation.
CREATE TABLE join_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    cluster_id BIGINT NOT NULL,
    description TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    max_uses BIGINT NOT NULL,
    uses BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE certificates (
    serial TEXT NOT NULL PRIMARY KEY,
    role TEXT NOT NULL,
    cluster_id BIGINT NOT NULL,
    host TEXT NOT NULL,
    token_id TEXT,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    issued_at BIGINT NOT NULL
);
CREATE INDEX certificates_token ON certificates (token_id);
CREATE INDEX certificates_not_after ON certificates (not_after);
