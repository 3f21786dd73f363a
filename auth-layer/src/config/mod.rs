//! Configuration: [`AuthConfig`], built once at start by [`AuthConfig::builder`] or
//! [`AuthConfig::from_env`], and validated then so that a misconfiguration is a clear message at
//! boot rather than a failed login later.
//!
//! Here: [`AuthConfig`] and the types of its settings. `builder` holds [`AuthConfigBuilder`]'s
//! setters, `env` reading the environment, `validate` the checks of `build`.
//!
//! ```
//! use auth_layer::AuthConfig;
//!
//! let config = AuthConfig::builder()
//!     .issuer("https://example.eu.auth0.com/")
//!     .client_id("my-client")
//!     .client_secret("my-client-secret")
//!     .secret("a-long-random-secret-of-at-least-32-chars")
//!     .base_url("https://app.example.com")
//!     .build()
//!     .expect("valid configuration");
//! assert_eq!(config.callback_url().as_str(), "https://app.example.com/auth/callback");
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use url::Url;

use crate::dpop::DpopKey;
use crate::forwarded::TrustedProxies;

mod builder;
mod env;
mod validate;

pub use self::builder::AuthConfigBuilder;

/// The shortest secret accepted, in characters.
pub const MIN_SECRET_LEN: usize = 32;

/// Why a configuration was refused.
///
/// ```
/// use auth_layer::{AuthConfig, ConfigError};
///
/// // Nothing set: the first required setting is named.
/// let err = AuthConfig::from_lookup(|_variable| None).unwrap_err();
/// assert!(matches!(err, ConfigError::Missing(_)));
/// eprintln!("cannot start: {err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A setting is present but unusable.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The setting (environment variable or builder method).
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Tenant `tenant`'s secret derived from the app's `secret` (HKDF-SHA256, hex): every key the
/// crate derives from secrets (sealing, keyed hashes) is then the tenant's own.
fn tenant_secret(secret: &str, tenant: &str) -> String {
    let mut key = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(None, secret.as_bytes())
        .expand(format!("auth-layer tenant v1: {tenant}").as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { name, reason: reason.into() }
}

/// How the client authenticates at the provider's token endpoint.
///
/// ```
/// use auth_layer::{AuthConfig, TokenEndpointAuth};
///
/// // A provider that takes the client's secret in the body, not in a Basic header.
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .token_endpoint_auth(TokenEndpointAuth::ClientSecretPost)
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("http://localhost:3000")
///     .build()?;
/// # let _ = config;
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenEndpointAuth {
    /// `client_secret_basic`: the client id and secret in an `Authorization: Basic` header.
    #[default]
    ClientSecretBasic,
    /// `client_secret_post`: the client id and secret in the request body.
    ClientSecretPost,
    /// `private_key_jwt` (RFC 7523): a short-lived JWT signed with the client's private key
    /// ([`AuthConfigBuilder::client_assertion_key`]); no client secret is needed.
    PrivateKeyJwt,
}

/// The algorithm of `private_key_jwt` client assertions.
///
/// ```no_run
/// use auth_layer::{AuthConfig, ClientAssertionAlg};
///
/// # fn build() -> Result<(), Box<dyn std::error::Error>> {
/// // private_key_jwt with a P-256 key registered at the provider as `app-key-1`: no client secret.
/// let key = std::env::var("AUTH_CLIENT_ASSERTION_KEY")?; // PEM or a private JWK
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_assertion_key(key, ClientAssertionAlg::Es256, Some("app-key-1".into()))
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("https://app.example.com")
///     .build()?;
/// # let _ = config; Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAssertionAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[default]
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256 (an EC key).
    Es256,
}

/// Where `/auth/logout` sends the browser after ending the session here (nextjs-auth0's names).
///
/// ```
/// use auth_layer::{AuthConfig, LogoutStrategy};
///
/// // Log out of the app only; the user stays logged in at the provider.
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("http://localhost:3000")
///     .logout_strategy(LogoutStrategy::Local)
///     .build()?;
/// # let _ = config;
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogoutStrategy {
    /// The provider's `end_session_endpoint` when it announces one; else, for an Auth0 domain
    /// (`*.auth0.com`), Auth0's `/v2/logout`; else back to the app only (the user stays logged
    /// in at the provider: the next login may be silent).
    #[default]
    Auto,
    /// Always the provider's `end_session_endpoint`: discovery fails without one.
    Oidc,
    /// Always Auth0's `/v2/logout?client_id=...&returnTo=...` on the issuer's host (Auth0
    /// tenants without OIDC logout, custom domains included).
    V2,
    /// Only here: straight back to the app, the provider's session left as it is.
    Local,
}

/// The source of the current time, in seconds since the Unix epoch.
///
/// The system clock by default; tests move time forward with [`Clock::from_fn`].
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use auth_layer::{AuthConfig, Clock};
///
/// // A test's clock: sessions age as the test says, not as the wall clock does.
/// let now = Arc::new(AtomicU64::new(1_700_000_000));
/// let clock = Clock::from_fn({
///     let now = now.clone();
///     move || now.load(Ordering::SeqCst)
/// });
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("http://localhost:3000")
///     .clock(clock)
///     .build()?;
/// now.fetch_add(3_600, Ordering::SeqCst); // an hour later
/// assert_eq!(config.clock().now(), 1_700_003_600);
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)))
    }

    /// A clock that reads `now` (seconds since the Unix epoch).
    pub fn from_fn(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The current time, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The `SameSite` attribute of auth-layer's cookies.
///
/// ```
/// use auth_layer::{CookieOptions, SameSite};
///
/// // An app embedded in another site's page (an iframe), served over https only.
/// let mut cookies = CookieOptions::default();
/// cookies.same_site = SameSite::None;
/// cookies.secure = Some(true);
/// # let _ = cookies;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent only on requests from this site: the return from the provider arrives without the
    /// login's cookie, so logins fail unless the provider is on the same site.
    Strict,
    /// Sent on top-level navigations from other sites too (the return from the provider).
    #[default]
    Lax,
    /// Sent on every request, cross-site ones included; needs `Secure` (https).
    None,
}

/// How the provider returns the authorization response to `{prefix}/callback`.
///
/// ```
/// use auth_layer::{AuthConfig, ResponseMode};
///
/// // The code never in a URL: the provider posts it to the callback.
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .response_mode(ResponseMode::FormPost)
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("https://app.example.com")
///     .build()?;
/// assert_eq!(config.response_mode(), ResponseMode::FormPost);
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseMode {
    /// A redirect with the response in the query (`GET`), unless the provider's metadata lists
    /// `form_post` in `response_modes_supported` and not `query`: then [`FormPost`](Self::FormPost).
    #[default]
    Query,
    /// `response_mode=form_post`: the provider's page posts the response to the callback
    /// (`POST`, a form body), so the code never appears in a URL, a log line or a `Referer`. On
    /// https the login's transaction cookie is then `SameSite=None; Secure` (that one cookie
    /// only: the post comes from the provider's site, which a `Lax` cookie is not sent to);
    /// the session cookie keeps its own `SameSite`. A `GET` of the callback is refused.
    FormPost,
}

/// The JWS algorithms an ID token or logout token may be signed with
/// ([`AuthConfigBuilder::id_token_signed_response_alg`]); `none` is not one of them.
pub const ID_TOKEN_SIGNING_ALGS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
];

/// The ID token algorithms the FAPI 2.0 profile ([`AuthConfigBuilder::fapi2`]) allows.
pub const FAPI2_SIGNING_ALGS: &[&str] = &["PS256", "ES256", "EdDSA"];

/// Where the keys of DPoP-bound tokens live ([`AuthConfigBuilder::dpop`]).
#[derive(Debug, Clone)]
pub(crate) enum DpopMode {
    /// A fresh key at each login, sealed with the session.
    PerSession,
    /// One key for every session of the process.
    PerProcess(Arc<DpopKey>),
}

/// Names and attributes of the cookies auth-layer sets. Start from the defaults and change the
/// fields you need: `let mut cookies = CookieOptions::default(); cookies.domain = Some(..);`.
///
/// ```
/// use auth_layer::{AuthConfig, CookieOptions, SameSite};
///
/// // One login for app.example.com and api.example.com; cookies of its own name.
/// let mut cookies = CookieOptions::default();
/// cookies.session_name = "myapp_session".into();
/// cookies.domain = Some("example.com".into());
/// cookies.same_site = SameSite::Lax;
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("https://app.example.com")
///     .cookies(cookies)
///     .build()?;
/// assert_eq!(config.cookies().session_name, "myapp_session");
/// assert!(config.secure_cookies(), "https: Secure");
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CookieOptions {
    /// The session cookie's name (chunks are named `{name}.0`, `{name}.1`, ...). Default `_a0_session`.
    pub session_name: String,
    /// The prefix of transaction cookies, one per login attempt: `{name}.{state}`. Default `_a0_tx`.
    pub transaction_name: String,
    /// `SameSite`; `Lax` by default, which the return from the provider needs.
    pub same_site: SameSite,
    /// `Secure`: `None` means "when the base URL is https".
    pub secure: Option<bool>,
    /// `Domain`, unset by default (host-only cookies).
    pub domain: Option<String>,
    /// The session cookie's `Path`. Default `/`.
    pub path: String,
}

impl Default for CookieOptions {
    fn default() -> Self {
        Self {
            session_name: "_a0_session".into(),
            transaction_name: "_a0_tx".into(),
            same_site: SameSite::Lax,
            secure: None,
            domain: None,
            path: "/".into(),
        }
    }
}

/// Which of the opt-in routes the layer answers; all off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OptionalRoutes {
    pub(crate) profile: bool,
    pub(crate) access_token: bool,
    pub(crate) backchannel_logout: bool,
    /// `{prefix}/logout/callback`, served with [`AuthConfigBuilder::logout_state`].
    pub(crate) logout_callback: bool,
    /// `{prefix}/sessions` and what ends them ([`AuthConfigBuilder::sessions_route`]).
    pub(crate) sessions: bool,
}

/// What `Debug` prints in place of a secret, key or token.
pub(crate) const REDACTED: &str = "<redacted>";

/// A secret in a `Debug` output: its length at most, never its text.
pub(crate) enum Redacted {
    /// One secret of this many bytes.
    One(usize),
    /// This many secrets.
    Count(usize),
}

impl Redacted {
    pub(crate) fn of(secret: impl AsRef<str>) -> Self {
        Self::One(secret.as_ref().len())
    }

    pub(crate) fn count(n: usize) -> Self {
        Self::Count(n)
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One(len) => write!(f, "{REDACTED} ({len} bytes)"),
            Self::Count(n) => write!(f, "{REDACTED} ({n})"),
        }
    }
}

/// The validated configuration of an [`AuthClient`](crate::AuthClient) and its layer. Its
/// `Debug` prints no secret, key or client secret.
///
/// ```
/// use auth_layer::AuthConfig;
///
/// let config = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .secret("a secret of at least thirty-two bytes, from the environment")
///     .base_url("https://app.example.com")
///     .build()?;
/// assert_eq!(config.callback_url().as_str(), "https://app.example.com/auth/callback");
/// // Safe to log: its Debug names no secret.
/// let printed = format!("{config:?}");
/// assert!(!printed.contains("my-app-secret") && !printed.contains("thirty-two"));
/// # Ok::<(), auth_layer::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AuthConfig {
    /// The tenant this configuration is, in a multi-tenant app.
    pub(crate) tenant: Option<String>,
    pub(crate) issuer: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    /// The client's private key (PEM) for `private_key_jwt`, its algorithm and `kid`.
    pub(crate) client_assertion: Option<(String, ClientAssertionAlg, Option<String>)>,
    pub(crate) secrets: Vec<String>,
    pub(crate) base_url: Url,
    /// Every origin the app is served at: the base URL's first, then
    /// [`public_origins`](AuthConfigBuilder::public_origins).
    pub(crate) origins: Vec<Url>,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) scope: String,
    pub(crate) audience: Option<String>,
    pub(crate) authorization_params: Vec<(String, String)>,
    pub(crate) login_query_params: Vec<String>,
    pub(crate) logout_params: Vec<(String, String)>,
    pub(crate) route_prefix: String,
    pub(crate) routes: OptionalRoutes,
    pub(crate) logout_by_get: bool,
    pub(crate) logout_strategy: LogoutStrategy,
    pub(crate) pushed_authorization: Option<bool>,
    pub(crate) fetch_userinfo: bool,
    /// Whether a session's refresh token is revoked at the provider when the session ends by a
    /// logout (RFC 7009).
    pub(crate) revoke_at_logout: bool,
    /// The most sessions a user keeps at once, when capped: a login past it ends the oldest.
    pub(crate) max_sessions_per_user: Option<std::num::NonZeroUsize>,
    pub(crate) attempt_silent_login: bool,
    pub(crate) acr_values_essential: bool,
    pub(crate) allow_private_endpoints: bool,
    /// The response mode asked for; once the client is built, [`ResponseMode::FormPost`] also
    /// where the provider requires it.
    pub(crate) response_mode: ResponseMode,
    /// The one algorithm ID tokens and logout tokens are accepted under.
    pub(crate) id_token_alg: String,
    /// Whether RP-initiated logout sends `state` and returns through `{prefix}/logout/callback`.
    pub(crate) logout_state: bool,
    /// DPoP-bound tokens: with a key per session, or the process's.
    pub(crate) dpop: Option<DpopMode>,
    /// The FAPI 2.0 Security Profile, enforced.
    pub(crate) fapi2: bool,
    pub(crate) cookies: CookieOptions,
    pub(crate) secure_cookies: bool,
    pub(crate) absolute_duration: Duration,
    pub(crate) inactivity_duration: Duration,
    pub(crate) transaction_duration: Duration,
    pub(crate) clock_skew: Duration,
    pub(crate) provider_idle_timeout: Duration,
    pub(crate) provider_connect_timeout: Duration,
    pub(crate) provider_timeout: Duration,
    pub(crate) provider_max_calls: usize,
    pub(crate) logout_token_max_age: Duration,
    pub(crate) refresh_buffer: Duration,
    pub(crate) renew_below: Duration,
    pub(crate) token_endpoint_auth: TokenEndpointAuth,
    pub(crate) clock: Clock,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tenant", &self.tenant)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &crate::config::Redacted::of(&self.client_secret))
            .field(
                "client_assertion",
                &self.client_assertion.as_ref().map(|(_, alg, kid)| (crate::config::REDACTED, alg, kid)),
            )
            .field("secrets", &crate::config::Redacted::count(self.secrets.len()))
            .field("base_url", &self.base_url)
            .field("origins", &self.origins)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("authorization_params", &self.authorization_params)
            .field("login_query_params", &self.login_query_params)
            .field("logout_params", &self.logout_params)
            .field("route_prefix", &self.route_prefix)
            .field("routes", &self.routes)
            .field("logout_by_get", &self.logout_by_get)
            .field("logout_strategy", &self.logout_strategy)
            .field("pushed_authorization", &self.pushed_authorization)
            .field("fetch_userinfo", &self.fetch_userinfo)
            .field("revoke_at_logout", &self.revoke_at_logout)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("attempt_silent_login", &self.attempt_silent_login)
            .field("acr_values_essential", &self.acr_values_essential)
            .field("allow_private_endpoints", &self.allow_private_endpoints)
            .field("response_mode", &self.response_mode)
            .field("id_token_alg", &self.id_token_alg)
            .field("logout_state", &self.logout_state)
            .field("dpop", &self.dpop)
            .field("fapi2", &self.fapi2)
            .field("cookies", &self.cookies)
            .field("secure_cookies", &self.secure_cookies)
            .field("absolute_duration", &self.absolute_duration)
            .field("inactivity_duration", &self.inactivity_duration)
            .field("transaction_duration", &self.transaction_duration)
            .field("clock_skew", &self.clock_skew)
            .field("provider_idle_timeout", &self.provider_idle_timeout)
            .field("provider_connect_timeout", &self.provider_connect_timeout)
            .field("provider_timeout", &self.provider_timeout)
            .field("provider_max_calls", &self.provider_max_calls)
            .field("logout_token_max_age", &self.logout_token_max_age)
            .field("refresh_buffer", &self.refresh_buffer)
            .field("renew_below", &self.renew_below)
            .field("token_endpoint_auth", &self.token_endpoint_auth)
            .field("clock", &self.clock)
            .finish()
    }
}

impl AuthConfig {
    /// A builder; `issuer`, `client_id`, `client_secret`, `secret` and `base_url` are required.
    pub fn builder() -> AuthConfigBuilder {
        AuthConfigBuilder::default()
    }

    /// Reads the configuration from the environment:
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `AUTH_ISSUER` | the provider's issuer URL (or `AUTH0_DOMAIN`, taken as `https://{domain}/`) |
    /// | `AUTH_CLIENT_ID`, `AUTH_CLIENT_SECRET` | the client's credentials |
    /// | `AUTH_SECRET` | at least 32 characters; several comma-separated for rotation |
    /// | `APP_BASE_URL` | where the app is served, e.g. `https://app.example.com` |
    /// | `AUTH_SCOPE`, `AUTH_AUDIENCE` | optional; scope defaults to `openid profile email offline_access` |
    /// | `AUTH_TOKEN_ENDPOINT_AUTH` | optional: `client_secret_basic` (default) or `client_secret_post` |
    /// | `AUTH_ROUTES` | optional opt-in routes, comma-separated: `profile`, `access-token`, `backchannel-logout` |
    /// | `AUTH_CLIENT_ASSERTION_KEY` | optional: the client's private key (PEM, or a JWK as JSON) for `private_key_jwt`; `AUTH_CLIENT_SECRET` is then not needed |
    /// | `AUTH_CLIENT_ASSERTION_ALG` | optional: `RS256` (default), `PS256` or `ES256` |
    /// | `AUTH_CLIENT_ASSERTION_KID` | optional: the key's `kid` at the provider |
    /// | `AUTH_LOGOUT_STRATEGY` | optional: `auto` (default), `oidc`, `v2` or `local` ([`LogoutStrategy`]) |
    /// | `AUTH_LOGIN_PARAMS` | optional: the query parameters `/auth/login` passes on, comma-separated (default [`DEFAULT_LOGIN_QUERY_PARAMS`]) |
    /// | `AUTH_RESPONSE_MODE` | optional: `query` (default) or `form_post` ([`ResponseMode`]) |
    /// | `AUTH_ID_TOKEN_SIGNED_RESPONSE_ALG` | optional: the one algorithm ID and logout tokens are accepted under (default `RS256`) |
    /// | `AUTH_FETCH_USERINFO` | optional: `true` calls the userinfo endpoint at login ([`AuthConfigBuilder::fetch_userinfo`]) |
    /// | `AUTH_REVOKE_AT_LOGOUT` | optional: `false` keeps refresh tokens alive at the provider after a logout ([`AuthConfigBuilder::revoke_at_logout`]) |
    /// | `AUTH_MAX_SESSIONS_PER_USER` | optional: the most sessions a user keeps at once; a login past it ends the oldest ([`AuthConfigBuilder::max_sessions_per_user`]) |
    /// | `AUTH_LOGOUT_STATE` | optional: `true` sends `state` with RP-initiated logout ([`AuthConfigBuilder::logout_state`]) |
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables (for tests and for apps that
    /// keep their settings elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        AuthConfigBuilder::from_lookup(lookup)?.build()
    }

    /// The tenant this configuration is ([`AuthConfigBuilder::tenant`]), if any.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The provider's issuer URL, exactly as configured.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The app's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The route prefix, `/auth` by default.
    pub fn route_prefix(&self) -> &str {
        &self.route_prefix
    }

    /// Whether `GET {prefix}/profile` is served.
    pub fn serves_profile(&self) -> bool {
        self.routes.profile
    }

    /// Whether `GET {prefix}/access-token` is served.
    pub fn serves_access_token(&self) -> bool {
        self.routes.access_token
    }

    /// Whether `POST {prefix}/backchannel-logout` is served.
    pub fn serves_backchannel_logout(&self) -> bool {
        self.routes.backchannel_logout
    }

    /// The registered callback: `{base_url}{prefix}/callback`.
    pub fn callback_url(&self) -> Url {
        self.app_url(&format!("{}/callback", self.route_prefix))
    }

    /// The callback at the app's origin number `origin`.
    pub(crate) fn callback_url_at(&self, origin: u8) -> Url {
        self.app_url_at(origin, &format!("{}/callback", self.route_prefix))
    }

    /// Every origin the app is served at: the base URL's, then the
    /// [`public_origins`](AuthConfigBuilder::public_origins). Each has a callback
    /// (`{origin}{prefix}/callback`) to register with the provider.
    pub fn origins(&self) -> &[Url] {
        &self.origins
    }

    /// The peers whose forwarded headers are read ([`AuthConfigBuilder::trusted_proxies`]).
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.trusted_proxies
    }

    /// The number of the listed origin a request was sent to, read from its URI, `Host` and
    /// (from a trusted proxy only) forwarded headers; `None` for a host not listed, or a
    /// scheme other than the listed origin's. With one origin, 0 whatever the request says:
    /// then every URL the layer makes is the base URL's, and the request's host is not read.
    pub(crate) fn origin_of(
        &self,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<u8> {
        if self.origins.len() == 1 {
            return Some(0);
        }
        let seen = crate::forwarded::destination(uri, headers, extensions, &self.trusted_proxies, None)?;
        let found = self.origins.iter().position(|origin| {
            crate::forwarded::host_matches(seen.host, origin)
                && seen.scheme.is_none_or(|scheme| scheme.eq_ignore_ascii_case(origin.scheme()))
        })?;
        u8::try_from(found).ok()
    }

    /// Where the provider sends the browser back after an RP-initiated logout with
    /// [`logout_state`](AuthConfigBuilder::logout_state): `{base_url}{prefix}/logout/callback`.
    pub fn logout_callback_url(&self) -> Url {
        self.app_url(&format!("{}/logout/callback", self.route_prefix))
    }

    /// Whether tokens are DPoP-bound ([`AuthConfigBuilder::dpop`]).
    pub fn dpop(&self) -> bool {
        self.dpop.is_some()
    }

    /// Whether the FAPI 2.0 profile is enforced ([`AuthConfigBuilder::fapi2`]).
    pub fn fapi2(&self) -> bool {
        self.fapi2
    }

    /// The response mode logins use ([`AuthClient::config`](crate::AuthClient::config) answers
    /// what was settled at discovery).
    pub fn response_mode(&self) -> ResponseMode {
        self.response_mode
    }

    /// The cookie names and attributes.
    pub fn cookies(&self) -> &CookieOptions {
        &self.cookies
    }

    /// Whether cookies carry `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// The clock sessions and tokens are checked against.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The configured secrets, the sealing one first (for typed stores of the app's own).
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// A path of this app as an absolute URL. `path` must start with `/`.
    pub(crate) fn app_url(&self, path: &str) -> Url {
        self.app_url_at(0, path)
    }

    /// `path` (and any query) at the app's origin number `origin` ([`Self::origins`]); the
    /// base URL's for an index past the list.
    pub(crate) fn app_url_at(&self, origin: u8, path: &str) -> Url {
        let mut url = self.origins.get(usize::from(origin)).unwrap_or(&self.base_url).clone();
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        url.set_path(path);
        url.set_query(query);
        url
    }
}

/// The query parameters `/auth/login` passes on by default: Auth0's and OpenID Connect's
/// per-login choices (sign-up screen, the account to prefill, the connection, organization and
/// invitation, languages, prompt, maximum authentication age, requested ACR values).
pub const DEFAULT_LOGIN_QUERY_PARAMS: &[&str] = &[
    "screen_hint",
    "login_hint",
    "connection",
    "organization",
    "invitation",
    "ui_locales",
    "prompt",
    "max_age",
    "acr_values",
];

/// The authorization parameters auth-layer sets itself: never taken from a query, an option or
/// the configuration.
pub(crate) const RESERVED_AUTHORIZATION_PARAMS: &[&str] = &[
    "response_type",
    "response_mode",
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
];

/// A valid configuration for unit tests, its clock read from `now`.
#[cfg(test)]
pub(crate) fn test_config(now: std::sync::Arc<std::sync::atomic::AtomicU64>) -> AuthConfigBuilder {
    AuthConfig::builder()
        .issuer("https://issuer.example/")
        .client_id("c")
        .client_secret("s")
        .secret("0123456789abcdef0123456789abcdef")
        .base_url("https://app.example")
        .clock(Clock::from_fn(move || now.load(std::sync::atomic::Ordering::SeqCst)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        ("AUTH_ISSUER", "https://issuer.example/"),
        ("AUTH_CLIENT_ID", "cid"),
        ("AUTH_CLIENT_SECRET", "csecret"),
        ("AUTH_SECRET", "0123456789abcdef0123456789abcdef"),
        ("APP_BASE_URL", "https://app.example"),
    ];

    fn with(overrides: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut all: Vec<_> = GOOD.iter().filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k)).copied().collect();
        all.extend(overrides.iter().filter(|(_, v)| !v.is_empty()).copied());
        all
    }

    #[test]
    fn environment_gives_safe_defaults() {
        let config = AuthConfig::from_lookup(vars(GOOD)).unwrap();
        assert_eq!(config.scope, "openid profile email offline_access");
        assert_eq!(config.route_prefix, "/auth");
        assert_eq!(config.absolute_duration, Duration::from_secs(3 * 86_400));
        assert_eq!(config.inactivity_duration, Duration::from_secs(86_400));
        assert_eq!(config.transaction_duration, Duration::from_secs(600));
        assert!(config.secure_cookies, "https base URL means Secure cookies");
        assert_eq!(config.cookies.session_name, "_a0_session");
        assert_eq!(config.token_endpoint_auth, TokenEndpointAuth::ClientSecretBasic);
        assert_eq!(config.callback_url().as_str(), "https://app.example/auth/callback");
    }

    #[test]
    fn a_session_cap_and_the_sessions_routes_are_off_by_default_and_a_cap_of_zero_is_refused() {
        let plain = AuthConfig::from_lookup(vars(GOOD)).unwrap();
        assert_eq!(plain.max_sessions_per_user, None);
        assert!(!plain.routes.sessions);
        let set = AuthConfig::from_lookup(vars(&with(&[
            ("AUTH_MAX_SESSIONS_PER_USER", "2"),
            ("AUTH_ROUTES", "profile, sessions"),
        ])))
        .unwrap();
        assert_eq!(set.max_sessions_per_user.map(std::num::NonZeroUsize::get), Some(2));
        assert!(set.routes.sessions && set.routes.profile);
        let zero = AuthConfig::from_lookup(vars(&with(&[("AUTH_MAX_SESSIONS_PER_USER", "0")]))).unwrap_err();
        assert!(zero.to_string().contains("at least 1"), "{zero}");
        let word = AuthConfig::from_lookup(vars(&with(&[("AUTH_MAX_SESSIONS_PER_USER", "two")]))).unwrap_err();
        assert!(word.to_string().contains("AUTH_MAX_SESSIONS_PER_USER"), "{word}");
    }

    #[test]
    fn the_environment_turns_on_what_the_conformance_plans_exercise() {
        let plain = AuthConfig::from_lookup(vars(GOOD)).unwrap();
        assert_eq!(plain.response_mode, ResponseMode::Query);
        assert_eq!(plain.id_token_alg, "RS256");
        assert!(!plain.fetch_userinfo && !plain.logout_state && !plain.routes.logout_callback);
        assert!(plain.revoke_at_logout, "refresh tokens are revoked at logout by default");
        let kept = AuthConfig::from_lookup(vars(&with(&[("AUTH_REVOKE_AT_LOGOUT", "false")]))).unwrap();
        assert!(!kept.revoke_at_logout);
        let config = AuthConfig::from_lookup(vars(&with(&[
            ("AUTH_RESPONSE_MODE", "form_post"),
            ("AUTH_ID_TOKEN_SIGNED_RESPONSE_ALG", "PS256"),
            ("AUTH_FETCH_USERINFO", "true"),
            ("AUTH_LOGOUT_STATE", "1"),
        ])))
        .unwrap();
        assert_eq!(config.response_mode, ResponseMode::FormPost);
        assert_eq!(config.id_token_alg, "PS256");
        assert!(config.fetch_userinfo && config.logout_state && config.routes.logout_callback);
        assert_eq!(config.logout_callback_url().as_str(), "https://app.example/auth/logout/callback");
        for (name, value) in [
            ("AUTH_RESPONSE_MODE", "fragment"),
            ("AUTH_ID_TOKEN_SIGNED_RESPONSE_ALG", "none"),
            ("AUTH_ID_TOKEN_SIGNED_RESPONSE_ALG", "RS257"),
            ("AUTH_FETCH_USERINFO", "yes please"),
            ("AUTH_LOGOUT_STATE", "2"),
        ] {
            let err = AuthConfig::from_lookup(vars(&with(&[(name, value)]))).unwrap_err().to_string();
            let named = if name == "AUTH_ID_TOKEN_SIGNED_RESPONSE_ALG" { "id_token_signed_response_alg" } else { name };
            assert!(err.contains(named), "{name}={value}: {err}");
        }
    }

    #[test]
    fn auth0_domain_becomes_an_https_issuer() {
        let config =
            AuthConfig::from_lookup(vars(&with(&[("AUTH_ISSUER", ""), ("AUTH0_DOMAIN", "tenant.eu.auth0.com")])))
                .unwrap();
        assert_eq!(config.issuer, "https://tenant.eu.auth0.com/");
    }

    #[test]
    fn comma_separated_secrets_are_kept_in_order_for_rotation() {
        let config = AuthConfig::from_lookup(vars(&with(&[(
            "AUTH_SECRET",
            "new-secret-new-secret-new-secret-1, old-secret-old-secret-old-secret-22",
        )])))
        .unwrap();
        assert_eq!(config.secrets, ["new-secret-new-secret-new-secret-1", "old-secret-old-secret-old-secret-22"]);
    }

    #[test]
    fn each_missing_variable_is_named() {
        for name in ["AUTH_CLIENT_ID", "AUTH_CLIENT_SECRET", "AUTH_SECRET", "APP_BASE_URL", "AUTH_ISSUER"] {
            let err = AuthConfig::from_lookup(vars(&with(&[(name, "")]))).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn short_secret_is_refused() {
        let err = AuthConfig::from_lookup(vars(&with(&[("AUTH_SECRET", "too-short")]))).unwrap_err();
        assert!(err.to_string().contains("shorter than 32"), "{err}");
    }

    #[test]
    fn base_url_with_a_path_or_bad_scheme_is_refused() {
        for bad in ["https://app.example/sub", "ftp://app.example", "not a url", "https://app.example/?q=1"] {
            let err = AuthConfig::from_lookup(vars(&with(&[("APP_BASE_URL", bad)]))).unwrap_err();
            assert!(err.to_string().contains("APP_BASE_URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn http_base_url_means_no_secure_flag() {
        let config = AuthConfig::from_lookup(vars(&with(&[("APP_BASE_URL", "http://127.0.0.1:3000")]))).unwrap();
        assert!(!config.secure_cookies);
    }

    #[test]
    fn token_endpoint_auth_method_is_read_and_checked() {
        let config =
            AuthConfig::from_lookup(vars(&with(&[("AUTH_TOKEN_ENDPOINT_AUTH", "client_secret_post")]))).unwrap();
        assert_eq!(config.token_endpoint_auth, TokenEndpointAuth::ClientSecretPost);
        let err = AuthConfig::from_lookup(vars(&with(&[("AUTH_TOKEN_ENDPOINT_AUTH", "private_key_jwt")]))).unwrap_err();
        assert!(err.to_string().contains("AUTH_TOKEN_ENDPOINT_AUTH"), "{err}");
    }

    #[test]
    fn host_prefixed_cookie_needs_https_and_no_domain() {
        let host_cookie = CookieOptions { session_name: "__Host-session".into(), ..CookieOptions::default() };
        let https = AuthConfig::from_lookup(vars(GOOD)).unwrap();
        let ok = AuthConfig::builder()
            .issuer(https.issuer.clone())
            .client_id("c")
            .client_secret("s")
            .secret("0123456789abcdef0123456789abcdef")
            .base_url("https://app.example")
            .cookies(host_cookie.clone());
        assert!(ok.clone().build().is_ok());
        let err = ok.clone().base_url("http://app.example").build().unwrap_err();
        assert!(err.to_string().contains("__Host-"), "{err}");
        let with_domain = CookieOptions { domain: Some("example".into()), ..host_cookie };
        assert!(ok.cookies(with_domain).build().is_err());
    }

    #[test]
    fn scope_without_openid_gains_it() {
        let config = AuthConfig::from_lookup(vars(&with(&[("AUTH_SCOPE", "email")]))).unwrap();
        assert_eq!(config.scope, "openid email");
    }

    #[test]
    fn bad_route_prefix_is_refused() {
        for bad in ["auth", "/auth/", "/", "/a b"] {
            let built = AuthConfig::from_lookup(vars(GOOD)).map(|_| ());
            assert!(built.is_ok());
            let err = AuthConfig::builder()
                .issuer("https://i.example/")
                .client_id("c")
                .client_secret("s")
                .secret("0123456789abcdef0123456789abcdef")
                .base_url("https://app.example")
                .route_prefix(bad)
                .build()
                .unwrap_err();
            assert!(err.to_string().contains("route_prefix"), "{bad}: {err}");
        }
    }

    #[test]
    fn private_key_jwt_needs_a_key_and_no_secret() {
        let base = || {
            AuthConfig::builder()
                .issuer("https://issuer.example/")
                .client_id("c")
                .secret("0123456789abcdef0123456789abcdef")
                .base_url("https://app.example")
        };
        assert!(matches!(base().build(), Err(ConfigError::Missing(m)) if m.contains("AUTH_CLIENT_SECRET")));
        let with_key = base().client_assertion_key("-----BEGIN PRIVATE KEY-----", ClientAssertionAlg::Ps256, None);
        let config = with_key.build().unwrap();
        assert_eq!(config.token_endpoint_auth, TokenEndpointAuth::PrivateKeyJwt);
        assert!(config.client_secret.is_empty(), "no secret needed");
        let no_key = base().token_endpoint_auth(TokenEndpointAuth::PrivateKeyJwt).build();
        assert!(matches!(no_key, Err(ConfigError::Missing(m)) if m.contains("AUTH_CLIENT_ASSERTION_KEY")));
        let from_env = AuthConfig::from_lookup(vars(&with(&[
            ("AUTH_CLIENT_ASSERTION_KEY", "-----BEGIN PRIVATE KEY-----"),
            ("AUTH_CLIENT_ASSERTION_ALG", "PS256"),
            ("AUTH_CLIENT_ASSERTION_KID", "k1"),
        ])))
        .unwrap();
        assert_eq!(from_env.token_endpoint_auth, TokenEndpointAuth::PrivateKeyJwt);
        let err = AuthConfig::from_lookup(vars(&with(&[
            ("AUTH_CLIENT_ASSERTION_KEY", "pem"),
            ("AUTH_CLIENT_ASSERTION_ALG", "HS256"),
        ])))
        .unwrap_err();
        assert!(err.to_string().contains("AUTH_CLIENT_ASSERTION_ALG"), "{err}");
    }

    #[test]
    fn fapi2_names_every_setting_that_falls_short_and_turns_on_what_it_needs() {
        let base = || test_config(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0))).fapi2(true);
        // Everything short at once: each named, with the setting to change.
        let err = base()
            .issuer("http://issuer.example/")
            .pushed_authorization_requests(false)
            .dpop(false)
            .id_token_signed_response_alg("RS256")
            .attempt_silent_login(true)
            .build()
            .unwrap_err()
            .to_string();
        for named in [
            "private_key_jwt",
            "pushed_authorization_requests",
            "DPoP, turned off (dpop)",
            "not RS256 (id_token_signed_response_alg)",
            "https issuer",
            "attempt_silent_login",
        ] {
            assert!(err.contains(named), "`{named}` missing from: {err}");
        }
        let rs256 = base().client_assertion_key("pem", ClientAssertionAlg::Rs256, None).build().unwrap_err();
        assert!(rs256.to_string().contains("PS256 or ES256, not RS256"), "{rs256}");

        // Met: PAR, DPoP (a key per session) and PS256 ID tokens are on without saying so, and
        // `prompt` is no longer taken from the login URL.
        let config = base().client_assertion_key("pem", ClientAssertionAlg::Es256, None).build().unwrap();
        assert!(config.fapi2() && config.dpop());
        assert!(matches!(config.dpop, Some(DpopMode::PerSession)));
        assert_eq!(config.pushed_authorization, Some(true));
        assert_eq!(config.id_token_alg, "PS256");
        assert!(!config.login_query_params.iter().any(|p| p == "prompt"));
        assert!(DEFAULT_LOGIN_QUERY_PARAMS.contains(&"prompt"), "still passed on outside FAPI 2.0");
        let eddsa = base()
            .client_assertion_key("pem", ClientAssertionAlg::Ps256, None)
            .id_token_signed_response_alg("EdDSA")
            .build()
            .unwrap();
        assert_eq!(eddsa.id_token_alg, "EdDSA");
        // Loopback http is for tests.
        assert!(
            base()
                .client_assertion_key("pem", ClientAssertionAlg::Es256, None)
                .issuer("http://127.0.0.1:9/")
                .build()
                .is_ok()
        );

        let from_env = AuthConfig::from_lookup(vars(&with(&[
            ("AUTH_FAPI2", "true"),
            ("AUTH_CLIENT_ASSERTION_KEY", "pem"),
            ("AUTH_CLIENT_ASSERTION_ALG", "ES256"),
        ])))
        .unwrap();
        assert!(from_env.fapi2() && from_env.dpop());
    }

    #[test]
    fn dpop_is_off_by_default_per_session_when_on_and_per_process_with_a_key() {
        let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        assert!(test_config(now.clone()).build().unwrap().dpop.is_none());
        assert!(matches!(test_config(now.clone()).dpop(true).build().unwrap().dpop, Some(DpopMode::PerSession)));
        let key = DpopKey::generate();
        let config = test_config(now.clone()).dpop_key(key.clone()).build().unwrap();
        assert!(matches!(&config.dpop, Some(DpopMode::PerProcess(k)) if k.thumbprint() == key.thumbprint()));
        let jwk = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;
        let from_env = AuthConfig::from_lookup(vars(&with(&[("AUTH_DPOP_KEY", jwk)]))).unwrap();
        assert!(matches!(from_env.dpop, Some(DpopMode::PerProcess(_))));
        assert!(!format!("{from_env:?}").contains("jpsQnnGQmL"), "Debug prints no DPoP key");
        let on = AuthConfig::from_lookup(vars(&with(&[("AUTH_DPOP", "on")]))).unwrap();
        assert!(matches!(on.dpop, Some(DpopMode::PerSession)));
        let err = AuthConfig::from_lookup(vars(&with(&[("AUTH_DPOP_KEY", "not a key")]))).unwrap_err();
        assert!(err.to_string().contains("AUTH_DPOP_KEY"), "{err}");
    }

    #[test]
    fn login_query_params_default_to_the_per_login_choices_and_never_take_reserved_ones() {
        let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let config = test_config(now.clone()).build().unwrap();
        assert_eq!(config.login_query_params, DEFAULT_LOGIN_QUERY_PARAMS);
        let own = test_config(now.clone()).login_query_params(["login_hint", "organization"]).build().unwrap();
        assert_eq!(own.login_query_params, ["login_hint", "organization"]);
        let err = test_config(now.clone()).login_query_params(["prompt", "redirect_uri"]).build().unwrap_err();
        assert!(err.to_string().contains("redirect_uri"), "{err}");
        let err = test_config(now).authorization_param("client_id", "other").build().unwrap_err();
        assert!(err.to_string().contains("client_id"), "{err}");
        let from_env =
            AuthConfig::from_lookup(vars(&with(&[("AUTH_LOGIN_PARAMS", "login_hint, ui_locales")]))).unwrap();
        assert_eq!(from_env.login_query_params, ["login_hint", "ui_locales"]);
    }

    #[test]
    fn opt_in_routes_are_off_by_default_and_read_from_auth_routes() {
        let none = AuthConfig::from_lookup(vars(GOOD)).unwrap();
        assert_eq!(none.routes, OptionalRoutes::default());
        let all = AuthConfig::from_lookup(vars(&with(&[("AUTH_ROUTES", "profile, access-token,backchannel-logout")])))
            .unwrap();
        assert!(all.serves_profile() && all.serves_access_token() && all.serves_backchannel_logout());
        let err = AuthConfig::from_lookup(vars(&with(&[("AUTH_ROUTES", "profile,admin")]))).unwrap_err();
        assert!(err.to_string().contains("`admin`"), "{err}");
        // The environment, then code: one builder for both.
        let built = AuthConfigBuilder::from_lookup(vars(GOOD)).unwrap().access_token_route(true).build().unwrap();
        assert!(built.serves_access_token() && !built.serves_profile());
    }

    #[test]
    fn origins_proxies_and_provider_timeouts_are_read_from_the_environment_and_checked() {
        let config = AuthConfig::from_lookup(vars(&with(&[
            ("AUTH_PUBLIC_ORIGINS", "https://www.customer.example, https://preview.app.example"),
            ("AUTH_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7"),
            ("AUTH_PROVIDER_IDLE_TIMEOUT", "15"),
            ("AUTH_PROVIDER_CONNECT_TIMEOUT", "0.5"),
            ("AUTH_PROVIDER_TIMEOUT", "4"),
            ("AUTH_PROVIDER_MAX_CALLS", "8"),
        ])))
        .unwrap();
        let origins: Vec<&str> = config.origins().iter().map(|o| o.as_str()).collect();
        assert_eq!(origins.len(), 3, "{origins:?}");
        assert_eq!(origins[1..], ["https://www.customer.example/", "https://preview.app.example/"]);
        assert!(config.trusted_proxies().trusts("10.2.3.4".parse().unwrap()));
        assert_eq!(config.provider_idle_timeout, Duration::from_secs(15));
        assert_eq!(config.provider_connect_timeout, Duration::from_millis(500));
        assert_eq!(config.provider_timeout, Duration::from_secs(4));
        assert_eq!(config.provider_max_calls, 8);
        let defaults = AuthConfig::from_lookup(vars(GOOD)).unwrap();
        assert_eq!(defaults.origins().len(), 1);
        assert!(defaults.trusted_proxies().is_empty());
        let timeouts = (defaults.provider_idle_timeout, defaults.provider_connect_timeout, defaults.provider_timeout);
        assert_eq!(timeouts, (Duration::from_secs(30), Duration::from_secs(5), Duration::from_secs(10)));
        for (name, value, says) in [
            ("AUTH_PUBLIC_ORIGINS", "http://custom.example", "scheme"),
            ("AUTH_PUBLIC_ORIGINS", "https://custom.example/app", "without a path"),
            ("AUTH_TRUSTED_PROXIES", "proxy.internal", "proxy.internal"),
            ("AUTH_PROVIDER_TIMEOUT", "soon", "seconds"),
            ("AUTH_PROVIDER_CONNECT_TIMEOUT", "20", "shorter"),
            ("AUTH_PROVIDER_MAX_CALLS", "0", "at least 1"),
        ] {
            let err = AuthConfig::from_lookup(vars(&with(&[(name, value)]))).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(says), "{name}={value}: {err}");
        }
        let with_domain = CookieOptions { domain: Some("app.example".into()), ..CookieOptions::default() };
        let builder = AuthConfigBuilder::from_lookup(vars(GOOD)).unwrap().cookies(with_domain);
        let err = builder.public_origins(["https://other.example"]).build().unwrap_err();
        assert!(err.to_string().contains("Domain"), "{err}");
    }

    #[test]
    fn same_site_none_needs_secure_cookies() {
        let cookies = CookieOptions { same_site: SameSite::None, ..CookieOptions::default() };
        let builder = AuthConfigBuilder::from_lookup(vars(GOOD)).unwrap().cookies(cookies);
        assert!(builder.clone().build().is_ok(), "https: Secure, so SameSite=None is allowed");
        let err = builder.base_url("http://app.example").build().unwrap_err();
        assert!(err.to_string().contains("SameSite=None"), "{err}");
    }
}
