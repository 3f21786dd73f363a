//! The login loop with sessions in Redis and in PostgreSQL (the real servers): login, logout,
//! a new id at each login, back-channel deletion by sid and by sub, a store outage answered with
//! 503 and no panic, and service resuming with the session intact; and logout markers shared by
//! two cookie-store instances through Redis.

use auth_layer::SessionData;
use auth_layer::backend::RedisBackend;
use auth_layer::store::{CookieSessionStore, LogoutTarget, SessionStore, StoreContext};
use auth_layer_tests::servers::{PgServer, RedisServer, database_url, redis_url};
use auth_layer_tests::{Browser, EnvOptions, TestEnv};
use quickstart::StoreChoice;
use reqwest::StatusCode;
use serde_json::Value;

async fn start(store: StoreChoice) -> TestEnv {
    TestEnv::start_with(EnvOptions { store, ..EnvOptions::default() }).await
}

async fn profile(browser: &Browser, env: &TestEnv) -> reqwest::Response {
    browser.http.get(env.url("/auth/profile")).header("accept", "application/json").send().await.unwrap()
}

fn session_cookie(browser: &Browser, env: &TestEnv) -> String {
    browser
        .cookie_header(&env.url("/"))
        .split("; ")
        .find(|c| c.starts_with("_a0_session="))
        .unwrap_or_default()
        .to_owned()
}

async fn login_and_logout(store: StoreChoice) {
    let env = start(store.clone()).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "abe").await;
    let first = session_cookie(&browser, &env);
    assert_eq!(first.len(), "_a0_session=".len() + 43, "{store:?}: only an id in the cookie");
    let me: Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["sub"], "abe");
    assert_eq!(browser.get(&env.url("/private")).await.status(), StatusCode::OK);

    browser.login(&env.app_url, "abe").await;
    let second = session_cookie(&browser, &env);
    assert_ne!(first, second, "{store:?}: a new id at each login");
    let old = reqwest::Client::new().get(env.url("/auth/profile")).header("cookie", &first).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "{store:?}: the old session was deleted");

    assert_eq!(browser.get(&env.url("/auth/logout")).await.status(), StatusCode::FOUND);
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED);
    let copied = reqwest::Client::new().get(env.url("/auth/profile")).header("cookie", &second).send().await.unwrap();
    assert_eq!(copied.status(), StatusCode::UNAUTHORIZED, "{store:?}: logout deleted the record");
}

#[tokio::test]
async fn login_and_logout_with_redis_sessions() {
    login_and_logout(StoreChoice::Redis(redis_url())).await;
}

#[tokio::test]
async fn login_and_logout_with_postgres_sessions() {
    login_and_logout(StoreChoice::Postgres(database_url())).await;
}

async fn back_channel_deletes_by_sid_and_by_sub(store: StoreChoice) {
    let env = start(store.clone()).await;
    let (laptop, phone) = (Browser::new(), Browser::new());
    laptop.login(&env.app_url, "bea").await;
    phone.login(&env.app_url, "bea").await;
    // The provider's own logout of the laptop's provider session: its back-channel POST names
    // the laptop's sid only.
    laptop.confirm_provider_logout(&format!("{}/session/end", env.provider.issuer)).await;
    assert_eq!(profile(&laptop, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}: by sid");
    assert_eq!(profile(&phone, &env).await.status(), StatusCode::OK, "{store:?}: another sid stays");
    // A token with only sub ends the user's remaining sessions.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": env.provider.issuer, "aud": "test-app", "iat": now, "exp": now + 120, "jti": format!("jti-{now}-{}", env.app_url),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "bea",
    });
    let token = env.provider.sign(serde_json::json!({"typ": "logout+jwt"}), claims, "provider").await;
    let done = reqwest::Client::new()
        .post(env.url("/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(profile(&phone, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}: by sub");
}

#[tokio::test]
async fn back_channel_logout_with_redis_sessions() {
    back_channel_deletes_by_sid_and_by_sub(StoreChoice::Redis(redis_url())).await;
}

#[tokio::test]
async fn back_channel_logout_with_postgres_sessions() {
    back_channel_deletes_by_sid_and_by_sub(StoreChoice::Postgres(database_url())).await;
}

async fn outage_is_503_then_the_session_is_back(env: &TestEnv, stop: impl FnOnce(), restart: impl FnOnce()) {
    let browser = Browser::new();
    browser.login(&env.app_url, "cal").await;
    assert_eq!(profile(&browser, env).await.status(), StatusCode::OK);
    stop();
    let down = profile(&browser, env).await;
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    let home = browser.get(&env.url("/")).await;
    assert_eq!(home.status(), StatusCode::SERVICE_UNAVAILABLE, "a handler reading the session gets 503, not a 500");
    let public_login = browser.get(&env.url("/auth/login")).await;
    assert_eq!(public_login.status(), StatusCode::FOUND, "routes that don't need the store still work");
    restart();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = profile(&browser, env).await.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(status, StatusCode::OK, "service resumes by itself and the committed session is intact");
}

#[tokio::test]
async fn redis_outage_is_a_503_and_sessions_survive_it() {
    let server = std::cell::RefCell::new(RedisServer::start());
    let url = server.borrow().url();
    let env = start(StoreChoice::Redis(url)).await;
    outage_is_503_then_the_session_is_back(&env, || server.borrow_mut().stop(), || server.borrow_mut().restart()).await;
}

#[tokio::test]
async fn postgres_outage_is_a_503_and_sessions_survive_it() {
    let server = PgServer::start();
    let env = start(StoreChoice::Postgres(server.url())).await;
    outage_is_503_then_the_session_is_back(&env, || server.stop(), || server.restart()).await;
}

#[tokio::test]
async fn cookie_sessions_share_logout_markers_through_redis() {
    let config = auth_layer::AuthConfig::builder()
        .issuer("https://issuer.example/")
        .client_id("c")
        .client_secret("s")
        .secret("markers-secret-markers-secret-markers-0")
        .base_url("https://app.example")
        .build()
        .unwrap();
    let url = redis_url();
    let backend = RedisBackend::connect(&url).await.unwrap_or_else(|e| panic!("Redis is not reachable at {url}: {e}"));
    let namespace = format!("markers-{}", auth_layer_tests::free_port());
    let machine_a = CookieSessionStore::new(&config).with_marker_backend(backend.clone().with_namespace(&namespace));
    let machine_b = CookieSessionStore::new(&config).with_marker_backend(backend.with_namespace(&namespace));
    let claims = serde_json::json!({"sub": "dan", "sid": format!("sid-{namespace}")});
    let user = auth_layer::User::from_id_token_claims(claims.as_object().unwrap().clone());
    let session = SessionData::new(user, "t".into(), config.clock().now() - 10);
    let mut ctx = StoreContext::default();
    machine_a.set(&mut ctx, &session).await.unwrap();
    let mut headers = http_headers(ctx);
    assert!(machine_b.get(&mut headers).await.unwrap().is_some());
    let target = LogoutTarget { iss: "i".into(), sub: None, sid: session.sid().map(str::to_owned) };
    machine_a.delete_by_logout_token(&target).await.unwrap();
    // Machine B kept its answer until a notice says a marker was written: the notice is a
    // pub/sub message, so B sees the logout when it arrives (well under a second), not at the
    // instant A's write returns.
    let since = std::time::Instant::now();
    while machine_b.get(&mut headers).await.unwrap().is_some() {
        assert!(since.elapsed() < std::time::Duration::from_secs(1), "the other machine never saw the marker");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

fn http_headers(ctx: StoreContext) -> StoreContext {
    let mut response = reqwest::header::HeaderMap::new();
    ctx.apply(&mut response);
    let pairs: Vec<String> = response
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect();
    let header = reqwest::header::HeaderValue::from_str(&pairs.join("; ")).unwrap();
    StoreContext::from_cookie_headers([&header])
}

async fn limits_end_server_sessions(store: StoreChoice) {
    let env = start(store.clone()).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "eve").await;
    for _ in 0..5 {
        env.advance_clock(std::time::Duration::from_secs(13 * 3600));
        assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "{store:?}: renewed on use");
    }
    env.advance_clock(std::time::Duration::from_secs(8 * 3600));
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}: absolute limit");
    let idle = Browser::new();
    idle.login(&env.app_url, "eve").await;
    env.advance_clock(std::time::Duration::from_secs(86_400 + 1));
    assert_eq!(profile(&idle, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}: inactivity limit");
}

#[tokio::test]
async fn inactivity_and_absolute_limits_end_redis_sessions() {
    limits_end_server_sessions(StoreChoice::Redis(redis_url())).await;
}

#[tokio::test]
async fn inactivity_and_absolute_limits_end_postgres_sessions() {
    limits_end_server_sessions(StoreChoice::Postgres(database_url())).await;
}
