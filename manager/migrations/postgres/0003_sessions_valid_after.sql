-- Sign-in tokens issued before this moment (ms since the epoch, whole
-- seconds) are refused: set when the user's password changes.
ALTER TABLE users ADD COLUMN sessions_valid_after BIGINT NOT NULL DEFAULT 0;
