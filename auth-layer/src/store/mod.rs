//! The store contracts: [`SessionStore`] keeps sessions, [`TransactionStore`] keeps logins in
//! flight. Each call gets the request's [`StoreContext`], which reads the request's cookies and
//! collects the response's, so a store may live in cookies (stateless) or anywhere else with only
//! an id in a cookie (stateful).
//!
//! The stateless stores are [`CookieSessionStore`] and [`CookieTransactionStore`], the defaults;
//! [`ServerSessionStore`] keeps sessions in any [`Backend`](crate::backend::Backend) with only an
//! id in the cookie.

mod context;
mod cookie_session;
mod cookie_transaction;
mod server;
mod shared_state;

pub(crate) use context::LoginDevice;
#[cfg(test)]
pub(crate) use context::browser_round_trip;
pub use context::{MAX_COOKIE_BYTES, StoreContext};
/// The most chunks a session cookie is split into (`{name}.0` to `{name}.7`).
pub(crate) use cookie_session::MAX_CHUNKS as MAX_SESSION_CHUNKS;
pub use cookie_session::{CookieSessionStore, DEFAULT_MAX_MARKERS};
pub use cookie_transaction::{CookieTransactionStore, MAX_TRANSACTIONS};
pub use server::{DEFAULT_MAX_SESSIONS, ServerSessionStore};
pub use shared_state::{DEFAULT_MAX_SHARED_ENTRIES, SharedState};

/// Store errors live at the bottom of the crate, with the other errors.
pub use crate::error::StoreError;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{AuthConfig, SameSite};
use crate::model::{SessionData, TransactionData};

/// How many bytes of opened sessions a [`CookieSessionStore`] or a [`ServerSessionStore`] over
/// a backend keeps by default: 32 MiB, some 5,000 sessions of 3 KB. Each store's
/// `with_opened_cache` changes it.
pub const DEFAULT_OPENED_CACHE: u64 = 32 << 20;

/// What a logout token names: the sessions to end.
///
/// What a [`SessionStore::delete_by_logout_token`] of the app's own does with it:
///
/// ```
/// use auth_layer::store::LogoutTarget;
///
/// fn rows_to_delete(target: &LogoutTarget) -> Option<(&'static str, &str)> {
///     // With a `sid`, that session only; with only a `sub`, every session of the user.
///     match (&target.sid, &target.sub) {
///         (Some(sid), _) => Some(("DELETE FROM sessions WHERE issuer = $1 AND sid = $2", sid)),
///         (None, Some(sub)) => Some(("DELETE FROM sessions WHERE issuer = $1 AND sub = $2", sub)),
///         (None, None) => None,
///     }
/// }
/// # let target = LogoutTarget { iss: "https://op.example/".into(), sub: Some("u".into()), sid: None };
/// # assert!(rows_to_delete(&target).unwrap().0.contains("sub ="));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    /// The provider's issuer.
    pub iss: String,
    /// The user, when named.
    pub sub: Option<String>,
    /// The provider's session, when named.
    pub sid: Option<String>,
}

/// Keeps sessions: Auth0's `StateStore`. The built-in ones are [`CookieSessionStore`] (the
/// default) and [`ServerSessionStore`] over any [`Backend`](crate::backend::Backend); most apps with a database of their
/// own implement a `Backend` and keep `ServerSessionStore`. Implement this trait directly to keep
/// sessions in a schema of your own (`examples/sqlite-backend`'s `SessionsTable`: a `sessions`
/// table next to `users`), and prove it with `auth_layer::testing::check_session_store`
/// (feature `testing`), which checks every rule below and names the one broken.
///
/// # The contract
///
/// - **The cookie is yours.** The store finds the request's session in its cookies
///   ([`StoreContext::cookie`]) and sets or removes them on the response
///   ([`StoreContext::set_cookie`], [`StoreContext::remove_cookie`]: auth-layer's attributes,
///   `HttpOnly`, `SameSite`, `Secure` on https). A stateful store puts a random id there (at least
///   128 bits; [`SessionData::id`] has 256), never anything guessable.
/// - **Bad input is no session.** A missing, tampered, truncated or unknown cookie is
///   `Ok(None)`, never an error: the browser gets a login, not a 500.
/// - **Errors mean unavailable.** A database that cannot answer gives
///   [`StoreError::Unavailable`] quickly (seconds): the layer answers 503 and nothing committed
///   is lost.
/// - **Whole sessions.** `get` returns the session as `set` or `update` saved it, every field.
///   Expiry is checked by the caller on every read, whatever the store; a store may drop a
///   session once [`SessionData::seconds_left`] is 0, and should not keep it much longer.
/// - **A new login replaces.** `set` on a request that carries a session ends that one (a
///   stateful store deletes its record): a session id planted before a login never outlives it.
/// - **A logout is final.** After `delete`, no copy of the cookie reads the session, and
///   `update` with it returns `false`. `update` saves only a session that is still live, the check
///   and the write one atomic step (one `UPDATE ... WHERE`, [`Backend::update`](crate::backend::Backend::update)): a renewal or a
///   refresh that read the session before a logout must not bring it back.
/// - **Back-channel logout by `sid` or `sub`.** `delete_by_logout_token` ends the sessions of the
///   target's `sid` when it has one (and no other session of the user), else every session of its
///   `sub`, of the target's issuer ([`LogoutTarget::iss`]; with one provider, every session's). Find them by an index, not by scanning every
///   session. A session saved after the logout (the user logging in again, even in the same
///   second) is not ended by it.
/// - **Listing (optional).** A store that can find a user's sessions says so
///   ([`lists_sessions`](SessionStore::lists_sessions)), and then `sessions_of` returns every
///   live session of the `sub` by the same index back-channel logout uses, and `end` ends one
///   from outside its browser's request (a listing's "end", a cap on sessions per user): after
///   it, no copy of its cookie reads it. A store that cannot list (the cookie store: sessions
///   live in browsers) keeps the defaults.
/// - **One app, many processes.** Instances of the store that share a database see one truth: a
///   logout on one ends the session on the others (at once, or within seconds for a store that
///   caches and is told of changes).
///
/// A store around another, here counting reads: every method is passed on, so the inner
/// store's listings, ends and notices still work. Such a store says where the fleet's shared
/// state goes ([`AuthClientBuilder::with_shared_state`](crate::AuthClientBuilder::with_shared_state)):
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use async_trait::async_trait;
/// use auth_layer::backend::Notices;
/// use auth_layer::store::{LogoutTarget, ServerSessionStore, SessionStore, StoreContext, StoreError};
/// use auth_layer::{AuthClient, AuthConfig, SessionData};
///
/// struct Counted {
///     inner: ServerSessionStore,
///     reads: AtomicU64,
/// }
///
/// #[async_trait]
/// impl SessionStore for Counted {
///     async fn get(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, StoreError> {
///         self.reads.fetch_add(1, Ordering::Relaxed);
///         self.inner.get(ctx).await
///     }
///     async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
///         self.inner.set(ctx, data).await
///     }
///     async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError> {
///         self.inner.update(ctx, data).await
///     }
///     async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
///         self.inner.delete(ctx).await
///     }
///     async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError> {
///         self.inner.delete_by_logout_token(target).await
///     }
///     fn lists_sessions(&self) -> bool {
///         self.inner.lists_sessions()
///     }
///     async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionData>, StoreError> {
///         self.inner.sessions_of(sub).await
///     }
///     async fn end(&self, session: &SessionData) -> Result<bool, StoreError> {
///         self.inner.end(session).await
///     }
///     async fn ready(&self) -> Result<bool, StoreError> {
///         self.inner.ready().await
///     }
///     fn notices(&self) -> Option<Notices> {
///         self.inner.notices()
///     }
/// }
///
/// # let config = AuthConfig::builder().issuer("https://op.example/").client_id("c").client_secret("s")
/// #     .secret("a secret of at least thirty-two bytes, from the environment").base_url("http://localhost:3000").build()?;
/// let inner = ServerSessionStore::in_memory(&config);
/// let state = inner.shared_state();
/// let builder = AuthClient::builder(config)
///     .with_session_store(Counted { inner, reads: AtomicU64::new(0) })
///     .with_shared_state(state);
/// # let _ = builder;
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[async_trait]
#[doc(alias = "StateStore")]
pub trait SessionStore: Send + Sync + 'static {
    /// The session of this request, if any. A value that cannot be read is `Ok(None)`.
    ///
    /// Shared, so that a store may keep sessions it has opened and hand them out again without
    /// decrypting, decoding or copying them on every request.
    async fn get(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, StoreError>;
    /// Saves the session of a new login, which replaces whatever session the request had: a
    /// stateful store issues a new id and deletes the old record.
    async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError>;
    /// Saves again a session this request read (a renewal, a refresh), only if it has not been
    /// ended since: returns `false`, writes nothing and clears the session's cookies when a
    /// logout, a back-channel logout or its expiry ended it after it was read. The check and the
    /// write are one atomic step ([`Backend::update`](crate::backend::Backend::update)), so a
    /// save never brings back a deleted session, whichever process made each call.
    async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError>;
    /// Deletes the request's session and clears its cookies.
    async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError>;
    /// Ends every session a back-channel logout token names.
    async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError>;
    /// Whether this store finds a user's sessions ([`sessions_of`](Self::sessions_of)): what a
    /// listing of them and a cap on them need. The default, `false`: it cannot.
    fn lists_sessions(&self) -> bool {
        false
    }
    /// Every session of the user `sub` this store holds (expired ones may be among them; the
    /// caller checks). The default, for a store that does not
    /// [`list sessions`](Self::lists_sessions): none.
    async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionData>, StoreError> {
        let _ = sub;
        Ok(Vec::new())
    }
    /// Ends `session` wherever it is kept, without its browser's request: no copy of its
    /// cookie reads it afterwards. Returns whether this store could; the default cannot.
    async fn end(&self, session: &SessionData) -> Result<bool, StoreError> {
        let _ = session;
        Ok(false)
    }
    /// For a readiness check: whether the store reaches where it keeps sessions. `Ok(true)`:
    /// it answered; `Ok(false)`: there is nothing to reach (this process's memory, the
    /// browser's cookie); an error: it cannot serve now. The default, `Ok(false)`: a store
    /// over a database answers for it (a read of a key never written, a `SELECT 1`).
    async fn ready(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
    /// The notices of changes the store relies on to keep answers between reads
    /// ([`Backend::watch`](crate::backend::Backend::watch)), for a readiness check to see whether they are connected. `None`
    /// (the default): the store does not rely on any.
    fn notices(&self) -> Option<crate::backend::Notices> {
        None
    }
}

/// The key a readiness probe reads ([`SessionStore::ready`]): never written, so a read costs
/// one lookup.
pub(crate) const PROBE_KEY: &str = "auth-layer:readiness-probe";

/// What [`SessionStore::get`] returns, written out (`#[async_trait]` boxes the future).
type BoxedRead<'f> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Arc<SessionData>>, StoreError>> + Send + 'f>>;

/// A shared store is a store: keep an `Arc` of it to use it beside the layer (e.g. in an admin
/// task) while the layer holds another.
#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for Arc<S> {
    // Every request's read goes through here (the client holds an `Arc<dyn SessionStore>`): it
    // hands out the store's own future rather than boxing a second one around it.
    fn get<'s, 'c, 'f>(&'s self, ctx: &'c mut StoreContext) -> BoxedRead<'f>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        (**self).get(ctx)
    }
    async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
        (**self).set(ctx, data).await
    }
    async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError> {
        (**self).update(ctx, data).await
    }
    async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
        (**self).delete(ctx).await
    }
    async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError> {
        (**self).delete_by_logout_token(target).await
    }
    fn lists_sessions(&self) -> bool {
        (**self).lists_sessions()
    }
    async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionData>, StoreError> {
        (**self).sessions_of(sub).await
    }
    async fn end(&self, session: &SessionData) -> Result<bool, StoreError> {
        (**self).end(session).await
    }
    async fn ready(&self) -> Result<bool, StoreError> {
        (**self).ready().await
    }
    fn notices(&self) -> Option<crate::backend::Notices> {
        (**self).notices()
    }
}

/// Keeps logins in flight, keyed by their `state`: what `/auth/login` saves (PKCE verifier,
/// nonce, where to return, the login's options) and `/auth/callback` takes back. The built-in
/// store is [`CookieTransactionStore`], a sealed cookie per login; few apps need another.
///
/// # The contract
///
/// - **Bound to the browser.** `get` finds a transaction only for the browser that started it:
///   a `state` from another browser (an attacker's authorization response replayed into a
///   victim's callback) finds nothing. Keep it in, or keyed by, the browser's cookies.
/// - **Several at once.** Two logins started in two tabs both complete: one transaction does not
///   overwrite another.
/// - **Short-lived and single use.** A transaction lives at most the configured transaction
///   duration, and the callback deletes it: the same authorization response cannot be used twice.
/// - **Bad input is no transaction.** Tampered or unknown values are `Ok(None)` (the callback
///   answers 400), never an error; errors mean the store is unavailable (503).
#[async_trait]
pub trait TransactionStore: Send + Sync + 'static {
    /// The transaction for `state`, if this browser started it and it has not expired.
    async fn get(&self, ctx: &mut StoreContext, state: &str) -> Result<Option<TransactionData>, StoreError>;
    /// Saves a new transaction.
    async fn set(&self, ctx: &mut StoreContext, data: &TransactionData) -> Result<(), StoreError>;
    /// Deletes the transaction for `state`.
    async fn delete(&self, ctx: &mut StoreContext, state: &str) -> Result<(), StoreError>;
    /// Deletes every transaction of this browser: called at logout, so that abandoned attempts
    /// do not outlive the session. A store whose transactions expire on their own
    /// and cost the browser nothing may keep the default, which does nothing.
    async fn delete_all(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
        let _ = ctx;
        Ok(())
    }
}

/// Whether `cookie_name` is a chunk of the cookie store's session `{session_name}.{i}`.
pub(crate) fn is_session_chunk(session_name: &str, cookie_name: &str) -> bool {
    chunk_index(session_name, cookie_name).is_some()
}

/// `Some(i)` when `cookie_name` is exactly `{session_name}.{i}`, `i` of one or two digits: a
/// chunk of the cookie store's session (not merely a name with its prefix). The one rule for
/// finding chunks, to read them and to clear them.
pub(crate) fn chunk_index(session_name: &str, cookie_name: &str) -> Option<usize> {
    let rest = cookie_name.strip_prefix(session_name)?.strip_prefix('.')?;
    if rest.is_empty() || rest.len() > 2 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// A cookie with auth-layer's attributes: `HttpOnly`, the configured `SameSite`, `Secure` on
/// https, the configured `Domain`.
pub(crate) fn auth_cookie(
    config: &AuthConfig,
    name: String,
    value: String,
    path: &str,
    max_age_secs: u64,
) -> cookie::Cookie<'static> {
    let mut builder = cookie::Cookie::build((name, value))
        .path(path.to_owned())
        .http_only(true)
        .same_site(match config.cookies.same_site {
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::None => cookie::SameSite::None,
            _ => cookie::SameSite::Lax,
        })
        .secure(config.secure_cookies)
        .max_age(cookie::time::Duration::seconds(i64::try_from(max_age_secs).unwrap_or(i64::MAX)));
    if let Some(domain) = &config.cookies.domain {
        builder = builder.domain(domain.clone());
    }
    builder.build()
}

/// A `Max-Age=0` cookie that makes the browser drop `name`.
pub(crate) fn removal_cookie(config: &AuthConfig, name: String, path: &str) -> cookie::Cookie<'static> {
    auth_cookie(config, name, String::new(), path, 0)
}

#[cfg(test)]
mod tests {
    use super::chunk_index;

    #[test]
    fn chunks_are_the_session_name_a_dot_and_one_or_two_digits() {
        assert_eq!(chunk_index("_a0_session", "_a0_session.0"), Some(0));
        assert_eq!(chunk_index("_a0_session", "_a0_session.12"), Some(12));
        for other in ["_a0_session", "_a0_session.", "_a0_session.123", "_a0_session.x", "_a0_sessionx.1", "a.1"] {
            assert_eq!(chunk_index("_a0_session", other), None, "{other}");
        }
    }
}
