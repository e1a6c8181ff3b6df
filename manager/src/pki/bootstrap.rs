//! Bootstrap join tokens: join tokens that come from a file
//! (`tls.bootstrap_tokens_file`) instead of REST, so an installer (the Helm
//! chart) can hand the same secret to the manager and to the members before
//! anything runs, as kubeadm's bootstrap tokens live in Secrets.
//!
//! The file is a YAML list:
//!
//! ```yaml
//! - token: abcdef.0123456789abcdef   # <id>.<secret>
//!   role: peer                       # scheduler | seed_peer | peer
//!   cluster_id: 1                    # optional: the default cluster
//!   description: helm release darter # optional
//! ```
//!
//! Each entry becomes a join token with any number of uses, whose expiry is
//! pushed to `tls.max_token_ttl` from now at start, whenever the file
//! changes and every [`EXTEND_EVERY`]: it lives as long as it stays in the
//! file (and its expiry runs out `max_token_ttl` after it left). A token
//! revoked through REST stays revoked: the entry is skipped with a warning
//! until the file gives a new token. An entry whose ID exists with another
//! secret, role or cluster is skipped the same way, never overwritten.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use darter_common::tls::Role;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Pki, token_secret_hash};
use crate::store::{NewJoinToken, StoreError};

/// How often the file is looked at for changes.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// How often the tokens' expiry is pushed forward when the file is unchanged.
pub const EXTEND_EVERY: Duration = Duration::from_secs(3600);
/// Largest file read (a few hundred tokens).
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// One entry of the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapToken {
    /// `<id>.<secret>`.
    pub token: String,
    /// `scheduler`, `seed_peer` or `peer`.
    pub role: String,
    /// The cluster its members join (default: the default cluster).
    #[serde(default)]
    pub cluster_id: Option<i64>,
    /// A note for operators.
    #[serde(default)]
    pub description: Option<String>,
}

/// What applying one entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new join token was stored.
    Created,
    /// The existing token's expiry was pushed forward.
    Extended,
    /// Skipped: its ID is revoked, or taken with another secret, role or cluster.
    Skipped,
}

/// Reads and checks the file: every entry well formed, IDs unique. The
/// message names the file and the entry.
pub fn read(path: &Path) -> anyhow::Result<Vec<BootstrapToken>> {
    let place = || format!("tls.bootstrap_tokens_file {}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", place()))?;
    anyhow::ensure!(meta.len() <= MAX_FILE_BYTES, "{}: larger than {MAX_FILE_BYTES} bytes", place());
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", place()))?;
    let entries: Vec<BootstrapToken> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", place()))?
    };
    let mut ids = std::collections::HashSet::new();
    for (i, t) in entries.iter().enumerate() {
        let at = || format!("{}: entry {}", place(), i + 1);
        darter_common::tls::config::check_token_form(&t.token).map_err(|e| anyhow::anyhow!("{}: token: {e}", at()))?;
        let role: Role = t.role.parse().map_err(|e: String| anyhow::anyhow!("{}: role: {e}", at()))?;
        anyhow::ensure!(role != Role::Manager, "{}: role: members join as scheduler, seed_peer or peer", at());
        anyhow::ensure!(
            t.description.as_ref().is_none_or(|d| d.len() <= 1024),
            "{}: description: at most 1024 bytes",
            at()
        );
        let id = t.token.split_once('.').map(|(id, _)| id).unwrap_or_default();
        anyhow::ensure!(ids.insert(id.to_owned()), "{}: token ID {id} appears twice", at());
    }
    Ok(entries)
}

impl Pki {
    /// Stores or extends each entry; see the module doc.
    pub async fn apply_bootstrap_tokens(
        &self,
        entries: &[BootstrapToken],
        default_cluster: i64,
    ) -> anyhow::Result<Vec<Applied>> {
        let mut out = Vec::with_capacity(entries.len());
        for t in entries {
            let (id, secret) = t.token.split_once('.').unwrap_or_default();
            let cluster_id = t.cluster_id.unwrap_or(default_cluster);
            match self.store.get_cluster(cluster_id).await {
                Ok(_) => {}
                Err(StoreError::NotFound) => {
                    tracing::warn!(token = %id, cluster_id, "bootstrap token names a cluster that does not exist; skipping it");
                    out.push(Applied::Skipped);
                    continue;
                }
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
            let now = self.clock.timestamp();
            let new = NewJoinToken {
                id: id.to_owned(),
                secret_hash: token_secret_hash(secret),
                role: t.role.clone(),
                cluster_id,
                description: t
                    .description
                    .clone()
                    .unwrap_or_else(|| "bootstrap token (tls.bootstrap_tokens_file)".into()),
                expires_at: now.saturating_add(self.max_token_ttl),
                max_uses: 0,
            };
            out.push(self.apply_one(&new).await?);
        }
        Ok(out)
    }

    async fn apply_one(&self, new: &NewJoinToken) -> anyhow::Result<Applied> {
        // Extend first, else create; a replica creating the same token at
        // the same moment makes the create conflict: extend again.
        for _ in 0..2 {
            if self.store.extend_join_token(new).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                return Ok(Applied::Extended);
            }
            match self.store.get_join_token(&new.id).await {
                Ok(existing) => {
                    let why = if existing.revoked_at.is_some() {
                        "it was revoked; put a new token in the file"
                    } else {
                        "a token with this ID exists with another secret, role or cluster"
                    };
                    tracing::warn!(token = %new.id, "bootstrap token skipped: {why}");
                    return Ok(Applied::Skipped);
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
            match self.store.create_join_token(new, self.clock.timestamp()).await {
                Ok(_) => {
                    tracing::info!(token = %new.id, role = %new.role, cluster_id = new.cluster_id, "bootstrap join token created");
                    return Ok(Applied::Created);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(anyhow::anyhow!("{e}")),
            }
        }
        anyhow::bail!("bootstrap token {}: created and changed by another replica at once; try again", new.id)
    }

    /// Applies the file now (an error here stops the manager from starting:
    /// a malformed file is a broken install), then keeps it applied until
    /// `stop`: on change, and every [`EXTEND_EVERY`]. Later errors are logged.
    pub async fn keep_bootstrap_tokens(
        self: &Arc<Self>,
        path: PathBuf,
        default_cluster: i64,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let entries = read(&path)?;
        self.apply_bootstrap_tokens(&entries, default_cluster).await?;
        tracing::info!(file = %path.display(), tokens = entries.len(), "bootstrap join tokens applied");
        let pki = self.clone();
        tracker.spawn(async move {
            let (mut applied, mut at) = (entries, Instant::now());
            let mut tick = tokio::time::interval(CHECK_EVERY);
            loop {
                tokio::select! { _ = stop.cancelled() => return, _ = tick.tick() => {} }
                let entries = match read(&path) {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the bootstrap tokens; keeping the ones applied");
                        continue;
                    }
                };
                if entries == applied && at.elapsed() < EXTEND_EVERY {
                    continue;
                }
                match pki.apply_bootstrap_tokens(&entries, default_cluster).await {
                    Ok(_) => (applied, at) = (entries, Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "cannot apply the bootstrap tokens"),
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_well_formed_entries() {
        let (_d, p) = file(
            "- token: abcdef.0123456789abcdef\n  role: peer\n- token: ghijkl.0123456789abcdef\n  role: scheduler\n  cluster_id: 2\n  description: b\n",
        );
        let t = read(&p).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].cluster_id, Some(2));
        let (_d, p) = file("");
        assert!(read(&p).unwrap().is_empty(), "an empty Secret is no tokens, not an error");
    }

    #[test]
    fn refuses_malformed_entries_naming_the_entry() {
        for (text, says) in [
            ("- token: short.0123456789abcdef\n  role: peer\n", "entry 1: token"),
            ("- token: abcdef.0123456789abcdef\n  role: manager\n", "entry 1: role"),
            ("- token: abcdef.0123456789abcdef\n  role: king\n", "entry 1: role"),
            ("- token: abcdef.0123456789abcdef\n  role: peer\n  expires: 1h\n", "unknown field"),
            (
                "- token: abcdef.0123456789abcdef\n  role: peer\n- token: abcdef.aaaaaaaaaaaaaaaa\n  role: peer\n",
                "appears twice",
            ),
            ("token: abcdef.0123456789abcdef\n", "tls.bootstrap_tokens_file"),
        ] {
            let (_d, p) = file(text);
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("tokens.yaml"), "{text:?}: {e}");
        }
        let e = read(Path::new("/nonexistent/tokens.yaml")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/tokens.yaml"), "{e}");
    }
}
