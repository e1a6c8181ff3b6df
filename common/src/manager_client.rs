//! Talking to the manager (ARCHITECTURE.md section 5), for the scheduler and
//! the dfdaemon:
//!
//! - [`Managers`]: one lazily connected channel per manager address
//!   (`host:port`); a call that cannot reach one manager tries the next (the
//!   replicas share one database, so any of them answers the same);
//! - [`Managers::list_schedulers`]: which cluster serves a host, with its
//!   active schedulers and seed peers; [`is_no_cluster`] tells "no cluster
//!   serves you" apart from "the manager is unreachable";
//! - [`Membership`]: a scheduler or seed peer being a member: register, then
//!   hold one `KeepAlive` stream open with a keepalive every
//!   `keepalive_interval`; on any error reconnect with capped backoff and
//!   register again (registration is idempotent). Cancelling its token closes
//!   the stream, which is the goodbye: the manager marks the member inactive
//!   at once instead of after its grace period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use darter_proto::manager::v1 as pb;
use darter_proto::manager::v1::manager_client::ManagerClient as Grpc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Members send a keepalive this often unless configured otherwise (the
/// manager's default grace period is three of them).
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// A manager that does not accept a connection this fast is skipped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one unary call (register, `ListSchedulers`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the manager connection, so a manager host that vanished
/// breaks the keepalive stream (and the member reconnects elsewhere).
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(10);
/// How long the goodbye (closing the stream) may take at shutdown.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// First pause before reconnecting; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest pause between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Checks a manager address (`host:port`, no scheme) and builds its endpoint.
/// The error says what is wrong, for a config message.
pub fn endpoint(addr: &str) -> Result<Endpoint, String> {
    if addr.contains("://") {
        return Err(format!("{addr:?}: give host:port without a scheme"));
    }
    let port = addr.rsplit_once(':').map(|(host, port)| (host.is_empty(), port.parse::<u16>()));
    match port {
        Some((false, Ok(p))) if p != 0 => {}
        _ => return Err(format!("{addr:?} is not host:port")),
    }
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| format!("{addr:?}: {e}"))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(HTTP2_KEEPALIVE)
        .keep_alive_timeout(HTTP2_KEEPALIVE)
        .keep_alive_while_idle(true))
}

/// The gRPC address of a listed member, if its IP and port are usable.
pub fn member_addr(m: &pb::Member) -> Option<std::net::SocketAddr> {
    let ip = m.ip.parse::<std::net::IpAddr>().ok()?;
    let port = u16::try_from(m.port).ok().filter(|p| *p != 0)?;
    Some(std::net::SocketAddr::new(ip, port))
}

/// Whether `status` is the manager's "no cluster with an active scheduler
/// matches this host" answer (as opposed to a failure to ask).
pub fn is_no_cluster(status: &Status) -> bool {
    status.code() == Code::NotFound && crate::status::reason(status) == Some(crate::status::Reason::NoCluster)
}

/// Whether the manager itself answered (so another replica would answer the
/// same), rather than the call failing on the way.
fn is_answer(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::NotFound | Code::InvalidArgument | Code::PermissionDenied | Code::Unauthenticated | Code::AlreadyExists
    )
}

/// The managers of a deployment; cheap to clone.
#[derive(Debug, Clone)]
pub struct Managers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channels: Vec<(String, Channel)>,
    /// Index of the manager to try first (the last one that answered).
    current: AtomicUsize,
}

/// A `ListSchedulers` answer and the manager that gave it.
#[derive(Debug, Clone)]
pub struct ListAnswer {
    /// Address of the manager that answered.
    pub manager: String,
    /// The answer.
    pub response: pb::ListSchedulersResponse,
}

impl Managers {
    /// Channels to `addrs` (`host:port` each) over `transport` (a manager
    /// must present the manager's certificate); nothing connects until the
    /// first call. Fails on an empty list or a bad address.
    pub fn new(addrs: &[String], transport: &crate::tls::Transport) -> Result<Self, String> {
        if addrs.is_empty() {
            return Err("no manager address".into());
        }
        let channels = addrs
            .iter()
            .map(|a| endpoint(a).map(|e| (a.clone(), transport.channel(e, crate::tls::Expect::manager()))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { inner: Arc::new(Inner { channels, current: AtomicUsize::new(0) }) })
    }

    /// The configured addresses.
    pub fn addrs(&self) -> impl Iterator<Item = &str> {
        self.inner.channels.iter().map(|(a, _)| a.as_str())
    }

    /// The manager to use now: its index (for [`Self::rotate`]), address and client.
    fn current(&self) -> (usize, String, Grpc<Channel>) {
        let index = self.inner.current.load(Ordering::Relaxed) % self.inner.channels.len();
        let (addr, channel) = &self.inner.channels[index];
        (index, addr.clone(), Grpc::new(channel.clone()))
    }

    /// Moves on to the next manager after `failed` could not be reached.
    fn rotate(&self, failed: usize) {
        let n = self.inner.channels.len();
        let _ = self.inner.current.compare_exchange(failed, (failed + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Asks the managers, starting with the last one that answered, which
    /// cluster serves the host described by `request`. A manager's own answer
    /// (including NOT_FOUND `no_cluster`, see [`is_no_cluster`]) is returned
    /// at once; when none can be reached, the last failure is.
    pub async fn list_schedulers(&self, request: pb::ListSchedulersRequest) -> Result<ListAnswer, Status> {
        let mut last = Status::unavailable("no manager tried");
        for _ in 0..self.inner.channels.len() {
            let (index, addr, mut client) = self.current();
            let call = client.list_schedulers(request.clone());
            let status = match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
                Ok(Ok(r)) => return Ok(ListAnswer { manager: addr, response: r.into_inner() }),
                Ok(Err(status)) if is_answer(&status) => return Err(status),
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!("no answer within {REQUEST_TIMEOUT:?}")),
            };
            last = Status::new(status.code(), format!("manager {addr}: {}", status.message()));
            self.rotate(index);
        }
        Err(last)
    }
}

/// What a member registers as.
#[derive(Debug, Clone)]
pub enum Registration {
    /// A scheduler.
    Scheduler(pb::RegisterSchedulerRequest),
    /// A seed peer.
    SeedPeer(pb::RegisterSeedPeerRequest),
}

impl Registration {
    fn label(&self) -> &'static str {
        match self {
            Self::Scheduler(_) => "scheduler",
            Self::SeedPeer(_) => "seed peer",
        }
    }

    async fn register(&self, client: &mut Grpc<Channel>) -> Result<pb::Member, Status> {
        let call = async {
            match self {
                Self::Scheduler(r) => client.register_scheduler(r.clone()).await,
                Self::SeedPeer(r) => client.register_seed_peer(r.clone()).await,
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!("registration not answered within {REQUEST_TIMEOUT:?}"))),
        }
    }
}

/// A scheduler's or seed peer's membership; see the module doc.
#[derive(Debug)]
pub struct Membership {
    managers: Managers,
    registration: Registration,
    keepalive_interval: Duration,
    member: watch::Sender<Option<pb::Member>>,
}

impl Membership {
    /// A membership that will register `registration` with `managers`.
    pub fn new(managers: Managers, registration: Registration, keepalive_interval: Duration) -> Self {
        Self { managers, registration, keepalive_interval, member: watch::Sender::new(None) }
    }

    /// The row the manager returned at the last registration (`None` before
    /// the first): its ID, and the cluster the member belongs to.
    pub fn subscribe(&self) -> watch::Receiver<Option<pb::Member>> {
        self.member.subscribe()
    }

    /// Registers and keeps alive until `shutdown`, then closes the stream.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let (index, addr, client) = self.managers.current();
            let error = match self.session(&addr, client, &shutdown).await {
                Ok(()) => return,
                Err(e) => e,
            };
            if shutdown.is_cancelled() {
                return;
            }
            // A session that lasted was healthy: start the backoff over.
            if started.elapsed() > self.keepalive_interval * 2 {
                backoff = BACKOFF_MIN;
            }
            self.managers.rotate(index);
            let pause = jittered(backoff);
            tracing::warn!(
                manager = %addr, error = %error, retry_in = ?pause,
                "{} membership with the manager lost", self.registration.label()
            );
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One registration and keepalive stream. `Ok` only after the goodbye at
    /// shutdown; the error says why the session ended otherwise.
    async fn session(&self, addr: &str, mut client: Grpc<Channel>, shutdown: &CancellationToken) -> Result<(), String> {
        let member = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = self.registration.register(&mut client) => r.map_err(|s| format!("register: {}", s.message()))?,
        };
        tracing::info!(
            manager = %addr, id = member.id, cluster_id = member.cluster_id, ip = %member.ip, port = member.port,
            "registered with the manager as a {}", self.registration.label()
        );
        let keepalive = pb::KeepAliveRequest {
            kind: member.kind,
            member_id: member.id,
            hostname: member.hostname.clone(),
            ip: member.ip.clone(),
        };
        self.member.send_replace(Some(member));
        // One message in flight is plenty: a keepalive that finds the buffer
        // full is skipped (the manager is not reading; its grace period decides).
        let (tx, rx) = mpsc::channel(1);
        tx.try_send(keepalive.clone()).map_err(|e| e.to_string())?;
        let mut call = std::pin::pin!(client.keep_alive(ReceiverStream::new(rx)));
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.keepalive_interval, self.keepalive_interval);
        // After a pause (a stopped process), send one keepalive, not a burst.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    drop(tx);
                    match tokio::time::timeout(GOODBYE_TIMEOUT, call).await {
                        Ok(Ok(_)) => tracing::info!(manager = %addr, "left the manager"),
                        Ok(Err(s)) => tracing::warn!(manager = %addr, error = %s.message(), "goodbye to the manager failed"),
                        Err(_) => tracing::warn!(manager = %addr, "the manager did not acknowledge the goodbye"),
                    }
                    return Ok(());
                }
                r = &mut call => return Err(match r {
                    Ok(_) => "the manager ended the keepalive stream".to_string(),
                    Err(s) => format!("keepalive: {}", s.message()),
                }),
                _ = tick.tick() => {
                    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(keepalive.clone()) {
                        tracing::debug!(manager = %addr, "previous keepalive still queued; skipping one");
                    }
                }
            }
        }
    }
}

/// `d` plus up to a quarter more, so members cut off together do not all
/// reconnect in the same instant.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        for good in ["127.0.0.1:65003", "manager.darter.svc:65003", "[::1]:65003"] {
            endpoint(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "127.0.0.1", "127.0.0.1:0", ":65003", "http://127.0.0.1:65003", "host:port"] {
            assert!(endpoint(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Managers::new(&[], &crate::tls::Transport::Plaintext).is_err());
    }

    #[test]
    fn no_cluster_is_told_apart_from_other_not_founds() {
        let no_cluster = crate::status::with_reason(Code::NotFound, "none".into(), crate::status::Reason::NoCluster);
        assert!(is_no_cluster(&no_cluster));
        assert!(!is_no_cluster(&Status::not_found("member 3 not found")));
        assert!(!is_no_cluster(&Status::unavailable("down")));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let d = Duration::from_secs(4);
        let j = jittered(d);
        assert!(j >= d && j <= d + Duration::from_secs(1), "{j:?}");
    }
}
