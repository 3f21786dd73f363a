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

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StoreError;

/// Bytes by key, with a time to live and index tags.
///
/// Contract, which every backend's tests check (`tests/e2e/backends.rs` runs the same suite on
/// moka, Redis and PostgreSQL):
/// - `put` replaces the key's value, its TTL and its tags at once; an expired value is never
///   returned by `get`.
/// - `update` does what `put` does, but only over a value the key holds at that moment (not
///   expired, not deleted), atomically with that check; otherwise it writes nothing and returns
///   `false`. Why: a session is read, then saved again later (a renewal, a refresh that waited
///   seconds for the provider); a logout in between deletes it, and a save that recreated it
///   would undo the logout. Saves of existing records use `update`, so a deletion is final.
/// - `insert` does what `put` does, but only when the key holds no value at that moment
///   (never written, deleted or expired), atomically with that check; otherwise it writes
///   nothing and returns `false`. Why: state shared by a fleet needs one winner, such as the
///   process that may send a refresh token (a lease that expires on its own if its holder dies).
/// - A key is listed under a tag exactly while its current value carries that tag and has not
///   expired or been deleted.
/// - `delete_by_tag` removes every key whose current value carries the tag, values updated
///   while it runs included, and returns how many; its cost does not grow with the number of
///   keys that do not carry the tag.
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
}
