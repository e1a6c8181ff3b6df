//! Before the phases: root sign-in and a personal access token over REST;
//! `--clusters` clusters (cluster i scoped to `10.i.0.0/16`), each with one
//! scheduler registered over gRPC and kept active by a keepalive stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use darter_proto::manager::v1 as pb;
use pb::manager_client::ManagerClient;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

use super::server::Server;

/// How often each benchmark scheduler sends a keepalive (the manager's
/// default grace is 15 s).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);

/// What the phases need from the setup.
pub(super) struct Setup {
    /// The personal access token (`dpat_...`).
    pub token: String,
    /// Cluster i's ID (scoped to `10.i.0.0/16`).
    pub cluster_ids: Arc<Vec<u64>>,
    /// One keepalive stream per scheduler; any that ends is a failure.
    keepalives: Mutex<JoinSet<String>>,
}

impl Setup {
    pub(super) async fn new(manager: &Server, password: &str, clusters: u32) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?;
        let rest = Rest { http, base: format!("http://{}/api/v1", manager.rest) };
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

        Ok(Setup { token, cluster_ids: Arc::new(cluster_ids), keepalives: Mutex::new(keepalives) })
    }

    /// Fails when a keepalive stream has ended (its scheduler would go inactive).
    pub(super) fn check_keepalives(&self) -> anyhow::Result<()> {
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
pub(super) async fn connect_all(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n {
        channels.push(connect(addr).await?);
    }
    Ok(channels)
}

// ---------------------------------------------------------------------------
