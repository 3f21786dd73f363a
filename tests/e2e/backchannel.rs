//! Back-channel logout: the real provider ends sessions of every store, and logout tokens with
//! any defect of conformance.md are refused with 400 while the session survives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_layer::{AuthClient, AuthLayer, SharedState};
use auth_layer_tests::{Browser, EnvOptions, TestEnv};
use quickstart::StoreChoice;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(store: StoreChoice) -> TestEnv {
    TestEnv::start_with(EnvOptions { store, ..EnvOptions::default() }).await
}

async fn profile(browser: &Browser, env: &TestEnv) -> reqwest::Response {
    browser.http.get(env.url("/auth/profile")).header("accept", "application/json").send().await.unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Valid logout-token claims for `sid`/`sub` of the test client.
fn claims(env: &TestEnv, sid: &str, sub: &str, jti: &str) -> Value {
    json!({
        "iss": env.provider.issuer,
        "aud": "test-app",
        "iat": now(),
        "exp": now() + 120,
        "jti": jti,
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        "sid": sid,
        "sub": sub,
    })
}

async fn post_logout_token(env: &TestEnv, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(env.url("/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
}

/// Logs in and logs out at the provider's own end-session page (not through the app): the
/// provider's back-channel POST is the only thing that can end the app's session.
async fn provider_logout_ends_the_session(store: StoreChoice) {
    provider_logout_ends_the_session_of(start(store.clone()).await, &format!("{store:?}")).await;
}

async fn provider_logout_ends_the_session_of(env: TestEnv, store: &str) {
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    let me: Value = profile(&browser, &env).await.json().await.unwrap();
    assert!(me["sid"].is_string(), "the provider sends sid to a client with a back-channel URI");
    let copied = browser.cookie_header(&env.url("/"));
    let back = browser.confirm_provider_logout(&format!("{}/session/end", env.provider.issuer)).await;
    assert!(back.starts_with(&env.provider.issuer), "the provider's own logout lands on its page: {back}");
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}: session gone");
    let replay = reqwest::Client::new().get(env.url("/auth/profile")).header("cookie", copied).send().await.unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED, "{store:?}: a copy of the cookie is dead too");

    // A new login after the logout is not affected by it.
    env.advance_clock(Duration::from_secs(1));
    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "{store:?}: a new login works");
}

#[tokio::test]
async fn provider_logout_ends_a_cookie_session() {
    provider_logout_ends_the_session(StoreChoice::Cookie).await;
}

#[tokio::test]
async fn provider_logout_ends_a_memory_session() {
    provider_logout_ends_the_session(StoreChoice::Memory).await;
}

fn sqlite_file(name: &str) -> String {
    let dir = auth_layer_tests::servers::scratch_dir(name);
    dir.join("sessions.sqlite3").display().to_string()
}

#[tokio::test]
async fn provider_logout_ends_a_session_in_the_sqlite_backend() {
    provider_logout_ends_the_session(StoreChoice::Sqlite(sqlite_file("backchannel-sqlite"))).await;
}

/// A `SessionStore` of the app's own (the sqlite-backend example's `sessions` table), on the
/// real provider: login, its back-channel logout, a new login.
#[tokio::test]
async fn provider_logout_ends_a_session_in_the_apps_own_sessions_table() {
    let path = sqlite_file("backchannel-sessions-table");
    let env = TestEnv::start_with_layer(|config| async move {
        let table = sqlite_backend::SessionsTable::open(&path, &config)?;
        Ok(AuthLayer::new(
            AuthClient::builder(config)
                .with_session_store(table)
                .with_shared_state(SharedState::in_memory())
                .build()
                .await?,
        ))
    })
    .await;
    provider_logout_ends_the_session_of(env, "SessionsTable").await;
}

async fn defective_tokens_are_refused_and_the_session_survives(store: StoreChoice) {
    let env = start(store.clone()).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "quinn").await;
    let me: Value = profile(&browser, &env).await.json().await.unwrap();
    let sid = me["sid"].as_str().unwrap().to_owned();
    let valid = claims(&env, &sid, "quinn", "jti-valid");
    let without = |name: &str| {
        let mut c = valid.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let with = |name: &str, value: Value| {
        let mut c = valid.clone();
        c[name] = value;
        c
    };
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        ("signed with another key", json!({}), valid.clone(), "other"),
        ("unsigned (alg none)", json!({}), valid.clone(), "none"),
        ("another issuer", json!({}), with("iss", json!("https://evil.example")), "provider"),
        ("another audience", json!({}), with("aud", json!("other-client")), "provider"),
        ("expired", json!({}), with("exp", json!(now() - 3600)), "provider"),
        ("issued in the future", json!({}), with("iat", json!(now() + 3600)), "provider"),
        ("no iat", json!({}), without("iat"), "provider"),
        ("no exp", json!({}), without("exp"), "provider"),
        ("an iat older than the limit (2 minutes)", json!({}), with("iat", json!(now() - 200)), "provider"),
        ("no jti", json!({}), without("jti"), "provider"),
        ("no events", json!({}), without("events"), "provider"),
        (
            "event is not an object",
            json!({}),
            with("events", json!({"http://schemas.openid.net/event/backchannel-logout": "x"})),
            "provider",
        ),
        ("another event", json!({}), with("events", json!({"http://schemas.openid.net/event/other": {}})), "provider"),
        (
            "neither sid nor sub",
            json!({}),
            {
                let mut c = without("sid");
                c.as_object_mut().unwrap().remove("sub");
                c
            },
            "provider",
        ),
        ("a nonce", json!({}), with("nonce", json!("n")), "provider"),
        ("an ID token's typ", json!({"typ": "id_token+jwt"}), valid.clone(), "provider"),
    ];
    for (defect, header, claims, key) in cases {
        let token = env.provider.sign(header, claims, key).await;
        let response = post_logout_token(&env, &token).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{store:?}: a token with {defect} was accepted");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{defect}");
        assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "{store:?}: {defect} ended the session");
    }

    let http = reqwest::Client::new();
    let not_a_form =
        http.post(env.url("/auth/backchannel-logout")).json(&json!({"logout_token": "x"})).send().await.unwrap();
    assert_eq!(not_a_form.status(), StatusCode::BAD_REQUEST, "a JSON body is refused");
    let missing = http.post(env.url("/auth/backchannel-logout")).form(&[("other", "x")]).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let huge = "a".repeat(64 * 1024);
    let oversized =
        http.post(env.url("/auth/backchannel-logout")).form(&[("logout_token", huge.as_str())]).send().await.unwrap();
    assert_eq!(oversized.status(), StatusCode::BAD_REQUEST, "an oversized body is refused before any work");
    let get = http.get(env.url("/auth/backchannel-logout")).send().await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK);

    // A valid token for another session: accepted once, refused when replayed.
    let other = env
        .provider
        .sign(json!({"typ": "logout+jwt"}), claims(&env, "another-sid", "someone", "jti-other"), "provider")
        .await;
    assert_eq!(post_logout_token(&env, &other).await.status(), StatusCode::OK);
    assert_eq!(post_logout_token(&env, &other).await.status(), StatusCode::BAD_REQUEST, "a replayed jti is refused");
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "another sid leaves this session alone");

    // The valid token ends this session.
    let token = env.provider.sign(json!({"typ": "logout+jwt"}), valid, "provider").await;
    let done = post_logout_token(&env, &token).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.headers()["cache-control"], "no-store");
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn defective_logout_tokens_are_refused_with_cookie_sessions() {
    defective_tokens_are_refused_and_the_session_survives(StoreChoice::Cookie).await;
}

#[tokio::test]
async fn defective_logout_tokens_are_refused_with_memory_sessions() {
    defective_tokens_are_refused_and_the_session_survives(StoreChoice::Memory).await;
}

async fn logout_token_with_only_sub_ends_every_session_of_the_user(store: StoreChoice) {
    let env = start(store.clone()).await;
    let (laptop, phone, other) = (Browser::new(), Browser::new(), Browser::new());
    laptop.login(&env.app_url, "rita").await;
    phone.login(&env.app_url, "rita").await;
    other.login(&env.app_url, "sam").await;
    let mut by_sub = claims(&env, "", "rita", "jti-sub");
    by_sub.as_object_mut().unwrap().remove("sid");
    let token = env.provider.sign(json!({}), by_sub, "provider").await;
    assert_eq!(post_logout_token(&env, &token).await.status(), StatusCode::OK);
    assert_eq!(profile(&laptop, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}");
    assert_eq!(profile(&phone, &env).await.status(), StatusCode::UNAUTHORIZED, "{store:?}");
    assert_eq!(profile(&other, &env).await.status(), StatusCode::OK, "{store:?}: another user stays");
}

#[tokio::test]
async fn sub_only_logout_token_ends_all_cookie_sessions_of_the_user() {
    logout_token_with_only_sub_ends_every_session_of_the_user(StoreChoice::Cookie).await;
}

#[tokio::test]
async fn sub_only_logout_token_ends_all_memory_sessions_of_the_user() {
    logout_token_with_only_sub_ends_every_session_of_the_user(StoreChoice::Memory).await;
}

/// A session store whose back-channel deletions fail while `down` is set (a store outage).
struct Flaky {
    inner: auth_layer::store::ServerSessionStore,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl auth_layer::store::SessionStore for Flaky {
    async fn get(
        &self,
        ctx: &mut auth_layer::StoreContext,
    ) -> Result<Option<std::sync::Arc<auth_layer::SessionData>>, auth_layer::StoreError> {
        self.inner.get(ctx).await
    }
    async fn set(
        &self,
        ctx: &mut auth_layer::StoreContext,
        data: &auth_layer::SessionData,
    ) -> Result<(), auth_layer::StoreError> {
        self.inner.set(ctx, data).await
    }
    async fn update(
        &self,
        ctx: &mut auth_layer::StoreContext,
        data: &auth_layer::SessionData,
    ) -> Result<bool, auth_layer::StoreError> {
        self.inner.update(ctx, data).await
    }
    async fn delete(&self, ctx: &mut auth_layer::StoreContext) -> Result<(), auth_layer::StoreError> {
        self.inner.delete(ctx).await
    }
    async fn delete_by_logout_token(
        &self,
        target: &auth_layer::store::LogoutTarget,
    ) -> Result<(), auth_layer::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(auth_layer::StoreError::unavailable("flaky", "down for the test"));
        }
        self.inner.delete_by_logout_token(target).await
    }
}

/// The store is down when the provider posts the logout: 503, the session still there. The
/// provider retries the same token once the store is back: the logout happens (the `jti` was
/// not spent by the failed attempt). A third copy is a replay.
#[tokio::test]
async fn a_logout_token_retried_after_a_store_outage_ends_the_session() {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = down.clone();
    let env = TestEnv::start_with_layer(move |config| async move {
        let store = Flaky { inner: auth_layer::store::ServerSessionStore::in_memory(&config), down: flag };
        auth_layer::AuthClient::builder(config)
            .with_session_store(store)
            .with_shared_state(auth_layer::SharedState::in_memory())
            .build()
            .await
            .map(auth_layer::AuthLayer::new)
    })
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "rita").await;
    let me: Value = profile(&browser, &env).await.json().await.unwrap();
    let sid = me["sid"].as_str().unwrap().to_owned();
    let token =
        env.provider.sign(json!({"typ": "logout+jwt"}), claims(&env, &sid, "rita", "jti-retried"), "provider").await;

    down.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(post_logout_token(&env, &token).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "nothing was ended by the failed attempt");

    assert_eq!(post_logout_token(&env, &token).await.status(), StatusCode::OK, "the provider's retry is accepted");
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED, "and ends the session");
    assert_eq!(post_logout_token(&env, &token).await.status(), StatusCode::BAD_REQUEST, "a third copy is a replay");
}
