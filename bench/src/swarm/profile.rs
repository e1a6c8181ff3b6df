//! The benchmark's profiles (`docs/benchmarks.md`, how performance is
//! measured): content size and link rates.

use serde::Serialize;

use super::netns::LinkRates;

const MIB: u64 = 1 << 20;
const MBIT: u64 = 1_000_000;

/// A named size and set of link rates.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// `A` or `B`.
    pub name: String,
    /// Content size in bytes.
    pub size: u64,
    /// Nominal link rates.
    pub rates: LinkRates,
}

impl Profile {
    /// Profile `A` (64 MiB; U 100, u 50, d 100 Mbit/s) or `B` (1 GiB; U 200,
    /// u 100, d 200 Mbit/s).
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let (size, up, u, d) = match name {
            "A" | "a" => (64 * MIB, 100, 50, 100),
            "B" | "b" => (1024 * MIB, 200, 100, 200),
            other => anyhow::bail!("unknown profile {other:?} (A or B)"),
        };
        Ok(Self {
            name: name.to_ascii_uppercase(),
            size,
            rates: LinkRates { origin_up_bps: up * MBIT, peer_up_bps: u * MBIT, peer_down_bps: d * MBIT },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_match_the_benchmark_page() {
        let a = Profile::named("A").unwrap();
        assert_eq!(a.size, 64 << 20);
        assert_eq!(a.rates.peer_up_bps, 50_000_000);
        let b = Profile::named("b").unwrap();
        assert_eq!(b.name, "B");
        assert_eq!(b.size, 1 << 30);
        assert_eq!(b.rates.origin_up_bps, 200_000_000);
        assert!(Profile::named("C").is_err());
    }
}
