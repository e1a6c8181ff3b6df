//! Test container images built offline (no base image, no network) with
//! `umoci` from deterministic generated files, cached on disk across tests,
//! and pushed to a registry with `skopeo`.
//!
//! Two images:
//! - [`TestImage::small`]: three gzip layers of about 300 KiB each under
//!   `data/`, the last one overwriting `data/motd.txt` from the first;
//! - [`TestImage::large`]: one layer holding `data/large.bin`, 200 MiB of
//!   incompressible random bytes (umoci's gzip stores such data almost
//!   as-is: building takes seconds, not minutes).
//!
//! File mtimes and every timestamp umoci records are fixed, so an image's
//! digests depend only on its contents (and umoci's version): rebuilding
//! yields the same manifest digest.
//!
//! A built image lives in `$TMPDIR/darter-test-images/<name>-v<version>/`:
//! the OCI layout plus `image.json` (this struct). Tests in other processes
//! reuse it; bump [`CONTENT_VERSION`] whenever the recipe changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::registry::RegistryProcess;
use crate::tool::run;

/// Version of the image recipes; part of the cache directory's name.
pub const CONTENT_VERSION: u32 = 1;

/// How long building one image may take (the large one takes seconds).
const BUILD_STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for another test process building the same image.
const LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// How long pushing one image may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(180);

/// The tag every test image has in its layout.
const TAG: &str = "v1";

/// The fixed time recorded for every file and history entry.
const EPOCH: &str = "2000-01-01T00:00:00Z";

/// One layer of a built image, as the manifest and config list it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    /// Digest of the (compressed) blob: what the registry serves.
    pub digest: String,
    /// Digest of the uncompressed tar (the config's `diff_ids`).
    pub diff_id: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Media type (`application/vnd.oci.image.layer.v1.tar+gzip`).
    pub media_type: String,
}

/// A test image built as an OCI layout on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TestImage {
    /// Short name (`small`, `large`).
    pub name: String,
    /// The OCI layout directory.
    pub layout: PathBuf,
    /// The tag inside the layout.
    pub tag: String,
    /// Digest of the image manifest.
    pub manifest_digest: String,
    /// Digest of the image config blob.
    pub config_digest: String,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// Every regular file of the unpacked image: path relative to the root
    /// (`data/motd.txt`) to lowercase hex SHA-256 of its content.
    pub files: BTreeMap<String, String>,
}

/// A file to put in a layer: path under the image root and how to fill it.
enum Content {
    /// `len` bytes of [`crate::random_bytes`] with `seed`.
    Random { len: u64, seed: u64 },
    /// These bytes.
    Text(&'static str),
}

impl TestImage {
    /// The small multi-layer image (3 layers, about 300 KiB each), built
    /// once and cached.
    pub async fn small() -> anyhow::Result<Self> {
        const K: u64 = 1 << 10;
        let layers = vec![
            vec![
                ("data/motd.txt", Content::Text("darter test image, layer 0\n")),
                ("data/layer-0/a.bin", Content::Random { len: 256 * K, seed: 100 }),
                ("data/layer-0/b.bin", Content::Random { len: 64 * K + 7, seed: 101 }),
            ],
            vec![
                ("data/layer-1/a.bin", Content::Random { len: 200 * K, seed: 110 }),
                ("data/layer-1/b.bin", Content::Random { len: 128 * K + 1, seed: 111 }),
            ],
            vec![
                ("data/layer-2/a.bin", Content::Random { len: 300 * K + 3, seed: 120 }),
                ("data/motd.txt", Content::Text("darter test image, layer 2 overwrote this\n")),
            ],
        ];
        Self::cached("small", layers).await
    }

    /// The large image: one layer with `data/large.bin`, 200 MiB of random
    /// bytes (seed 200), built once and cached.
    pub async fn large() -> anyhow::Result<Self> {
        let layers = vec![vec![("data/large.bin", Content::Random { len: 200 << 20, seed: 200 })]];
        Self::cached("large", layers).await
    }

    /// Digests of every blob a pull fetches from the registry's blob
    /// endpoint: the config and the layers (the manifest is fetched from
    /// `/manifests/`).
    pub fn blob_digests(&self) -> Vec<String> {
        std::iter::once(self.config_digest.clone()).chain(self.layers.iter().map(|l| l.digest.clone())).collect()
    }

    /// The chain ID of the top layer: the key of the committed snapshot
    /// containerd unpacks the image into.
    pub fn chain_id(&self) -> String {
        let mut layers = self.layers.iter();
        let first = layers.next().map(|l| l.diff_id.clone()).unwrap_or_default();
        layers.fold(first, |chain, l| {
            format!("sha256:{}", crate::sha256_hex(format!("{chain} {}", l.diff_id).as_bytes()))
        })
    }

    /// Pushes the image to `registry` as `<repository>:v1` (with the
    /// registry's credentials, if it has any) and returns the reference to
    /// pull: `127.0.0.1:<port>/<repository>:v1`.
    pub async fn push(&self, registry: &RegistryProcess, repository: &str) -> anyhow::Result<String> {
        let reference = format!("{}/{repository}:{}", registry.host(), self.tag);
        let mut cmd = Command::new("skopeo");
        // No signature policy to consult and the registry's certificate (if
        // any) is self-signed.
        cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
        if let Some(c) = &registry.credentials {
            cmd.args(["--dest-creds", &format!("{}:{}", c.user, c.password)]);
        }
        cmd.arg(format!("oci:{}:{}", self.layout.display(), self.tag)).arg(format!("docker://{reference}"));
        run(&mut cmd, PUSH_TIMEOUT).await.with_context(|| format!("push the {} image", self.name))?;
        Ok(reference)
    }

    /// The image from the cache, building it first if needed.
    async fn cached(name: &str, layers: Vec<Vec<(&'static str, Content)>>) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join("darter-test-images");
        let dir = root.join(format!("{name}-v{CONTENT_VERSION}"));
        if let Some(image) = Self::load(&dir) {
            return Ok(image);
        }
        std::fs::create_dir_all(&root)?;
        // One builder at a time across test processes (the lock is released
        // when `_lock` is dropped, or when a builder dies); the others wait,
        // then find the image in the cache.
        let lock_path = root.join(format!("{name}.lock"));
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::File::create(lock_path)?;
            file.lock()?;
            Ok(file)
        });
        let _lock =
            tokio::time::timeout(LOCK_TIMEOUT, lock).await.context("another test is still building the image")???;
        if let Some(image) = Self::load(&dir) {
            return Ok(image);
        }
        // Build next to the cache entry and rename it into place, so a
        // reader never sees a half-built image.
        let build = tempfile::Builder::new().prefix(&format!("{name}-building-")).tempdir_in(&root)?;
        let mut image = build_image(name, build.path(), layers)
            .await
            .with_context(|| format!("build the {name} test image with umoci"))?;
        image.layout = dir.join("layout");
        std::fs::write(build.path().join("image.json"), serde_json::to_vec_pretty(&image)?)?;
        if dir.exists() {
            // A stale or broken entry (`load` rejected it): replace it.
            std::fs::remove_dir_all(&dir).with_context(|| format!("remove the broken cache {}", dir.display()))?;
        }
        std::fs::rename(build.path(), &dir).with_context(|| format!("move the image to {}", dir.display()))?;
        // The directory now belongs to the cache.
        let _ = build.keep();
        Ok(image)
    }

    /// A cached image, if `dir` holds a complete one.
    fn load(dir: &Path) -> Option<Self> {
        let image: Self = serde_json::from_slice(&std::fs::read(dir.join("image.json")).ok()?).ok()?;
        let blobs = image.layout.join("blobs/sha256");
        let complete = image.layout.starts_with(dir)
            && std::iter::once(&image.manifest_digest)
                .chain(&image.blob_digests())
                .all(|d| blobs.join(d.trim_start_matches("sha256:")).is_file());
        complete.then_some(image)
    }
}

/// Builds the image `name` in `dir` (`dir/layout` and scratch files) from
/// `layers`, each a list of files.
async fn build_image(name: &str, dir: &Path, layers: Vec<Vec<(&'static str, Content)>>) -> anyhow::Result<TestImage> {
    let layout = dir.join("layout");
    let image = format!("{}:{TAG}", layout.display());
    umoci(&["init", "--layout", &layout.to_string_lossy()]).await?;
    umoci(&["new", "--image", &image]).await?;
    umoci(&["config", "--image", &image, "--created", EPOCH, "--no-history"]).await?;
    let mut files = BTreeMap::new();
    for (i, layer) in layers.into_iter().enumerate() {
        let stage = dir.join(format!("stage-{i}"));
        let written = tokio::task::spawn_blocking({
            let stage = stage.clone();
            move || stage_files(&stage, &layer)
        })
        .await??;
        files.extend(written);
        // Every layer writes under `data/`: insert that directory (merged
        // with the lower layers' `data/`, not replacing it).
        let source = stage.join("data");
        umoci(&["insert", "--image", &image, "--history.created", EPOCH, &source.to_string_lossy(), "/data"]).await?;
        tokio::fs::remove_dir_all(&stage).await?;
    }
    umoci(&["gc", "--layout", &layout.to_string_lossy()]).await?;
    read_layout(name, &layout, files)
}

async fn umoci(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("umoci").args(args), BUILD_STEP_TIMEOUT).await.map(drop)
}

/// Writes `files` under `stage` with a fixed mtime on every file and
/// directory; returns their paths and SHA-256s.
fn stage_files(stage: &Path, files: &[(&str, Content)]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut digests = BTreeMap::new();
    for (path, content) in files {
        let target = stage.join(path);
        std::fs::create_dir_all(target.parent().context("a file path has a parent")?)?;
        let digest = match content {
            Content::Random { len, seed } => crate::write_random_file(&target, *len, *seed)?,
            Content::Text(text) => {
                std::fs::write(&target, text)?;
                crate::sha256_hex(text.as_bytes())
            }
        };
        digests.insert(path.to_string(), digest);
    }
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    set_mtimes(stage, epoch)?;
    Ok(digests)
}

fn set_mtimes(path: &Path, time: SystemTime) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            set_mtimes(&entry?.path(), time)?;
        }
    }
    std::fs::File::open(path)?.set_modified(time)
}

/// Reads the manifest and config of the layout's only image.
fn read_layout(name: &str, layout: &Path, files: BTreeMap<String, String>) -> anyhow::Result<TestImage> {
    let blob = |digest: &str| -> anyhow::Result<serde_json::Value> {
        let path = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        Ok(serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("read {}", path.display()))?)?)
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifest_digest = index["manifests"][0]["digest"].as_str().context("index.json lists no manifest")?.to_string();
    let manifest = blob(&manifest_digest)?;
    let config_digest = manifest["config"]["digest"].as_str().context("manifest has no config")?.to_string();
    let config = blob(&config_digest)?;
    let diff_ids = config["rootfs"]["diff_ids"].as_array().context("config has no diff_ids")?;
    let layers = manifest["layers"].as_array().context("manifest has no layers")?;
    if layers.len() != diff_ids.len() {
        bail!("manifest lists {} layers but config {} diff_ids", layers.len(), diff_ids.len());
    }
    let layers = layers
        .iter()
        .zip(diff_ids)
        .map(|(l, d)| {
            Some(Layer {
                digest: l["digest"].as_str()?.to_string(),
                diff_id: d.as_str()?.to_string(),
                size: l["size"].as_u64()?,
                media_type: l["mediaType"].as_str()?.to_string(),
            })
        })
        .collect::<Option<Vec<_>>>()
        .context("malformed layer descriptor")?;
    Ok(TestImage {
        name: name.to_string(),
        layout: layout.to_path_buf(),
        tag: TAG.to_string(),
        manifest_digest,
        config_digest,
        layers,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let layer = |diff_id: &str| Layer {
            digest: String::new(),
            diff_id: diff_id.to_string(),
            size: 0,
            media_type: String::new(),
        };
        let mut image = TestImage {
            name: "t".into(),
            layout: PathBuf::new(),
            tag: TAG.into(),
            manifest_digest: String::new(),
            config_digest: String::new(),
            layers: vec![layer("sha256:aa")],
            files: BTreeMap::new(),
        };
        assert_eq!(image.chain_id(), "sha256:aa");
        image.layers.push(layer("sha256:bb"));
        assert_eq!(image.chain_id(), format!("sha256:{}", crate::sha256_hex(b"sha256:aa sha256:bb")));
    }
}
