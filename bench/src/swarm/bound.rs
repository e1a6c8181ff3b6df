//! The fluid bound (Kumar & Ross 2006): no system can finish every peer of a
//! swarm sooner.
//!
//! With the content of `S` bits held at the start by sources uploading
//! `U_src` in all, `M` downloaders each uploading `u` and downloading `d`:
//!
//! ```text
//!   T_min = max( S / U_src , S / d , M * S / (U_src + M * u) )
//! ```
//!
//! A cold swarm's only source is the origin (`U_src = U`); in the warm
//! scenario a peer that already holds the content adds its upload.

use serde::Serialize;

/// Inputs of the bound, rates in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BoundInputs {
    /// Content size in bytes.
    pub size_bytes: u64,
    /// Upload of everything that holds the content at the start.
    pub source_up_bps: f64,
    /// Each downloader's upload.
    pub peer_up_bps: f64,
    /// Each downloader's download.
    pub peer_down_bps: f64,
    /// Number of downloaders.
    pub downloaders: usize,
}

/// The bound in seconds.
pub fn t_min(b: &BoundInputs) -> f64 {
    let bits = b.size_bytes as f64 * 8.0;
    let m = b.downloaders as f64;
    let source = bits / b.source_up_bps;
    let download = bits / b.peer_down_bps;
    let swarm = m * bits / (b.source_up_bps + m * b.peer_up_bps);
    source.max(download).max(swarm)
}

/// Client-server time: every downloader from the sources alone.
pub fn t_client_server(b: &BoundInputs) -> f64 {
    let bits = b.size_bytes as f64 * 8.0;
    (b.downloaders as f64 * bits / b.source_up_bps).max(bits / b.peer_down_bps)
}

/// The median of `values` (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn profile_a(n: usize) -> BoundInputs {
        BoundInputs {
            size_bytes: 64 * MIB,
            source_up_bps: 100e6,
            peer_up_bps: 50e6,
            peer_down_bps: 100e6,
            downloaders: n,
        }
    }

    #[test]
    fn one_peer_is_bounded_by_the_slower_link() {
        let t = t_min(&profile_a(1));
        assert!((t - 64.0 * 8.0 * MIB as f64 / 100e6).abs() < 1e-9, "{t}");
    }

    #[test]
    fn many_peers_are_bounded_by_the_swarm_upload() {
        // 16 * 64 MiB over 100 + 16 * 50 Mbit/s.
        let t = t_min(&profile_a(16));
        let expected = 16.0 * 64.0 * 8.0 * MIB as f64 / 900e6;
        assert!((t - expected).abs() < 1e-9, "{t} vs {expected}");
        // Client-server is N times the single download.
        assert!((t_client_server(&profile_a(16)) - 16.0 * 64.0 * 8.0 * MIB as f64 / 100e6).abs() < 1e-9);
    }

    #[test]
    fn a_warm_holder_adds_its_upload() {
        let cold = t_min(&profile_a(4));
        let warm = t_min(&BoundInputs { source_up_bps: 150e6, downloaders: 3, ..profile_a(4) });
        assert!(warm < cold);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
    }
}
