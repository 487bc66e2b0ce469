//! A tiny deterministic generator (xorshift64*) and the distributions the workloads draw from.

/// xorshift64* (Vigna): fast, deterministic, good enough for shuffles and size draws.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform integer in `0..n` (`n > 0`), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform float in `(0, 1]`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }

    /// `0..n` in random order.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        self.shuffle(&mut order);
        order
    }

    /// A request size in `1..=512` from a Pareto (Lomax, scale 24, shape 1.5) distribution,
    /// heavy on small sizes as object allocators see them: median 15 B, about 1% clamped to
    /// 512.
    #[inline]
    pub fn pareto_size(&mut self) -> usize {
        let x = 24.0 * (self.unit().powf(-1.0 / 1.5) - 1.0);
        (x as usize + 1).min(512)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation() {
        let mut order = XorShift::new(7).permutation(1000);
        order.sort_unstable();
        assert!(order.iter().copied().eq(0..1000));
    }

    #[test]
    fn pareto_sizes_stay_in_range_and_favour_small() {
        let mut rng = XorShift::new(1);
        let sizes: Vec<usize> = (0..100_000).map(|_| rng.pareto_size()).collect();
        assert!(sizes.iter().all(|&s| (1..=512).contains(&s)));
        let small = sizes.iter().filter(|&&s| s <= 32).count();
        assert!(small > 60_000, "{small}");
        assert!(sizes.contains(&512) && sizes.contains(&1));
    }
}
