//! `loadbench MODE`: one app, served on `PORT` (default 3100), with the same three routes in every
//! mode, for `scripts/loadbench` to load with `wrk`:
//!
//! - `GET /mint`: a `Set-Cookie` of a fresh session for the test user (a bench-only shortcut:
//!   the session is written through the store's public API, no login happens);
//! - `GET /me`: the session's `sub` (`bare`: a constant);
//! - `GET /public`: a constant; never touches the session.
//!
//! Modes: `bare` (axum alone), `cookie`, `memory` and `redis` (auth-layer with its cookie,
//! in-memory and Redis stores), `cookie-small` (the cookie store holding the session without its
//! access token), `cookie-shared` (the cookie store with its logout markers in Redis, as a fleet
//! runs it), `cookie-shared-around` (`cookie-shared` with the layer in front of the whole router,
//! [`AuthLayer::around`], instead of on each route by `Router::layer`), `redis-cached` (the Redis store with client-side caching), `tower-sessions`
//! (tower-sessions 0.15 with its `MemoryStore`) and `tower-sessions-redis` (tower-sessions 0.14
//! with `tower-sessions-redis-store`, the newest Redis store it has). Every other session holds
//! the same data: auth-layer's [`SessionData`] of a test user with realistic tokens.
//!
//! `cookie-par` is `cookie` with pushed authorization requests: its `GET /auth/login` posts to
//! the provider before it redirects, the route `scripts/frozenbench` loads beside `/me` while
//! the provider runs and while it is frozen.
//!
//! The auth-layer modes start the test provider (`tests/idp`, installed by `npm ci`) for
//! discovery; no request of `scripts/loadbench` reaches it. The provider's process id is
//! printed (`provider pid N`) for a script that stops it.

use std::net::SocketAddr;
use std::sync::Arc;

use auth_layer::axum::AuthRouter;
use auth_layer::backend::{ClientCache, RedisBackend};
use auth_layer::store::{CookieSessionStore, ServerSessionStore, SessionStore, StoreContext};
use auth_layer::{AuthClient, AuthConfig, AuthLayer, Session, SessionData, SharedState};
use auth_layer_benches::test_session;
use auth_layer_tests::{CLIENT_SECRET, Provider, ProviderOptions, SECRET};
use axum::Router;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    // LOADBENCH_METRICS=prometheus: the quickstart's Prometheus recorder installed, to measure
    // what recording costs (without it, every metric call is a no-op).
    if std::env::var("LOADBENCH_METRICS").is_ok_and(|v| v == "prometheus") {
        quickstart::install_metrics().expect("a metrics recorder");
    }
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3100);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let app_url = format!("http://{addr}");
    // Kept alive for as long as the app serves.
    let mut provider = None;
    let app = match mode.as_str() {
        "bare" => App::Layered(bare()),
        "cookie"
        | "cookie-par"
        | "cookie-small"
        | "cookie-shared"
        | "cookie-shared-around"
        | "memory"
        | "redis"
        | "redis-cached"
        | "redis-cluster"
        | "redis-cluster-one-slot" => {
            let started = Provider::start(&app_url, &ProviderOptions::default()).await;
            if let Some(pid) = started.pid() {
                eprintln!("provider pid {pid}");
            }
            let app = auth_layer_app(&mode, config(&started.issuer, &app_url, mode == "cookie-par")).await;
            provider = Some(started);
            app
        }
        "tower-sessions" => App::Layered(peer::memory()),
        "tower-sessions-redis" => App::Layered(peer::redis().await),
        other => {
            eprintln!(
                "usage: loadbench MODE (bare|cookie|cookie-par|cookie-small|cookie-shared|cookie-shared-around|memory|redis|redis-cached|\
                 redis-cluster|redis-cluster-one-slot|\
                 tower-sessions|tower-sessions-redis), not `{other}`"
            );
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(addr).await.expect("the port is free");
    eprintln!("loadbench {mode} on {app_url}");
    match app {
        App::Layered(router) => axum::serve(listener, router).await.expect("serve"),
        App::Around(service) => axum::serve(listener, service.into_make_service()).await.expect("serve"),
    }
    drop(provider);
}

/// A mode's app: a router (any layer on it), or auth-layer around a router.
enum App {
    Layered(Router),
    Around(AuthRouter),
}

fn config(issuer: &str, app_url: &str, pushed_authorization: bool) -> AuthConfig {
    let builder = AuthConfig::builder()
        .issuer(issuer)
        .client_id("test-app")
        .client_secret(CLIENT_SECRET)
        .secret(SECRET)
        .base_url(app_url);
    let builder = if pushed_authorization { builder.pushed_authorization_requests(true) } else { builder };
    builder.build().expect("bench configuration")
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The routes every mode serves; `/me` and `/mint` differ by mode.
fn routes(me: MethodRouter, mint: MethodRouter) -> Router {
    Router::new().route("/public", get(|| async { "public" })).route("/me", me).route("/mint", mint)
}

fn bare() -> Router {
    async fn me() -> &'static str {
        "bench-user"
    }
    async fn mint() -> impl IntoResponse {
        // An opaque value the size of a session id, as a stateful store would set.
        let mut headers = HeaderMap::new();
        headers
            .insert(SET_COOKIE, HeaderValue::from_static("bare=0123456789abcdefghijklmnopqrstuvwxyzABCDEFG; Path=/"));
        headers
    }
    routes(get(me), get(mint))
}

async fn auth_layer_app(mode: &str, config: AuthConfig) -> App {
    // Each store with the shared state it names, as `with_server_sessions` and
    // `with_cookie_sessions` would take it.
    fn paired<S: SessionStore>(store: S, state: SharedState) -> (Arc<dyn SessionStore>, SharedState) {
        (Arc::new(store), state)
    }
    let (store, state) = match mode {
        "cookie" | "cookie-par" | "cookie-small" => paired(CookieSessionStore::new(&config), SharedState::in_memory()),
        // The cookie store of a fleet: logout markers in Redis, which pushes notices of new ones.
        "cookie-shared" | "cookie-shared-around" => {
            let backend = RedisBackend::connect(&redis_url()).await.expect("Redis at REDIS_URL");
            let store = CookieSessionStore::new(&config).with_marker_backend(backend);
            let state = store.shared_state();
            paired(store, state)
        }
        "memory" => paired(ServerSessionStore::in_memory(&config), SharedState::in_memory()),
        "redis-cached" => {
            let cache = ClientCache::new(std::num::NonZeroUsize::new(100_000).expect("not zero"));
            let backend = RedisBackend::connect_with_client_cache(&redis_url(), cache).await.expect("Redis (RESP3)");
            let store = ServerSessionStore::new(backend, &config);
            let state = store.shared_state();
            paired(store, state)
        }
        // A Redis Cluster (the nodes at REDIS_CLUSTER_URLS): sessions spread over its slots, or
        // every key under one hash tag as earlier versions wrote them.
        "redis-cluster" | "redis-cluster-one-slot" => {
            let urls = std::env::var("REDIS_CLUSTER_URLS").expect("REDIS_CLUSTER_URLS, the nodes, comma-separated");
            let urls: Vec<&str> = urls.split(',').collect();
            let backend = RedisBackend::connect_cluster(&urls).await.expect("the cluster at REDIS_CLUSTER_URLS");
            let backend = if mode == "redis-cluster-one-slot" { backend.with_one_slot() } else { backend };
            let store = ServerSessionStore::new(backend, &config);
            let state = store.shared_state();
            paired(store, state)
        }
        _ => {
            let backend = RedisBackend::connect(&redis_url()).await.expect("Redis at REDIS_URL");
            let store = ServerSessionStore::new(backend, &config);
            let state = store.shared_state();
            paired(store, state)
        }
    };
    let client = AuthClient::builder(config).with_session_store(store.clone()).with_shared_state(state);
    let layer = AuthLayer::new(client.build().await.expect("discovery"));
    async fn me(session: Session) -> Result<String, StatusCode> {
        match session.user().await {
            Ok(Some(user)) => Ok(user.sub().to_owned()),
            Ok(None) => Err(StatusCode::UNAUTHORIZED),
            Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
        }
    }
    // `cookie-small`: the same user and ID token, without an access token (an app that only
    // logs people in), for a cookie about the size of issue 7's reference (1.6-2 KB).
    let session = if mode == "cookie-small" {
        let mut session = test_session();
        session.token_sets.clear();
        session
    } else {
        test_session()
    };
    // The cluster modes mint a new session each time, which the cluster bench sends in turn.
    let fresh_ids = mode.starts_with("redis-cluster");
    let mint = move || {
        let store = store.clone();
        let mut session = session.clone();
        async move {
            if fresh_ids {
                // A session of its own per mint (a new id, so a new key): many users' sessions.
                let mut fresh = SessionData::new(session.user.clone(), session.id_token.clone(), session.created_at);
                fresh.refresh_token = session.refresh_token.clone();
                fresh.token_sets = session.token_sets.clone();
                fresh.touched_at = session.touched_at;
                session = fresh;
            }
            let mut ctx = StoreContext::default();
            store.set(&mut ctx, &session).await.expect("store the bench session");
            let mut headers = HeaderMap::new();
            ctx.apply(&mut headers);
            headers
        }
    };
    let router = routes(get(me), get(mint));
    if mode == "cookie-shared-around" { App::Around(layer.around(router)) } else { App::Layered(router.layer(layer)) }
}

mod peer {
    //! The peer: tower-sessions, holding the same session data.

    use super::*;

    const KEY: &str = "session";

    pub fn memory() -> Router {
        use tower_sessions::{MemoryStore, Session, SessionManagerLayer};
        async fn me(session: Session) -> Result<String, StatusCode> {
            match session.get::<SessionData>(KEY).await {
                Ok(Some(data)) => Ok(data.sub().to_owned()),
                Ok(None) => Err(StatusCode::UNAUTHORIZED),
                Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        async fn mint(session: Session) -> StatusCode {
            session.insert(KEY, test_session()).await.expect("store the bench session");
            StatusCode::OK
        }
        routes(get(me), get(mint)).layer(SessionManagerLayer::new(MemoryStore::default()).with_secure(false))
    }

    pub async fn redis() -> Router {
        use tower_sessions_014::{Session, SessionManagerLayer};
        use tower_sessions_redis_store::fred::prelude::*;
        async fn me(session: Session) -> Result<String, StatusCode> {
            match session.get::<SessionData>(KEY).await {
                Ok(Some(data)) => Ok(data.sub().to_owned()),
                Ok(None) => Err(StatusCode::UNAUTHORIZED),
                Err(_) => Err(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        async fn mint(session: Session) -> StatusCode {
            session.insert(KEY, test_session()).await.expect("store the bench session");
            StatusCode::OK
        }
        let config = Config::from_url(&super::redis_url()).expect("REDIS_URL");
        // One connection: faster for the peer here than the 6 of its README (2026-11-30, three
        // runs of 5 s each: about 40,500 req/s with 1, 34,800 with 6).
        let pool = Pool::new(config, None, None, None, 1).expect("fred pool");
        pool.init().await.expect("Redis at REDIS_URL");
        let store = tower_sessions_redis_store::RedisStore::new(pool);
        routes(get(me), get(mint)).layer(SessionManagerLayer::new(store).with_secure(false))
    }
}
