//! The random orders and sizes the workloads draw, over the project's one generator,
//! [`fastrand::Rng`], always seeded ([`seeded`]) so that every workload is the same from run
//! to run and from peer to peer.

pub use fastrand::Rng;

/// A generator from `seed`: the same seed gives the same draws.
pub fn seeded(seed: u64) -> Rng {
    Rng::with_seed(seed)
}

/// `0..n` in random order.
pub fn permutation(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order
}

/// A request size in `1..=512` from a Pareto (Lomax, scale 24, shape 1.5) distribution,
/// heavy on small sizes as object allocators see them: median 15 B, about 1% clamped to
/// 512.
#[inline]
pub fn pareto_size(rng: &mut Rng) -> usize {
    // A uniform draw in (0, 1]: `f64()` is in [0, 1), and 0 would give an infinite size.
    let unit = 1.0 - rng.f64();
    let x = 24.0 * (unit.powf(-1.0 / 1.5) - 1.0);
    (x as usize + 1).min(512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation() {
        let mut order = permutation(&mut seeded(7), 1000);
        order.sort_unstable();
        assert!(order.iter().copied().eq(0..1000));
    }

    #[test]
    fn the_same_seed_gives_the_same_order() {
        assert_eq!(
            permutation(&mut seeded(7), 100),
            permutation(&mut seeded(7), 100)
        );
        assert_ne!(
            permutation(&mut seeded(7), 100),
            permutation(&mut seeded(8), 100)
        );
    }

    #[test]
    fn pareto_sizes_stay_in_range_and_favour_small() {
        let mut rng = seeded(1);
        let sizes: Vec<usize> = (0..100_000).map(|_| pareto_size(&mut rng)).collect();
        assert!(sizes.iter().all(|&s| (1..=512).contains(&s)));
        let small = sizes.iter().filter(|&&s| s <= 32).count();
        assert!(small > 60_000, "{small}");
        assert!(sizes.contains(&512) && sizes.contains(&1));
    }
}
