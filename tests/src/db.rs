//! Scratch databases for tests and benchmarks: a SQLite file in a temporary
//! directory, or a `<prefix>_<random>` database created on a PostgreSQL or
//! MySQL/MariaDB server and dropped afterwards.
//!
//! Tests take theirs from [`fresh`] (or [`run`], which also drops it when the
//! test panics): SQLite always; PostgreSQL and MySQL/MariaDB when
//! `DARTER_TEST_POSTGRES_URL` / `DARTER_TEST_MYSQL_URL` name a server.
//! Without the URL a test prints `SKIPPED ...` and passes, unless `CI` is
//! set: CI never skips. The benchmarks create theirs on any server with
//! [`ScratchDb::create_on`].
//!
//! Nothing here knows the manager's schema: a database is created empty
//! and whoever uses it migrates it.

use std::future::Future;

use anyhow::{Context as _, bail};
use sqlx::{AssertSqlSafe, Connection as _};

/// The database servers Darter's manager runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    /// `sqlite`, `postgres` or `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// The backend a URL's scheme names (`sqlite:`, `postgres://`,
    /// `postgresql://`, `mysql://`, `mariadb://`).
    pub fn of_url(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::MySql),
            _ => None,
        }
    }

    /// The variable naming the server tests use (`None` for SQLite, which
    /// needs no server).
    pub fn env_var(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("DARTER_TEST_POSTGRES_URL"),
            Backend::MySql => Some("DARTER_TEST_MYSQL_URL"),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A database made for one test or benchmark run. A server database is
/// dropped by [`ScratchDb::drop_database`] (not on `Drop`: dropping needs
/// an async connection); a SQLite file goes with its temporary directory.
#[derive(Debug)]
pub struct ScratchDb {
    /// What a manager is given (`--database-url`).
    pub url: String,
    backend: Backend,
    /// The server's URL and the database created on it.
    created: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl ScratchDb {
    /// A SQLite file (`manager.db`, created on first open) in a new
    /// temporary directory.
    pub fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("darter-db-").tempdir().context("create a temporary directory")?;
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("manager.db").display());
        Ok(ScratchDb { url, backend: Backend::Sqlite, created: None, _dir: Some(dir) })
    }

    /// Creates the database `<prefix>_<16 random hex digits>` on the
    /// PostgreSQL or MySQL/MariaDB server at `server_url` (any database in
    /// its path is only connected to; the query string is kept).
    pub async fn create_on(server_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let backend = Backend::of_url(server_url)
            .filter(|b| *b != Backend::Sqlite)
            .with_context(|| format!("{}: not a postgres:// or mysql:// URL", redact(server_url)))?;
        let server_url = server_url.replacen("mariadb:", "mysql:", 1);
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        admin(backend, &server_url, format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("create database {name} on {}", redact(&server_url)))?;
        let url = with_database(&server_url, &name);
        Ok(ScratchDb { url, backend, created: Some((server_url, name)), _dir: None })
    }

    /// Which server it is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database's name on its server (`None` for SQLite).
    pub fn name(&self) -> Option<&str> {
        self.created.as_ref().map(|(_, name)| name.as_str())
    }

    /// Drops a database created on a server (with `FORCE` on PostgreSQL, so
    /// connections a killed manager left behind do not hold it).
    pub async fn try_drop(self) -> anyhow::Result<()> {
        let Some((server_url, name)) = &self.created else { return Ok(()) };
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        admin(self.backend, server_url, sql).await.with_context(|| format!("drop database {name}"))
    }

    /// [`ScratchDb::try_drop`] for tests: panics when the database cannot be dropped.
    pub async fn drop_database(self) {
        if let Err(e) = self.try_drop().await {
            panic!("{e:#}");
        }
    }
}

/// The server tests run `backend` on: its `DARTER_TEST_*_URL`; `None` (after
/// printing `SKIPPED ...`) when that is unset or empty, except under CI
/// (`CI` set), where it panics. `None` for SQLite, which needs no server.
pub fn test_server(backend: Backend) -> Option<String> {
    let var = backend.env_var()?;
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{backend} tests: {var} must be set when CI is set (CI never skips)")
        }
        _ => {
            eprintln!("SKIPPED {backend} tests: {var} not set");
            None
        }
    }
}

/// A fresh, empty database on `backend` for a test, or `None` when the test
/// is skipped (see [`test_server`]). Panics when it cannot be created.
pub async fn fresh(backend: Backend) -> Option<ScratchDb> {
    let made = match backend {
        Backend::Sqlite => ScratchDb::sqlite(),
        _ => ScratchDb::create_on(&test_server(backend)?, "darter_test").await,
    };
    Some(made.unwrap_or_else(|e| panic!("a scratch {backend} database: {e:#}")))
}

/// Runs `case` with the URL of a fresh database on `backend`, then drops the
/// database whether or not the case panicked (and fails the test if it did).
pub async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(db) = fresh(backend).await else { return };
    let result = tokio::spawn(case(db.url.clone())).await;
    db.drop_database().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// The server's (or SQLite library's) name and version, e.g. `PostgreSQL 17.2`,
/// `11.8.3-MariaDB`, `SQLite 3.46.0`.
pub async fn version(url: &str) -> anyhow::Result<String> {
    let url = url.replacen("mariadb:", "mysql:", 1);
    match Backend::of_url(&url) {
        Some(Backend::Sqlite) => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            let version: String =
                sqlx::query_scalar("SELECT 'SQLite ' || sqlite_version()").fetch_one(&mut conn).await?;
            conn.close().await?;
            Ok(version)
        }
        Some(Backend::Postgres) => {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let version: String = sqlx::query_scalar("SELECT 'PostgreSQL ' || current_setting('server_version')")
                .fetch_one(&mut conn)
                .await?;
            conn.close().await?;
            Ok(version)
        }
        Some(Backend::MySql) => {
            let mut conn = sqlx::MySqlConnection::connect(&url).await?;
            let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut conn).await?;
            conn.close().await?;
            Ok(if version.contains("MariaDB") { version } else { format!("MySQL {version}") })
        }
        None => bail!("{}: not a sqlite:, postgres:// or mysql:// URL", redact(&url)),
    }
}

/// Runs `sql` on the server at `url` over one connection.
async fn admin(backend: Backend, url: &str, sql: String) -> anyhow::Result<()> {
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            conn.close().await?;
        }
        Backend::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            conn.close().await?;
        }
        Backend::Sqlite => bail!("SQLite has no server to run {sql:?} on"),
    }
    Ok(())
}

/// `base` with its database path replaced by `db` (query string kept).
fn with_database(base: &str, db: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, format!("?{q}")),
        None => (base, String::new()),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let root = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    format!("{root}/{db}{query}")
}

/// `url` with the password of its user info (if any) replaced by `***`, for
/// messages and reports.
pub fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.to_owned() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "darter_test_1"),
            "postgres://postgres@127.0.0.1:5432/darter_test_1"
        );
        assert_eq!(
            with_database("mysql://root@h:3306?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/a@b/m.db?mode=rwc"), "sqlite:///tmp/a@b/m.db?mode=rwc");
    }

    #[test]
    fn backends_by_url_scheme() {
        assert_eq!(Backend::of_url("sqlite:///tmp/m.db?mode=rwc"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgresql://h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("mariadb://root@h/db"), Some(Backend::MySql));
        assert_eq!(Backend::of_url("redis://h"), None);
        assert_eq!(Backend::of_url("postgres"), None, "a name is not a URL");
    }

    #[tokio::test]
    async fn sqlite_is_always_there_and_goes_with_its_directory() {
        let db = fresh(Backend::Sqlite).await.expect("SQLite is never skipped");
        assert_eq!((db.backend(), db.name()), (Backend::Sqlite, None));
        assert!(version(&db.url).await.unwrap().starts_with("SQLite 3."));
        let file = db.url.strip_prefix("sqlite://").unwrap().strip_suffix("?mode=rwc").unwrap().to_owned();
        assert!(std::path::Path::new(&file).is_file(), "opening created {file}");
        db.drop_database().await;
        assert!(!std::path::Path::new(&file).exists(), "{file} outlived its database");
    }

    #[tokio::test]
    async fn a_server_database_is_created_empty_and_dropped() {
        for backend in [Backend::Postgres, Backend::MySql] {
            let Some(server) = test_server(backend) else { continue };
            let db = ScratchDb::create_on(&server, "darter_kit").await.unwrap();
            let name = db.name().unwrap().to_owned();
            assert!(name.starts_with("darter_kit_") && db.url.contains(&name), "{name} in {}", db.url);
            assert!(version(&db.url).await.is_ok(), "the new database {name} accepts connections");
            let url = db.url.clone();
            db.drop_database().await;
            assert!(version(&url).await.is_err(), "{name} still accepts connections after the drop");
        }
    }
}
