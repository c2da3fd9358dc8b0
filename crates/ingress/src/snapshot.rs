//! An atomically replaceable `Arc`: readers take the current value, a writer swaps in a new
//! one. Readers keep whatever version they loaded for as long as they hold it, so a swap
//! never disturbs a request or connection in flight; that is how route, endpoint and
//! certificate changes apply without any reload.

use std::sync::{Arc, RwLock};

/// The current version of a `T`, replaced whole.
#[derive(Debug, Default)]
pub struct Snapshot<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Snapshot<T> {
    pub fn new(value: T) -> Snapshot<T> {
        Snapshot { current: RwLock::new(Arc::new(value)) }
    }

    /// The current version. The read lock is held only for the `Arc` clone.
    pub fn load(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes `value` the current version; earlier versions live on until their last reader
    /// drops them.
    pub fn store(&self, value: T) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_keep_their_version() {
        let s = Snapshot::new(1);
        let old = s.load();
        s.store(2);
        assert_eq!((*old, *s.load()), (1, 2));
    }
}
