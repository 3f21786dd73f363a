//! State the app's processes share, so that every instance behind a load balancer answers alike:
//! [`SharedState`] holds the ids of logout tokens already used (a replay reaching another
//! instance is still a replay) and the refresh lease (one refresh grant per session at a time,
//! fleet-wide, its result handed to every instance that waited for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, MokaBackend};
use crate::error::StoreError;
use crate::model::SessionData;
use crate::record::TypedStore;

/// How many entries [`SharedState::in_memory`] keeps (logout-token ids, refresh leases and
/// results): past it the least recently used go.
pub const DEFAULT_MAX_SHARED_ENTRIES: u64 = 1_000_000;

/// How long a refresh lease is held at most: twice the provider calls' timeout (10 s), so a
/// holder's lease never lapses while its call is still running; a holder that dies frees it
/// when it expires.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(20);
/// How long a request waits for another process's refresh of its session before giving up
/// with 503 (the lease's life, and a margin for the result to be written).
const LEASE_WAIT: Duration = Duration::from_secs(22);
/// How often a waiting request looks for the result or the lease.
const LEASE_POLL: Duration = Duration::from_millis(25);

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
/// The default is the session store's own backend when it is shared (a
/// [`ServerSessionStore`](crate::store::ServerSessionStore) over Redis or PostgreSQL, or a
/// [`CookieSessionStore`](crate::store::CookieSessionStore) whose logout markers are in one),
/// else in memory. Set it with
/// [`AuthClientBuilder::with_shared_state`](crate::AuthClientBuilder::with_shared_state).
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

/// A refresh's outcome, kept for the processes that waited for it: the session as the refresh
/// left it (tokens included, so sealed).
#[derive(Serialize, Deserialize, auth_derive::Store)]
#[store(key = "refresh:{key}", name = "refresh_result", encrypt)]
struct Refreshed {
    key: String,
    session: SessionData,
}

/// What the client does with [`SharedState`].
pub(crate) struct Fleet {
    backend: Arc<dyn Backend>,
    results: TypedStore<Refreshed, Arc<dyn Backend>>,
}

/// What [`Fleet::lease`] gives: the lease, or a result another process left.
pub(crate) enum Lease {
    /// This process holds the refresh lease of the session; [`Fleet::release`] it.
    Held(String),
    /// Another process finished this very refresh while this one waited.
    Done(Arc<SessionData>),
}

impl Fleet {
    pub(crate) fn new(state: &SharedState, secrets: &[impl AsRef<[u8]>]) -> Self {
        Self { backend: state.backend.clone(), results: TypedStore::new(state.backend.clone(), secrets) }
    }

    /// Whether the logout token `jti` that `issuer` sent to `client_id` was used already.
    pub(crate) async fn logout_token_seen(&self, issuer: &str, client_id: &str, jti: &str) -> Result<bool, StoreError> {
        Ok(self.backend.get(&jti_key(issuer, client_id, jti)).await?.is_some())
    }

    /// Records that the logout token `jti` that `issuer` sent to `client_id` was used, for `ttl`.
    pub(crate) async fn record_logout_token(
        &self,
        issuer: &str,
        client_id: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.backend.put(&jti_key(issuer, client_id, jti), Bytes::from_static(b"1"), Some(ttl), Vec::new()).await
    }

    /// Waits for the refresh lease of `session_id`, or for the result of the refresh `key`
    /// made by another process meanwhile. Fails with [`StoreError::Unavailable`] when the
    /// backend does, or when neither comes within the lease's life.
    pub(crate) async fn lease(&self, session_id: &str, key: &str) -> Result<Lease, StoreError> {
        let lease_key = format!("refresh-lease:{}", hashed(&[session_id]));
        let gave_up_at = Instant::now() + LEASE_WAIT;
        loop {
            if let Some(done) = self.result(key).await? {
                return Ok(Lease::Done(done));
            }
            if self.backend.insert(&lease_key, Bytes::from_static(b"1"), Some(LEASE_TTL), Vec::new()).await? {
                return Ok(Lease::Held(lease_key));
            }
            if Instant::now() >= gave_up_at {
                return Err(StoreError::unavailable(
                    "refresh lease",
                    "another process held the refresh lease too long",
                ));
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Frees a lease [`lease`](Self::lease) gave (it expires by itself otherwise).
    pub(crate) async fn release(&self, lease_key: &str) {
        if let Err(err) = self.backend.delete(lease_key).await {
            tracing::warn!(%err, "could not free a refresh lease; it expires by itself");
        }
    }

    /// The result of the refresh `key`, if a process finished it lately.
    pub(crate) async fn result(&self, key: &str) -> Result<Option<Arc<SessionData>>, StoreError> {
        Ok(self.results.get(&format!("done:{key}")).await?.map(|r| Arc::new(r.session)))
    }

    /// The newest state of `session_id` a refresh left (the refresh token to chain from), if
    /// one was made lately.
    pub(crate) async fn newest(&self, session_id: &str) -> Result<Option<SessionData>, StoreError> {
        Ok(self.results.get(&format!("newest:{}", hashed(&[session_id]))).await?.map(|r| r.session))
    }

    /// Keeps the result of the refresh `key` for `ttl`: as that refresh's answer, and as the
    /// session's newest state.
    pub(crate) async fn keep(&self, key: &str, session: &SessionData, ttl: Duration) -> Result<(), StoreError> {
        let newest = Refreshed { key: format!("newest:{}", hashed(&[session.id()])), session: session.clone() };
        self.results.set_with_ttl(&newest, Some(ttl)).await?;
        let done = Refreshed { key: format!("done:{key}"), session: newest.session };
        self.results.set_with_ttl(&done, Some(ttl)).await
    }
}

/// The key of a used logout token: its issuer, the client it was sent to and its `jti`, hashed
/// to a fixed length. The client is part of it: two apps of one provider sharing a backend each
/// receive their own token of a logout, and `jti`s are unique only per issuer's tokens, not
/// across the audiences a provider may give one `jti`.
fn jti_key(issuer: &str, client_id: &str, jti: &str) -> String {
    format!("logout-jti:{}", hashed(&[issuer, client_id, jti]))
}

/// SHA-256 of `parts` (each length-prefixed), in hex: fixed-length keys that reveal nothing of
/// a session id.
pub(crate) fn hashed(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for part in parts {
        hash.update(part.len().to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_used_logout_token_is_recorded_for_its_issuer_and_client_only() {
        let fleet = Fleet::new(&SharedState::in_memory(), &["0123456789abcdef0123456789abcdef"]);
        let ttl = Duration::from_secs(60);
        fleet.record_logout_token("https://op.example", "app-a", "jti-1", ttl).await.unwrap();
        assert!(fleet.logout_token_seen("https://op.example", "app-a", "jti-1").await.unwrap());
        assert!(!fleet.logout_token_seen("https://op.example", "app-b", "jti-1").await.unwrap(), "another client");
        assert!(!fleet.logout_token_seen("https://other.example", "app-a", "jti-1").await.unwrap(), "another issuer");
        assert!(!fleet.logout_token_seen("https://op.example", "app-a", "jti-2").await.unwrap());
    }
}
