//! Automatic compaction: how much history the log keeps.
//!
//! History is what lets a watcher resume (`watch(prefix, after)`) and a paginated list read
//! at its first page's revision. An event is dropped only once it is **both** more than
//! [`RedbOptions::history_revisions`](super::RedbOptions::history_revisions) revisions old
//! **and** older than [`RedbOptions::history_age`](super::RedbOptions::history_age): whichever
//! rule keeps more wins. The count rule guarantees resumability for quiet clusters, the age rule
//! (kube-apiserver compacts etcd every 5 minutes) for bursts.
//!
//! Commit times are tracked in memory at one-second granularity (a short list of marks), and
//! history found on disk at startup counts as committed at startup, so a restart never
//! shortens the retained window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Revision;

/// Marks closer together than this are merged.
const MARK_GRANULARITY: Duration = Duration::from_secs(1);

/// "Every revision up to `last` was committed at or before `at + MARK_GRANULARITY`."
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    last: Revision,
}

#[derive(Debug)]
pub(crate) struct Retention {
    keep_revisions: i64,
    keep_for: Duration,
    marks: VecDeque<Mark>,
    /// The newest revision known to be older than the age horizon.
    aged_out: Revision,
}

impl Retention {
    /// Starts tracking at `now`; history up to `current` counts as committed now and
    /// everything up to `compacted` is already gone.
    pub fn new(keep_revisions: u64, keep_for: Duration, now: Instant, current: Revision, compacted: Revision) -> Self {
        let mut marks = VecDeque::new();
        marks.push_back(Mark { at: now, last: current });
        Retention {
            keep_revisions: i64::try_from(keep_revisions).unwrap_or(i64::MAX),
            keep_for,
            marks,
            aged_out: compacted,
        }
    }

    /// Records that everything up to `revision` is committed at `now`.
    pub fn committed(&mut self, now: Instant, revision: Revision) {
        match self.marks.back_mut() {
            Some(mark) if now.saturating_duration_since(mark.at) < MARK_GRANULARITY => mark.last = revision,
            _ => self.marks.push_back(Mark { at: now, last: revision }),
        }
    }

    /// The revision history may be compacted to at `now`, when the latest is `current`.
    pub fn compactable(&mut self, now: Instant, current: Revision) -> Revision {
        while let Some(mark) = self.marks.front() {
            let age = now.saturating_duration_since(mark.at);
            if age < self.keep_for.saturating_add(MARK_GRANULARITY) {
                break;
            }
            self.aged_out = self.aged_out.max(mark.last);
            self.marks.pop_front();
        }
        current.saturating_sub(self.keep_revisions).min(self.aged_out).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rule_alone_when_age_is_zero() {
        let t0 = Instant::now();
        let mut r = Retention::new(10, Duration::ZERO, t0, 0, 0);
        let later = t0 + Duration::from_secs(5);
        r.committed(later, 100);
        assert_eq!(r.compactable(later + Duration::from_secs(2), 100), 90);
    }

    #[test]
    fn age_rule_keeps_recent_history_even_beyond_the_count() {
        let t0 = Instant::now();
        let mut r = Retention::new(10, Duration::from_secs(60), t0, 50, 0);
        r.committed(t0 + Duration::from_secs(10), 80);
        r.committed(t0 + Duration::from_secs(30), 200);
        // Nothing is older than 60 s yet: keep everything.
        assert_eq!(r.compactable(t0 + Duration::from_secs(40), 200), 0);
        // The startup mark (revision 50) aged out; revision 80's mark has not.
        assert_eq!(r.compactable(t0 + Duration::from_secs(62), 200), 50);
        // Both older marks aged out; the count rule (200 - 10) is not the binding one.
        assert_eq!(r.compactable(t0 + Duration::from_secs(95), 200), 200 - 10);
    }

    #[test]
    fn short_history_is_not_compacted() {
        let t0 = Instant::now();
        let mut r = Retention::new(1000, Duration::ZERO, t0, 5, 3);
        assert_eq!(r.compactable(t0 + Duration::from_secs(5), 5), 0);
    }
}
