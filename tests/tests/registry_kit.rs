//! The registry kit proven without Darter: test images built offline with
//! umoci, pushed with skopeo to a real `docker-registry`, pulled by a real
//! containerd straight from the registry (plain HTTP, and HTTPS with
//! htpasswd auth), the unpacked files checked, and the registry's access log
//! showing every blob served once. Also what containerd does when its
//! mirrors fail: it falls back to the registry.
//!
//! Needs containerd, docker-registry, skopeo, umoci, apache2-utils and
//! openssl (Debian packages) and root; without them a test prints SKIPPED
//! and passes, except under CI (`CI` set), where it fails.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use testkit::containerd::{ContainerdProcess, PullOptions, write_hosts_toml};
use testkit::eventually::wait_until;
use testkit::oci::TestImage;
use testkit::registry::{Credentials, RegistryOptions, RegistryProcess};
use testkit::tool::registry_kit_or_skip;

/// How long the registry may take to log a request after answering it.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);

async fn images() -> (TestImage, TestImage) {
    let started = Instant::now();
    let small = TestImage::small().await.unwrap();
    let large = TestImage::large().await.unwrap();
    println!("images ready in {:?} (cached after the first build)", started.elapsed());
    (small, large)
}

/// Asserts that the registry served each of `image`'s blobs exactly once.
async fn assert_each_blob_served_once(registry: &RegistryProcess, image: &TestImage) {
    let blobs = image.blob_digests();
    let logged = wait_until("the registry to log every blob", LOG_TIMEOUT, || async {
        let served = registry.blob_gets();
        blobs.iter().all(|b| served.contains_key(b))
    })
    .await;
    let served = registry.blob_gets();
    logged.unwrap_or_else(|e| panic!("{e}: served {served:?}, expected {blobs:?}"));
    for blob in &blobs {
        assert_eq!(served[blob], 1, "{blob} of the {} image served {} times", image.name, served[blob]);
    }
}

async fn pull_and_check(node: &ContainerdProcess, reference: &str, options: &PullOptions, image: &TestImage) {
    let pulled = node.pull(reference, options).await.unwrap_or_else(|e| panic!("{e:#}\n{}", node.log_tail(20)));
    println!("pulled {reference} ({} image) in {:?}", image.name, pulled.elapsed);
    assert_eq!(pulled.chain_id, image.chain_id());
    let files = node.rootfs_files(&pulled.chain_id).await.unwrap();
    assert_eq!(files, image.files, "unpacked files of the {} image", image.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn both_images_pull_directly_from_a_plain_registry_and_each_blob_is_served_once() {
    if !registry_kit_or_skip("both_images_pull_directly_from_a_plain_registry_and_each_blob_is_served_once") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = images().await;
    assert_eq!(small.layers.len(), 3);
    assert!(small.files["data/motd.txt"] == testkit::sha256_hex(b"darter test image, layer 2 overwrote this\n"));
    assert!(large.layers[0].size > 200 << 20, "the large layer stays incompressible");

    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let started = Instant::now();
    let small_ref = small.push(&registry, "darter/small").await.unwrap();
    let large_ref = large.push(&registry, "darter/large").await.unwrap();
    println!("pushed both images in {:?}", started.elapsed());
    assert!(registry.blob_gets().is_empty(), "pushing serves no blob: {:?}", registry.blob_gets());

    let certs_d = dir.path().join("certs.d");
    let hosts = write_hosts_toml(&certs_d, &registry, &[]).unwrap();
    let node = ContainerdProcess::start(&dir.path().join("node")).await.unwrap();
    let options = PullOptions::with_hosts_dir(&certs_d);
    pull_and_check(&node, &small_ref, &options, &small).await;
    pull_and_check(&node, &large_ref, &options, &large).await;
    assert_each_blob_served_once(&registry, &small).await;
    assert_each_blob_served_once(&registry, &large).await;

    // The hosts.toml is honoured (not silently ignored): pointing `server`
    // at a dead port makes a fresh pull fail.
    let dead = testkit::net::refused_addr().to_string();
    std::fs::write(&hosts, format!("server = \"http://{dead}\"\n\n[host]\n")).unwrap();
    let other = ContainerdProcess::start(&dir.path().join("other")).await.unwrap();
    let err = other.pull(&small_ref, &options).await.unwrap_err();
    assert!(err.to_string().contains(&dead), "{err:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_htpasswd_registry_over_https_needs_the_credentials() {
    if !registry_kit_or_skip("an_htpasswd_registry_over_https_needs_the_credentials") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let credentials = Credentials::new("darter", "s3cret-pass");
    let options = RegistryOptions { htpasswd: Some(credentials.clone()), tls: true };
    let registry = RegistryProcess::start(&dir.path().join("registry"), options).await.unwrap();
    assert!(registry.url().starts_with("https://"));
    let reference = small.push(&registry, "private/small").await.unwrap();

    let certs_d = dir.path().join("certs.d");
    write_hosts_toml(&certs_d, &registry, &[]).unwrap();
    let node = ContainerdProcess::start(&dir.path().join("node")).await.unwrap();
    let anonymous = PullOptions::with_hosts_dir(&certs_d);
    let err = node.pull(&reference, &anonymous).await.unwrap_err();
    assert!(err.to_string().contains("401 Unauthorized"), "{err:#}");
    let wrong = PullOptions { credentials: Some(Credentials::new("darter", "wrong")), ..anonymous.clone() };
    let err = node.pull(&reference, &wrong).await.unwrap_err();
    assert!(err.to_string().contains("401 Unauthorized"), "{err:#}");

    let authorized = PullOptions { credentials: Some(credentials), ..anonymous };
    pull_and_check(&node, &reference, &authorized, &small).await;
    assert_each_blob_served_once(&registry, &small).await;
}

/// A stand-in for a broken mirror: records each request line and answers
/// `503 Service Unavailable`.
async fn failing_mirror() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line);
                let reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = conn.write_all(reply).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_and_dead_mirrors_fall_back_to_the_registry() {
    if !registry_kit_or_skip("failing_and_dead_mirrors_fall_back_to_the_registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = small.push(&registry, "darter/small").await.unwrap();
    let node = ContainerdProcess::start(&dir.path().join("node")).await.unwrap();

    // A mirror answering 503, then one nobody listens on (a stopped
    // dfdaemon): every request tries both, in order, then the registry.
    let (failing, seen) = failing_mirror().await;
    let dead = format!("http://{}", testkit::net::refused_addr());
    let certs_d = dir.path().join("certs.d");
    write_hosts_toml(&certs_d, &registry, &[&failing, &dead]).unwrap();
    pull_and_check(&node, &reference, &PullOptions::with_hosts_dir(&certs_d), &small).await;
    assert_each_blob_served_once(&registry, &small).await;

    // containerd asked the mirror for everything, naming the registry in
    // `ns` (URL-encoded host:port).
    let ns = format!("?ns={}", registry.host().replace(':', "%3A"));
    let seen = seen.lock().unwrap().clone();
    let repo = "/v2/darter/small";
    let mut expected = vec![
        format!("HEAD {repo}/manifests/v1{ns} HTTP/1.1"),
        format!("GET {repo}/manifests/{}{ns} HTTP/1.1", small.manifest_digest),
    ];
    expected.extend(small.blob_digests().iter().map(|d| format!("GET {repo}/blobs/{d}{ns} HTTP/1.1")));
    for line in expected {
        assert!(seen.contains(&line), "the mirror never saw {line:?}; it saw {seen:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_containerds_side_by_side_each_fetch_every_blob_without_a_mirror() {
    if !registry_kit_or_skip("three_containerds_side_by_side_each_fetch_every_blob_without_a_mirror") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (small, _) = images().await;
    let registry = RegistryProcess::start(&dir.path().join("registry"), RegistryOptions::default()).await.unwrap();
    let reference = small.push(&registry, "darter/small").await.unwrap();
    let certs_d = dir.path().join("certs.d");
    write_hosts_toml(&certs_d, &registry, &[]).unwrap();
    let options = PullOptions::with_hosts_dir(&certs_d);

    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(ContainerdProcess::start(&dir.path().join(format!("node-{i}"))).await.unwrap());
    }
    futures::future::join_all(nodes.iter().map(|n| pull_and_check(n, &reference, &options, &small))).await;

    // The baseline the mirror improves on: every node fetched every blob.
    let blobs = small.blob_digests();
    wait_until("the registry to log three fetches of every blob", LOG_TIMEOUT, || async {
        let served = registry.blob_gets();
        blobs.iter().all(|b| served.get(b) == Some(&3))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: served {:?}", registry.blob_gets()));
}
