//! [`AuthClient`]: every auth operation as a method taking the request's [`StoreContext`], for
//! apps that write their own routes (the seed's `start_login`, `complete_login`, `get_user`,
//! `get_session`, `logout`). The layer's routes are thin wrappers over these.

use std::sync::Arc;

use serde_json::Value;
use url::Url;

use crate::client::RelyingParty;
use crate::config::AuthConfig;
use crate::data::{StateData, TokenSet, TransactionData, User};
use crate::error::AuthError;
use crate::return_to;
use crate::store::{CookieStateStore, CookieTransactionStore, StateStore, StoreContext, TransactionStore};

/// Options of [`AuthClient::start_login`].
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// Where to send the browser after login: a same-origin path; `/` when unset.
    pub return_to: Option<String>,
    /// Extra authorization parameters for this login only (e.g. `prompt=login`, `screen_hint`).
    pub authorization_params: Vec<(String, String)>,
    /// Application state, given back by [`AuthClient::complete_login`].
    pub app_state: Option<Value>,
}

/// What [`AuthClient::complete_login`] gives.
#[derive(Debug, Clone)]
pub struct LoginResult {
    /// The new session, already saved.
    pub session: StateData,
    /// The same-origin path the login was started for.
    pub return_to: String,
    /// The application state passed to [`AuthClient::start_login`].
    pub app_state: Option<Value>,
}

/// Options of [`AuthClient::logout`].
#[derive(Debug, Clone, Default)]
pub struct LogoutOptions {
    /// Where the provider should send the browser back: a same-origin path; `/` when unset.
    pub return_to: Option<String>,
}

struct Inner {
    config: AuthConfig,
    rp: RelyingParty,
    state_store: Arc<dyn StateStore>,
    transaction_store: Arc<dyn TransactionStore>,
}

/// The relying party with its stores: start and complete logins, read sessions, log out.
///
/// Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AuthClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthClient").field("issuer", &self.inner.config.issuer).finish_non_exhaustive()
    }
}

/// Builds an [`AuthClient`]: the cookie stores unless others are given.
#[must_use]
pub struct AuthClientBuilder {
    config: AuthConfig,
    state_store: Option<Arc<dyn StateStore>>,
    transaction_store: Option<Arc<dyn TransactionStore>>,
}

impl AuthClientBuilder {
    /// Keeps sessions in `store` instead of the encrypted cookie.
    pub fn with_state_store(mut self, store: impl StateStore) -> Self {
        self.state_store = Some(Arc::new(store));
        self
    }

    /// Keeps logins in flight in `store` instead of per-login cookies.
    pub fn with_transaction_store(mut self, store: impl TransactionStore) -> Self {
        self.transaction_store = Some(Arc::new(store));
        self
    }

    /// Discovers the provider and builds the client.
    pub async fn build(self) -> Result<AuthClient, AuthError> {
        let rp = RelyingParty::discover(&self.config).await?;
        let state_store = self.state_store.unwrap_or_else(|| Arc::new(CookieStateStore::new(&self.config)));
        let transaction_store =
            self.transaction_store.unwrap_or_else(|| Arc::new(CookieTransactionStore::new(&self.config)));
        Ok(AuthClient { inner: Arc::new(Inner { config: self.config, rp, state_store, transaction_store }) })
    }
}

impl AuthClient {
    /// A builder over `config`.
    pub fn builder(config: AuthConfig) -> AuthClientBuilder {
        AuthClientBuilder { config, state_store: None, transaction_store: None }
    }

    /// Discovers the provider; sessions in the encrypted cookie.
    pub async fn new(config: AuthConfig) -> Result<Self, AuthError> {
        Self::builder(config).build().await
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// Starts a login: saves a transaction and returns the provider's authorization URL to
    /// redirect the browser to.
    pub async fn start_login(&self, ctx: &mut StoreContext, options: LoginOptions) -> Result<Url, AuthError> {
        let return_to = match options.return_to.as_deref() {
            Some(target) => return_to::validate(target).map_err(|e| AuthError::InvalidRequest(e.into()))?.to_owned(),
            None => "/".to_owned(),
        };
        let request = self.inner.rp.authorization_request(&options.authorization_params);
        let transaction = TransactionData {
            state: request.state,
            nonce: request.nonce,
            code_verifier: request.code_verifier,
            return_to,
            app_state: options.app_state,
            created_at: self.inner.config.clock.now(),
        };
        self.inner.transaction_store.set(ctx, &transaction).await?;
        Ok(request.url)
    }

    /// Completes a login from the callback URL's query: checks `state`, `iss` and any `error`,
    /// exchanges the code, checks the ID token, and saves a new session (a new id, the old
    /// session replaced).
    pub async fn complete_login(&self, ctx: &mut StoreContext, callback_query: &str) -> Result<LoginResult, AuthError> {
        let params = CallbackParams::parse(callback_query)?;
        let state = params.state.ok_or_else(|| AuthError::InvalidRequest("the callback has no state".into()))?;
        if state.len() > 128 || !state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(AuthError::MissingTransaction);
        }
        let store = &self.inner.transaction_store;
        let transaction = store.get(ctx, &state).await?.ok_or(AuthError::MissingTransaction)?;
        // Single use: whatever happens next, this transaction is spent.
        store.delete(ctx, &state).await?;
        if let Some(error) = params.error {
            return Err(AuthError::ProviderRefused { error, description: params.error_description });
        }
        if let Some(iss) = params.iss
            && iss != self.inner.rp.issuer()
        {
            return Err(AuthError::IssuerMismatch(iss));
        }
        let code = params.code.ok_or_else(|| AuthError::InvalidRequest("the callback has no code".into()))?;
        let tokens = self.inner.rp.exchange_code(&code, &transaction.code_verifier, &transaction.nonce).await?;
        let now = self.inner.config.clock.now();
        let mut session = StateData::new(User::from_id_token_claims(tokens.claims), tokens.id_token, now);
        session.refresh_token = tokens.refresh_token;
        session.token_sets.push(TokenSet {
            audience: self.inner.config.audience.clone(),
            scope: tokens.scope.unwrap_or_else(|| self.inner.config.scope.clone()),
            access_token: tokens.access_token,
            expires_at: tokens.expires_at,
        });
        self.inner.state_store.set(ctx, &session, true).await?;
        tracing::info!(sub = session.user.sub(), "login completed");
        Ok(LoginResult { session, return_to: transaction.return_to, app_state: transaction.app_state })
    }

    /// The request's session, if any and not expired. Absolute and inactivity limits are
    /// checked here, for every store (an expired session is deleted), and a session with less
    /// than half its inactivity window left is renewed (rolling expiry; its cookies go in `ctx`).
    pub async fn get_session(&self, ctx: &mut StoreContext) -> Result<Option<StateData>, AuthError> {
        let Some(mut session) = self.inner.state_store.get(ctx).await? else { return Ok(None) };
        if self.is_expired(&session) {
            tracing::info!(sub = session.user.sub(), "session expired");
            self.inner.state_store.delete(ctx).await?;
            return Ok(None);
        }
        if self.renewal_due(&session) {
            session.touched_at = self.inner.config.clock.now();
            self.inner.state_store.set(ctx, &session, false).await?;
        }
        Ok(Some(session))
    }

    /// The logged-in user, if any.
    pub async fn get_user(&self, ctx: &mut StoreContext) -> Result<Option<User>, AuthError> {
        Ok(self.get_session(ctx).await?.map(|s| s.user))
    }

    /// Ends the session here and returns where to send the browser: the provider's
    /// end-session endpoint (with `id_token_hint`, `post_logout_redirect_uri` and `client_id`)
    /// or, when the provider has none, straight back to `return_to`.
    pub async fn logout(&self, ctx: &mut StoreContext, options: LogoutOptions) -> Result<Url, AuthError> {
        let return_to = match options.return_to.as_deref() {
            Some(target) => return_to::validate(target).map_err(|e| AuthError::InvalidRequest(e.into()))?,
            None => "/",
        };
        let session = self.inner.state_store.get(ctx).await?;
        self.inner.state_store.delete(ctx).await?;
        let back = self.inner.config.app_url(return_to);
        let id_token = session.as_ref().map(|s| s.id_token.as_str());
        Ok(self.inner.rp.end_session_url(id_token, &back).unwrap_or(back))
    }

    /// Whether the session is due for rolling renewal: less than half its inactivity window left.
    fn renewal_due(&self, session: &StateData) -> bool {
        let window = self.inner.config.inactivity_duration.as_secs();
        let idle = self.inner.config.clock.now().saturating_sub(session.touched_at);
        idle > window / 2
    }

    fn is_expired(&self, session: &StateData) -> bool {
        let config = &self.inner.config;
        let expires = session.expires_at(config.absolute_duration.as_secs(), config.inactivity_duration.as_secs());
        config.clock.now() >= expires
    }
}

/// The callback's query parameters that matter.
#[derive(Default)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

impl CallbackParams {
    const MAX_QUERY: usize = 8 * 1024;

    fn parse(query: &str) -> Result<Self, AuthError> {
        if query.len() > Self::MAX_QUERY {
            return Err(AuthError::InvalidRequest("the callback's query is too long".into()));
        }
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "state" => &mut params.state,
                "code" => &mut params.code,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            if slot.is_some() {
                return Err(AuthError::InvalidRequest(format!("the callback repeats `{name}`")));
            }
            *slot = Some(value.into_owned());
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_params_are_read_and_repeats_refused() {
        let params = CallbackParams::parse("code=c&state=s&iss=https%3A%2F%2Fi&x=1").unwrap();
        assert_eq!(
            (params.code.as_deref(), params.state.as_deref(), params.iss.as_deref()),
            (Some("c"), Some("s"), Some("https://i"))
        );
        assert!(CallbackParams::parse("state=a&state=b").is_err());
        assert!(CallbackParams::parse(&"a".repeat(9000)).is_err());
    }
}
