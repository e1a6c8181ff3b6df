//! `darter-bench manager`: requests per second and latency percentiles of the
//! manager's `ListSchedulers` (gRPC) and `GET /api/v1/clusters` (REST), served
//! by the real `manager` binary on SQLite, PostgreSQL or MySQL/MariaDB.
//!
//! Setup: a fresh database (a SQLite file in a scratch directory, or a
//! `darter_bench_<random>` database created on the server and dropped at the
//! end, also on error or Ctrl-C); the manager on free loopback ports; root
//! sign-in and a personal access token over REST; `--clusters` clusters
//! (cluster i scoped to `10.i.0.0/16`), each with one scheduler registered
//! over gRPC and kept active by a keepalive stream (one message every 2 s).
//!
//! Then three phases, each a closed loop (`--concurrency` workers, each
//! sending its next request when the previous one is answered) for
//! `--warmup` plus `--duration`, of which only the duration is measured:
//!
//! 1. `ListSchedulers` from `--peers` distinct peers in turn (IPs spread over
//!    the clusters' CIDRs): after the first pass, inside the warm-up, answers
//!    come from the manager's cache;
//! 2. `GET /api/v1/clusters` with the token: authentication (token and user
//!    looked up) and the cluster list, from the database every time;
//! 3. `ListSchedulers` from a new peer every request: every answer is
//!    matched against the clusters read from the database (the uncached path).
//!
//! Every gRPC answer is checked (the peer's cluster, with a scheduler), every
//! REST answer must be `200` with a JSON list. More than 1% failed requests in
//! any phase, or the manager exiting, fails the run.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use darter_proto::manager::v1 as pb;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use pb::manager_client::ManagerClient;
use reqwest::header::AUTHORIZATION;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection as _};
use testkit::dfdaemon::{sibling_binary, tail};
use testkit::eventually::wait_until;
use testkit::process::ChildGuard;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use crate::latency::{Samples, Summary};

/// How often each benchmark scheduler sends a keepalive (the manager's
/// default grace is 15 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);
/// More failed requests than this fraction fails the run.
const MAX_ERROR_RATIO: f64 = 0.01;
/// How long the manager may take to start (open the database, migrate).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a phase checks that the manager is still running.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// PostgreSQL server when `--database postgres` and `DARTER_TEST_POSTGRES_URL` is unset.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// MySQL/MariaDB server when `--database mysql` and `DARTER_TEST_MYSQL_URL` is unset.
const DEFAULT_MYSQL: &str = "mysql://root@127.0.0.1:3306/test";
/// Most clusters: cluster i is scoped to `10.i.0.0/16`.
const MAX_CLUSTERS: u32 = 256;

/// `darter-bench manager` arguments.
#[derive(clap::Args, Debug)]
pub struct ManagerArgs {
    /// `sqlite` (a scratch file), `postgres` ($DARTER_TEST_POSTGRES_URL, else
    /// postgres://postgres@127.0.0.1:5432/test), `mysql` ($DARTER_TEST_MYSQL_URL,
    /// else mysql://root@127.0.0.1:3306/test), or a URL. On a PostgreSQL or
    /// MySQL server a fresh database `darter_bench_<random>` is created and
    /// dropped at the end; a sqlite:// URL is used as it is.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Measured time per phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before each phase's measured time, not measured.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Requests in flight (workers, each waiting for its answer before the next request).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// gRPC connections (HTTP/2) the workers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Clusters to create (cluster i scoped to 10.i.0.0/16), one scheduler each.
    #[arg(long, default_value_t = 50)]
    clusters: u32,
    /// Distinct peers asking ListSchedulers in turn (cached after the first
    /// pass); 0: a new peer every request (then there is no separate uncached phase).
    #[arg(long, default_value_t = 1000)]
    peers: u32,
    /// Skip the phase where every ListSchedulers comes from a new peer.
    #[arg(long)]
    no_uncached: bool,
    /// Redis URL for the manager's ListSchedulers cache (its --redis-url)
    /// [default: the manager's in-process cache].
    #[arg(long)]
    redis: Option<String>,
    /// manager binary [default: next to darter-bench].
    #[arg(long)]
    manager: Option<PathBuf>,
    /// A request not answered within this counts as failed.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs the benchmark: prints the table, writes the JSON, and fails when a
/// phase had more than 1% failed requests or none that succeeded.
pub async fn run(args: ManagerArgs) -> anyhow::Result<()> {
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!((1..=MAX_CLUSTERS).contains(&args.clusters), "--clusters must be 1 to {MAX_CLUSTERS}");
    ensure!(!args.duration.is_zero(), "--duration must be greater than 0");
    darter_common::install_crypto_provider();
    let load_before = load_average();
    let manager_bin = match &args.manager {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => bail!("manager not found at {}", path.display()),
        None => sibling_binary("manager")?,
    };
    let scratch = tempfile::Builder::new().prefix("darter-bench-manager-").tempdir().context("create scratch dir")?;
    let db = Database::create(&args.database, scratch.path()).await?;
    eprintln!("database: {} ({})", db.backend.name(), db.describe());

    let outcome = tokio::select! {
        outcome = bench(&args, &manager_bin, &db, scratch.path(), load_before) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // The manager was killed when `bench` returned (or was dropped).
    if let Err(e) = db.drop_database().await {
        eprintln!("warning: {e:#}");
    }
    let report = outcome?;

    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        println!("json: {}", path.display());
    }
    report.check()
}

/// Everything between a fresh database and the figures; the manager is
/// killed when this returns.
async fn bench(
    args: &ManagerArgs,
    bin: &Path,
    db: &Database,
    scratch: &Path,
    load_before: Option<f64>,
) -> anyhow::Result<Report> {
    let password = format!("{:032x}", rand::random::<u128>());
    eprintln!("starting {}", bin.display());
    let manager = ManagerProcess::start(bin, &db.url, args.redis.as_deref(), &password, scratch.join("manager.log"))?;
    manager.wait_ready().await?;
    let setup = Setup::new(&manager, &password, args.clusters).await.map_err(|e| manager.explain(e))?;

    let channels = connect_all(manager.grpc, args.connections).await?;
    let load = Load { args, manager: &manager, setup: &setup };
    let mut rows = Vec::new();
    if args.peers > 0 {
        let peers: Arc<Vec<Peer>> =
            Arc::new((0..u64::from(args.peers)).map(|i| Peer::nth("peer", i, &setup.cluster_ids)).collect());
        let endpoint = format!("gRPC ListSchedulers, {} peers in turn", args.peers);
        let row = load
            .phase(
                endpoint,
                true,
                list_schedulers(&channels, move |n| peers[(n % peers.len() as u64) as usize].clone()),
            )
            .await?;
        rows.push(row);
    }
    rows.push(load.phase("REST GET /api/v1/clusters".into(), false, get_clusters(&manager, &setup.token)?).await?);
    if args.peers == 0 || !args.no_uncached {
        let ids = setup.cluster_ids.clone();
        let endpoint = "gRPC ListSchedulers, a new peer every request".to_owned();
        let row =
            load.phase(endpoint, true, list_schedulers(&channels, move |n| Peer::nth("new-peer", n, &ids))).await?;
        rows.push(row);
    }
    manager.check_alive()?;

    Ok(Report {
        benchmark: "manager",
        backend: db.backend.name(),
        database: db.describe(),
        cache: if args.redis.is_some() { "redis" } else { "in-process" },
        clusters: args.clusters,
        peers: args.peers,
        concurrency: args.concurrency,
        grpc_connections: args.connections,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        machine: Machine::probe(db.backend, load_before),
        rows,
    })
}

// ---------------------------------------------------------------------------
// The database

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }
}

/// The database the manager runs on, and (for a server) how to drop it.
struct Database {
    backend: Backend,
    /// What the manager is given.
    url: String,
    /// The server's admin URL and the database created on it.
    created: Option<(String, String)>,
    /// The server's version, when known.
    version: Option<String>,
}

impl Database {
    /// Resolves `--database`; on a server, creates a fresh database.
    async fn create(spec: &str, scratch: &Path) -> anyhow::Result<Self> {
        let env_or = |var: &str, default: &str| {
            std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
        };
        let (backend, admin_url) = match spec {
            "sqlite" => return Ok(Self::sqlite(format!("sqlite://{}?mode=rwc", scratch.join("m.db").display())).await),
            url if url.starts_with("sqlite:") => return Ok(Self::sqlite(url.to_owned()).await),
            "postgres" | "postgresql" => (Backend::Postgres, env_or("DARTER_TEST_POSTGRES_URL", DEFAULT_POSTGRES)),
            "mysql" | "mariadb" => (Backend::MySql, env_or("DARTER_TEST_MYSQL_URL", DEFAULT_MYSQL)),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                (Backend::Postgres, url.to_owned())
            }
            url if url.starts_with("mysql://") || url.starts_with("mariadb://") => {
                (Backend::MySql, url.replacen("mariadb:", "mysql:", 1))
            }
            other => bail!(
                "--database {other:?}: expected sqlite, postgres, mysql or a sqlite://, postgres:// or mysql:// URL"
            ),
        };
        let name = format!("darter_bench_{:016x}", rand::random::<u64>());
        let version = admin(backend, &admin_url, format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("create database {name} on {}", redact(&admin_url)))?;
        let url = with_database(&admin_url, &name);
        Ok(Database { backend, url, created: Some((admin_url, name)), version: Some(version) })
    }

    /// A SQLite database, with the version of the SQLite library linked into
    /// darter-bench and the manager alike (sqlx's), when it can be read.
    async fn sqlite(url: String) -> Self {
        let version = async {
            let mut conn = sqlx::SqliteConnection::connect(&url).await?;
            let version: String =
                sqlx::query_scalar("SELECT 'SQLite ' || sqlite_version()").fetch_one(&mut conn).await?;
            conn.close().await?;
            anyhow::Ok(version)
        };
        Database { backend: Backend::Sqlite, version: version.await.ok(), url, created: None }
    }

    /// The database for people: server version and URL without password.
    fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{v}, {}", redact(&self.url)),
            None => redact(&self.url),
        }
    }

    /// Drops a database created on a server (a SQLite file goes with the
    /// scratch directory).
    async fn drop_database(&self) -> anyhow::Result<()> {
        let Some((admin_url, name)) = &self.created else { return Ok(()) };
        let sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS {name}"),
        };
        admin(self.backend, admin_url, sql).await.with_context(|| format!("drop database {name}"))?;
        eprintln!("dropped database {name}");
        Ok(())
    }
}

/// Runs `sql` on the server at `url` over one connection; returns the
/// server's version.
async fn admin(backend: Backend, url: &str, sql: String) -> anyhow::Result<String> {
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            let version: String = sqlx::query_scalar("SELECT 'PostgreSQL ' || current_setting('server_version')")
                .fetch_one(&mut conn)
                .await?;
            conn.close().await?;
            Ok(version)
        }
        Backend::MySql => {
            let mut conn = sqlx::MySqlConnection::connect(url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&mut conn).await?;
            conn.close().await?;
            Ok(if version.contains("MariaDB") { version } else { format!("MySQL {version}") })
        }
        Backend::Sqlite => bail!("no admin connection for SQLite"),
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

/// `url` with the password of its user info (if any) replaced by `***`.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.to_owned() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// The manager process

/// The real manager on free loopback ports, killed (SIGKILL) when dropped.
struct ManagerProcess {
    child: Mutex<ChildGuard>,
    grpc: SocketAddr,
    rest: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl ManagerProcess {
    fn start(
        bin: &Path,
        database_url: &str,
        redis: Option<&str>,
        root_password: &str,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let addr = testkit::net::refused_addr;
        let (grpc, rest, metrics) = (addr(), addr(), addr());
        let out = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--grpc-addr", &grpc.to_string(), "--rest-addr", &rest.to_string()])
            .args(["--metrics-addr", &metrics.to_string(), "--database-url", database_url])
            .env("MANAGER__AUTH__ROOT_PASSWORD", root_password)
            .env("MANAGER__LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let Some(url) = redis {
            cmd.args(["--redis-url", url]);
        }
        let child = cmd.spawn().with_context(|| format!("start {}", bin.display()))?;
        Ok(Self { child: Mutex::new(ChildGuard::new(child)), grpc, rest, metrics, log })
    }

    /// Waits until `/healthz` answers 200 (database open, every listener up).
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let ready =
            wait_until("the manager's /healthz", START_TIMEOUT, || async { self.exit_status().is_some() || self.healthy() })
                .await;
        ready.map_err(|e| self.explain(e))?;
        self.check_alive()
    }

    fn healthy(&self) -> bool {
        let check = || -> std::io::Result<bool> {
            let mut s = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: manager\r\nConnection: close\r\n\r\n")?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head.ends_with(b" 200"))
        };
        check().unwrap_or(false)
    }

    /// The exit status once the manager has exited.
    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.0.try_wait().ok().flatten()
    }

    /// CPU seconds (user + system, all threads) the manager has used, from
    /// /proc/<pid>/stat (in USER_HZ = 100 ticks per second on Linux).
    fn cpu_seconds(&self) -> Option<f64> {
        let pid = self.child.lock().unwrap_or_else(|e| e.into_inner()).id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// Fails (with the end of its log) when the manager is no longer running.
    fn check_alive(&self) -> anyhow::Result<()> {
        match self.exit_status() {
            Some(status) => Err(self.explain(anyhow::anyhow!("the manager exited ({status})"))),
            None => Ok(()),
        }
    }

    /// `e` with the end of the manager's log.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        anyhow::anyhow!("{e:#}\n--- {} (last 20 lines) ---\n{}", self.log.display(), tail(&self.log, 20))
    }

    /// `manager_list_schedulers_total` answered from the cache and from the
    /// database so far; `None` when the metrics cannot be read.
    async fn answer_sources(&self, http: &reqwest::Client) -> Option<(f64, f64)> {
        let text = http.get(format!("http://{}/metrics", self.metrics)).send().await.ok()?.text().await.ok()?;
        let value = |source: &str| {
            let prefix = format!("manager_list_schedulers_total{{result=\"{source}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse::<f64>().ok()).unwrap_or(0.0)
        };
        text.contains("manager_list_schedulers_total").then(|| (value("cache"), value("database")))
    }
}

// ---------------------------------------------------------------------------
// Setup: token, clusters, schedulers

/// What the phases need from the setup.
struct Setup {
    /// REST client for setup calls and metrics.
    http: reqwest::Client,
    /// The personal access token (`dpat_...`).
    token: String,
    /// Cluster i's ID (scoped to `10.i.0.0/16`).
    cluster_ids: Arc<Vec<u64>>,
    /// One keepalive stream per scheduler; any that ends is a failure.
    keepalives: Mutex<JoinSet<String>>,
}

impl Setup {
    async fn new(manager: &ManagerProcess, password: &str, clusters: u32) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?;
        let rest = Rest { http: http.clone(), base: format!("http://{}/api/v1", manager.rest) };
        let signed_in = rest.call("POST", "/users/signin", None, json!({"name": "root", "password": password})).await?;
        let jwt = signed_in["token"].as_str().context("the sign-in answer has no token")?;
        let pat = rest.call("POST", "/personal-access-tokens", Some(jwt), json!({"name": "darter-bench"})).await?;
        let token = pat["token"].as_str().filter(|t| t.starts_with("dpat_")).context("no dpat_ token")?.to_owned();

        eprintln!("creating {clusters} clusters with one scheduler each");
        let mut cluster_ids = Vec::new();
        for i in 0..clusters {
            let body = json!({"name": format!("bench-{i}"), "scopes": {"cidrs": [format!("10.{i}.0.0/16")]}});
            let cluster = rest.call("POST", "/clusters", Some(&token), body).await?;
            cluster_ids.push(cluster["id"].as_u64().context("the created cluster has no id")?);
        }

        let channel = connect(manager.grpc).await?;
        let mut keepalives = JoinSet::new();
        for (i, &cluster_id) in cluster_ids.iter().enumerate() {
            let (hostname, ip) = (format!("bench-scheduler-{i}"), format!("127.1.{}.{}", i / 200, i % 200 + 1));
            let register = pb::RegisterSchedulerRequest {
                hostname: hostname.clone(),
                ip: ip.clone(),
                port: 8002,
                cluster_id,
                version: "darter-bench".into(),
                ..Default::default()
            };
            let member = ManagerClient::new(channel.clone())
                .register_scheduler(register)
                .await
                .with_context(|| format!("register scheduler {hostname}"))?
                .into_inner();
            let keepalive =
                pb::KeepAliveRequest { kind: pb::MemberKind::Scheduler as i32, member_id: member.id, hostname, ip };
            keepalives.spawn(keep_alive(channel.clone(), keepalive));
        }

        let clusters_listed = rest.call("GET", "/clusters", Some(&token), Value::Null).await?;
        let listed = clusters_listed.as_array().map_or(0, Vec::len);
        ensure!(
            listed == cluster_ids.len() + 1,
            "GET /clusters lists {listed} clusters, expected {clusters} + default"
        );
        let active = rest.call("GET", "/schedulers?state=active", Some(&token), Value::Null).await?;
        let active = active.as_array().map_or(0, Vec::len);
        ensure!(active == cluster_ids.len(), "{active} active schedulers, expected {clusters}");

        Ok(Setup { http, token, cluster_ids: Arc::new(cluster_ids), keepalives: Mutex::new(keepalives) })
    }

    /// Fails when a keepalive stream has ended (its scheduler would go inactive).
    fn check_keepalives(&self) -> anyhow::Result<()> {
        let mut keepalives = self.keepalives.lock().unwrap_or_else(|e| e.into_inner());
        match keepalives.try_join_next() {
            Some(Ok(why)) => bail!("{why}"),
            Some(Err(e)) => bail!("a keepalive task failed: {e}"),
            None => Ok(()),
        }
    }
}

/// Holds one scheduler's keepalive stream open, one message every
/// [`KEEPALIVE_EVERY`]; returns why it ended.
async fn keep_alive(channel: Channel, message: pb::KeepAliveRequest) -> String {
    let id = message.member_id;
    let stream = futures::stream::unfold(true, move |first| {
        let message = message.clone();
        async move {
            if !first {
                tokio::time::sleep(KEEPALIVE_EVERY).await;
            }
            Some((message, false))
        }
    });
    match ManagerClient::new(channel).keep_alive(stream).await {
        Ok(_) => format!("the manager closed the keepalive stream of scheduler {id}"),
        Err(s) => format!("keepalive stream of scheduler {id} failed: {:?}: {}", s.code(), s.message()),
    }
}

/// JSON calls for the setup.
struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    /// `method path` with `body` (unless null) and a bearer token; the
    /// answer's JSON, or an error with the status and body.
    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if !body.is_null() {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        let resp = req.send().await.with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await.with_context(|| format!("{method} {path}: read the answer"))?;
        ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connect to the manager's gRPC at {addr}"))
}

/// `n` separate connections (each a tonic channel over one HTTP/2 connection).
async fn connect_all(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(connect(addr).await?);
    }
    Ok(channels)
}

// ---------------------------------------------------------------------------
// Load

/// A peer asking `ListSchedulers`, and the cluster it must be given.
#[derive(Clone, Debug)]
struct Peer {
    hostname: String,
    ip: String,
    cluster_id: u64,
}

impl Peer {
    /// Peer `n`: in cluster `n % clusters`, at the `n / clusters`-th address
    /// of its `/16` (past 65,534 the addresses repeat; the host name stays unique).
    fn nth(prefix: &str, n: u64, cluster_ids: &[u64]) -> Peer {
        let clusters = cluster_ids.len() as u64;
        let cluster = n % clusters;
        let host = (n / clusters) % 65_534 + 1;
        Peer {
            hostname: format!("{prefix}-{n}"),
            ip: format!("10.{cluster}.{}.{}", host >> 8, host & 0xff),
            cluster_id: cluster_ids[cluster as usize],
        }
    }
}

/// One request of a phase: worker index and the phase's request number in,
/// `Err(why)` for a failure. (One boxed future per request: an allocation
/// is nothing next to a request over loopback.)
type Request = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `ListSchedulers` for peer `peer(n)` on the worker's connection, checked.
fn list_schedulers<P>(channels: &[Channel], peer: P) -> Request
where
    P: Fn(u64) -> Peer + Send + Sync + 'static,
{
    let clients: Vec<ManagerClient<Channel>> = channels.iter().cloned().map(ManagerClient::new).collect();
    Arc::new(move |worker: usize, n: u64| {
        let mut client = clients[worker % clients.len()].clone();
        let peer = peer(n);
        async move {
            let ask = pb::ListSchedulersRequest {
                hostname: peer.hostname.clone(),
                ip: peer.ip.clone(),
                version: "darter-bench".into(),
                ..Default::default()
            };
            let answer = client
                .list_schedulers(ask)
                .await
                .map_err(|s| format!("ListSchedulers: {:?}: {}", s.code(), s.message()))?
                .into_inner();
            if answer.cluster_id != peer.cluster_id || answer.schedulers.is_empty() {
                return Err(format!(
                    "ListSchedulers for {}: cluster {} with {} schedulers, expected cluster {} with one",
                    peer.ip,
                    answer.cluster_id,
                    answer.schedulers.len(),
                    peer.cluster_id
                ));
            }
            Ok(())
        }
        .boxed()
    })
}

/// `GET /api/v1/clusters` with the token over keep-alive connections, whole
/// body read, `200` and a JSON list required.
fn get_clusters(manager: &ManagerProcess, token: &str) -> anyhow::Result<Request> {
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    let url: Arc<str> = format!("http://{}/api/v1/clusters", manager.rest).into();
    let auth: Arc<str> = format!("Bearer {token}").into();
    Ok(Arc::new(move |_worker: usize, _n: u64| {
        let (http, url, auth) = (http.clone(), url.clone(), auth.clone());
        async move {
            let resp = http
                .get(&*url)
                .header(AUTHORIZATION, &*auth)
                .send()
                .await
                .map_err(|e| format!("GET /api/v1/clusters: {e}"))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| format!("GET /api/v1/clusters: read the body: {e}"))?;
            if status != reqwest::StatusCode::OK || !body.starts_with(b"[") {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                return Err(format!("GET /api/v1/clusters: {status}: {text}"));
            }
            Ok(())
        }
        .boxed()
    }))
}

/// Runs phases against one manager.
struct Load<'a> {
    args: &'a ManagerArgs,
    manager: &'a ManagerProcess,
    setup: &'a Setup,
}

/// The manager's counters at one instant.
struct Snapshot {
    at: Instant,
    /// CPU seconds the manager has used (all its threads).
    cpu_s: Option<f64>,
    /// ListSchedulers answered from the cache and from the database.
    sources: Option<(f64, f64)>,
}

impl Load<'_> {
    async fn snapshot(&self, with_sources: bool) -> Snapshot {
        let (at, cpu_s) = (Instant::now(), self.manager.cpu_seconds());
        let sources = if with_sources { self.manager.answer_sources(&self.setup.http).await } else { None };
        Snapshot { at, cpu_s, sources }
    }

    /// Runs `request` from `--concurrency` workers for warm-up plus duration;
    /// `sources`: also report the share of ListSchedulers answered from the cache.
    async fn phase(&self, endpoint: String, sources: bool, request: Request) -> anyhow::Result<Row> {
        let (args, manager) = (self.args, self.manager);
        eprintln!("{endpoint}: {:?} warm-up, {:?} measured", args.warmup, args.duration);
        let measure_from = Instant::now() + args.warmup;
        let until = measure_from + args.duration;
        let counter = Arc::new(AtomicU64::new(0));
        let mut workers = JoinSet::new();
        for worker in 0..args.concurrency {
            let (request, counter, timeout) = (request.clone(), counter.clone(), args.timeout);
            workers.spawn(async move {
                let mut samples = Samples::default();
                let mut last = measure_from;
                loop {
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let result = tokio::time::timeout(timeout, request(worker, n))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
                    let done = Instant::now();
                    if sent >= measure_from {
                        last = last.max(done);
                        match result {
                            Ok(()) => samples.ok(done - sent),
                            Err(why) => samples.error(why),
                        }
                    }
                }
                (samples, last)
            });
        }

        let mut samples = Samples::default();
        let mut end = until;
        let mut before = None;
        let measuring = tokio::time::sleep_until(measure_from.into());
        tokio::pin!(measuring);
        let mut watch = tokio::time::interval(WATCH_EVERY);
        loop {
            tokio::select! {
                joined = workers.join_next() => match joined {
                    Some(Ok((s, last))) => {
                        samples.merge(s);
                        end = end.max(last);
                    }
                    Some(Err(e)) => bail!("{endpoint}: a worker failed: {e}"),
                    None => break,
                },
                () = &mut measuring, if before.is_none() => before = Some(self.snapshot(sources).await),
                _ = watch.tick() => {
                    manager.check_alive()?;
                    self.setup.check_keepalives()?;
                }
            }
        }
        manager.check_alive()?;
        self.setup.check_keepalives()?;
        let after = self.snapshot(sources).await;
        let summary = Summary::new(samples, end - measure_from);
        let (mut cache_hit_ratio, mut manager_cpu_cores, mut manager_cpu_us_per_request) = (None, None, None);
        if let Some(before) = before {
            if let (Some((cache0, db0)), Some((cache1, db1))) = (before.sources, after.sources) {
                let (hits, misses) = (cache1 - cache0, db1 - db0);
                cache_hit_ratio = (hits + misses > 0.0).then(|| hits / (hits + misses));
            }
            if let (Some(cpu0), Some(cpu1)) = (before.cpu_s, after.cpu_s) {
                let (cpu, window) = (cpu1 - cpu0, (after.at - before.at).as_secs_f64());
                let answered = (summary.requests + summary.errors) as f64;
                manager_cpu_cores = (window > 0.0).then(|| cpu / window);
                manager_cpu_us_per_request = (answered > 0.0).then(|| cpu * 1e6 / answered);
            }
        }
        eprintln!(
            "  {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            summary.requests_per_s, summary.p50_ms, summary.p99_ms, summary.errors
        );
        Ok(Row {
            endpoint,
            concurrency: args.concurrency,
            cache_hit_ratio,
            manager_cpu_cores,
            manager_cpu_us_per_request,
            summary,
        })
    }
}

// ---------------------------------------------------------------------------
// Report

/// The machine the figures were measured on.
#[derive(Debug, Serialize)]
struct Machine {
    /// Cores this process may use.
    cores: usize,
    /// CPU model, from /proc/cpuinfo.
    cpu: Option<String>,
    /// One-minute load average before the run (others using the cores).
    load_before: Option<f64>,
    /// Who else used those cores.
    note: &'static str,
}

/// The one-minute load average, from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

impl Machine {
    fn probe(backend: Backend, load_before: Option<f64>) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
        });
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            load_before,
            note: match backend {
                Backend::Sqlite => "client (darter-bench) and server (manager, SQLite in-process) share these cores",
                Backend::Postgres => "client (darter-bench), manager and PostgreSQL server share these cores",
                Backend::MySql => "client (darter-bench), manager and MySQL server share these cores",
            },
        }
    }
}

/// One phase's row.
#[derive(Debug, Serialize)]
struct Row {
    endpoint: String,
    concurrency: usize,
    /// Share of the phase's ListSchedulers answered from the manager's cache
    /// (from its `manager_list_schedulers_total`); `None` for REST.
    cache_hit_ratio: Option<f64>,
    /// CPU the manager process used in the measured window, in cores
    /// (a PostgreSQL or MySQL server's CPU is not included).
    manager_cpu_cores: Option<f64>,
    /// The manager's CPU time per request, in microseconds.
    manager_cpu_us_per_request: Option<f64>,
    #[serde(flatten)]
    summary: Summary,
}

/// The whole run, as printed and written to JSON.
#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    backend: &'static str,
    database: String,
    cache: &'static str,
    clusters: u32,
    peers: u32,
    concurrency: usize,
    grpc_connections: usize,
    warmup_s: f64,
    duration_s: f64,
    machine: Machine,
    rows: Vec<Row>,
}

impl Report {
    fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\nmanager on {} ({} ListSchedulers cache), {} clusters with one scheduler each (and the default); \
             {} requests in flight, {} gRPC connections; {} s measured after {} s warm-up per row",
            self.database,
            self.cache,
            self.clusters,
            self.concurrency,
            self.grpc_connections,
            self.duration_s,
            self.warmup_s
        );
        let cpu = m.cpu.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        let load = m.load_before.map(|l| format!("; load average {l:.2} before the run")).unwrap_or_default();
        let _ = writeln!(out, "machine: {} cores{cpu}; {}{load}\n", m.cores, m.note);
        let _ = writeln!(
            out,
            "| backend | endpoint | concurrency | requests/s | p50 | p99 | p99.9 | max | errors | cache hits | manager CPU |"
        );
        let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in &self.rows {
            let s = &r.summary;
            let hits = r.cache_hit_ratio.map_or_else(|| "-".to_owned(), |h| format!("{:.0}%", h * 100.0));
            let errors = match s.errors {
                0 => "0".to_owned(),
                n => format!("{n} ({:.2}%)", s.error_ratio() * 100.0),
            };
            let cpu = match (r.manager_cpu_cores, r.manager_cpu_us_per_request) {
                (Some(cores), Some(us)) => format!("{cores:.2} cores, {us:.0} µs/request"),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {errors} | {hits} | {cpu} |",
                self.backend,
                r.endpoint,
                r.concurrency,
                s.requests_per_s,
                ms(s.p50_ms),
                ms(s.p99_ms),
                ms(s.p999_ms),
                ms(s.max_ms)
            );
        }
        out
    }

    /// Fails when a phase failed more than [`MAX_ERROR_RATIO`] of its
    /// requests or had no successful one.
    fn check(&self) -> anyhow::Result<()> {
        for r in &self.rows {
            let s = &r.summary;
            let why = s.first_error.as_deref().unwrap_or("none");
            ensure!(s.requests > 0, "{}: no successful request (first error: {why})", r.endpoint);
            ensure!(
                s.error_ratio() <= MAX_ERROR_RATIO,
                "{}: {} of {} requests failed, more than {}% (first error: {why})",
                r.endpoint,
                s.errors,
                s.requests + s.errors,
                MAX_ERROR_RATIO * 100.0
            );
        }
        Ok(())
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.1} ms") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "darter_bench_1"),
            "postgres://postgres@127.0.0.1:5432/darter_bench_1"
        );
        assert_eq!(
            with_database("mysql://root@h:3306?ssl-mode=disabled", "x"),
            "mysql://root@h:3306/x?ssl-mode=disabled"
        );
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/a@b/m.db?mode=rwc"), "sqlite:///tmp/a@b/m.db?mode=rwc");
    }

    #[test]
    fn peers_spread_over_the_clusters() {
        let ids = [11, 12, 13];
        let p = Peer::nth("peer", 4, &ids);
        assert_eq!((p.hostname.as_str(), p.ip.as_str(), p.cluster_id), ("peer-4", "10.1.0.2", 12));
        let p = Peer::nth("peer", 3 * 300, &ids);
        assert_eq!((p.ip.as_str(), p.cluster_id), ("10.0.1.45", 11));
    }
}
