//! The ids of jobs the agent dropped past its retention, as ranges: Spark may retain them longer
//! (`spark.ui.retainedJobs` above `--retain-jobs`, or no age limit), and reconciliation must not
//! take them back and count them again. Job ids are mostly consecutive, so a few ranges hold
//! millions of ids; past [`MAX_RANGES`] the lowest ranges go (the oldest jobs, which Spark has
//! long dropped too).

use std::collections::BTreeMap;

/// At most this many disjoint ranges are kept.
pub const MAX_RANGES: usize = 4096;

#[derive(Debug, Default, Clone)]
pub struct RetiredJobs {
    /// Start → end, both inclusive, disjoint and not adjacent.
    ranges: BTreeMap<i32, i32>,
    /// Ranges dropped at the bound since last taken.
    pub(super) forgotten: u64,
}

impl RetiredJobs {
    pub fn contains(&self, id: i32) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &end)| id <= end)
    }

    pub fn insert(&mut self, id: i32) {
        if self.contains(id) {
            return;
        }
        let mut start = id;
        let mut end = id;
        // Joins the range ending right below and the one starting right above.
        if let Some((&s, &e)) = self.ranges.range(..id).next_back() {
            if e.checked_add(1) == Some(id) {
                start = s;
            }
        }
        if let Some(next) = id.checked_add(1) {
            if let Some(e) = self.ranges.remove(&next) {
                end = e;
            }
        }
        self.ranges.insert(start, end);
        while self.ranges.len() > MAX_RANGES {
            self.ranges.pop_first();
            self.forgotten += 1;
        }
    }

    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_join_and_answer() {
        let mut r = RetiredJobs::default();
        for id in [3, 1, 2, 7, 5, 6] {
            r.insert(id);
        }
        assert_eq!(r.ranges(), 2, "{:?}", r.ranges);
        for id in [1, 2, 3, 5, 6, 7] {
            assert!(r.contains(id), "{id}");
        }
        for id in [0, 4, 8, i32::MIN, i32::MAX] {
            assert!(!r.contains(id), "{id}");
        }
        r.insert(4);
        assert_eq!(r.ranges(), 1);
        r.insert(i32::MAX);
        r.insert(i32::MIN);
        assert!(r.contains(i32::MAX) && r.contains(i32::MIN));
    }

    #[test]
    fn bounded() {
        let mut r = RetiredJobs::default();
        for i in 0..(MAX_RANGES as i32 + 10) {
            r.insert(i * 2);
        }
        assert_eq!(r.ranges(), MAX_RANGES);
        assert_eq!(r.forgotten, 10);
        assert!(!r.contains(0) && r.contains(2 * (MAX_RANGES as i32 + 9)));
    }
}
