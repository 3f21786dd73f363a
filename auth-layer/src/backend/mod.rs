//! Backends: where typed stores keep their bytes. A [`Backend`] maps string keys to byte values
//! with an optional time to live and a set of index tags, so that records can be found and
//! deleted by a field's value without scanning.
//!
//! [`MokaBackend`] (in memory) is the default; `RedisBackend` (feature `redis`) and
//! `PostgresBackend` (feature `postgres`) share records between the app's processes.

mod moka;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

pub use self::moka::MokaBackend;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use self::postgres::{PostgresBackend, PostgresOptions};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{ClientCache, RedisBackend};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StoreError;
use crate::telemetry;

/// Bytes by key, with a time to live and index tags: where [`ServerSessionStore`] keeps
/// sessions, typed stores their records, and [`SharedState`] what a fleet shares. Implement it
/// for the database your app already runs; prove it with
/// `auth_layer::testing::check_backend` (feature `testing`), which checks
/// every rule below and names the one broken. `examples/sqlite-backend` is a short, commented
/// implementation on SQLite.
///
/// # The contract
///
/// - **Bytes exactly.** `get` returns the bytes the last `put` stored, byte for byte (values are
///   sealed binary; a text column that re-encodes them breaks every record). Keys are UTF-8 of at
///   most a few hundred bytes; a backend may prefix or hash them, but two keys never collide.
/// - **Expiry.** A value past its TTL is never returned by `get`, listed by `keys_by_tag` or
///   counted by `delete_by_tag`, whether or not it was purged yet. Why: an expired session must
///   not open. Purging is the backend's business (lazily, periodically, by the database's TTL).
/// - **Tags go with their value.** `put` replaces the key's value, its TTL and its tags at once:
///   a key is listed under a tag exactly while its current value carries that tag and has not
///   expired or been deleted, also while many tasks and processes write at once. Why: the tags
///   are the `sid`/`sub` indexes a back-channel logout deletes by; an index entry that outlives
///   its record, or a record that escapes its index, is a logout that misses. Write the value and
///   its tags in one transaction (or one script).
/// - **`update` never creates.** It does what `put` does, but only over a value the key holds at
///   that moment (not expired, not deleted), atomically with that check; otherwise it writes
///   nothing and returns `false`. Why: a session is read, then saved again later (a renewal, a
///   refresh that waited seconds for the provider); a logout in between deletes it, and a save
///   that recreated it would undo the logout.
/// - **`insert` has one winner.** It does what `put` does, but only when the key holds no value
///   at that moment (never written, deleted or expired), atomically with that check; otherwise it
///   writes nothing and returns `false`. Why: state shared by a fleet needs one winner, such as
///   the process that may send a refresh token (a lease that expires on its own if its holder
///   dies).
/// - **`delete_by_tag` is exact and indexed.** It removes every key whose current value carries
///   the tag (values updated while it runs included) and no other, and returns how many; its
///   cost does not grow with the keys that do not carry the tag (never a scan of the keyspace).
///   Deleting a missing key is not an error.
/// - **Errors.** A backend that cannot answer (unreachable, timed out, overloaded, a broken
///   connection) returns [`StoreError::Unavailable`] (see [`StoreError::unavailable`]), quickly
///   (seconds, never a hang): the layer answers 503 and the provider or the browser retries.
///   Nothing it reported as written may be lost. Bytes that are not a record are not an error of
///   the backend: typed stores read them as absent.
/// - **Notices (optional).** [`watch`](Self::watch) and [`notify`](Self::notify) push "something
///   changed" to every process (Redis pub/sub, PostgreSQL `LISTEN`), so cookie sessions of a fleet
///   see a logout without a round trip per request. A backend without them keeps the defaults:
///   callers then ask it every time.
///
/// Every handle a backend gives out (clones, or connections other processes open) sees the same
/// data: that is what makes it shared.
///
/// [`ServerSessionStore`]: crate::store::ServerSessionStore
/// [`SharedState`]: crate::SharedState
///
/// The rules, shown on the in-memory backend (every backend keeps them; an app's own proves it
/// with [`check_backend`](crate::testing::check_backend)):
///
/// ```
/// use std::time::Duration;
/// use auth_layer::backend::{Backend, MokaBackend};
///
/// # async fn demo() -> Result<(), auth_layer::StoreError> {
/// let backend = MokaBackend::new();
/// let minute = Some(Duration::from_secs(60));
/// backend.put("session:1", "one".into(), minute, vec!["sub:alice".into()]).await?;
/// backend.put("session:2", "two".into(), minute, vec!["sub:alice".into()]).await?;
/// assert!(!backend.update("session:3", "three".into(), minute, vec![]).await?, "update never creates");
/// assert!(!backend.insert("session:1", "other".into(), minute, vec![]).await?, "insert never replaces");
/// assert_eq!(backend.delete_by_tag("sub:alice").await?, 2); // what a back-channel logout does
/// assert_eq!(backend.get("session:1").await?, None);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Stores `value` under `key` for `ttl` (none: no expiry), listed under `tags`.
    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>, tags: Vec<String>) -> Result<(), StoreError>;
    /// Replaces the value under `key` as `put` does, only if the key holds a value now;
    /// returns whether it did. Never creates a key.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError>;
    /// Stores `value` under `key` as `put` does, only if the key holds no value now; returns
    /// whether it did. Never replaces a value.
    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError>;
    /// Deletes `key`.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every key listed under `tag`; returns how many were deleted.
    async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError>;
    /// The keys listed under `tag`.
    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError>;

    /// Starts listening, in this process, to the notices every process sends on `channel`
    /// with [`notify`](Self::notify); `None` when the backend cannot push notices (the
    /// default), and callers then ask the backend every time. Called within a Tokio runtime.
    fn watch(&self, channel: &str) -> Option<Notices> {
        let _ = channel;
        None
    }

    /// Tells every process watching `channel` that something changed. The default does
    /// nothing (a backend that cannot [`watch`](Self::watch)).
    async fn notify(&self, channel: &str) -> Result<(), StoreError> {
        let _ = channel;
        Ok(())
    }
}

/// What a backend's [`watch`](Backend::watch) gives: a version that moves whenever a notice
/// arrives, for a caller to keep an answer (a session checked against the logout markers)
/// until it moves. While the listener is not known to be connected, there is no version, and
/// the caller asks the backend every time.
///
/// A backend implementing `watch` calls [`connected`](Self::connected) once listening (also
/// after a reconnection: notices sent while it was away are lost, so everything is stale),
/// [`changed`](Self::changed) for each notice, [`heard`](Self::heard) for a sign of life
/// (its own periodic heartbeat), and [`disconnected`](Self::disconnected) when it loses the
/// connection. Without a sign of life for [`Notices::SILENCE_LIMIT`], the version is withheld:
/// a connection that died without a word cannot hide notices for longer than that.
#[derive(Clone, Debug)]
pub struct Notices {
    state: Arc<NoticeState>,
}

#[derive(Debug)]
struct NoticeState {
    since: Instant,
    version: AtomicU64,
    /// Milliseconds from `since` to the last sign of life.
    heard_ms: AtomicU64,
    live: AtomicBool,
    /// Whether the current silence was counted (`auth_layer.notices.silences`).
    silence_counted: AtomicBool,
}

impl Drop for NoticeState {
    /// Listeners connected leave the gauge when dropped without a `disconnected`.
    fn drop(&mut self) {
        if *self.live.get_mut() {
            telemetry::gauge_add(telemetry::NOTICES_CONNECTED, -1.0);
        }
    }
}

impl Default for Notices {
    fn default() -> Self {
        Self::new()
    }
}

impl Notices {
    /// How long without a sign of life before [`version`](Self::version) is withheld: 5 s.
    /// A backend sends itself a heartbeat well within it.
    pub const SILENCE_LIMIT: Duration = Duration::from_secs(5);
    /// How often a backend's listener sends itself a heartbeat: 1 s.
    pub const HEARTBEAT: Duration = Duration::from_secs(1);

    /// Notices not yet connected.
    pub fn new() -> Self {
        Self {
            state: Arc::new(NoticeState {
                since: Instant::now(),
                version: AtomicU64::new(0),
                heard_ms: AtomicU64::new(0),
                live: AtomicBool::new(false),
                silence_counted: AtomicBool::new(false),
            }),
        }
    }

    /// The current version while the listener is connected and was heard from lately; `None`
    /// otherwise.
    pub fn version(&self) -> Option<u64> {
        let state = &self.state;
        // Read first: a notice arriving after this read moves it, and the next caller sees it.
        let version = state.version.load(Ordering::Acquire);
        let silent_ms =
            (state.since.elapsed().as_millis() as u64).saturating_sub(state.heard_ms.load(Ordering::Acquire));
        let live = state.live.load(Ordering::Acquire);
        if live && silent_ms >= Self::SILENCE_LIMIT.as_millis() as u64 {
            // Counted once per silence (a sign of life re-arms it), not once per read.
            if !state.silence_counted.swap(true, Ordering::Relaxed) {
                tracing::warn!(silent_ms, "notices: the listener was not heard from lately; reads ask the backend");
                telemetry::count(telemetry::NOTICES_SILENCES);
            }
            return None;
        }
        live.then_some(version)
    }

    /// Listening (again): everything kept so far is stale.
    pub fn connected(&self) {
        self.changed();
        if !self.state.live.swap(true, Ordering::AcqRel) {
            telemetry::gauge_add(telemetry::NOTICES_CONNECTED, 1.0);
        }
    }

    /// A notice arrived (or this process changed something itself).
    pub fn changed(&self) {
        self.state.version.fetch_add(1, Ordering::AcqRel);
        self.heard();
    }

    /// A sign of life from the listener's connection.
    pub fn heard(&self) {
        self.state.heard_ms.store(self.state.since.elapsed().as_millis() as u64, Ordering::Release);
        self.state.silence_counted.store(false, Ordering::Relaxed);
    }

    /// The listener lost its connection, or stopped: no version until it is back.
    pub fn disconnected(&self) {
        if self.state.live.swap(false, Ordering::AcqRel) {
            telemetry::gauge_add(telemetry::NOTICES_CONNECTED, -1.0);
        }
        self.state.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether anyone but the listener still holds these notices (it stops when no one does).
    pub fn is_watched(&self) -> bool {
        Arc::strong_count(&self.state) > 1
    }
}

#[cfg(any(feature = "redis", feature = "postgres"))]
/// The notices a backend has given out, by channel: one listener for a channel however many
/// stores (and clones of the backend) watch it. A listener asks [`keep_listening`](Self::keep_listening)
/// before each (re)connection and stops when no one holds its notices any more; the answer and
/// a later `watch` are decided under one lock, so a channel never has two listeners, nor
/// watchers without one.
#[derive(Clone, Debug, Default)]
pub(crate) struct Watchers {
    channels: Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<NoticeState>>>>,
}

#[cfg(any(feature = "redis", feature = "postgres"))]
impl Watchers {
    /// The notices of `channel`: those of its listener, or new ones that `start` begins
    /// listening for.
    pub(crate) fn watch(&self, channel: &str, start: impl FnOnce(Notices)) -> Notices {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = channels.get(channel).and_then(std::sync::Weak::upgrade) {
            return Notices { state };
        }
        let notices = Notices::new();
        channels.insert(channel.to_owned(), Arc::downgrade(&notices.state));
        start(notices.clone());
        notices
    }

    /// Whether the listener of `channel` holding `notices` goes on: someone else holds them.
    /// When no one does, the channel is forgotten (its next `watch` starts a new listener).
    pub(crate) fn keep_listening(&self, channel: &str, notices: &Notices) -> bool {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if notices.is_watched() {
            return true;
        }
        if channels.get(channel).is_some_and(|weak| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(&notices.state))) {
            channels.remove(channel);
        }
        false
    }

    /// How many channels have a listener.
    #[cfg(test)]
    fn listening(&self) -> usize {
        self.channels.lock().unwrap().values().filter(|weak| weak.strong_count() > 0).count()
    }
}

/// When a backend's write goes ahead, by what the key holds at that moment: `put`, `update` and
/// `insert` are one write under three conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    /// Whatever the key holds.
    Always,
    /// Only over a live value (`update`).
    Present,
    /// Only when there is none (`insert`).
    Absent,
}

impl When {
    /// Whether a write goes ahead when the key holds a live value (`present`) or not.
    pub(crate) fn allows(self, present: bool) -> bool {
        match self {
            Self::Always => true,
            Self::Present => present,
            Self::Absent => !present,
        }
    }
}

/// A shared backend is a backend: one connection serves the session store and the fleet's
/// shared state (`Arc<dyn Backend>`), or a clone of an `Arc` is kept beside the store.
#[async_trait]
impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        (**self).get(key).await
    }
    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>, tags: Vec<String>) -> Result<(), StoreError> {
        (**self).put(key, value, ttl, tags).await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        (**self).update(key, value, ttl, tags).await
    }
    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        (**self).insert(key, value, ttl, tags).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
    async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        (**self).delete_by_tag(tag).await
    }
    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        (**self).keys_by_tag(tag).await
    }
    fn watch(&self, channel: &str) -> Option<Notices> {
        (**self).watch(channel)
    }
    async fn notify(&self, channel: &str) -> Result<(), StoreError> {
        (**self).notify(channel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_give_a_version_only_while_connected_and_heard_from() {
        let notices = Notices::new();
        assert_eq!(notices.version(), None, "not connected yet");
        notices.connected();
        let first = notices.version().expect("connected");
        notices.changed();
        assert_ne!(notices.version(), Some(first), "a notice moves the version");
        notices.disconnected();
        assert_eq!(notices.version(), None, "lost: callers ask the backend every time");
        notices.connected();
        let again = notices.version().expect("back");
        assert_ne!(again, first, "what was kept before the loss is stale");
        std::thread::sleep(Notices::SILENCE_LIMIT + Duration::from_millis(100));
        assert_eq!(notices.version(), None, "silent too long: a dead connection cannot hide notices");
        notices.heard();
        assert_eq!(notices.version(), Some(again), "a heartbeat: the version stands");
    }

    #[test]
    fn a_channel_has_one_listener_however_many_watch_it_and_a_new_one_once_all_left() {
        let watchers = Watchers::default();
        let started = std::cell::RefCell::new(Vec::new());
        let watch = |channel: &str| watchers.watch(channel, |notices| started.borrow_mut().push(notices));
        let stores: Vec<Notices> = (0..50).map(|_| watch("logout-markers")).collect();
        let other = watch("other");
        assert_eq!(started.borrow().len(), 2, "one listener per channel");
        assert_eq!(watchers.listening(), 2);
        // The listener's own handle (the one `start` was given), as its task holds it.
        let listener = started.borrow_mut().remove(0);
        listener.connected();
        let before = stores[7].version();
        listener.changed();
        assert_ne!(stores[7].version(), before, "every watcher sees the one listener's notices");
        assert!(watchers.keep_listening("logout-markers", &listener));
        drop(stores);
        assert!(!watchers.keep_listening("logout-markers", &listener), "no one watches: it stops");
        drop(listener);
        let _again = watch("logout-markers");
        assert_eq!(started.borrow().len(), 2, "watched again: a new listener");
        assert!(watchers.keep_listening("other", &started.borrow()[0]), "{other:?} still watched");
    }
}
