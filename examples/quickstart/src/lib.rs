//! The quickstart app: auth-layer on axum, configured by the environment.
//!
//! `/` is public and says whether one is logged in; `/private` needs a login; the layer adds
//! `/auth/login`, `/auth/callback`, `/auth/logout` and `/auth/profile`.

use auth_layer::backend::{PostgresBackend, RedisBackend};
use auth_layer::store::ServerStateStore;
use auth_layer::{AuthConfig, AuthError, AuthLayer, User};
use axum::Router;
use axum::response::Html;
use axum::routing::get;

/// Where the quickstart keeps sessions: `SESSION_STORE=cookie` (the default), `memory`,
/// `redis` (at `REDIS_URL`, default `redis://127.0.0.1:6379`) or `postgres` (at `DATABASE_URL`,
/// default `postgres://postgres@127.0.0.1:5432/postgres`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SessionStore {
    /// The whole session sealed in the cookie.
    #[default]
    Cookie,
    /// In this process's memory (moka), only an id in the cookie.
    Memory,
    /// In Redis at this URL, only an id in the cookie.
    Redis(String),
    /// In PostgreSQL at this URL, only an id in the cookie.
    Postgres(String),
}

impl SessionStore {
    /// Reads `SESSION_STORE` (and `REDIS_URL` or `DATABASE_URL`); unset means `cookie`.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        match std::env::var("SESSION_STORE").ok().as_deref().map(str::trim) {
            None | Some("") | Some("cookie") => Ok(Self::Cookie),
            Some("memory") => Ok(Self::Memory),
            Some("redis") => Ok(Self::Redis(var("REDIS_URL", "redis://127.0.0.1:6379"))),
            Some("postgres") => Ok(Self::Postgres(var("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))),
            Some(other) => Err(format!("SESSION_STORE=`{other}`: expected cookie, memory, redis or postgres")),
        }
    }
}

/// The auth layer for `config`, sessions in `store`, with `/auth/profile`,
/// `/auth/access-token` and `/auth/backchannel-logout` on.
pub async fn auth_layer(config: AuthConfig, store: SessionStore) -> Result<AuthLayer, AuthError> {
    let builder = AuthLayer::builder(config.clone())
        .with_profile_route(true)
        .with_access_token_route(true)
        .with_backchannel_logout(true);
    match store {
        SessionStore::Cookie => builder.build().await,
        SessionStore::Memory => builder.with_state_store(ServerStateStore::in_memory(&config)).build().await,
        SessionStore::Redis(url) => {
            let backend = RedisBackend::connect(&url).await?;
            builder.with_state_store(ServerStateStore::new(backend, &config)).build().await
        }
        SessionStore::Postgres(url) => {
            let backend = PostgresBackend::connect(&url).await?;
            builder.with_state_store(ServerStateStore::new(backend, &config)).build().await
        }
    }
}

/// Serves the app on the host and port of `APP_BASE_URL` until Ctrl-C, sessions in `store`.
pub async fn serve(config: AuthConfig, store: SessionStore) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let base = config.base_url().clone();
    let host = base.host_str().unwrap_or("127.0.0.1").trim_matches(['[', ']']).to_owned();
    let port = base.port_or_known_default().unwrap_or(3000);
    let auth = auth_layer(config, store.clone()).await?;
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    tracing::info!(?store, "listening; open {base}");
    axum::serve(listener, app(auth))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Logs to stderr, `RUST_LOG` filtering (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
}

/// The app's routes with `auth` stacked on them.
pub fn app(auth: AuthLayer) -> Router {
    Router::new().route("/", get(home)).route("/private", get(private)).layer(auth)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>auth-layer quickstart</title></head><body>{body}</body></html>"
    ))
}

async fn home(user: Option<User>) -> Html<String> {
    match user {
        Some(user) => page(&format!(
            "<p id=\"status\">Logged in as <strong id=\"name\">{}</strong></p>\
             <p><a href=\"/private\">Private page</a> · <a id=\"logout\" href=\"/auth/logout\">Log out</a></p>",
            escape(user.name().unwrap_or(user.sub()))
        )),
        None => page("<p id=\"status\">Logged out</p><p><a id=\"login\" href=\"/auth/login\">Log in</a></p>"),
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
