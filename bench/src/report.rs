//! Results of the back-to-source benchmark: medians, Markdown and JSON.

use std::fmt::Write;

use serde::Serialize;

/// The dfget/curl throughput ratio Darter aims for.
pub const TARGET_RATIO: f64 = 0.9;

/// One interleaved run: curl then dfget on the same origin.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    /// 1-based run number.
    pub run: u32,
    /// curl throughput in MiB/s.
    pub curl_mib_s: f64,
    /// dfget throughput in MiB/s (`None` with `--curl-only`).
    pub dfget_mib_s: Option<f64>,
    /// Bytes the origin sent for the dfget download (ideal: the file size).
    pub dfget_origin_bytes: Option<u64>,
}

/// The whole benchmark result, as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct BacksourceReport {
    /// Benchmark name, `backsource`.
    pub benchmark: &'static str,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Every run, in order.
    pub runs: Vec<RunResult>,
    /// Median curl throughput in MiB/s.
    pub curl_median_mib_s: f64,
    /// Median dfget throughput in MiB/s.
    pub dfget_median_mib_s: Option<f64>,
    /// `dfget_median / curl_median`.
    pub ratio: Option<f64>,
    /// [`TARGET_RATIO`].
    pub target_ratio: f64,
}

impl BacksourceReport {
    /// Builds the report and its medians from the runs.
    pub fn new(size_bytes: u64, runs: Vec<RunResult>) -> Self {
        let curl: Vec<f64> = runs.iter().map(|r| r.curl_mib_s).collect();
        let dfget: Option<Vec<f64>> = runs.iter().map(|r| r.dfget_mib_s).collect();
        let curl_median_mib_s = median(&curl).unwrap_or(0.0);
        let dfget_median_mib_s = dfget.as_deref().and_then(median);
        let ratio = dfget_median_mib_s.filter(|_| curl_median_mib_s > 0.0).map(|d| d / curl_median_mib_s);
        Self {
            benchmark: "backsource",
            size_bytes,
            runs,
            curl_median_mib_s,
            dfget_median_mib_s,
            ratio,
            target_ratio: TARGET_RATIO,
        }
    }

    /// A small Markdown table plus the ratio line.
    pub fn markdown(&self) -> String {
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        let mut out = String::new();
        let size = testkit::size::format_size(self.size_bytes);
        let _ = writeln!(out, "backsource, {size}: throughput in MiB/s\n");
        let _ = writeln!(out, "| run | curl | dfget |");
        let _ = writeln!(out, "|----:|-----:|------:|");
        for r in &self.runs {
            let _ = writeln!(out, "| {} | {:.1} | {} |", r.run, r.curl_mib_s, cell(r.dfget_mib_s));
        }
        let _ = writeln!(out, "| median | {:.1} | {} |\n", self.curl_median_mib_s, cell(self.dfget_median_mib_s));
        match self.ratio {
            Some(ratio) => {
                let _ = writeln!(out, "ratio: {ratio:.2}x (target >= {TARGET_RATIO}x)");
            }
            None => {
                let _ = writeln!(out, "ratio: n/a (dfget not run)");
            }
        }
        out
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(run: u32, curl: f64, dfget: Option<f64>) -> RunResult {
        RunResult { run, curl_mib_s: curl, dfget_mib_s: dfget, dfget_origin_bytes: None }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn ratio_and_markdown() {
        let report = BacksourceReport::new(
            1 << 30,
            vec![run(1, 1000.0, Some(900.0)), run(2, 1000.0, Some(950.0)), run(3, 2000.0, Some(930.0))],
        );
        assert_eq!(report.ratio, Some(0.93));
        let md = report.markdown();
        assert!(md.contains("| median | 1000.0 | 930.0 |"), "{md}");
        assert!(md.contains("ratio: 0.93x (target >= 0.9x)"), "{md}");
    }

    #[test]
    fn curl_only_has_no_ratio() {
        let report = BacksourceReport::new(1 << 20, vec![run(1, 500.0, None)]);
        assert_eq!(report.ratio, None);
        assert!(report.markdown().contains("ratio: n/a"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["runs"][0]["dfget_mib_s"], serde_json::Value::Null);
    }
}
