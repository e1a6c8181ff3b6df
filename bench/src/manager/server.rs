//! The manager under load: `testkit::manager::ManagerProcess` on the
//! benchmark's database, watched while the phases run (is it still up, how
//! much CPU has it used, where did its `ListSchedulers` answers come from).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use testkit::manager::ManagerProcess;

/// The running manager, killed (SIGKILL) when dropped.
pub(super) struct Server {
    process: Mutex<ManagerProcess>,
    pub grpc: SocketAddr,
    pub rest: SocketAddr,
    metrics: SocketAddr,
    pid: u32,
}

impl Server {
    /// Starts `bin` on `database_url` with its log under `dir`; `redis`: the
    /// URL of the `ListSchedulers` cache (else the manager's in-process
    /// cache). Returns once it answers gRPC.
    pub(super) async fn start(
        bin: &Path,
        dir: &Path,
        database_url: &str,
        redis: Option<&str>,
        root_password: &str,
    ) -> anyhow::Result<Self> {
        // Plaintext: the benchmark plays hundreds of schedulers and peers from
        // one process, and mutual TLS would need a certificate per simulated
        // member. It measures the manager's answers on long-lived connections,
        // where the handshake is paid once.
        let mut env = vec![
            ("MANAGER__LOG__LEVEL".to_owned(), "warn".to_owned()),
            ("MANAGER__TLS__MODE".to_owned(), "plaintext".to_owned()),
        ];
        if let Some(url) = redis {
            env.push(("MANAGER__CACHE__REDIS_URL".to_owned(), url.to_owned()));
        }
        let process = ManagerProcess::start_with_database(bin, dir, database_url, &env, root_password).await?;
        let pid = process.pid().expect("a started manager has a pid");
        Ok(Server {
            grpc: process.grpc_addr,
            rest: process.rest_addr,
            metrics: process.metrics_addr,
            pid,
            process: Mutex::new(process),
        })
    }

    /// Fails (with the end of its log) when the manager is no longer running.
    pub(super) fn check_alive(&self) -> anyhow::Result<()> {
        let status = self.process.lock().unwrap_or_else(|e| e.into_inner()).exit_status();
        match status {
            Some(status) => Err(self.explain(anyhow::anyhow!("the manager exited ({status})"))),
            None => Ok(()),
        }
    }

    /// `e` with the end of the manager's log.
    pub(super) fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        anyhow::anyhow!("{e:#}\n--- {} (last 20 lines) ---\n{}", process.log_path.display(), process.log_tail(20))
    }

    /// CPU seconds (user + system, all threads) the manager has used, from
    /// /proc/<pid>/stat (in USER_HZ = 100 ticks per second on Linux).
    pub(super) fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
    }

    /// `manager_list_schedulers_total` answered from the cache and from the
    /// database so far; `None` when the metrics cannot be read.
    pub(super) async fn answer_sources(&self) -> Option<(f64, f64)> {
        let text = testkit::metrics::scrape(self.metrics).await.ok()?;
        let value = |source: &str| {
            testkit::metrics::value(&text, &format!("manager_list_schedulers_total{{result=\"{source}\"}}"))
                .unwrap_or(0.0)
        };
        text.contains("manager_list_schedulers_total").then(|| (value("cache"), value("database")))
    }
}
