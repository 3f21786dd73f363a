//! The quickstart app: auth-layer on axum, configured by the environment.
//!
//! `/` is public: logged out, a login button; logged in, the user's name and claims, when the
//! session and the access token expire, a button that refreshes the token, and a logout button.
//! `/private` needs a login. The layer adds `/auth/login`, `/auth/callback`, `/auth/logout`,
//! `/auth/profile`, `/auth/access-token` and `/auth/backchannel-logout`. Beside the app,
//! `/healthz` and `/readyz` for a load balancer; on SIGTERM it drains ([`serve_until`]).

use auth_layer::backend::{PostgresBackend, RedisBackend};
use auth_layer::store::ServerSessionStore;
use auth_layer::{
    AccessTokenOptions, AuthClient, AuthClientBuilder, AuthConfig, AuthConfigBuilder, AuthError, AuthLayer,
    ConfigError, Session, SharedState, User,
};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::Route;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_layer::Layer;
use tower_service::Service;

/// Where the quickstart keeps sessions: `SESSION_STORE=cookie` (the default), `memory`,
/// `redis` (at `REDIS_URL`, default `redis://127.0.0.1:6379`), `postgres` (at `DATABASE_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`) or `sqlite` (the file at
/// `SQLITE_PATH`, default `sessions.sqlite3`: the `sqlite-backend` example's backend) or
/// `redis-cluster` (the nodes at `REDIS_CLUSTER_URLS`, comma-separated).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreChoice {
    /// The whole session sealed in the cookie.
    #[default]
    Cookie,
    /// In this process's memory (moka), only an id in the cookie.
    Memory,
    /// In Redis at this URL, only an id in the cookie.
    Redis(String),
    /// In the Redis Cluster of these nodes, spread over its slots; only an id in the cookie.
    RedisCluster(Vec<String>),
    /// In PostgreSQL at this URL, only an id in the cookie.
    Postgres(String),
    /// In the SQLite file at this path, only an id in the cookie: survives a restart, with
    /// nothing else to run; processes of one machine can share the file.
    Sqlite(String),
}

/// Printed without the password of a database URL: `Debug` is what the start-up line logs.
impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cookie => f.write_str("Cookie"),
            Self::Memory => f.write_str("Memory"),
            Self::Redis(url) => f.debug_tuple("Redis").field(&without_password(url)).finish(),
            Self::RedisCluster(urls) => f
                .debug_tuple("RedisCluster")
                .field(&urls.iter().map(|u| without_password(u)).collect::<Vec<_>>())
                .finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&without_password(url)).finish(),
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
        }
    }
}

/// Printed without the password of a database URL.
impl std::fmt::Debug for SharedChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("Default"),
            Self::Memory => f.write_str("Memory"),
            Self::Redis(url) => f.debug_tuple("Redis").field(&without_password(url)).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&without_password(url)).finish(),
        }
    }
}

/// `url` with any password replaced by `***` (a URL that does not parse is not printed).
fn without_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

impl StoreChoice {
    /// Reads `SESSION_STORE` (and `REDIS_URL` or `DATABASE_URL`); unset means `cookie`.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        match std::env::var("SESSION_STORE").ok().as_deref().map(str::trim) {
            None | Some("") | Some("cookie") => Ok(Self::Cookie),
            Some("memory") => Ok(Self::Memory),
            Some("redis") => Ok(Self::Redis(var("REDIS_URL", "redis://127.0.0.1:6379"))),
            Some("postgres") => Ok(Self::Postgres(var("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))),
            Some("sqlite") => Ok(Self::Sqlite(var("SQLITE_PATH", "sessions.sqlite3"))),
            Some("redis-cluster") => {
                let urls = var("REDIS_CLUSTER_URLS", "");
                let urls: Vec<String> =
                    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
                if urls.is_empty() {
                    return Err(
                        "SESSION_STORE=redis-cluster needs REDIS_CLUSTER_URLS (the nodes, comma-separated)".into()
                    );
                }
                Ok(Self::RedisCluster(urls))
            }
            Some(other) => Err(format!(
                "SESSION_STORE=`{other}`: expected cookie, memory, redis, redis-cluster, postgres or sqlite"
            )),
        }
    }
}

/// Where the quickstart keeps the state its instances share (logout markers of cookie sessions,
/// used logout tokens, refresh leases): `SHARED_STATE=memory`, `redis` (at `REDIS_URL`) or
/// `postgres` (at `DATABASE_URL`). Unset: the session store's own backend (Redis or
/// PostgreSQL), or this process's memory for the cookie and memory stores: right for one
/// instance; run several behind a load balancer with `redis` or `postgres`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum SharedChoice {
    /// As the session store says.
    #[default]
    Default,
    /// This process's memory: one instance only.
    Memory,
    /// Redis at this URL.
    Redis(String),
    /// PostgreSQL at this URL.
    Postgres(String),
}

impl SharedChoice {
    /// Reads `SHARED_STATE` (and `REDIS_URL` or `DATABASE_URL`); unset means the default.
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables from `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |name: &str, default: &str| lookup(name).unwrap_or_else(|| default.to_owned());
        match lookup("SHARED_STATE").as_deref().map(str::trim) {
            None | Some("") => Ok(Self::Default),
            Some("memory") => Ok(Self::Memory),
            Some("redis") => Ok(Self::Redis(var("REDIS_URL", "redis://127.0.0.1:6379"))),
            Some("postgres") => Ok(Self::Postgres(var("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))),
            Some(other) => Err(format!("SHARED_STATE=`{other}`: expected memory, redis or postgres")),
        }
    }

    async fn state(&self) -> Result<Option<SharedState>, AuthError> {
        Ok(match self {
            Self::Default => None,
            Self::Memory => Some(SharedState::in_memory()),
            Self::Redis(url) => Some(SharedState::in_backend(RedisBackend::connect(url).await?)),
            Self::Postgres(url) => Some(SharedState::in_backend(PostgresBackend::connect(url).await?)),
        })
    }
}

/// The quickstart's configuration: [`AuthConfig::from_env`], with `/auth/profile`,
/// `/auth/access-token` and `/auth/backchannel-logout` on.
pub fn config_from_env() -> Result<AuthConfig, ConfigError> {
    AuthConfigBuilder::from_env()?.profile_route(true).access_token_route(true).backchannel_logout_route(true).build()
}

/// The auth layer for `config`, sessions in `store`, shared state where the store says.
pub async fn auth_layer(config: AuthConfig, store: StoreChoice) -> Result<AuthLayer, AuthError> {
    auth_layer_with(config, store, SharedChoice::Default).await
}

/// The auth layer for `config`, sessions in `store`, shared state in `shared`.
pub async fn auth_layer_with(
    config: AuthConfig,
    store: StoreChoice,
    shared: SharedChoice,
) -> Result<AuthLayer, AuthError> {
    Ok(AuthLayer::new(client_with(config, store, shared).await?))
}

/// The client for `config` (its provider discovered), sessions in `store`, shared state in
/// `shared`.
pub async fn client_with(
    config: AuthConfig,
    store: StoreChoice,
    shared: SharedChoice,
) -> Result<AuthClient, AuthError> {
    builder_with(config, store, shared).await?.build().await
}

/// The client builder for `config` with sessions in `store` and shared state in `shared`, for
/// an app to add its hooks to.
pub async fn builder_with(
    config: AuthConfig,
    store: StoreChoice,
    shared: SharedChoice,
) -> Result<AuthClientBuilder, AuthError> {
    let mut builder = AuthClient::builder(config.clone());
    if let Some(state) = shared.state().await? {
        builder = builder.with_shared_state(state);
    }
    Ok(match store {
        StoreChoice::Cookie => builder,
        StoreChoice::Memory => builder.with_server_sessions(ServerSessionStore::in_memory(&config)),
        StoreChoice::Redis(url) => {
            builder.with_server_sessions(ServerSessionStore::new(RedisBackend::connect(&url).await?, &config))
        }
        StoreChoice::RedisCluster(urls) => {
            builder.with_server_sessions(ServerSessionStore::new(RedisBackend::connect_cluster(&urls).await?, &config))
        }
        StoreChoice::Postgres(url) => {
            builder.with_server_sessions(ServerSessionStore::new(PostgresBackend::connect(&url).await?, &config))
        }
        StoreChoice::Sqlite(path) => {
            builder.with_server_sessions(ServerSessionStore::new(sqlite_backend::SqliteBackend::open(&path)?, &config))
        }
    })
}

/// Where to listen: `LISTEN_ADDR` (`host:port`, e.g. `0.0.0.0:8080` or `localhost:8080`), else `PORT` on all
/// interfaces, else the host and port of the public `base` URL (a local run). Behind a load
/// balancer or in a container the public URL is not an address of this machine: set one of the
/// first two.
pub fn listen_addr(base: &url::Url, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    if let Some(addr) = get("LISTEN_ADDR") {
        if let Ok(socket) = addr.parse::<std::net::SocketAddr>() {
            return Ok(socket.to_string());
        }
        // A host name (`localhost:8080`), resolved when the listener binds.
        return match addr.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && !host.contains([':', '/', ' ']) && port.parse::<u16>().is_ok() =>
            {
                Ok(addr)
            }
            _ => Err(format!("LISTEN_ADDR=`{addr}`: expected host:port, e.g. 0.0.0.0:8080 or localhost:8080")),
        };
    }
    if let Some(port) = get("PORT") {
        let port: u16 = port.parse().map_err(|_| format!("PORT=`{port}`: expected a port number"))?;
        return Ok(format!("0.0.0.0:{port}"));
    }
    let host = base.host_str().unwrap_or("127.0.0.1");
    Ok(format!("{host}:{}", base.port_or_known_default().unwrap_or(3000)))
}

/// Serves the app until SIGTERM or Ctrl-C, then drains ([`serve_until`]): sessions in `store`,
/// shared state in `shared`, on [`listen_addr`] from the environment, with `/healthz` and
/// `/readyz` ([`health_routes`]) beside the app.
pub async fn serve(
    config: AuthConfig,
    store: StoreChoice,
    shared: SharedChoice,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let base = config.base_url().clone();
    let addr = listen_addr(&base, |name| std::env::var(name).ok())?;
    if let Some(metrics_addr) = std::env::var("METRICS_ADDR").ok().filter(|a| !a.trim().is_empty()) {
        let handle = install_metrics()?;
        let listener = tokio::net::TcpListener::bind(metrics_addr.trim()).await?;
        tracing::info!(addr = %metrics_addr, "metrics in Prometheus' text format at /metrics");
        tokio::spawn(serve_metrics(listener, handle));
    }
    let drain = Drain::from_lookup(|name| std::env::var(name).ok())?;
    let auth = auth_layer_with(config, store.clone(), shared).await?;
    let client = auth.client().clone();
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    tracing::info!(?store, %addr, "listening; open {base}");
    serve_until(listener, app(auth), client, drain, shutdown_signal()).await?;
    Ok(())
}

/// How [`serve_until`] stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// How long `/readyz` answers 503 before the listener closes, so that the load balancer
    /// stops sending new requests first (`DRAIN_DELAY_SECS`, default 0; a few seconds behind
    /// a balancer that checks readiness every few seconds).
    pub delay: Duration,
    /// The longest in-flight requests get to finish once the listener is closed
    /// (`DRAIN_TIMEOUT_SECS`, default 30); whatever still runs then is dropped.
    pub timeout: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self { delay: Duration::ZERO, timeout: Duration::from_secs(30) }
    }
}

impl Drain {
    /// `DRAIN_DELAY_SECS` and `DRAIN_TIMEOUT_SECS` from `lookup`; a bad value is an error
    /// naming it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let seconds = |name: &str, default: Duration| match lookup(name).map(|v| v.trim().to_owned()) {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{name}=`{v}`: expected seconds, from 0 to 3600")),
        };
        let default = Self::default();
        Ok(Self {
            delay: seconds("DRAIN_DELAY_SECS", default.delay)?,
            timeout: seconds("DRAIN_TIMEOUT_SECS", default.timeout)?,
        })
    }
}

/// Completes on SIGTERM (what an orchestrator sends to stop a process) or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM; Ctrl-C only");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// `GET /healthz` (liveness: 200 while the process answers at all) and `GET /readyz`
/// (readiness: [`AuthClient::readiness`] as JSON, 200 when ready, else 503; 503 at once when
/// `draining` is set). Outside the auth layer: a balancer's probe needs no session and may use
/// any host.
pub fn health_routes(client: AuthClient, draining: Arc<AtomicBool>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let (client, draining) = (client.clone(), draining.clone());
            async move {
                let json = [("content-type", "application/json"), ("cache-control", "no-store")];
                if draining.load(Ordering::Acquire) {
                    let body = r#"{"ready":false,"draining":true}"#.to_owned();
                    return (StatusCode::SERVICE_UNAVAILABLE, json, body);
                }
                let readiness = client.readiness().await;
                let status = if readiness.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                (status, json, serde_json::to_string(&readiness).unwrap_or_default())
            }
        }),
    )
}

/// Serves `router` and [`health_routes`] on `listener` (with each peer's address, for
/// `AUTH_TRUSTED_PROXIES`) until `shutdown` completes, then drains: `/readyz` answers 503 at
/// once; after `drain.delay` the listener closes (no new connections; idle ones are closed);
/// requests in flight finish, for `drain.timeout` at most, and release what they hold (a
/// refresh lease is released by the request that took it); then the app, its client and
/// their notice listeners are dropped, so each listener stops within a second.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    router: Router,
    client: AuthClient,
    drain: Drain,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let draining = Arc::new(AtomicBool::new(false));
    // In front of the app, which gets every other request as it is (its layer answers the
    // auth routes, which are no routes of the app's router).
    let router = health_routes(client, draining.clone()).fallback_service(router);
    let close = Arc::new(tokio::sync::Notify::new());
    let closing = close.clone();
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, service).with_graceful_shutdown(async move { closing.notified().await });
    let mut server = tokio::spawn(std::future::IntoFuture::into_future(server));
    tokio::select! {
        ended = &mut server => return ended.map_err(std::io::Error::other)?,
        () = shutdown => {}
    }
    draining.store(true, Ordering::Release);
    tracing::info!(
        delay_ms = drain.delay.as_millis() as u64,
        "stopping: /readyz answers 503, then the listener closes"
    );
    tokio::time::sleep(drain.delay).await;
    close.notify_one();
    match tokio::time::timeout(drain.timeout, &mut server).await {
        Ok(ended) => {
            ended.map_err(std::io::Error::other)??;
            tracing::info!("drained: requests in flight finished, listener closed");
        }
        Err(_) => {
            server.abort();
            tracing::warn!(
                timeout_s = drain.timeout.as_secs_f64(),
                "requests still in flight after the drain timeout were dropped"
            );
        }
    }
    Ok(())
}

/// Installs a Prometheus recorder for the process's metrics and describes auth-layer's
/// ([`auth_layer::METRICS`]); the handle renders them. Once per process.
pub fn install_metrics() -> Result<PrometheusHandle, Box<dyn std::error::Error + Send + Sync>> {
    // Prometheus' naming (`_total`, `_seconds`) and histograms, which add up over a fleet's
    // instances (summaries' quantiles do not).
    let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets(&buckets)?
        .install_recorder()?;
    auth_layer::describe_metrics();
    Ok(handle)
}

/// Serves `GET /metrics` (Prometheus' text format) on `listener`: the address an operator's
/// scraper reaches, apart from the app's (`METRICS_ADDR`, off by default).
pub async fn serve_metrics(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], handle.render()) }
        }),
    );
    if let Err(err) = axum::serve(listener, router).await {
        tracing::error!(%err, "the metrics listener stopped");
    }
}

/// How the log is written: `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`LOG_FORMAT=text`, the default).
    Text,
    /// One JSON object per line (`LOG_FORMAT=json`): `timestamp`, `level`, `target`, the
    /// event's `fields`, and the `span` and `spans` it happened in with their fields, as a log
    /// collector indexes them.
    Json,
}

/// The log's format and whether it is coloured, from `LOG_FORMAT` and `NO_COLOR` in `lookup`:
/// colour codes only when `terminal` (standard error is one) and `NO_COLOR` is unset, never in
/// a file or a container's log collector.
pub fn log_settings(lookup: impl Fn(&str) -> Option<String>, terminal: bool) -> Result<(LogFormat, bool), String> {
    let format = match lookup("LOG_FORMAT").as_deref().map(str::trim) {
        None | Some("" | "text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => return Err(format!("LOG_FORMAT is invalid: `{other}`: expected text or json")),
    };
    let no_color = lookup("NO_COLOR").is_some_and(|v| !v.is_empty());
    Ok((format, terminal && !no_color && format == LogFormat::Text))
}

/// A subscriber writing `format` to `writer`, coloured when `ansi`, filtered by `filter`
/// (`RUST_LOG`'s syntax).
pub fn log_subscriber<W>(
    format: LogFormat,
    ansi: bool,
    filter: &str,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    let filter = tracing_subscriber::EnvFilter::new(filter);
    Box::new(tracing_subscriber::registry().with(filter).with(log_layer(format, ansi, writer)))
}

/// The log's layer: `format` to `writer`, coloured when `ansi`.
fn log_layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(layer),
        LogFormat::Json => Box::new(layer.json().with_current_span(true).with_span_list(true)),
    }
}

/// What [`init_logging`] set up that lives as long as the app: with the `otlp` feature, the
/// span exporter, which sends what it holds when this is dropped. Keep it in `main`.
#[must_use = "dropping it stops the span exporter"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("the span exporter did not shut down cleanly: {err}");
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`), as `LOG_FORMAT` says, in
/// colour only on a terminal ([`log_settings`]); with the `otlp` feature, also exports the
/// spans over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set ([`otlp`]). Call it in `main`,
/// within the Tokio runtime, and keep what it returns until the app ends.
pub fn init_logging() -> Result<Telemetry, Box<dyn std::error::Error + Send + Sync>> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    let (format, ansi) = log_settings(|name| std::env::var(name).ok(), std::io::stderr().is_terminal())?;
    let filter = std::env::var("RUST_LOG").ok().filter(|f| !f.trim().is_empty()).unwrap_or_else(|| "info".into());
    let registry = tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new(&filter)).with(log_layer(
        format,
        ansi,
        std::io::stderr,
    ));
    #[cfg(feature = "otlp")]
    {
        let provider = otlp::tracer_provider()?;
        let layer = provider.as_ref().map(otlp::layer);
        tracing::subscriber::set_global_default(registry.with(layer))?;
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        tracing::subscriber::set_global_default(registry)?;
        Ok(Telemetry {})
    }
}

/// Spans exported over OTLP (feature `otlp`, off by default), as OpenTelemetry's environment
/// variables say: on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is set (the latter gets `/v1/traces` appended) and neither `OTEL_SDK_DISABLED=true` nor
/// `OTEL_TRACES_EXPORTER=none`; `OTEL_EXPORTER_OTLP_HEADERS` and `_TIMEOUT`, `OTEL_SERVICE_NAME`
/// and `OTEL_RESOURCE_ATTRIBUTES` as the SDK reads them. The protocol is `http/protobuf`
/// (`OTEL_EXPORTER_OTLP_PROTOCOL` may say so; another is refused). Spans pass the same
/// `RUST_LOG` filter as the log: auth-layer's store operations are `DEBUG` spans.
#[cfg(feature = "otlp")]
pub mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// The exporter's tracer provider, when the process's environment turns export on (the
    /// SDK reads the rest of it there too). Within the Tokio runtime: the exporter's batches
    /// are sent by a task of it.
    pub fn tracer_provider() -> Result<Option<SdkTracerProvider>, Box<dyn std::error::Error + Send + Sync>> {
        let get = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let disabled = get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || get("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        if endpoint.is_none() || disabled {
            return Ok(None);
        }
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(protocol) = get(name).filter(|p| p != "http/protobuf") {
                return Err(format!("{name}=`{protocol}`: this build exports http/protobuf only").into());
            }
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
        let batches = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let resource = opentelemetry_sdk::Resource::builder().build();
        Ok(Some(SdkTracerProvider::builder().with_span_processor(batches).with_resource(resource).build()))
    }

    /// The layer that hands `tracing`'s spans to `provider`.
    pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer().with_tracer(provider.tracer("auth-layer"))
    }
}

/// The app's routes with `auth` stacked on them: an [`AuthLayer`] (one provider) or a
/// [`TenantLayer`](auth_layer::TenantLayer) (several).
pub fn app<L>(auth: L) -> Router
where
    L: Layer<Route> + Clone + Send + Sync + 'static,
    L::Service: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    Router::new()
        .route("/", get(home))
        .route("/private", get(private))
        .route("/refresh-token", post(refresh_token))
        .layer(auth)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The pages' stylesheet: a small app's look, no framework.
const STYLE: &str = "
  body { font-family: system-ui, sans-serif; background: #f4f5f7; color: #1d2330; margin: 0; }
  header { background: #1d2330; color: #fff; padding: 0.9rem 2rem; font-weight: 600; }
  main { max-width: 44rem; margin: 2rem auto; background: #fff; border-radius: 10px; padding: 1.5rem 2rem;
         box-shadow: 0 1px 3px rgba(0, 0, 0, 0.12); }
  h1 { font-size: 1.5rem; margin-top: 0; }
  a, button { font: inherit; }
  a#login, a#signup, button { display: inline-block; padding: 0.5rem 1rem; border-radius: 6px; border: 0;
         text-decoration: none; cursor: pointer; margin-right: 0.5rem; }
  a#login, button { background: #3d5afe; color: #fff; }
  a#signup { background: #e8ebff; color: #3d5afe; }
  button#logout { background: #e5484d; }
  form { display: inline-block; margin: 0.3rem 0; }
  pre { background: #f4f5f7; padding: 0.8rem; border-radius: 6px; overflow-x: auto; font-size: 0.85rem; }
";

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>auth-layer quickstart</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
         <body><header>auth-layer quickstart</header><main>{body}</main></body></html>"
    ))
}

/// "in 3 h 59 min (2026-11-27 18:02:11 UTC)" for a Unix time.
fn when(at: u64, now: u64) -> String {
    let left = at.saturating_sub(now);
    let (days, hours, minutes) = (left / 86_400, left % 86_400 / 3_600, left % 3_600 / 60);
    let span = if days > 0 { format!("{days} d {hours} h") } else { format!("{hours} h {minutes} min") };
    format!("in {span} (Unix time {at})")
}

async fn home(session: Session, headers: HeaderMap) -> Response {
    let data = match session.data().await {
        Ok(data) => data,
        Err(err) => return err.to_response(&headers).map(axum::body::Body::new).into_response(),
    };
    let Some(data) = data else {
        return page(
            "<h1>auth-layer quickstart</h1><p id=\"status\">Logged out</p>\
             <p><a id=\"login\" href=\"/auth/login\">Log in</a> \
             <a id=\"signup\" href=\"/auth/login?screen_hint=signup\">Sign up</a></p>",
        )
        .into_response();
    };
    let client = session.client();
    let now = client.config().clock().now();
    let token = data
        .token_sets
        .first()
        .map(|t| t.expires_at.map_or_else(|| "no expiry given".to_owned(), |at| when(at, now)))
        .unwrap_or_else(|| "none".to_owned());
    let claims = serde_json::to_string_pretty(data.user.claims()).unwrap_or_default();
    page(&format!(
        "<h1>auth-layer quickstart</h1>\
         <p id=\"status\">Logged in as <strong id=\"name\">{name}</strong></p>\
         <p>Session ends <span id=\"session-expiry\">{session}</span></p>\
         <p>Access token expires <span id=\"token-expiry\">{token}</span></p>\
         <form method=\"post\" action=\"/refresh-token\"><button id=\"refresh\" type=\"submit\">Refresh the access token</button></form>\
         <h2>Claims</h2><pre id=\"claims\">{claims}</pre>\
         <p><a href=\"/private\">Private page</a></p>\
         <form method=\"post\" action=\"/auth/logout\"><button id=\"logout\" type=\"submit\">Log out</button></form>",
        name = escape(data.user.name().unwrap_or(data.user.sub())),
        session = escape(&when(client.session_expires_at(data), now)),
        token = escape(&token),
        claims = escape(&claims),
    ))
    .into_response()
}

/// Forces a refresh of the access token, then back home (the new session cookie is set by the layer).
async fn refresh_token(session: Session, headers: HeaderMap) -> Response {
    match session.access_token(AccessTokenOptions::default().force_refresh()).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(err) => err.to_response(&headers).map(axum::body::Body::new).into_response(),
    }
}

async fn private(user: User) -> Html<String> {
    let claims = serde_json::to_string_pretty(user.claims()).unwrap_or_default();
    page(&format!(
        "<h1>Private</h1><p id=\"sub\">{}</p><pre id=\"claims\">{}</pre><p><a href=\"/auth/logout\">Log out</a></p>",
        escape(user.sub()),
        escape(&claims)
    ))
}

#[cfg(test)]
mod tests {
    use super::{SharedChoice, StoreChoice, listen_addr};

    #[test]
    fn the_start_up_line_prints_database_urls_without_their_passwords() {
        let printed = [
            format!("{:?}", StoreChoice::Postgres("postgres://app:hunter2@db.internal:5432/app".into())),
            format!("{:?}", StoreChoice::Redis("rediss://:hunter2@cache.internal:6380".into())),
            format!("{:?}", SharedChoice::Postgres("postgres://app:hunter2@db.internal/app".into())),
            format!("{:?}", SharedChoice::Redis("redis://default:hunter2@cache.internal".into())),
        ];
        for text in &printed {
            assert!(!text.contains("hunter2") && text.contains(".internal"), "{text}");
        }
        assert_eq!(format!("{:?}", StoreChoice::Sqlite("s.db".into())), "Sqlite(\"s.db\")");
    }

    #[test]
    fn shared_state_is_read_from_shared_state_with_the_backends_urls() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(SharedChoice::from_lookup(env(&[])).unwrap(), SharedChoice::Default);
        assert_eq!(SharedChoice::from_lookup(env(&[("SHARED_STATE", "memory")])).unwrap(), SharedChoice::Memory);
        assert_eq!(
            SharedChoice::from_lookup(env(&[("SHARED_STATE", "redis"), ("REDIS_URL", "redis://r:1")])).unwrap(),
            SharedChoice::Redis("redis://r:1".into())
        );
        assert_eq!(
            SharedChoice::from_lookup(env(&[("SHARED_STATE", "postgres")])).unwrap(),
            SharedChoice::Postgres("postgres://postgres@127.0.0.1:5432/postgres".into())
        );
        assert!(SharedChoice::from_lookup(env(&[("SHARED_STATE", "etcd")])).unwrap_err().contains("SHARED_STATE"));
    }

    #[test]
    fn the_listen_address_is_apart_from_the_public_url() {
        let public: url::Url = "https://app.example.com".parse().unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(listen_addr(&public, env(&[("LISTEN_ADDR", "0.0.0.0:8080")])).unwrap(), "0.0.0.0:8080");
        assert_eq!(listen_addr(&public, env(&[("LISTEN_ADDR", "[::1]:9000"), ("PORT", "1")])).unwrap(), "[::1]:9000");
        assert_eq!(listen_addr(&public, env(&[("PORT", "8081")])).unwrap(), "0.0.0.0:8081");
        assert_eq!(listen_addr(&public, env(&[])).unwrap(), "app.example.com:443", "a local run: the URL's own");
        let local: url::Url = "http://127.0.0.1:3000".parse().unwrap();
        assert_eq!(listen_addr(&local, env(&[])).unwrap(), "127.0.0.1:3000");
        assert!(listen_addr(&public, env(&[("LISTEN_ADDR", "app.example.com")])).unwrap_err().contains("LISTEN_ADDR"));
        assert_eq!(listen_addr(&public, env(&[("LISTEN_ADDR", "localhost:8080")])).unwrap(), "localhost:8080");
        for bad in ["localhost:http", ":8080", "local host:80", "localhost:99999"] {
            let lookup = move |name: &str| (name == "LISTEN_ADDR").then(|| bad.to_owned());
            assert!(listen_addr(&public, lookup).is_err(), "{bad}");
        }
        assert!(listen_addr(&public, env(&[("PORT", "http")])).unwrap_err().contains("PORT"));
    }
}
