//! A small, fast, seedable random source (SplitMix64): the same numbers on every platform and
//! release, which a library RNG does not promise.

/// SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator for event `index` of a stream seeded with `seed`: events are independent
    /// of each other, so any partitioning of the stream produces the same events.
    pub fn for_event(seed: u64, index: u64) -> Self {
        let mut r = Rng(seed ^ index.wrapping_mul(0xD134_2543_DE82_EF95));
        r.next_u64();
        r
    }

    /// A seeded generator.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0 .. n`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// A skewed index in `0 .. n`: low indexes are more frequent (heavy users, popular
    /// products); index 0 gets about `1/sqrt(n)` of the draws.
    #[inline]
    pub fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((n as f64) * u * u) as u64
    }

    /// Approximately standard normal: the sum of four uniforms, centred and scaled (Irwin–Hall;
    /// tails end at ±3.46σ). Cheap, and plenty for synthetic readings and amounts.
    #[inline]
    pub fn normal(&mut self) -> f64 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.732_050_807_568_877_2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_stable_across_releases() {
        let mut r = Rng::new(42);
        assert_eq!(r.next_u64(), 13_679_457_532_755_275_413);
        assert_eq!(
            Rng::for_event(1, 2).next_u64(),
            Rng::for_event(1, 2).next_u64()
        );
        assert_ne!(
            Rng::for_event(1, 2).next_u64(),
            Rng::for_event(1, 3).next_u64()
        );
    }

    #[test]
    fn draws_are_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            assert!(r.skewed(100) < 100);
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
