//! Users and their personal access tokens.

use super::error::{Result, StoreError, conflict_on};
use super::{NewToken, NewUser, ROOT_USER, Role, Store, Timestamp, Token, User};

const USER_COLUMNS: &str = "id, name, password_hash, role, created_at, sessions_valid_after";
const TOKEN_COLUMNS: &str = "id, name, token_hash, user_id, expires_at, created_at";

macro_rules! user_from_row {
    ($row:expr) => {{
        let row = $row;
        let role: String = col!(row, "role");
        User {
            id: col!(row, "id"),
            name: col!(row, "name"),
            password_hash: col!(row, "password_hash"),
            role: Role::parse(&role)?,
            created_at: Timestamp(col!(row, "created_at")),
            sessions_valid_after: Timestamp(col!(row, "sessions_valid_after")),
        }
    }};
}

macro_rules! token_from_row {
    ($row:expr) => {{
        let row = $row;
        let expires_at: Option<i64> = col!(row, "expires_at");
        Token {
            id: col!(row, "id"),
            name: col!(row, "name"),
            token_hash: col!(row, "token_hash"),
            user_id: col!(row, "user_id"),
            expires_at: expires_at.map(Timestamp),
            created_at: Timestamp(col!(row, "created_at")),
        }
    }};
}

/// Fields of a user that can change; `None` keeps the stored value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub password_hash: Option<String>,
    pub role: Option<Role>,
}

impl std::fmt::Debug for UserUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserUpdate")
            .field("password_hash", &self.password_hash.as_ref().map(|_| "<redacted>"))
            .field("role", &self.role)
            .finish()
    }
}

impl Store {
    /// Creates a user; a taken name is [`StoreError::Conflict`]`("name")`.
    pub async fn create_user(&self, new: &NewUser) -> Result<User> {
        new.validate()?;
        let now = Timestamp::now().0;
        let insert = self.sql("INSERT INTO users (name, password_hash, role, created_at) VALUES (?, ?, ?, ?)");
        let select = self.sql(format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"));
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            sqlx::query(insert)
                .bind(&new.name)
                .bind(&new.password_hash)
                .bind(new.role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_on("name"))?;
            let row = sqlx::query(select).bind(&new.name).fetch_one(&mut *tx).await?;
            let user = user_from_row!(&row);
            tx.commit().await?;
            Ok(user)
        })
    }

    /// Creates the [`ROOT_USER`] with this password hash unless it exists; an
    /// existing root keeps its password. Returns the root user either way.
    pub async fn ensure_root_user(&self, password_hash: &str) -> Result<User> {
        match self.get_user_by_name(ROOT_USER).await {
            Err(StoreError::NotFound) => {}
            other => return other,
        }
        let new = NewUser { name: ROOT_USER.into(), password_hash: password_hash.into(), role: Role::Root };
        match self.create_user(&new).await {
            // Another replica created it between our read and write.
            Err(StoreError::Conflict(_)) => self.get_user_by_name(ROOT_USER).await,
            other => other,
        }
    }

    /// The user with this ID.
    pub async fn get_user(&self, id: i64) -> Result<User> {
        let sql = self.sql(format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(user_from_row!(&row))
        })
    }

    /// The user with this name.
    pub async fn get_user_by_name(&self, name: &str) -> Result<User> {
        let sql = self.sql(format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(name).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(user_from_row!(&row))
        })
    }

    /// All users, by ID.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let sql = self.sql(format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"));
        dispatch!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut users = Vec::with_capacity(rows.len());
            for row in &rows {
                users.push(user_from_row!(row));
            }
            Ok(users)
        })
    }

    /// Changes a user's password hash and/or role. A new password also ends
    /// the user's sign-in sessions (`sessions_valid_after` becomes `now`, in
    /// whole seconds). Demoting the last root is
    /// [`StoreError::Conflict`]`("role")`: someone must stay able to administer.
    pub async fn update_user(&self, id: i64, update: &UserUpdate, now: Timestamp) -> Result<User> {
        if update.password_hash.as_deref() == Some("") {
            return Err(StoreError::Invalid("password_hash", "must not be empty".into()));
        }
        let sql = self.sql(
            "UPDATE users SET password_hash = COALESCE(?, password_hash), role = COALESCE(?, role), \
             sessions_valid_after = COALESCE(?, sessions_valid_after) WHERE id = ?",
        );
        let valid_after = update.password_hash.as_ref().map(|_| now.0 / 1000 * 1000);
        let select = self.sql(format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?"));
        let roots = self.sql("SELECT COUNT(*) FROM users WHERE role = ?");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let row = sqlx::query(select.clone()).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
            let before = user_from_row!(&row);
            if before.role == Role::Root && update.role.is_some_and(|r| r != Role::Root) {
                let n: i64 = sqlx::query_scalar(roots).bind(Role::Root.as_str()).fetch_one(&mut *tx).await?;
                if n <= 1 {
                    return Err(StoreError::Conflict("role"));
                }
            }
            sqlx::query(sql)
                .bind(update.password_hash.as_deref())
                .bind(update.role.map(Role::as_str))
                .bind(valid_after)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(select).bind(id).fetch_one(&mut *tx).await?;
            let user = user_from_row!(&row);
            tx.commit().await?;
            Ok(user)
        })
    }

    /// Deletes a user and, with it, the user's tokens. Deleting the last root
    /// is [`StoreError::Conflict`]`("role")`.
    pub async fn delete_user(&self, id: i64) -> Result<()> {
        let role = self.sql("SELECT role FROM users WHERE id = ?");
        let roots = self.sql("SELECT COUNT(*) FROM users WHERE role = ?");
        let delete = self.sql("DELETE FROM users WHERE id = ?");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let current: String =
                sqlx::query_scalar(role).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
            if Role::parse(&current)? == Role::Root {
                let n: i64 = sqlx::query_scalar(roots).bind(Role::Root.as_str()).fetch_one(&mut *tx).await?;
                if n <= 1 {
                    return Err(StoreError::Conflict("role"));
                }
            }
            sqlx::query(delete).bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Stores a personal access token (its hash only). An unknown user is
    /// [`StoreError::NotFound`]; a hash already stored is
    /// [`StoreError::Conflict`]`("token_hash")`.
    pub async fn create_token(&self, new: &NewToken) -> Result<Token> {
        new.validate()?;
        let now = Timestamp::now().0;
        let user_exists = self.sql("SELECT COUNT(*) FROM users WHERE id = ?");
        let insert = self.sql(
            "INSERT INTO personal_access_tokens (name, token_hash, user_id, expires_at, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        );
        let select = self.sql(format!("SELECT {TOKEN_COLUMNS} FROM personal_access_tokens WHERE token_hash = ?"));
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let n: i64 = sqlx::query_scalar(user_exists).bind(new.user_id).fetch_one(&mut *tx).await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(insert)
                .bind(&new.name)
                .bind(&new.token_hash)
                .bind(new.user_id)
                .bind(new.expires_at.map(|t| t.0))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_on("token_hash"))?;
            let row = sqlx::query(select).bind(&new.token_hash).fetch_one(&mut *tx).await?;
            let token = token_from_row!(&row);
            tx.commit().await?;
            Ok(token)
        })
    }

    /// The token with this hash, expired or not (see [`Token::is_expired`]).
    pub async fn find_token_by_hash(&self, token_hash: &str) -> Result<Token> {
        let sql = self.sql(format!("SELECT {TOKEN_COLUMNS} FROM personal_access_tokens WHERE token_hash = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(token_hash).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(token_from_row!(&row))
        })
    }

    /// A user's tokens, by ID.
    pub async fn list_tokens(&self, user_id: i64) -> Result<Vec<Token>> {
        let sql = self.sql(format!("SELECT {TOKEN_COLUMNS} FROM personal_access_tokens WHERE user_id = ? ORDER BY id"));
        dispatch!(self, pool => {
            let rows = sqlx::query(sql).bind(user_id).fetch_all(pool).await?;
            let mut tokens = Vec::with_capacity(rows.len());
            for row in &rows {
                tokens.push(token_from_row!(row));
            }
            Ok(tokens)
        })
    }

    /// Deletes a token.
    pub async fn delete_token(&self, id: i64) -> Result<()> {
        let sql = self.sql("DELETE FROM personal_access_tokens WHERE id = ?");
        let n = dispatch!(self, pool => sqlx::query(sql).bind(id).execute(pool).await?.rows_affected());
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }
}
