//! Deterministic randomness: ChaCha8 streams keyed by (seed, person, episode, purpose).
//!
//! Every person and every episode has a stream of its own, so a person can be rebuilt from its
//! index alone (the writers rebuild persons in file order instead of keeping them in memory), and
//! the draws below use only the raw 64-bit outputs of ChaCha8, whose values are fixed by its
//! specification rather than by a `rand` version.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Purposes of a stream, so two uses of one (person, episode) never share draws.
pub(crate) const PERSON: u64 = 1;
pub(crate) const IDENTITY: u64 = 2;
pub(crate) const EPISODE: u64 = 3;
pub(crate) const RENDER: u64 = 4;

#[derive(Debug, Clone)]
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: u64, a: u64, b: u64, purpose: u64) -> Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&a.to_le_bytes());
        key[16..24].copy_from_slice(&b.to_le_bytes());
        key[24..].copy_from_slice(&purpose.to_le_bytes());
        Rng(ChaCha8Rng::from_seed(key))
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift: the bias is below 2^-40 for our `n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        debug_assert!(lo <= hi);
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// One item, with probability proportional to its weight.
    pub(crate) fn weighted<T: Copy>(&mut self, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (item, w) in items {
            if x < u64::from(*w) {
                return *item;
            }
            x -= u64::from(*w);
        }
        items[items.len() - 1].0
    }

    /// `Some(value())` with probability `1 - missing`, else `None` (not recorded).
    pub(crate) fn recorded<T>(
        &mut self,
        missing: f64,
        value: impl FnOnce(&mut Rng) -> T,
    ) -> Option<T> {
        if self.chance(missing) {
            None
        } else {
            Some(value(self))
        }
    }

    /// Between `min` and `max` distinct items, in table order.
    pub(crate) fn subset<T: Copy + PartialEq>(
        &mut self,
        items: &[(T, u32)],
        min: usize,
        max: usize,
    ) -> Vec<T> {
        let n = self.range(min as i64, max as i64) as usize;
        let mut out: Vec<T> = Vec::with_capacity(n);
        for _ in 0..n * 4 {
            if out.len() == n {
                break;
            }
            let item = self.weighted(items);
            if !out.contains(&item) {
                out.push(item);
            }
        }
        let position = |x: &T| items.iter().position(|(i, _)| i == x);
        out.sort_by_key(position);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let draws = |a, b| {
            let mut r = Rng::new(42, a, b, PERSON);
            (0..8).map(|_| r.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draws(1, 0), draws(1, 0));
        assert_ne!(draws(1, 0), draws(2, 0));
        assert_ne!(draws(1, 0), draws(1, 1));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut r = Rng::new(7, 0, 0, PERSON);
        for _ in 0..10_000 {
            let x = r.range(-3, 3);
            assert!((-3..=3).contains(&x));
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
        }
        let hits = (0..10_000).filter(|_| r.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }
}
