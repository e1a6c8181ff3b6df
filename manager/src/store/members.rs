//! Schedulers and seed peers: registration, keepalive, state and GC.
//!
//! Both kinds share one shape and one set of methods; [`MemberKind`] picks the
//! table (`schedulers` or `seed_peers`, the latter with a `download_port`).

use super::error::{Result, StoreError, corrupt};
use super::{Backend, Member, MemberKind, MemberState, Registration, Store, Timestamp};

fn columns(kind: MemberKind) -> &'static str {
    match kind {
        MemberKind::Scheduler => {
            "id, hostname, ip, port, idc, location, state, last_keepalive_at, cluster_id, created_at, updated_at"
        }
        MemberKind::SeedPeer => {
            "id, hostname, ip, port, download_port, idc, location, state, last_keepalive_at, cluster_id, \
             created_at, updated_at"
        }
    }
}

fn port(column: &str, value: i64) -> Result<u16> {
    u16::try_from(value).map_err(|_| corrupt(column, value))
}

macro_rules! member_from_row {
    ($kind:expr, $row:expr) => {{
        let (kind, row) = ($kind, $row);
        let ip: String = col!(row, "ip");
        let state: String = col!(row, "state");
        Member {
            id: col!(row, "id"),
            kind,
            cluster_id: col!(row, "cluster_id"),
            hostname: col!(row, "hostname"),
            ip: ip.parse().map_err(|e| corrupt("ip", e))?,
            port: port("port", col!(row, "port"))?,
            download_port: match kind {
                MemberKind::SeedPeer => Some(port("download_port", col!(row, "download_port"))?),
                MemberKind::Scheduler => None,
            },
            idc: col!(row, "idc"),
            location: col!(row, "location"),
            state: MemberState::parse(&state)?,
            last_keepalive_at: Timestamp(col!(row, "last_keepalive_at")),
            created_at: Timestamp(col!(row, "created_at")),
            updated_at: Timestamp(col!(row, "updated_at")),
        }
    }};
}

impl Store {
    /// Registers a scheduler or seed peer at `now`. The same hostname, IP and
    /// cluster update the existing row (one row per member, however often it
    /// restarts), which becomes active with a fresh keepalive. An unknown
    /// cluster is [`StoreError::NotFound`].
    pub async fn register_member(&self, reg: &Registration, now: Timestamp) -> Result<Member> {
        reg.validate()?;
        let kind = reg.kind;
        let table = kind.table();
        let seed = kind == MemberKind::SeedPeer;
        let (extra_col, extra_val) = if seed { (", download_port", ", ?") } else { ("", "") };
        // On a known (hostname, ip, cluster_id) everything but identity and
        // created_at is refreshed.
        let mut refreshed = vec!["port", "idc", "location", "state", "last_keepalive_at", "updated_at"];
        if seed {
            refreshed.push("download_port");
        }
        let upsert = match self.backend() {
            Backend::MySql => {
                let set: Vec<String> = refreshed.iter().map(|c| format!("{c} = VALUES({c})")).collect();
                format!("ON DUPLICATE KEY UPDATE {}", set.join(", "))
            }
            Backend::Sqlite | Backend::Postgres => {
                let set: Vec<String> = refreshed.iter().map(|c| format!("{c} = excluded.{c}")).collect();
                format!("ON CONFLICT (hostname, ip, cluster_id) DO UPDATE SET {}", set.join(", "))
            }
        };
        let insert = self.sql(format!(
            "INSERT INTO {table} (hostname, ip, port{extra_col}, idc, location, state, last_keepalive_at, cluster_id, \
             created_at, updated_at) VALUES (?, ?, ?{extra_val}, ?, ?, ?, ?, ?, ?, ?) {upsert}"
        ));
        let cluster_exists = self.sql("SELECT COUNT(*) FROM clusters WHERE id = ?");
        let select =
            self.sql(format!("SELECT {} FROM {table} WHERE hostname = ? AND ip = ? AND cluster_id = ?", columns(kind)));
        let ip = reg.ip.to_string();
        let download_port = i64::from(reg.download_port.unwrap_or(0));
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let n: i64 = sqlx::query_scalar(cluster_exists).bind(reg.cluster_id).fetch_one(&mut *tx).await?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            let q = sqlx::query(insert).bind(&reg.hostname).bind(&ip).bind(i64::from(reg.port));
            let q = if seed { q.bind(download_port) } else { q };
            q.bind(&reg.idc)
                .bind(&reg.location)
                .bind(MemberState::Active.as_str())
                .bind(now.0)
                .bind(reg.cluster_id)
                .bind(now.0)
                .bind(now.0)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query(select).bind(&reg.hostname).bind(&ip).bind(reg.cluster_id).fetch_one(&mut *tx).await?;
            let member = member_from_row!(kind, &row);
            tx.commit().await?;
            Ok(member)
        })
    }

    /// Records a keepalive at `now`. Returns `true` when the member was
    /// inactive and is active again (the answers peers get change), `false`
    /// when it was active already.
    pub async fn keepalive(&self, kind: MemberKind, id: i64, now: Timestamp) -> Result<bool> {
        let table = kind.table();
        let touch =
            self.sql(format!("UPDATE {table} SET last_keepalive_at = ?, updated_at = ? WHERE id = ? AND state = ?"));
        let touched = dispatch!(self, pool => sqlx::query(touch)
            .bind(now.0)
            .bind(now.0)
            .bind(id)
            .bind(MemberState::Active.as_str())
            .execute(pool)
            .await?
            .rows_affected());
        if touched > 0 {
            return Ok(false);
        }
        self.set_state(kind, id, MemberState::Active, Some(now), now).await?;
        Ok(true)
    }

    /// Marks a member inactive (its keepalive stream closed); it is no longer
    /// handed out and becomes eligible for GC.
    pub async fn mark_inactive(&self, kind: MemberKind, id: i64, now: Timestamp) -> Result<()> {
        self.set_state(kind, id, MemberState::Inactive, None, now).await
    }

    async fn set_state(
        &self,
        kind: MemberKind,
        id: i64,
        state: MemberState,
        keepalive: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<()> {
        let table = kind.table();
        let sql = self.sql(format!(
            "UPDATE {table} SET state = ?, last_keepalive_at = COALESCE(?, last_keepalive_at), updated_at = ? \
             WHERE id = ?"
        ));
        let done = dispatch!(self, pool => {
            sqlx::query(sql)
                .bind(state.as_str())
                .bind(keepalive.map(|t| t.0))
                .bind(now.0)
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    /// Marks inactive every active member whose last keepalive is before
    /// `keepalive_before` (the grace period for missed keepalives has run
    /// out). Returns how many changed.
    pub async fn expire_members(&self, kind: MemberKind, keepalive_before: Timestamp, now: Timestamp) -> Result<u64> {
        let table = kind.table();
        let sql =
            self.sql(format!("UPDATE {table} SET state = ?, updated_at = ? WHERE state = ? AND last_keepalive_at < ?"));
        dispatch!(self, pool => Ok(sqlx::query(sql)
            .bind(MemberState::Inactive.as_str())
            .bind(now.0)
            .bind(MemberState::Active.as_str())
            .bind(keepalive_before.0)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Deletes inactive members last seen before `seen_before`; active ones
    /// are never deleted. Returns how many went.
    pub async fn gc_inactive_members(&self, kind: MemberKind, seen_before: Timestamp) -> Result<u64> {
        let table = kind.table();
        let sql = self.sql(format!("DELETE FROM {table} WHERE state = ? AND last_keepalive_at < ?"));
        dispatch!(self, pool => Ok(sqlx::query(sql)
            .bind(MemberState::Inactive.as_str())
            .bind(seen_before.0)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// The member of this kind with this ID.
    pub async fn get_member(&self, kind: MemberKind, id: i64) -> Result<Member> {
        let sql = self.sql(format!("SELECT {} FROM {} WHERE id = ?", columns(kind), kind.table()));
        dispatch!(self, pool => {
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?.ok_or(StoreError::NotFound)?;
            Ok(member_from_row!(kind, &row))
        })
    }

    /// Every member of this kind in a cluster, active or not, by ID.
    pub async fn list_members(&self, kind: MemberKind, cluster_id: i64) -> Result<Vec<Member>> {
        self.find_members(kind, Some(cluster_id), None).await
    }

    /// The active members of this kind in a cluster, by ID: the ones that may
    /// be handed out.
    pub async fn list_active_members(&self, kind: MemberKind, cluster_id: i64) -> Result<Vec<Member>> {
        self.find_members(kind, Some(cluster_id), Some(MemberState::Active)).await
    }

    /// Members of this kind, optionally only one cluster's and/or one state's, by ID.
    pub async fn find_members(
        &self,
        kind: MemberKind,
        cluster_id: Option<i64>,
        state: Option<MemberState>,
    ) -> Result<Vec<Member>> {
        let mut filters = Vec::new();
        if cluster_id.is_some() {
            filters.push("cluster_id = ?");
        }
        if state.is_some() {
            filters.push("state = ?");
        }
        let filter = if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
        let sql = self.sql(format!("SELECT {} FROM {}{filter} ORDER BY id", columns(kind), kind.table()));
        dispatch!(self, pool => {
            let q = sqlx::query(sql);
            let q = match cluster_id {
                Some(id) => q.bind(id),
                None => q,
            };
            let q = match state {
                Some(s) => q.bind(s.as_str()),
                None => q,
            };
            let rows = q.fetch_all(pool).await?;
            let mut members = Vec::with_capacity(rows.len());
            for row in &rows {
                members.push(member_from_row!(kind, row));
            }
            Ok(members)
        })
    }

    /// Deletes an inactive member (an operator cleaning up). An active one is
    /// [`StoreError::Conflict`]`("state")`: it would re-register at once.
    pub async fn delete_inactive_member(&self, kind: MemberKind, id: i64) -> Result<()> {
        let table = kind.table();
        let state = self.sql(format!("SELECT state FROM {table} WHERE id = ?"));
        let delete = self.sql(format!("DELETE FROM {table} WHERE id = ? AND state = ?"));
        dispatch!(self, pool => {
            let mut tx = pool.begin_with(self.begin_sql()).await?;
            let current: String =
                sqlx::query_scalar(state).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound)?;
            if MemberState::parse(&current)? == MemberState::Active {
                return Err(StoreError::Conflict("state"));
            }
            sqlx::query(delete).bind(id).bind(MemberState::Inactive.as_str()).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// IDs of the clusters that have at least one active scheduler (the ones
    /// peers may be matched to), in one query.
    pub async fn clusters_with_active_schedulers(&self) -> Result<std::collections::HashSet<i64>> {
        let sql = self.sql("SELECT DISTINCT cluster_id FROM schedulers WHERE state = ?");
        let ids: Vec<i64> = dispatch!(self, pool => sqlx::query_scalar(sql)
            .bind(MemberState::Active.as_str())
            .fetch_all(pool)
            .await?);
        Ok(ids.into_iter().collect())
    }
}
