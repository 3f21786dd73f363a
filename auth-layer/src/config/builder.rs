//! [`AuthConfigBuilder`]: the settings, one method each; [`build`](AuthConfigBuilder::build)
//! (in `validate`) checks them together.

use super::*;

/// Builds an [`AuthConfig`]; see [`AuthConfig::builder`]. Its `Debug` prints no secret.
///
/// Each setting is one method; [`build`](Self::build) checks them together and names the one
/// that is wrong:
///
/// ```
/// use auth_layer::{AuthConfig, ConfigError};
///
/// let refused = AuthConfig::builder()
///     .issuer("https://tenant.example.auth0.com/")
///     .client_id("my-app")
///     .client_secret("my-app-secret")
///     .secret("too short")
///     .base_url("https://app.example.com")
///     .build();
/// let Err(ConfigError::Invalid { name, reason }) = refused else { panic!("a short secret was accepted") };
/// println!("{name}: {reason}");
/// ```
#[derive(Default, Clone)]
#[must_use]
pub struct AuthConfigBuilder {
    pub(super) tenant: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) client_assertion: Option<(String, ClientAssertionAlg, Option<String>)>,
    pub(super) secrets: Vec<String>,
    pub(super) base_url: Option<String>,
    pub(super) public_origins: Vec<String>,
    pub(super) trusted_proxies: TrustedProxies,
    pub(super) scope: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) authorization_params: Vec<(String, String)>,
    pub(super) login_query_params: Option<Vec<String>>,
    pub(super) logout_params: Vec<(String, String)>,
    pub(super) route_prefix: Option<String>,
    pub(super) routes: OptionalRoutes,
    pub(super) logout_by_get: Option<bool>,
    pub(super) logout_strategy: LogoutStrategy,
    pub(super) pushed_authorization: Option<bool>,
    pub(super) fetch_userinfo: bool,
    /// `true` turns revocation at logout off (default: on).
    pub(super) keep_refresh_tokens: bool,
    pub(super) max_sessions_per_user: Option<usize>,
    pub(super) attempt_silent_login: bool,
    pub(super) acr_values_essential: bool,
    pub(super) allow_private_endpoints: bool,
    pub(super) response_mode: ResponseMode,
    pub(super) id_token_alg: Option<String>,
    pub(super) logout_state: bool,
    pub(super) dpop: Option<bool>,
    pub(super) dpop_key: Option<DpopKey>,
    pub(super) fapi2: bool,
    pub(super) cookies: CookieOptions,
    pub(super) absolute_duration: Option<Duration>,
    pub(super) inactivity_duration: Option<Duration>,
    pub(super) transaction_duration: Option<Duration>,
    pub(super) clock_skew: Option<Duration>,
    pub(super) provider_idle_timeout: Option<Duration>,
    pub(super) provider_connect_timeout: Option<Duration>,
    pub(super) provider_timeout: Option<Duration>,
    pub(super) provider_max_calls: Option<usize>,
    pub(super) logout_token_max_age: Option<Duration>,
    pub(super) refresh_buffer: Option<Duration>,
    pub(super) renew_below: Option<Duration>,
    pub(super) token_endpoint_auth: TokenEndpointAuth,
    pub(super) clock: Option<Clock>,
}

impl std::fmt::Debug for AuthConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfigBuilder")
            .field("tenant", &self.tenant)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(crate::config::Redacted::of))
            .field(
                "client_assertion",
                &self.client_assertion.as_ref().map(|(_, alg, kid)| (crate::config::REDACTED, alg, kid)),
            )
            .field("secrets", &crate::config::Redacted::count(self.secrets.len()))
            .field("base_url", &self.base_url)
            .field("public_origins", &self.public_origins)
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
            .field("keep_refresh_tokens", &self.keep_refresh_tokens)
            .field("attempt_silent_login", &self.attempt_silent_login)
            .field("acr_values_essential", &self.acr_values_essential)
            .field("allow_private_endpoints", &self.allow_private_endpoints)
            .field("response_mode", &self.response_mode)
            .field("id_token_alg", &self.id_token_alg)
            .field("logout_state", &self.logout_state)
            .field("dpop", &self.dpop)
            .field("dpop_key", &self.dpop_key)
            .field("fapi2", &self.fapi2)
            .field("cookies", &self.cookies)
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

impl AuthConfigBuilder {
    /// Makes this configuration the tenant `id` of a multi-tenant app ([`Tenants`]): its secrets
    /// become secrets of its own (HKDF-SHA256 of each, with the tenant id), so that its session
    /// cookies, transactions and stored sessions open for this tenant only, even in a database
    /// other tenants share; its stored records and logout markers live under the tenant's
    /// namespace; and every authorization response must carry `iss` (RFC 9207), the mix-up
    /// defence several providers need. Letters, digits and `.-_:` only.
    ///
    /// [`Tenants`]: crate::Tenants
    pub fn tenant(mut self, id: impl Into<String>) -> Self {
        self.tenant = Some(id.into());
        self
    }

    /// The provider's issuer URL, e.g. `https://example.eu.auth0.com/`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The client id registered at the provider.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Authenticates the client with `private_key_jwt` (RFC 7523) instead of a secret: `key` is
    /// its private key's text, PEM (RSA in PKCS#1 or PKCS#8, P-256 in PKCS#8 or SEC1) or a
    /// private JWK as JSON (`kty` `RSA`, or `EC` on `P-256`); `alg` the assertions' algorithm
    /// (RS256 or PS256 for RSA, ES256 for P-256), `kid` the key id registered at the provider
    /// (sent in the assertions' header; a JWK's own `kid` when `None`). Sets
    /// [`TokenEndpointAuth::PrivateKeyJwt`]; no client secret is needed then.
    pub fn client_assertion_key(
        mut self,
        pem: impl Into<String>,
        alg: ClientAssertionAlg,
        kid: Option<String>,
    ) -> Self {
        self.client_assertion = Some((pem.into(), alg, kid));
        self.token_endpoint_auth = TokenEndpointAuth::PrivateKeyJwt;
        self
    }

    /// The client secret registered at the provider.
    pub fn client_secret(mut self, client_secret: impl Into<String>) -> Self {
        self.client_secret = Some(client_secret.into());
        self
    }

    /// Adds a secret (at least 32 characters). The first one added seals; all of them open,
    /// so a new secret goes first and the old ones stay until their sessions have expired.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secrets.push(secret.into());
        self
    }

    /// Where the app is served, e.g. `https://app.example.com`; cookies are `Secure` when https.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into());
        self
    }

    /// Further origins the app is served at besides the base URL's (a custom domain, a preview
    /// URL), each like `https://custom.example.com`, with the base URL's scheme; also
    /// `AUTH_PUBLIC_ORIGINS` (comma-separated). Each login's `redirect_uri`, the page it
    /// returns to and a logout's return follow the origin the request was sent to, and its
    /// cookies stay there (host-only). With several origins, a request to a host not listed
    /// gets 400 `unknown_host`. Register `{origin}{prefix}/callback` of each with the provider.
    ///
    /// Which origin a request was sent to is read from its `Host`, or, behind a load balancer
    /// that rewrites it, from the forwarded headers of a peer in
    /// [`trusted_proxies`](Self::trusted_proxies).
    ///
    /// ```
    /// # fn main() -> Result<(), auth_layer::ConfigError> {
    /// let config = auth_layer::AuthConfig::builder()
    ///     .issuer("https://tenant.example.auth0.com/")
    ///     .client_id("client")
    ///     .client_secret("client-secret")
    ///     .secret("a-long-random-secret-of-32-chars-or-more")
    ///     .base_url("https://app.example.com")
    ///     .public_origins(["https://www.customer.example"])
    ///     .trusted_proxies("10.0.0.0/8".parse().expect("a list of ranges"))
    ///     .build()?;
    /// assert_eq!(config.origins().len(), 2);
    /// # Ok(()) }
    /// ```
    pub fn public_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.public_origins.extend(origins.into_iter().map(Into::into));
        self
    }

    /// The load balancers and reverse proxies whose forwarded headers (`Forwarded`,
    /// `X-Forwarded-Proto`, `X-Forwarded-Host`) say which origin a request was sent to; also
    /// `AUTH_TRUSTED_PROXIES` (addresses and ranges, comma-separated). From any other peer
    /// those headers are ignored. See [`TrustedProxies`] for where the peer's address comes from.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The scope asked for; default `openid profile email offline_access`. `openid` is added
    /// when missing.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The API audience to ask an access token for (`audience` parameter, as Auth0 expects).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// An extra parameter for every authorization request (e.g. `organization`, `ui_locales`).
    pub fn authorization_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.authorization_params.push((name.into(), value.into()));
        self
    }

    /// The query parameters `/auth/login` passes on to the authorization request (default
    /// [`DEFAULT_LOGIN_QUERY_PARAMS`]: `/auth/login?screen_hint=signup` works without a route of
    /// the app's own). Others in the query are ignored; the parameters auth-layer sets itself
    /// (`client_id`, `redirect_uri`, `state`, ...) are refused, here at build and in a query
    /// with 400. An empty list passes none on.
    pub fn login_query_params<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.login_query_params = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// An extra parameter for every request to the provider's end-session endpoint (e.g.
    /// `ui_locales`).
    pub fn logout_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.logout_params.push((name.into(), value.into()));
        self
    }

    /// Where the auth routes live; default `/auth`.
    pub fn route_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.route_prefix = Some(prefix.into());
        self
    }

    /// Whether `GET {prefix}/logout` logs out (default true), besides `POST`, which always
    /// does (same-origin only). A `GET` logout can be set off by any page linking to it (a
    /// nuisance, not a takeover: it only ends the session); turning it off leaves `POST`, which
    /// a cross-site page cannot send (403).
    pub fn logout_by_get(mut self, enabled: bool) -> Self {
        self.logout_by_get = Some(enabled);
        self
    }

    /// Pushed Authorization Requests (RFC 9126): with `true`, every login's parameters are
    /// first posted to the provider's `pushed_authorization_request_endpoint` (with the
    /// client's credentials) and the browser's redirect carries only `client_id` and
    /// `request_uri`; discovery fails when the provider has no such endpoint. With `false`,
    /// never; discovery fails when the provider requires them. Unset (the default): used
    /// exactly when the provider's metadata says `require_pushed_authorization_requests`.
    pub fn pushed_authorization_requests(mut self, enabled: bool) -> Self {
        self.pushed_authorization = Some(enabled);
        self
    }

    /// Revokes a session's refresh token at the provider's `revocation_endpoint` (RFC 7009)
    /// when a logout ends the session (on by default): a refresh token copied before the
    /// logout is then worth nothing. It is sent once per session across the fleet (the
    /// [`SharedState`](crate::SharedState) decides which process), after the local logout and
    /// without delaying its answer: a provider that is down or refuses leaves the logout done,
    /// and is logged (`revocation_failed`) and counted (`auth_layer.revocations`). Nothing is
    /// sent for a session without a refresh token or to a provider without the endpoint.
    pub fn revoke_at_logout(mut self, enabled: bool) -> Self {
        self.keep_refresh_tokens = !enabled;
        self
    }

    /// Calls the provider's userinfo endpoint at every login (off by default): its claims are
    /// added to the user's, the ID token's winning where both have one; its `sub` must be the
    /// ID token's. Discovery fails when the provider announces no userinfo endpoint.
    pub fn fetch_userinfo(mut self, enabled: bool) -> Self {
        self.fetch_userinfo = enabled;
        self
    }

    /// Silent login (off by default): a browser's page request without a session is first sent
    /// to the provider with `prompt=none`, once; a user logged in there comes back logged in
    /// here without a click, anyone else comes back to the page, anonymous, without an error
    /// page. A cookie (`{session cookie}_silent`, an hour; also set at logout, so that a logout
    /// is not undone) stops it being tried again on every page. API requests (not navigations)
    /// are never redirected.
    pub fn attempt_silent_login(mut self, enabled: bool) -> Self {
        self.attempt_silent_login = enabled;
        self
    }

    /// Lets the provider's endpoints be plain `http` on any host and at private, link-local or
    /// otherwise non-public addresses: a provider inside the app's own network. Off by default:
    /// the issuer and every URL its metadata names must be `https` (or `http` to this machine),
    /// and no name may resolve to an address that is not public (this machine's own excepted).
    /// Keep it off where a tenant's provider comes from a customer
    /// ([`Tenants::load_with`](crate::Tenants::load_with)).
    pub fn allow_private_endpoints(mut self, allow: bool) -> Self {
        self.allow_private_endpoints = allow;
        self
    }

    /// Treats a login's `acr_values` as essential (off by default): its ID token's `acr` must
    /// then be one of them, or the login is refused (400 `invalid_id_token`). Off, the `acr`
    /// reached is only exposed ([`User::acr`](crate::User::acr)), as OpenID Connect makes
    /// `acr_values` a voluntary request.
    pub fn acr_values_essential(mut self, essential: bool) -> Self {
        self.acr_values_essential = essential;
        self
    }

    /// How the provider returns to the callback: [`ResponseMode::Query`] by default (which
    /// becomes [`ResponseMode::FormPost`] with a provider that only offers that).
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = mode;
        self
    }

    /// The algorithm the client registered for ID tokens (`id_token_signed_response_alg`),
    /// `RS256` unless set: ID tokens and back-channel logout tokens are accepted signed with it
    /// only, not with whatever else the provider's metadata lists (a token signed with another
    /// algorithm, even by a key the provider publishes, is refused). One of
    /// [`ID_TOKEN_SIGNING_ALGS`]; never `none`: unsigned ID tokens are refused whatever is
    /// configured. Discovery fails when the provider does not announce it.
    pub fn id_token_signed_response_alg(mut self, alg: impl Into<String>) -> Self {
        self.id_token_alg = Some(alg.into());
        self
    }

    /// RP-initiated logout with `state` (off by default): the logout sends the provider a fresh
    /// `state` and `post_logout_redirect_uri={base}{prefix}/logout/callback` (register it at
    /// the provider), keeps the state and the page to land on in a short-lived sealed cookie,
    /// and `{prefix}/logout/callback` sends the browser to that page only when the provider
    /// returns the same `state`. Returned without it, or with another (a forged or stale
    /// return), the browser lands on the app's root and a warning is logged; the local logout
    /// is complete either way.
    pub fn logout_state(mut self, enabled: bool) -> Self {
        self.logout_state = enabled;
        self
    }

    /// Sender-constrained tokens with DPoP (RFC 9449): a fresh key at each login, kept sealed
    /// with the session; the pushed authorization request (or `dpop_jkt`), the code exchange,
    /// refreshes and userinfo carry proofs by it, a `DPoP-Nonce` the provider asks for is
    /// sent with one retry, and a token that comes back other than `DPoP` is refused.
    /// [`AccessToken::dpop_proof`](crate::AccessToken::dpop_proof) signs the proofs an app
    /// sends with the token to its API. Off by default; on with [`fapi2`](Self::fapi2).
    pub fn dpop(mut self, enabled: bool) -> Self {
        self.dpop = Some(enabled);
        self
    }

    /// DPoP ([`dpop`](Self::dpop)) with one key for every session of this process instead of
    /// one per session: give every instance of a fleet the same key
    /// ([`DpopKey::from_pem`]), or the sessions of one cannot refresh on another. Sessions
    /// then carry no key, only its thumbprint.
    pub fn dpop_key(mut self, key: DpopKey) -> Self {
        self.dpop = Some(true);
        self.dpop_key = Some(key);
        self
    }

    /// Enforces the FAPI 2.0 Security Profile: pushed authorization requests, PKCE S256 (always
    /// sent), `private_key_jwt` with PS256 or ES256 assertions whose only audience is the issuer,
    /// DPoP, `iss` required in every authorization response, ID tokens signed PS256 (the default
    /// then), ES256 or EdDSA, an https issuer (loopback excepted, for tests), and no silent login: `prompt` is not taken from
    /// the login URL's query and [`attempt_silent_login`](Self::attempt_silent_login) is refused.
    /// [`build`](Self::build) fails naming every setting that falls short; discovery fails when
    /// the provider cannot meet it (no PAR endpoint, no `private_key_jwt`, no S256, no ES256
    /// DPoP proofs).
    pub fn fapi2(mut self, enabled: bool) -> Self {
        self.fapi2 = enabled;
        self
    }

    /// Where logging out sends the browser: [`LogoutStrategy::Auto`] by default.
    pub fn logout_strategy(mut self, strategy: LogoutStrategy) -> Self {
        self.logout_strategy = strategy;
        self
    }

    /// Serves `GET {prefix}/profile`: the user's claims as JSON, or 401. Off by default.
    pub fn profile_route(mut self, enabled: bool) -> Self {
        self.routes.profile = enabled;
        self
    }

    /// Serves `GET {prefix}/access-token`: `{access_token, expires_at, scope}` (refreshed when
    /// due), or 401. Off by default.
    pub fn access_token_route(mut self, enabled: bool) -> Self {
        self.routes.access_token = enabled;
        self
    }

    /// Serves the user's own sessions (off by default; needs a store that lists them, such as
    /// [`ServerSessionStore`](crate::store::ServerSessionStore)):
    ///
    /// - `GET {prefix}/sessions`: `{"sessions": [...]}`, each one's `handle`, `created_at`,
    ///   `last_active`, `expires_at`, `device`, `location` and whether it is `current`
    ///   ([`SessionInfo`](crate::SessionInfo)); 401 without a session.
    /// - `POST {prefix}/sessions/{handle}/end`: ends that one (204; 404 for a handle that is not
    ///   one of the user's); ending the current one is a local logout.
    /// - `POST {prefix}/sessions/end-others`: ends every one but the current (204).
    ///
    /// The `POST`s are refused cross-site (403), as `POST {prefix}/logout` is. A handle is a
    /// keyed hash of a session's id, never the id: a listing hands out nothing that opens a
    /// session.
    pub fn sessions_route(mut self, enabled: bool) -> Self {
        self.routes.sessions = enabled;
        self
    }

    /// Caps the sessions one user keeps at once (off by default): a login past `max` ends the
    /// user's oldest sessions (by when they were created), on every instance sharing the store,
    /// and revokes their refresh tokens as a logout does. Needs a store that lists a user's
    /// sessions ([`ServerSessionStore`](crate::store::ServerSessionStore)); building a client
    /// over one that cannot (the cookie store) fails.
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = Some(max);
        self
    }

    /// Serves `POST {prefix}/backchannel-logout`, where the provider ends sessions. Off by
    /// default.
    pub fn backchannel_logout_route(mut self, enabled: bool) -> Self {
        self.routes.backchannel_logout = enabled;
        self
    }

    /// Cookie names and attributes.
    pub fn cookies(mut self, cookies: CookieOptions) -> Self {
        self.cookies = cookies;
        self
    }

    /// The longest a session lives, however active; default 3 days.
    pub fn absolute_duration(mut self, duration: Duration) -> Self {
        self.absolute_duration = Some(duration);
        self
    }

    /// The longest a session lives unused; default 1 day.
    pub fn inactivity_duration(mut self, duration: Duration) -> Self {
        self.inactivity_duration = Some(duration);
        self
    }

    /// How long a login attempt may take; default 10 minutes.
    pub fn transaction_duration(mut self, duration: Duration) -> Self {
        self.transaction_duration = Some(duration);
        self
    }

    /// Tolerance for the provider's clock in `exp` and `iat` checks; default 60 seconds.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = Some(skew);
        self
    }

    /// How long a connection to the provider may sit idle and still be reused; default 30 s,
    /// below the idle limits of common load balancers and NAT gateways (60 s and more). Lowered
    /// further, for this provider, to what it announces (`Keep-Alive: timeout=N`) less a second.
    /// Also `AUTH_PROVIDER_IDLE_TIMEOUT` (seconds). See the `egress` notes in README
    /// ("The provider's network").
    pub fn provider_idle_timeout(mut self, idle: Duration) -> Self {
        self.provider_idle_timeout = Some(idle);
        self
    }

    /// How long opening a connection to the provider may take; default 5 s. Also
    /// `AUTH_PROVIDER_CONNECT_TIMEOUT` (seconds).
    pub fn provider_connect_timeout(mut self, timeout: Duration) -> Self {
        self.provider_connect_timeout = Some(timeout);
        self
    }

    /// How long a whole request to the provider may take, connection included; default 10 s.
    /// Also `AUTH_PROVIDER_TIMEOUT` (seconds).
    pub fn provider_timeout(mut self, timeout: Duration) -> Self {
        self.provider_timeout = Some(timeout);
        self
    }

    /// The most calls in flight to the provider at once (token, pushed authorization and
    /// userinfo requests); default 64. One past it fails at once with 503 instead of queueing
    /// behind a provider that hangs. Also `AUTH_PROVIDER_MAX_CALLS`.
    pub fn provider_max_calls(mut self, calls: usize) -> Self {
        self.provider_max_calls = Some(calls);
        self
    }

    /// How old (by its `iat`, beyond the clock tolerance) a back-channel logout token may be;
    /// default 2 minutes, as Auth0's own verifier allows. A provider posts its logout tokens at
    /// once; an older one is refused, which bounds how long its `jti` must be remembered.
    pub fn logout_token_max_age(mut self, max_age: Duration) -> Self {
        self.logout_token_max_age = Some(max_age);
        self
    }

    /// How long before its expiry an access token is refreshed; default 60 seconds.
    pub fn refresh_buffer(mut self, buffer: Duration) -> Self {
        self.refresh_buffer = Some(buffer);
        self
    }

    /// Rolling renewal: a session is saved again (its inactivity window restarted) when less
    /// than this is left of the window; default half the inactivity duration. A session with
    /// more left is not rewritten.
    pub fn renew_below(mut self, remaining: Duration) -> Self {
        self.renew_below = Some(remaining);
        self
    }

    /// How the client authenticates at the token endpoint; default `client_secret_basic`.
    pub fn token_endpoint_auth(mut self, method: TokenEndpointAuth) -> Self {
        self.token_endpoint_auth = method;
        self
    }

    /// The clock; the system clock by default.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }
}
