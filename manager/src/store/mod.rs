//! The persistence layer: the only module of the manager that speaks SQL.
//!
//! [`Store`] wraps one connection pool for SQLite, PostgreSQL or MySQL/MariaDB,
//! chosen by the URL scheme given to [`Store::open`]. Opening applies the
//! backend's migrations (`manager/migrations/<backend>/`, embedded in the
//! binary and recorded in a `schema_migrations` table) and makes sure a default
//! cluster exists. Every statement is written once with `?` placeholders and
//! rewritten to `$n` for PostgreSQL; the few dialect differences (upsert,
//! schema locks) are spelled out where they occur. Each write that takes more
//! than one statement runs in a transaction.
//!
//! The same behaviour on all three backends is checked by
//! `tests/store_conformance.rs`.
//!
//! Layout: `types` (domain types), `error` ([`StoreError`]), and one file of
//! `impl Store` per table group: `clusters`, `members`, `users` (with tokens), `sessions` (signed-out
//! tokens and shared settings), `pki` (join tokens and issued certificates).

use std::borrow::Cow;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, SqlSafeStr as _, SqlStr};

mod error;
mod types;

pub use error::{Result, StoreError};
pub use types::*;

/// Runs `$body` with `$pool` bound to the concrete pool of `$store`. The body
/// is compiled once per backend, so sqlx's per-driver types are inferred
/// without generic bounds.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match &*$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::MySql($pool) => $body,
        }
    };
}

/// `sqlx::Row::try_get` by column name with the error mapped to [`StoreError`].
macro_rules! col {
    ($row:expr, $name:literal) => {
        sqlx::Row::try_get($row, $name).map_err($crate::store::StoreError::from)?
    };
}

mod clusters;
mod members;
mod pki;
mod sessions;
mod users;

pub use clusters::DEFAULT_CLUSTER;
pub use pki::{IssuedCert, JoinToken, NewJoinToken};
pub use users::UserUpdate;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Tuning for [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Upper bound on pooled connections.
    pub max_connections: u32,
    /// How long to wait for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_connections: 10, acquire_timeout: Duration::from_secs(10) }
    }
}

/// The manager's database: clusters, members, users and tokens.
///
/// Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Store {
    pool: std::sync::Arc<Pool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Migrations per backend: (version, SQL). Versions only ever get appended.
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_sessions_settings.sql")),
    (3, include_str!("../../migrations/sqlite/0003_sessions_valid_after.sql")),
    (4, include_str!("../../migrations/sqlite/0004_join_tokens_certificates.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../migrations/postgres/0002_sessions_settings.sql")),
    (3, include_str!("../../migrations/postgres/0003_sessions_valid_after.sql")),
    (4, include_str!("../../migrations/postgres/0004_join_tokens_certificates.sql")),
];
const MYSQL_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/mysql/0001_init.sql")),
    (2, include_str!("../../migrations/mysql/0002_sessions_settings.sql")),
    (3, include_str!("../../migrations/mysql/0003_sessions_valid_after.sql")),
    (4, include_str!("../../migrations/mysql/0004_join_tokens_certificates.sql")),
];

/// Arbitrary, fixed key for PostgreSQL's advisory lock around migrations.
const PG_MIGRATION_LOCK: i64 = 0x6461_7274_6572; // "darter"

impl Store {
    /// Opens the database at `url` (`sqlite://path?mode=rwc`, `postgres://...`,
    /// `mysql://...`), applies pending migrations and ensures the default
    /// cluster exists. Safe to call again on the same database, also from
    /// several manager replicas at once.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit pool options.
    pub async fn open_with(url: &str, opts: &StoreOptions) -> Result<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let bad_url = |e: sqlx::Error| StoreError::Invalid("database url", e.to_string());
        let pool = match scheme {
            "sqlite" => {
                let connect = SqliteConnectOptions::from_str(url)
                    .map_err(bad_url)?
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(opts.max_connections)
                        .acquire_timeout(opts.acquire_timeout)
                        .connect_with(connect)
                        .await?,
                )
            }
            "postgres" | "postgresql" => {
                let connect = PgConnectOptions::from_str(url).map_err(bad_url)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(opts.max_connections)
                        .acquire_timeout(opts.acquire_timeout)
                        .connect_with(connect)
                        .await?,
                )
            }
            "mysql" | "mariadb" => {
                let connect = MySqlConnectOptions::from_str(&url.replacen("mariadb:", "mysql:", 1)).map_err(bad_url)?;
                Pool::MySql(
                    MySqlPoolOptions::new()
                        .max_connections(opts.max_connections)
                        .acquire_timeout(opts.acquire_timeout)
                        .connect_with(connect)
                        .await?,
                )
            }
            _ => {
                return Err(StoreError::Invalid(
                    "database url",
                    format!("unsupported scheme {scheme:?}; expected sqlite, postgres or mysql"),
                ));
            }
        };
        let store = Store { pool: std::sync::Arc::new(pool) };
        store.bootstrap().await?;
        Ok(store)
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        match *self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
            Pool::MySql(_) => Backend::MySql,
        }
    }

    /// Closes every pooled connection; later calls fail.
    pub async fn close(&self) {
        dispatch!(self, pool => pool.close().await)
    }

    /// The schema versions applied so far, ascending.
    pub async fn schema_versions(&self) -> Result<Vec<i64>> {
        let sql = self.sql("SELECT version FROM schema_migrations ORDER BY version");
        dispatch!(self, pool => Ok(sqlx::query_scalar(sql).fetch_all(pool).await?))
    }

    /// The statement opening a write transaction. SQLite's `BEGIN IMMEDIATE`
    /// takes the write lock up front, so concurrent writers wait for each
    /// other (`busy_timeout`) instead of failing when a read lock cannot be
    /// upgraded.
    fn begin_sql(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres | Backend::MySql => "BEGIN",
        }
    }

    /// `sql` with `?` placeholders rewritten for this backend. Statements are
    /// built from constants inside this module only, never from input.
    fn sql(&self, sql: impl Into<Cow<'static, str>>) -> SqlStr {
        AssertSqlSafe(placeholders(self.backend(), sql.into())).into_sql_str()
    }

    /// Applies pending migrations and makes sure a default cluster exists, on
    /// one connection holding a cross-process lock (PostgreSQL advisory lock,
    /// MySQL named lock; on SQLite each step's `BEGIN IMMEDIATE` serialises
    /// openers), so replicas starting together neither race nor deadlock.
    /// Each migration and its `schema_migrations` row commit together on
    /// SQLite and PostgreSQL; MySQL commits DDL implicitly, so there a
    /// migration that fails halfway needs a manual look.
    async fn bootstrap(&self) -> Result<()> {
        let backend = self.backend();
        let (migrations, lock, unlock) = match backend {
            Backend::Sqlite => (SQLITE_MIGRATIONS, None, None),
            Backend::Postgres => (
                POSTGRES_MIGRATIONS,
                Some("SELECT CAST(1 AS BIGINT) FROM (SELECT pg_advisory_lock(?)) AS l"),
                Some("SELECT pg_advisory_unlock(?)"),
            ),
            Backend::MySql => {
                (MYSQL_MIGRATIONS, Some("SELECT CAST(GET_LOCK(?, 60) AS SIGNED)"), Some("SELECT RELEASE_LOCK(?)"))
            }
        };
        let lock_key = match backend {
            Backend::Postgres => PG_MIGRATION_LOCK.to_string(),
            _ => "darter_manager_schema".to_string(),
        };
        let create = "CREATE TABLE IF NOT EXISTS schema_migrations (\
                      version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)";
        let applied = self.sql("SELECT COUNT(*) FROM schema_migrations WHERE version = ?");
        let record = self.sql("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)");
        let lock = lock.map(|s| self.sql(s));
        let begin = self.begin_sql();
        let count_default = self.sql("SELECT COUNT(*) FROM clusters WHERE is_default = ?");
        let promote = self.sql("UPDATE clusters SET is_default = ?, updated_at = ? WHERE name = ?");
        let insert_default = self.sql(
            "INSERT INTO clusters (name, description, config, scopes, is_default, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        let config = clusters::to_json(&ClusterConfig::default())?;
        let scopes = clusters::to_json(&Scopes::default())?;
        let unlock = unlock.map(|s| self.sql(s));
        dispatch!(self, pool => {
            let mut conn = pool.acquire().await?;
            if let Some(lock) = lock {
                let q = sqlx::query_scalar::<_, Option<i64>>(lock);
                let q = if backend == Backend::Postgres { q.bind(PG_MIGRATION_LOCK) } else { q.bind(lock_key.clone()) };
                if q.fetch_one(&mut *conn).await? != Some(1) {
                    return Err(StoreError::Db("timed out waiting for the schema migration lock".into()));
                }
            }
            let result: Result<()> = async {
                sqlx::raw_sql(create).execute(&mut *conn).await?;
                for &(version, migration) in migrations {
                    // Checked inside the transaction: on SQLite its write lock
                    // is what keeps two openers apart.
                    let mut tx = conn.begin_with(begin).await?;
                    let n: i64 = sqlx::query_scalar(applied.clone()).bind(version).fetch_one(&mut *tx).await?;
                    if n > 0 {
                        tx.commit().await?;
                        continue;
                    }
                    sqlx::raw_sql(migration).execute(&mut *tx).await?;
                    sqlx::query(record.clone()).bind(version).bind(Timestamp::now().0).execute(&mut *tx).await?;
                    tx.commit().await?;
                }

                // The default cluster: promote one named "default" if a user
                // made it, otherwise create it.
                let now = Timestamp::now().0;
                let mut tx = conn.begin_with(begin).await?;
                let n: i64 = sqlx::query_scalar(count_default).bind(true).fetch_one(&mut *tx).await?;
                if n == 0 {
                    let promoted =
                        sqlx::query(promote).bind(true).bind(now).bind(DEFAULT_CLUSTER).execute(&mut *tx).await?;
                    if promoted.rows_affected() == 0 {
                        sqlx::query(insert_default)
                            .bind(DEFAULT_CLUSTER)
                            .bind("the cluster peers get when no other cluster's scopes match")
                            .bind(&config)
                            .bind(&scopes)
                            .bind(true)
                            .bind(now)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }
            .await;
            if let Some(unlock) = unlock {
                let q = sqlx::query(unlock);
                let q = if backend == Backend::Postgres { q.bind(PG_MIGRATION_LOCK) } else { q.bind(lock_key) };
                // A lock we cannot release goes away with the connection.
                if q.execute(&mut *conn).await.is_err() {
                    conn.close_on_drop();
                }
            }
            result
        })
    }
}

/// Rewrites `?` placeholders to PostgreSQL's `$1, $2, ...`; other backends
/// take `?` as written. The store's SQL has no `?` inside string literals.
fn placeholders(backend: Backend, sql: Cow<'static, str>) -> Cow<'static, str> {
    if backend != Backend::Postgres || !sql.contains('?') {
        return sql;
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let sql = "UPDATE t SET a = ?, b = ? WHERE id = ?";
        assert_eq!(placeholders(Backend::Postgres, sql.into()), "UPDATE t SET a = $1, b = $2 WHERE id = $3");
        assert_eq!(placeholders(Backend::MySql, sql.into()), sql);
        assert_eq!(placeholders(Backend::Sqlite, sql.into()), sql);
    }
}
