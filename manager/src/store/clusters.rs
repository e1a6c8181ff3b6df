//! Clusters: CRUD and the one-default-cluster rule.

use super::error::{Result, StoreError, conflict_on, corrupt, referenced_by};
use super::{Cluster, NewCluster, Store, Timestamp};

const COLUMNS: &str = "id, name, description, config, scopes, is_default, created_at, updated_at";

/// The name of the cluster created on first open.
pub const DEFAULT_CLUSTER: &str = "default";

macro_rules! cluster_from_row {
    ($row:expr) => {{
        let row = $row;
        let config: String = col!(row, "config");
        let scopes: String = col!(row, "scopes");
        Cluster {
            id: col!(row, "id"),
            name: col!(row, "name"),
            description: col!(row, "description"),
            config: serde_json::from_str(&config).map_err(|e| corrupt("config", e))?,
            scopes: serde_json::from_str(&scopes).map_err(|e| corrupt("scopes", e))?,
            is_default: col!(row, "is_default"),
            created_at: Timestamp(col!(row, "created_at")),
            updated_at: Timestamp(col!(row, "updated_at")),
        }
    }};
}

pub(super) fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Db(e.to_string()))
}

impl Store {
    /// Creates a cluster. A duplicate name is [`StoreError::Conflict`]`("name")`;
    /// with `is_default` set, the previous default loses the flag in the same
    /// transaction.
    pub async fn create_cluster(&self, new: &NewCluster) -> Result<Cluster> {
        new.validate()?;
        let (config, scopes) = (to_json(&new.config)?, to_json(&new.scopes)?);
        let now = Timestamp::now().0;
        let clear_default = self.sql("UPDATE clusters SET is_default = ?, updated_at = ? WHERE is_default = ?");
        let insert = self.sql(
            "INSERT INTO clusters (name, description, config, scopes, is_default, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        let select = self.sql(format!("SELECT {COLUMNS} FROM clusters WHERE name = ?"));
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            if new.is_default {
                sqlx::query(clear_default).bind(false).bind(now).bind(true).execute(&mut *tx).await?;
            }
            sqlx::query(insert)
                .bind(&new.name)
                .bind(&new.description)
                .bind(&config)
                .bind(&scopes)
                .bind(new.is_default)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_on("name"))?;
            let row = sqlx::query(select).bind(&new.name).fetch_one(&mut *tx).await?;
            let cluster = cluster_from_row!(&row);
            tx.commit().await?;
            Ok(cluster)
        })
    }

    /// The cluster with this ID.
    pub async fn get_cluster(&self, id: i64) -> Result<Cluster> {
        let sql = self.sql(format!("SELECT {COLUMNS} FROM clusters WHERE id = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(cluster_from_row!(&row))
        })
    }

    /// The cluster with this name.
    pub async fn get_cluster_by_name(&self, name: &str) -> Result<Cluster> {
        let sql = self.sql(format!("SELECT {COLUMNS} FROM clusters WHERE name = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(name).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(cluster_from_row!(&row))
        })
    }

    /// The default cluster (there is always exactly one).
    pub async fn default_cluster(&self) -> Result<Cluster> {
        let sql = self.sql(format!("SELECT {COLUMNS} FROM clusters WHERE is_default = ?"));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(true).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(cluster_from_row!(&row))
        })
    }

    /// All clusters, by ID.
    pub async fn list_clusters(&self) -> Result<Vec<Cluster>> {
        let sql = self.sql(format!("SELECT {COLUMNS} FROM clusters ORDER BY id"));
        dispatch!(self, pool => {
            let rows = sqlx::query(sql).fetch_all(pool).await?;
            let mut clusters = Vec::with_capacity(rows.len());
            for row in &rows {
                clusters.push(cluster_from_row!(row));
            }
            Ok(clusters)
        })
    }

    /// Replaces a cluster's fields. Setting `is_default` moves the flag here;
    /// clearing it on the current default is [`StoreError::Invalid`] (make
    /// another cluster the default instead), so one default always remains.
    pub async fn update_cluster(&self, id: i64, new: &NewCluster) -> Result<Cluster> {
        new.validate()?;
        let (config, scopes) = (to_json(&new.config)?, to_json(&new.scopes)?);
        let now = Timestamp::now().0;
        let current = self.sql("SELECT is_default FROM clusters WHERE id = ?");
        let clear_default = self.sql("UPDATE clusters SET is_default = ?, updated_at = ? WHERE is_default = ?");
        let update = self.sql(
            "UPDATE clusters SET name = ?, description = ?, config = ?, scopes = ?, is_default = ?, updated_at = ? \
             WHERE id = ?",
        );
        let select = self.sql(format!("SELECT {COLUMNS} FROM clusters WHERE id = ?"));
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let was_default: bool =
                sqlx::query_scalar(current).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
            if was_default && !new.is_default {
                return Err(StoreError::Invalid(
                    "is_default",
                    "the default cluster stays default until another cluster is made default".into(),
                ));
            }
            if new.is_default && !was_default {
                sqlx::query(clear_default).bind(false).bind(now).bind(true).execute(&mut *tx).await?;
            }
            sqlx::query(update)
                .bind(&new.name)
                .bind(&new.description)
                .bind(&config)
                .bind(&scopes)
                .bind(new.is_default)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(conflict_on("name"))?;
            let row = sqlx::query(select).bind(id).fetch_one(&mut *tx).await?;
            let cluster = cluster_from_row!(&row);
            tx.commit().await?;
            Ok(cluster)
        })
    }

    /// Deletes a cluster. The default cluster cannot be deleted
    /// ([`StoreError::Invalid`]); one that still has schedulers or seed peers
    /// (active or not) is [`StoreError::Conflict`]`("members")`.
    pub async fn delete_cluster(&self, id: i64) -> Result<()> {
        let current = self.sql("SELECT is_default FROM clusters WHERE id = ?");
        let delete = self.sql("DELETE FROM clusters WHERE id = ?");
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let is_default: bool =
                sqlx::query_scalar(current).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
            if is_default {
                return Err(StoreError::Invalid("is_default", "the default cluster cannot be deleted".into()));
            }
            sqlx::query(delete).bind(id).execute(&mut *tx).await.map_err(referenced_by("members"))?;
            tx.commit().await?;
            Ok(())
        })
    }
}
