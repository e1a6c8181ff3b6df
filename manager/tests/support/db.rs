//! Fresh databases per test: a temp SQLite file always; PostgreSQL and
//! MySQL/MariaDB when `DARTER_TEST_POSTGRES_URL` / `DARTER_TEST_MYSQL_URL` are
//! set (a `darter_test_<random>` database, dropped afterwards). Without the URL
//! a test prints `SKIPPED ...` and passes, unless `CI` is set: CI never skips.

use std::future::Future;

use manager::store::Backend;

/// A database created for one case, and how to drop it.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn env_url(backend: Backend) -> Option<String> {
    let (var, label) = match backend {
        Backend::Sqlite => return None,
        Backend::Postgres => ("DARTER_TEST_POSTGRES_URL", "postgres"),
        Backend::MySql => ("DARTER_TEST_MYSQL_URL", "mysql"),
    };
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{label} conformance: {var} must be set when CI is set (CI never skips)")
        }
        _ => {
            eprintln!("SKIPPED {label} conformance: {var} not set");
            None
        }
    }
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

async fn admin(backend: Backend, url: &str, sql: String) {
    use sqlx::AssertSqlSafe;
    match backend {
        Backend::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::MySql => {
            let pool = sqlx::mysql::MySqlPoolOptions::new().max_connections(1).connect(url).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Sqlite => unreachable!(),
    }
}

/// A fresh, empty database for `backend`, or `None` when it is skipped.
pub async fn fresh(backend: Backend) -> Option<TestDb> {
    let name = format!("darter_test_{:016x}", rand::random::<u64>());
    if backend == Backend::Sqlite {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("manager.db").display());
        return Some(TestDb { url, backend, admin_url: None, name, _dir: Some(dir) });
    }
    let base = env_url(backend)?;
    admin(backend, &base, format!("CREATE DATABASE {name}")).await;
    Some(TestDb { url: with_database(&base, &name), backend, admin_url: Some(base), name, _dir: None })
}

impl TestDb {
    pub async fn drop_database(self) {
        let Some(admin_url) = &self.admin_url else { return };
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        admin(self.backend, admin_url, sql).await;
    }
}

/// Runs `case` against a fresh database of `backend`, then drops the
/// database whether or not the case panicked.
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
