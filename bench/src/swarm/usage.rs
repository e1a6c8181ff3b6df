//! CPU time and memory of processes and of the machine, read from `/proc`:
//! what the benchmark reports per daemon (CPU seconds per GiB, peak and idle
//! RSS) and whether a run was CPU-bound.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_times(pid).map(|(user, system)| user + system)
}

/// User and system CPU seconds a process has used so far. System time on
/// veth links includes network stack work done on behalf of other
/// processes (a send runs the receiver's softirq on the same core).
pub fn cpu_times(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / TICKS_PER_SECOND, stime / TICKS_PER_SECOND))
}

/// Resident memory now and its peak so far, in bytes (`VmRSS`, `VmHWM`).
pub fn rss_bytes(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Busy, stolen and total jiffies of the whole machine (all cores), from
/// `/proc/stat`. Steal (time the hypervisor gave to other guests) counts
/// as busy: this machine could not use it.
fn machine_jiffies() -> Option<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    let v: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, v.get(7).copied().unwrap_or(0), total))
}

/// Machine CPU use between two points, as a share of all cores (0..1).
#[derive(Clone, Copy, Debug)]
pub struct MachineCpu(Option<(u64, u64, u64)>);

impl MachineCpu {
    /// Starts measuring.
    pub fn start() -> Self {
        Self(machine_jiffies())
    }

    /// The share of all cores busy since [`MachineCpu::start`].
    pub fn busy_share(&self) -> Option<f64> {
        self.share(|(busy, _, _)| busy)
    }

    /// The share of all cores the hypervisor took away (steal) since
    /// [`MachineCpu::start`]: above a few percent, timings are noisy.
    pub fn steal_share(&self) -> Option<f64> {
        self.share(|(_, steal, _)| steal)
    }

    fn share(&self, part: impl Fn((u64, u64, u64)) -> u64) -> Option<f64> {
        let start = self.0?;
        let end = machine_jiffies()?;
        (end.2 > start.2).then(|| (part(end) - part(start)) as f64 / (end.2 - start.2) as f64)
    }
}

/// What a process used during a run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcessUsage {
    /// CPU seconds (user + system) during the run.
    pub cpu_seconds: f64,
    /// User CPU seconds during the run.
    pub user_seconds: f64,
    /// Highest RSS seen during the run (sampled), in bytes.
    pub peak_rss_bytes: u64,
}

/// Samples the RSS and CPU time of a set of processes every `interval`
/// until stopped. A process that is gone at the end counts with its last sample.
pub struct Sampler {
    pids: Vec<u32>,
    cpu_at_start: Vec<Option<(f64, f64)>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, Default)]
struct Sample {
    peak_rss: u64,
    last_cpu: Option<(f64, f64)>,
}

impl Sampler {
    /// Starts sampling `pids`.
    pub fn start(pids: Vec<u32>, interval: Duration) -> Self {
        let cpu_at_start: Vec<Option<(f64, f64)>> = pids.iter().map(|&p| cpu_times(p)).collect();
        let first: Vec<Sample> = cpu_at_start.iter().map(|&c| Sample { peak_rss: 0, last_cpu: c }).collect();
        let samples = Arc::new(Mutex::new(first));
        let (watched, shared) = (pids.clone(), Arc::clone(&samples));
        let task = tokio::spawn(async move {
            loop {
                for (i, &pid) in watched.iter().enumerate() {
                    let (rss, cpu) = (rss_bytes(pid), cpu_times(pid));
                    let mut s = shared.lock().unwrap();
                    if let Some((rss, _)) = rss {
                        s[i].peak_rss = s[i].peak_rss.max(rss);
                    }
                    if cpu.is_some() {
                        s[i].last_cpu = cpu;
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
        Self { pids, cpu_at_start, samples, task }
    }

    /// Stops sampling; one entry per pid (`None` for a process that was
    /// gone from the start).
    pub fn stop(self) -> Vec<Option<ProcessUsage>> {
        self.task.abort();
        let samples = self.samples.lock().unwrap().clone();
        self.pids
            .iter()
            .zip(&self.cpu_at_start)
            .zip(samples)
            .map(|((&pid, start), sample)| {
                let (user, system) = cpu_times(pid).or(sample.last_cpu)?;
                let (user0, system0) = (*start)?;
                let user_seconds = user - user0;
                Some(ProcessUsage {
                    cpu_seconds: user_seconds + system - system0,
                    user_seconds,
                    peak_rss_bytes: sample.peak_rss,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_some());
        let (rss, peak) = rss_bytes(pid).unwrap();
        assert!(rss > 0 && peak >= rss);
        assert!(cpu_seconds(u32::MAX).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sampler_sees_a_busy_process() {
        let pid = std::process::id();
        let sampler = Sampler::start(vec![pid], Duration::from_millis(5));
        // Busy until this process has used 0.1 s more CPU, however long a
        // loaded machine makes that take (a wall-clock loop is not enough).
        let before = cpu_seconds(pid).unwrap();
        let mut x = 0u64;
        while cpu_seconds(pid).unwrap() < before + 0.1 {
            for _ in 0..100_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
        }
        std::hint::black_box(x);
        let usage = sampler.stop();
        let u = usage[0].unwrap();
        assert!(u.cpu_seconds > 0.05, "{u:?}");
        assert!(u.peak_rss_bytes > 0);
    }
}
