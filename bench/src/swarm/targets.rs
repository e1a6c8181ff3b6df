//! The performance targets of the swarm (issue 6), checked against a
//! benchmark's runs: one line per target and run, met or not, with the value.

use std::fmt::Write;

use serde::Serialize;

use super::result::RunReport;

const MIB: f64 = (1u64 << 20) as f64;

/// One target checked on one run.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// e.g. `A N=16 cold`.
    pub run: String,
    /// What is checked.
    pub target: String,
    /// The measured value, formatted.
    pub value: String,
    /// Met?
    pub met: bool,
}

/// Checks every target that applies to `runs` (Darter cold runs with N >= 4,
/// their churn runs, and the BitTorrent baseline where it ran).
pub fn check(runs: &[RunReport]) -> Vec<Check> {
    let mut out = Vec::new();
    let find = |profile: &str, n: usize, system: &str, scenario: &str| {
        runs.iter().find(|r| r.profile == profile && r.peers == n && r.system == system && r.scenario == scenario)
    };
    for cold in runs.iter().filter(|r| r.system == "darter" && r.scenario == "cold" && r.peers >= 4) {
        let run = format!("{} N={} cold", cold.profile, cold.peers);
        let mut add = |target: &str, value: String, met: bool| {
            out.push(Check { run: run.clone(), target: target.into(), value, met });
        };
        let ratio = cold.makespan_ratio();
        add("makespan <= 1.25 T_min", fmt(ratio, "x"), ratio.is_some_and(|r| r <= 1.25));
        let p50 = cold.p50_ratio();
        add("p50 <= 1.15 T_min", fmt(p50, "x"), p50.is_some_and(|r| r <= 1.15));
        let copies = cold.origin_copies();
        add("origin copies <= 1.05", format!("{copies:.3}"), copies <= 1.05);
        if let Some(bt) = find(&cold.profile, cold.peers, "bittorrent", "cold") {
            let faster = matches!((cold.makespan, bt.makespan), (Some(d), Some(b)) if d < b)
                || (cold.makespan.is_some() && bt.makespan.is_none());
            add(
                "makespan < BitTorrent's",
                format!("{} vs {}", fmt(cold.makespan, " s"), fmt(bt.makespan, " s")),
                faster,
            );
        }
        let cpu = cold.cpu_per_gib();
        let floor = cold.socket_floor_cpu_s_per_gib.map_or(String::new(), |f| format!(" (socket floor {f:.2})"));
        add("CPU <= 1.0 s/GiB per daemon", fmt(cpu, " s/GiB") + &floor, cpu.is_some_and(|c| c <= 1.0));
        if cold.size_bytes >= 1 << 30 {
            let peak = cold.peak_rss_max().map(|b| b as f64 / MIB);
            add("peak RSS <= 128 MiB per daemon (1 GiB)", fmt(peak, " MiB"), peak.is_some_and(|p| p <= 128.0));
        }
        let idle = cold.idle_rss_max().map(|b| b as f64 / MIB);
        add("idle RSS <= 64 MiB per daemon", fmt(idle, " MiB"), idle.is_some_and(|p| p <= 64.0));
        if let Some(churn) = find(&cold.profile, cold.peers, "darter", "churn") {
            let slow = match (churn.makespan, cold.makespan) {
                (Some(c), Some(k)) => Some(c / k),
                _ => None,
            };
            add("churn: survivors' makespan <= 1.2x cold", fmt(slow, "x"), slow.is_some_and(|s| s <= 1.2));
            let extra = churn.origin_copies() - cold.origin_copies();
            add(
                "churn: extra origin copies (killed peers' unshared share at most)",
                format!("{extra:+.3}"),
                extra <= killed_share(churn) + 0.05,
            );
        }
    }
    out
}

/// The most origin traffic churn may add: the killed peers' halves, had
/// nobody else held them (a quarter of the peers at half each).
fn killed_share(churn: &RunReport) -> f64 {
    churn.per_peer.iter().filter(|p| p.killed).count() as f64 * 0.5
}

fn fmt(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}{unit}"))
}

/// The checks as a Markdown table.
pub fn markdown(checks: &[Check]) -> String {
    let mut s = String::from("| run | target | measured | met |\n|---|---|--:|---|\n");
    for c in checks {
        let _ = writeln!(s, "| {} | {} | {} | {} |", c.run, c.target, c.value, if c.met { "yes" } else { "**no**" });
    }
    s
}
