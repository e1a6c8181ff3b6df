//! Darter's images, built without Docker from `images/Dockerfile` by
//! `images/build-oci`, imported into a real containerd and run there with
//! their own entrypoint, configured by environment only (as the Helm chart
//! configures them): each starts as the non-root user 65532 and answers
//! `/healthz`, and together they are a mutual-TLS cluster: the manager (CA
//! from files, bootstrap join tokens from a file), a scheduler and a seed
//! peer that enroll with those tokens and register with it.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testkit::containerd::ContainerdProcess;
use testkit::dfdaemon::bin_dir;
use testkit::eventually::{patience, poll, wait_until};
use testkit::pki::TestCa;
use testkit::tool::{self, run};

const ROOT_PASSWORD: &str = "darter-test-root";
const SCHEDULER_TOKEN: &str = "image1.0123456789abcdef";
const SEED_TOKEN: &str = "image2.0123456789abcdef";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

/// A loopback port free now. The kit otherwise binds port 0 and reads a
/// ready file, but that takes a flag, and this test runs each image with its
/// own entrypoint and environment only. The port is drawn below the
/// kernel's ephemeral range (32768 and up), where the outgoing connections
/// and port-0 listeners of the tests running alongside cannot take it
/// between this check and the container's bind.
fn free_addr() -> SocketAddr {
    use rand::Rng as _;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let ports = ephemeral_start.saturating_sub(10_000).max(1024)..ephemeral_start;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let addr = SocketAddr::from(([127, 0, 0, 1], rng.random_range(ports.clone())));
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port in {ports:?}");
}

/// The test's containers, in a containerd namespace of their own (runc
/// keeps container state per namespace, shared by every containerd on the
/// machine): removed with their processes when the test ends, also when it
/// fails (a container outlives containerd otherwise).
struct Containers<'a> {
    containerd: &'a ContainerdProcess,
    namespace: String,
    ids: Vec<String>,
}

impl Containers<'_> {
    /// Starts a container of `image` in the background with the host's
    /// network, `env`, and read-only bind mounts `(host dir, container dir)`,
    /// running the image's own entrypoint.
    async fn run(&mut self, image: &str, id: &str, env: &[(&str, String)], mounts: &[(&Path, &str)]) {
        let mut args: Vec<String> = vec!["-n".into(), self.namespace.clone(), "run".into(), "-d".into()];
        args.push("--net-host".into());
        for (k, v) in env {
            args.extend(["--env".into(), format!("{k}={v}")]);
        }
        for (src, dst) in mounts {
            args.extend(["--mount".into(), format!("type=bind,src={},dst={dst},options=rbind:ro", src.display())]);
        }
        args.extend([format!("docker.io/darter/{image}:0.1.0"), id.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ids.push(id.to_owned());
        self.containerd.ctr(&args).await.unwrap_or_else(|e| panic!("{id}: {e:#}\n{}", self.containerd.log_tail(20)));
    }

    /// The uid the container's main process runs as.
    async fn uid_of(&self, id: &str) -> String {
        let tasks = self.containerd.ctr(&["-n", &self.namespace, "task", "ls"]).await.unwrap();
        let line = tasks.lines().find(|l| l.split_whitespace().next() == Some(id)).unwrap_or_else(|| panic!("{tasks}"));
        let pid = line.split_whitespace().nth(1).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap().to_owned()
    }
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        let ctr = |args: &[&str]| {
            let _ = std::process::Command::new("ctr")
                .arg("--address")
                .arg(&self.containerd.socket)
                .args(["-n", &self.namespace])
                .args(args)
                .output();
        };
        for id in &self.ids {
            ctr(&["task", "delete", "--force", id]);
            ctr(&["container", "delete", id]);
        }
    }
}

async fn healthy(addr: SocketAddr) -> bool {
    testkit::http::json(addr, "GET", "/healthz", None, None).await.is_ok_and(|(status, _)| status == 200)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_images_run_in_containerd_as_a_cluster() {
    if !tool::registry_kit_or_skip("the_images_run_in_containerd_as_a_cluster") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("img").tempdir_in("/tmp").unwrap();
    let images = dir.path().join("images");
    let mut build = tokio::process::Command::new(repo_root().join("images/build-oci"));
    build.arg("--bin-dir").arg(bin_dir()).arg("--out").arg(&images);
    let built = run(&mut build, patience(Duration::from_secs(300))).await.unwrap();
    println!("{}", String::from_utf8_lossy(&built.stdout));

    let containerd = ContainerdProcess::start(&dir.path().join("ctd")).await.unwrap();
    let namespace = dir.path().file_name().unwrap().to_string_lossy().to_lowercase();
    let mut containers = Containers { containerd: &containerd, namespace: namespace.clone(), ids: Vec::new() };
    for name in ["manager", "scheduler", "dfdaemon"] {
        let archive = images.join(format!("{name}.oci.tar"));
        let base = format!("docker.io/darter/{name}");
        let import = ["-n", &namespace, "images", "import", "--base-name", &base, archive.to_str().unwrap()];
        containerd.ctr(&import).await.unwrap();
    }

    // The chart's trust set-up: a CA the manager signs with, the CA alone for
    // members, bootstrap tokens for the manager and one token per member.
    let ca = TestCa::new();
    let manager_ca = dir.path().join("manager-ca");
    ca.write_ca(&manager_ca);
    let members_ca = dir.path().join("members-ca");
    std::fs::create_dir_all(&members_ca).unwrap();
    std::fs::write(members_ca.join("ca.crt"), ca.ca_pem()).unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(
        tokens.join("tokens.yaml"),
        format!("- token: {SCHEDULER_TOKEN}\n  role: scheduler\n- token: {SEED_TOKEN}\n  role: seed_peer\n"),
    )
    .unwrap();
    // Readable by the containers' user 65532.
    for f in [manager_ca.join("ca.crt"), manager_ca.join("ca.key"), tokens.join("tokens.yaml")] {
        std::os::unix::fs::chown(&f, Some(65532), Some(65532)).unwrap();
    }

    let (m_grpc, m_rest, m_metrics) = (free_addr(), free_addr(), free_addr());
    containers
        .run(
            "manager",
            "manager",
            &[
                ("MANAGER__GRPC_ADDR", m_grpc.to_string()),
                ("MANAGER__REST_ADDR", m_rest.to_string()),
                ("MANAGER__METRICS_ADDR", m_metrics.to_string()),
                ("MANAGER__AUTH__ROOT_PASSWORD", ROOT_PASSWORD.into()),
                ("MANAGER__TLS__CA_CERT_FILE", "/etc/darter/ca/ca.crt".into()),
                ("MANAGER__TLS__CA_KEY_FILE", "/etc/darter/ca/ca.key".into()),
                ("MANAGER__TLS__BOOTSTRAP_TOKENS_FILE", "/etc/darter/tokens/tokens.yaml".into()),
            ],
            &[(&manager_ca, "/etc/darter/ca"), (&tokens, "/etc/darter/tokens")],
        )
        .await;
    let up = |what: &'static str, addr: SocketAddr| async move {
        wait_until(what, patience(Duration::from_secs(30)), || healthy(addr)).await
    };
    up("the manager's /healthz", m_metrics).await.unwrap_or_else(|e| panic!("{e:#}\n{}", containerd.log_tail(30)));

    let (s_grpc, s_metrics) = (free_addr(), free_addr());
    containers
        .run(
            "scheduler",
            "scheduler",
            &[
                ("SCHEDULER__GRPC_ADDR", s_grpc.to_string()),
                ("SCHEDULER__METRICS_ADDR", s_metrics.to_string()),
                ("SCHEDULER__MANAGER__ADDRS", format!("[{m_grpc}]")),
                ("SCHEDULER__TLS__JOIN_TOKEN", SCHEDULER_TOKEN.into()),
                ("SCHEDULER__TLS__CA_FILE", "/etc/darter/ca/ca.crt".into()),
            ],
            &[(&members_ca, "/etc/darter/ca")],
        )
        .await;
    up("the scheduler's /healthz", s_metrics).await.unwrap();

    let (d_upload, d_piece, d_metrics, d_proxy) = (free_addr(), free_addr(), free_addr(), free_addr());
    containers
        .run(
            "dfdaemon",
            "seed",
            &[
                ("DFDAEMON__HOST__SEED", "true".into()),
                ("DFDAEMON__HOST__IP", "127.0.0.1".into()),
                ("DFDAEMON__UPLOAD__GRPC_ADDR", d_upload.to_string()),
                ("DFDAEMON__UPLOAD__PIECE_ADDR", d_piece.to_string()),
                ("DFDAEMON__METRICS_ADDR", d_metrics.to_string()),
                ("DFDAEMON__PROXY__ADDR", d_proxy.to_string()),
                ("DFDAEMON__MANAGER__ADDRS", format!("[{m_grpc}]")),
                ("DFDAEMON__TLS__JOIN_TOKEN", SEED_TOKEN.into()),
                ("DFDAEMON__TLS__CA_FILE", "/etc/darter/ca/ca.crt".into()),
            ],
            &[(&members_ca, "/etc/darter/ca")],
        )
        .await;
    up("the seed peer's /healthz", d_metrics).await.unwrap();

    for id in ["manager", "scheduler", "seed"] {
        assert_eq!(containers.uid_of(id).await, "65532", "{id} runs as the image's non-root user");
    }
    // Both members enrolled with their bootstrap tokens and registered.
    let token = {
        let body = serde_json::json!({ "name": "root", "password": ROOT_PASSWORD });
        let (status, answer) =
            testkit::http::json(m_rest, "POST", "/api/v1/users/signin", None, Some(&body)).await.unwrap();
        assert_eq!(status, 200, "{answer}");
        answer["token"].as_str().unwrap().to_owned()
    };
    for (path, what) in [("/api/v1/schedulers", "the scheduler"), ("/api/v1/seed-peers", "the seed peer")] {
        let listed = poll(&format!("{what} registered and active"), patience(Duration::from_secs(30)), || {
            let token = token.clone();
            async move {
                let (status, answer) = testkit::http::json(m_rest, "GET", path, Some(&token), None).await.ok()?;
                let active = status == 200
                    && answer.as_array().is_some_and(|a| a.iter().any(|m| m["state"].as_str() == Some("active")));
                active.then_some(answer)
            }
        })
        .await;
        assert!(listed.is_ok(), "{what}: {listed:?}\n{}", containerd.log_tail(30));
    }
}
