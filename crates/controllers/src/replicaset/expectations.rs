//! What the ReplicaSet controller has asked the API for but not yet seen in its cache.
//!
//! Right after creating three pods, the pod cache may still show none of them; a sync
//! in that window would create three more. Upstream's "expectations" close the window:
//! before acting, a sync records how many creations and which deletions it is about to
//! make; watch events tick them off; a ReplicaSet with outstanding expectations is not
//! scaled again (its status is still updated). Creations are counted (generated names
//! are unknown until the API answers, possibly after the watch event already arrived);
//! deletions are tracked by pod key. Expectations older than five minutes are ignored,
//! so a lost event cannot wedge a ReplicaSet forever.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long recorded expectations are trusted (upstream's `ExpectationsTimeout`).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    /// Creations not yet observed; may go negative when events beat the bookkeeping.
    creations: i64,
    /// Keys (`namespace/name`) of pods whose deletion was requested but not yet observed.
    deletions: HashSet<String>,
    recorded_at: Instant,
}

/// Outstanding creations and deletions per ReplicaSet key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Whether the ReplicaSet may be scaled: nothing outstanding, or the record expired.
    pub fn satisfied(&self, rs_key: &str) -> bool {
        self.satisfied_at(rs_key, Instant::now())
    }

    fn satisfied_at(&self, rs_key: &str, now: Instant) -> bool {
        let Ok(pending) = self.pending.lock() else { return true };
        match pending.get(rs_key) {
            None => true,
            Some(p) => {
                (p.creations <= 0 && p.deletions.is_empty()) || now.duration_since(p.recorded_at) > EXPECTATIONS_TTL
            }
        }
    }

    /// Records that `count` pods are about to be created (replacing any earlier record).
    pub fn expect_creations(&self, rs_key: &str, count: usize) {
        self.set(rs_key, Pending { creations: count as i64, deletions: HashSet::new(), recorded_at: Instant::now() });
    }

    /// Records which pods are about to be deleted (replacing any earlier record).
    pub fn expect_deletions(&self, rs_key: &str, pod_keys: impl IntoIterator<Item = String>) {
        let deletions = pod_keys.into_iter().collect();
        self.set(rs_key, Pending { creations: 0, deletions, recorded_at: Instant::now() });
    }

    fn set(&self, rs_key: &str, pending: Pending) {
        if let Ok(mut map) = self.pending.lock() {
            map.insert(rs_key.to_string(), pending);
        }
    }

    /// A pod owned by the ReplicaSet appeared, or `count` creations will never happen
    /// (the API refused them or they were skipped).
    pub fn creations_observed(&self, rs_key: &str, count: usize) {
        if let Ok(mut map) = self.pending.lock() {
            if let Some(p) = map.get_mut(rs_key) {
                p.creations -= count as i64;
            }
        }
    }

    /// A pod the ReplicaSet deleted is gone or terminating, or its deletion failed.
    pub fn deletion_observed(&self, rs_key: &str, pod_key: &str) {
        if let Ok(mut map) = self.pending.lock() {
            if let Some(p) = map.get_mut(rs_key) {
                p.deletions.remove(pod_key);
            }
        }
    }

    /// Pods whose deletion is requested and not yet seen: a status computed from the
    /// cache leaves them out, so it does not report pods that are already going away.
    pub fn pending_deletions(&self, rs_key: &str) -> HashSet<String> {
        let Ok(map) = self.pending.lock() else { return HashSet::new() };
        match map.get(rs_key) {
            Some(p) if p.recorded_at.elapsed() <= EXPECTATIONS_TTL => p.deletions.clone(),
            _ => HashSet::new(),
        }
    }

    /// Drops everything about a ReplicaSet that was deleted.
    pub fn forget(&self, rs_key: &str) {
        if let Ok(mut map) = self.pending.lock() {
            map.remove(rs_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_block_until_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"), "no record means satisfied");
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creations_observed("ns/rs", 1);
        assert!(!e.satisfied("ns/rs"));
        e.creations_observed("ns/rs", 1);
        assert!(e.satisfied("ns/rs"));
        // Observations for other ReplicaSets do not count.
        e.expect_creations("ns/rs", 1);
        e.creations_observed("ns/other", 1);
        assert!(!e.satisfied("ns/rs"));
    }

    #[test]
    fn deletions_are_tracked_by_pod() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        assert_eq!(e.pending_deletions("ns/rs").len(), 2);
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
        assert!(e.pending_deletions("ns/rs").is_empty());
    }

    #[test]
    fn old_records_expire_and_forget_clears() {
        let e = Expectations::default();
        e.expect_creations("ns/rs", 3);
        let later = Instant::now() + EXPECTATIONS_TTL + Duration::from_secs(1);
        assert!(e.satisfied_at("ns/rs", later));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
