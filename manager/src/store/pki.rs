//! Join tokens and the certificates issued with them.
//!
//! A join token is `<id>.<secret>`; only the SHA-256 of the secret is
//! stored. Consuming a use is one conditional `UPDATE` (live, not expired,
//! uses left), so replicas never hand out more uses than a token has. Every
//! issued certificate is recorded by serial with the token that enrolled its
//! holder (renewals carry it on), so revoking a token revokes what it let in.

use super::error::{Result, StoreError};
use super::{Store, Timestamp};

/// A join token as stored (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JoinToken {
    /// The public half, `[a-z0-9]{6}`.
    pub id: String,
    /// `scheduler`, `seed_peer` or `peer`.
    pub role: String,
    /// The cluster its members join.
    pub cluster_id: i64,
    /// What the operator wrote about it.
    pub description: String,
    /// When it stops working (ms since the epoch).
    pub expires_at: i64,
    /// How many enrollments it allows (0: any number until it expires).
    pub max_uses: i64,
    /// How many it has had.
    pub uses: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// When it was created.
    pub created_at: i64,
}

/// A new join token.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    /// Its ID.
    pub id: String,
    /// SHA-256 (hex) of its secret.
    pub secret_hash: String,
    /// Role, cluster, description, expiry and uses as in [`JoinToken`].
    pub role: String,
    pub cluster_id: i64,
    pub description: String,
    pub expires_at: Timestamp,
    pub max_uses: i64,
}

/// A certificate the manager issued.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedCert {
    /// Serial, lower-case hex.
    pub serial: String,
    /// The identity it names.
    pub role: String,
    pub cluster_id: i64,
    pub host: String,
    /// The join token that enrolled its holder (`None` for the manager's own).
    pub token_id: Option<String>,
    /// When it expires (ms).
    pub not_after: i64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// When it was issued (ms).
    pub issued_at: i64,
}

const TOKEN_COLUMNS: &str = "id, role, cluster_id, description, expires_at, max_uses, uses, revoked_at, created_at";
const CERT_COLUMNS: &str = "serial, role, cluster_id, host, token_id, not_after, revoked_at, issued_at";

macro_rules! token_from_row {
    ($row:expr) => {
        JoinToken {
            id: col!($row, "id"),
            role: col!($row, "role"),
            cluster_id: col!($row, "cluster_id"),
            description: col!($row, "description"),
            expires_at: col!($row, "expires_at"),
            max_uses: col!($row, "max_uses"),
            uses: col!($row, "uses"),
            revoked_at: col!($row, "revoked_at"),
            created_at: col!($row, "created_at"),
        }
    };
}

macro_rules! cert_from_row {
    ($row:expr) => {
        IssuedCert {
            serial: col!($row, "serial"),
            role: col!($row, "role"),
            cluster_id: col!($row, "cluster_id"),
            host: col!($row, "host"),
            token_id: col!($row, "token_id"),
            not_after: col!($row, "not_after"),
            revoked_at: col!($row, "revoked_at"),
            issued_at: col!($row, "issued_at"),
        }
    };
}

impl Store {
    /// Stores a new join token.
    pub async fn create_join_token(&self, new: &NewJoinToken, now: Timestamp) -> Result<JoinToken> {
        let insert = self.sql(
            "INSERT INTO join_tokens (id, secret_hash, role, cluster_id, description, expires_at, max_uses, uses, \
             revoked_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL, ?)",
        );
        dispatch!(self, pool => {
            sqlx::query(insert)
                .bind(&new.id)
                .bind(&new.secret_hash)
                .bind(&new.role)
                .bind(new.cluster_id)
                .bind(&new.description)
                .bind(new.expires_at.0)
                .bind(new.max_uses)
                .bind(now.0)
                .execute(pool)
                .await
                .map_err(|e| match e {
                    sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                        StoreError::Conflict("id")
                    }
                    e => e.into(),
                })?;
        });
        self.get_join_token(&new.id).await
    }

    /// Moves the expiry of the live token `id` to `expires_at` if it has
    /// this secret, role and cluster; `false` if no such live token exists
    /// (unknown, revoked, or another secret, role or cluster).
    pub async fn extend_join_token(&self, new: &NewJoinToken) -> Result<bool> {
        let update = self.sql(
            "UPDATE join_tokens SET expires_at = ?, description = ? WHERE id = ? AND secret_hash = ? AND role = ? \
             AND cluster_id = ? AND revoked_at IS NULL",
        );
        let n = dispatch!(self, pool => sqlx::query(update)
            .bind(new.expires_at.0)
            .bind(&new.description)
            .bind(&new.id)
            .bind(&new.secret_hash)
            .bind(&new.role)
            .bind(new.cluster_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// One join token by ID.
    pub async fn get_join_token(&self, id: &str) -> Result<JoinToken> {
        let sql = self.sql(format!("SELECT {TOKEN_COLUMNS} FROM join_tokens WHERE id = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(token_from_row!(&row))
        })
    }

    /// Every join token, newest first.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinToken>> {
        let sql = self.sql(format!("SELECT {TOKEN_COLUMNS} FROM join_tokens ORDER BY created_at DESC, id"));
        dispatch!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(token_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Takes one use of the token `id` if its secret hash matches and it is
    /// live, unexpired and has uses left; returns it. Anything else is
    /// [`StoreError::NotFound`] (the caller says "refused" without saying why
    /// to a stranger).
    pub async fn consume_join_token(&self, id: &str, secret_hash: &str, now: Timestamp) -> Result<JoinToken> {
        let update = self.sql(
            "UPDATE join_tokens SET uses = uses + 1 WHERE id = ? AND secret_hash = ? AND revoked_at IS NULL \
             AND expires_at > ? AND (max_uses = 0 OR uses < max_uses)",
        );
        let n = dispatch!(self, pool => sqlx::query(update)
            .bind(id)
            .bind(secret_hash)
            .bind(now.0)
            .execute(pool)
            .await?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_join_token(id).await
    }

    /// Revokes the token `id` and every unexpired certificate it enrolled;
    /// returns the certificates' serials.
    pub async fn revoke_join_token(&self, id: &str, now: Timestamp) -> Result<Vec<String>> {
        let token = self.sql("UPDATE join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
        let exists = self.sql("SELECT COUNT(*) FROM join_tokens WHERE id = ?");
        let serials = self.sql("SELECT serial FROM certificates WHERE token_id = ? AND revoked_at IS NULL");
        let certs = self.sql("UPDATE certificates SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let n: i64 = sqlx::query_scalar(exists).bind(id).fetch_one(&mut *tx).await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(token).bind(now.0).bind(id).execute(&mut *tx).await?;
            let revoked: Vec<String> = sqlx::query_scalar(serials).bind(id).fetch_all(&mut *tx).await?;
            sqlx::query(certs).bind(now.0).bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(revoked)
        })
    }

    /// Records an issued certificate.
    pub async fn record_certificate(&self, cert: &IssuedCert) -> Result<()> {
        let insert = self.sql(format!("INSERT INTO certificates ({CERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
        dispatch!(self, pool => {
            sqlx::query(insert)
                .bind(&cert.serial)
                .bind(&cert.role)
                .bind(cert.cluster_id)
                .bind(&cert.host)
                .bind(&cert.token_id)
                .bind(cert.not_after)
                .bind(cert.revoked_at)
                .bind(cert.issued_at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// One issued certificate by serial.
    pub async fn get_certificate(&self, serial: &str) -> Result<IssuedCert> {
        let sql = self.sql(format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(serial).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(cert_from_row!(&row))
        })
    }

    /// Issued certificates that have not expired at `now`, newest first.
    pub async fn list_certificates(&self, now: Timestamp) -> Result<Vec<IssuedCert>> {
        let sql = self.sql(format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE not_after > ? ORDER BY issued_at DESC, serial"
        ));
        dispatch!(self, pool => {
            let rows = sqlx::query(sql).bind(now.0).fetch_all(pool).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(cert_from_row!(row));
            }
            Ok(out)
        })
    }

    /// Revokes one certificate. Revoking twice is not an error.
    pub async fn revoke_certificate(&self, serial: &str, now: Timestamp) -> Result<()> {
        let sql = self.sql("UPDATE certificates SET revoked_at = ? WHERE serial = ? AND revoked_at IS NULL");
        dispatch!(self, pool => { sqlx::query(sql).bind(now.0).bind(serial).execute(pool).await?; });
        self.get_certificate(serial).await.map(|_| ())
    }

    /// Serials of revoked certificates that have not expired at `now`.
    pub async fn revoked_serials(&self, now: Timestamp) -> Result<Vec<String>> {
        let sql = self.sql("SELECT serial FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ?");
        dispatch!(self, pool => Ok(sqlx::query_scalar(sql).bind(now.0).fetch_all(pool).await?))
    }

    /// Forgets certificates expired before `now` and tokens expired before
    /// it; returns how many rows went.
    pub async fn gc_pki(&self, now: Timestamp) -> Result<u64> {
        let certs = self.sql("DELETE FROM certificates WHERE not_after <= ?");
        let tokens = self.sql("DELETE FROM join_tokens WHERE expires_at <= ?");
        dispatch!(self, pool => {
            let a = sqlx::query(certs).bind(now.0).execute(pool).await?.rows_affected();
            let b = sqlx::query(tokens).bind(now.0).execute(pool).await?.rows_affected();
            Ok(a + b)
        })
    }
}
