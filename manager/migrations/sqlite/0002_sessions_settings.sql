-- Signed-out sign-in tokens (by JWT ID) until they would have expired anyway,
-- and manager-wide settings shared by replicas (the generated JWT key).
CREATE TABLE revoked_sessions (
    jti TEXT NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_sessions_expiry ON revoked_sessions (expires_at);

CREATE TABLE settings (
    name TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
