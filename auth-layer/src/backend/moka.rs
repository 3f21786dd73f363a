//! [`MokaBackend`]: an in-memory backend on moka's concurrent cache, with per-entry expiry and
//! a tag index kept consistent through moka's eviction listener. Besides bytes, it keeps typed
//! stores' records as they are ("live"), so reading one neither opens nor decodes anything.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::Expiry;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

use super::{Backend, When};
use crate::error::StoreError;

/// A stored value. `id` is unique per `put`, so that the index can tell a key's current value
/// from one it replaced.
#[derive(Clone)]
struct Entry {
    id: u64,
    value: Stored,
    ttl: Option<Duration>,
    tags: Arc<[Arc<str>]>,
}

/// What an entry holds: bytes (the [`Backend`] API) or a typed store's record as it is.
#[derive(Clone)]
enum Stored {
    Bytes(Bytes),
    Live(LiveValue),
}

/// A record kept as it is, for the typed store that put it.
pub(crate) type LiveValue = Arc<dyn Any + Send + Sync>;

/// tag → (key → id of the value that carries the tag).
type TagIndex = HashMap<Arc<str>, Listed>;

/// The keys listed under one tag, each with the id of the value that carries it. Most tags
/// (a session's `sid`, a user's `sub`) list a single key, which then takes no table of its own.
enum Listed {
    One(Arc<str>, u64),
    Many(HashMap<Arc<str>, u64>),
}

impl Listed {
    fn insert(&mut self, key: Arc<str>, id: u64) {
        match self {
            Self::One(listed, listed_id) if *listed == key => *listed_id = id,
            Self::One(listed, listed_id) => {
                let many = HashMap::from([(listed.clone(), *listed_id), (key, id)]);
                *self = Self::Many(many);
            }
            Self::Many(keys) => {
                keys.insert(key, id);
            }
        }
    }

    /// Unlists `key` if it is listed for the value `id`; returns whether nothing is listed now.
    fn remove(&mut self, key: &str, id: u64) -> bool {
        match self {
            Self::One(listed, listed_id) => **listed == *key && *listed_id == id,
            Self::Many(keys) => {
                if keys.get(key) == Some(&id) {
                    keys.remove(key);
                }
                keys.is_empty()
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(..) => 1,
            Self::Many(keys) => keys.len(),
        }
    }

    fn entries(&self) -> Vec<(Arc<str>, u64)> {
        match self {
            Self::One(key, id) => vec![(key.clone(), *id)],
            Self::Many(keys) => keys.iter().map(|(k, id)| (k.clone(), *id)).collect(),
        }
    }
}

struct PerEntryTtl;

impl Expiry<Arc<str>, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &Arc<str>, entry: &Entry, _now: Instant) -> Option<Duration> {
        entry.ttl
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        entry: &Entry,
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        entry.ttl
    }
}

/// Keeps records in this process's memory. Fast and simple; not shared between processes, and
/// gone on restart. Cheap to clone (the clones share the cache).
///
/// ```
/// use auth_layer::backend::MokaBackend;
/// use auth_layer::store::ServerSessionStore;
/// # use auth_layer::AuthConfig;
/// # let config = AuthConfig::builder().issuer("https://op.example/").client_id("c").client_secret("s")
/// #     .secret("a secret of at least thirty-two bytes, from the environment").base_url("http://localhost:3000").build()?;
///
/// // Sessions sealed in memory as they would be in Redis (for a test of the stored form);
/// // `ServerSessionStore::in_memory` keeps them as they are instead.
/// let store = ServerSessionStore::new(MokaBackend::with_max_entries(10_000), &config);
/// # let _ = store;
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct MokaBackend {
    /// Keyed by `Arc<str>`: the index lists the very same key.
    cache: Cache<Arc<str>, Entry>,
    index: Arc<Mutex<TagIndex>>,
    next_id: Arc<AtomicU64>,
}

impl std::fmt::Debug for MokaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaBackend").field("entries", &self.cache.entry_count()).finish()
    }
}

impl Default for MokaBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MokaBackend {
    /// The live record under `key` (see [`put_live`](Self::put_live)); `None` when absent,
    /// expired, or stored as bytes.
    pub(crate) async fn get_live(&self, key: &str) -> Option<LiveValue> {
        match self.cache.get(key)?.value {
            Stored::Live(value) => Some(value),
            Stored::Bytes(_) => None,
        }
    }

    /// Keeps `value` as it is under `key`, with the TTL and tags `put` would give it. `get`
    /// does not see it: only [`get_live`](Self::get_live) does.
    pub(crate) async fn put_live(&self, key: &str, value: LiveValue, ttl: Option<Duration>, tags: Vec<String>) {
        self.put_stored(key, Stored::Live(value), ttl, tags, When::Always).await;
    }

    /// [`put_live`](Self::put_live) only if `key` holds a value now, as [`Backend::update`];
    /// returns whether it did.
    pub(crate) async fn update_live(
        &self,
        key: &str,
        value: LiveValue,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> bool {
        self.put_stored(key, Stored::Live(value), ttl, tags, When::Present).await
    }

    /// Stores `value` when the key's state allows it (`when`); returns whether it did.
    async fn put_stored(&self, key: &str, value: Stored, ttl: Option<Duration>, tags: Vec<String>, when: When) -> bool {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tags: Arc<[Arc<str>]> = tags.into_iter().map(Arc::from).collect();
        let entry = Entry { id, value, ttl, tags };
        // Checking the current value, listing the key and storing the value happen under moka's
        // per-key lock, so concurrent writers and deleters of one key leave the index listing
        // exactly the value that won, and an update never lands after a deletion.
        let shared_key: Arc<str> = Arc::from(key);
        let result = self.cache.entry(shared_key.clone()).and_compute_with(|current| {
            if !when.allows(current.is_some()) {
                return Op::Nop;
            }
            if !entry.tags.is_empty() {
                let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
                for tag in entry.tags.iter() {
                    match index.get_mut(tag) {
                        Some(listed) => listed.insert(shared_key.clone(), id),
                        None => {
                            index.insert(tag.clone(), Listed::One(shared_key.clone(), id));
                        }
                    }
                }
            }
            Op::Put(entry)
        });
        matches!(result, CompResult::Inserted(_) | CompResult::ReplacedWith(_))
    }

    /// An unbounded in-memory backend.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// An in-memory backend holding at most `max_entries`; the least recently used are evicted
    /// first, and a new entry always gets a place (a new login, a new logout marker: never
    /// refused for being new, as moka's default frequency-based admission may do).
    pub fn with_max_entries(max_entries: u64) -> Self {
        Self::build(Some(max_entries))
    }

    fn build(max_entries: Option<u64>) -> Self {
        let index: Arc<Mutex<TagIndex>> = Arc::default();
        let listener_index = index.clone();
        let mut builder = Cache::<Arc<str>, Entry>::builder().expire_after(PerEntryTtl).eviction_listener(
            move |key: Arc<Arc<str>>, entry: Entry, _cause| {
                // Whatever removed it (expiry, eviction, replacement, deletion), the value
                // `entry.id` no longer lists `key` under its tags.
                unlist(&listener_index, &key, &entry);
            },
        );
        if let Some(max) = max_entries {
            builder = builder.max_capacity(max).eviction_policy(moka::policy::EvictionPolicy::lru());
        }
        Self { cache: builder.build(), index, next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// Runs moka's pending housekeeping now (expiry, eviction and their index updates), which
    /// otherwise happens as the cache is used.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// How many entries the cache holds (approximate until pending tasks have run).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// How many keys the index lists under `tag` (for tests of index consistency).
    pub fn indexed_count(&self, tag: &str) -> usize {
        self.index.lock().unwrap_or_else(|e| e.into_inner()).get(tag).map_or(0, Listed::len)
    }
}

fn unlist(index: &Mutex<TagIndex>, key: &str, entry: &Entry) {
    let mut index = index.lock().unwrap_or_else(|e| e.into_inner());
    for tag in entry.tags.iter() {
        if index.get_mut(tag).is_some_and(|listed| listed.remove(key, entry.id)) {
            index.remove(tag);
        }
    }
}

#[async_trait]
impl Backend for MokaBackend {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.cache.get(key).and_then(|entry| match entry.value {
            Stored::Bytes(bytes) => Some(bytes),
            Stored::Live(_) => None,
        }))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>, tags: Vec<String>) -> Result<(), StoreError> {
        self.put_stored(key, Stored::Bytes(value), ttl, tags, When::Always).await;
        Ok(())
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        Ok(self.put_stored(key, Stored::Bytes(value), ttl, tags, When::Present).await)
    }

    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        Ok(self.put_stored(key, Stored::Bytes(value), ttl, tags, When::Absent).await)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        // Through the compute path, as writes and updates go: moka orders compute operations on
        // one key, not a plain `invalidate` with them, and an update must never land after a
        // deletion it raced.
        self.cache.entry(Arc::from(key)).and_compute_with(|current| match current {
            Some(_) => Op::Remove,
            None => Op::Nop,
        });
        Ok(())
    }

    async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        let listed = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.get(tag).map(Listed::entries).unwrap_or_default()
        };
        let mut deleted = 0;
        for (key, _) in listed {
            // Remove the key's current value if it carries the tag: the listed one, or one an
            // update put since with the same tag (a renewed session is still that session). A
            // value put since without the tag stays.
            let result = self.cache.entry(key).and_compute_with(|current| match current {
                Some(entry) if entry.value().tags.iter().any(|t| &**t == tag) => Op::Remove,
                _ => Op::Nop,
            });
            if matches!(result, CompResult::Removed(_)) {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        let listed = {
            let index = self.index.lock().unwrap_or_else(|e| e.into_inner());
            index.get(tag).map(Listed::entries).unwrap_or_default()
        };
        // An expired value may still be listed until housekeeping runs; never report it.
        Ok(listed
            .into_iter()
            .filter(|(key, _)| self.cache.contains_key(&**key))
            .map(|(key, _)| key.to_string())
            .collect())
    }
}

// The behaviours every backend shares (get/put/delete, TTL, tags, concurrency, corrupt bytes)
// are the conformance suite in tests/e2e/backends.rs, run against moka too; here only what is
// moka's own: the index following housekeeping and eviction.
#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    #[tokio::test]
    async fn expired_entries_are_never_returned_and_leave_the_index() {
        let backend = MokaBackend::new();
        backend.put("short", Bytes::from_static(b"v"), Some(Duration::from_millis(50)), tags(&["t"])).await.unwrap();
        backend.put("long", Bytes::from_static(b"v"), None, tags(&["t"])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(backend.get("short").await.unwrap(), None);
        assert_eq!(backend.keys_by_tag("t").await.unwrap(), ["long"], "an expired key is not listed");
        // moka's timer wheel removes expired entries at a resolution of about one second.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        backend.run_pending_tasks().await;
        assert_eq!(backend.indexed_count("t"), 1, "housekeeping unlists the expired key");
    }

    #[tokio::test]
    async fn at_the_bound_the_newest_entry_is_kept_and_the_least_recently_used_goes() {
        let backend = MokaBackend::with_max_entries(100);
        for i in 0..100 {
            backend.put(&format!("old{i}"), Bytes::from_static(b"v"), None, Vec::new()).await.unwrap();
        }
        // Entries read often: a frequency-based admission would keep them over a new one.
        for _ in 0..20 {
            for i in 0..100 {
                backend.get(&format!("old{i}")).await.unwrap();
            }
        }
        backend.run_pending_tasks().await;
        for i in 0..10 {
            backend.put(&format!("new{i}"), Bytes::from_static(b"v"), None, Vec::new()).await.unwrap();
            backend.run_pending_tasks().await;
        }
        for i in 0..10 {
            assert!(backend.get(&format!("new{i}")).await.unwrap().is_some(), "new{i} was refused a place");
        }
        backend.run_pending_tasks().await;
        assert!(backend.entry_count() <= 100);
        assert!(backend.get("old0").await.unwrap().is_none(), "the least recently used went");
    }

    #[tokio::test]
    async fn evicted_entries_leave_the_index() {
        let backend = MokaBackend::with_max_entries(10);
        for i in 0..200 {
            backend.put(&format!("k{i}"), Bytes::from_static(b"v"), None, tags(&["t"])).await.unwrap();
            backend.run_pending_tasks().await;
        }
        backend.run_pending_tasks().await;
        let live = (0..200).filter(|i| backend.cache.contains_key(format!("k{i}").as_str())).count();
        assert!(live <= 10, "{live} entries kept");
        assert_eq!(backend.indexed_count("t"), live, "the index lists exactly the live entries");
    }
}
