//! auth-layer's sessions in SQLite, written as an app would write a store for the database it
//! already runs. Two ways, both proven by auth-layer's conformance kit (`tests/kit.rs`):
//!
//! - [`SqliteBackend`]: a [`Backend`] (bytes by key, with a TTL and tags). Most apps want this:
//!   auth-layer's [`ServerSessionStore`](auth_layer::store::ServerSessionStore) does the rest
//!   (sealing, session ids, indexes by `sid` and `sub`), and `#[derive(Store)]` typed stores
//!   run on it too. One file, nothing else to run, and sessions survive a restart.
//! - [`SessionsTable`]: a [`SessionStore`](auth_layer::store::SessionStore) written directly, for
//!   an app that keeps sessions in its own `sessions` table next to `users`, as rows it can
//!   query.
//!
//! SQLite is synchronous: every call runs on Tokio's blocking pool, one connection behind a
//! mutex. Each write is one transaction (`BEGIN IMMEDIATE`), so a value and its tags change
//! together, and other processes opening the same file see the same data.

mod sessions_table;

pub use sessions_table::SessionsTable;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use auth_layer::StoreError;
use auth_layer::backend::Backend;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// The name errors give (`StoreError::Unavailable`, which the layer answers with 503).
const NAME: &str = "SQLite";

/// Bytes by key in a SQLite file: `auth_records` (key, value, expiry) and `auth_tags` (tag, key).
#[derive(Clone)]
pub struct SqliteBackend {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch: expiry times are stored as such.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// When a value put now with `ttl` expires; `None`: never.
fn expiry(ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| now_ms().saturating_add(ttl.as_millis() as i64))
}

/// Any SQLite error: the store is unavailable (503), what was committed stays.
fn unavailable(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable(NAME, err)
}

/// Whether the key holds a live value: the condition of `update` and `insert`, and of `get`.
const LIVE: &str = "expires_at IS NULL OR expires_at > ?2";

impl SqliteBackend {
    /// Opens (or creates) the database at `path` and its tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::setup(Connection::open(path).map_err(unavailable)?)
    }

    /// A database in this process's memory: for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn setup(connection: Connection) -> Result<Self, StoreError> {
        // WAL: readers do not wait for the writer. The busy timeout: another process holding
        // the write lock makes a call wait up to 2 s, then fail (503), never hang.
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 2000;
                 CREATE TABLE IF NOT EXISTS auth_records (
                     key TEXT PRIMARY KEY,
                     value BLOB NOT NULL,
                     expires_at INTEGER
                 );
                 CREATE TABLE IF NOT EXISTS auth_tags (
                     tag TEXT NOT NULL,
                     key TEXT NOT NULL,
                     PRIMARY KEY (tag, key)
                 );
                 CREATE INDEX IF NOT EXISTS auth_tags_by_key ON auth_tags (key);",
            )
            .map_err(unavailable)?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `work` on the connection, on the blocking pool (SQLite calls block).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock leaves the connection as SQLite left it: usable.
            let mut connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut connection)
        })
        .await
        .map_err(|e| StoreError::unavailable(NAME, e))?
        .map_err(unavailable)
    }

    /// Deletes expired records and their tags. `get` never returns them anyway; call it now
    /// and then (say, hourly) to keep the file small.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_ms();
            tx.execute(
                "DELETE FROM auth_tags WHERE key IN (SELECT key FROM auth_records WHERE expires_at <= ?1)",
                params![now],
            )?;
            let purged = tx.execute("DELETE FROM auth_records WHERE expires_at <= ?1", params![now])?;
            tx.commit()?;
            Ok(purged as u64)
        })
        .await
    }

    /// `put`, `update` and `insert` in one: writes when `allowed` says so of whether the key
    /// holds a live value now, checked and written in one transaction. Returns whether it wrote.
    async fn write(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
        allowed: fn(bool) -> bool,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.run(move |c| {
            // IMMEDIATE takes the write lock first: no other writer, in this process or another,
            // can delete the key between the check and the write.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let live: bool = tx
                .query_row(
                    &format!("SELECT 1 FROM auth_records WHERE key = ?1 AND ({LIVE})"),
                    params![key, now_ms()],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !allowed(live) {
                return Ok(false);
            }
            // The value and its tags replace the old ones together.
            tx.execute("DELETE FROM auth_tags WHERE key = ?1", params![key])?;
            tx.execute(
                "INSERT INTO auth_records (key, value, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                params![key, &value[..], expiry(ttl)],
            )?;
            for tag in &tags {
                tx.execute("INSERT OR IGNORE INTO auth_tags (tag, key) VALUES (?1, ?2)", params![tag, key])?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let key = key.to_owned();
        self.run(move |c| {
            c.query_row(
                &format!("SELECT value FROM auth_records WHERE key = ?1 AND ({LIVE})"),
                params![key, now_ms()],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .optional()
        })
        .await
        .map(|value| value.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>, tags: Vec<String>) -> Result<(), StoreError> {
        self.write(key, value, ttl, tags, |_| true).await.map(|_| ())
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        // Only over a live value: a session logged out meanwhile is not written back.
        self.write(key, value, ttl, tags, |live| live).await
    }

    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        // Only where nothing live is: one winner (a refresh lease).
        self.write(key, value, ttl, tags, |live| !live).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM auth_tags WHERE key = ?1", params![key])?;
            tx.execute("DELETE FROM auth_records WHERE key = ?1", params![key])?;
            tx.commit()
        })
        .await
    }

    async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        let tag = tag.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Counted among the live ones; expired ones under the tag go too.
            let live: i64 = tx.query_row(
                &format!(
                    "SELECT COUNT(*) FROM auth_records WHERE key IN (SELECT key FROM auth_tags WHERE tag = ?1) AND ({LIVE})"
                ),
                params![tag, now_ms()],
                |row| row.get(0),
            )?;
            tx.execute("DELETE FROM auth_records WHERE key IN (SELECT key FROM auth_tags WHERE tag = ?1)", params![tag])?;
            // Every tag of the deleted keys, not only this one: nothing may list a deleted key.
            // (Both by the tag's index: the cost follows the tagged keys, not the table.)
            tx.execute("DELETE FROM auth_tags WHERE key IN (SELECT key FROM auth_tags WHERE tag = ?1)", params![tag])?;
            tx.commit()?;
            Ok(live as u64)
        })
        .await
    }

    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        let tag = tag.to_owned();
        self.run(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT r.key FROM auth_tags t JOIN auth_records r ON r.key = t.key WHERE t.tag = ?1 AND ({LIVE})"
            ))?;
            let keys = statement.query_map(params![tag, now_ms()], |row| row.get(0))?;
            keys.collect()
        })
        .await
    }
}
