//! What README claims, each proven by a count or an answer that would change without it: the
//! session is lazy (a route that never reads it makes no store call, so no decryption either),
//! one read per request however often a handler asks, the `Option<User>` and `AccessToken`
//! extractors, tokens kept per audience, and deletion by `sid` that does not grow with the
//! number of sessions stored.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use auth_layer::backend::{MokaBackend, RedisBackend};
use auth_layer::store::{LogoutTarget, ServerSessionStore, SessionStore, StoreContext};
use auth_layer::{AccessToken, AccessTokenOptions, AuthClient, AuthLayer, Session, SessionData, TokenSet, User};
use auth_layer_tests::servers::RedisServer;
use auth_layer_tests::{CountingReads, provider_for_own_app};
use axum::Router;
use axum::routing::get;
use http::header::SET_COOKIE;
use reqwest::StatusCode;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A session of `sub` with access tokens for two audiences, valid for an hour, and no refresh
/// token (a refresh would fail: whatever is answered comes from what is stored).
fn session_of(sub: &str, sid: &str) -> SessionData {
    let claims = serde_json::json!({ "sub": sub, "sid": sid, "name": "Claire" });
    let mut session =
        SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "id".into(), now());
    for (audience, token) in [(None, "token-default"), (Some("https://orders.example"), "token-orders")] {
        session.token_sets.push(TokenSet {
            audience: audience.map(str::to_owned),
            scope: "openid profile".into(),
            access_token: token.into(),
            expires_at: Some(now() + 3_600),
        });
    }
    session
}

/// The `Cookie` header a browser sends back after `ctx`'s response.
fn cookie_header(ctx: StoreContext) -> String {
    let mut headers = http::HeaderMap::new();
    ctx.apply(&mut headers);
    let pairs: Vec<String> = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|line| line.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    pairs.join("; ")
}

struct App {
    url: String,
    reads: Arc<AtomicU64>,
    /// A logged-in browser's `Cookie` header.
    cookie: String,
    _provider: auth_layer_tests::Provider,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl App {
    async fn start() -> Self {
        let (provider, config, url, listener) = provider_for_own_app().await;
        let backend = CountingReads::new(MokaBackend::new());
        let reads = backend.counter();
        // Sealed bytes in a backend, no cache of opened sessions: every store read decrypts.
        let store = Arc::new(ServerSessionStore::new(backend, &config).with_opened_cache(0));
        let client = AuthClient::builder(config).with_server_sessions(store.clone()).build().await.unwrap();
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &session_of("claire", "sid-claire")).await.unwrap();
        let cookie = cookie_header(ctx);

        let app = Router::new()
            .route("/public", get(|| async { "no session read here" }))
            .route(
                "/me-twice",
                get(|session: Session| async move {
                    let first = session.user().await.unwrap().map(|u| u.sub().to_owned());
                    let second = session.user().await.unwrap().map(|u| u.sub().to_owned());
                    format!("{first:?} {second:?}")
                }),
            )
            .route(
                "/maybe",
                get(|user: Option<User>| async move { user.map_or("anonymous".to_owned(), |u| u.sub().to_owned()) }),
            )
            .route("/token", get(|token: AccessToken| async move { token.access_token }))
            .route(
                "/token-then-user",
                get(|session: Session| async move {
                    let token = session.access_token(AccessTokenOptions::default()).await.unwrap();
                    let user = session.user().await.unwrap().unwrap();
                    format!("{} {}", token.access_token, user.sub())
                }),
            )
            .route(
                "/orders-token",
                get(|session: Session| async move {
                    let options = AccessTokenOptions::default().audience("https://orders.example");
                    session.access_token(options).await.map(|t| t.access_token).unwrap_or_else(|e| e.code().into())
                }),
            )
            .layer(AuthLayer::new(client));
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, reads, cookie, _provider: provider, server }
    }

    async fn get(&self, path: &str, cookie: Option<&str>, accept: &str) -> (StatusCode, String) {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let mut request = client.get(format!("{}{path}", self.url)).header("accept", accept);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(response.text().await.unwrap()))
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_route_that_never_reads_the_session_makes_no_store_call_and_one_that_reads_makes_one() {
    let app = App::start().await;
    let before = app.reads();
    for _ in 0..5 {
        assert_eq!(app.get("/public", Some(&app.cookie), "text/html").await.0, StatusCode::OK);
    }
    assert_eq!(app.reads(), before, "a request whose handler never asks reads (and decrypts) nothing");

    let (status, body) = app.get("/me-twice", Some(&app.cookie), "text/html").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"Some("claire") Some("claire")"#));
    assert_eq!(app.reads(), before + 1, "asked twice, read once");

    let (status, body) = app.get("/token-then-user", Some(&app.cookie), "text/html").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "token-default claire"));
    assert_eq!(app.reads(), before + 2, "an access token and the user: one read");
}

#[tokio::test]
async fn the_optional_user_extractor_answers_with_or_without_a_session_and_never_refuses() {
    let app = App::start().await;
    assert_eq!(app.get("/maybe", Some(&app.cookie), "text/html").await, (StatusCode::OK, "claire".into()));
    assert_eq!(app.get("/maybe", None, "text/html").await, (StatusCode::OK, "anonymous".into()));
    let forged = "_a0_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    assert_eq!(app.get("/maybe", Some(forged), "application/json").await, (StatusCode::OK, "anonymous".into()));
}

#[tokio::test]
async fn the_access_token_extractor_gives_the_stored_token_or_refuses_like_the_user_extractor() {
    let app = App::start().await;
    assert_eq!(
        app.get("/token", Some(&app.cookie), "application/json").await,
        (StatusCode::OK, "token-default".into())
    );
    let (status, location) = app.get("/token", None, "text/html").await;
    assert_eq!(status, StatusCode::FOUND, "a browser without a session is sent to login");
    assert_eq!(location, "/auth/login?returnTo=%2Ftoken");
    let (status, body) = app.get("/token", None, "application/json").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an API client gets 401: {body}");
    assert!(body.contains("not_authenticated"), "{body}");
}

#[tokio::test]
async fn tokens_are_kept_per_audience_and_a_second_audience_gets_its_own() {
    let app = App::start().await;
    // No refresh token in the session: a token not found for its audience would be a refresh,
    // which fails with `missing_refresh_token`.
    assert_eq!(app.get("/orders-token", Some(&app.cookie), "application/json").await.1, "token-orders");
    assert_eq!(app.get("/token", Some(&app.cookie), "application/json").await.1, "token-default");
}

/// Total commands a Redis server has run since its statistics were reset, and whether any of
/// them walks the keyspace.
fn redis_command_stats(url: &str) -> (u64, Vec<String>) {
    let out = Command::new("redis-cli").args(["-u", url, "INFO", "commandstats"]).output().expect("redis-cli");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut total = 0;
    let mut walking = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("cmdstat_")) {
        let name = line.trim_start_matches("cmdstat_").split(':').next().unwrap().to_owned();
        let calls: u64 = line.split("calls=").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
        if name != "info" && name != "config|resetstat" {
            total += calls;
        }
        if ["scan", "keys", "sscan", "hscan", "zscan"].contains(&name.as_str()) {
            walking.push(name);
        }
    }
    (total, walking)
}

/// The Redis commands that ending one user's session by `sid` takes with `others` sessions of
/// other users stored.
async fn commands_to_end_one_session_among(others: usize) -> (u64, Vec<String>) {
    let server = RedisServer::start_with_args(&["--appendonly", "no"]);
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    let (_provider, config, _, _) = provider_for_own_app().await;
    let store = ServerSessionStore::new(backend, &config);
    let mut writes = tokio::task::JoinSet::new();
    let sessions = Arc::new(store.sessions().clone());
    for batch in 0..others.div_ceil(500) {
        let sessions = sessions.clone();
        writes.spawn(async move {
            for i in batch * 500..((batch + 1) * 500).min(others) {
                sessions.set(&session_of(&format!("user-{i}"), &format!("sid-{i}"))).await.unwrap();
            }
        });
        while writes.len() >= 16 {
            writes.join_next().await.unwrap().unwrap();
        }
    }
    writes.join_all().await;
    let target = session_of("leaver", "sid-leaver");
    sessions.set(&target).await.unwrap();

    Command::new("redis-cli").args(["-u", &server.url(), "CONFIG", "RESETSTAT"]).output().unwrap();
    let logout = LogoutTarget { iss: "issuer".into(), sub: None, sid: Some("sid-leaver".into()) };
    store.delete_by_logout_token(&logout).await.unwrap();
    let stats = redis_command_stats(&server.url());
    assert_eq!(sessions.get(target.id()).await.unwrap(), None, "ended");
    stats
}

#[tokio::test]
async fn ending_a_session_by_sid_takes_the_same_redis_commands_among_a_thousand_or_a_hundred_thousand() {
    let (few, few_walking) = commands_to_end_one_session_among(1_000).await;
    let (many, many_walking) = commands_to_end_one_session_among(100_000).await;
    assert!(few_walking.is_empty() && many_walking.is_empty(), "no keyspace walk: {few_walking:?} {many_walking:?}");
    assert!(few > 0, "the deletion ran commands");
    println!("commands to end one session by sid: {few} among 1,000 sessions, {many} among 100,000");
    assert_eq!(few, many, "commands with 1,000 sessions stored vs 100,000");
}
