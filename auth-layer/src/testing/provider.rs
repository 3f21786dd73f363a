//! [`TestProvider`]: an OpenID provider in the test's own process, for an app's tests of its
//! login flow without Node.js, a tenant or a browser.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use crate::config::{AuthConfig, AuthConfigBuilder};
use crate::dpop::DpopKey;

/// The client id the provider knows; [`TestProvider::config`] sets it.
pub const TEST_CLIENT_ID: &str = "test-client";
/// The client secret the provider expects of [`TEST_CLIENT_ID`].
pub const TEST_CLIENT_SECRET: &str = "test-client-secret";
/// How long the provider's ID tokens last: 10 minutes.
const ID_TOKEN_LIFETIME: u64 = 600;
/// How long its access tokens last: 1 hour.
const ACCESS_TOKEN_LIFETIME: u64 = 3_600;
/// The event a back-channel logout token carries.
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// An OpenID provider in the test's process (feature `testing` with `axum`): discovery, its
/// signing key (ES256), an authorization endpoint that logs in the user the test names without
/// showing a page, a token endpoint (authorization code with PKCE, refresh tokens rotated on
/// use), an end-session endpoint, and back-channel logout tokens sent to the app. It listens on
/// `127.0.0.1`, on a port of its own, until dropped.
///
/// [`log_in`](Self::log_in) runs a whole login through the app, as a browser would, and gives
/// the session's `Cookie` header: the app's routes, its client's checks of the ID token, the
/// token exchange over HTTP, the session store, all as in production.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use auth_layer::testing::TestProvider;
/// use auth_layer::{AuthClient, AuthLayer, User};
/// use axum::{Router, routing::get};
///
/// let provider = TestProvider::start().await?;
/// provider.log_in_as("auth0|alice").claim("email", "alice@example.com");
///
/// let config = provider.config("http://localhost:3000").build()?;
/// let client = AuthClient::builder(config).build().await?; // discovers the provider
/// let app = Router::new()
///     .route("/me", get(|user: User| async move { user.email().unwrap_or_default().to_owned() }))
///     .layer(AuthLayer::new(client));
///
/// // Alice's browser's `Cookie` header after a whole login through the app's routes:
/// let cookie = provider.log_in(&app).await?;
/// assert_eq!(provider.token_requests(), 1, "one code exchange");
///
/// use tower::ServiceExt;
/// let me = axum::http::Request::get("/me").header("cookie", cookie).body(axum::body::Body::empty())?;
/// let answer = app.oneshot(me).await?;
/// assert_eq!(answer.status(), 200);
/// let body = axum::body::to_bytes(answer.into_body(), 1 << 16).await?;
/// assert_eq!(body, "alice@example.com");
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
///
/// What it is not: a provider to certify against (the project's own end-to-end suites run
/// panva's `oidc-provider`), nor one to expose: it trusts whoever asks. It signs ID tokens
/// with ES256, so an app's configuration names that algorithm
/// ([`AuthConfigBuilder::id_token_signed_response_alg`]; [`config`](Self::config) does); the
/// authorization response comes back in the query (no `form_post`, no pushed requests); and its
/// clock is the system's.
pub struct TestProvider {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProvider").field("issuer", &self.shared.issuer).finish_non_exhaustive()
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Why [`TestProvider::log_in`] or [`TestProvider::backchannel_logout`] did not get through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestLoginError {
    /// The app answered a step otherwise than a browser's login expects.
    #[error("{step}: the app answered {status}: {body}")]
    App {
        /// The step: `login`, `callback` or `backchannel logout`.
        step: &'static str,
        /// The app's status.
        status: StatusCode,
        /// The start of its body.
        body: String,
    },
    /// The login the app started is not one this provider can answer (another provider's, a
    /// pushed request, a response mode other than the query, no PKCE).
    #[error("the provider refused the authorization request: {0}")]
    Refused(String),
}

/// What the provider keeps.
struct Shared {
    issuer: String,
    /// The signing key (ES256: a P-256 key, the kind a DPoP key is).
    key: DpopKey,
    kid: String,
    /// The public key as a JWK.
    jwk: Value,
    /// The claims of whoever logs in next, `sub` among them.
    user: Mutex<Map<String, Value>>,
    codes: Mutex<HashMap<String, Grant>>,
    refresh_tokens: Mutex<HashMap<String, Grant>>,
    token_requests: AtomicU64,
}

/// What an authorization code or a refresh token stands for.
#[derive(Clone)]
struct Grant {
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    claims: Map<String, Value>,
    sid: String,
    auth_time: u64,
    scope: String,
}

/// `body` as a JSON response.
fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body.to_string())
        .into_response()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TestProvider {
    /// Starts the provider on `127.0.0.1`, on a free port, logging in `test-user` until told
    /// otherwise ([`log_in_as`](Self::log_in_as)).
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let shared = Arc::new(Shared::new(format!("http://{}", listener.local_addr()?)));
        let routes = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/logout", get(end_session))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, routes).await;
        });
        Ok(Self { shared, server })
    }

    /// The provider's issuer, `http://127.0.0.1:{port}`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// A configuration of the app at `base_url` for this provider: its issuer, its client
    /// ([`TEST_CLIENT_ID`], [`TEST_CLIENT_SECRET`]), its algorithm (ES256) and a session secret
    /// for tests. Add the app's own settings before `build`.
    pub fn config(&self, base_url: &str) -> AuthConfigBuilder {
        AuthConfig::builder()
            .issuer(self.issuer())
            .client_id(TEST_CLIENT_ID)
            .client_secret(TEST_CLIENT_SECRET)
            .id_token_signed_response_alg("ES256")
            .secret("the test provider's session secret, for tests only")
            .base_url(base_url)
    }

    /// Logs in the user `sub` from now on, with no other claim.
    pub fn log_in_as(&self, sub: impl Into<String>) -> &Self {
        let mut user = Map::new();
        user.insert("sub".into(), Value::String(sub.into()));
        *lock(&self.shared.user) = user;
        self
    }

    /// Adds the claim `name` to the ID tokens of the user logged in from now on (`email`,
    /// `name`, `org_id`, roles, ...). The protocol's own claims (`iss`, `aud`, `nonce`, ...)
    /// are the provider's to set.
    pub fn claim(&self, name: impl Into<String>, value: impl Into<Value>) -> &Self {
        lock(&self.shared.user).insert(name.into(), value.into());
        self
    }

    /// How many token requests (code exchanges and refreshes) the provider answered with
    /// tokens.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Runs a login through `app` at `/auth/login`, as a browser would: the app's redirect to
    /// the provider, the provider's answer (the user of [`log_in_as`](Self::log_in_as), no
    /// page), the app's callback with the login's cookies, the token exchange the app makes
    /// over HTTP. Returns the `Cookie` header the browser then holds.
    pub async fn log_in<S, B>(&self, app: &S) -> Result<HeaderValue, TestLoginError>
    where
        S: tower_service::Service<Request<axum::body::Body>, Response = http::Response<B>> + Clone,
        S::Error: std::fmt::Debug,
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        self.log_in_at(app, "/auth/login").await
    }

    /// [`log_in`](Self::log_in) starting at `login_path` (an app with another route prefix, or
    /// a path with a `returnTo`).
    pub async fn log_in_at<S, B>(&self, app: &S, login_path: &str) -> Result<HeaderValue, TestLoginError>
    where
        S: tower_service::Service<Request<axum::body::Body>, Response = http::Response<B>> + Clone,
        S::Error: std::fmt::Debug,
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let mut jar = Jar::default();
        let start = Request::get(login_path).header(header::ACCEPT, "text/html").body(axum::body::Body::empty());
        let started = send(app, start.expect("a GET request"), "login").await?;
        jar.take(started.headers());
        let to_provider = redirect_of(started, "login").await?;
        let callback = self.shared.authorize(&to_provider).map_err(TestLoginError::Refused)?;
        let callback = Url::parse(&callback).map_err(|e| TestLoginError::Refused(e.to_string()))?;
        let mut request = Request::get(&callback[url::Position::BeforePath..]).header(header::ACCEPT, "text/html");
        if let Some(host) = callback.host_str() {
            let host = callback.port().map_or_else(|| host.to_owned(), |port| format!("{host}:{port}"));
            request = request.header(header::HOST, host);
        }
        if let Some(cookies) = jar.header() {
            request = request.header(header::COOKIE, cookies);
        }
        let answered = send(app, request.body(axum::body::Body::empty()).expect("a GET request"), "callback").await?;
        jar.take(answered.headers());
        redirect_of(answered, "callback").await?;
        jar.header().ok_or_else(|| TestLoginError::App {
            step: "callback",
            status: StatusCode::FOUND,
            body: "no session cookie was set".into(),
        })
    }

    /// Sends `app` a back-channel logout token (at `/auth/backchannel-logout`) for the session
    /// `sid` of the user logged in last, or for every session of that user when `sid` is
    /// `None`; returns the app's status (200 when it ended them). The route must be on
    /// ([`AuthConfigBuilder::backchannel_logout_route`]). A sid is in the `sid` claim of the
    /// app's session (`user.sid()`).
    pub async fn backchannel_logout<S, B>(&self, app: &S, sid: Option<&str>) -> Result<StatusCode, TestLoginError>
    where
        S: tower_service::Service<Request<axum::body::Body>, Response = http::Response<B>> + Clone,
        S::Error: std::fmt::Debug,
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Display,
    {
        let sub = lock(&self.shared.user).get("sub").cloned().unwrap_or(Value::Null);
        let issued = now();
        let mut claims = json!({
            "iss": self.shared.issuer,
            "aud": TEST_CLIENT_ID,
            "iat": issued,
            "exp": issued + 120,
            "jti": crate::seal::random_token(16),
            "events": { BACKCHANNEL_EVENT: {} },
            "sub": sub,
        });
        if let Some(sid) = sid {
            claims["sid"] = sid.into();
        }
        let token = self.shared.sign("logout+jwt", &claims);
        let body = url::form_urlencoded::Serializer::new(String::new()).append_pair("logout_token", &token).finish();
        let request = Request::post("/auth/backchannel-logout")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(body))
            .expect("a POST request");
        Ok(send(app, request, "backchannel logout").await?.status())
    }
}

/// The cookies a browser keeps over a login: set ones replace, removed ones go.
#[derive(Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn take(&mut self, headers: &http::HeaderMap) {
        for value in headers.get_all(header::SET_COOKIE) {
            let Ok(cookie) = cookie::Cookie::parse(value.to_str().unwrap_or_default().to_owned()) else { continue };
            self.0.retain(|(name, _)| name != cookie.name());
            let removed = cookie.value().is_empty() || cookie.max_age().is_some_and(|age| age.is_zero());
            if !removed {
                self.0.push((cookie.name().to_owned(), cookie.value().to_owned()));
            }
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        let joined = self.0.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ");
        (!joined.is_empty()).then(|| HeaderValue::from_str(&joined).expect("cookie values are header-safe"))
    }
}

/// `request` through a clone of `app`, as `oneshot` does.
async fn send<S, B>(
    app: &S,
    request: Request<axum::body::Body>,
    step: &'static str,
) -> Result<http::Response<B>, TestLoginError>
where
    S: tower_service::Service<Request<axum::body::Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut app = app.clone();
    let failed = |e: S::Error| TestLoginError::App {
        step,
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: format!("the service failed: {e:?}"),
    };
    std::future::poll_fn(|cx| app.poll_ready(cx)).await.map_err(failed)?;
    app.call(request).await.map_err(failed)
}

/// Where a redirect sends the browser, or the step's failure with the start of the body.
async fn redirect_of<B>(response: http::Response<B>, step: &'static str) -> Result<String, TestLoginError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let location = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned);
    if let Some(location) = location.filter(|_| response.status().is_redirection()) {
        return Ok(location);
    }
    let status = response.status();
    let body = match response.into_body().collect().await {
        Ok(body) => String::from_utf8_lossy(&body.to_bytes()).chars().take(500).collect(),
        Err(e) => format!("(its body could not be read: {e})"),
    };
    Err(TestLoginError::App { step, status, body })
}

impl Shared {
    /// A provider at `issuer` with a new key, logging in `test-user`.
    fn new(issuer: String) -> Self {
        let key = DpopKey::generate();
        let kid = crate::seal::random_token(8);
        let (x, y) = key.public_coordinates();
        let jwk = json!({ "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": x, "y": y });
        let mut user = Map::new();
        user.insert("sub".into(), "test-user".into());
        Self {
            issuer,
            key,
            kid,
            jwk,
            user: Mutex::new(user),
            codes: Mutex::default(),
            refresh_tokens: Mutex::default(),
            token_requests: AtomicU64::new(0),
        }
    }

    /// A compact JWS of `claims` signed with the provider's key.
    fn sign(&self, typ: &str, claims: &Value) -> String {
        let header = json!({ "alg": "ES256", "typ": typ, "kid": self.kid });
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        self.key.signed(format!("{}.{}", encode(&header), encode(claims)))
    }

    /// Answers the authorization request at `url` for the current user: the callback URL
    /// with a new code, or why it is refused.
    fn authorize(&self, url: &str) -> Result<String, String> {
        let url = Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let expected = format!("{}/authorize", self.issuer);
        if url[..url::Position::AfterPath] != expected {
            return Err(format!("{} is not this provider's authorization endpoint", &url[..url::Position::AfterPath]));
        }
        let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let param = |name: &str| query.get(name).map(String::as_str);
        if param("request_uri").is_some() {
            return Err("pushed authorization requests are not supported".into());
        }
        if param("client_id") != Some(TEST_CLIENT_ID) {
            return Err(format!("unknown client {:?}", param("client_id")));
        }
        if param("response_type") != Some("code") {
            return Err(format!("response_type {:?}: only `code`", param("response_type")));
        }
        if param("response_mode").is_some_and(|mode| mode != "query") {
            return Err("only the query response mode is supported".into());
        }
        let (Some(challenge), Some("S256")) = (param("code_challenge"), param("code_challenge_method")) else {
            return Err("PKCE with S256 is required".into());
        };
        let redirect_uri = param("redirect_uri").ok_or("no redirect_uri")?.to_owned();
        let state = param("state").ok_or("no state")?.to_owned();
        let grant = Grant {
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.to_owned(),
            nonce: param("nonce").map(str::to_owned),
            claims: lock(&self.user).clone(),
            sid: crate::seal::random_token(12),
            auth_time: now(),
            scope: param("scope").unwrap_or("openid").to_owned(),
        };
        let code = crate::seal::random_token(24);
        lock(&self.codes).insert(code.clone(), grant);
        let mut callback = Url::parse(&redirect_uri).map_err(|e| format!("redirect_uri: {e}"))?;
        callback
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state)
            .append_pair("iss", &self.issuer);
        Ok(callback.into())
    }

    /// The token endpoint's answer to `form`, sent with `headers`.
    fn token(&self, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
        let error = |status: StatusCode, error: &str| json_response(status, &json!({ "error": error }));
        if !authenticated(headers, form) {
            return error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        let param = |name: &str| form.get(name).map(String::as_str);
        let (grant, id_token) = match param("grant_type") {
            Some("authorization_code") => {
                let Some(grant) = param("code").and_then(|code| lock(&self.codes).remove(code)) else {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                let verifier = param("code_verifier").unwrap_or_default();
                let proved = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == grant.code_challenge;
                if !proved || param("redirect_uri") != Some(grant.redirect_uri.as_str()) {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                let id_token = self.id_token(&grant);
                (grant, Some(id_token))
            }
            Some("refresh_token") => {
                let Some(grant) = param("refresh_token").and_then(|token| lock(&self.refresh_tokens).remove(token))
                else {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                (grant, None)
            }
            _ => return error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        };
        let refresh_token = crate::seal::random_token(32);
        lock(&self.refresh_tokens).insert(refresh_token.clone(), grant.clone());
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let mut body = json!({
            "access_token": crate::seal::random_token(32),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "refresh_token": refresh_token,
            "scope": grant.scope,
        });
        if let Some(id_token) = id_token {
            body["id_token"] = id_token.into();
        }
        json_response(StatusCode::OK, &body)
    }

    /// The ID token of `grant`, issued now.
    fn id_token(&self, grant: &Grant) -> String {
        let issued = now();
        let mut claims = grant.claims.clone();
        for name in ["iss", "aud", "exp", "iat", "nonce", "auth_time", "sid", "azp"] {
            claims.remove(name);
        }
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), TEST_CLIENT_ID.into());
        claims.insert("iat".into(), issued.into());
        claims.insert("exp".into(), (issued + ID_TOKEN_LIFETIME).into());
        claims.insert("auth_time".into(), grant.auth_time.into());
        claims.insert("sid".into(), grant.sid.clone().into());
        if let Some(nonce) = &grant.nonce {
            claims.insert("nonce".into(), nonce.clone().into());
        }
        self.sign("JWT", &Value::Object(claims))
    }
}

/// Whether the request authenticates the test client: `client_secret_basic` (RFC 6749, 2.3.1:
/// the id and secret form-encoded, then Basic) or `client_secret_post`.
fn authenticated(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode =
                |s: &str| url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            Some((decode(id)?, decode(secret)?))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => {
            (form.get("client_id").cloned().unwrap_or_default(), form.get("client_secret").cloned().unwrap_or_default())
        }
    };
    id == TEST_CLIENT_ID && secret == TEST_CLIENT_SECRET
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    let issuer = &shared.issuer;
    let metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    });
    json_response(StatusCode::OK, &metadata)
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &json!({ "keys": [shared.jwk] }))
}

/// The authorization endpoint over HTTP (a browser driven by a test): straight back to the
/// app with a code, no page.
async fn authorize(State(shared): State<Arc<Shared>>, uri: http::Uri) -> Response {
    let url = format!("{}{}", shared.issuer, uri.path_and_query().map_or("", |p| p.as_str()));
    match shared.authorize(&url) {
        Ok(callback) => Redirect::to(&callback).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
    }
}

async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    shared.token(&headers, &form)
}

/// The end-session endpoint: back to `post_logout_redirect_uri` (with the `state`), or a page.
async fn end_session(uri: http::Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    match query.get("post_logout_redirect_uri").and_then(|uri| Url::parse(uri).ok()) {
        Some(mut back) => {
            if let Some(state) = query.get("state") {
                back.query_pairs_mut().append_pair("state", state);
            }
            Redirect::to(back.as_str()).into_response()
        }
        None => "logged out".into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "http://127.0.0.1:9";
    const CALLBACK: &str = "http://localhost:3000/auth/callback";

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        headers.insert(header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    async fn json_of(response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    /// An authorization of `verifier`'s challenge: the code the callback URL carries.
    fn code_for(shared: &Shared, verifier: &str) -> String {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = Url::parse(&format!("{ISSUER}/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", TEST_CLIENT_ID)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", CALLBACK)
            .append_pair("state", "st")
            .append_pair("nonce", "n-1")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let callback = Url::parse(&shared.authorize(url.as_str()).unwrap()).unwrap();
        let query: HashMap<String, String> = callback.query_pairs().into_owned().collect();
        assert_eq!((query["state"].as_str(), query["iss"].as_str()), ("st", ISSUER));
        query["code"].clone()
    }

    #[tokio::test]
    async fn a_code_is_exchanged_once_with_its_verifier_redirect_uri_and_the_clients_secret() {
        let shared = Shared::new(ISSUER.into());
        let right = basic(TEST_CLIENT_ID, TEST_CLIENT_SECRET);
        let exchange = |code: &str, verifier: &str, redirect: &str| {
            form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", redirect),
            ])
        };
        let code = code_for(&shared, "verifier-1");
        let (status, body) =
            json_of(shared.token(&basic(TEST_CLIENT_ID, "wrong"), &exchange(&code, "verifier-1", CALLBACK))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
        // A refused client did not spend the code; a wrong verifier does (single use).
        let (status, body) = json_of(shared.token(&right, &exchange(&code, "verifier-2", CALLBACK))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        let (status, _) = json_of(shared.token(&right, &exchange(&code, "verifier-1", CALLBACK))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a code is used once");

        let code = code_for(&shared, "verifier-3");
        let elsewhere = exchange(&code, "verifier-3", "http://localhost:3000/elsewhere");
        assert_eq!(json_of(shared.token(&right, &elsewhere)).await.0, StatusCode::BAD_REQUEST);

        let code = code_for(&shared, "verifier-4");
        let (status, body) = json_of(shared.token(&right, &exchange(&code, "verifier-4", CALLBACK))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id_token = body["id_token"].as_str().unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!((claims["iss"].as_str(), claims["aud"].as_str()), (Some(ISSUER), Some(TEST_CLIENT_ID)));
        assert_eq!((claims["sub"].as_str(), claims["nonce"].as_str()), (Some("test-user"), Some("n-1")));
        assert_eq!(shared.token_requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refresh_token_is_rotated_and_refused_once_used() {
        let shared = Shared::new(ISSUER.into());
        let right = basic(TEST_CLIENT_ID, TEST_CLIENT_SECRET);
        let code = code_for(&shared, "v");
        let exchange = form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", "v"),
            ("redirect_uri", CALLBACK),
        ]);
        let (_, body) = json_of(shared.token(&right, &exchange)).await;
        let first = body["refresh_token"].as_str().unwrap().to_owned();
        let refresh = |token: &str| form(&[("grant_type", "refresh_token"), ("refresh_token", token)]);
        let (status, body) = json_of(shared.token(&right, &refresh(&first))).await;
        assert_eq!(status, StatusCode::OK);
        let second = body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(first, second);
        assert!(body.get("id_token").is_none(), "a refresh returns no ID token");
        let (status, body) = json_of(shared.token(&right, &refresh(&first))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
        // client_secret_post is taken too.
        let mut posted = refresh(&second);
        posted.insert("client_id".into(), TEST_CLIENT_ID.into());
        posted.insert("client_secret".into(), TEST_CLIENT_SECRET.into());
        assert_eq!(json_of(shared.token(&HeaderMap::new(), &posted)).await.0, StatusCode::OK);
    }

    #[test]
    fn an_authorization_without_pkce_or_for_another_client_is_refused() {
        let shared = Shared::new(ISSUER.into());
        let base = format!("{ISSUER}/authorize?response_type=code&redirect_uri={CALLBACK}&state=s");
        let why = shared.authorize(&format!("{base}&client_id={TEST_CLIENT_ID}")).unwrap_err();
        assert!(why.contains("PKCE"), "{why}");
        let pkce = "code_challenge=abc&code_challenge_method=S256";
        let why = shared.authorize(&format!("{base}&client_id=someone-else&{pkce}")).unwrap_err();
        assert!(why.contains("unknown client"), "{why}");
        let why =
            shared.authorize(&format!("{base}&client_id={TEST_CLIENT_ID}&{pkce}&response_mode=form_post")).unwrap_err();
        assert!(why.contains("query"), "{why}");
        assert!(shared.authorize(&format!("{base}&client_id={TEST_CLIENT_ID}&{pkce}")).is_ok());
    }
}
