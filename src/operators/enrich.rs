//! `enrich_cached`: a per-worker cache with a time-to-live in front of a lookup.

use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::dataflow::Stream;
use crate::operators::stateless::transform;
use crate::runtime::push::Data;

/// A cache of `getter(key)` results, each kept for a time-to-live. One lives on each
/// worker of an [`enrich_cached`](Stream::enrich_cached) step.
pub struct TtlCache<K, C> {
    getter: Arc<dyn Fn(&K) -> C + Send + Sync>,
    ttl: Duration,
    entries: FxHashMap<K, (C, Option<Instant>)>,
}

impl<K, C> std::fmt::Debug for TtlCache<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone, C> TtlCache<K, C> {
    /// The value for `key`: cached if it was fetched less than the TTL ago, otherwise
    /// fetched now with the getter.
    pub fn get(&mut self, key: &K) -> &C {
        let now = Instant::now();
        let fresh = self
            .entries
            .get(key)
            .is_some_and(|(_, expires)| expires.is_none_or(|t| now < t));
        if !fresh {
            let value = (self.getter)(key);
            // A TTL too large to represent never expires.
            self.entries
                .insert(key.clone(), (value, now.checked_add(self.ttl)));
        }
        &self.entries.get(key).expect("just ensured").0
    }

    /// Forgets `key`, so the next `get` fetches it again.
    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

impl<T: Data> Stream<T> {
    /// Maps each item with `mapper(cache, item)`, where `cache.get(key)` returns
    /// `getter(key)`, cached per worker for `ttl` (use `Duration::MAX` to never expire).
    /// For enriching items from a slow lookup (a database, a service).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use waxfast::{Dataflow, run_main, connectors::testing::{TestingSource, TestingSink}};
    /// let flow = Dataflow::new("f");
    /// let (sink, out) = TestingSink::new();
    /// flow.input("inp", TestingSource::new(vec!["eur", "usd", "eur"]))
    ///     .enrich_cached(
    ///         "rate",
    ///         |cur: &String| if cur == "eur" { 1.1 } else { 1.0 },
    ///         |cache, cur: &str| (cur, *cache.get(&cur.to_string())),
    ///         Duration::from_secs(60),
    ///     )
    ///     .output("out", sink);
    /// run_main(&flow).unwrap();
    /// assert_eq!(out.take(), vec![("eur", 1.1), ("usd", 1.0), ("eur", 1.1)]);
    /// ```
    pub fn enrich_cached<K, C, U>(
        &self,
        step: &str,
        getter: impl Fn(&K) -> C + Send + Sync + 'static,
        mapper: impl Fn(&mut TtlCache<K, C>, T) -> U + Send + Sync + 'static,
        ttl: Duration,
    ) -> Stream<U>
    where
        K: Hash + Eq + Clone + 'static,
        C: 'static,
        U: Data,
    {
        let getter: Arc<dyn Fn(&K) -> C + Send + Sync> = Arc::new(getter);
        let mapper = Arc::new(mapper);
        self.unary(step, "enrich_cached", move |ctx, inp, out| {
            let mut cache = TtlCache {
                getter: getter.clone(),
                ttl,
                entries: FxHashMap::default(),
            };
            let mapper = mapper.clone();
            transform(ctx, inp, out, move |b: &mut Vec<T>, o: &mut Vec<U>| {
                o.extend(b.drain(..).map(|x| mapper(&mut cache, x)))
            });
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fetches_once_within_ttl_and_again_after() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let mut cache = TtlCache {
            getter: Arc::new(move |k: &u32| {
                c.fetch_add(1, Ordering::SeqCst);
                k * 10
            }),
            ttl: Duration::from_millis(30),
            entries: FxHashMap::default(),
        };
        assert_eq!(*cache.get(&1), 10);
        assert_eq!(*cache.get(&1), 10);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(*cache.get(&1), 10);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache.remove(&1);
        cache.get(&1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn max_ttl_never_expires() {
        let mut cache = TtlCache {
            getter: Arc::new(|k: &u32| *k),
            ttl: Duration::MAX,
            entries: FxHashMap::default(),
        };
        assert_eq!(*cache.get(&7), 7);
        assert!(cache.entries[&7].1.is_none());
    }
}
