//! The load: closed-loop phases (`--concurrency` workers, each sending its
//! next request when the previous one is answered), the requests they send
//! (`ListSchedulers` checked against the peer's cluster, `GET
//! /api/v1/clusters` with a token), and the manager's CPU and cache counters
//! around the measured window.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use darter_proto::manager::v1 as pb;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use pb::manager_client::ManagerClient;
use reqwest::header::AUTHORIZATION;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::ManagerArgs;
use super::latency::{Samples, Summary};
use super::report::Row;
use super::server::Server;
use super::setup::Setup;

/// How often a phase checks that the manager is still running.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// A peer asking `ListSchedulers`, and the cluster it must be given.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    hostname: String,
    ip: String,
    cluster_id: u64,
}

impl Peer {
    /// Peer `n`: in cluster `n % clusters`, at the `n / clusters`-th address
    /// of its `/16` (past 65,534 the addresses repeat; the host name stays unique).
    pub(super) fn nth(prefix: &str, n: u64, cluster_ids: &[u64]) -> Peer {
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
pub(super) type Request = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `ListSchedulers` for peer `peer(n)` on the worker's connection, checked.
pub(super) fn list_schedulers<P>(channels: &[Channel], peer: P) -> Request
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
pub(super) fn get_clusters(manager: &Server, token: &str) -> anyhow::Result<Request> {
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
pub(super) struct Load<'a> {
    pub args: &'a ManagerArgs,
    pub manager: &'a Server,
    pub setup: &'a Setup,
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
        let sources = if with_sources { self.manager.answer_sources().await } else { None };
        Snapshot { at, cpu_s, sources }
    }

    /// Runs `request` from `--concurrency` workers for warm-up plus duration;
    /// `sources`: also report the share of ListSchedulers answered from the cache.
    pub(super) async fn phase(&self, endpoint: String, sources: bool, request: Request) -> anyhow::Result<Row> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_spread_over_the_clusters() {
        let ids = [11, 12, 13];
        let p = Peer::nth("peer", 4, &ids);
        assert_eq!((p.hostname.as_str(), p.ip.as_str(), p.cluster_id), ("peer-4", "10.1.0.2", 12));
        let p = Peer::nth("peer", 3 * 300, &ids);
        assert_eq!((p.ip.as_str(), p.cluster_id), ("10.0.1.45", 11));
    }
}
