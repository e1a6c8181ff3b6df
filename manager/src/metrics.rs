//! The manager's Prometheus metrics (served on `/metrics` of the metrics
//! address, every name prefixed `manager_`).

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every metric the manager exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry to serve.
    pub registry: Registry,
    list_schedulers: IntCounterVec,
    invalidations: IntCounterVec,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    sign_ins: IntCounterVec,
    rest_limited: IntCounterVec,
    members: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("manager".into()), None).expect("valid prefix");
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let list_schedulers = vec(
            "list_schedulers_total",
            "ListSchedulers answers by source (cache, database) or error reason",
            &["result"],
        );
        let invalidations = vec("cache_invalidations_total", "ListSchedulers cache invalidations by cause", &["cause"]);
        let http_requests =
            vec("http_requests_total", "REST requests by method, route and status", &["method", "route", "status"]);
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "REST request latency by method and route")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["method", "route"],
        )
        .expect("valid metric");
        let sign_ins = vec("sign_ins_total", "Sign-in attempts by result (ok, refused, throttled)", &["result"]);
        let rest_limited = vec(
            "rest_limited_total",
            "REST connections and requests refused by a limit of rest: (max_connections, \
             max_connections_per_address, request_timeout)",
            &["limit"],
        );
        let members = IntGaugeVec::new(
            Opts::new("members", "Registered schedulers and seed peers by kind and state"),
            &["kind", "state"],
        )
        .expect("valid metric");
        for c in [&list_schedulers, &invalidations, &http_requests, &sign_ins, &rest_limited] {
            registry.register(Box::new(c.clone())).expect("unique metric");
        }
        registry.register(Box::new(http_seconds.clone())).expect("unique metric");
        registry.register(Box::new(members.clone())).expect("unique metric");
        Self { registry, list_schedulers, invalidations, http_requests, http_seconds, sign_ins, rest_limited, members }
    }

    /// One `ListSchedulers` answer: `cache`, `database`, or an error reason.
    pub fn list_schedulers(&self, result: &str) {
        self.list_schedulers.with_label_values(&[result]).inc();
    }

    /// One cache invalidation.
    pub fn invalidated(&self, cause: &str) {
        self.invalidations.with_label_values(&[cause]).inc();
    }

    /// One REST request; `route` is the matched route pattern, never the raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http_requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.http_seconds.with_label_values(&[method, route]).observe(took.as_secs_f64());
    }

    /// One sign-in attempt: `ok`, `refused` (wrong name or password) or
    /// `throttled` (429).
    pub fn sign_in(&self, result: &str) {
        self.sign_ins.with_label_values(&[result]).inc();
    }

    /// One REST connection or request refused by `limit` (its config name).
    pub fn rest_limited(&self, limit: &str) {
        self.rest_limited.with_label_values(&[limit]).inc();
    }

    /// The current member count of one kind and state.
    pub fn set_members(&self, kind: &str, state: &str, n: usize) {
        self.members.with_label_values(&[kind, state]).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
