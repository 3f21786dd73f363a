//! The end-to-end harness: the real OpenID Provider (panva's `oidc-provider`, run by Node on
//! loopback), the example apps served on free loopback ports, and a scripted browser that keeps
//! cookies (paths honoured) and follows the provider's login, consent and logout forms.

#[rustfmt::skip]
pub mod readme;
pub mod relay;
pub mod servers;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_layer::{AuthClient, AuthConfig, Clock, TokenEndpointAuth};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// The application secret every test app uses.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0001";
/// The client secret registered at the test provider.
pub const CLIENT_SECRET: &str = "client-secret-of-the-test-relying-party";

/// Every port this process has handed out. The system offers a probed port again as soon as the
/// probe closes, so two tests running at once could be given one port before either binds it;
/// a port handed out once is never handed out again.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Marks `port` handed out; false if it already was.
fn claim(port: u16) -> bool {
    HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner).insert(port)
}

/// A listener on a loopback port that no other test of this process has been given.
fn claimed_listener() -> std::net::TcpListener {
    // Refused listeners stay open until one is accepted, so the system cannot offer them again.
    let mut refused = Vec::new();
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        if claim(listener.local_addr().unwrap().port()) {
            return listener;
        }
        refused.push(listener);
    }
}

/// A free TCP port on loopback that no other test of this process has been given.
pub fn free_port() -> u16 {
    claimed_listener().local_addr().unwrap().port()
}

/// The test provider's folder (its program and `node_modules`).
pub fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// How the test provider is started.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    /// The token endpoint authentication method registered for the client.
    pub auth_method: Option<&'static str>,
    /// Sign with a fresh key of this `kid`.
    pub signing_kid: Option<String>,
    /// Announce no `end_session_endpoint`.
    pub no_end_session: bool,
    /// Rotate refresh tokens: each refresh returns a new one and the old one is dead.
    pub rotate_refresh: bool,
    /// Register the client without the refresh_token grant: no refresh token is issued.
    pub no_refresh: bool,
    /// Require pushed authorization requests (RFC 9126): plain ones are refused.
    pub require_par: bool,
    /// The client's public key (PEM) and its `kid`, registered for `private_key_jwt`.
    pub client_public_key: Option<(String, String)>,
    /// Register the client with `dpop_bound_access_tokens`: tokens only with a DPoP proof.
    pub dpop_bound: bool,
    /// Require a provider-given nonce in every DPoP proof.
    pub dpop_nonce: bool,
    /// The FAPI 2.0 profile: ID tokens signed PS256, the client registered for it (PAR
    /// required, `private_key_jwt` with PS256 or ES256, DPoP-bound tokens).
    pub fapi2: bool,
    /// Register the app's callbacks and logout returns at a second origin too: the app's URL
    /// with `localhost` for `127.0.0.1` (the same server, another origin to a browser).
    pub localhost_origin: bool,
    /// The port the provider is reached at, when not its own (a [`relay::Relay`] in front):
    /// its issuer and every URL it announces name this port.
    pub public_port: Option<u16>,
    /// How long the provider keeps an idle connection (Node's `keepAliveTimeout`; it announces
    /// `Keep-Alive: timeout=` the whole seconds of it); Node's 5 s when unset.
    pub keep_alive_ms: Option<u64>,
    /// Close idle connections after this long without announcing it.
    pub idle_close_ms: Option<u64>,
}

/// A running `oidc-provider`, stopped when dropped.
pub struct Provider {
    /// Its issuer, `http://127.0.0.1:PORT` (the public port's, with a relay in front).
    pub issuer: String,
    /// The port it listens on itself.
    pub port: u16,
    app_url: String,
    child: Child,
}

impl Provider {
    /// Starts the provider with one confidential client, `test-app`, for the app at `app_url`.
    pub async fn start(app_url: &str, options: &ProviderOptions) -> Self {
        let dir = idp_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test provider is not installed: run `npm ci --prefix tests/idp` (the README's test command does)"
        );
        let (child, port) = launch(|| provider_command(0, app_url, options)).await;
        let public = options.public_port.unwrap_or(port);
        Self { issuer: format!("http://127.0.0.1:{public}"), port, app_url: app_url.to_owned(), child }
    }

    /// Stops the provider and starts it again on the same port with `options` (its in-memory
    /// sessions and grants are gone).
    pub async fn restart(&mut self, options: &ProviderOptions) {
        self.child.kill().await.unwrap();
        for attempt in 1..=3 {
            let mut child = provider_command(self.port, &self.app_url, options)
                .spawn()
                .expect("node must be installed to run the test provider");
            match port_within(&mut child, Duration::from_secs(30)).await {
                Some(port) => {
                    assert_eq!(port, self.port, "the restarted provider must listen on its old port");
                    self.child = child;
                    return;
                }
                // The silent start `launch` also meets (a CI run saw it on a restart): the
                // port is not bound yet, so another start on it goes through.
                None => {
                    eprintln!("the restarted test provider did not listen within 30 s (attempt {attempt})");
                    child.kill().await.unwrap();
                }
            }
        }
        panic!("the restarted test provider did not listen within 30 s, 3 times");
    }

    /// Starts the hostile test provider (`tests/idp/hostile.mjs`): the rejection cases.
    pub async fn start_hostile(app_url: &str) -> Self {
        Self::start_hostile_under(app_url, "ok").await
    }

    /// [`start_hostile`](Self::start_hostile), misbehaving by `scenario` from its first answer
    /// (its discovery document and first JWKS included).
    pub async fn start_hostile_under(app_url: &str, scenario: &str) -> Self {
        let (child, port) = launch(|| {
            let mut command = node("hostile.mjs", 0);
            command.env("CLIENT_ID", "test-app").env("CLIENT_SECRET", CLIENT_SECRET).env("SCENARIO", scenario);
            command
        })
        .await;
        Self { issuer: format!("http://127.0.0.1:{port}"), port, app_url: app_url.to_owned(), child }
    }

    /// The hostile provider's counters and what the last requests carried (`/__test/stats`).
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::get(format!("{}/__test/stats", self.issuer)).await.unwrap().json().await.unwrap()
    }

    /// Has the hostile provider sign a back-channel logout token for its last session, spoiled
    /// as `variant` says, and post it to `to`; returns the status and body it got.
    pub async fn send_logout_token(&self, variant: &str, to: &str) -> (u16, String) {
        let answer = self.post_json("/__test/backchannel", &serde_json::json!({ "variant": variant, "to": to })).await;
        (answer["status"].as_u64().unwrap() as u16, answer["body"].as_str().unwrap_or_default().to_owned())
    }

    /// `POST {issuer}{path}` with a JSON `body`, for the test endpoints; its JSON answer.
    async fn post_json(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let answer = reqwest::Client::new().post(format!("{}{path}", self.issuer)).json(body).send().await.unwrap();
        answer.json().await.unwrap()
    }

    /// Tells the hostile provider how to misbehave from now on.
    pub async fn set_scenario(&self, name: &str) {
        let answer = reqwest::Client::new()
            .post(format!("{}/__scenario", self.issuer))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// The provider's process id (for a bench that freezes it with SIGSTOP); `None` once it
    /// has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the provider (it is unreachable until [`restart`](Self::restart)).
    pub async fn stop(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Requests that reached the token endpoint, whatever their grant and answer.
    pub async fn token_requests(&self) -> u64 {
        self.stat("token_requests").await
    }

    /// How many refresh-token grants the provider has served.
    pub async fn refresh_grants(&self) -> u64 {
        self.stat("refresh_grants").await
    }

    /// How many token revocation requests (RFC 7009) the provider took (answered 200).
    pub async fn revocations(&self) -> u64 {
        self.stat("revocations").await
    }

    /// Waits up to 5 s for the provider to have received `count` revocations (they are sent
    /// after a logout's answer), then 300 ms more for any beyond them; returns how many came.
    pub async fn revocations_settled(&self, count: u64) -> u64 {
        let since = std::time::Instant::now();
        while self.revocations().await < count && since.elapsed() < std::time::Duration::from_secs(5) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.revocations().await
    }

    /// The provider's answer to a refresh-token grant with `refresh_token` sent as the test
    /// app's client: its status and JSON body.
    pub async fn refresh_grant(&self, refresh_token: &str) -> (reqwest::StatusCode, serde_json::Value) {
        let answer = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("test-app", Some(CLIENT_SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .send()
            .await
            .unwrap();
        let status = answer.status();
        (status, answer.json().await.unwrap_or_default())
    }

    /// Freezes the provider (`SIGSTOP`): it accepts connections and answers nothing until
    /// [`thaw`](Self::thaw).
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a provider [`freeze`](Self::freeze) stopped.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the provider is running");
        let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// How many userinfo requests the provider has served.
    pub async fn userinfo_calls(&self) -> u64 {
        self.stat("userinfo_calls").await
    }

    /// How many times the provider's JWKS was fetched (since it was last started).
    pub async fn jwks_fetches(&self) -> u64 {
        self.stat("jwks_fetches").await
    }

    async fn stat(&self, name: &str) -> u64 {
        let stats: serde_json::Value =
            reqwest::get(format!("{}/__test/stats", self.issuer)).await.unwrap().json().await.unwrap();
        stats[name].as_u64().unwrap()
    }

    /// A JWT with `claims` and extra `header` fields, signed with the provider's own key
    /// (`key: "provider"`), another key of the same `kid` (`"other"`), or unsigned (`"none"`).
    pub async fn sign(&self, header: serde_json::Value, claims: serde_json::Value, key: &str) -> String {
        let answer = self
            .post_json("/__test/sign", &serde_json::json!({ "header": header, "claims": claims, "key": key }))
            .await;
        answer["jwt"].as_str().unwrap().to_owned()
    }
}

/// Runs `command` (a test provider told to listen on port 0) until the port the system gave it
/// is one no other test was handed, and returns it with that port.
async fn launch(command: impl Fn() -> Command) -> (Child, u16) {
    let mut hung = 0;
    for _ in 0..10 {
        let mut child = command().spawn().expect("node must be installed to run the test provider");
        let Some(port) = port_within(&mut child, Duration::from_secs(30)).await else {
            // Seen twice in some hundred starts on a busy 2-core machine: a node process that
            // never printed. Another start goes through; a provider that never starts still fails.
            hung += 1;
            assert!(hung < 3, "the test provider did not listen within 30 s, {hung} times");
            eprintln!("the test provider did not listen within 30 s; starting another");
            child.kill().await.unwrap();
            continue;
        };
        if claim(port) {
            return (child, port);
        }
        // Handed to another test that has not bound it yet: leave it to that test.
        child.kill().await.unwrap();
    }
    panic!("no port for the test provider that no other test was given");
}

/// The port a test provider announces on stdout once it listens (the provider serves from then
/// on), or `None` when none was announced within `limit`.
async fn port_within(child: &mut Child, limit: Duration) -> Option<u16> {
    let mut lines = BufReader::new(child.stdout.take().expect("the provider's stdout is piped")).lines();
    let announced = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, port)) = line.split_once("listening on http://127.0.0.1:") {
                return port.trim().parse::<u16>().ok();
            }
        }
        None
    };
    let port = match tokio::time::timeout(limit, announced).await {
        Ok(Some(port)) => port,
        Ok(None) => panic!("the test provider exited before listening: {:?}", child.try_wait()),
        Err(_) => return None,
    };
    // Whatever else it prints is read, so it never writes to a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(port)
}

/// `node <script>` in the provider's folder, listening on `port` (0: any), stdout piped. Its
/// stdin is a pipe this process holds: the provider exits when it closes, which happens however
/// this process ends (a benchmark killed by a signal leaves no provider behind).
fn node(script: &str, port: u16) -> Command {
    let mut command = Command::new("node");
    command
        .arg(script)
        .current_dir(idp_dir())
        .env("PORT", port.to_string())
        .env("EXIT_WITH_STDIN", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

fn provider_command(port: u16, app_url: &str, options: &ProviderOptions) -> Command {
    let mut origins = vec![app_url.to_owned()];
    if options.localhost_origin {
        origins.push(app_url.replace("127.0.0.1", "localhost"));
    }
    let returns = origins.iter().flat_map(|o| [format!("{o}/"), format!("{o}/auth/logout/callback")]);
    let mut clients = serde_json::json!([{
        "client_id": "test-app",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": origins.iter().map(|o| format!("{o}/auth/callback")).collect::<Vec<_>>(),
        "post_logout_redirect_uris": returns.collect::<Vec<_>>(),
        "grant_types": if options.no_refresh { vec!["authorization_code"] } else { vec!["authorization_code", "refresh_token"] },
        "token_endpoint_auth_method": options.auth_method.unwrap_or("client_secret_basic"),
        "backchannel_logout_uri": format!("{app_url}/auth/backchannel-logout"),
        "backchannel_logout_session_required": true,
        "public_key_pem": options.client_public_key.as_ref().map(|(pem, _)| pem),
        "public_key_kid": options.client_public_key.as_ref().map(|(_, kid)| kid),
    }]);
    let client = &mut clients[0];
    if options.dpop_bound || options.fapi2 {
        client["dpop_bound_access_tokens"] = true.into();
    }
    if options.fapi2 {
        client["id_token_signed_response_alg"] = "PS256".into();
        client["require_pushed_authorization_requests"] = true.into();
    }
    let mut command = node("provider.mjs", port);
    command.env("CLIENTS", clients.to_string());
    if let Some(kid) = &options.signing_kid {
        command.env("SIGNING_KID", kid);
    }
    if options.no_end_session {
        command.env("NO_END_SESSION", "1");
    }
    if options.rotate_refresh {
        command.env("ROTATE_REFRESH", "1");
    }
    if options.require_par {
        command.env("REQUIRE_PAR", "1");
    }
    if options.dpop_nonce {
        command.env("DPOP_NONCE", "1");
    }
    if options.fapi2 {
        command.env("FAPI2", "1");
    }
    if let Some(port) = options.public_port {
        command.env("ISSUER", format!("http://127.0.0.1:{port}"));
    }
    if let Some(ms) = options.keep_alive_ms {
        command.env("KEEP_ALIVE_MS", ms.to_string());
    }
    if let Some(ms) = options.idle_close_ms {
        command.env("IDLE_CLOSE_MS", ms.to_string());
    }
    command
}

/// Which app a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// The axum quickstart example.
    Quickstart,
    /// The plain hyper example.
    Hyper,
}

/// Options of [`TestEnv::start_with`].
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// The app.
    pub app: AppKind,
    /// The token endpoint authentication method.
    pub token_auth: TokenEndpointAuth,
    /// How the provider starts.
    pub provider: ProviderOptions,
    /// Where sessions are kept.
    pub store: quickstart::StoreChoice,
    /// Changes to the test configuration (none by default).
    pub configure: fn(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            app: AppKind::Quickstart,
            token_auth: TokenEndpointAuth::ClientSecretBasic,
            provider: ProviderOptions::default(),
            store: quickstart::StoreChoice::Cookie,
            configure: |builder| builder,
        }
    }
}

/// A provider, an app served on loopback, and a clock the test can move forward.
pub struct TestEnv {
    /// The provider.
    pub provider: Provider,
    /// The app's base URL.
    pub app_url: String,
    /// The app's auth client.
    pub client: AuthClient,
    clock_offset: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestEnv {
    /// The quickstart app with the cookie stores.
    pub async fn start() -> Self {
        Self::start_with(EnvOptions::default()).await
    }

    /// An app of `options`.
    pub async fn start_with(options: EnvOptions) -> Self {
        let (port, listener) = bind();
        let app_url = format!("http://127.0.0.1:{port}");
        let method = match options.token_auth {
            TokenEndpointAuth::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuth::ClientSecretPost => "client_secret_post",
            other => panic!("the test provider has no client registered for {other:?}"),
        };
        let provider_options = ProviderOptions { auth_method: Some(method), ..options.provider.clone() };
        let provider = Provider::start(&app_url, &provider_options).await;
        let clock_offset = Arc::new(AtomicU64::new(0));
        let config = (options.configure)(config_builder(&provider, &app_url, options.token_auth, clock_offset.clone()))
            .build()
            .expect("test configuration");
        let auth =
            quickstart::auth_layer(config, options.store.clone()).await.expect("discovery and the session store");
        let client = auth.client().clone();
        let server = match options.app {
            AppKind::Quickstart => {
                let app = quickstart::app(auth);
                tokio::spawn(async move {
                    axum::serve(listener, app).await.unwrap();
                })
            }
            AppKind::Hyper => {
                let service = hyper_server::service(auth);
                tokio::spawn(async move { serve_hyper(listener, service).await })
            }
        };
        Self { provider, app_url, client, clock_offset, server }
    }

    /// The quickstart app (cookie sessions) against the hostile test provider.
    pub async fn start_hostile() -> Self {
        Self::start_hostile_configured(|config| config).await
    }

    /// [`start_hostile`](Self::start_hostile), the configuration changed by `configure`.
    pub async fn start_hostile_configured(
        configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
    ) -> Self {
        // The quickstart's app over the client (cookie sessions, as `quickstart::auth_layer` builds them).
        Self::start_hostile_custom(configure, |client| quickstart::app(auth_layer::AuthLayer::new(client))).await
    }

    /// Serves `router` (an axum app the test wrote) against the hostile test provider.
    pub async fn start_hostile_custom(
        configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
        build: impl FnOnce(AuthClient) -> axum::Router,
    ) -> Self {
        Self::start_hostile_from("ok", configure, build).await
    }

    /// [`start_hostile_custom`](Self::start_hostile_custom), the provider misbehaving by
    /// `scenario` from its first answer (discovery included).
    pub async fn start_hostile_from(
        scenario: &str,
        configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
        build: impl FnOnce(AuthClient) -> axum::Router,
    ) -> Self {
        let (provider, app_url, listener, clock_offset, client) = Self::hostile_discovery(scenario, configure).await;
        let client = client.expect("discovery against the hostile provider");
        let app = build(client.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { provider, app_url, client, clock_offset, server }
    }

    /// The hostile provider started under `scenario` and the outcome of discovering it (no app
    /// served): for the checks discovery itself makes.
    #[allow(clippy::type_complexity)]
    pub async fn hostile_discovery(
        scenario: &str,
        configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
    ) -> (Provider, String, tokio::net::TcpListener, Arc<AtomicU64>, Result<AuthClient, auth_layer::AuthError>) {
        let (port, listener) = bind();
        let app_url = format!("http://127.0.0.1:{port}");
        let provider = Provider::start_hostile_under(&app_url, scenario).await;
        let clock_offset = Arc::new(AtomicU64::new(0));
        let builder = config_builder(&provider, &app_url, TokenEndpointAuth::ClientSecretBasic, clock_offset.clone());
        let config = configure(builder).build().expect("test configuration");
        let client = AuthClient::new(config).await;
        (provider, app_url, listener, clock_offset, client)
    }

    /// The quickstart app over a layer the test builds from the configuration.
    pub async fn start_with_layer<F, Fut>(build: F) -> Self
    where
        F: FnOnce(AuthConfig) -> Fut,
        Fut: std::future::Future<Output = Result<auth_layer::AuthLayer, auth_layer::AuthError>>,
    {
        let (port, listener) = bind();
        let app_url = format!("http://127.0.0.1:{port}");
        let provider = Provider::start(&app_url, &ProviderOptions::default()).await;
        let clock_offset = Arc::new(AtomicU64::new(0));
        let config = config(&provider, &app_url, TokenEndpointAuth::ClientSecretBasic, clock_offset.clone());
        let auth = build(config).await.expect("discovery against the test provider");
        let client = auth.client().clone();
        let app = quickstart::app(auth);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { provider, app_url, client, clock_offset, server }
    }

    /// Serves `router` (an axum app the test wrote) instead of an example, with a client of its own.
    pub async fn start_custom(build: impl FnOnce(AuthClient) -> axum::Router) -> Self {
        Self::start_custom_configured(|config| config, build).await
    }

    /// [`start_custom`](Self::start_custom), the test's configuration changed by `configure`.
    pub async fn start_custom_configured(
        configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
        build: impl FnOnce(AuthClient) -> axum::Router,
    ) -> Self {
        Self::start_custom_with(ProviderOptions::default(), configure, build).await
    }

    /// [`start_custom_configured`](Self::start_custom_configured) against a provider started
    /// with `provider`.
    pub async fn start_custom_with(
        provider: ProviderOptions,
        configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
        build: impl FnOnce(AuthClient) -> axum::Router,
    ) -> Self {
        let (port, listener) = bind();
        let app_url = format!("http://127.0.0.1:{port}");
        let provider = Provider::start(&app_url, &provider).await;
        let clock_offset = Arc::new(AtomicU64::new(0));
        let config =
            configure(config_builder(&provider, &app_url, TokenEndpointAuth::ClientSecretBasic, clock_offset.clone()))
                .build()
                .expect("test configuration");
        let client = AuthClient::new(config).await.expect("discovery against the test provider");
        let app = build(client.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { provider, app_url, client, clock_offset, server }
    }

    /// Serves the router `build` makes behind [`AuthLayer::around`](auth_layer::AuthLayer::around)
    /// (the layer in front of the whole router, not on each route), with a client of its own.
    pub async fn start_around(build: impl FnOnce() -> axum::Router) -> Self {
        let (port, listener) = bind();
        let app_url = format!("http://127.0.0.1:{port}");
        let provider = Provider::start(&app_url, &ProviderOptions::default()).await;
        let clock_offset = Arc::new(AtomicU64::new(0));
        let config = config(&provider, &app_url, TokenEndpointAuth::ClientSecretBasic, clock_offset.clone());
        let client = AuthClient::new(config).await.expect("discovery against the test provider");
        let app = auth_layer::AuthLayer::new(client.clone()).around(build());
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service()).await.unwrap();
        });
        Self { provider, app_url, client, clock_offset, server }
    }

    /// Moves the app's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.clock_offset.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// A URL of the app.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app_url)
    }
}

/// Several instances of the quickstart app, each its own `AuthLayer` with its own caches on its
/// own port, behind one public URL (instance 0's: the provider's redirects and back-channel
/// logouts reach it only), sharing the stores and shared state they are given. Cookies are per
/// host, not per port, so one [`Browser`] is one user whose requests the test spreads over them.
pub struct Fleet {
    /// The provider.
    pub provider: Provider,
    /// The public URL (instance 0).
    pub app_url: String,
    /// Each instance's URL.
    pub instances: Vec<String>,
    clock_offset: Arc<AtomicU64>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

impl Fleet {
    /// `count` instances keeping sessions in `store` and shared state in `shared`.
    pub async fn start(
        count: usize,
        store: quickstart::StoreChoice,
        shared: quickstart::SharedChoice,
        provider: ProviderOptions,
    ) -> Self {
        Self::start_with(count, store, shared, provider, |builder| builder).await
    }

    /// The same, each instance's client builder given to `customize` (the app's hooks).
    pub async fn start_with(
        count: usize,
        store: quickstart::StoreChoice,
        shared: quickstart::SharedChoice,
        provider: ProviderOptions,
        customize: impl Fn(auth_layer::AuthClientBuilder) -> auth_layer::AuthClientBuilder,
    ) -> Self {
        Self::start_configured(count, store, shared, provider, |config| config, customize).await
    }

    /// The same, each instance's configuration changed by `configure` (a cap on sessions, the
    /// sessions routes).
    pub async fn start_configured(
        count: usize,
        store: quickstart::StoreChoice,
        shared: quickstart::SharedChoice,
        provider: ProviderOptions,
        configure: fn(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
        customize: impl Fn(auth_layer::AuthClientBuilder) -> auth_layer::AuthClientBuilder,
    ) -> Self {
        let listeners: Vec<_> = (0..count).map(|_| bind()).collect();
        let app_url = format!("http://127.0.0.1:{}", listeners[0].0);
        let provider = Provider::start(&app_url, &provider).await;
        let clock_offset = Arc::new(AtomicU64::new(0));
        let mut instances = Vec::new();
        let mut servers = Vec::new();
        for (port, listener) in listeners {
            let config = configure(config_builder(
                &provider,
                &app_url,
                TokenEndpointAuth::ClientSecretBasic,
                clock_offset.clone(),
            ))
            .build()
            .expect("test configuration");
            let builder = quickstart::builder_with(config, store.clone(), shared.clone()).await.expect("the stores");
            let client = customize(builder).build().await.expect("discovery");
            let app = quickstart::app(auth_layer::AuthLayer::new(client));
            servers.push(tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            }));
            instances.push(format!("http://127.0.0.1:{port}"));
        }
        Self { provider, app_url, instances, clock_offset, servers }
    }

    /// Moves every instance's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.clock_offset.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// `path` on instance `i`.
    pub fn url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.instances[i % self.instances.len()])
    }
}

/// A backend that counts the reads it serves and passes everything to `inner`: how a test sees
/// the round trips a request costs.
#[derive(Clone, Default)]
pub struct CountingReads<B> {
    inner: B,
    reads: Arc<AtomicU64>,
}

impl<B> CountingReads<B> {
    /// Counts the reads of `inner`.
    pub fn new(inner: B) -> Self {
        Self { inner, reads: Arc::default() }
    }

    /// How many reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// The counter, to read after the backend has moved into a store.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.reads.clone()
    }
}

#[async_trait::async_trait]
impl<B: auth_layer::backend::Backend> auth_layer::backend::Backend for CountingReads<B> {
    async fn get(&self, key: &str) -> Result<Option<bytes::Bytes>, auth_layer::store::StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        value: bytes::Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<(), auth_layer::store::StoreError> {
        self.inner.put(key, value, ttl, tags).await
    }
    async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, auth_layer::store::StoreError> {
        self.inner.update(key, value, ttl, tags).await
    }
    async fn insert(
        &self,
        key: &str,
        value: bytes::Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, auth_layer::store::StoreError> {
        self.inner.insert(key, value, ttl, tags).await
    }
    async fn delete(&self, key: &str) -> Result<(), auth_layer::store::StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_by_tag(&self, tag: &str) -> Result<u64, auth_layer::store::StoreError> {
        self.inner.delete_by_tag(tag).await
    }
    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, auth_layer::store::StoreError> {
        self.inner.keys_by_tag(tag).await
    }
    fn watch(&self, channel: &str) -> Option<auth_layer::backend::Notices> {
        self.inner.watch(channel)
    }
    async fn notify(&self, channel: &str) -> Result<(), auth_layer::store::StoreError> {
        self.inner.notify(channel).await
    }
}

/// The `Cookie` header a browser sends after `ctx`'s response (`None`: nothing was set); the
/// cookies the response removes are not sent.
pub fn cookies_after(ctx: auth_layer::StoreContext) -> Option<String> {
    let mut response = http::HeaderMap::new();
    ctx.apply(&mut response);
    let pairs: Vec<&str> = response
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap())
        .filter(|pair| !pair.ends_with('='))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

/// A listener for an app, on a port no other test was handed.
/// For a test that builds its own layer and app: a provider that knows an app at a loopback URL,
/// the app's configuration, its URL, and the listener to serve it on.
pub async fn provider_for_own_app() -> (Provider, AuthConfig, String, tokio::net::TcpListener) {
    provider_for_own_app_with(ProviderOptions::default(), |config| config).await
}

/// [`provider_for_own_app`] with a provider started with `options` and the configuration
/// changed by `configure` (which may make it invalid for discovery: that is for the test).
pub async fn provider_for_own_app_with(
    options: ProviderOptions,
    configure: impl FnOnce(auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder,
) -> (Provider, AuthConfig, String, tokio::net::TcpListener) {
    provider_for_app_at(options, |config, _| configure(config)).await
}

/// [`provider_for_own_app_with`], `configure` also given the app's URL.
pub async fn provider_for_app_at(
    options: ProviderOptions,
    configure: impl FnOnce(auth_layer::AuthConfigBuilder, &str) -> auth_layer::AuthConfigBuilder,
) -> (Provider, AuthConfig, String, tokio::net::TcpListener) {
    let (port, listener) = bind();
    let app_url = format!("http://127.0.0.1:{port}");
    let provider = Provider::start(&app_url, &options).await;
    let builder =
        config_builder(&provider, &app_url, TokenEndpointAuth::ClientSecretBasic, Arc::new(AtomicU64::new(0)));
    let config = configure(builder, &app_url).build().expect("test configuration");
    (provider, config, app_url, listener)
}

fn bind() -> (u16, tokio::net::TcpListener) {
    let listener = claimed_listener();
    listener.set_nonblocking(true).unwrap();
    (listener.local_addr().unwrap().port(), tokio::net::TcpListener::from_std(listener).unwrap())
}

fn config(provider: &Provider, app_url: &str, auth: TokenEndpointAuth, offset: Arc<AtomicU64>) -> AuthConfig {
    config_builder(provider, app_url, auth, offset).build().expect("test configuration")
}

fn config_builder(
    provider: &Provider,
    app_url: &str,
    auth: TokenEndpointAuth,
    offset: Arc<AtomicU64>,
) -> auth_layer::AuthConfigBuilder {
    AuthConfig::builder()
        .issuer(provider.issuer.clone())
        .client_id("test-app")
        .client_secret(CLIENT_SECRET)
        .secret(SECRET)
        .base_url(app_url)
        .token_endpoint_auth(auth)
        .profile_route(true)
        .access_token_route(true)
        .backchannel_logout_route(true)
        .clock(Clock::from_fn(move || {
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + offset.load(Ordering::SeqCst)
        }))
}

async fn serve_hyper(listener: tokio::net::TcpListener, service: auth_layer::AuthService<hyper_server::Router>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A scripted browser: a cookie jar that honours paths, no automatic redirects.
#[derive(Clone)]
pub struct Browser {
    /// The cookie jar.
    pub jar: Arc<Jar>,
    /// The HTTP client using the jar.
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser with an empty jar.
    pub fn new() -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { jar, http }
    }

    /// A browser that opens a new connection for every request: a test harness's browser that
    /// must not itself trip over connections a relay holds dead.
    pub fn fresh_connections() -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Self { jar, http }
    }

    /// A browser that names itself `user_agent` in every request.
    pub fn with_user_agent(user_agent: &str) -> Self {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(user_agent)
            .build()
            .unwrap();
        Self { jar, http }
    }

    /// Logs in as `user` with the login started at `app_url` and the provider's answer (the
    /// callback, addressed to `app_url`) delivered to `instance` instead, another process of
    /// the same app on the same host: a login that completes on that instance.
    pub async fn login_completed_at(&self, app_url: &str, instance: &str, user: &str) -> Response {
        let callback = self.start_and_authorize(app_url, user, "/auth/login").await;
        let at_instance = format!("{instance}{}", callback.strip_prefix(app_url).expect("a callback to the app"));
        self.get(&at_instance).await
    }

    /// `GET url` as a browser would (accepting HTML).
    pub async fn get(&self, url: &str) -> Response {
        self.http.get(url).header("accept", "text/html,*/*;q=0.8").send().await.unwrap()
    }

    /// The `Cookie` header this browser would send to `url`.
    pub fn cookie_header(&self, url: &str) -> String {
        self.jar.cookies(&Url::parse(url).unwrap()).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
    }

    /// Follows redirects from `response` through the provider's login and consent forms, as
    /// `user`, until a redirect to `stop_prefix` (not followed) is reached; returns that URL.
    pub async fn through_provider(&self, mut response: Response, user: &str, stop_prefix: &str) -> String {
        for _ in 0..20 {
            let url = response.url().clone();
            if response.status().is_redirection() {
                let location = response.headers()["location"].to_str().unwrap();
                let next = url.join(location).unwrap().to_string();
                if next.starts_with(stop_prefix) {
                    return next;
                }
                response = self.get(&next).await;
                continue;
            }
            assert_eq!(response.status(), StatusCode::OK, "unexpected page at {url}");
            let html = response.text().await.unwrap();
            let action = form_action(&html).unwrap_or_else(|| panic!("no form at {url}: {html}"));
            let action = url.join(&action).unwrap();
            let form: Vec<(&str, &str)> = if html.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", user), ("password", "any")]
            } else if html.contains("value=\"consent\"") {
                vec![("prompt", "consent")]
            } else {
                panic!("unknown provider page at {url}: {html}");
            };
            response = self.http.post(action).form(&form).send().await.unwrap();
        }
        panic!("too many redirects through the provider");
    }

    /// Logs in at `app_url` as `user`, returning the callback's response (a redirect to `returnTo`).
    pub async fn login(&self, app_url: &str, user: &str) -> Response {
        let callback = self.start_and_authorize(app_url, user, "/auth/login").await;
        self.get(&callback).await
    }

    /// Starts a login at `login_path` and goes through the provider up to (not including) the callback.
    pub async fn start_and_authorize(&self, app_url: &str, user: &str, login_path: &str) -> String {
        let start = self.get(&format!("{app_url}{login_path}")).await;
        assert_eq!(start.status(), StatusCode::FOUND, "login must redirect to the provider");
        self.through_provider(start, user, &format!("{app_url}/")).await
    }

    /// Completes the provider's end-session form at `end_session_url`; returns where it sends the browser.
    pub async fn confirm_provider_logout(&self, end_session_url: &str) -> String {
        let page = self.get(end_session_url).await;
        let url = page.url().clone();
        assert_eq!(page.status(), StatusCode::OK, "end-session page");
        let html = page.text().await.unwrap();
        let action = url.join(&form_action(&html).expect("logout form")).unwrap();
        let xsrf = between(&html, "name=\"xsrf\" value=\"", "\"").expect("xsrf field");
        let done = self.http.post(action).form(&[("xsrf", xsrf.as_str()), ("logout", "yes")]).send().await.unwrap();
        assert!(done.status().is_redirection(), "provider logout must redirect, got {}", done.status());
        done.headers()["location"].to_str().unwrap().to_owned()
    }
}

fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    between(form, "action=\"", "\"").map(|a| a.replace("&amp;", "&"))
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_owned())
}

/// The multi-tenant example's app on one port under two host names, each a tenant with a test
/// provider of its own: `a` at `http://127.0.0.1:PORT`, `b` at `http://localhost:PORT`.
pub struct Tenants2 {
    /// Tenant A's provider.
    pub a: Provider,
    /// Tenant B's provider.
    pub b: Provider,
    /// Tenant A's URL.
    pub a_url: String,
    /// Tenant B's URL.
    pub b_url: String,
    /// The port both answer on.
    pub port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Tenants2 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Tenants2 {
    /// Starts both providers and the app (`multi_tenant::layer` from an `AUTH_TENANTS` of the
    /// two), sessions in `store`, shared state in `shared`.
    pub async fn start(store: quickstart::StoreChoice, shared: quickstart::SharedChoice) -> Self {
        let (port, listener) = bind();
        let (a_url, b_url) = (format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}"));
        let a = Provider::start(&a_url, &ProviderOptions::default()).await;
        let b = Provider::start(&b_url, &ProviderOptions::default()).await;
        let tenants = serde_json::json!([
            {"host": format!("127.0.0.1:{port}"), "issuer": a.issuer, "client_id": "test-app", "client_secret": CLIENT_SECRET},
            {"host": format!("localhost:{port}"), "issuer": b.issuer, "client_id": "test-app", "client_secret": CLIENT_SECRET},
        ])
        .to_string();
        let lookup = move |name: &str| match name {
            "AUTH_TENANTS" => Some(tenants.clone()),
            "AUTH_SECRET" => Some(SECRET.to_owned()),
            _ => None,
        };
        let specs = multi_tenant::tenants_from(&lookup).expect("AUTH_TENANTS");
        let layer = multi_tenant::layer(&specs, lookup, store, shared).await.expect("both tenants discovered");
        let app = quickstart::app(layer);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { a, b, a_url, b_url, port, server }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        // The system offers a closed probe's port again soon: 2,000 bare probes repeat ports
        // by the hundred on Linux, so this fails without the registry.
        let ports: Vec<u16> = (0..2000).map(|_| free_port()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    }

    #[tokio::test]
    async fn a_provider_exits_once_the_process_that_started_it_is_gone() {
        let app_url = format!("http://127.0.0.1:{}", free_port());
        let mut provider = Provider::start(&app_url, &ProviderOptions::default()).await;
        // What the system does to the pipe when this process dies, by any signal.
        drop(provider.child.stdin.take().expect("the provider's stdin is a pipe we hold"));
        let status = tokio::time::timeout(Duration::from_secs(10), provider.child.wait())
            .await
            .expect("the provider outlived the process that started it")
            .unwrap();
        assert!(status.success(), "{status}");
    }

    #[tokio::test]
    async fn providers_started_at_once_each_serve_their_own_issuer_on_their_own_port() {
        let mut starting = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let app_url = format!("http://127.0.0.1:{}", free_port());
            starting.spawn(async move { Provider::start(&app_url, &ProviderOptions::default()).await });
        }
        let providers = starting.join_all().await;
        let ports: BTreeSet<u16> = providers.iter().map(|p| p.port).collect();
        assert_eq!(ports.len(), providers.len(), "two providers share a port");
        for provider in &providers {
            let discovery: serde_json::Value =
                reqwest::get(format!("{}/.well-known/openid-configuration", provider.issuer))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            assert_eq!(discovery["issuer"], provider.issuer.as_str(), "the provider on this port is not this one");
        }
    }
}
