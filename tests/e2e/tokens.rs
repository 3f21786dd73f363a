//! Access tokens against the real provider: the route, refresh when due and on demand,
//! single-flight under 50 concurrent requests with rotation on, refused and unreachable refreshes,
//! and the hooks around saving a session.

use std::time::Duration;

use auth_layer::{AccessTokenOptions, AuthClient, AuthLayer, StoreContext};
use auth_layer_tests::{Browser, EnvOptions, ProviderOptions, TestEnv};
use quickstart::StoreChoice;
use reqwest::StatusCode;
use serde_json::Value;

async fn access_token(browser: &Browser, env: &TestEnv) -> reqwest::Response {
    browser.http.get(env.url("/auth/access-token")).header("accept", "application/json").send().await.unwrap()
}

fn rotating(store: StoreChoice) -> EnvOptions {
    EnvOptions {
        store,
        provider: ProviderOptions { rotate_refresh: true, ..ProviderOptions::default() },
        ..EnvOptions::default()
    }
}

async fn session_of(env: &TestEnv, browser: &Browser) -> std::sync::Arc<auth_layer::SessionData> {
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    env.client.session(&mut ctx).await.unwrap().expect("a session")
}

#[tokio::test]
async fn access_token_route_serves_the_stored_token_while_fresh() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    assert_eq!(access_token(&browser, &env).await.status(), StatusCode::UNAUTHORIZED, "logged out");
    browser.login(&env.app_url, "tara").await;
    let first: Value = access_token(&browser, &env).await.json().await.unwrap();
    assert!(first["access_token"].as_str().unwrap().len() > 10);
    assert!(first["expires_at"].as_u64().unwrap() > 0);
    assert!(first["scope"].as_str().unwrap().contains("openid"));
    let again: Value = access_token(&browser, &env).await.json().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(env.provider.refresh_grants().await, 0, "a fresh token needs no refresh");
}

async fn expired_token_is_refreshed_once_by_fifty_concurrent_requests(store: StoreChoice) {
    let env = TestEnv::start_with(rotating(store.clone())).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "uma").await;
    let before = session_of(&env, &browser).await;
    let first: Value = access_token(&browser, &env).await.json().await.unwrap();

    // The provider's access tokens live an hour: move past it (minus less than the buffer).
    env.advance_clock(Duration::from_secs(3600 - 30));
    // Fifty requests carrying the same (pre-refresh) cookie, released at once.
    let cookie = browser.cookie_header(&env.url("/"));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let http = reqwest::Client::new();
    let requests: Vec<_> = (0..50)
        .map(|_| {
            let (http, barrier, cookie, url) =
                (http.clone(), barrier.clone(), cookie.clone(), env.url("/auth/access-token"));
            tokio::spawn(async move {
                barrier.wait().await;
                http.get(url).header("cookie", cookie).send().await.unwrap()
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{store:?}");
        let body: Value = response.json().await.unwrap();
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    // The browser's own next request, still with the old cookie, gets the shared result too.
    let own: Value = access_token(&browser, &env).await.json().await.unwrap();
    tokens.push(own["access_token"].as_str().unwrap().to_owned());
    assert_eq!(env.provider.refresh_grants().await, 1, "{store:?}: one grant for fifty requests");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "everyone got the one refreshed token");
    assert_ne!(tokens[0], first["access_token"].as_str().unwrap());

    // Rotation: the session goes on with the new refresh token (a forced refresh works) ...
    let after = session_of(&env, &browser).await;
    assert_ne!(after.refresh_token, before.refresh_token, "the rotated refresh token is stored");
    let mut ctx = StoreContext::from_cookie_headers([&browser.cookie_header(&env.url("/")).parse().unwrap()]);
    let forced = env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.unwrap();
    assert_ne!(forced.access_token, tokens[0]);
    assert_eq!(env.provider.refresh_grants().await, 2);
    // ... and the old one is dead at the provider: used twice, it is refused.
    let reuse = reqwest::Client::new()
        .post(format!("{}/token", env.provider.issuer))
        .basic_auth("test-app", Some(auth_layer_tests::CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", before.refresh_token.as_deref().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST, "a refresh token used twice is refused");
    assert_eq!(browser.get(&env.url("/private")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_refresh_with_cookie_sessions() {
    expired_token_is_refreshed_once_by_fifty_concurrent_requests(StoreChoice::Cookie).await;
}

#[tokio::test]
async fn fifty_concurrent_requests_share_one_refresh_with_memory_sessions() {
    expired_token_is_refreshed_once_by_fifty_concurrent_requests(StoreChoice::Memory).await;
}

#[tokio::test]
async fn refresh_updates_the_id_token_and_keeps_the_user() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "vic").await;
    let before = session_of(&env, &browser).await;
    // The provider signs with its own clock, in whole seconds: let its `iat` move on.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    env.advance_clock(Duration::from_secs(3600));
    assert_eq!(access_token(&browser, &env).await.status(), StatusCode::OK);
    assert_eq!(env.provider.refresh_grants().await, 1);
    let after = session_of(&env, &browser).await;
    assert_ne!(after.id_token, before.id_token, "the provider's new ID token is kept");
    assert_eq!(after.user.sub(), "vic");
    assert_eq!(after.user.name(), Some("Vic"));
    assert_eq!(after.token_sets.len(), 1, "the refreshed token replaces the old one, the list does not grow");
}

#[tokio::test]
async fn revoked_refresh_token_ends_the_session() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "wes").await;
    let session = session_of(&env, &browser).await;
    let revoke = reqwest::Client::new()
        .post(format!("{}/token/revocation", env.provider.issuer))
        .basic_auth("test-app", Some(auth_layer_tests::CLIENT_SECRET))
        .form(&[("token", session.refresh_token.as_deref().unwrap()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert!(revoke.status().is_success());
    env.advance_clock(Duration::from_secs(3600));
    let response = access_token(&browser, &env).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "refresh_refused");
    let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
    assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "the user must log in again");
}

#[tokio::test]
async fn unreachable_provider_is_a_503_and_the_session_stays() {
    let mut env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "xia").await;
    env.provider.stop().await;
    env.advance_clock(Duration::from_secs(3600));
    let response = access_token(&browser, &env).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "provider_unavailable");
    let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
    assert_eq!(profile.status(), StatusCode::OK, "the session survives the outage");
}

#[tokio::test]
async fn hooks_run_before_save_and_after_the_callback() {
    use std::sync::{Arc, Mutex};
    let logins: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = logins.clone();
    let env = TestEnv::start_with_layer(move |config| async move {
        AuthClient::builder(config)
            .before_save(|session| {
                session.user.claims_mut().remove("email");
                session.user.claims_mut().insert("plan".into(), "gold".into());
            })
            .after_callback(move |result| seen.lock().unwrap().push(result.session.user.sub().to_owned()))
            .build()
            .await
            .map(AuthLayer::new)
    })
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "yan").await;
    let me: Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["plan"], "gold");
    assert!(me.get("email").is_none(), "the hook filtered a claim out");
    assert_eq!(*logins.lock().unwrap(), ["yan"]);
    env.advance_clock(Duration::from_secs(3600));
    assert_eq!(access_token(&browser, &env).await.status(), StatusCode::OK);
    let me: Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["plan"], "gold", "the hook runs again after a refresh that updates the claims");
}

#[tokio::test]
async fn expired_token_without_a_refresh_token_is_a_401_with_its_code() {
    let options = EnvOptions {
        provider: ProviderOptions { no_refresh: true, ..ProviderOptions::default() },
        ..EnvOptions::default()
    };
    let env = TestEnv::start_with(options).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "zed").await;
    assert!(session_of(&env, &browser).await.refresh_token.is_none());
    assert_eq!(access_token(&browser, &env).await.status(), StatusCode::OK, "fresh: served");
    env.advance_clock(Duration::from_secs(3600));
    let response = access_token(&browser, &env).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "missing_refresh_token");
    assert_eq!(browser.get(&env.url("/private")).await.status(), StatusCode::OK, "the session itself stays");
}

async fn two_audiences_at_once_chain_their_refresh_tokens(store: StoreChoice) {
    let env = TestEnv::start_with(rotating(store.clone())).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "zoe").await;
    let cookie = browser.cookie_header(&env.url("/"));
    let request = |cookie: &str| StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let (mut orders, mut billing) = (request(&cookie), request(&cookie));
    // Two requests of one session, each wanting a token for an API it has none for: two
    // refreshes, which must not both send the one refresh token (with rotation the provider
    // would see it reused and revoke the grant).
    let (for_orders, for_billing) = tokio::join!(
        env.client.access_token(&mut orders, AccessTokenOptions::default().audience("https://orders.example")),
        env.client.access_token(&mut billing, AccessTokenOptions::default().audience("https://billing.example")),
    );
    let for_orders = for_orders.unwrap_or_else(|e| panic!("{store:?}: the first refresh: {e}"));
    let for_billing = for_billing.unwrap_or_else(|e| panic!("{store:?}: the second refresh, chained: {e}"));
    assert_ne!(for_orders.access_token, for_billing.access_token);
    assert_eq!(env.provider.refresh_grants().await, 2, "{store:?}: one grant each, one at a time");
    // The later of the two saves holds both tokens and the newest refresh token, which works.
    let audiences = |session: &auth_layer::SessionData| {
        let has = |aud: &str| session.token_sets.iter().any(|s| s.audience.as_deref() == Some(aud));
        has("https://orders.example") && has("https://billing.example")
    };
    let mut latest = None;
    for cookie in
        [auth_layer_tests::cookies_after(orders), auth_layer_tests::cookies_after(billing)].into_iter().flatten()
    {
        let session = env.client.session(&mut request(&cookie)).await.unwrap().expect("the session survives");
        if audiences(&session) {
            latest = Some(cookie);
        }
    }
    let latest = latest.unwrap_or(cookie);
    let session = env.client.session(&mut request(&latest)).await.unwrap().expect("the session survives");
    assert!(audiences(&session), "{store:?}: the chained refresh kept the first one's token");
    let forced = env.client.access_token(&mut request(&latest), AccessTokenOptions::default().force_refresh()).await;
    assert!(forced.is_ok(), "{store:?}: the session's refresh token is the newest one: {forced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_for_two_audiences_at_once_chain_their_refresh_tokens() {
    for store in [StoreChoice::Cookie, StoreChoice::Memory] {
        two_audiences_at_once_chain_their_refresh_tokens(store).await;
    }
}

#[tokio::test]
async fn a_handler_that_reads_the_session_after_a_refresh_keeps_the_refreshed_cookie() {
    async fn refresh_then_read(session: auth_layer::Session) -> String {
        let token = session.access_token(AccessTokenOptions::default().force_refresh()).await.expect("refreshed");
        // Reading the session afterwards must not put back the cookies of the read before.
        assert!(session.user().await.expect("readable").is_some());
        token.access_token
    }
    // Renewal whenever less than a whole day of the day's inactivity window is left: a read a
    // minute after login renews the session (a cookie of its own, holding the old token).
    let env = TestEnv::start_custom_configured(
        |config| config.renew_below(Duration::from_secs(86_400)),
        |client| {
            axum::Router::new()
                .route("/refresh-then-read", axum::routing::get(refresh_then_read))
                .layer(AuthLayer::new(client))
        },
    )
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "uma").await;
    let before = session_of(&env, &browser).await;
    env.advance_clock(Duration::from_secs(60));
    let response = browser.http.get(env.url("/refresh-then-read")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let refreshed = response.text().await.unwrap();
    let after = session_of(&env, &browser).await;
    assert_ne!(before.token_sets[0].access_token, refreshed, "refreshed");
    assert!(
        after.token_sets.iter().any(|s| s.access_token == refreshed),
        "the browser's cookie holds the refreshed token, not the renewal's copy of the old one"
    );
}

#[tokio::test]
async fn an_async_before_save_hook_shapes_the_session_at_login_and_refresh_and_can_refuse() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let runs = std::sync::Arc::new(AtomicU64::new(0));
    let counted = runs.clone();
    let env = TestEnv::start_with_layer(move |config| async move {
        let client = AuthClient::builder(config)
            .before_save_async(move |mut session| {
                let runs = counted.clone();
                async move {
                    // As an app reading its own database would: an await, then a change.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    if session.user.name() == Some("Refused") {
                        return Err(auth_layer::AuthError::InvalidRequest("this user may not log in".into()));
                    }
                    session.user.claims_mut().insert("saves".into(), n.into());
                    Ok(session)
                }
            })
            .build()
            .await?;
        Ok(AuthLayer::from(client))
    })
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "uma").await;
    assert_eq!(session_of(&env, &browser).await.user.claim("saves"), Some(&serde_json::json!(1)), "at login");
    env.advance_clock(Duration::from_secs(3600));
    assert_eq!(access_token(&browser, &env).await.status(), StatusCode::OK);
    assert_eq!(session_of(&env, &browser).await.user.claim("saves"), Some(&serde_json::json!(2)), "after a refresh");
    // An error from the hook refuses the login: no session.
    let refused = Browser::new();
    let callback = refused.start_and_authorize(&env.app_url, "refused", "/auth/login").await;
    let response = refused.http.get(&callback).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(access_token(&refused, &env).await.status(), StatusCode::UNAUTHORIZED);
}

/// A logout through the layer's route: its answer.
async fn logout(browser: &Browser, env: &TestEnv) -> reqwest::Response {
    browser.http.get(env.url("/auth/logout")).header("accept", "text/html").send().await.unwrap()
}

#[tokio::test]
async fn a_logout_revokes_the_refresh_token_once_and_the_provider_then_refuses_it() {
    for store in [StoreChoice::Cookie, StoreChoice::Memory] {
        let env = TestEnv::start_with(EnvOptions { store: store.clone(), ..EnvOptions::default() }).await;
        let browser = Browser::new();
        browser.login(&env.app_url, "rhea").await;
        let refresh_token = session_of(&env, &browser).await.refresh_token.clone().expect("a refresh token");
        assert_eq!(env.provider.revocations().await, 0);
        let (status, _) = env.provider.refresh_grant(&refresh_token).await;
        assert_eq!(status, StatusCode::OK, "{store:?}: the refresh token works before the logout");

        assert!(logout(&browser, &env).await.status().is_redirection());
        assert_eq!(env.provider.revocations_settled(1).await, 1, "{store:?}: one revocation per logout");
        let (status, body) = env.provider.refresh_grant(&refresh_token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{store:?}: {body}");
        assert_eq!(body["error"], "invalid_grant", "{store:?}: the revoked refresh token is refused");
        // A second logout of a session already ended sends nothing.
        assert!(logout(&browser, &env).await.status().is_redirection());
        assert_eq!(env.provider.revocations_settled(1).await, 1, "{store:?}: nothing to revoke twice");
    }
}

#[tokio::test]
async fn an_app_that_keeps_refresh_tokens_sends_no_revocation() {
    let env = TestEnv::start_with(EnvOptions {
        configure: |builder| builder.revoke_at_logout(false),
        ..EnvOptions::default()
    })
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "otto").await;
    let refresh_token = session_of(&env, &browser).await.refresh_token.clone().expect("a refresh token");
    assert!(logout(&browser, &env).await.status().is_redirection());
    assert_eq!(env.provider.revocations_settled(0).await, 0);
    assert_eq!(env.provider.refresh_grant(&refresh_token).await.0, StatusCode::OK, "the token still works");
}

#[tokio::test]
async fn a_frozen_provider_neither_delays_a_logout_nor_undoes_it() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "ivo").await;
    let refresh_token = session_of(&env, &browser).await.refresh_token.clone().expect("a refresh token");
    env.provider.freeze();
    let started = std::time::Instant::now();
    let answer = logout(&browser, &env).await;
    let took = started.elapsed();
    env.provider.thaw();
    assert!(answer.status().is_redirection(), "{}", answer.status());
    // The revocation waits out the provider's 10 s timeout in its own task; the logout did not.
    assert!(took < Duration::from_secs(5), "the logout waited {took:?} for the provider");
    let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
    assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "the local logout is done");
    // Thawed within the revocation's timeout: the revocation it held goes through.
    assert_eq!(env.provider.revocations_settled(1).await, 1);
    assert_eq!(env.provider.refresh_grant(&refresh_token).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn a_session_ends_at_the_providers_session_expiry_without_a_call_to_the_token_endpoint() {
    // The test provider gives users named `brief…` a `session_expiry` ten minutes away, and
    // users named `short…` refresh tokens of ten minutes (`refresh_token_expires_in`).
    for (user, store) in
        [("brief", StoreChoice::Cookie), ("short", StoreChoice::Cookie), ("short", StoreChoice::Memory)]
    {
        let env = TestEnv::start_with(EnvOptions { store: store.clone(), ..EnvOptions::default() }).await;
        let browser = Browser::new();
        browser.login(&env.app_url, user).await;
        let session = session_of(&env, &browser).await;
        let bound = session.provider_ends_at().expect("the provider's bound");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!((now + 590..=now + 600).contains(&bound), "{user}/{store:?}: {bound} vs now {now}");
        assert_eq!(env.client.session_expires_at(&session), bound, "{user}/{store:?}: the session ends then");
        let profile = |browser: &Browser| browser.http.get(env.url("/auth/profile")).send();
        assert_eq!(profile(&browser).await.unwrap().status(), StatusCode::OK);
        let token_requests = env.provider.token_requests().await;
        // Well within the app's own limits (a day idle, a week in all), past the provider's.
        env.advance_clock(Duration::from_secs(601));
        let status = profile(&browser).await.unwrap().status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}/{store:?}: ended at the provider's bound");
        assert_eq!(access_token(&browser, &env).await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(env.provider.token_requests().await, token_requests, "{user}/{store:?}: no refresh was tried");
    }

    let env = TestEnv::start().await;
    let profile = |browser: &Browser| browser.http.get(env.url("/auth/profile")).send();
    // Another user without the claim: the app's limits alone.
    let other = Browser::new();
    other.login(&env.app_url, "lasting").await;
    assert_eq!(session_of(&env, &other).await.provider_ends_at(), None);
    env.advance_clock(Duration::from_secs(601));
    assert_eq!(profile(&other).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_rotated_refresh_token_brings_its_own_lifetime_and_the_session_follows_it() {
    let env = TestEnv::start_with(EnvOptions {
        store: StoreChoice::Memory,
        provider: ProviderOptions { rotate_refresh: true, ..ProviderOptions::default() },
        ..EnvOptions::default()
    })
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "short-rotating").await;
    let first = session_of(&env, &browser).await.provider_ends_at().expect("the refresh token's expiry");
    // Two seconds on by the provider's own clock (which the test cannot move), a refresh: the
    // rotated token's ten minutes, from now, bound the session.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.expect("a refresh");
    let after = session_of(&env, &browser).await.provider_ends_at().expect("the rotated token's expiry");
    assert!(after >= first + 2, "the bound moved with the rotated token: {first} then {after}");
    assert!(after <= first + 10, "{first} then {after}");
}
