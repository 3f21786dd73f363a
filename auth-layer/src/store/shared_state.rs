//! [`SharedState`]: where the state every process of the app must see alike is kept (used
//! logout tokens, refresh leases and results, the cookie store's logout markers): a backend
//! the processes share, or this process's memory. The client does the work with it; the
//! stores say where it belongs beside them.

use std::sync::Arc;

use crate::backend::{Backend, MokaBackend};

/// How many entries [`SharedState::in_memory`] keeps (logout-token ids, refresh leases and
/// results): past it the least recently used go.
pub const DEFAULT_MAX_SHARED_ENTRIES: u64 = 1_000_000;

/// Where the state that every process of the app must see alike is kept: the ids of logout
/// tokens already used, and the refresh lease and results.
///
/// - [`SharedState::in_memory`]: this process only. Right for one process; with several, a
///   replayed logout token reaching another instance is accepted again (harmless: it ends
///   sessions already ended), and two instances refreshing one session at once both send its
///   refresh token (with rotation, the provider refuses one and may revoke the grant).
/// - [`SharedState::in_backend`]: a [`Backend`] every process reaches (Redis, PostgreSQL): one
///   refresh grant per session at a time across the fleet, the others waiting for its result.
///
/// ```no_run
/// use auth_layer::backend::RedisBackend;
/// use auth_layer::{AuthClient, AuthConfig, SharedState};
///
/// # async fn build(config: AuthConfig) -> Result<(), auth_layer::AuthError> {
/// // Cookie sessions on a fleet: logout markers, used logout tokens and refresh leases in Redis.
/// let redis = RedisBackend::connect("redis://redis.internal:6379").await?;
/// let client = AuthClient::builder(config).with_shared_state(SharedState::in_backend(redis)).build().await?;
/// # let _ = client; Ok(()) }
/// ```
///
/// Where it goes is the client's input, never guessed from a store:
/// [`AuthClientBuilder::with_server_sessions`](crate::AuthClientBuilder::with_server_sessions)
/// and [`with_cookie_sessions`](crate::AuthClientBuilder::with_cookie_sessions) put it where
/// their store keeps what it shares ([`ServerSessionStore::shared_state`](crate::store::ServerSessionStore::shared_state),
/// [`CookieSessionStore::shared_state`](crate::store::CookieSessionStore::shared_state)); a store of
/// the app's own given to [`with_session_store`](crate::AuthClientBuilder::with_session_store)
/// needs [`with_shared_state`](crate::AuthClientBuilder::with_shared_state) too, or the client is
/// not built. With the default cookie store it is this process's memory unless set.
#[derive(Clone)]
pub struct SharedState {
    backend: Arc<dyn Backend>,
    shared: bool,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState").field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl SharedState {
    /// In this process's memory, at most [`DEFAULT_MAX_SHARED_ENTRIES`]: for one process only.
    pub fn in_memory() -> Self {
        Self { backend: Arc::new(MokaBackend::with_max_entries(DEFAULT_MAX_SHARED_ENTRIES)), shared: false }
    }

    /// In `backend`, which every process of the app reaches.
    pub fn in_backend(backend: impl Backend) -> Self {
        Self::in_shared_backend(Arc::new(backend))
    }

    /// In a backend already shared with a store (one connection for both).
    pub fn in_shared_backend(backend: Arc<dyn Backend>) -> Self {
        Self { backend, shared: true }
    }

    /// Whether other processes see this state (false for [`in_memory`](Self::in_memory)).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The backend holding the state.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}
