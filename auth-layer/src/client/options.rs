//! What the app passes to [`AuthClient`]'s operations and what it gets back: the options of a
//! login, a logout and an access-token request, a login's result, an [`AccessToken`].

use super::*;

/// Options of [`AuthClient::start_login`]: `LoginOptions::default().return_to("/orders")`.
///
/// ```
/// use auth_layer::LoginOptions;
///
/// // A "Sign up" button: Auth0's sign-up screen, back to the onboarding page, for one API.
/// let options = LoginOptions::default()
///     .return_to("/welcome")
///     .param("screen_hint", "signup")
///     .audience("https://orders.example.com");
/// assert_eq!(options.return_to.as_deref(), Some("/welcome"));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoginOptions {
    /// Where to send the browser after login: a same-origin path; `/` when unset.
    pub return_to: Option<String>,
    /// Extra authorization parameters for this login only (e.g. `prompt=login`, `screen_hint`);
    /// they replace configured ones of the same name (the app's code decides over its
    /// configuration; a query never does). `scope` and `audience` here are this login's scope
    /// and audience; the parameters auth-layer sets itself are refused.
    pub authorization_params: Vec<(String, String)>,
    /// Application state, given back by [`AuthClient::complete_login`].
    pub app_state: Option<Value>,
    /// This login's scope, instead of the configured one (`openid` is always asked for).
    pub scope: Option<String>,
    /// This login's API audience, instead of the configured one: the access token is filed
    /// under it.
    pub audience: Option<String>,
    /// A silent login (`prompt=none`), started by the layer.
    pub(crate) silent: bool,
    /// `/auth/login`'s query parameters (through the allowlist): they may add a parameter, never
    /// change one the configuration or the code set.
    pub(crate) query_params: Vec<(String, String)>,
    /// A step-up guard's requirements, when it started this login.
    pub(crate) step_up: Option<StepUp>,
}

/// What a step-up guard asks of a login: sent as code parameters, and checked as essential at
/// the callback (a login still short of them is refused with 403, not sent round again).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StepUp {
    /// Space-separated `acr_values`, one of which the ID token's `acr` must be.
    pub(crate) acr_values: Option<String>,
    /// The oldest authentication accepted, in seconds.
    pub(crate) max_age: Option<u64>,
}

/// What [`AuthClient::complete_login`] gives.
///
/// ```no_run
/// # async fn run(config: auth_layer::AuthConfig) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::{AuthClient, LoginResult};
///
/// let client = AuthClient::builder(config)
///     .after_callback(|login: &LoginResult| {
///         println!("{} logged in, back to {}", login.session.sub(), login.return_to);
///     })
///     .build()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoginResult {
    /// The new session, already saved.
    pub session: SessionData,
    /// The same-origin path the login was started for.
    pub return_to: String,
    /// The application state passed to [`AuthClient::start_login`].
    pub app_state: Option<Value>,
}

/// Options of [`AuthClient::logout`]: `LogoutOptions::default().return_to("/bye")`.
///
/// ```no_run
/// # async fn run(client: auth_layer::AuthClient, mut ctx: auth_layer::store::StoreContext) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::LogoutOptions;
///
/// // Where the provider sends the browser after its logout page, in the user's language.
/// let options = LogoutOptions::default().return_to("/goodbye").param("ui_locales", "fr");
/// let provider_logout = client.logout(&mut ctx, options).await?;
/// // Redirect the browser to `provider_logout`; `ctx`'s cookies clear the session.
/// # let _ = provider_logout; Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LogoutOptions {
    /// Where the provider should send the browser back: a same-origin path; `/` when unset.
    pub return_to: Option<String>,
    /// Extra parameters for the provider's end-session endpoint (e.g. `ui_locales`,
    /// `logout_hint`, Auth0's `federated`). The ones auth-layer sets itself are refused.
    pub extra_params: Vec<(String, String)>,
}

/// Options of [`AuthClient::access_token`]: `AccessTokenOptions::default().audience("https://api")`.
///
/// ```no_run
/// # async fn run(client: auth_layer::AuthClient, mut ctx: auth_layer::store::StoreContext) -> Result<(), auth_layer::AuthError> {
/// use auth_layer::AccessTokenOptions;
///
/// // A token for the orders API with the scope the call needs, refreshed when due.
/// let options = AccessTokenOptions::default().audience("https://orders.example.com").scope("read:orders");
/// let token = client.access_token(&mut ctx, options).await?;
/// let header = token.authorization(); // "Bearer ..." (or "DPoP ..." for a bound token)
/// # let _ = header; Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccessTokenOptions {
    /// The API audience; the configured one when unset.
    pub audience: Option<String>,
    /// The scope needed; any token of the audience when unset.
    pub scope: Option<String>,
    /// Refresh even when the token is still fresh.
    pub force_refresh: bool,
}

impl LoginOptions {
    /// Sends the browser to `path` (same-origin) after login.
    #[must_use]
    pub fn return_to(mut self, path: impl Into<String>) -> Self {
        self.return_to = Some(path.into());
        self
    }

    /// Adds an authorization parameter for this login only.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.authorization_params.push((name.into(), value.into()));
        self
    }

    /// Application state that [`AuthClient::complete_login`] gives back.
    #[must_use]
    pub fn app_state(mut self, state: Value) -> Self {
        self.app_state = Some(state);
        self
    }

    /// Logs in to `organization` (Auth0 Organizations: an `org_...` id or a name); the ID
    /// token must then name it.
    #[must_use]
    pub fn organization(self, organization: impl Into<String>) -> Self {
        self.param("organization", organization)
    }

    /// Accepts an organization invitation (the `invitation` of an Auth0 invitation link).
    #[must_use]
    pub fn invitation(self, invitation: impl Into<String>) -> Self {
        self.param("invitation", invitation)
    }

    /// Asks for `scope` in this login instead of the configured scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Asks for an access token for `audience` in this login instead of the configured one.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }
}

impl LogoutOptions {
    /// Asks the provider to send the browser back to `path` (same-origin).
    #[must_use]
    pub fn return_to(mut self, path: impl Into<String>) -> Self {
        self.return_to = Some(path.into());
        self
    }

    /// Adds a parameter for the provider's end-session endpoint.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }
}

impl AccessTokenOptions {
    /// A token for this API audience.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A token with this scope.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Refreshes even when the token is still fresh.
    #[must_use]
    pub fn force_refresh(mut self) -> Self {
        self.force_refresh = true;
        self
    }
}

/// An access token, as [`AuthClient::access_token`] gives it. `Debug` leaves the token out.
///
/// A DPoP-bound token ([`AuthConfigBuilder::dpop`](crate::AuthConfigBuilder::dpop)) is sent
/// to an API with a proof of the session's key for each request:
///
/// ```
/// # fn call(token: &auth_layer::AccessToken, http: &reqwest::Client) -> Result<(), auth_layer::AuthError> {
/// let url = "https://api.example.com/orders";
/// let mut request = http.get(url).header("authorization", token.authorization());
/// if let Some(proof) = token.dpop_proof("GET", url, None)? {
///     request = request.header("dpop", proof);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct AccessToken {
    /// The token.
    pub access_token: String,
    /// When it expires (seconds since the Unix epoch), if known.
    pub expires_at: Option<u64>,
    /// The scope granted.
    pub scope: String,
    /// `DPoP` for a DPoP-bound token, else `Bearer`.
    pub token_type: &'static str,
    /// The key the token is bound to.
    #[serde(skip)]
    pub(super) dpop: Option<crate::dpop::DpopKey>,
}

impl AccessToken {
    /// A Bearer token.
    pub fn bearer(access_token: impl Into<String>, expires_at: Option<u64>, scope: impl Into<String>) -> Self {
        Self { access_token: access_token.into(), expires_at, scope: scope.into(), token_type: "Bearer", dpop: None }
    }

    pub(super) fn of(set: &TokenSet, dpop: Option<crate::dpop::DpopKey>) -> Self {
        Self {
            access_token: set.access_token.clone(),
            expires_at: set.expires_at,
            scope: set.scope.clone(),
            token_type: if dpop.is_some() { "DPoP" } else { "Bearer" },
            dpop,
        }
    }

    /// Whether the token is DPoP-bound: an API takes it only with a proof
    /// ([`dpop_proof`](Self::dpop_proof)).
    pub fn is_dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// The `Authorization` header's value: `DPoP <token>` or `Bearer <token>` (RFC 9449, 7.1).
    pub fn authorization(&self) -> String {
        format!("{} {}", self.token_type, self.access_token)
    }

    /// For a DPoP-bound token, a proof for one request to `method` `url` (RFC 9449, 4.2), with
    /// the token's hash (`ath`) and the API's `nonce` when it gave one (send again with it when
    /// it answers `use_dpop_nonce`); `None` for a Bearer token. Each proof is for one request,
    /// dated by the system clock (the API's server compares it with its own).
    pub fn dpop_proof(&self, method: &str, url: &str, nonce: Option<&str>) -> Result<Option<String>, AuthError> {
        let Some(key) = &self.dpop else { return Ok(None) };
        let parsed = Url::parse(url).map_err(|e| AuthError::InvalidRequest(format!("DPoP proof URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(AuthError::InvalidRequest("a DPoP proof is for an http(s) URL".into()));
        }
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(AuthError::InvalidRequest(format!("`{method}` is not an HTTP method in upper case")));
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(Some(key.proof(method, parsed.as_str(), Some(&self.access_token), nonce, now)))
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &crate::config::Redacted::of(&self.access_token))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("token_type", &self.token_type)
            .finish()
    }
}
