//! The stateless session store: the whole session, sealed, in the browser's cookies.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_OPENED_CACHE, LogoutTarget, SessionStore, SharedState, StoreContext, StoreError, auth_cookie, chunk_index,
    removal_cookie,
};
use crate::backend::{Backend, MokaBackend, Notices};
use crate::config::AuthConfig;
use crate::model::SessionData;
use crate::model::compact;
use crate::record::{DecodedCache, TypedStore};
use crate::seal::Sealer;

/// Bytes of sealed value per cookie: name, value and attributes must stay under the ~4096 bytes
/// browsers accept per cookie.
const CHUNK_SIZE: usize = 3_800;
/// The most chunks read: bounds the cookie bytes a request can make us decrypt.
pub(crate) const MAX_CHUNKS: usize = 8;
/// The leading characters of a sealed value that key the opened cache: the format version and
/// 23 bytes of the value's random nonce, so two values that differ there are never confused.
const OPENED_KEY_LEN: usize = 32;
/// How many logout markers a cookie store keeps in memory: past it the least recently used go,
/// and a copied cookie of a session they ended would open again. Some 100 MB; a deployment
/// that sees more logouts per session lifetime shares markers in a backend instead.
pub const DEFAULT_MAX_MARKERS: u64 = 1_000_000;
/// `markers_checked` of a session whose logout markers were never checked.
const NEVER: u64 = u64::MAX;
/// The channel on which writes of logout markers are announced to every process.
const MARKER_CHANNEL: &str = "logout-markers";

/// A session cookie this store opened, kept (by its sealed value, in a [`DecodedCache`]) so the
/// same cookie is not opened again.
struct Opened {
    session: Arc<SessionData>,
    /// The marker backend's write count when this session was last found not logged out.
    markers_checked: AtomicU64,
}

impl Opened {
    /// The memory it holds behind its `Arc`: itself and its session.
    fn memory(&self, _stored: usize) -> usize {
        crate::record::chunk(16 + std::mem::size_of::<Self>()) + self.session.memory_size()
    }
}

/// A logout recorded for cookie sessions: sessions of `target` (`id:...`, `sid:...` or
/// `sub:...`) that existed when it was written are over.
///
/// Which sessions existed is decided by `generation`, not by clocks: a session created after
/// the marker read it at login and carries its generation in `markers_seen`; any other session
/// of the target is older than the marker. So a login in the same second as a logout (or on an
/// instance whose clock is behind) survives it, and a session made just before it does not.
/// Markers written before generations existed (generation 0) compare `at` with the session's
/// creation, as they did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, auth_derive::Store)]
#[store(key = "logout:{target}", name = "logout_marker")]
pub(crate) struct LogoutMarker {
    target: String,
    at: u64,
    #[serde(default)]
    generation: u64,
}

impl LogoutMarker {
    /// Whether this marker ends `session`, one of its target's.
    fn ends(&self, session: &SessionData) -> bool {
        if self.generation == 0 {
            self.at >= session.created_at
        } else {
            !session.markers_seen.contains(&self.generation)
        }
    }
}

/// Keeps the whole session in the session cookie: written in a compact binary form (about a
/// quarter smaller than JSON), sealed (XChaCha20-Poly1305, the cookie name as associated data),
/// and split over `{name}.0`, `{name}.1`, ... when it outgrows one cookie.
///
/// It needs no server-side storage for the session and survives restarts; its limits are size
/// (about 30 KB) and revocation: a copied cookie stays valid until it expires, unless the
/// provider ends it by back-channel logout. For that, the store records logout markers (by `sid`
/// or `sub`, kept as long as a session can live) and checks them whenever a session is read: in
/// this process's memory by default, in a shared [`Backend`] with
/// [`with_marker_backend`](Self::with_marker_backend) when the app runs on several machines.
///
/// ```no_run
/// use auth_layer::backend::RedisBackend;
/// use auth_layer::store::CookieSessionStore;
/// use auth_layer::{AuthClient, AuthConfig};
///
/// # async fn build(config: AuthConfig) -> Result<(), auth_layer::AuthError> {
/// // Sessions stay in the cookie; logout markers go to Redis, so every instance honours them.
/// let markers = RedisBackend::connect("redis://redis.internal:6379").await?;
/// let store = CookieSessionStore::new(&config).with_marker_backend(markers);
/// let client = AuthClient::builder(config).with_cookie_sessions(store).build().await?;
/// # let _ = client; Ok(()) }
/// ```
///
/// Opening a cookie (base64, XChaCha20-Poly1305, decoding) costs more than the rest of a typical
/// request, so the store keeps the sessions it has opened (up to 32 MiB, or what
/// [`with_opened_cache`](Self::with_opened_cache) says) by their sealed value: a request that
/// brings back a cookie byte for byte equal to one already opened gets that session without
/// opening it again. Expiry is still checked on every read, and so are the logout markers
/// (for markers in memory, only when one was written since the last check).
#[doc(alias = "StatelessStateStore", alias = "CookieStateStore")]
pub struct CookieSessionStore<M = MokaBackend> {
    config: AuthConfig,
    sealer: Sealer,
    markers: TypedStore<LogoutMarker, M>,
    /// Counts the markers this store wrote, when they live in its own memory (no one else
    /// writes them there): a session checked since the last one needs no new check. `None`
    /// for markers in a shared backend, which other processes write.
    local_marker_writes: Option<Arc<AtomicU64>>,
    /// For markers in a shared backend that pushes notices ([`Backend::watch`]): a version
    /// that moves whenever any process writes a marker. A session checked at the current
    /// version needs no new check; without a version (not connected, or silent too long),
    /// every read checks.
    marker_notices: Option<Notices>,
    /// Opened sessions by the leading bytes of their sealed value (whole values compared).
    opened: Option<DecodedCache<[u8; OPENED_KEY_LEN], Opened>>,
}

impl<M> std::fmt::Debug for CookieSessionStore<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSessionStore").field("cookie", &self.config.cookies.session_name).finish_non_exhaustive()
    }
}

impl CookieSessionStore<MokaBackend> {
    /// A store sealing with a key derived from `config`'s secrets; logout markers in memory.
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            sealer: Sealer::new(&config.secrets, "auth-layer session cookie v1"),
            markers: TypedStore::in_memory_bounded(DEFAULT_MAX_MARKERS),
            local_marker_writes: Some(Arc::default()),
            marker_notices: None,
            opened: DecodedCache::new(DEFAULT_OPENED_CACHE, Opened::memory),
            config: config.clone(),
        }
    }
}

impl CookieSessionStore<MokaBackend> {
    /// The same store, keeping at most `max_markers` logout markers in memory (default
    /// [`DEFAULT_MAX_MARKERS`]).
    pub fn with_max_markers(mut self, max_markers: u64) -> Self {
        self.markers = TypedStore::in_memory_bounded(max_markers);
        self
    }

    /// How many logout markers are held in memory (after moka's pending housekeeping).
    pub async fn marker_count(&self) -> u64 {
        self.markers.backend().run_pending_tasks().await;
        self.markers.backend().entry_count()
    }
}

impl<M: Backend> CookieSessionStore<M> {
    /// The same store with its logout markers kept in `backend`, shared by every process that
    /// uses it. When the backend pushes notices ([`Backend::watch`]: Redis, PostgreSQL), a
    /// session is checked against the markers once and again only after a marker is written
    /// anywhere (or while the notices are not known to arrive); otherwise on every read. Call
    /// it within a Tokio runtime for the notices to start.
    pub fn with_marker_backend<B: Backend>(self, backend: B) -> CookieSessionStore<B> {
        let marker_notices = backend.watch(MARKER_CHANNEL);
        let mut markers = TypedStore::new(backend, &self.config.secrets);
        // A tenant's logout markers apart from other tenants' (a `sub` may exist at both).
        if let Some(tenant) = self.config.tenant() {
            markers = markers.with_namespace(tenant);
        }
        CookieSessionStore {
            markers,
            local_marker_writes: None,
            marker_notices,
            sealer: self.sealer,
            opened: self.opened,
            config: self.config,
        }
    }

    /// Where the client keeps the state every process must see alike beside these sessions:
    /// the markers' backend when they are shared ([`with_marker_backend`](Self::with_marker_backend)),
    /// else this process's memory.
    /// [`AuthClientBuilder::with_cookie_sessions`](crate::AuthClientBuilder::with_cookie_sessions)
    /// takes it from here.
    pub fn shared_state(&self) -> SharedState {
        match self.local_marker_writes {
            Some(_) => SharedState::in_memory(),
            None => SharedState::in_shared_backend(self.markers.shared_backend()),
        }
    }

    /// The same store, keeping up to about `max_bytes` of opened sessions (0: none; every read
    /// opens the cookie).
    pub fn with_opened_cache(mut self, max_bytes: u64) -> Self {
        self.opened = DecodedCache::new(max_bytes, Opened::memory);
        self
    }

    /// How much the cache of opened sessions holds now, in the bytes its bound counts (after
    /// its pending evictions): at most about the bound [`with_opened_cache`](Self::with_opened_cache)
    /// set. For an app's metrics, and the benches.
    pub fn opened_cache_bytes(&self) -> u64 {
        self.opened.as_ref().map_or(0, DecodedCache::weighed_size)
    }

    /// The session sealed in `sealed`: from the opened cache when this exact value was opened
    /// before, else opened, decoded and cached. `None` when it does not open or decode.
    fn open(&self, sealed: &[u8]) -> Option<Arc<Opened>> {
        let key: Option<[u8; OPENED_KEY_LEN]> = sealed.get(..OPENED_KEY_LEN).and_then(|prefix| prefix.try_into().ok());
        // Bytes equal to a value opened before are that (valid) text: no need to check them.
        if let (Some(cache), Some(key)) = (&self.opened, &key)
            && let Some(hit) = cache.get(key, sealed)
        {
            return Some(hit);
        }
        let Ok(sealed) = std::str::from_utf8(sealed) else {
            tracing::warn!("session cookie is not text; treated as no session");
            return None;
        };
        let Some(plain) = self.sealer.open(self.name(), sealed) else {
            tracing::warn!("session cookie does not open (tampered, truncated or another key); treated as no session");
            return None;
        };
        let session = match compact::decode(&plain) {
            Ok(session) => session,
            Err(err) => {
                tracing::warn!(%err, "session cookie does not decode; treated as no session");
                return None;
            }
        };
        let opened = Arc::new(Opened { session: Arc::new(session), markers_checked: NEVER.into() });
        if let (Some(cache), Some(key)) = (&self.opened, key) {
            cache.insert(key, Bytes::copy_from_slice(sealed.as_bytes()), opened.clone());
        }
        Some(opened)
    }

    /// The marker targets of `session`: its own id (a logout through the app), its `sid` and
    /// its `sub` (a back-channel logout).
    fn targets(session: &SessionData) -> impl Iterator<Item = String> {
        [
            Some(format!("id:{}", session.id())),
            session.sid().map(|sid| format!("sid:{sid}")),
            Some(format!("sub:{}", session.sub())),
        ]
        .into_iter()
        .flatten()
    }

    /// Whether a logout ended `session`: a marker of one of its targets that it had not seen
    /// when it was created.
    async fn logged_out(&self, session: &SessionData) -> Result<bool, StoreError> {
        for target in Self::targets(session) {
            if let Some(marker) = self.markers.get_shared(&target).await?
                && marker.ends(session)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The generations of the markers that exist now for a new session's targets: older than
    /// the session, so they do not end it.
    async fn markers_now(&self, session: &SessionData) -> Result<Vec<u64>, StoreError> {
        let mut seen = Vec::new();
        for target in Self::targets(session) {
            if let Some(marker) = self.markers.get_shared(&target).await?
                && marker.generation != 0
            {
                seen.push(marker.generation);
            }
        }
        Ok(seen)
    }

    /// Seals `data` into the session cookie (chunked when large) and clears stale chunks.
    fn write(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
        let plain = compact::encode(data)?;
        let sealed = self.sealer.seal(self.name(), &plain);
        let now = self.config.clock.now();
        let max_age = data.seconds_left(&self.config, now);
        let path = self.config.cookies.path.clone();
        let mut names = Vec::new();
        if sealed.len() <= CHUNK_SIZE {
            names.push(self.name().to_owned());
            ctx.push_cookie(auth_cookie(&self.config, self.name().to_owned(), sealed, &path, max_age));
        } else {
            let parts = sealed.as_bytes().chunks(CHUNK_SIZE);
            if parts.len() > MAX_CHUNKS {
                return Err(StoreError::TooLarge { size: sealed.len(), limit: CHUNK_SIZE * MAX_CHUNKS });
            }
            for (i, part) in parts.enumerate() {
                let name = format!("{}.{i}", self.name());
                // base64url is ASCII, so every chunk boundary is a char boundary.
                let value = String::from_utf8_lossy(part).into_owned();
                ctx.push_cookie(auth_cookie(&self.config, name.clone(), value, &path, max_age));
                names.push(name);
            }
        }
        self.clear_stale(ctx, &names);
        Ok(())
    }

    fn name(&self) -> &str {
        &self.config.cookies.session_name
    }

    /// Records that sessions of `target` that exist now are over, for `ttl`.
    async fn write_marker(&self, target: String, ttl: Duration) -> Result<(), StoreError> {
        let mut generation = [0u8; 8];
        getrandom::fill(&mut generation).map_err(|e| StoreError::unavailable("the random generator", e.to_string()))?;
        // 0 means "no generation" (a marker of an earlier version).
        let generation = u64::from_le_bytes(generation).max(1);
        let marker = LogoutMarker { target, at: self.config.clock.now(), generation };
        self.markers.set_with_ttl(&marker, Some(ttl)).await?;
        if let Some(count) = &self.local_marker_writes {
            count.fetch_add(1, Ordering::Release);
        }
        if let Some(notices) = &self.marker_notices {
            // This process sees its own marker at once; the others when the notice arrives.
            notices.changed();
            // Without the notice, other processes would keep serving the session: a failure
            // is the caller's (a back-channel logout answers 503, and the provider retries).
            self.markers.backend().notify(MARKER_CHANNEL).await?;
        }
        Ok(())
    }

    /// The request's sealed value: the single cookie, or the chunks `{name}.0..n` in order.
    /// `None` when absent or when the chunk set is incomplete.
    fn read_sealed<'c>(&self, ctx: &'c StoreContext) -> Option<Cow<'c, [u8]>> {
        if let Some(single) = ctx.cookie_bytes(self.name()) {
            return Some(Cow::Borrowed(single));
        }
        let indexes: Vec<usize> = ctx.request_cookie_names().filter_map(|n| self.chunk_index(n)).collect();
        if indexes.is_empty() {
            return None;
        }
        if indexes.len() > MAX_CHUNKS {
            tracing::warn!(chunks = indexes.len(), "session cookie has too many chunks; treated as no session");
            return None;
        }
        let mut sealed = Vec::with_capacity(indexes.len() * CHUNK_SIZE);
        for i in 0..indexes.len() {
            match ctx.cookie_bytes(&format!("{}.{i}", self.name())) {
                Some(part) => sealed.extend_from_slice(part),
                None => {
                    tracing::warn!("session cookie chunk {i} is missing; treated as no session");
                    return None;
                }
            }
        }
        Some(Cow::Owned(sealed))
    }

    fn chunk_index(&self, cookie_name: &str) -> Option<usize> {
        chunk_index(self.name(), cookie_name)
    }

    /// Removes every session cookie of the request not in `keep`.
    fn clear_stale(&self, ctx: &mut StoreContext, keep: &[String]) {
        let stale: Vec<String> = ctx
            .request_cookie_names()
            .filter(|n| *n == self.name() || self.chunk_index(n).is_some())
            .filter(|n| !keep.iter().any(|k| k == n))
            .map(str::to_owned)
            .collect();
        for name in stale {
            ctx.push_cookie(removal_cookie(&self.config, name, &self.config.cookies.path));
        }
    }
}

#[async_trait]
impl<M: Backend> SessionStore for CookieSessionStore<M> {
    async fn get(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, StoreError> {
        let Some(opened) = self.read_sealed(ctx).and_then(|sealed| self.open(&sealed)) else { return Ok(None) };
        // Read before the markers: a marker written during the check changes it, and the next
        // read checks again.
        let writes = match (&self.local_marker_writes, &self.marker_notices) {
            (Some(count), _) => Some(count.load(Ordering::Acquire)),
            (None, Some(notices)) => notices.version(),
            (None, None) => None,
        };
        if writes.is_none_or(|now| now != opened.markers_checked.load(Ordering::Acquire)) {
            // Boxed: the check's future (the backend's reads) would otherwise size this whole
            // future, which every read allocates and moves, checked or not.
            if Box::pin(self.logged_out(&opened.session)).await? {
                tracing::info!(sub = opened.session.sub(), "session ended by back-channel logout");
                self.clear_stale(ctx, &[]);
                return Ok(None);
            }
            opened.markers_checked.store(writes.unwrap_or(NEVER), Ordering::Release);
        }
        Ok(Some(opened.session.clone()))
    }

    /// Writes the new session with the generations of the logout markers that exist for it
    /// now (each marker carries a random generation; the session keeps those it saw): a logout
    /// written before this login does not end it, one written after does, even within the
    /// same second.
    ///
    /// A session the request carried (another login's) ends as a logout would end it: copies of
    /// its cookie no longer open.
    async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
        if let Some(replaced) = self.read_sealed(ctx).and_then(|sealed| self.open(&sealed))
            && replaced.session.id() != data.id()
        {
            let left = replaced.session.seconds_left(&self.config, self.config.clock.now());
            if left > 0 {
                self.write_marker(format!("id:{}", replaced.session.id()), Duration::from_secs(left)).await?;
            }
        }
        let seen = self.markers_now(data).await?;
        if seen.is_empty() && data.markers_seen.is_empty() {
            return self.write(ctx, data);
        }
        let mut data = data.clone();
        data.markers_seen = seen;
        self.write(ctx, &data)
    }

    /// A session ended by a back-channel logout since it was read is not written again (its
    /// cookies are cleared): checked against the markers, one read where they are shared.
    async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError> {
        if self.logged_out(data).await? {
            tracing::info!(sub = data.sub(), "session ended by back-channel logout while in use; not saved");
            self.clear_stale(ctx, &[]);
            return Ok(false);
        }
        self.write(ctx, data)?;
        Ok(true)
    }

    /// Clears the cookies and, for a session still live, records a marker for its id (for the
    /// rest of its life): a copy of the cookie taken before the logout no longer opens a session.
    async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
        if let Some(opened) = self.read_sealed(ctx).and_then(|sealed| self.open(&sealed)) {
            let left = opened.session.seconds_left(&self.config, self.config.clock.now());
            if left > 0 {
                self.write_marker(format!("id:{}", opened.session.id()), Duration::from_secs(left)).await?;
            }
        }
        self.clear_stale(ctx, &[]);
        Ok(())
    }

    async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError> {
        // With a sid, only that session ends; with only a sub, every session of the user.
        let target = match (&target.sid, &target.sub) {
            (Some(sid), _) => format!("sid:{sid}"),
            (None, Some(sub)) => format!("sub:{sub}"),
            (None, None) => return Ok(()),
        };
        self.write_marker(target, self.config.absolute_duration).await
    }

    /// Reads a key never written from the markers' backend when they are shared; nothing to
    /// reach when they are in memory (the sessions are in the browsers).
    async fn ready(&self) -> Result<bool, StoreError> {
        if self.local_marker_writes.is_some() {
            return Ok(false);
        }
        self.markers.backend().get(super::PROBE_KEY).await.map(|_| true)
    }

    /// The notices of logout markers, when the markers' backend pushes them.
    fn notices(&self) -> Option<Notices> {
        self.marker_notices.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::store::browser_round_trip;
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue};

    fn config() -> AuthConfig {
        crate::config::test_config(std::sync::Arc::new(1_000.into())).build().unwrap()
    }

    fn session(claim_bytes: usize) -> SessionData {
        let claims = serde_json::json!({"sub": "u1", "bio": "b".repeat(claim_bytes)});
        let mut data = SessionData::new(
            User::from_id_token_claims(claims.as_object().unwrap().clone()),
            "header.payload.signature".into(),
            1_000,
        );
        data.id = "fixed-id".into();
        data
    }

    #[tokio::test]
    async fn small_session_round_trips_in_one_cookie() {
        let store = CookieSessionStore::new(&config());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session(10)).await.unwrap();
        let (set, mut next) = browser_round_trip(ctx);
        assert_eq!(set.len(), 1);
        for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
            assert!(set[0].contains(attribute), "{attribute} missing in {}", set[0]);
        }
        assert_eq!(store.get(&mut next).await.unwrap().as_deref(), Some(&session(10)));
    }

    #[tokio::test]
    async fn large_session_round_trips_in_chunks() {
        let store = CookieSessionStore::new(&config());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session(9_000)).await.unwrap();
        let (set, mut next) = browser_round_trip(ctx);
        assert!(set.len() >= 3, "9 KB of claims needs at least 3 cookies, got {}", set.len());
        for value in &set {
            assert!(value.len() < 4_000, "every cookie stays under the browser limit");
        }
        assert_eq!(store.get(&mut next).await.unwrap().as_deref(), Some(&session(9_000)));
    }

    #[tokio::test]
    async fn missing_chunk_means_no_session() {
        let store = CookieSessionStore::new(&config());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session(9_000)).await.unwrap();
        let (set, _) = browser_round_trip(ctx);
        let without_middle: Vec<String> = set
            .iter()
            .map(|line| cookie::Cookie::parse(line.clone()).unwrap())
            .filter(|c| c.name() != "_a0_session.1")
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(&without_middle.join("; ")).unwrap());
        assert_eq!(store.get(&mut StoreContext::from_headers(&request)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn shrinking_session_clears_stale_chunks() {
        let store = CookieSessionStore::new(&config());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session(9_000)).await.unwrap();
        let (_, mut next) = browser_round_trip(ctx);
        assert!(store.update(&mut next, &session(10)).await.unwrap());
        let (set, _) = browser_round_trip(next);
        let removed: Vec<String> = set
            .iter()
            .map(|line| cookie::Cookie::parse(line.clone()).unwrap())
            .filter(|c| c.max_age() == Some(cookie::time::Duration::ZERO))
            .map(|c| c.name().to_owned())
            .collect();
        assert!(
            removed.contains(&"_a0_session.0".to_owned()) && removed.contains(&"_a0_session.1".to_owned()),
            "{removed:?}"
        );
        assert!(!removed.contains(&"_a0_session".to_owned()));
    }

    #[tokio::test]
    async fn unrelated_cookies_with_our_prefix_are_not_chunks() {
        let store = CookieSessionStore::new(&config());
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_static("_a0_session_theme=dark; _a0_session.x=1"));
        let mut ctx = StoreContext::from_headers(&request);
        assert_eq!(store.get(&mut ctx).await.unwrap(), None);
        store.delete(&mut ctx).await.unwrap();
        assert!(!ctx.has_response_cookies(), "cookies that are not ours are left alone");
    }

    #[tokio::test]
    async fn garbage_cookie_means_no_session() {
        let store = CookieSessionStore::new(&config());
        for garbage in ["", "x", "AAAA", "!!!", &"A".repeat(5000)] {
            let mut request = HeaderMap::new();
            request.insert(COOKIE, HeaderValue::from_str(&format!("_a0_session={garbage}")).unwrap());
            assert_eq!(store.get(&mut StoreContext::from_headers(&request)).await.unwrap(), None, "{garbage}");
        }
    }

    #[tokio::test]
    async fn cookie_bytes_that_are_not_text_mean_no_session_even_after_an_opened_prefix() {
        let store = CookieSessionStore::new(&config());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session(10)).await.unwrap();
        let (_, mut next) = browser_round_trip(ctx);
        assert!(store.get(&mut next).await.unwrap().is_some(), "opened, and now in the opened cache");
        let sealed = next.cookie("_a0_session").unwrap().to_owned();
        // Header values may carry bytes 0x80-0xFF; here after the cached value's prefix.
        for tail in [&b"\xff"[..], &b"\xc3\x28"[..], &b"\x80abc"[..]] {
            let mut value = format!("_a0_session={}", &sealed[..40]).into_bytes();
            value.extend_from_slice(tail);
            let header = HeaderValue::from_bytes(&value).unwrap();
            let mut request = StoreContext::from_cookie_headers([&header]);
            assert_eq!(store.get(&mut request).await.unwrap(), None, "{tail:?}");
        }
    }

    #[tokio::test]
    async fn back_channel_logout_marks_end_the_cookie_session_but_not_a_later_login() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let now = Arc::new(AtomicU64::new(1_000));
        let config = crate::config::test_config(now.clone()).build().unwrap();
        let store = CookieSessionStore::new(&config);
        let claims = serde_json::json!({"sub": "u1", "sid": "s1"});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        let old = SessionData::new(user.clone(), "t".into(), 1_000);
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &old).await.unwrap();
        let (_, mut copied) = browser_round_trip(ctx);

        now.store(1_100, Ordering::SeqCst);
        let target = LogoutTarget { iss: "i".into(), sub: Some("u1".into()), sid: Some("s1".into()) };
        store.delete_by_logout_token(&target).await.unwrap();
        assert_eq!(store.get(&mut copied).await.unwrap(), None, "the marked session is over, copies included");

        now.store(1_101, Ordering::SeqCst);
        let new = SessionData::new(user, "t".into(), 1_101);
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &new).await.unwrap();
        let (_, mut next) = browser_round_trip(ctx);
        assert_eq!(
            store.get(&mut next).await.unwrap().map(|s| s.id().to_owned()),
            Some(new.id().to_owned()),
            "a login after the logout is not affected"
        );
    }

    /// A session of `sub` u1 (no `sid`: a `sub`-only logout must decide) saved by `store`; the
    /// cookies it set.
    async fn login(store: &CookieSessionStore<impl Backend>, now: u64) -> Vec<String> {
        let claims = serde_json::json!({"sub": "u1"});
        let user = User::from_id_token_claims(claims.as_object().unwrap().clone());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &SessionData::new(user, "t".into(), now)).await.unwrap();
        browser_round_trip(ctx).0
    }

    #[tokio::test]
    async fn a_login_in_the_same_second_as_a_sub_logout_survives_it_and_one_before_does_not() {
        // The clock stands still: every step below happens within one second.
        let config = crate::config::test_config(Arc::new(1_000.into())).build().unwrap();
        let logout = LogoutTarget { iss: "i".into(), sub: Some("u1".into()), sid: None };

        // One process, markers in its memory.
        let store = CookieSessionStore::new(&config);
        let before = login(&store, 1_000).await;
        store.delete_by_logout_token(&logout).await.unwrap();
        let after = login(&store, 1_000).await;
        assert_eq!(store.get(&mut replay(&before)).await.unwrap(), None, "created before the logout: ended");
        assert!(store.get(&mut replay(&after)).await.unwrap().is_some(), "created after it, same second: alive");
        store.delete_by_logout_token(&logout).await.unwrap();
        assert_eq!(store.get(&mut replay(&after)).await.unwrap(), None, "a later logout of the user ends it too");

        // Two instances sharing their markers: logged in on A, logged out through B, read on both.
        let shared = MokaBackend::new();
        let a = CookieSessionStore::new(&config).with_marker_backend(shared.clone());
        let b = CookieSessionStore::new(&config).with_marker_backend(shared);
        let before = login(&a, 1_000).await;
        b.delete_by_logout_token(&logout).await.unwrap();
        // B's clock is a second behind A's: the login still counts as after the logout.
        let after = login(&a, 999).await;
        for (name, store) in [("A", &a), ("B", &b)] {
            assert_eq!(store.get(&mut replay(&before)).await.unwrap(), None, "{name}: the earlier session ended");
            assert!(store.get(&mut replay(&after)).await.unwrap().is_some(), "{name}: the later session lives");
        }
    }

    #[tokio::test]
    async fn markers_of_earlier_versions_still_end_sessions_by_time() {
        let config = crate::config::test_config(Arc::new(1_000.into())).build().unwrap();
        let store = CookieSessionStore::new(&config);
        let before = login(&store, 1_000).await;
        let later = login(&store, 1_001).await;
        // As an earlier version wrote it: no generation.
        let marker = LogoutMarker { target: "sub:u1".into(), at: 1_000, generation: 0 };
        store.markers.set_with_ttl(&marker, None).await.unwrap();
        store.local_marker_writes.as_ref().unwrap().fetch_add(1, Ordering::Release);
        assert_eq!(
            store.get(&mut replay(&before)).await.unwrap(),
            None,
            "created at or before the marker's time: ended"
        );
        assert!(store.get(&mut replay(&later)).await.unwrap().is_some(), "created after it: alive");
    }

    /// The request a browser sends after receiving `set` (every live cookie of it).
    fn replay(set: &[String]) -> StoreContext {
        let pairs: Vec<String> = set
            .iter()
            .map(|line| cookie::Cookie::parse(line.clone()).unwrap())
            .filter(|c| c.max_age() != Some(cookie::time::Duration::ZERO))
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        StoreContext::from_headers(&request)
    }

    async fn sealed(store: &CookieSessionStore, data: &SessionData) -> Vec<String> {
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, data).await.unwrap();
        browser_round_trip(ctx).0
    }

    #[test]
    fn the_bound_counts_the_memory_the_cache_holds() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let store = CookieSessionStore::new(&config()).with_opened_cache(1 << 30);
        let cookies: Vec<Vec<String>> = (0..2_000)
            .map(|i| {
                let mut data = session(300 + i % 1_500);
                data.id = format!("id-{i}");
                data.sid = Some(format!("sid-{i}"));
                data.refresh_token = Some("r".repeat(43));
                runtime.block_on(sealed(&store, &data))
            })
            .collect();
        let (counted, held) = crate::alloc_count::memory_kept_by(|| {
            for set in &cookies {
                assert!(runtime.block_on(store.get(&mut replay(set))).unwrap().is_some());
            }
            store.opened_cache_bytes()
        });
        let ratio = counted as f64 / held as f64;
        assert!((0.9..=1.1).contains(&ratio), "the bound counts {counted} bytes of the {held} the cache holds");
    }

    #[tokio::test]
    async fn the_same_cookie_is_opened_once_and_shared() {
        for size in [10, 9_000] {
            let store = CookieSessionStore::new(&config());
            let set = sealed(&store, &session(size)).await;
            let first = store.get(&mut replay(&set)).await.unwrap().unwrap();
            let second = store.get(&mut replay(&set)).await.unwrap().unwrap();
            assert!(Arc::ptr_eq(&first, &second), "{size}: the second read is served from the opened cache");

            let uncached = CookieSessionStore::new(&config()).with_opened_cache(0);
            let set = sealed(&uncached, &session(size)).await;
            let first = uncached.get(&mut replay(&set)).await.unwrap().unwrap();
            let second = uncached.get(&mut replay(&set)).await.unwrap().unwrap();
            assert!(!Arc::ptr_eq(&first, &second), "{size}: without the cache, every read opens the cookie");
            assert_eq!(first, second);
        }
    }

    #[tokio::test]
    async fn a_cookie_read_before_is_read_again_with_one_allocation_the_reads_future() {
        use std::task::{Context, Poll, Waker};
        let store = CookieSessionStore::new(&config());
        let set = sealed(&store, &session(10)).await;
        // The first read opens the cookie and checks it against the logout markers.
        assert!(store.get(&mut replay(&set)).await.unwrap().is_some());
        let mut ctx = replay(&set);
        let (read, allocations) = crate::alloc_count::allocations_in(|| {
            store.get(&mut ctx).as_mut().poll(&mut Context::from_waker(Waker::noop()))
        });
        assert!(matches!(read, Poll::Ready(Ok(Some(_)))), "answered at once, from the opened cache");
        assert_eq!(allocations, 1, "the boxed future of `get`, nothing else");
    }

    #[tokio::test]
    async fn a_read_allocates_a_small_future_with_markers_kept_by_the_store_or_by_a_backend() {
        // `get`'s boxed future is allocated and moved on every read; the marker check, which
        // awaits the backend, is boxed on its own and only when a read needs it.
        let mut ctx = StoreContext::default();
        let in_memory = CookieSessionStore::new(&config());
        let shared = CookieSessionStore::new(&config()).with_marker_backend(MokaBackend::new());
        let in_memory = size_of_val(&*in_memory.get(&mut ctx));
        let sizes = [in_memory, size_of_val(&*shared.get(&mut ctx))];
        assert!(sizes.iter().all(|&size| size <= 128), "read futures of {sizes:?} bytes");
    }

    #[tokio::test]
    async fn a_cookie_that_differs_from_an_opened_one_after_its_prefix_is_opened_and_refused() {
        let store = CookieSessionStore::new(&config());
        let set = sealed(&store, &session(10)).await;
        assert!(store.get(&mut replay(&set)).await.unwrap().is_some());
        let value = cookie::Cookie::parse(set[0].clone()).unwrap().value().to_owned();
        let mut tampered = value.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(tampered[..OPENED_KEY_LEN], value[..OPENED_KEY_LEN], "same cache key");
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(&format!("_a0_session={tampered}")).unwrap());
        assert_eq!(store.get(&mut StoreContext::from_headers(&request)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_back_channel_logout_ends_a_session_already_opened_and_cached() {
        let now = Arc::new(AtomicU64::new(1_000));
        let config = crate::config::test_config(now.clone()).build().unwrap();
        let store = CookieSessionStore::new(&config);
        let claims = serde_json::json!({"sub": "u1", "sid": "s1"});
        let data = SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "t".into(), 1_000);
        let set = sealed(&store, &data).await;
        assert!(store.get(&mut replay(&set)).await.unwrap().is_some());
        assert!(store.get(&mut replay(&set)).await.unwrap().is_some(), "served from the cache, markers unchanged");

        now.store(1_100, Ordering::SeqCst);
        let target = LogoutTarget { iss: "i".into(), sub: None, sid: Some("s1".into()) };
        store.delete_by_logout_token(&target).await.unwrap();
        let mut after = replay(&set);
        assert_eq!(store.get(&mut after).await.unwrap(), None, "the marker written since is checked");
        assert!(after.has_response_cookies(), "and the cookie is cleared");
    }

    #[tokio::test]
    async fn logout_markers_in_memory_are_bounded() {
        let store = CookieSessionStore::new(&config()).with_max_markers(100);
        for i in 0..1_000 {
            let target = LogoutTarget { iss: "i".into(), sub: None, sid: Some(format!("sid-{i}")) };
            store.delete_by_logout_token(&target).await.unwrap();
        }
        let held = store.marker_count().await;
        assert!(held <= 100 && held > 0, "{held} markers held past the bound of 100");
    }

    #[tokio::test]
    async fn a_logout_ends_copies_of_the_cookie_and_not_a_later_login() {
        let store = CookieSessionStore::new(&config());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session(10)).await.unwrap();
        let (set, mut copy) = browser_round_trip(ctx);
        let pairs: Vec<&str> = set.iter().map(|line| line.split(';').next().unwrap()).collect();
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        let mut browser = StoreContext::from_headers(&request);
        store.delete(&mut browser).await.unwrap();
        assert_eq!(store.get(&mut copy).await.unwrap(), None, "a copy taken before the logout");
        let mut later = session(10);
        later.id = "another-login".into();
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &later).await.unwrap();
        let (_, mut next) = browser_round_trip(ctx);
        assert!(store.get(&mut next).await.unwrap().is_some(), "a new login is not affected");
    }
}
