//! The packet path under noise: random and mutated packets through the answerer, checking
//! the invariants of [`skiff_dns::fixture::check_packet`]. A deterministic, always-on cousin
//! of the cargo-fuzz target in `fuzz/` (which explores far more: `scripts/fuzz-dns`).

use skiff_dns::fixture::{answerer, check_packet, seed_queries};

/// xorshift64: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_and_mutated_packets_keep_the_invariants() {
    let answerer = answerer();
    let seeds = seed_queries();
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    for seed in &seeds {
        check_packet(&answerer, seed);
    }
    for round in 0..200_000 {
        let packet = if round % 4 == 0 {
            let len = (noise.next() % 600) as usize;
            (0..len).map(|_| noise.next() as u8).collect::<Vec<u8>>()
        } else {
            let mut p = seeds[(noise.next() as usize) % seeds.len()].clone();
            for _ in 0..1 + noise.next() % 6 {
                let at = (noise.next() as usize) % p.len();
                match noise.next() % 4 {
                    0 => p[at] = noise.next() as u8,
                    1 => p.truncate(at.max(1)),
                    2 => p.insert(at, noise.next() as u8),
                    _ => p[at] ^= 1 << (noise.next() % 8),
                }
            }
            p
        };
        check_packet(&answerer, &packet);
    }
}
