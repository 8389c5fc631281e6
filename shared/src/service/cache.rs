//! A small time-to-live cache for hot items that many requests read: a
//! moment-old copy instead of thousands of reads per second of one item.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::Timestamp;

/// Entries live for `ttl` by the caller's clock (the service's `Clock`), so
/// a test or a simulated schedule ages them as it ages everything else.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Timestamp)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value put less than `ttl` before `now`, if any.
    pub fn get(&self, key: &K, now: Timestamp) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (value, at) = entries.get(key)?;
        (now.since(*at) < self.ttl).then(|| value.clone())
    }

    pub fn put(&self, key: K, value: V, now: Timestamp) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            // Keys are events, shards and sessions of one deployment; drop the
            // stale ones now and then so a long-lived instance stays small.
            if entries.len() > 10_000 {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| now.since(*at) < ttl);
            }
            entries.insert(key, (value, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_live_for_the_ttl_only() {
        let at = Timestamp::from_millis;
        let cache = TtlCache::new(Duration::from_millis(30));
        cache.put("a", 1, at(1_000));
        assert_eq!(cache.get(&"a", at(1_000)), Some(1));
        assert_eq!(cache.get(&"a", at(1_029)), Some(1));
        assert_eq!(cache.get(&"a", at(1_040)), None);
        let off = TtlCache::new(Duration::ZERO);
        off.put("a", 1, at(1_000));
        assert_eq!(off.get(&"a", at(1_000)), None);
    }
}
