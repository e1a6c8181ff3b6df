//! The store's one error type.

/// Why a store operation failed.
///
/// The variants are the distinctions a caller acts on (404, 409, 400, 500 at the
/// API layer); driver details are flattened into [`StoreError::Db`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The write would break a uniqueness or reference rule on the named field.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The input is not acceptable; the field and why.
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    /// The database failed or returned data the store cannot read.
    #[error("database error: {0}")]
    Db(String),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            e => StoreError::Db(e.to_string()),
        }
    }
}

/// Maps a unique-key violation to [`StoreError::Conflict`] on `field`; other
/// errors as [`From`] does.
pub(crate) fn conflict_on(field: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        // PostgreSQL and SQLite also guard the single default cluster with a
        // partial unique index; a concurrent default switch trips it.
        sqlx::Error::Database(d) if d.constraint() == Some("clusters_single_default") => {
            StoreError::Conflict("is_default")
        }
        sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation => StoreError::Conflict(field),
        _ => e.into(),
    }
}

/// Maps a foreign-key violation to [`StoreError::Conflict`] on `field` (a row
/// is still referenced); other errors as [`From`] does.
pub(crate) fn referenced_by(field: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::ForeignKeyViolation => {
            StoreError::Conflict(field)
        }
        _ => e.into(),
    }
}

/// A stored JSON column the store cannot parse: the data is damaged, not the input.
pub(crate) fn corrupt(column: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("stored {column} is unreadable: {e}"))
}
