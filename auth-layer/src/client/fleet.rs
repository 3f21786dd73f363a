//! State the app's processes share, so that every instance behind a load balancer answers alike:
//! [`SharedState`] holds the ids of logout tokens already used (a replay reaching another
//! instance is still a replay) and the refresh lease (one refresh grant per session at a time,
//! fleet-wide, its result handed to every instance that waited for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::StoreError;
use crate::model::SessionData;
use crate::record::TypedStore;
pub use crate::store::{DEFAULT_MAX_SHARED_ENTRIES, SharedState};

/// How long a refresh lease lasts unless its holder renews it: the holder renews it every third
/// of that while it works (a slow provider, a JWKS refetch, a slow `before_save_async`), so it
/// never lapses under a holder that is still running; a holder that dies frees it when it
/// expires.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(20);
/// How long the claim to revoke an ended session's refresh token is kept: longer than any
/// retry of its logout (a second claim finds the session ended and nothing to revoke anyway).
const REVOCATION_CLAIM: Duration = Duration::from_secs(24 * 3600);
/// How long a request waits for another process's refresh of its session before giving up
/// with 503 (never sending the refresh token itself while the lease is held).
const LEASE_WAIT: Duration = Duration::from_secs(22);
/// How often a waiting request looks for the result or the lease.
const LEASE_POLL: Duration = Duration::from_millis(25);

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
    lease_ttl: Duration,
    lease_wait: Duration,
}

/// What [`Fleet::lease`] gives: the lease, or a result another process left.
pub(crate) enum Lease {
    /// This process holds the refresh lease of the session; [`Fleet::release`] it.
    Held(HeldLease),
    /// Another process finished this very refresh while this one waited.
    Done(Arc<SessionData>),
}

/// A refresh lease this process holds: its key, the owner id written under it (only the owner
/// renews or frees it), and the task renewing it while held.
pub(crate) struct HeldLease {
    key: String,
    owner: Bytes,
    renewal: tokio::task::JoinHandle<()>,
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // A holder dropped mid-refresh (its request cancelled) stops renewing: the lease then
        // lapses by itself, after which the result or the newest token is read as usual.
        self.renewal.abort();
    }
}

impl Fleet {
    /// For a readiness check: whether the backend answers (a read of a key never written).
    pub(crate) async fn ping(&self) -> Result<bool, StoreError> {
        self.backend.get(crate::store::PROBE_KEY).await.map(|_| true)
    }

    pub(crate) fn new(state: &SharedState, secrets: &[impl AsRef<[u8]>]) -> Self {
        Self {
            backend: state.backend().clone(),
            results: TypedStore::new(state.backend().clone(), secrets),
            lease_ttl: LEASE_TTL,
            lease_wait: LEASE_WAIT,
        }
    }

    /// The same, with a lease that lasts `ttl` unrenewed and waiters that give up after `wait`.
    #[cfg(test)]
    fn with_lease(mut self, ttl: Duration, wait: Duration) -> Self {
        self.lease_ttl = ttl;
        self.lease_wait = wait;
        self
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

    /// Whether this process is the one to revoke the refresh token of the ended session
    /// `session_id` at the provider: `true` for the first caller across the fleet (several
    /// processes ending one session at once, a logout sent twice), `false` for every other.
    pub(crate) async fn claim_revocation(&self, session_id: &str) -> Result<bool, StoreError> {
        let key = format!("revoke:{}", hashed(&[session_id]));
        self.backend.insert(&key, Bytes::from_static(b"1"), Some(REVOCATION_CLAIM), Vec::new()).await
    }

    /// Waits for the refresh lease of `session_id`, or for the result of the refresh `key`
    /// made by another process meanwhile. Fails with [`StoreError::Unavailable`] when the
    /// backend does, or when neither comes within the lease's life.
    pub(crate) async fn lease(&self, session_id: &str, key: &str) -> Result<Lease, StoreError> {
        let lease_key = format!("refresh-lease:{}", hashed(&[session_id]));
        let owner = Bytes::from(crate::seal::random_token(16));
        let started = Instant::now();
        let gave_up_at = started + self.lease_wait;
        let waited = || crate::telemetry::time(crate::telemetry::REFRESH_WAIT, ("scope", "fleet"), started.elapsed());
        loop {
            if let Some(done) = self.result(key).await? {
                waited();
                return Ok(Lease::Done(done));
            }
            if self.backend.insert(&lease_key, owner.clone(), Some(self.lease_ttl), Vec::new()).await? {
                waited();
                let renewal =
                    tokio::spawn(renew(self.backend.clone(), lease_key.clone(), owner.clone(), self.lease_ttl));
                return Ok(Lease::Held(HeldLease { key: lease_key, owner, renewal }));
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

    /// Frees a lease [`lease`](Self::lease) gave, if it is still this holder's (it expires by
    /// itself otherwise): a lease that lapsed and was taken by another process stays theirs.
    pub(crate) async fn release(&self, lease: HeldLease) {
        lease.renewal.abort();
        match self.backend.get(&lease.key).await {
            Ok(Some(owner)) if owner == lease.owner => {
                if let Err(err) = self.backend.delete(&lease.key).await {
                    tracing::warn!(%err, "could not free a refresh lease; it expires by itself");
                }
            }
            Ok(_) => tracing::warn!("a refresh lease lapsed before its holder was done; left to its new holder"),
            Err(err) => tracing::warn!(%err, "could not free a refresh lease; it expires by itself"),
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

/// Renews the lease `key` every third of `ttl` while it is `owner`'s; stops when it is not (it
/// lapsed and another process took it, or it was freed) or when the holder aborts it.
async fn renew(backend: Arc<dyn Backend>, key: String, owner: Bytes, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match backend.get(&key).await {
            Ok(Some(held)) if held == owner => {
                if let Err(err) = backend.update(&key, owner.clone(), Some(ttl), Vec::new()).await {
                    tracing::warn!(%err, "could not renew a refresh lease");
                }
            }
            Ok(_) => return,
            Err(err) => tracing::warn!(%err, "could not renew a refresh lease"),
        }
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
    async fn a_lease_outlives_a_holder_slower_than_its_ttl_and_only_its_owner_frees_it() {
        let backend = SharedState::in_memory();
        let secrets = ["0123456789abcdef0123456789abcdef"];
        let ttl = Duration::from_millis(300);
        let a = Fleet::new(&backend, &secrets).with_lease(ttl, Duration::from_millis(200));
        let b = Fleet::new(&backend, &secrets).with_lease(ttl, Duration::from_millis(200));
        let Lease::Held(held) = a.lease("s1", "k1").await.unwrap() else { panic!("a lease") };
        // A's refresh takes four times the lease's life: B never gets the lease meanwhile.
        for _ in 0..4 {
            tokio::time::sleep(ttl).await;
            assert!(b.lease("s1", "k2").await.is_err(), "B took the lease of a holder still at work");
        }
        a.release(held).await;
        let Lease::Held(b_held) = b.lease("s1", "k2").await.unwrap() else { panic!("B's lease") };

        // A holder whose lease lapsed (its process stalled: no renewal) frees nothing of B's.
        let Lease::Held(c_held) = a.lease("s2", "k3").await.unwrap() else { panic!("a lease") };
        c_held.renewal.abort();
        tokio::time::sleep(ttl * 2).await;
        let Lease::Held(d_held) = b.lease("s2", "k4").await.unwrap() else { panic!("taken after it lapsed") };
        a.release(c_held).await;
        assert!(a.lease("s2", "k5").await.is_err(), "the late holder's release freed the new holder's lease");
        b.release(d_held).await;
        b.release(b_held).await;
        assert!(matches!(a.lease("s2", "k6").await.unwrap(), Lease::Held(_)), "freed by its owner");
    }

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
