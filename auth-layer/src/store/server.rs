//! The stateful session store: only a random session id in the cookie, the session itself in a
//! [`Backend`] (sealed, indexed by `sub` and `sid`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::SharedState;
use super::{DEFAULT_OPENED_CACHE, LogoutTarget, SessionStore, StoreContext, StoreError, chunk_index};
use crate::backend::{Backend, MokaBackend};
use crate::config::AuthConfig;
use crate::model::SessionData;
use crate::record::TypedStore;

/// Keeps sessions on the server: the cookie carries only the session's random id (256 bits from
/// the operating system's generator, new at every login, the old record deleted), and the data
/// lives in a [`Backend`], sealed, under a keyed hash of the id (`session:h:{HMAC-SHA256}`, see
/// [`TypedStore::with_hashed_keys`]): whoever reads the backend's keyspace, a replica, a backup
/// or `MONITOR` sees no session id it could present as a cookie. Sessions stored by earlier
/// versions under `session:{id}` are still read, renewed and deleted where they are until they
/// expire (a lookup there costs a second round trip only for an id not found under its hash). Logging out deletes the record, so a
/// copied cookie stops working; back-channel logout deletes by the `sid` or `sub` index.
///
/// ```no_run
/// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::{AuthClient, AuthLayer};
/// use auth_layer::store::ServerSessionStore;
///
/// let store = ServerSessionStore::in_memory(&config);
/// let layer = AuthLayer::new(AuthClient::builder(config).with_server_sessions(store).build().await?);
/// # Ok(()) }
/// ```
///
/// In memory, sessions are kept as they are. In a shared backend they are sealed, and the
/// sessions read are kept decoded (up to [`DEFAULT_OPENED_CACHE`] bytes unless
/// [`with_opened_cache`](Self::with_opened_cache) says otherwise): a request whose session's
/// stored bytes have not changed gets it without decrypting or decoding it again. The backend
/// is still asked on every request, so a deleted session ends at once, on every machine.
#[doc(alias = "ServerStateStore")]
pub struct ServerSessionStore<B = MokaBackend> {
    sessions: TypedStore<SessionData, B>,
    config: AuthConfig,
}

impl<B> std::fmt::Debug for ServerSessionStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSessionStore").finish_non_exhaustive()
    }
}

/// How many sessions [`ServerSessionStore::in_memory`] holds: past it, the least recently used
/// are dropped (those users log in again). About 300 MB of sessions of 3 KB; a flood of logins
/// cannot grow the process past it.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;

impl ServerSessionStore<MokaBackend> {
    /// Sessions in this process's memory (moka): simple and fast, lost on restart, not shared
    /// between processes; at most [`DEFAULT_MAX_SESSIONS`].
    pub fn in_memory(config: &AuthConfig) -> Self {
        Self::in_memory_bounded(config, DEFAULT_MAX_SESSIONS)
    }

    /// [`in_memory`](Self::in_memory), holding at most `max_sessions`.
    pub fn in_memory_bounded(config: &AuthConfig, max_sessions: u64) -> Self {
        // Kept as they are: nothing to seal or open, so no cache of opened sessions either.
        Self { sessions: TypedStore::in_memory_bounded(max_sessions), config: config.clone() }
    }
}

impl<B: Backend> ServerSessionStore<B> {
    /// Sessions in `backend`, sealed with a key derived from `config`'s secrets.
    pub fn new(backend: B, config: &AuthConfig) -> Self {
        let mut sessions = TypedStore::new(backend, &config.secrets);
        // A tenant's sessions, and their `sid`/`sub` indexes, apart from other tenants'.
        if let Some(tenant) = config.tenant() {
            sessions = sessions.with_namespace(tenant);
        }
        let sessions = sessions.with_hashed_keys(&config.secrets).with_opened_cache(DEFAULT_OPENED_CACHE);
        Self { sessions, config: config.clone() }
    }

    /// The same store, keeping up to about `max_bytes` of decoded sessions (0: none; every
    /// read decrypts and decodes).
    pub fn with_opened_cache(mut self, max_bytes: u64) -> Self {
        self.sessions = self.sessions.with_opened_cache(max_bytes);
        self
    }

    /// Where the client keeps the state every process must see alike beside these sessions:
    /// the store's backend, or this process's memory for [`in_memory`](ServerSessionStore::in_memory).
    /// [`AuthClientBuilder::with_server_sessions`](crate::AuthClientBuilder::with_server_sessions)
    /// takes it from here; an app that wraps this store in one of its own gives it to
    /// [`with_shared_state`](crate::AuthClientBuilder::with_shared_state).
    pub fn shared_state(&self) -> SharedState {
        if self.sessions.is_in_memory() {
            SharedState::in_memory()
        } else {
            SharedState::in_shared_backend(self.sessions.shared_backend())
        }
    }

    /// The typed store of sessions behind this store.
    pub fn sessions(&self) -> &TypedStore<SessionData, B> {
        &self.sessions
    }

    fn name(&self) -> &str {
        &self.config.cookies.session_name
    }

    /// The request's session id, if its cookie holds something shaped like one (anything else
    /// is not worth a round trip to the backend).
    fn request_id<'c>(&self, ctx: &'c StoreContext) -> Option<&'c str> {
        let id = ctx.cookie(self.name())?;
        let well_formed = id.len() == 43 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            tracing::warn!("session cookie is not a session id; treated as no session");
            return None;
        }
        Some(id)
    }

    /// Removes cookies a cookie-store session left (`{name}.0`, ...), e.g. after switching stores.
    fn clear_chunks(&self, ctx: &mut StoreContext) {
        let chunks: Vec<String> =
            ctx.request_cookie_names().filter(|n| chunk_index(self.name(), n).is_some()).map(str::to_owned).collect();
        for name in chunks {
            ctx.remove_cookie(&self.config, &name);
        }
    }
}

#[async_trait]
impl<B: Backend> SessionStore for ServerSessionStore<B> {
    async fn get(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, StoreError> {
        let Some(id) = self.request_id(ctx) else { return Ok(None) };
        let session = self.sessions.get_shared(id).await?;
        if session.is_none() {
            tracing::debug!("session id not found (expired, logged out or never issued)");
        }
        Ok(session)
    }

    async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
        if let Some(old) = self.request_id(ctx).filter(|old| *old != data.id()).map(str::to_owned) {
            self.sessions.delete(&old).await?;
        }
        let ttl = data.seconds_left(&self.config, self.config.clock.now());
        self.sessions.set_shared(Arc::new(data.clone()), Some(Duration::from_secs(ttl.max(1)))).await?;
        ctx.set_cookie(&self.config, self.name(), data.id(), Duration::from_secs(ttl));
        self.clear_chunks(ctx);
        Ok(())
    }

    async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError> {
        let ttl = data.seconds_left(&self.config, self.config.clock.now());
        if !self.sessions.update_shared(Arc::new(data.clone()), Some(Duration::from_secs(ttl.max(1)))).await? {
            tracing::info!(sub = data.sub(), "session ended while in use (logout or expiry); not saved");
            ctx.remove_cookie(&self.config, self.name());
            self.clear_chunks(ctx);
            return Ok(false);
        }
        ctx.set_cookie(&self.config, self.name(), data.id(), Duration::from_secs(ttl));
        self.clear_chunks(ctx);
        Ok(true)
    }

    async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
        if let Some(id) = self.request_id(ctx).map(str::to_owned) {
            self.sessions.delete(&id).await?;
        }
        if ctx.cookie(self.name()).is_some() {
            ctx.remove_cookie(&self.config, self.name());
        }
        self.clear_chunks(ctx);
        Ok(())
    }

    async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError> {
        let deleted = match (&target.sid, &target.sub) {
            (Some(sid), _) => self.sessions.delete_by(SessionData::SID, sid.as_str()).await?,
            (None, Some(sub)) => self.sessions.delete_by(SessionData::SUB, sub.as_str()).await?,
            (None, None) => 0,
        };
        tracing::info!(deleted, "back-channel logout ended sessions");
        Ok(())
    }

    fn lists_sessions(&self) -> bool {
        true
    }

    /// By the `sub` index: one lookup, then one read per session of the user.
    async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionData>, StoreError> {
        self.sessions.find_by(SessionData::SUB, sub).await
    }

    async fn end(&self, session: &SessionData) -> Result<bool, StoreError> {
        self.sessions.delete(session.id()).await?;
        Ok(true)
    }

    /// Reads a key never written from the backend; nothing to reach in memory.
    async fn ready(&self) -> Result<bool, StoreError> {
        if self.sessions.is_in_memory() {
            return Ok(false);
        }
        self.sessions.backend().get(super::PROBE_KEY).await.map(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue};

    fn config() -> AuthConfig {
        crate::config::test_config(std::sync::Arc::new(1_000.into())).build().unwrap()
    }

    fn session(sub: &str, sid: &str) -> SessionData {
        let claims = serde_json::json!({"sub": sub, "sid": sid});
        SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "t".into(), 1_000)
    }

    use crate::store::browser_round_trip as next_request;

    #[tokio::test]
    async fn cookie_carries_only_the_session_id() {
        let store = ServerSessionStore::in_memory(&config());
        let data = session("u1", "s1");
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &data).await.unwrap();
        let (set, mut next) = next_request(ctx);
        assert_eq!(set.len(), 1);
        assert!(set[0].starts_with(&format!("_a0_session={};", data.id())), "{}", set[0]);
        assert_eq!(store.get(&mut next).await.unwrap().as_deref(), Some(&data));
    }

    /// A request carrying the session cookie of `id`.
    fn request_of(id: &str) -> StoreContext {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&format!("_a0_session={id}")).unwrap());
        StoreContext::from_headers(&headers)
    }

    #[tokio::test]
    async fn records_are_stored_under_a_keyed_hash_of_the_session_id_and_earlier_plain_keys_still_work() {
        let backend = MokaBackend::new();
        let config = config();
        let store = ServerSessionStore::new(backend.clone(), &config);
        let data = session("u1", "s1");
        store.set(&mut StoreContext::default(), &data).await.unwrap();
        let listed = backend.keys_by_tag("session#sid=s1").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].starts_with("session:h:") && !listed[0].contains(data.id()), "{listed:?}");
        assert_eq!(backend.get(&format!("session:{}", data.id())).await.unwrap(), None, "never in the clear");
        assert_eq!(store.get(&mut request_of(data.id())).await.unwrap().as_deref(), Some(&data));
        // Another secret hashes to other keys: the hash is keyed, not guessable from the id.
        let other = AuthConfig::builder()
            .issuer("https://issuer.example/")
            .client_id("c")
            .client_secret("s")
            .secret("another-secret-of-at-least-32-characters")
            .base_url("https://app.example")
            .build()
            .unwrap();
        let elsewhere = ServerSessionStore::new(backend.clone(), &other);
        assert_eq!(elsewhere.get(&mut request_of(data.id())).await.unwrap(), None);

        // A session as the previous version stored it: under `session:{id}`.
        let old = session("u2", "s2");
        TypedStore::<SessionData, _>::new(backend.clone(), &config.secrets).set(&old).await.unwrap();
        assert!(backend.get(&format!("session:{}", old.id())).await.unwrap().is_some());
        assert_eq!(store.get(&mut request_of(old.id())).await.unwrap().as_deref(), Some(&old), "still opens");
        let mut renewed = old.clone();
        renewed.touched_at += 10;
        assert!(store.update(&mut request_of(old.id()), &renewed).await.unwrap(), "renewed where it is");
        assert_eq!(store.get(&mut request_of(old.id())).await.unwrap().as_deref(), Some(&renewed));
        store.delete(&mut request_of(old.id())).await.unwrap();
        assert_eq!(store.get(&mut request_of(old.id())).await.unwrap(), None, "and deleted where it is");
        assert_eq!(backend.get(&format!("session:{}", old.id())).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_in_memory_store_is_bounded_and_keeps_the_sessions_in_use() {
        let store = ServerSessionStore::in_memory_bounded(&config(), 200);
        let mut kept = StoreContext::default();
        store.set(&mut kept, &session("busy", "busy")).await.unwrap();
        let (_, mut busy) = next_request(kept);
        for i in 0..2_000 {
            store.set(&mut StoreContext::default(), &session(&format!("u{i}"), &format!("s{i}"))).await.unwrap();
            if i % 10 == 0 {
                assert!(store.get(&mut busy).await.unwrap().is_some(), "a session in use survives the flood ({i})");
            }
        }
        store.sessions().backend().run_pending_tasks().await;
        let held = store.sessions().backend().entry_count();
        assert!(held <= 200, "{held} sessions held past the bound of 200");
    }

    #[tokio::test]
    async fn new_login_deletes_the_old_record() {
        let store = ServerSessionStore::in_memory(&config());
        let first = session("u1", "s1");
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &first).await.unwrap();
        let (_, mut next) = next_request(ctx);
        let second = session("u1", "s2");
        store.set(&mut next, &second).await.unwrap();
        assert_eq!(store.sessions().get(first.id()).await.unwrap(), None, "the old session is gone");
        let (_, mut after) = next_request(next);
        assert_eq!(store.get(&mut after).await.unwrap().as_deref(), Some(&second));
    }

    #[tokio::test]
    async fn logout_token_deletes_by_sid_or_by_sub() {
        let store = ServerSessionStore::in_memory(&config());
        let (a, b, c) = (session("u1", "s1"), session("u1", "s2"), session("u2", "s3"));
        for data in [&a, &b, &c] {
            store.set(&mut StoreContext::default(), data).await.unwrap();
        }
        let by_sid = LogoutTarget { iss: "i".into(), sub: Some("u1".into()), sid: Some("s1".into()) };
        store.delete_by_logout_token(&by_sid).await.unwrap();
        assert_eq!(store.sessions().get(a.id()).await.unwrap(), None);
        assert!(store.sessions().get(b.id()).await.unwrap().is_some(), "a sid names one session only");
        let by_sub = LogoutTarget { iss: "i".into(), sub: Some("u1".into()), sid: None };
        store.delete_by_logout_token(&by_sub).await.unwrap();
        assert_eq!(store.sessions().get(b.id()).await.unwrap(), None);
        assert!(store.sessions().get(c.id()).await.unwrap().is_some(), "another user's session stays");
    }

    #[tokio::test]
    async fn a_users_sessions_are_listed_by_the_sub_index_and_one_ended_from_outside_stops_opening() {
        for store in [ServerSessionStore::in_memory(&config()), ServerSessionStore::new(MokaBackend::new(), &config())]
        {
            assert!(store.lists_sessions());
            let (a, b, c) = (session("u1", "s1"), session("u1", "s2"), session("u2", "s3"));
            let mut cookies = Vec::new();
            for data in [&a, &b, &c] {
                let mut ctx = StoreContext::default();
                store.set(&mut ctx, data).await.unwrap();
                cookies.push(next_request(ctx).1);
            }
            let mut listed: Vec<String> =
                store.sessions_of("u1").await.unwrap().iter().map(|s| s.id().to_owned()).collect();
            listed.sort();
            let mut expected = vec![a.id().to_owned(), b.id().to_owned()];
            expected.sort();
            assert_eq!(listed, expected, "the user's two sessions, not the other user's");
            assert!(store.end(&a).await.unwrap());
            assert_eq!(store.get(&mut cookies[0]).await.unwrap(), None, "its cookie opens nothing");
            assert!(store.get(&mut cookies[1]).await.unwrap().is_some(), "the user's other session stays");
            assert_eq!(store.sessions_of("u1").await.unwrap().len(), 1);
        }
    }

    #[tokio::test]
    async fn malformed_or_unknown_ids_are_no_session() {
        let store = ServerSessionStore::in_memory(&config());
        for cookie in ["_a0_session=short", "_a0_session=../../etc", &format!("_a0_session={}", "A".repeat(43))] {
            let mut request = HeaderMap::new();
            request.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
            assert_eq!(store.get(&mut StoreContext::from_headers(&request)).await.unwrap(), None, "{cookie}");
        }
    }

    #[tokio::test]
    async fn delete_removes_the_record_and_the_cookie() {
        let store = ServerSessionStore::in_memory(&config());
        let data = session("u1", "s1");
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &data).await.unwrap();
        let (_, mut next) = next_request(ctx);
        store.delete(&mut next).await.unwrap();
        assert_eq!(store.sessions().get(data.id()).await.unwrap(), None);
        let (set, _) = next_request(next);
        assert!(set.iter().any(|c| c.starts_with("_a0_session=;") && c.contains("Max-Age=0")));
    }

    #[tokio::test]
    async fn an_unchanged_session_is_decoded_once_and_a_replaced_or_deleted_one_is_not_served_stale() {
        let config = config();
        let store = ServerSessionStore::in_memory(&config);
        let mut ctx = StoreContext::default();
        let data = session("u1", "s1");
        store.set(&mut ctx, &data).await.unwrap();
        let (set, _) = next_request(ctx);
        let cookie = set[0].split(';').next().unwrap().to_owned();
        let request = || {
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
            StoreContext::from_headers(&headers)
        };
        let first = store.get(&mut request()).await.unwrap().unwrap();
        let second = store.get(&mut request()).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &second), "the unchanged record is served decoded");

        let mut renewed = data.clone();
        renewed.touched_at = 2_000;
        store.sessions().set(&renewed).await.unwrap();
        let third = store.get(&mut request()).await.unwrap().unwrap();
        assert_eq!(third.touched_at, 2_000, "a replaced record is read anew");

        store.sessions().delete_by(SessionData::SID, "s1").await.unwrap();
        assert_eq!(store.get(&mut request()).await.unwrap(), None, "a deleted record is gone at once");
    }
}
