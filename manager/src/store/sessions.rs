//! Signed-out sign-in tokens and manager-wide settings.
//!
//! Sign-in tokens are stateless JWTs; signing out records the token's ID here
//! until the moment it would have expired anyway, and every replica checks
//! this table. Settings hold values replicas must agree on (the generated JWT
//! key), written once by whichever replica gets there first.

use super::error::{Result, StoreError};
use super::{Store, Timestamp};

/// Longest JWT ID the store accepts (the column is `VARCHAR(64)`).
pub const MAX_JTI_LEN: usize = 64;

impl Store {
    /// Records that the sign-in token `jti` was signed out; it stays refused
    /// until `expires_at`, when [`Store::gc_revoked_sessions`] may forget it.
    /// Revoking twice is not an error.
    pub async fn revoke_session(&self, jti: &str, expires_at: Timestamp) -> Result<()> {
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(StoreError::Invalid("jti", format!("must be 1 to {MAX_JTI_LEN} bytes")));
        }
        let exists = self.sql("SELECT COUNT(*) FROM revoked_sessions WHERE jti = ?");
        let insert = self.sql("INSERT INTO revoked_sessions (jti, expires_at) VALUES (?, ?)");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let n: i64 = sqlx::query_scalar(exists).bind(jti).fetch_one(&mut *tx).await?;
            if n == 0 {
                sqlx::query(insert).bind(jti).bind(expires_at.0).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Whether the sign-in token `jti` was signed out.
    pub async fn is_session_revoked(&self, jti: &str) -> Result<bool> {
        let sql = self.sql("SELECT COUNT(*) FROM revoked_sessions WHERE jti = ?");
        let n: i64 = dispatch!(self, pool => sqlx::query_scalar(sql).bind(jti).fetch_one(pool).await?);
        Ok(n > 0)
    }

    /// Forgets signed-out tokens that have expired by `now`; returns how many.
    pub async fn gc_revoked_sessions(&self, now: Timestamp) -> Result<u64> {
        let sql = self.sql("DELETE FROM revoked_sessions WHERE expires_at <= ?");
        dispatch!(self, pool => Ok(sqlx::query(sql).bind(now.0).execute(pool).await?.rows_affected()))
    }

    /// The setting `name`; when it is unset, stores `initial` first. Every
    /// caller, on every replica, gets the same value back.
    pub async fn setting_or_init(&self, name: &str, initial: &str) -> Result<String> {
        let select = self.sql("SELECT value FROM settings WHERE name = ?");
        let insert = self.sql("INSERT INTO settings (name, value) VALUES (?, ?)");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let current: Option<String> = sqlx::query_scalar(select.clone()).bind(name).fetch_optional(&mut *tx).await?;
            if let Some(value) = current {
                tx.commit().await?;
                return Ok(value);
            }
            let inserted = sqlx::query(insert).bind(name).bind(initial).execute(&mut *tx).await;
            match inserted {
                Ok(_) => {
                    tx.commit().await?;
                    Ok(initial.to_owned())
                }
                // Another replica inserted it between our read and write.
                Err(sqlx::Error::Database(d)) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                    drop(tx);
                    let value: String = sqlx::query_scalar(select).bind(name).fetch_one(pool).await?;
                    Ok(value)
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Sets the setting `name` to `value`, replacing what it held (a new JWT
    /// key when the old one may have been read).
    pub async fn replace_setting(&self, name: &str, value: &str) -> Result<()> {
        let delete = self.sql("DELETE FROM settings WHERE name = ?");
        let insert = self.sql("INSERT INTO settings (name, value) VALUES (?, ?)");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            sqlx::query(delete).bind(name).execute(&mut *tx).await?;
            sqlx::query(insert).bind(name).bind(value).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }
}
