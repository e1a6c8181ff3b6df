//! What `darter-bench manager` prints and writes: the machine, one row per
//! phase, the Markdown table, and the check that fails a run with too many
//! failed requests.

use std::fmt::Write as _;

use anyhow::ensure;
use serde::Serialize;
use testkit::db::Backend;

use super::latency::Summary;

/// More failed requests than this fraction fails the run.
const MAX_ERROR_RATIO: f64 = 0.01;

/// The machine the figures were measured on.
#[derive(Debug, Serialize)]
pub(super) struct Machine {
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
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

impl Machine {
    pub(super) fn probe(backend: Backend, load_before: Option<f64>) -> Self {
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
pub(super) struct Row {
    pub endpoint: String,
    pub concurrency: usize,
    /// Share of the phase's ListSchedulers answered from the manager's cache
    /// (from its `manager_list_schedulers_total`); `None` for REST.
    pub cache_hit_ratio: Option<f64>,
    /// CPU the manager process used in the measured window, in cores
    /// (a PostgreSQL or MySQL server's CPU is not included).
    pub manager_cpu_cores: Option<f64>,
    /// The manager's CPU time per request, in microseconds.
    pub manager_cpu_us_per_request: Option<f64>,
    #[serde(flatten)]
    pub summary: Summary,
}

/// The whole run, as printed and written to JSON.
#[derive(Debug, Serialize)]
pub(super) struct Report {
    pub benchmark: &'static str,
    pub backend: &'static str,
    pub database: String,
    pub cache: &'static str,
    pub clusters: u32,
    pub peers: u32,
    pub concurrency: usize,
    pub grpc_connections: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub machine: Machine,
    pub rows: Vec<Row>,
}

impl Report {
    pub(super) fn markdown(&self) -> String {
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
    pub(super) fn check(&self) -> anyhow::Result<()> {
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
