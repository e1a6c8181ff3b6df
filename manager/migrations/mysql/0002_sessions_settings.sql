-- Signed-out sign-in tokens (by JWT ID) until they would have expired anyway,
-- and manager-wide settings shared by replicas (the generated JWT key).
CREATE TABLE revoked_sessions (
    jti VARCHAR(64) NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    INDEX revoked_sessions_expiry (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE settings (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
