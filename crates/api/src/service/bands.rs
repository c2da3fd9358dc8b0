//! Choosing a free value for dynamic allocation, the way upstream's bitmap allocators do.
//!
//! Values are indexes `0..size` into a range (usable ClusterIPs, or NodePorts). The range is
//! split into a small *static* band at the bottom and a *dynamic* band above it: dynamic
//! allocation picks a random start in the dynamic band and scans forward (wrapping) for a
//! free index, and only when that band is full does the same in the static band. Values users
//! choose by hand (like the DNS Service's `.10`) thus rarely collide with random ones
//! (KEP-3070 for ClusterIPs, KEP-3668 for NodePorts).

use std::collections::BTreeSet;

use rand::Rng;

/// Size of the static band for a Service CIDR with `cidr_size` addresses (including network
/// and broadcast): `min(max(16, size/16), 256)`, none for ranges of 16 addresses or fewer.
pub fn ip_static_band(cidr_size: u64) -> u32 {
    if cidr_size <= 16 {
        return 0;
    }
    // Clamped to 256, so the cast cannot truncate.
    (cidr_size / 16).clamp(16, 256) as u32
}

/// Size of the static band for a NodePort range of `range_size` ports:
/// `min(max(16, size/32), 128)`, none for ranges of 16 ports or fewer.
pub fn port_static_band(range_size: u32) -> u32 {
    if range_size <= 16 {
        return 0;
    }
    (range_size / 32).clamp(16, 128)
}

/// An index range `0..size` whose lowest `static_band` indexes are used last.
#[derive(Debug, Clone, Copy)]
pub struct Bands {
    size: u32,
    static_band: u32,
}

impl Bands {
    pub fn new(size: u32, static_band: u32) -> Self {
        // Upstream only splits when the static band leaves something above it.
        let static_band = if static_band < size { static_band } else { 0 };
        Bands { size, static_band }
    }

    /// A free index not in `taken`, or None when the whole range is taken.
    pub fn pick(&self, taken: &BTreeSet<u32>, rng: &mut impl Rng) -> Option<u32> {
        if self.size == 0 {
            return None;
        }
        if self.static_band == 0 {
            return scan_from_random(taken, 0, self.size, rng);
        }
        scan_from_random(taken, self.static_band, self.size, rng)
            .or_else(|| scan_from_random(taken, 0, self.static_band, rng))
    }
}

/// First free index in `lo..hi` at or after a random start, wrapping around once.
fn scan_from_random(taken: &BTreeSet<u32>, lo: u32, hi: u32, rng: &mut impl Rng) -> Option<u32> {
    if lo >= hi {
        return None;
    }
    let start = rng.random_range(lo..hi);
    first_free(taken, start, hi).or_else(|| first_free(taken, lo, start))
}

/// First index in `from..to` not in `taken`, skipping runs of taken values in one pass.
fn first_free(taken: &BTreeSet<u32>, from: u32, to: u32) -> Option<u32> {
    let mut candidate = from;
    for &used in taken.range(from..to) {
        if used != candidate {
            break;
        }
        candidate += 1;
    }
    (candidate < to).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn band_sizes_follow_the_keps() {
        assert_eq!(ip_static_band(1 << 16), 256); // /16
        assert_eq!(ip_static_band(1 << 10), 64); // /22
        assert_eq!(ip_static_band(1 << 6), 16); // /26
        assert_eq!(ip_static_band(16), 0); // /28
        assert_eq!(port_static_band(2768), 86); // 30000-32767
        assert_eq!(port_static_band(100), 16);
        assert_eq!(port_static_band(100_000), 128);
        assert_eq!(port_static_band(16), 0);
    }

    #[test]
    fn dynamic_band_first_then_static() {
        let bands = Bands::new(100, 16);
        let mut rng = StdRng::seed_from_u64(7);
        let mut taken = BTreeSet::new();
        for _ in 0..84 {
            let got = bands.pick(&taken, &mut rng).unwrap();
            assert!(got >= 16, "picked {got} from the static band while the dynamic one had room");
            assert!(taken.insert(got));
        }
        for _ in 0..16 {
            let got = bands.pick(&taken, &mut rng).unwrap();
            assert!(got < 16);
            assert!(taken.insert(got));
        }
        assert_eq!(bands.pick(&taken, &mut rng), None);
    }

    #[test]
    fn scan_wraps_and_skips_runs() {
        let taken: BTreeSet<u32> = [5, 6, 7, 9].into_iter().collect();
        assert_eq!(first_free(&taken, 5, 10), Some(8));
        assert_eq!(first_free(&taken, 9, 10), None);
        assert_eq!(first_free(&taken, 0, 10), Some(0));
        let all: BTreeSet<u32> = (0..10).collect();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(Bands::new(10, 0).pick(&all, &mut rng), None);
        assert_eq!(Bands::new(0, 0).pick(&all, &mut rng), None);
    }

    #[test]
    fn static_band_as_large_as_the_range_is_ignored() {
        let bands = Bands::new(16, 16);
        let mut rng = StdRng::seed_from_u64(3);
        let taken: BTreeSet<u32> = (0..15).collect();
        assert_eq!(bands.pick(&taken, &mut rng), Some(15));
    }
}
