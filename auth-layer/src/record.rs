//! Typed stores: the [`Store`] trait that `#[derive(Store)]` implements, and
//! [`TypedStore<T, B>`](TypedStore), which keeps records of `T` in a [`Backend`] (in memory by
//! default) under their key, with their time to live, and findable by their indexed fields. A
//! store made with [`TypedStore::in_memory`] (what `T::store` makes) keeps records as they are;
//! one over any other backend writes them in their stored form ([`Store::to_stored`]), sealed
//! when the record asks for it.
//!
//! This module is generic: it names no session type. A record chooses how it is written by
//! overriding [`Store::to_stored`] and [`Store::from_stored`] (the derive's `codec` attribute).
//!
//! ```
//! use auth_layer::Store;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Store)]
//! #[store(key = "cart:{user_id}", ttl = "30m", encrypt)]
//! struct Cart {
//!     user_id: String,
//!     #[store(index)]
//!     org_id: String,
//!     items: Vec<String>,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), auth_layer::store::StoreError> {
//! let carts = Cart::store();
//! carts.set(&Cart { user_id: "u-1".into(), org_id: "acme".into(), items: vec!["book".into()] }).await?;
//! let cart = carts.get("u-1").await?.expect("stored");
//! assert_eq!(cart.items, ["book"]);
//! assert_eq!(carts.delete_by(Cart::ORG_ID, "acme").await?, 1);
//! assert!(carts.get("u-1").await?.is_none());
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, MokaBackend};
use crate::error::{Cause, StoreError, cause};
use crate::seal::{KeyHasher, Sealer};

/// The current version of the stored envelope.
const ENVELOPE_VERSION: u8 = 1;

/// A record a typed store can keep. Implemented by `#[derive(Store)]`; see the module docs.
#[doc(alias = "Record")]
pub trait Store: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The key's fields, as `get` and `delete` take them: `&str` for a `String` field,
    /// `&T` for others, a tuple for several.
    type Key<'a>
    where
        Self: 'a;
    /// The store's name: part of its index tags and of its encryption key's derivation.
    const NAME: &'static str;
    /// The default time to live; `None` means no expiry.
    const TTL: Option<Duration>;
    /// Whether records are sealed at rest.
    const ENCRYPT: bool;
    /// The full key of this record.
    fn key(&self) -> String;
    /// The full key for these key fields.
    fn key_from(key: Self::Key<'_>) -> String;
    /// Adds `field=value` for each indexed field that has a value.
    fn index_entries(&self, out: &mut Vec<String>);

    /// The record as a store writes it in a backend, before sealing: by default the versioned
    /// JSON envelope `{"v":1,"d":...}`. `#[store(codec = path)]` makes it `path::encode(self)`.
    fn to_stored(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(&EnvelopeOut { v: ENVELOPE_VERSION, d: self }).map_err(|e| StoreError::encode(Self::NAME, e))
    }

    /// The record from what [`to_stored`](Self::to_stored) wrote (or an earlier version of
    /// it). `#[store(codec = path)]` makes it `path::decode(bytes)`.
    fn from_stored(bytes: &[u8]) -> Result<Self, Cause> {
        match serde_json::from_slice::<EnvelopeIn<Self>>(bytes) {
            Ok(EnvelopeIn { v: ENVELOPE_VERSION, d: Some(record) }) => Ok(record),
            Ok(EnvelopeIn { v, .. }) => Err(cause(format!("unknown envelope version {v}"))),
            Err(err) => Err(cause(err)),
        }
    }
}

/// An indexed field of `T`, for [`TypedStore::delete_by`] and [`TypedStore::find_by`].
/// `#[derive(Store)]` makes one associated constant per `#[store(index)]` field, named after
/// the field in upper case (`Cart::ORG_ID`).
pub struct Index<T> {
    field: &'static str,
    _record: PhantomData<fn() -> T>,
}

impl<T> Index<T> {
    #[doc(hidden)]
    pub const fn new(field: &'static str) -> Self {
        Self { field, _record: PhantomData }
    }

    /// The field's name.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl<T> Clone for Index<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Index<T> {}

impl<T> std::fmt::Debug for Index<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Index({})", self.field)
    }
}

/// A field type that can be indexed: strings, integers, booleans, chars, and `Option`s of them
/// (`None` is not indexed).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a store index",
    label = "not indexable",
    note = "an indexed field must be a String, an integer, a bool, a char, or an Option of one of these"
)]
pub trait Indexable {
    /// The value as it is indexed, or `None` for no entry.
    fn index_value(&self) -> Option<String>;
}

macro_rules! indexable_by_display {
    ($($t:ty),*) => {$(
        impl Indexable for $t {
            fn index_value(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}

indexable_by_display!(String, str, bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl<T: Indexable + ?Sized> Indexable for &T {
    fn index_value(&self) -> Option<String> {
        (**self).index_value()
    }
}

impl<T: Indexable> Indexable for Option<T> {
    fn index_value(&self) -> Option<String> {
        self.as_ref().and_then(Indexable::index_value)
    }
}

/// What a typed store writes: a versioned envelope, so the format can change later.
#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u8,
    d: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    v: u8,
    d: Option<T>,
}

/// The memory an allocation of `len` bytes takes: the allocator's chunk (glibc's and most
/// others': the size and an 8-byte header, rounded up to 16, at least 32).
pub(crate) fn chunk(len: usize) -> usize {
    if len == 0 { 0 } else { (len + 8).next_multiple_of(16).max(32) }
}

/// The memory a key of a [`DecodedCache`] holds beyond itself.
pub(crate) trait KeyMemory {
    /// Bytes on the heap, in allocator chunks.
    fn heap(&self) -> usize;
}

impl KeyMemory for String {
    fn heap(&self) -> usize {
        chunk(self.capacity())
    }
}

impl<const N: usize> KeyMemory for [u8; N] {
    fn heap(&self) -> usize {
        0
    }
}

/// What moka keeps for each entry of a weighed cache beside the key and value it is given: its
/// entry and its bookkeeping (access order, the key's own `Arc`, the hash table's share),
/// measured (`the_bound_counts_the_memory_the_cache_holds`).
const MOKA_ENTRY: usize = 352;

/// Values decoded from stored bytes, kept by key with the bytes they came from, so that a read
/// finding the same bytes again gets the value without opening or decoding them: the one
/// decoded-value cache of the crate (typed stores by full key, the cookie store by sealed value).
/// Bytes that differ from the kept ones are a miss, never an old value. Bounded by the memory
/// an entry holds (moka's entry, the key, the bytes and the decoded value, as the cache's owner
/// counts it), the least used entries making room.
///
/// In front of that bounded cache sits a small table of the entries found last, one slot per
/// hash of the key: a session read again and again (every request of a logged-in user) is found
/// there with one uncontended lock and a reference count, where the bounded cache's lookup also
/// records the read for its eviction policy and runs its housekeeping. A slot holds at most one
/// entry, which the next entry with the same slot replaces; what it holds is checked against the
/// key and the bytes as any hit is.
pub(crate) struct DecodedCache<K, V> {
    entries: moka::sync::Cache<K, Arc<Decoded<K, V>>>,
    recent: Arc<Recent<K, V>>,
}

struct Decoded<K, V> {
    key: K,
    stored: Bytes,
    value: Arc<V>,
}

/// A slot of the recent table: the entry found there last, if any.
type Slot<K, V> = Mutex<Option<Arc<Decoded<K, V>>>>;

/// The entries found last, by slot.
struct Recent<K, V> {
    slots: Box<[Slot<K, V>]>,
    hasher: foldhash::fast::RandomState,
}

/// A slot of the recent table for every this many bytes of the cache's bound, up to
/// [`MAX_RECENT`]: what the table keeps beyond the bound (entries the bounded cache has let go
/// but a slot still holds) stays a small share of it.
const RECENT_SHARE: u64 = 64 << 10;
/// At most this many recent slots (32 MiB, the default bound, gives 512).
const MAX_RECENT: u64 = 1024;

impl<K, V> Clone for DecodedCache<K, V> {
    fn clone(&self) -> Self {
        Self { entries: self.entries.clone(), recent: self.recent.clone() }
    }
}

impl<K, V> DecodedCache<K, V>
where
    K: std::hash::Hash + Eq + Clone + KeyMemory + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A cache holding about `max_bytes` of memory, each value counted as `memory` says it
    /// holds behind its `Arc` (given the value and the length of the bytes it came from);
    /// `None` for 0 (no cache).
    pub(crate) fn new(max_bytes: u64, memory: fn(&V, usize) -> usize) -> Option<Self> {
        (max_bytes > 0).then(|| {
            let slots = (max_bytes / RECENT_SHARE).clamp(1, MAX_RECENT).next_power_of_two();
            let recent = Arc::new(Recent {
                slots: (0..slots).map(|_| Mutex::new(None)).collect(),
                hasher: foldhash::fast::RandomState::default(),
            });
            let evicted = Arc::downgrade(&recent);
            Self {
                entries: moka::sync::Cache::builder()
                    .max_capacity(max_bytes)
                    .weigher(move |key: &K, entry: &Arc<Decoded<K, V>>| {
                        // The key twice (moka's copy and the entry's), the entry, its bytes, the value.
                        let held = MOKA_ENTRY
                            + 2 * key.heap()
                            + chunk(16 + std::mem::size_of::<Decoded<K, V>>())
                            + chunk(entry.stored.len())
                            + memory(&entry.value, entry.stored.len());
                        u32::try_from(held).unwrap_or(u32::MAX)
                    })
                    // An entry the bound lets go leaves the recent table too: nothing is kept
                    // beyond the bound.
                    .eviction_listener(move |key: Arc<K>, entry: Arc<Decoded<K, V>>, _cause| {
                        if let Some(recent) = evicted.upgrade() {
                            let mut slot = lock(recent.slot(&*key));
                            if slot.as_ref().is_some_and(|kept| Arc::ptr_eq(kept, &entry)) {
                                *slot = None;
                            }
                        }
                    })
                    .build(),
                recent,
            }
        })
    }

    /// The value decoded from `stored` under `key`, if these very bytes were decoded before.
    pub(crate) fn get<Q>(&self, key: &Q, stored: &[u8]) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let slot = self.recent.slot(key);
        // The lock is held for a reference count only; the comparison runs after it.
        let recent = lock(slot).clone();
        if let Some(hit) = recent.filter(|hit| hit.key.borrow() == key && same_bytes(&hit.stored, stored)) {
            return Some(hit.value.clone());
        }
        let hit = self.entries.get(key).filter(|hit| same_bytes(&hit.stored, stored))?;
        let value = hit.value.clone();
        *lock(slot) = Some(hit);
        Some(value)
    }

    /// Keeps `value`, decoded from `stored`, under `key`.
    pub(crate) fn insert(&self, key: K, stored: Bytes, value: Arc<V>) {
        let entry = Arc::new(Decoded { key: key.clone(), stored, value });
        *lock(self.recent.slot(&key)) = Some(entry.clone());
        self.entries.insert(key, entry);
    }

    /// Forgets `key`.
    pub(crate) fn invalidate<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut recent = lock(self.recent.slot(key));
        if recent.as_ref().is_some_and(|entry| entry.key.borrow() == key) {
            *recent = None;
        }
        drop(recent);
        self.entries.invalidate(key);
    }

    /// The weight of what the bounded cache holds, after its pending evictions.
    pub(crate) fn weighed_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    /// How many entries the recent table holds (for tests).
    #[cfg(test)]
    fn recent_len(&self) -> usize {
        self.recent.slots.iter().filter(|slot| lock(slot).is_some()).count()
    }
}

impl<K, V> Recent<K, V> {
    fn slot<Q: std::hash::Hash + ?Sized>(&self, key: &Q) -> &Slot<K, V> {
        use std::hash::BuildHasher;
        // The table's length is a power of two.
        let index = self.hasher.hash_one(key) as usize & (self.slots.len() - 1);
        &self.slots[index]
    }
}

/// A lock that a panic elsewhere does not poison for good: a slot holds a whole entry or none.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records of `T` in backend `B`: in memory ([`MokaBackend`]) unless told otherwise.
///
/// ```
/// use auth_layer::Store;
/// use auth_layer::backend::MokaBackend;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Store)]
/// #[store(key = "pref:{user_id}", ttl = "30d", encrypt)]
/// struct Preferences {
///     user_id: String,
///     theme: String,
/// }
///
/// # async fn demo() -> Result<(), auth_layer::StoreError> {
/// // In memory (`Preferences::store()`), or sealed in any backend, Redis or PostgreSQL alike:
/// let prefs = Preferences::store_in(MokaBackend::new(), &["a secret of at least thirty-two bytes"]);
/// prefs.set(&Preferences { user_id: "u-1".into(), theme: "dark".into() }).await?;
/// assert_eq!(prefs.get("u-1").await?.map(|p| p.theme).as_deref(), Some("dark"));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct TypedStore<T, B = MokaBackend> {
    /// Shared, so that the app's other state can live in the same backend (one connection).
    backend: Arc<B>,
    /// How records are kept: as they are in memory, or in their stored form in the backend.
    mode: Mode<T>,
    /// The name index tags start with: `T::NAME`, after the namespace.
    tag_name: String,
    ttl: Option<Duration>,
    _record: PhantomData<fn() -> T>,
}

/// The two ways a [`TypedStore`] keeps records; each method of the store matches once.
enum Mode<T> {
    /// [`TypedStore::in_memory`]: each record kept as it is (an `Arc<T>`) in this moka cache,
    /// neither serialized nor sealed.
    Live(MokaBackend),
    /// [`TypedStore::new`]: records written to the backend in their stored form.
    Stored(StoredForm<T>),
}

impl<T> Clone for Mode<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Live(memory) => Self::Live(memory.clone()),
            Self::Stored(form) => Self::Stored(form.clone()),
        }
    }
}

/// How a store writes records as bytes: sealed or not, under which keys, and the records it
/// decoded.
struct StoredForm<T> {
    sealer: Option<Sealer>,
    /// Set by [`TypedStore::with_hashed_keys`]: records are stored under a keyed hash of
    /// their key, not the key itself.
    hashed_keys: Option<KeyHasher>,
    /// `{name}:h:`, what a hashed key starts with (after the namespace).
    hashed_prefix: String,
    /// `{namespace}/` before every stored key, set by [`TypedStore::with_namespace`]; empty
    /// otherwise.
    namespace: String,
    opened: Option<DecodedCache<String, T>>,
}

impl<T> Clone for StoredForm<T> {
    fn clone(&self) -> Self {
        Self {
            sealer: self.sealer.clone(),
            hashed_keys: self.hashed_keys.clone(),
            hashed_prefix: self.hashed_prefix.clone(),
            namespace: self.namespace.clone(),
            opened: self.opened.clone(),
        }
    }
}

impl<T, B> Clone for TypedStore<T, B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            mode: self.mode.clone(),
            tag_name: self.tag_name.clone(),
            ttl: self.ttl,
            _record: PhantomData,
        }
    }
}

impl<T: Store, B> std::fmt::Debug for TypedStore<T, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedStore").field("record", &T::NAME).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl<T: Store> TypedStore<T, MokaBackend> {
    /// A store of `T` in this process's memory that keeps each record as it is: reads neither
    /// open nor decode anything, and nothing is sealed (sealing protects nothing in the memory
    /// of the process that holds the key). What `T::store` makes.
    pub fn in_memory() -> Self {
        Self::in_memory_in(MokaBackend::new())
    }

    /// [`in_memory`](Self::in_memory), holding at most `max_entries` records: past it, the
    /// least recently used make room (moka's TinyLFU policy).
    pub fn in_memory_bounded(max_entries: u64) -> Self {
        Self::in_memory_in(MokaBackend::with_max_entries(max_entries))
    }

    fn in_memory_in(backend: MokaBackend) -> Self {
        Self {
            mode: Mode::Live(backend.clone()),
            backend: Arc::new(backend),
            tag_name: T::NAME.to_owned(),
            ttl: T::TTL,
            _record: PhantomData,
        }
    }
}

impl<T: Store> StoredForm<T> {
    /// Where the record with full key `key` may be stored, where new writes go first: the key
    /// itself, or with hashed keys its hash under each secret and then the key (records of
    /// earlier versions). No allocation without hashed keys: this is every read's path.
    fn stored_keys<'k>(&'k self, key: &'k str) -> impl Iterator<Item = Cow<'k, str>> + 'k {
        let hashes = self.hashed_keys.iter().flat_map(move |hasher| hasher.hashes(&self.hashed_prefix, key));
        let plain =
            if self.namespace.is_empty() { Cow::Borrowed(key) } else { Cow::Owned(format!("{}{key}", self.namespace)) };
        hashes.map(Cow::Owned).chain(std::iter::once(plain))
    }

    /// The record's stored bytes, sealed (bound to the key it is stored under) when the store
    /// seals.
    fn serialize_under(&self, stored_key: &str, record: &T) -> Result<Bytes, StoreError> {
        let plain = record.to_stored()?;
        Ok(match &self.sealer {
            Some(sealer) => Bytes::from(sealer.seal_bytes(stored_key, &plain)),
            None => Bytes::from(plain),
        })
    }

    /// The record in `bytes`, found under `key`; `None` (with a log line) when it does not
    /// open or decode.
    fn decode(&self, key: &str, bytes: &[u8]) -> Option<T> {
        let opened;
        let plain: &[u8] = match &self.sealer {
            Some(sealer) => {
                // Stored as bytes; earlier versions stored base64url text, which still opens.
                let Some(plain) = sealer.open_stored(key, bytes) else {
                    tracing::warn!(
                        store = T::NAME,
                        "record does not open (corrupt, moved or another secret); treated as absent"
                    );
                    return None;
                };
                opened = plain;
                &opened
            }
            None => bytes,
        };
        match T::from_stored(plain) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::warn!(store = T::NAME, %err, "record does not decode; treated as absent");
                None
            }
        }
    }

    /// The record in `stored`, found under `key`: from the opened cache when these are the
    /// bytes it was decoded from.
    fn open_shared(&self, key: &str, stored: Bytes) -> Option<Arc<T>> {
        let Some(cache) = &self.opened else { return self.decode(key, &stored).map(Arc::new) };
        if let Some(hit) = cache.get(key, &stored) {
            return Some(hit);
        }
        let record = self.decode(key, &stored).map(Arc::new);
        match &record {
            Some(record) => cache.insert(key.to_owned(), stored, record.clone()),
            None => cache.invalidate(key),
        }
        record
    }
}

impl<T: Store, B: Backend> TypedStore<T, B> {
    /// A store of `T` in `backend`, records written in their stored form
    /// ([`Store::to_stored`]). When `T` is encrypted, its key is derived from the first of
    /// `secrets` (the others still open records, for rotation).
    ///
    /// # Panics
    /// When `T` is encrypted and `secrets` is empty.
    pub fn new<S: AsRef<[u8]>>(backend: B, secrets: &[S]) -> Self {
        let sealer = T::ENCRYPT.then(|| Sealer::new(secrets, &format!("auth-layer typed store v1: {}", T::NAME)));
        Self {
            backend: Arc::new(backend),
            mode: Mode::Stored(StoredForm {
                sealer,
                hashed_keys: None,
                hashed_prefix: String::new(),
                namespace: String::new(),
                opened: None,
            }),
            tag_name: T::NAME.to_owned(),
            ttl: T::TTL,
            _record: PhantomData,
        }
    }

    /// The same store, keeping up to about `max_bytes` of the records it has decoded, so that
    /// [`get_shared`](Self::get_shared) of a record whose stored bytes have not changed skips
    /// opening and decoding them again. The backend is still asked on every read (a deleted or
    /// replaced record is never served from this cache): only the work after it is saved.
    /// The least used entries make room for new ones.
    /// `0` turns the cache off. In memory ([`TypedStore::in_memory`]) nothing is decoded:
    /// nothing changes.
    pub fn with_opened_cache(mut self, max_bytes: u64) -> Self {
        if let Mode::Stored(form) = &mut self.mode {
            // A record of the app's type, decoded, is taken to be about as large as its bytes.
            form.opened = DecodedCache::new(max_bytes, |_: &T, stored| chunk(16 + std::mem::size_of::<T>()) + stored);
        }
        self
    }

    /// The same store, keeping records under a keyed hash of their key (HMAC-SHA256 under a
    /// key derived from the first of `secrets`), `{name}:h:{hash}`, instead of the key itself:
    /// whoever reads the backend's keyspace (a replica, a backup, `MONITOR`) does not learn the
    /// keys, which matters when a key is a secret (a bearer session id). Records written before,
    /// under their plain key or a hash under an earlier secret, are still found, read, updated
    /// and deleted where they are (a read that finds none costs one lookup per place, as a
    /// session that is gone does), and expire there; new records go under the current hash.
    /// In memory ([`TypedStore::in_memory`]) there is no keyspace to hide: nothing changes.
    pub fn with_hashed_keys<S: AsRef<[u8]>>(mut self, secrets: &[S]) -> Self {
        if let Mode::Stored(form) = &mut self.mode {
            form.hashed_keys = Some(KeyHasher::new(secrets, &format!("auth-layer typed store keys v1: {}", T::NAME)));
            form.hashed_prefix = format!("{}{}:h:", form.namespace, T::NAME);
        }
        self
    }

    /// The same store, its records' keys and index tags under `namespace` (`{namespace}/...`):
    /// stores of one record type that share a backend (the tenants of a multi-tenant app) never
    /// see, find or delete each other's records. In memory ([`TypedStore::in_memory`]) each
    /// store is its own space already: nothing changes.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        if let Mode::Stored(form) = &mut self.mode {
            form.namespace = format!("{namespace}/");
            self.tag_name = format!("{namespace}/{}", T::NAME);
            if form.hashed_keys.is_some() {
                form.hashed_prefix = format!("{}{}:h:", form.namespace, T::NAME);
            }
        }
        self
    }

    /// The same store with another time to live (`None`: no expiry) for records set from now on.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The time to live of records set from now on.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, shared: to keep other state in it (what a session store offers as the
    /// home of the fleet's shared state).
    pub fn shared_backend(&self) -> Arc<B> {
        self.backend.clone()
    }

    /// Whether records live in this process's memory only ([`TypedStore::in_memory`]).
    pub fn is_in_memory(&self) -> bool {
        matches!(self.mode, Mode::Live(_))
    }

    /// Stores `record` under its key, with the store's time to live.
    pub async fn set(&self, record: &T) -> Result<(), StoreError> {
        self.set_with_ttl(record, self.ttl).await
    }

    /// Stores `record` under its key for `ttl`.
    ///
    /// In a store made by [`in_memory`](TypedStore::in_memory) the record is kept as it is,
    /// so that reads neither decode nor open it; it is copied here by a serialization round
    /// trip (records need not be `Clone`), or not at all with [`set_shared`](Self::set_shared).
    pub async fn set_with_ttl(&self, record: &T, ttl: Option<Duration>) -> Result<(), StoreError> {
        match &self.mode {
            Mode::Live(_) => self.set_shared(Arc::new(copy_of(record)?), ttl).await,
            Mode::Stored(form) => self.put_stored(form, record, ttl).await,
        }
    }

    /// Stores a shared `record` under its key for `ttl`: in memory, this very `Arc`, which
    /// [`get_shared`](Self::get_shared) then hands out; elsewhere, serialized (and sealed).
    pub async fn set_shared(&self, record: Arc<T>, ttl: Option<Duration>) -> Result<(), StoreError> {
        match &self.mode {
            Mode::Live(memory) => {
                let key = record.key();
                let tags = self.tags_of(&*record);
                memory.put_live(&key, record, ttl, tags).await;
                Ok(())
            }
            Mode::Stored(form) => self.put_stored(form, &record, ttl).await,
        }
    }

    /// Replaces the stored record with `record`, for `ttl`, only if its key holds a record
    /// now ([`Backend::update`]); returns whether it did. A record deleted since it was read
    /// is not brought back: what a save of a record read earlier should use.
    pub async fn update(&self, record: &T, ttl: Option<Duration>) -> Result<bool, StoreError> {
        match &self.mode {
            Mode::Live(_) => self.update_shared(Arc::new(copy_of(record)?), ttl).await,
            Mode::Stored(form) => self.update_stored(form, record, ttl).await,
        }
    }

    /// [`update`](Self::update) of a shared record (kept as this very `Arc` in memory).
    pub async fn update_shared(&self, record: Arc<T>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        match &self.mode {
            Mode::Live(memory) => {
                let key = record.key();
                let tags = self.tags_of(&*record);
                Ok(memory.update_live(&key, record, ttl, tags).await)
            }
            Mode::Stored(form) => self.update_stored(form, &record, ttl).await,
        }
    }

    /// [`Backend::put`] of `record` in its stored form, under where new writes go.
    async fn put_stored(&self, form: &StoredForm<T>, record: &T, ttl: Option<Duration>) -> Result<(), StoreError> {
        let key = record.key();
        let stored = form.stored_keys(&key).next().unwrap_or(Cow::Borrowed(&key));
        let value = form.serialize_under(&stored, record)?;
        self.backend.put(&stored, value, ttl, self.tags_of(record)).await
    }

    /// [`Backend::update`] of `record` where it is stored (see
    /// [`with_hashed_keys`](Self::with_hashed_keys)).
    async fn update_stored(&self, form: &StoredForm<T>, record: &T, ttl: Option<Duration>) -> Result<bool, StoreError> {
        let key = record.key();
        for stored in form.stored_keys(&key) {
            let value = form.serialize_under(&stored, record)?;
            if self.backend.update(&stored, value, ttl, self.tags_of(record)).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The backend tags of `record`'s indexed fields.
    fn tags_of(&self, record: &T) -> Vec<String> {
        let mut entries = Vec::new();
        record.index_entries(&mut entries);
        entries.into_iter().map(|entry| tag(&self.tag_name, &entry)).collect()
    }

    /// The record with these key fields, if present. A record that does not decode (corrupt,
    /// another version, sealed under another key) is absent, with a log line.
    pub async fn get(&self, key: T::Key<'_>) -> Result<Option<T>, StoreError> {
        self.get_by_full_key(&T::key_from(key)).await
    }

    /// The record under its full key (as [`Store::key`] gives it), if present.
    pub(crate) async fn get_by_full_key(&self, key: &str) -> Result<Option<T>, StoreError> {
        match &self.mode {
            // A copy of the live record, by the same round trip as `set`.
            Mode::Live(memory) => match live_record::<T>(memory, key).await {
                Some(shared) => copy_of(&*shared).map(Some),
                None => Ok(None),
            },
            Mode::Stored(form) => {
                for stored in form.stored_keys(key) {
                    if let Some(bytes) = self.backend.get(&stored).await? {
                        return Ok(form.decode(&stored, &bytes));
                    }
                }
                Ok(None)
            }
        }
    }

    /// The record with these key fields, if present, shared: with
    /// [`with_opened_cache`](Self::with_opened_cache), the same `Arc` as long as the stored
    /// bytes are unchanged.
    pub async fn get_shared(&self, key: T::Key<'_>) -> Result<Option<Arc<T>>, StoreError> {
        self.get_shared_by_full_key(&T::key_from(key)).await
    }

    /// [`get_shared`](Self::get_shared) by full key.
    async fn get_shared_by_full_key(&self, key: &str) -> Result<Option<Arc<T>>, StoreError> {
        match &self.mode {
            Mode::Live(memory) => Ok(live_record(memory, key).await),
            Mode::Stored(form) => {
                for stored_key in form.stored_keys(key) {
                    if let Some(stored) = self.backend.get(&stored_key).await? {
                        return Ok(form.open_shared(&stored_key, stored));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Deletes the record with these key fields.
    pub async fn delete(&self, key: T::Key<'_>) -> Result<(), StoreError> {
        self.delete_by_full_key(&T::key_from(key)).await
    }

    /// Deletes the record under its full key.
    async fn delete_by_full_key(&self, key: &str) -> Result<(), StoreError> {
        match &self.mode {
            Mode::Live(_) => self.backend.delete(key).await,
            Mode::Stored(form) => {
                for stored in form.stored_keys(key) {
                    if let Some(cache) = &form.opened {
                        cache.invalidate(&*stored);
                    }
                    self.backend.delete(&stored).await?;
                }
                Ok(())
            }
        }
    }

    /// Deletes every record whose `index` field equals `value`; returns how many.
    pub async fn delete_by<V: Indexable + ?Sized>(&self, index: Index<T>, value: &V) -> Result<u64, StoreError> {
        let Some(value) = value.index_value() else { return Ok(0) };
        self.backend.delete_by_tag(&tag(&self.tag_name, &format!("{}={value}", index.field))).await
    }

    /// Every record whose `index` field equals `value`.
    pub async fn find_by<V: Indexable + ?Sized>(&self, index: Index<T>, value: &V) -> Result<Vec<T>, StoreError> {
        let Some(value) = value.index_value() else { return Ok(vec![]) };
        let keys = self.backend.keys_by_tag(&tag(&self.tag_name, &format!("{}={value}", index.field))).await?;
        let mut records = Vec::with_capacity(keys.len());
        // The keys listed are where the records are stored (hashed or not).
        for key in keys {
            match &self.mode {
                Mode::Live(_) => records.extend(self.get_by_full_key(&key).await?),
                Mode::Stored(form) => {
                    if let Some(bytes) = self.backend.get(&key).await?
                        && let Some(record) = form.decode(&key, &bytes)
                    {
                        records.push(record);
                    }
                }
            }
        }
        Ok(records)
    }
}

/// The live record under `key` in `memory`, if it is a `T`.
async fn live_record<T: Store>(memory: &MokaBackend, key: &str) -> Option<Arc<T>> {
    memory.get_live(key).await.and_then(|live| live.downcast::<T>().ok())
}

/// A copy of `record` by a serialization round trip (records need not be `Clone`).
fn copy_of<T: Store>(record: &T) -> Result<T, StoreError> {
    let json = serde_json::to_vec(record).map_err(|e| StoreError::encode(T::NAME, e))?;
    serde_json::from_slice(&json).map_err(|e| StoreError::encode(T::NAME, e))
}

/// Whether two stored values are the same bytes: the same buffer (a backend in memory hands
/// out clones of what it stores; the cache holds that buffer, so its address cannot be reused)
/// or equal contents.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

/// The backend tag of `field=value` in store `name`.
fn tag(name: &str, entry: &str) -> String {
    format!("{name}#{entry}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize, crate::Store)]
    #[store(key = "note:{id}", encrypt)]
    struct Note {
        id: String,
        text: String,
    }

    /// A backend that, like a networked one, hands out a fresh copy of the bytes on every read.
    #[derive(Clone, Default)]
    struct Copying(MokaBackend);

    #[async_trait::async_trait]
    impl Backend for Copying {
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
            Ok(self.0.get(key).await?.map(|b| Bytes::copy_from_slice(&b)))
        }
        async fn put(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
            tags: Vec<String>,
        ) -> Result<(), StoreError> {
            self.0.put(key, value, ttl, tags).await
        }
        async fn update(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
            tags: Vec<String>,
        ) -> Result<bool, StoreError> {
            self.0.update(key, value, ttl, tags).await
        }
        async fn insert(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
            tags: Vec<String>,
        ) -> Result<bool, StoreError> {
            self.0.insert(key, value, ttl, tags).await
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key).await
        }
        async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
            self.0.delete_by_tag(tag).await
        }
        async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
            self.0.keys_by_tag(tag).await
        }
    }

    const SECRET: &str = "a-secret-of-at-least-32-characters!";

    #[test]
    fn the_recent_table_serves_only_the_key_and_bytes_it_was_given() {
        // 64 KiB: a table of one slot, so every key shares it.
        let cache = DecodedCache::<String, u32>::new(RECENT_SHARE, |_, _| 0).expect("a cache");
        assert_eq!(cache.recent.slots.len(), 1);
        cache.insert("a".into(), Bytes::from_static(b"bytes of a"), Arc::new(1));
        assert_eq!(cache.get("a", b"bytes of a").as_deref(), Some(&1), "found in the slot");
        assert_eq!(cache.get("a", b"other bytes"), None, "other bytes under the same key are a miss");
        assert_eq!(cache.get("b", b"bytes of a"), None, "the same bytes under another key are a miss");
        cache.insert("b".into(), Bytes::from_static(b"bytes of b"), Arc::new(2));
        assert_eq!(cache.get("a", b"bytes of a").as_deref(), Some(&1), "the one the slot let go is still kept");
        assert_eq!(cache.get("b", b"bytes of b").as_deref(), Some(&2));
        cache.invalidate("b");
        assert_eq!(cache.get("b", b"bytes of b"), None, "forgotten in the slot too");
        assert_eq!(cache.get("a", b"bytes of a").as_deref(), Some(&1));
        assert_eq!(cache.recent_len(), 1);
    }

    #[test]
    fn what_the_bound_lets_go_leaves_the_recent_table_too() {
        // A table of 8 slots, and room for about five entries of 100 KB: most entries a slot
        // was given are let go by the bound.
        let bound = 8 * RECENT_SHARE;
        let cache = DecodedCache::<String, u32>::new(bound, |_, stored| stored).expect("a cache");
        assert_eq!(cache.recent.slots.len(), 8);
        for i in 0..50 {
            cache.insert(format!("key {i}"), Bytes::from(vec![b'x'; 100_000]), Arc::new(i));
        }
        let held = cache.weighed_size();
        assert!(held <= bound, "the bound holds: {held}");
        let kept = cache.entries.entry_count();
        assert!((1..=5).contains(&kept), "{kept} entries kept");
        for slot in cache.recent.slots.iter() {
            if let Some(entry) = lock(slot).as_ref() {
                assert!(cache.entries.contains_key(&entry.key), "the recent table kept {} past the bound", entry.key);
            }
        }
        assert!(cache.recent_len() as u64 <= kept);
    }

    #[test]
    fn the_recent_table_grows_with_the_bound_and_no_further() {
        let slots =
            |max_bytes| DecodedCache::<String, u32>::new(max_bytes, |_, _| 0).expect("a cache").recent.slots.len();
        assert_eq!(slots(1), 1);
        assert_eq!(slots(crate::store::DEFAULT_OPENED_CACHE), 512);
        assert_eq!(slots(1 << 40), MAX_RECENT as usize);
        let cache = DecodedCache::<String, u32>::new(4 * RECENT_SHARE, |_, _| 0).expect("a cache");
        for i in 0..100 {
            cache.insert(format!("key {i}"), Bytes::from(format!("bytes {i}")), Arc::new(i));
        }
        assert!(cache.recent_len() <= 4, "one entry per slot at most: {}", cache.recent_len());
        for i in 0..100 {
            assert_eq!(cache.get(&format!("key {i}"), format!("bytes {i}").as_bytes()).as_deref(), Some(&i));
        }
    }

    #[tokio::test]
    async fn equal_bytes_from_a_networked_backend_are_decoded_once() {
        let notes = TypedStore::<Note, _>::new(Copying::default(), &[SECRET]).with_opened_cache(1 << 20);
        notes.set(&Note { id: "1".into(), text: "a".into() }).await.unwrap();
        let first = notes.get_shared("1").await.unwrap().unwrap();
        let second = notes.get_shared("1").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        notes.set(&Note { id: "1".into(), text: "b".into() }).await.unwrap();
        assert_eq!(notes.get_shared("1").await.unwrap().unwrap().text, "b", "new bytes are decoded anew");
        notes.backend().delete("note:1").await.unwrap();
        assert_eq!(notes.get_shared("1").await.unwrap(), None, "deleted behind the store's back: gone");
    }

    #[tokio::test]
    async fn sealed_records_are_stored_as_bytes_and_older_text_records_still_open() {
        let notes = TypedStore::<Note, _>::new(Copying::default(), &[SECRET]);
        let note = Note { id: "1".into(), text: "some text".into() };
        notes.set(&note).await.unwrap();
        let stored = notes.backend().get("note:1").await.unwrap().unwrap();
        let sealer = Sealer::new(&[SECRET], "auth-layer typed store v1: Note");
        let plain = sealer.open_bytes("note:1", &stored).expect("the stored value is the sealed bytes");
        assert!(std::str::from_utf8(&plain).unwrap().contains("some text"));

        // A record written as text, as before, reads back.
        let older = Note { id: "2".into(), text: "older".into() };
        let text = sealer.seal("note:2", &serde_json::to_vec(&EnvelopeOut { v: ENVELOPE_VERSION, d: &older }).unwrap());
        notes.backend().put("note:2", Bytes::from(text), None, vec![]).await.unwrap();
        assert_eq!(notes.get("2").await.unwrap(), Some(older));
    }

    #[tokio::test]
    async fn without_the_opened_cache_every_read_decodes() {
        let notes = TypedStore::<Note, _>::new(Copying::default(), &[SECRET]);
        notes.set(&Note { id: "1".into(), text: "a".into() }).await.unwrap();
        let first = notes.get_shared("1").await.unwrap().unwrap();
        let second = notes.get_shared("1").await.unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(first, second);
    }

    #[tokio::test]
    async fn in_memory_records_are_kept_as_they_are_and_never_as_bytes() {
        let notes = TypedStore::<Note, _>::in_memory();
        let note = Arc::new(Note { id: "1".into(), text: "a".into() });
        notes.set_shared(note.clone(), None).await.unwrap();
        assert!(Arc::ptr_eq(&notes.get_shared("1").await.unwrap().unwrap(), &note), "the very record");
        assert_eq!(notes.backend().get("note:1").await.unwrap(), None, "nothing serialized to read back");
        notes.set(&Note { id: "1".into(), text: "b".into() }).await.unwrap();
        assert_eq!(notes.get("1").await.unwrap().unwrap().text, "b", "set by reference keeps a copy");
        notes.delete("1").await.unwrap();
        assert_eq!(notes.get_shared("1").await.unwrap(), None);
    }
}
