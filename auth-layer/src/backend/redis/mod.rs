//! [`RedisBackend`]: records in Redis (standalone or Cluster), written with their index entries
//! by Lua scripts, with expiries that agree.
//!
//! On a standalone Redis, every key is under one hash tag and a record is written with its
//! index entries by one script. On a cluster, records spread over the slots (see [`spread`]:
//! each record in a slot of its own, each index in its tag's, the steps that cross slots
//! ordered so that no logout can miss a record); [`RedisBackend::with_one_slot`] keeps the
//! one-tag layout there too.
//!
//! The one-tag layout, under one hash tag so that a record and its index entries share a slot
//! (Lua scripts may only touch keys of one slot): `{ns}:v:{key}` holds the value (with `PX`),
//! `{ns}:k:{key}` the set of its tags, `{ns}:t:{tag}` a sorted set of the keys carrying the tag,
//! scored by their expiry in milliseconds, so that expired keys are pruned from an index as it is
//! read. Deleting by tag touches only that tag's keys, in one round trip.
//!
//! Reads asked for at about the same moment (the requests a server is handling at once) go to
//! Redis together, in one `MGET` (see [`Gathered`]): one write and one reply for all of them
//! instead of one each. In the one-tag layout every key shares the namespace's hash tag, so an
//! `MGET` never spans slots; in the spread layout a batch is grouped by node instead, one
//! pipeline of `GET`s to each (see [`gather`]).

mod gather;
mod spread;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Script};

use self::gather::Gathered;
use super::{Backend, Notices, Watchers};
use crate::error::StoreError;
use crate::telemetry;

/// How long a command may take before the store counts as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of [`PUT`], [`UPDATE`] and [`INSERT`].
macro_rules! put_script {
    () => {
        r#"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ns = string.sub(KEYS[1], 1, string.len(KEYS[1]) - string.len(ARGV[1]) - 3)
for _, old in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('ZREM', ns .. ':t:' .. old, ARGV[1])
end
redis.call('DEL', KEYS[2])
local ttl = tonumber(ARGV[3])
local score = '+inf'
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  score = now_ms + ttl
else
  redis.call('SET', KEYS[1], ARGV[2])
end
for i = 4, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
  local index = KEYS[i - 1]
  redis.call('ZADD', index, score, ARGV[1])
  if ttl > 0 then
    local left = redis.call('PTTL', index)
    if left >= 0 and left < ttl then redis.call('PEXPIRE', index, ttl) end
  else
    redis.call('PERSIST', index)
  end
end
if ttl > 0 and #ARGV >= 4 then redis.call('PEXPIRE', KEYS[2], ttl) end
"#
    };
}

/// Stores a value and replaces its tags. KEYS: value, key's tag set, then one index per tag.
/// ARGV: key, value, ttl in ms (0: none), then the tags. Returns 1.
const PUT: &str = concat!(put_script!(), "return 1\n");

/// [`PUT`] only over a value the key holds now (`Backend::update`): in one script, so no
/// deletion can come between the check and the write. Returns 1 when written, 0 when absent.
const UPDATE: &str = concat!("if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n", put_script!(), "return 1\n");

/// [`PUT`] only when the key holds no value (`Backend::insert`), in one script. Returns 1 when
/// written, 0 when a value was there.
const INSERT: &str = concat!("if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n", put_script!(), "return 1\n");

/// Deletes one key with its index entries. KEYS: value, key's tag set. ARGV: key.
const DELETE: &str = r#"
local ns = string.sub(KEYS[1], 1, string.len(KEYS[1]) - string.len(ARGV[1]) - 3)
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('ZREM', ns .. ':t:' .. tag, ARGV[1])
end
return redis.call('DEL', KEYS[1], KEYS[2])
"#;

/// Deletes every live key carrying a tag. KEYS: the tag's index. ARGV: namespace, tag.
const DELETE_BY_TAG: &str = r#"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local deleted = 0
for _, key in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local tags = ARGV[1] .. ':k:' .. key
  if redis.call('SISMEMBER', tags, ARGV[2]) == 1 then
    for _, tag in ipairs(redis.call('SMEMBERS', tags)) do
      redis.call('ZREM', ARGV[1] .. ':t:' .. tag, key)
    end
    deleted = deleted + redis.call('DEL', ARGV[1] .. ':v:' .. key)
    redis.call('DEL', tags)
  end
end
redis.call('DEL', KEYS[1])
return deleted
"#;

/// The live keys carrying a tag. KEYS: the tag's index.
const KEYS_BY_TAG: &str = r#"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"#;

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The message of a change notice; anything else on a channel is a heartbeat.
const CHANGED: &str = "changed";

/// The subscriber behind [`RedisBackend::watch`]: subscribes, reports notices and heartbeats
/// to `notices`, reconnects after a loss, and stops once no one holds `notices` any more.
async fn listen(client: redis::Client, publisher: RedisBackend, channel: String, notices: Notices) {
    use futures_util::StreamExt;
    while publisher.watchers.keep_listening(&channel, &notices) {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, RedisError>(pubsub.into_on_message())
        };
        let mut messages = match tokio::time::timeout(CONNECTION_TIMEOUT, subscribed).await {
            Ok(Ok(messages)) => messages,
            Ok(Err(err)) => {
                tracing::warn!(%err, "Redis notices: cannot subscribe; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("Redis notices: subscribing timed out; retrying");
                continue;
            }
        };
        notices.connected();
        while notices.is_watched() {
            match tokio::time::timeout(Notices::HEARTBEAT, messages.next()).await {
                Ok(Some(message)) => match message.get_payload::<String>() {
                    Ok(payload) if payload == CHANGED => notices.changed(),
                    _ => notices.heard(),
                },
                Ok(None) => break,
                Err(_) => {
                    // Quiet for a while: a heartbeat through the other connection proves this
                    // one still hears (its arrival is the sign of life).
                    if let Err(err) = publisher.publish(&channel, "heartbeat").await {
                        tracing::debug!(%err, "Redis notices: heartbeat not sent");
                    }
                }
            }
        }
        notices.disconnected();
        tracing::debug!("Redis notices: subscription ended");
    }
}

/// Keeps records in Redis, shared by every process of the app. Reconnects by itself after a
/// connection loss; while Redis is unreachable, every call fails fast (2 s at most) with
/// [`StoreError::Unavailable`], which the layer answers with 503.
///
/// ```no_run
/// use auth_layer::backend::RedisBackend;
/// use auth_layer::store::ServerSessionStore;
/// use auth_layer::{AuthClient, AuthConfig};
///
/// # async fn build(config: AuthConfig) -> Result<(), auth_layer::AuthError> {
/// let redis = RedisBackend::connect("rediss://:password@redis.internal:6380/0").await?;
/// // or: RedisBackend::connect_cluster(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]).await?
/// let store = ServerSessionStore::new(redis, &config);
/// // The fleet's shared state (used logout tokens, refresh leases) goes to the same Redis.
/// let client = AuthClient::builder(config).with_server_sessions(store).build().await?;
/// # let _ = client; Ok(()) }
/// ```
///
/// Standalone: [`connect`](Self::connect) with a `redis://` or `rediss://` (TLS, system roots)
/// URL, user and password in it, or [`connect_with_root_ca`](Self::connect_with_root_ca) for a
/// private CA. Cluster: [`connect_cluster`](Self::connect_cluster) with the nodes' URLs; its
/// records spread over the cluster's slots, with the steps that cross slots ordered so that a
/// crash between two of them leaves nothing a logout can miss (the `spread` module's
/// documentation argues each step), and records an earlier version wrote under one hash tag are
/// still read, renewed and deleted where they are. Either keeps a client-side cache with
/// [`connect_with_client_cache`](Self::connect_with_client_cache) or
/// [`connect_cluster_with_client_cache`](Self::connect_cluster_with_client_cache).
#[derive(Clone)]
pub struct RedisBackend {
    connection: Connection,
    /// The standalone server's client, for the subscriber connection of [`Backend::watch`];
    /// `None` on a cluster (no notices: callers ask every time).
    client: Option<redis::Client>,
    /// The notices given out, one subscriber per channel (shared by every clone).
    watchers: Watchers,
    /// Reads waiting to be sent together; `None` exactly when there is a client-side cache,
    /// whose reads are mostly answered in this process and go one by one.
    gathered: Option<Arc<Gathered>>,
    namespace: String,
    /// The namespace of the spread layout (without braces).
    spread_namespace: String,
    /// Whether records spread over a cluster's slots ([`spread`]); else the one-tag layout.
    spread: bool,
    /// Whether records of the one-tag layout may still be there (a cluster that earlier
    /// versions wrote): read, renewed and deleted where they are.
    legacy: bool,
    /// A test's way to stop a spread write between its index entries and its value.
    stop_after_index: bool,
    put: Script,
    update: Script,
    insert: Script,
    delete: Script,
    delete_by_tag: Script,
    keys_by_tag: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

fn unavailable(err: RedisError) -> StoreError {
    tracing::warn!(%err, "Redis call failed");
    StoreError::unavailable("Redis", err)
}

/// How much [`RedisBackend::connect_with_client_cache`] keeps in this process, and for how long.
///
/// ```no_run
/// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use auth_layer::backend::{ClientCache, RedisBackend};
/// use auth_layer::store::ServerSessionStore;
///
/// // Up to 100,000 sessions kept here, none served more than 5 s after it was read from Redis.
/// let cache = ClientCache::new(NonZeroUsize::new(100_000).unwrap()).max_age(Duration::from_secs(5));
/// let redis = RedisBackend::connect_with_client_cache("redis://redis.internal:6379", cache).await?;
/// let store = ServerSessionStore::new(redis, &config);
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ClientCache {
    max_keys: std::num::NonZeroUsize,
    max_age: Duration,
}

impl ClientCache {
    /// The longest a copy is kept by default: 10 s.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(10);

    /// Up to `max_keys` values, each kept at most [`DEFAULT_MAX_AGE`](Self::DEFAULT_MAX_AGE).
    pub fn new(max_keys: std::num::NonZeroUsize) -> Self {
        Self { max_keys, max_age: Self::DEFAULT_MAX_AGE }
    }

    /// Keeps each copy at most `max_age` after it was read from Redis, whatever the
    /// invalidations say: the longest a session deleted elsewhere can still be served here if
    /// Redis's invalidations stop arriving. Shorter costs a round trip per session that often;
    /// `Duration::ZERO` serves nothing from the cache.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }
}

impl RedisBackend {
    /// Runs [`PUT`], [`UPDATE`] or [`INSERT`]; whether the value was written.
    async fn write(
        &self,
        script: &Script,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let ttl_ms = ttl.map_or(0, |t| t.as_millis().clamp(1, u128::from(u64::MAX)) as u64);
        let mut invocation = script.key(self.value_key(key));
        invocation.key(self.tags_key(key));
        for tag in tags {
            invocation.key(self.index_key(tag));
        }
        invocation.arg(key).arg(value).arg(ttl_ms);
        for tag in tags {
            invocation.arg(tag);
        }
        let written: i64 = invocation.invoke_async(&mut connection).await.map_err(unavailable)?;
        self.settle().await?;
        Ok(written == 1)
    }

    /// With a client-side cache, waits until this connection's copy of what the last write
    /// changed is gone, so a read here right after a write or delete returns sees it.
    ///
    /// Redis sends this connection the invalidation of a key it changed itself after the
    /// reply to the script that changed it; the reply can reach the caller before the
    /// invalidation is read, and a read answered from the copy in between would return the
    /// old value (a deleted session, for instance). A `PING` on the same connection is
    /// answered after that invalidation, and the connection handles what it reads in order.
    /// Without a cache it costs nothing.
    ///
    /// On a cluster a write may change keys on several masters (a record and the index entries
    /// of a spread write, the records a delete by tag ends), and each master's invalidations come
    /// on its own connection: the `PING` goes to every master, side by side.
    async fn settle(&self) -> Result<(), StoreError> {
        if self.gathered.is_some() {
            return Ok(());
        }
        match &self.connection {
            Connection::Single(_) => {
                let mut connection = self.connection.clone();
                redis::cmd("PING").query_async::<()>(&mut connection).await.map_err(unavailable)
            }
            Connection::Cluster(cluster) => {
                use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                let every_master = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                cluster.clone().route_command(redis::cmd("PING"), every_master).await.map(drop).map_err(unavailable)
            }
        }
    }

    /// Connects to a standalone Redis (`redis://[user:password@]host:port/db`, or `rediss://`
    /// for TLS).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_client(redis::Client::open(url).map_err(unavailable)?).await
    }

    /// Connects over TLS (`rediss://`) trusting only the certificate authority in `root_ca_pem`
    /// (a private CA) instead of the system's.
    pub async fn connect_with_root_ca(url: &str, root_ca_pem: &[u8]) -> Result<Self, StoreError> {
        let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_ca_pem.to_vec()) };
        Self::connect_client(redis::Client::build_with_tls(url, certificates).map_err(unavailable)?).await
    }

    /// Connects like [`connect`](Self::connect), and keeps values it has read in this process
    /// too, with Redis's server-assisted client-side caching (RESP3, Redis 6 or later): Redis
    /// tells this connection whenever a value it read changes or goes, and the copy here is
    /// dropped; after a reconnection every copy is dropped. A session read then costs no round
    /// trip while it is unchanged.
    ///
    /// The price: a session deleted through another connection (another process's logout or
    /// back-channel logout) is still served here until Redis's invalidation reaches this
    /// process, usually well under a millisecond on a local network, where without the cache
    /// it ends with the delete's reply. In this process a write or delete returns only once
    /// the copy here is dropped (one `PING` more per write), so a read after it sees it. Should
    /// invalidations stop arriving without the
    /// connection being seen to fail (a silent network partition: reads served from the copy
    /// send nothing that would notice), a copy is still dropped once older than
    /// [`ClientCache::max_age`]. The cache is redis-rs's, which calls it experimental.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), auth_layer::store::StoreError> {
    /// use std::num::NonZeroUsize;
    /// use std::time::Duration;
    /// use auth_layer::backend::{ClientCache, RedisBackend};
    ///
    /// let cache = ClientCache::new(NonZeroUsize::new(100_000).unwrap()).max_age(Duration::from_secs(5));
    /// let backend = RedisBackend::connect_with_client_cache("redis://127.0.0.1:6379", cache).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_client_cache(url: &str, cache: ClientCache) -> Result<Self, StoreError> {
        use redis::IntoConnectionInfo;
        let info = url.into_connection_info().map_err(unavailable)?;
        let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(unavailable)?;
        let config = redis::caching::CacheConfig::new().set_size(cache.max_keys).set_default_client_ttl(cache.max_age);
        Self::connect_configured(client, Some(config)).await
    }

    async fn connect_client(client: redis::Client) -> Result<Self, StoreError> {
        Self::connect_configured(client, None).await
    }

    async fn connect_configured(
        client: redis::Client,
        cache: Option<redis::caching::CacheConfig>,
    ) -> Result<Self, StoreError> {
        let mut config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(1);
        let cached = cache.is_some();
        if let Some(cache) = cache {
            config = config.set_cache_config(cache);
        }
        let manager = client.get_connection_manager_with_config(config).await.map_err(unavailable)?;
        let backend = Self { client: Some(client), ..Self::with_connection(Connection::Single(manager)) };
        Ok(if cached { Self { gathered: None, ..backend } } else { backend })
    }

    /// Connects to a Redis Cluster through any of its nodes.
    pub async fn connect_cluster<S: AsRef<str>>(nodes: &[S]) -> Result<Self, StoreError> {
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(1)
            .build()
            .map_err(unavailable)?;
        let connection = client.get_async_connection().await.map_err(unavailable)?;
        let gathered = Some(Arc::new(Gathered::by_node()));
        Ok(Self { spread: true, legacy: true, gathered, ..Self::with_connection(Connection::Cluster(connection)) })
    }

    /// [`connect_cluster`](Self::connect_cluster) with a client-side cache, as
    /// [`connect_with_client_cache`](Self::connect_with_client_cache) keeps one on a standalone
    /// Redis (RESP3, Redis 6 or later; redis-rs's cache, one per node connection): a read of an
    /// unchanged session costs no round trip, a value changed or deleted through another
    /// connection is dropped when its master's invalidation arrives, and in this process a write
    /// returns only once every master has answered a `PING` after it, so a read after it sees it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), auth_layer::store::StoreError> {
    /// use std::num::NonZeroUsize;
    /// use auth_layer::backend::{ClientCache, RedisBackend};
    ///
    /// let cache = ClientCache::new(NonZeroUsize::new(100_000).unwrap());
    /// let nodes = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7000"];
    /// let backend = RedisBackend::connect_cluster_with_client_cache(&nodes, cache).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster_with_client_cache<S: AsRef<str>>(
        nodes: &[S],
        cache: ClientCache,
    ) -> Result<Self, StoreError> {
        let config = redis::caching::CacheConfig::new().set_size(cache.max_keys).set_default_client_ttl(cache.max_age);
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let client = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(1)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .cache_config(config)
            .build()
            .map_err(unavailable)?;
        let connection = client.get_async_connection().await.map_err(unavailable)?;
        Ok(Self {
            spread: true,
            legacy: true,
            gathered: None,
            ..Self::with_connection(Connection::Cluster(connection))
        })
    }

    /// On a cluster, the one-tag layout of earlier versions: every key of the namespace in one
    /// slot, so one shard holds every session (high availability without scale). For comparing
    /// the layouts, and for a deployment that must keep an app's keys together. A no-op on a
    /// standalone Redis, which always has it.
    pub fn with_one_slot(mut self) -> Self {
        self.spread = false;
        self.legacy = false;
        // Every key in one slot: a batch of reads is one `MGET` again.
        self.gathered = self.gathered.map(|_| Arc::default());
        self
    }

    /// Whether records spread over a cluster's slots (a cluster, without
    /// [`with_one_slot`](Self::with_one_slot)).
    pub fn spreads(&self) -> bool {
        self.spread
    }

    /// A test's backend whose spread writes stop after the index entries and before the value,
    /// as a process killed between the two steps would; the write fails.
    #[cfg(feature = "testing")]
    #[doc(hidden)]
    pub fn stop_writes_after_index(mut self) -> Self {
        self.stop_after_index = true;
        self
    }

    fn with_connection(connection: Connection) -> Self {
        Self {
            connection,
            client: None,
            watchers: Watchers::default(),
            gathered: Some(Arc::default()),
            namespace: "{auth-layer}".into(),
            spread_namespace: "auth-layer".into(),
            spread: false,
            legacy: false,
            stop_after_index: false,
            put: Script::new(PUT),
            update: Script::new(UPDATE),
            insert: Script::new(INSERT),
            delete: Script::new(DELETE),
            delete_by_tag: Script::new(DELETE_BY_TAG),
            keys_by_tag: Script::new(KEYS_BY_TAG),
        }
    }

    /// Hits and misses of the client-side cache (see
    /// [`connect_with_client_cache`](Self::connect_with_client_cache)), for metrics; `None`
    /// without one.
    pub fn client_cache_stats(&self) -> Option<(usize, usize)> {
        match &self.connection {
            Connection::Single(manager) => manager.get_cache_statistics().map(|s| (s.hit, s.miss)),
            Connection::Cluster(cluster) => cluster.get_cache_statistics().map(|s| (s.hit, s.miss)),
        }
    }

    /// The same backend with its keys under `{namespace}:` (default `{auth-layer}`), e.g. to
    /// keep two apps apart in one Redis. The braces make it a cluster hash tag.
    pub fn with_namespace(mut self, namespace: &str) -> Self {
        self.namespace = format!("{{{namespace}}}");
        self.spread_namespace = spread::spread_namespace(namespace);
        self
    }

    fn value_key(&self, key: &str) -> String {
        self.namespaced(":v:", key)
    }

    fn tags_key(&self, key: &str) -> String {
        self.namespaced(":k:", key)
    }

    fn index_key(&self, tag: &str) -> String {
        self.namespaced(":t:", tag)
    }

    fn channel_key(&self, channel: &str) -> String {
        self.namespaced(":n:", channel)
    }

    /// `PUBLISH`es `message` on the namespaced `channel`.
    async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<i64>(&mut connection)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// `put`, `update` or `insert` (`write`), in this backend's layout, counted and timed.
    async fn write_as(
        &self,
        write: spread::Write,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<bool, StoreError> {
        let (script, labels) = match write {
            spread::Write::Put => (&self.put, telemetry::store_labels!("redis", "put")),
            spread::Write::Update => (&self.update, telemetry::store_labels!("redis", "update")),
            spread::Write::Insert => (&self.insert, telemetry::store_labels!("redis", "insert")),
        };
        telemetry::store_op(labels, async {
            if self.spread {
                return self.spread_write(write, key, value, ttl, tags).await;
            }
            self.write(script, key, value, ttl, tags).await
        })
        .await
    }

    /// The value under the full key `value_key`: gathered with the reads of the moment into one
    /// `MGET`, or asked alone with a client-side cache.
    async fn read(&self, value_key: String) -> Result<Option<Bytes>, StoreError> {
        if let Some(gathered) = &self.gathered {
            let answer = gathered.read(&self.connection, value_key);
            return answer.await.unwrap_or_else(|_| Err(StoreError::unavailable("Redis", "the read was dropped")));
        }
        let mut connection = self.connection.clone();
        let value: Option<Vec<u8>> =
            redis::cmd("GET").arg(value_key).query_async(&mut connection).await.map_err(unavailable)?;
        Ok(value.map(Bytes::from))
    }

    /// Deletes `key` with its index entries, in the one-tag layout.
    async fn one_tag_delete(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: i64 = self
            .delete
            .key(self.value_key(key))
            .key(self.tags_key(key))
            .arg(key)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        self.settle().await
    }

    /// Deletes every key carrying `tag` in the one-tag layout; how many.
    async fn one_tag_delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        let mut connection = self.connection.clone();
        let deleted = self
            .delete_by_tag
            .key(self.index_key(tag))
            .arg(&self.namespace)
            .arg(tag)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        self.settle().await?;
        Ok(deleted)
    }

    /// The keys carrying `tag` in the one-tag layout.
    async fn one_tag_keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        self.keys_by_tag.key(self.index_key(tag)).invoke_async(&mut connection).await.map_err(unavailable)
    }

    /// `{namespace}{kind}{name}`, in one allocation (`format!` costs more on every read).
    fn namespaced(&self, kind: &str, name: &str) -> String {
        let mut key = String::with_capacity(self.namespace.len() + kind.len() + name.len());
        key.push_str(&self.namespace);
        key.push_str(kind);
        key.push_str(name);
        key
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        telemetry::store_op(telemetry::store_labels!("redis", "get"), async {
            if !self.spread {
                return self.read(self.value_key(key)).await;
            }
            let found = self.read(self.spread_value_key(key)).await?;
            if found.is_none() && self.legacy {
                // Written by an earlier version in the one-tag layout, and not since.
                return self.read(self.value_key(key)).await;
            }
            Ok(found)
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>, tags: Vec<String>) -> Result<(), StoreError> {
        self.write_as(spread::Write::Put, key, &value, ttl, &tags).await.map(drop)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        self.write_as(spread::Write::Update, key, &value, ttl, &tags).await
    }

    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        self.write_as(spread::Write::Insert, key, &value, ttl, &tags).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        telemetry::store_op(telemetry::store_labels!("redis", "delete"), async {
            if self.spread {
                return self.spread_delete(key).await;
            }
            self.one_tag_delete(key).await
        })
        .await
    }

    async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        telemetry::store_op(telemetry::store_labels!("redis", "delete_by_tag"), async {
            if self.spread {
                return self.spread_delete_by_tag(tag).await;
            }
            self.one_tag_delete_by_tag(tag).await
        })
        .await
    }

    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        telemetry::store_op(telemetry::store_labels!("redis", "keys_by_tag"), async {
            if self.spread {
                return self.spread_keys_by_tag(tag).await;
            }
            self.one_tag_keys_by_tag(tag).await
        })
        .await
    }

    /// A subscriber connection of its own (Redis pub/sub), reconnecting by itself, which also
    /// publishes itself a heartbeat every [`Notices::HEARTBEAT`]; on a cluster, `None`. One
    /// subscriber per channel, however many stores and clones of this backend watch it.
    fn watch(&self, channel: &str) -> Option<Notices> {
        let client = self.client.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let channel = self.channel_key(channel);
        Some(self.watchers.watch(&channel, |notices| {
            runtime.spawn(listen(client, self.clone(), channel.clone(), notices));
        }))
    }

    async fn notify(&self, channel: &str) -> Result<(), StoreError> {
        telemetry::store_op(telemetry::store_labels!("redis", "notify"), async {
            self.publish(&self.channel_key(channel), CHANGED).await
        })
        .await
    }
}
