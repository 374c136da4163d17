//! Task run times per stage attempt, summarized as the listener does it
//! (listener-jar `Durations.java`, the same buckets): 0–15 ms exactly, then four buckets per
//! power of two. Used for event logs, whose task ends come one by one; a live listener sends the
//! summary itself.

use super::event::DurationSummary;

/// Enough for 2^40 ms; longer run times count in the last bucket.
pub const BUCKETS: usize = 164;

pub fn bucket(ms: i64) -> usize {
    if ms < 16 {
        return usize::try_from(ms.max(0)).unwrap_or(0);
    }
    let e = 63 - ms.leading_zeros() as usize;
    let sub = usize::try_from((ms >> (e - 2)) & 3).unwrap_or(0);
    (16 + (e - 4) * 4 + sub).min(BUCKETS - 1)
}

/// The smallest value counted in bucket `b`.
pub fn lower(b: usize) -> i64 {
    if b < 16 {
        return i64::try_from(b).unwrap_or(0);
    }
    let e = (b - 16) / 4 + 4;
    let sub = i64::try_from((b - 16) % 4).unwrap_or(0);
    (4 + sub) << (e - 2)
}

/// Successful tasks' run times of one stage attempt.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    min: i64,
    max: i64,
    n: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            min: i64::MAX,
            max: i64::MIN,
            n: 0,
        }
    }
}

impl Histogram {
    pub fn add(&mut self, ms: i64) {
        let c = &mut self.counts[bucket(ms)];
        *c = c.saturating_add(1);
        self.min = self.min.min(ms);
        self.max = self.max.max(ms);
        self.n += 1;
    }

    /// The `q`-quantile: the middle of the bucket holding the value of rank ⌈q·n⌉, within
    /// [min, max]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        if self.n == 0 {
            return None;
        }
        // ranks are far below 2^52: the conversions are exact
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let lo = lower(b);
                let hi = if b + 1 < BUCKETS {
                    lower(b + 1) - 1
                } else {
                    lo
                };
                return Some((lo + (hi - lo) / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn summary(&self) -> Option<DurationSummary> {
        Some(DurationSummary {
            min_ms: self.min,
            median_ms: self.quantile(0.5)?,
            max_ms: self.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_the_listeners_and_stay_within_a_quarter() {
        // the listener's Durations.bucket for the same values (listener-jar StageCountersTest)
        for (ms, b) in [
            (0, 0),
            (15, 15),
            (16, 16),
            (20, 17),
            (31, 19),
            (32, 20),
            (1000, 39),
        ] {
            assert_eq!(bucket(ms), b, "{ms}");
        }
        let mut ms = 0i64;
        while ms < 1 << 30 {
            let b = bucket(ms);
            assert!(lower(b) <= ms && ms < lower(b + 1), "{ms} in {b}");
            assert!(ms - lower(b) <= (ms / 4).max(1));
            ms = if ms < 64 { ms + 1 } else { ms + ms / 7 };
        }
        assert_eq!(bucket(i64::MAX), BUCKETS - 1);
        assert_eq!(bucket(-5), 0);
    }

    #[test]
    fn a_straggler_shows_against_the_median() {
        let mut h = Histogram::default();
        assert_eq!(h.summary(), None);
        for i in 0..9 {
            h.add(95 + i);
        }
        h.add(5_000);
        let s = h.summary().expect("summary");
        assert_eq!((s.min_ms, s.max_ms), (95, 5_000));
        assert!((80..=112).contains(&s.median_ms), "{s:?}");
    }
}
