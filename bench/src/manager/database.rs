//! The database the benchmark's manager runs on, from `--database`: a
//! scratch SQLite file, a SQLite URL used as it is, or a fresh database on a
//! PostgreSQL or MySQL/MariaDB server (`testkit::db::ScratchDb`), dropped at
//! the end.

use anyhow::bail;
use testkit::db::{Backend, ScratchDb, redact};

/// PostgreSQL server when `--database postgres` and `DARTER_TEST_POSTGRES_URL` is unset.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// MySQL/MariaDB server when `--database mysql` and `DARTER_TEST_MYSQL_URL` is unset.
const DEFAULT_MYSQL: &str = "mysql://root@127.0.0.1:3306/test";

/// The database, and the scratch database to drop (none for a given SQLite URL).
pub(super) struct Database {
    pub backend: Backend,
    /// What the manager is given.
    pub url: String,
    scratch: Option<ScratchDb>,
    /// The server's version, when known.
    version: Option<String>,
}

impl Database {
    /// Resolves `--database`; on a server, creates a fresh database
    /// `darter_bench_<random>`.
    pub(super) async fn create(spec: &str) -> anyhow::Result<Self> {
        let env_or = |var: &str, default: &str| {
            std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        let scratch = match spec {
            "sqlite" => ScratchDb::sqlite()?,
            url if Backend::of_url(url) == Some(Backend::Sqlite) => {
                let version = testkit::db::version(url).await.ok();
                return Ok(Database { backend: Backend::Sqlite, url: url.to_owned(), scratch: None, version });
            }
            "postgres" | "postgresql" => {
                ScratchDb::create_on(&env_or("DARTER_TEST_POSTGRES_URL", DEFAULT_POSTGRES), "darter_bench").await?
            }
            "mysql" | "mariadb" => {
                ScratchDb::create_on(&env_or("DARTER_TEST_MYSQL_URL", DEFAULT_MYSQL), "darter_bench").await?
            }
            url if url.contains("://") && Backend::of_url(url).is_some() => {
                ScratchDb::create_on(url, "darter_bench").await?
            }
            other => bail!(
                "--database {other:?}: expected sqlite, postgres, mysql or a sqlite://, postgres:// or mysql:// URL"
            ),
        };
        // The SQLite library linked into darter-bench and the manager alike (sqlx's).
        let version = testkit::db::version(&scratch.url).await.ok();
        Ok(Database { backend: scratch.backend(), url: scratch.url.clone(), scratch: Some(scratch), version })
    }

    /// The database for people: server version and URL without password.
    pub(super) fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{v}, {}", redact(&self.url)),
            None => redact(&self.url),
        }
    }

    /// Drops a database created on a server (a scratch SQLite file goes with
    /// its directory).
    pub(super) async fn drop_database(self) -> anyhow::Result<()> {
        let Some(scratch) = self.scratch else { return Ok(()) };
        let name = scratch.name().map(str::to_owned);
        scratch.try_drop().await?;
        if let Some(name) = name {
            eprintln!("dropped database {name}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_is_a_scratch_file_and_a_sqlite_url_is_used_as_it_is() {
        let db = Database::create("sqlite").await.unwrap();
        assert_eq!(db.backend, Backend::Sqlite);
        assert!(db.describe().starts_with("SQLite 3."), "{}", db.describe());
        db.drop_database().await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("given.db").display());
        let db = Database::create(&url).await.unwrap();
        assert_eq!((db.backend, db.url.as_str()), (Backend::Sqlite, url.as_str()));
        db.drop_database().await.unwrap();
        assert!(dir.path().join("given.db").is_file(), "a given SQLite file is the user's: it stays");
    }

    #[tokio::test]
    async fn anything_else_is_refused_before_touching_a_server() {
        for spec in ["oracle", "redis://127.0.0.1:6379", ""] {
            let err = Database::create(spec).await.err().unwrap_or_else(|| panic!("{spec:?} accepted"));
            assert!(err.to_string().contains("expected sqlite, postgres, mysql"), "{spec:?}: {err}");
        }
    }
}
