//! Every ID-token and token-endpoint check of conformance.md's "Login" section, against a test
//! provider that misbehaves on purpose (`tests/idp/hostile.mjs`); those the OpenID Foundation's
//! RP plans name (issuer, audience, `iat`, `sub`, nonce, signature, `alg: none`, userinfo `sub`)
//! are their modules' tests in `conformance.rs`. Each test is named after the
//! attack or fault it stops, and asserts a clean 4xx (or 5xx for a broken provider), that no
//! session exists afterwards, and that the server still serves.

use auth_layer_tests::{Browser, TestEnv};
use reqwest::StatusCode;
use serde_json::Value;

/// Logs in while the provider follows `scenario`; returns the callback's status and error code.
async fn login_under(scenario: &str) -> (TestEnv, Browser, StatusCode, Option<String>) {
    login_at(scenario, "/auth/login").await
}

/// [`login_under`], starting at `login_path` (with its query).
async fn login_at(scenario: &str, login_path: &str) -> (TestEnv, Browser, StatusCode, Option<String>) {
    let env = TestEnv::start_hostile().await;
    env.provider.set_scenario(scenario).await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "mallory", login_path).await;
    let response = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
    let status = response.status();
    let sets_session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("_a0_session") && !c.to_str().unwrap().contains("Max-Age=0"));
    let code = response.json::<Value>().await.ok().and_then(|b| b["error"].as_str().map(str::to_owned));
    if !status.is_redirection() {
        assert!(!sets_session, "{scenario}: a refused login sets no session cookie");
    }
    (env, browser, status, code)
}

async fn assert_rejected(scenario: &str, status: StatusCode, code: &str) {
    let (env, browser, got, got_code) = login_under(scenario).await;
    assert_eq!(got, status, "{scenario}");
    assert_eq!(got_code.as_deref(), Some(code), "{scenario}");
    let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
    assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "{scenario}: no session afterwards");
    let home = browser.get(&env.url("/")).await;
    assert_eq!(home.status(), StatusCode::OK, "{scenario}: the server still serves");
}

async fn assert_accepted(scenario: &str) {
    let (env, browser, status, _) = login_under(scenario).await;
    assert_eq!(status, StatusCode::FOUND, "{scenario}");
    let me: Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["sub"], "mallory", "{scenario}");
}

#[tokio::test]
async fn a_well_formed_login_from_this_provider_is_accepted() {
    assert_accepted("ok").await;
}

#[tokio::test]
async fn algorithm_the_provider_did_not_announce_is_rejected() {
    // HS256 with the client secret: a classic key-confusion attack on RS256 verifiers.
    assert_rejected("alg-hs256", StatusCode::BAD_REQUEST, "invalid_id_token").await;
}

#[tokio::test]
async fn key_not_in_the_providers_jwks_is_rejected_after_one_refetch() {
    let (env, browser, status, code) = login_under("unknown-kid").await;
    // (login_under started the provider afresh: its count starts at this app's discovery.)
    assert_eq!((status, code.as_deref()), (StatusCode::BAD_REQUEST, Some("invalid_id_token")));
    // Discovery fetched the keys once; the unknown kid made exactly one refetch.
    assert_eq!(env.provider.jwks_fetches().await, 2, "one refetch for the unknown kid");
    let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
    assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "no session afterwards");
}

#[tokio::test]
async fn several_audiences_without_azp_are_rejected() {
    assert_rejected("multi-aud-no-azp", StatusCode::BAD_REQUEST, "invalid_id_token").await;
}

#[tokio::test]
async fn azp_naming_another_client_is_rejected() {
    assert_rejected("multi-aud-wrong-azp", StatusCode::BAD_REQUEST, "invalid_id_token").await;
}

#[tokio::test]
async fn several_audiences_with_azp_of_this_client_are_accepted() {
    assert_accepted("multi-aud-with-azp").await;
}

#[tokio::test]
async fn expired_token_is_rejected() {
    assert_rejected("expired", StatusCode::BAD_REQUEST, "invalid_id_token").await;
}

#[tokio::test]
async fn token_expired_within_the_clock_tolerance_is_accepted() {
    assert_accepted("expired-within-skew").await;
}

#[tokio::test]
async fn token_issued_in_the_future_is_rejected() {
    assert_rejected("iat-future", StatusCode::BAD_REQUEST, "invalid_id_token").await;
}

#[tokio::test]
async fn token_without_the_nonce_is_rejected() {
    assert_rejected("no-nonce", StatusCode::BAD_REQUEST, "invalid_id_token").await;
}

#[tokio::test]
async fn token_endpoint_http_error_is_a_clean_error() {
    assert_rejected("token-500", StatusCode::BAD_GATEWAY, "bad_token_response").await;
}

#[tokio::test]
async fn token_endpoint_answering_html_is_a_clean_error() {
    assert_rejected("token-not-json", StatusCode::BAD_GATEWAY, "bad_token_response").await;
}

#[tokio::test]
async fn token_endpoint_refusing_the_code_is_a_400() {
    assert_rejected("token-invalid-grant", StatusCode::BAD_REQUEST, "token_refused").await;
}

#[tokio::test]
async fn token_endpoint_that_hangs_is_a_503_after_the_timeout() {
    assert_rejected("token-slow", StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable").await;
}

#[tokio::test]
async fn token_response_without_an_id_token_is_rejected() {
    assert_rejected("token-no-id-token", StatusCode::BAD_GATEWAY, "bad_token_response").await;
}

#[tokio::test]
async fn refresh_without_a_new_id_token_keeps_the_old_one() {
    let env = TestEnv::start_hostile().await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "mallory", "/auth/login").await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = auth_layer::StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let before = env.client.session(&mut ctx).await.unwrap().unwrap();
    env.provider.set_scenario("refresh-without-id-token").await;
    env.advance_clock(std::time::Duration::from_secs(3600));
    let token = browser.http.get(env.url("/auth/access-token")).send().await.unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = auth_layer::StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let after = env.client.session(&mut ctx).await.unwrap().unwrap();
    assert_ne!(after.token_sets, before.token_sets, "refreshed");
    assert_eq!(after.id_token, before.id_token, "no new ID token: the old one stays");
    assert_eq!(after.user, before.user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_refused_because_another_process_rotated_first_uses_the_newer_token() {
    use auth_layer::store::{ServerSessionStore, SessionStore};
    use auth_layer::{AuthClient, SharedState, StoreContext};
    use std::sync::Arc;

    let env = TestEnv::start_hostile().await;
    env.provider.set_scenario("strict-rotation").await;
    let config = env.client.config().clone();
    let store = Arc::new(ServerSessionStore::in_memory(&config));
    // Two processes sharing the session store but not their state: nothing stops both from
    // sending the same refresh token at once.
    let instance = || {
        AuthClient::builder(config.clone())
            .with_session_store(store.clone())
            .with_shared_state(SharedState::in_memory())
            .build()
    };
    let (a, b) = (instance().await.unwrap(), instance().await.unwrap());
    let cookie = session_due_for_refresh(&config, &store, serde_json::json!({ "sub": "mallory" })).await;
    let request = || StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);

    let (mut on_a, mut on_b) = (request(), request());
    let (from_a, from_b) =
        tokio::join!(a.access_token(&mut on_a, Default::default()), b.access_token(&mut on_b, Default::default()));
    let from_a = from_a.expect("the winner's refresh");
    let from_b = from_b.expect("the loser's refusal does not end the session");
    // The loser found the winner's session stored, its access token fresh: no third grant.
    assert_eq!(from_b.access_token, from_a.access_token, "the loser uses what the winner stored");
    assert_eq!(env.provider.refresh_grants().await, 2, "the winner's and the loser's refused one");
    let stored = store.get(&mut request()).await.unwrap().expect("the session survives the lost race");
    assert_ne!(stored.refresh_token.as_deref(), Some("rt-hostile"), "the rotated refresh token is kept");
    assert!(stored.token_sets.iter().any(|s| s.access_token == from_a.access_token));
}

#[tokio::test]
async fn a_login_that_sent_max_age_needs_a_recent_auth_time() {
    for (scenario, accepted) in [("fresh-auth-time", true), ("stale-auth-time", false), ("ok", false)] {
        let (env, browser, status, code) = login_at(scenario, "/auth/login?max_age=600").await;
        if accepted {
            assert_eq!(status, StatusCode::FOUND, "{scenario}");
        } else {
            // `ok` sends no auth_time at all.
            assert_eq!((status, code.as_deref()), (StatusCode::BAD_REQUEST, Some("invalid_id_token")), "{scenario}");
            let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
            assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "{scenario}: no session");
        }
    }
    // Without max_age, a stale auth_time is no concern of the login.
    assert_accepted("stale-auth-time").await;
}

#[tokio::test]
async fn pushed_authorization_request_failures_are_clean_errors_and_save_no_transaction() {
    let env = TestEnv::start_hostile_configured(|c| c.pushed_authorization_requests(true)).await;
    for (scenario, status, code) in [
        ("par-400", StatusCode::BAD_REQUEST, "provider_refused"),
        ("par-500", StatusCode::BAD_GATEWAY, "bad_token_response"),
        ("par-garbage", StatusCode::BAD_GATEWAY, "bad_token_response"),
        ("par-no-uri", StatusCode::BAD_GATEWAY, "bad_token_response"),
    ] {
        env.provider.set_scenario(scenario).await;
        let response =
            Browser::new().http.get(env.url("/auth/login")).header("accept", "application/json").send().await.unwrap();
        assert_eq!(response.status(), status, "{scenario}");
        assert!(response.headers().get("set-cookie").is_none(), "{scenario}: no transaction saved");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], code, "{scenario}");
    }
    env.provider.set_scenario("ok").await;
    let pushed = Browser::new().get(&env.url("/auth/login")).await;
    assert_eq!(pushed.status(), StatusCode::FOUND);
    let location = pushed.headers()["location"].to_str().unwrap();
    let request_uri = env.provider.stats().await["par"].clone();
    assert_eq!(request_uri["client_id"], "test-app", "the parameters were pushed");
    assert!(location.contains("request_uri=urn%3Aietf%3Aparams%3Aoauth%3Arequest_uri%3A"), "{location}");
}

#[tokio::test]
async fn userinfo_claims_are_merged_under_the_id_tokens_and_must_name_the_same_sub() {
    for (scenario, status, code) in [
        ("ok", StatusCode::FOUND, None),
        ("userinfo-other-sub", StatusCode::BAD_REQUEST, Some("invalid_id_token")),
        ("userinfo-500", StatusCode::BAD_GATEWAY, Some("bad_token_response")),
    ] {
        let env = TestEnv::start_hostile_configured(|c| c.fetch_userinfo(true)).await;
        env.provider.set_scenario(scenario).await;
        let browser = Browser::new();
        let callback = browser.start_and_authorize(&env.app_url, "mallory", "/auth/login").await;
        let response = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
        assert_eq!(response.status(), status, "{scenario}");
        let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
        match code {
            None => {
                let me: Value = profile.json().await.unwrap();
                assert_eq!(me["favourite_color"], "green", "a userinfo-only claim is added");
                assert_eq!(me["name"], "Mallory", "the ID token's claim wins");
            }
            Some(code) => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], code, "{scenario}");
                assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "{scenario}: no session");
            }
        }
    }
}

#[tokio::test]
async fn essential_acr_values_must_be_met_and_voluntary_ones_are_only_exposed() {
    for (essential, scenario, accepted) in
        [(true, "acr-mfa", true), (true, "acr-pwd", false), (true, "ok", false), (false, "acr-pwd", true)]
    {
        let env = TestEnv::start_hostile_configured(|c| c.acr_values_essential(essential)).await;
        env.provider.set_scenario(scenario).await;
        let browser = Browser::new();
        let callback = browser.start_and_authorize(&env.app_url, "mallory", "/auth/login?acr_values=urn%3Amfa").await;
        let response = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
        let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
        if accepted {
            assert_eq!(response.status(), StatusCode::FOUND, "{essential} {scenario}");
            let me: Value = profile.json().await.unwrap();
            let expected = if scenario == "acr-mfa" { "urn:mfa" } else { "urn:pwd" };
            assert_eq!(me["acr"], expected, "the acr reached is exposed");
        } else {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{essential} {scenario}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "invalid_id_token");
            assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "{scenario}: no session");
        }
    }
}

/// This provider sends `iss` but does not announce it: alone, a response without `iss` is
/// taken (RFC 9207 lets a client that knows one provider); as a tenant of a multi-tenant app,
/// it is refused (the mix-up defence needs it).
#[tokio::test]
async fn a_tenant_requires_iss_even_from_a_provider_that_does_not_announce_it() {
    for tenant in [None, Some("solo")] {
        let env = TestEnv::start_hostile_configured(|config| match tenant {
            Some(id) => config.tenant(id),
            None => config,
        })
        .await;
        let browser = Browser::new();
        let callback =
            url::Url::parse(&browser.start_and_authorize(&env.app_url, "mallory", "/auth/login").await).unwrap();
        let mut without_iss = callback.clone();
        without_iss.query_pairs_mut().clear().extend_pairs(callback.query_pairs().filter(|(name, _)| name != "iss"));
        let response = browser.http.get(without_iss).header("accept", "application/json").send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match tenant {
            None => assert_eq!(status, StatusCode::FOUND, "one provider, not announced: taken ({body})"),
            Some(_) => assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("issuer_mismatch"))),
        }
    }
}

/// The app pins an organization and an essential `acr`: a login link cannot change either,
/// and the callback holds the ID token to what the app configured.
#[tokio::test]
async fn a_login_link_cannot_replace_the_organization_or_the_acr_the_app_configured() {
    let env = TestEnv::start_hostile_configured(|c| {
        c.authorization_param("organization", "org_acme")
            .authorization_param("acr_values", "urn:mfa")
            .acr_values_essential(true)
    })
    .await;
    let browser = Browser::new();
    for link in ["/auth/login?organization=org_globex", "/auth/login?acr_values=urn%3Apwd", "/auth/login?max_age=abc"] {
        let response = browser.http.get(env.url(link)).header("accept", "application/json").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{link}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request", "{link}");
    }
    let same = browser.http.get(env.url("/auth/login?organization=org_acme")).send().await.unwrap();
    assert_eq!(same.status(), StatusCode::FOUND, "the configured value repeated is no change");
    let authorize = url::Url::parse(same.headers()["location"].to_str().unwrap()).unwrap();
    let sent: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    assert!(sent.contains(&("organization".into(), "org_acme".into())), "{sent:?}");
    assert!(sent.contains(&("acr_values".into(), "urn:mfa".into())), "{sent:?}");

    for (scenario, accepted) in [("org-globex-mfa", false), ("org-acme-pwd", false), ("org-acme-mfa", true)] {
        env.provider.set_scenario(scenario).await;
        let browser = Browser::new();
        let callback = browser.start_and_authorize(&env.app_url, "mallory", "/auth/login").await;
        let response = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
        let profile = browser.http.get(env.url("/auth/profile")).send().await.unwrap();
        if accepted {
            assert_eq!(response.status(), StatusCode::FOUND, "{scenario}");
            assert_eq!(profile.status(), StatusCode::OK, "{scenario}");
        } else {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{scenario}");
            assert_eq!(response.json::<Value>().await.unwrap()["error"], "invalid_id_token", "{scenario}");
            assert_eq!(profile.status(), StatusCode::UNAUTHORIZED, "{scenario}: no session");
        }
    }
}

/// A step-up guard sends the browser straight to the provider with its own requirements (the
/// route's allowlist passes nothing here), and a login that comes back still short ends in 403
/// after one round, the session from before kept; one that meets them reaches the page.
#[tokio::test]
async fn a_step_up_that_comes_back_short_is_refused_once_not_sent_round_again() {
    use auth_layer::{AuthLayer, RequireAuthLayer, User};
    async fn acr(user: User) -> String {
        user.acr().unwrap_or("none").to_owned()
    }
    let env = TestEnv::start_hostile_custom(
        |c| c.login_query_params(Vec::<String>::new()),
        |client| {
            axum::Router::new()
                .route("/pay", axum::routing::get(|| async { "paid" }))
                .route_layer(RequireAuthLayer::new().acr_values(["urn:mfa"]))
                .route("/acr", axum::routing::get(acr))
                .layer(AuthLayer::new(client))
        },
    )
    .await;
    env.provider.set_scenario("acr-pwd").await;
    let browser = Browser::new();
    assert_eq!(browser.login(&env.app_url, "mallory").await.status(), StatusCode::FOUND);
    assert_eq!(browser.get(&env.url("/acr")).await.text().await.unwrap(), "urn:pwd");

    let guarded = browser.get(&env.url("/pay")).await;
    assert_eq!(guarded.status(), StatusCode::FOUND);
    let authorize = url::Url::parse(guarded.headers()["location"].to_str().unwrap()).unwrap();
    assert!(authorize.as_str().starts_with(&env.provider.issuer), "straight to the provider: {authorize}");
    let sent: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    assert!(sent.contains(&("acr_values".into(), "urn:mfa".into())), "the guard's acr reaches it: {sent:?}");

    let callback = browser.through_provider(guarded, "mallory", &format!("{}/", env.app_url)).await;
    let short = browser.get(&callback).await;
    assert_eq!(short.status(), StatusCode::FORBIDDEN, "short after one round: no redirect back to the guard");
    assert!(short.text().await.unwrap().contains("insufficient_user_authentication"));
    assert_eq!(browser.get(&env.url("/acr")).await.text().await.unwrap(), "urn:pwd", "the session from before");

    env.provider.set_scenario("acr-mfa").await;
    let guarded = browser.get(&env.url("/pay")).await;
    let callback = browser.through_provider(guarded, "mallory", &format!("{}/", env.app_url)).await;
    let back = browser.get(&callback).await;
    assert_eq!(back.headers()["location"], env.url("/pay"));
    let paid = browser.get(&env.url("/pay")).await;
    assert_eq!((paid.status(), paid.text().await.unwrap()), (StatusCode::OK, "paid".to_owned()));
}

/// A refresh that brings a new ID token (without the claims userinfo gave at login) keeps those
/// claims; the new ID token's own win.
#[tokio::test]
async fn claims_userinfo_gave_at_login_survive_a_refresh_with_a_new_id_token() {
    use auth_layer::{AccessTokenOptions, StoreContext};
    let env = TestEnv::start_hostile_configured(|c| c.fetch_userinfo(true)).await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "mallory", "/auth/login").await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let before = env.client.session(&mut ctx).await.unwrap().unwrap();
    assert_eq!(before.user.claims()["favourite_color"], "green");
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.unwrap();
    let refreshed = auth_layer_tests::cookies_after(ctx).expect("the refreshed session's cookie");
    let mut ctx = StoreContext::from_cookie_headers([&refreshed.parse().unwrap()]);
    let after = env.client.session(&mut ctx).await.unwrap().unwrap();
    assert_ne!(after.id_token, before.id_token, "a new ID token");
    assert_eq!(after.user.claims()["favourite_color"], "green", "kept: {:?}", after.user.claims());
    assert_eq!(after.user.claims()["name"], "Mallory");
}

/// A session of `mallory` with `claims` saved in `store`, its access token expired and its
/// refresh token the hostile provider's (a refresh is due without moving the clock, so a
/// refreshed ID token is fresh): the cookie of a request carrying it.
async fn session_due_for_refresh(
    config: &auth_layer::AuthConfig,
    store: &std::sync::Arc<auth_layer::store::ServerSessionStore>,
    claims: serde_json::Value,
) -> String {
    use auth_layer::store::SessionStore;
    use auth_layer::{SessionData, TokenSet, User};
    let now = config.clock().now();
    let mut session =
        SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "id".into(), now);
    session.refresh_token = Some("rt-hostile".into());
    session.token_sets.push(TokenSet {
        audience: None,
        scope: "openid".into(),
        access_token: "expired".into(),
        expires_at: Some(now - 10),
    });
    let mut login = auth_layer::StoreContext::default();
    store.set(&mut login, &session).await.unwrap();
    auth_layer_tests::cookies_after(login).expect("a session cookie")
}

/// A process of the hostile provider's app keeping its sessions in `store`, and the cookie of
/// a session of `mallory` with `claims` due for a refresh ([`session_due_for_refresh`]).
async fn due_for_refresh(
    env: &TestEnv,
    store: &std::sync::Arc<auth_layer::store::ServerSessionStore>,
    claims: serde_json::Value,
) -> (auth_layer::AuthClient, String) {
    let config = env.client.config();
    let client =
        auth_layer::AuthClient::builder(config.clone()).with_server_sessions(store.clone()).build().await.unwrap();
    (client, session_due_for_refresh(config, store, claims).await)
}

/// OpenID Connect Core 12.2: a refreshed ID token's `auth_time` is the original
/// authentication's. One naming another authentication is refused and the session ends; the
/// same answer for a session whose ID token had no `auth_time` is taken.
#[tokio::test]
async fn a_refreshed_id_token_with_another_auth_time_ends_the_session() {
    use auth_layer::store::{ServerSessionStore, SessionStore};
    let env = TestEnv::start_hostile().await;
    let store = std::sync::Arc::new(ServerSessionStore::in_memory(env.client.config()));
    env.provider.set_scenario("stale-auth-time").await;
    let request = |cookie: &str| auth_layer::StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);

    let (client, cookie) =
        due_for_refresh(&env, &store, serde_json::json!({"sub": "mallory", "auth_time": 1_000})).await;
    let err = client.access_token(&mut request(&cookie), Default::default()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_id_token", "{err}");
    assert!(store.get(&mut request(&cookie)).await.unwrap().is_none(), "the session ended");

    let (client, cookie) = due_for_refresh(&env, &store, serde_json::json!({"sub": "mallory"})).await;
    let token = client.access_token(&mut request(&cookie), Default::default()).await;
    assert!(token.is_ok(), "no auth_time before: nothing to compare ({:?})", token.err());
    assert_eq!(env.provider.refresh_grants().await, 2);
}

/// A refresh the provider answers with a 5xx: the provider is failing, not refusing. The
/// session stays, the error is a 503 (`provider_unavailable`), and the next refresh goes
/// through.
#[tokio::test]
async fn a_refresh_answered_with_a_server_error_keeps_the_session_and_answers_503() {
    use auth_layer::store::{ServerSessionStore, SessionStore};
    let env = TestEnv::start_hostile().await;
    let store = std::sync::Arc::new(ServerSessionStore::in_memory(env.client.config()));
    let request = |cookie: &str| auth_layer::StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let (client, cookie) = due_for_refresh(&env, &store, serde_json::json!({"sub": "mallory"})).await;
    env.provider.set_scenario("refresh-500").await;
    let err = client.access_token(&mut request(&cookie), Default::default()).await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("provider_unavailable", StatusCode::SERVICE_UNAVAILABLE), "{err}");
    assert!(store.get(&mut request(&cookie)).await.unwrap().is_some(), "the session stays");
    env.provider.set_scenario("default").await;
    let token = client.access_token(&mut request(&cookie), Default::default()).await;
    assert!(token.is_ok(), "the provider is back: the refresh goes through ({:?})", token.err());
    assert_eq!(env.provider.refresh_grants().await, 2);
}
