//! The login loop against the real provider: login, session, logout, parallel logins, chunked
//! sessions, bad cookies, expiry and rejected callbacks, on the axum quickstart, the plain hyper
//! example, and routes an app writes itself over `AuthClient`.

use std::time::Duration;

use auth_layer::{AuthClient, LoginOptions, LogoutOptions, StoreContext, TokenEndpointAuth};
use auth_layer_tests::{AppKind, Browser, EnvOptions, ProviderOptions, TestEnv};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxStatus};
use axum::response::{IntoResponse, Redirect, Response as AxResponse};
use reqwest::StatusCode;
use url::Url;

async fn profile(browser: &Browser, env: &TestEnv) -> reqwest::Response {
    browser.http.get(env.url("/auth/profile")).header("accept", "application/json").send().await.unwrap()
}

async fn assert_logged_out(browser: &Browser, env: &TestEnv) {
    let response = profile(browser, env).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_authenticated");
}

fn session_cookie(browser: &Browser, env: &TestEnv) -> String {
    browser
        .cookie_header(&env.url("/"))
        .split("; ")
        .filter(|c| c.starts_with("_a0_session"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn full_login_gives_a_profile_and_the_private_page() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let callback = browser.login(&env.app_url, "alice").await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(callback.headers()["location"], env.url("/"));
    assert_eq!(callback.headers()["cache-control"], "no-store");
    let set_cookies: Vec<_> =
        callback.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let session = set_cookies.iter().find(|c| c.starts_with("_a0_session=")).expect("session cookie set");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(session.contains(attribute), "{attribute} missing: {session}");
    }
    assert!(!session.contains("Secure"), "no Secure flag on an http base URL");
    assert!(
        set_cookies.iter().any(|c| c.starts_with("_a0_tx.") && c.contains("Max-Age=0")),
        "transaction cookie cleared"
    );

    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["email"], "alice@example.test");
    assert!(me.get("nonce").is_none() && me.get("aud").is_none());

    let private = browser.get(&env.url("/private")).await;
    assert_eq!(private.status(), StatusCode::OK);
    assert!(private.text().await.unwrap().contains("alice"));
    let home = browser.get(&env.url("/")).await.text().await.unwrap();
    assert!(home.contains("Logged in as <strong id=\"name\">Alice</strong>"), "{home}");
}

#[tokio::test]
async fn login_with_client_secret_post_works() {
    let env =
        TestEnv::start_with(EnvOptions { token_auth: TokenEndpointAuth::ClientSecretPost, ..EnvOptions::default() })
            .await;
    let browser = Browser::new();
    assert_eq!(browser.login(&env.app_url, "post-user").await.status(), StatusCode::FOUND);
    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["sub"], "post-user");
}

#[tokio::test]
async fn authorization_request_uses_pkce_state_and_nonce_and_keeps_return_to_out_of_redirect_uri() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let start = browser.get(&env.url("/auth/login?returnTo=%2Fprivate%3Fx%3D1")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let location = Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let params: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["redirect_uri"], env.url("/auth/callback"));
    assert!(params["state"].len() >= 43 && params["nonce"].len() >= 43);
    assert!(params["scope"].contains("openid") && params["scope"].contains("offline_access"));

    let again = browser.get(&env.url("/auth/login")).await;
    let again = Url::parse(again.headers()["location"].to_str().unwrap()).unwrap();
    let again: std::collections::HashMap<_, _> = again.query_pairs().into_owned().collect();
    assert_ne!(params["state"], again["state"]);
    assert_ne!(params["nonce"], again["nonce"]);
    assert_ne!(params["code_challenge"], again["code_challenge"]);

    let callback = browser.through_provider(start, "carol", &env.url("/")).await;
    assert!(!callback.contains("private"), "the return path never travels through the provider: {callback}");
    let landed = browser.get(&callback).await;
    assert_eq!(landed.headers()["location"], env.url("/private?x=1"));
}

#[tokio::test]
async fn return_to_other_origins_is_refused() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    for bad in ["%2F%2Fevil.example", "https%3A%2F%2Fevil.example%2F", "%2F%5Cevil.example", "%2Fok%0D%0Ax"] {
        let response = browser.get(&env.url(&format!("/auth/login?returnTo={bad}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn logout_ends_the_session_and_lands_on_the_providers_end_session_page() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "dave").await;
    let id_token = {
        let mut ctx = StoreContext::from_cookie_headers([&session_cookie(&browser, &env).parse().unwrap()]);
        env.client.session(&mut ctx).await.unwrap().unwrap().id_token.clone()
    };
    let before = session_cookie(&browser, &env);
    let logout = browser.get(&env.url("/auth/logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    let cleared: Vec<_> =
        logout.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert!(cleared.iter().any(|c| c.starts_with("_a0_session=;") && c.contains("Max-Age=0")), "{cleared:?}");
    let end_session = Url::parse(logout.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(end_session.as_str().split('?').next().unwrap(), format!("{}/session/end", env.provider.issuer));
    let params: std::collections::HashMap<_, _> = end_session.query_pairs().into_owned().collect();
    assert_eq!(params["id_token_hint"], id_token);
    assert_eq!(params["post_logout_redirect_uri"], env.url("/"));
    assert_eq!(params["client_id"], "test-app");
    assert_logged_out(&browser, &env).await;

    let back = browser.confirm_provider_logout(end_session.as_str()).await;
    assert_eq!(back, env.url("/"));
    assert!(browser.get(&back).await.text().await.unwrap().contains("Logged out"));

    // The cookie the browser had before logout, replayed (a copy taken earlier): the logout
    // marker refuses it, here and through the client.
    let replayed = reqwest::Client::new()
        .get(env.url("/auth/profile"))
        .header("cookie", before.as_str())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED, "a copy of the logged-out cookie");
    assert!(before.starts_with("_a0_session"), "{before}");
    let mut ctx = StoreContext::from_cookie_headers([&before.parse().unwrap()]);
    assert!(env.client.session(&mut ctx).await.unwrap().is_none());
}

#[tokio::test]
async fn real_sessions_travel_in_a_cookie_smaller_than_their_json() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "erin").await;
    let cookie = session_cookie(&browser, &env);
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let session = env.client.session(&mut ctx).await.unwrap().expect("logged in");
    assert!(session.refresh_token.is_some() && !session.token_sets.is_empty(), "the session holds every token");
    // The same session sealed as JSON (the format before): version byte, nonce, tag, base64url.
    let json = serde_json::to_vec(&serde_json::json!({"v": 1, "d": &*session})).unwrap();
    let json_cookie = (1 + 24 + 16 + json.len()).div_ceil(3) * 4;
    let value = cookie.strip_prefix("_a0_session=").expect("one cookie");
    assert!(
        value.len() * 100 <= json_cookie * 85,
        "cookie {} bytes, the same session as JSON would be {json_cookie}",
        value.len()
    );
    // Its tokens are intact: the provider takes the ID token back as `id_token_hint` in
    // `logout_ends_the_session_and_lands_on_the_providers_end_session_page`, and the refresh token
    // in `tokens.rs`.
}

#[tokio::test]
async fn second_login_gets_a_different_session() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "erin").await;
    let first = session_cookie(&browser, &env);
    let first_id = {
        let mut ctx = StoreContext::from_cookie_headers([&first.parse().unwrap()]);
        env.client.session(&mut ctx).await.unwrap().unwrap().id().to_owned()
    };
    browser.login(&env.app_url, "erin").await;
    let second = session_cookie(&browser, &env);
    assert_ne!(first, second);
    let mut ctx = StoreContext::from_cookie_headers([&second.parse().unwrap()]);
    assert_ne!(env.client.session(&mut ctx).await.unwrap().unwrap().id().to_owned(), first_id);
}

/// The cookie store keeps no session on the server, yet a logout through the app ends copies
/// of the cookie taken before it (a marker for the session's id), and a new login works.
#[tokio::test]
async fn logout_ends_a_copied_cookie_session_and_a_new_login_works() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "cora").await;
    let copied = browser.cookie_header(&env.url("/"));
    assert!(copied.contains("_a0_session="), "a cookie session");
    assert_eq!(browser.get(&env.url("/auth/logout")).await.status(), StatusCode::FOUND);
    let replayed = reqwest::Client::new()
        .get(env.url("/auth/profile"))
        .header("cookie", &copied)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED, "a copy taken before the logout is dead");
    browser.login(&env.app_url, "cora").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "a new login is not affected");
}

#[tokio::test]
async fn two_logins_started_in_parallel_both_complete() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let first = browser.start_and_authorize(&env.app_url, "frank", "/auth/login?returnTo=%2Fone").await;
    let second = browser.start_and_authorize(&env.app_url, "frank", "/auth/login?returnTo=%2Ftwo").await;
    let done_second = browser.get(&second).await;
    assert_eq!(done_second.status(), StatusCode::FOUND);
    assert_eq!(done_second.headers()["location"], env.url("/two"));
    let done_first = browser.get(&first).await;
    assert_eq!(done_first.status(), StatusCode::FOUND, "the first tab's login still completes");
    assert_eq!(done_first.headers()["location"], env.url("/one"));
    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["sub"], "frank");
}

#[tokio::test]
async fn session_larger_than_4kb_round_trips_through_chunks() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let callback = browser.login(&env.app_url, "bigbob").await;
    let chunks: Vec<_> = callback
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|c| c.starts_with("_a0_session."))
        .collect();
    assert!(chunks.len() >= 2, "a 6 KB claim needs chunks: {}", chunks.len());
    assert!(chunks.iter().all(|c| c.len() < 4096));
    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["bio"].as_str().unwrap().len(), 6000);
    assert_eq!(browser.get(&env.url("/private")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn tampered_truncated_or_foreign_cookies_mean_logged_out() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "gina").await;
    let good = session_cookie(&browser, &env);
    let value = good.strip_prefix("_a0_session=").unwrap();
    let mut flipped = value.as_bytes().to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let foreign = {
        // A session sealed by another app's secret.
        let other = auth_layer::__private::Sealer::new(
            &["another-app-secret-another-app-secret-00"],
            "auth-layer session cookie v1",
        );
        other.seal("_a0_session", br#"{"v":1,"d":{}}"#)
    };
    let cases = [
        format!("_a0_session={}", String::from_utf8(flipped).unwrap()),
        format!("_a0_session={}", &value[..value.len() / 2]),
        format!("_a0_session={foreign}"),
        "_a0_session=%%%garbage%%%".to_owned(),
        "_a0_session.0=abc; _a0_session.2=def".to_owned(),
    ];
    let http = reqwest::Client::new();
    for cookie in cases {
        for (path, accept) in
            [("/auth/profile", "application/json"), ("/", "text/html"), ("/private", "application/json")]
        {
            let response =
                http.get(env.url(path)).header("cookie", &cookie).header("accept", accept).send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            match path {
                "/" => assert!(status == StatusCode::OK && body.contains("Logged out"), "{cookie}: {status} {body}"),
                _ => assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {cookie}"),
            }
        }
    }
    let still = http.get(env.url("/auth/profile")).header("cookie", &good).send().await.unwrap();
    assert_eq!(still.status(), StatusCode::OK, "the untouched cookie still works");
}

#[tokio::test]
async fn session_past_its_inactivity_limit_is_refused() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "hank").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK);
    env.advance_clock(Duration::from_secs(86_400 + 1));
    assert_logged_out(&browser, &env).await;
}

#[tokio::test]
async fn session_past_its_absolute_limit_is_refused_even_when_active() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "ivy").await;
    let first = session_cookie(&browser, &env);
    // Active every 13 hours: each visit renews the inactivity window (rolling) ...
    for _ in 0..5 {
        env.advance_clock(Duration::from_secs(13 * 3600));
        let home = browser.get(&env.url("/")).await;
        assert!(home.text().await.unwrap().contains("Logged in"));
    }
    assert_ne!(session_cookie(&browser, &env), first, "rolling renewal re-sealed the cookie");
    // ... but 3 days after login the session ends anyway.
    env.advance_clock(Duration::from_secs(8 * 3600));
    assert_logged_out(&browser, &env).await;
}

#[tokio::test]
async fn session_used_recently_is_not_rewritten_on_every_request() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "jay").await;
    let response = browser.get(&env.url("/")).await;
    assert!(response.headers().get("set-cookie").is_none(), "a fresh session is not re-sealed");
    assert!(response.text().await.unwrap().contains("Logged in"));
}

#[tokio::test]
async fn unknown_missing_or_replayed_state_is_rejected_without_a_session() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "kim", "/auth/login").await;
    let url = Url::parse(&callback).unwrap();
    let code = url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    for bad in [
        format!("/auth/callback?code={code}&state=unknown-state"),
        format!("/auth/callback?code={code}"),
        "/auth/callback?state=a%00b".to_owned(),
    ] {
        let response = browser.get(&env.url(&bad)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(response.text().await.unwrap().contains("<html>"), "browsers get a page");
        assert_logged_out(&browser, &env).await;
    }
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND, "the real callback still works");
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "a used state cannot be replayed");
    assert!(replay.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("_a0_session=")));
}

#[tokio::test]
async fn provider_error_at_the_callback_is_a_400_page_and_no_session() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let start = browser.get(&env.url("/auth/login")).await;
    let location = Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let state = location.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let response =
        browser
            .get(&env.url(&format!(
                "/auth/callback?error=access_denied&error_description=User%20said%20%3Cno%3E&state={state}"
            )))
            .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let page = response.text().await.unwrap();
    assert!(page.contains("access_denied"), "the OAuth error code is named: {page}");
    assert!(!page.contains("User said"), "the provider's description (text a crafted URL chooses) is not: {page}");
    assert_logged_out(&browser, &env).await;
}

#[tokio::test]
async fn callback_with_another_issuer_is_rejected_as_a_mix_up() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "lee", "/auth/login").await;
    let mut url = Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" { "https://evil.example".to_owned() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    assert!(pairs.iter().any(|(k, _)| k == "iss"), "the provider sends iss (RFC 9207)");
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let response = browser.http.get(url).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "issuer_mismatch");
    assert_logged_out(&browser, &env).await;
}

/// The real provider announces `authorization_response_iss_parameter_supported`: a response
/// without `iss` is refused (RFC 9207, 2.4), whatever else it carries.
#[tokio::test]
async fn callback_without_iss_is_refused_when_the_provider_announces_it() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "lee", "/auth/login").await;
    let mut url = Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> =
        url.query_pairs().filter(|(k, _)| k != "iss").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let response = browser.http.get(url).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "issuer_mismatch");
    assert_logged_out(&browser, &env).await;
}

#[tokio::test]
async fn protected_route_sends_browsers_to_login_and_api_clients_a_401() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    let response = browser.get(&env.url("/private?tab=2")).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/auth/login?returnTo=%2Fprivate%3Ftab%3D2");
    let api = browser.http.get(env.url("/private")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn auth_routes_refuse_other_methods() {
    let env = TestEnv::start().await;
    let response = Browser::new().http.post(env.url("/auth/login")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn login_works_on_the_plain_hyper_example() {
    let env = TestEnv::start_with(EnvOptions { app: AppKind::Hyper, ..EnvOptions::default() }).await;
    let browser = Browser::new();
    assert_eq!(browser.get(&env.url("/")).await.text().await.unwrap(), "Logged out");
    let guarded = browser.get(&env.url("/private")).await;
    assert_eq!(guarded.status(), StatusCode::FOUND);
    let callback = browser.login(&env.app_url, "hyper-user").await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    assert_eq!(browser.get(&env.url("/")).await.text().await.unwrap(), "Logged in as hyper-user");
    assert_eq!(browser.get(&env.url("/private")).await.text().await.unwrap(), "private page of hyper-user");
    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["sub"], "hyper-user");
    let logout = browser.get(&env.url("/auth/logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    assert_eq!(browser.get(&env.url("/")).await.text().await.unwrap(), "Logged out");
}

// Routes an app writes itself over `AuthClient`, without mounting the layer's routes
// (auth0-fastapi's `mount_routes=False`).

async fn custom_login(State(client): State<AuthClient>, headers: HeaderMap) -> AxResponse {
    let mut ctx = StoreContext::from_headers(&headers);
    let options = LoginOptions::default().return_to("/custom/me").app_state(serde_json::json!({"from": "custom"}));
    match client.start_login(&mut ctx, options).await {
        Ok(url) => with_cookies(ctx, Redirect::to(url.as_str()).into_response()),
        Err(err) => (AxStatus::BAD_REQUEST, err.to_string()).into_response(),
    }
}

async fn custom_callback(State(client): State<AuthClient>, headers: HeaderMap, uri: axum::http::Uri) -> AxResponse {
    let mut ctx = StoreContext::from_headers(&headers);
    match client.complete_login(&mut ctx, uri.query().unwrap_or("")).await {
        Ok(result) => {
            let target =
                format!("{}?app_state={}", result.return_to, result.app_state.unwrap()["from"].as_str().unwrap());
            with_cookies(ctx, Redirect::to(&target).into_response())
        }
        Err(err) => (AxStatus::BAD_REQUEST, err.code()).into_response(),
    }
}

async fn custom_me(State(client): State<AuthClient>, headers: HeaderMap) -> AxResponse {
    let mut ctx = StoreContext::from_headers(&headers);
    match client.user(&mut ctx).await {
        Ok(Some(user)) => user.sub().to_owned().into_response(),
        _ => AxStatus::UNAUTHORIZED.into_response(),
    }
}

async fn custom_logout(
    State(client): State<AuthClient>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> AxResponse {
    let mut ctx = StoreContext::from_headers(&headers);
    let mut options = LogoutOptions::default().param("ui_locales", "fr-CA").param("state", "after-logout");
    options.return_to = q.get("returnTo").cloned();
    let url = client.logout(&mut ctx, options).await.unwrap();
    with_cookies(ctx, Redirect::to(url.as_str()).into_response())
}

fn with_cookies(ctx: StoreContext, mut response: AxResponse) -> AxResponse {
    ctx.apply(response.headers_mut());
    response
}

#[tokio::test]
async fn app_written_routes_over_auth_client_log_in_and_out() {
    let env = TestEnv::start_custom(|client| {
        axum::Router::new()
            .route("/custom/login", axum::routing::get(custom_login))
            // The app's own handler at the registered callback path.
            .route("/auth/callback", axum::routing::get(custom_callback))
            .route("/custom/me", axum::routing::get(custom_me))
            .route("/custom/logout", axum::routing::get(custom_logout))
            .with_state(client)
    })
    .await;
    let browser = Browser::new();
    let start = browser.get(&env.url("/custom/login")).await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let callback = browser.through_provider(start, "mia", &env.url("/")).await;
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(done.headers()["location"], "/custom/me?app_state=custom");
    assert_eq!(browser.get(&env.url("/custom/me")).await.text().await.unwrap(), "mia");
    let logout = browser.get(&env.url("/custom/logout")).await;
    let end_session = Url::parse(logout.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(end_session.path(), "/session/end");
    let params: std::collections::HashMap<_, _> = end_session.query_pairs().into_owned().collect();
    assert_eq!(params["ui_locales"], "fr-CA", "extra logout parameters reach the provider");
    assert_eq!(params["state"], "after-logout");
    assert_eq!(params["client_id"], "test-app");
    let back = browser.confirm_provider_logout(end_session.as_str()).await;
    assert!(back.starts_with(&env.url("/")) && back.contains("state=after-logout"), "{back}");
    assert_eq!(browser.get(&env.url("/custom/me")).await.status(), StatusCode::UNAUTHORIZED);
}

/// Forged logout tokens naming made-up keys spend their own refetch budget (one JWKS fetch per
/// 30 s at most), never the one logins need: the provider rotates its key right after, and the
/// next login succeeds at once, with one refetch shared by logins made together.
#[tokio::test]
async fn forged_logout_tokens_cannot_delay_a_login_after_a_key_rotation() {
    let first = ProviderOptions { signing_kid: Some("key-1".into()), ..ProviderOptions::default() };
    let mut env = TestEnv::start_with(EnvOptions { provider: first, ..EnvOptions::default() }).await;
    let browser = Browser::new();
    assert_eq!(browser.login(&env.app_url, "nina").await.status(), StatusCode::FOUND);

    let at_start = env.provider.jwks_fetches().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for i in 0..10 {
        let claims = serde_json::json!({
            "iss": env.provider.issuer, "aud": "test-app", "iat": now, "exp": now + 60, "jti": format!("forged-{i}"),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "nina",
        });
        let forged = env.provider.sign(serde_json::json!({"kid": format!("made-up-{i}")}), claims, "other").await;
        let response = reqwest::Client::new()
            .post(env.url("/auth/backchannel-logout"))
            .form(&[("logout_token", forged)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "forged token {i}");
    }
    let by_forgeries = env.provider.jwks_fetches().await - at_start;
    assert!(by_forgeries <= 1, "forged tokens: one refetch per 30 s at most, not {by_forgeries}");

    env.provider.restart(&ProviderOptions { signing_kid: Some("key-2".into()), ..ProviderOptions::default() }).await;

    // The provider now signs with key-2, which the app has never seen. Three logins at once.
    let before = env.provider.jwks_fetches().await;
    let browsers = [Browser::new(), Browser::new(), Browser::new()];
    let mut callbacks = Vec::new();
    for b in &browsers {
        callbacks.push(b.start_and_authorize(&env.app_url, "nina", "/auth/login").await);
    }
    let (a, b, c) =
        tokio::join!(browsers[0].get(&callbacks[0]), browsers[1].get(&callbacks[1]), browsers[2].get(&callbacks[2]));
    for response in [&a, &b, &c] {
        assert_eq!(response.status(), StatusCode::FOUND, "a login right after the rotation succeeds");
    }
    assert_eq!(env.provider.jwks_fetches().await - before, 1, "one refetch shared by the logins");
    assert_eq!(profile(&browsers[0], &env).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logout_is_local_when_the_provider_has_no_end_session_endpoint() {
    let options = ProviderOptions { no_end_session: true, ..ProviderOptions::default() };
    let env = TestEnv::start_with(EnvOptions { provider: options, ..EnvOptions::default() }).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "omar").await;
    let logout = browser.get(&env.url("/auth/logout?returnTo=%2Fbye")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    assert_eq!(logout.headers()["location"], env.url("/bye"));
    assert_logged_out(&browser, &env).await;
}

/// The authorization request `/auth/login?{query}` redirects to: its status and parameters.
async fn login_redirect(env: &TestEnv, query: &str) -> (StatusCode, Vec<(String, String)>) {
    let response = Browser::new().get(&env.url(&format!("/auth/login?{query}"))).await;
    let status = response.status();
    let params = response
        .headers()
        .get("location")
        .map(|l| Url::parse(l.to_str().unwrap()).unwrap().query_pairs().into_owned().collect())
        .unwrap_or_default();
    (status, params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    params.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

#[tokio::test]
async fn login_query_parameters_on_the_allowlist_reach_the_provider_and_others_do_not() {
    let env = TestEnv::start().await;
    let (status, params) =
        login_redirect(&env, "screen_hint=signup&login_hint=ann%40example.com&ui_locales=fr&utm_source=mail").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(param(&params, "screen_hint"), ["signup"]);
    assert_eq!(param(&params, "login_hint"), ["ann@example.com"]);
    assert_eq!(param(&params, "ui_locales"), ["fr"]);
    assert!(param(&params, "utm_source").is_empty(), "not on the list: not passed on");
    // The real provider takes them: a login with them completes.
    let browser = Browser::new();
    let start = browser.get(&env.url("/auth/login?login_hint=pat&prompt=login&max_age=0")).await;
    let callback = browser.through_provider(start, "pat", &format!("{}/", env.app_url)).await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn reserved_repeated_or_bad_login_parameters_get_400_and_no_transaction() {
    let env = TestEnv::start().await;
    for query in [
        "client_id=evil",
        "redirect_uri=https%3A%2F%2Fevil.example%2Fcallback",
        "state=chosen",
        "code_challenge=chosen",
        "response_type=token",
        "max_age=soon",
        "prompt=never",
        "prompt=login&prompt=none",
    ] {
        let response = Browser::new().get(&env.url(&format!("/auth/login?{query}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert!(response.headers().get("set-cookie").is_none(), "{query}: no transaction cookie");
    }
}

#[tokio::test]
async fn the_app_chooses_which_login_parameters_pass() {
    let env = TestEnv::start_custom_configured(
        |config| config.login_query_params(["login_hint"]),
        |client| axum::Router::new().layer(auth_layer::AuthLayer::new(client)),
    )
    .await;
    let (status, params) = login_redirect(&env, "login_hint=pat&screen_hint=signup").await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(param(&params, "login_hint"), ["pat"]);
    assert!(param(&params, "screen_hint").is_empty(), "off the app's list");
}

#[tokio::test]
async fn a_login_with_its_own_scope_and_audience_asks_for_them_and_files_the_token_under_that_audience() {
    async fn login_for_orders(State(client): State<AuthClient>) -> AxResponse {
        let mut ctx = StoreContext::default();
        let options = LoginOptions::default().scope("openid profile offline_access").audience("https://orders.example");
        let url = client.start_login(&mut ctx, options).await.unwrap();
        let mut response = Redirect::to(url.as_str()).into_response();
        ctx.apply(response.headers_mut());
        response
    }
    let env = TestEnv::start_custom_configured(
        |config| config.audience("https://api.example"),
        |client| {
            axum::Router::new()
                .route("/login-for-orders", axum::routing::get(login_for_orders))
                .with_state(client.clone())
                .layer(auth_layer::AuthLayer::new(client))
        },
    )
    .await;
    let browser = Browser::new();
    let start = browser.get(&env.url("/login-for-orders")).await;
    let authorize = Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
    let params: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    assert_eq!(param(&params, "audience"), ["https://orders.example"], "this login's audience, once");
    assert_eq!(param(&params, "scope"), ["openid profile offline_access"], "this login's scope");
    let callback = browser.through_provider(start, "val", &format!("{}/", env.app_url)).await;
    assert_eq!(browser.get(&callback).await.status(), StatusCode::FOUND);
    let cookie = browser.cookie_header(&env.url("/"));
    let session = env.client.session(&mut StoreContext::from_cookie_headers([&cookie.parse().unwrap()])).await;
    let session = session.unwrap().expect("logged in");
    let audiences: Vec<Option<&str>> = session.token_sets.iter().map(|s| s.audience.as_deref()).collect();
    assert_eq!(audiences, [Some("https://orders.example")], "filed under the audience this login asked for");
}

/// `POST /auth/logout` with `headers` from a logged-in browser: the status, and whether the
/// session still answers afterwards.
async fn post_logout(env: &TestEnv, browser: &Browser, headers: &[(&str, &str)]) -> (StatusCode, StatusCode) {
    let mut request = browser.http.post(env.url("/auth/logout")).header("accept", "text/html");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let status = request.send().await.unwrap().status();
    (status, profile(browser, env).await.status())
}

#[tokio::test]
async fn post_logout_from_the_apps_own_pages_ends_the_session() {
    let env = TestEnv::start().await;
    for headers in [
        vec![("sec-fetch-site", "same-origin")],
        vec![("origin", env.app_url.as_str())],
        // Neither: not a browser's cross-site form (browsers send one with every POST).
        vec![],
    ] {
        let browser = Browser::new();
        browser.login(&env.app_url, "pat").await;
        let (status, after) = post_logout(&env, &browser, &headers).await;
        assert_eq!(status, StatusCode::FOUND, "{headers:?}: redirected to the provider's logout");
        assert_eq!(after, StatusCode::UNAUTHORIZED, "{headers:?}: the session is over");
    }
}

#[tokio::test]
async fn cross_site_post_logout_is_refused_and_the_session_stays() {
    let env = TestEnv::start().await;
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site"), ("origin", env.app_url.as_str())],
    ] {
        let browser = Browser::new();
        browser.login(&env.app_url, "pat").await;
        let (status, after) = post_logout(&env, &browser, &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(after, StatusCode::OK, "{headers:?}: the session stays");
    }
}

#[tokio::test]
async fn get_logout_from_another_site_or_a_prefetch_is_refused_and_a_same_site_link_works() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-origin"), ("sec-purpose", "prefetch")],
        vec![("purpose", "prefetch")],
    ] {
        let mut request = browser.http.get(env.url("/auth/logout")).header("accept", "text/html");
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "{headers:?}: the session stays");
    }
    let link = browser.http.get(env.url("/auth/logout")).header("sec-fetch-site", "same-site").send().await.unwrap();
    assert_eq!(link.status(), StatusCode::FOUND, "a link from the app's own site logs out");
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn get_logout_can_be_turned_off_leaving_post() {
    let env = TestEnv::start_custom_configured(
        |config| config.logout_by_get(false),
        |client| axum::Router::new().layer(auth_layer::AuthLayer::new(client)),
    )
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    let get = browser.get(&env.url("/auth/logout")).await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()["allow"], "POST");
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "a GET no longer logs out");
    let (status, after) = post_logout(&env, &browser, &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!((status, after), (StatusCode::FOUND, StatusCode::UNAUTHORIZED));
}

#[tokio::test]
async fn logout_return_to_other_origins_is_refused() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    for target in ["https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example", "%2F%5Cevil.example", "javascript%3Aalert(1)"]
    {
        let response = browser.get(&env.url(&format!("/auth/logout?returnTo={target}"))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{target}");
        assert!(response.headers().get("location").is_none(), "{target}: no redirect anywhere");
    }
}

#[tokio::test]
async fn logout_strategies_send_the_browser_where_they_say() {
    use auth_layer::LogoutStrategy;
    let app_only = |client| axum::Router::new().layer(auth_layer::AuthLayer::new(client));
    // `local`: back to the app at once, though the provider has an end-session endpoint.
    let env = TestEnv::start_custom_configured(|c| c.logout_strategy(LogoutStrategy::Local), app_only).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "omar").await;
    let logout = browser.get(&env.url("/auth/logout?returnTo=%2Fbye")).await;
    assert_eq!(logout.headers()["location"], env.url("/bye"));
    assert_logged_out(&browser, &env).await;
    // `v2`: Auth0's logout URL on the issuer's host, with returnTo and client_id.
    let env = TestEnv::start_custom_configured(|c| c.logout_strategy(LogoutStrategy::V2), app_only).await;
    let browser = Browser::new();
    browser.login(&env.app_url, "omar").await;
    let logout = browser.get(&env.url("/auth/logout?returnTo=%2Fbye")).await;
    let location = Url::parse(logout.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.as_str().split('?').next().unwrap(), format!("{}/v2/logout", env.provider.issuer));
    let params: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(param(&params, "returnTo"), [env.url("/bye").as_str()]);
    assert_eq!(param(&params, "client_id"), ["test-app"]);
    assert!(param(&params, "id_token_hint").is_empty(), "v2 takes no id_token_hint");
    assert_logged_out(&browser, &env).await;
    // The return target is the app's own path, set by auth-layer: an extra `returnTo` is refused.
    let mut ctx = StoreContext::default();
    let smuggled =
        env.client.logout(&mut ctx, LogoutOptions::default().param("returnTo", "https://evil.example/")).await;
    assert!(smuggled.is_err(), "an extra returnTo must not reach /v2/logout");
    // `auto` (the default) on a provider with an end-session endpoint: OIDC logout.
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "omar").await;
    let logout = browser.get(&env.url("/auth/logout")).await;
    let location = logout.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!("{}/session/end", env.provider.issuer)), "{location}");
    assert!(location.contains("id_token_hint="));
}

#[tokio::test]
async fn the_oidc_logout_strategy_needs_an_end_session_endpoint() {
    let (provider, config, _, _) = auth_layer_tests::provider_for_own_app_with(
        ProviderOptions { no_end_session: true, ..ProviderOptions::default() },
        |c| c.logout_strategy(auth_layer::LogoutStrategy::Oidc),
    )
    .await;
    let err = AuthClient::new(config).await.unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    assert!(text.contains("end_session_endpoint"), "{text}");
    drop(provider);
}

/// Logs in as `user` through `/auth/login?{query}`: the callback's status, and the profile.
async fn login_with(env: &TestEnv, query: &str, user: &str) -> (StatusCode, Option<serde_json::Value>) {
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, user, &format!("/auth/login?{query}")).await;
    let status = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap().status();
    let me = profile(&browser, env).await;
    let me = (me.status() == StatusCode::OK).then_some(me.json().await.unwrap());
    (status, me)
}

#[tokio::test]
async fn a_login_to_an_organization_needs_the_id_token_to_name_it() {
    let env = TestEnv::start().await;
    // The test provider's "ann.acme" is a member of org_acme, named "acme".
    let (status, me) = login_with(&env, "organization=org_acme", "ann.acme").await;
    assert_eq!(status, StatusCode::FOUND, "by id");
    assert_eq!(me.unwrap()["org_id"], "org_acme", "the session knows the organization");
    let (status, _) = login_with(&env, "organization=ACME", "ann.acme").await;
    assert_eq!(status, StatusCode::FOUND, "by name, case-insensitively");
    for (query, user) in
        [("organization=org_globex", "ann.acme"), ("organization=globex", "ann.acme"), ("organization=org_acme", "pat")]
    {
        let (status, me) = login_with(&env, query, user).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query} as {user}");
        assert!(me.is_none(), "{query} as {user}: no session");
    }
    // No organization asked for: a member logs in as anyone does.
    assert_eq!(login_with(&env, "", "ann.acme").await.0, StatusCode::FOUND);
}

#[tokio::test]
async fn logins_are_pushed_when_the_provider_requires_it_and_a_plain_request_is_refused() {
    let provider = ProviderOptions { require_par: true, ..ProviderOptions::default() };
    let env = TestEnv::start_with(EnvOptions { provider, ..EnvOptions::default() }).await;
    let (status, params) = login_redirect(&env, "screen_hint=signup").await;
    assert_eq!(status, StatusCode::FOUND);
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["client_id", "request_uri"], "the browser carries only these: {params:?}");
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "a pushed login completes");

    // The same provider refuses an authorization request that was not pushed.
    let mut plain = Url::parse(&format!("{}/auth", env.provider.issuer)).unwrap();
    plain
        .query_pairs_mut()
        .append_pair("client_id", "test-app")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &env.url("/auth/callback"))
        .append_pair("scope", "openid")
        .append_pair("state", "s")
        .append_pair("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
        .append_pair("code_challenge_method", "S256");
    let refused = Browser::new().get(plain.as_str()).await;
    let location = refused.headers().get("location").map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(
        refused.status() == StatusCode::BAD_REQUEST || location.contains("error=invalid_request"),
        "a plain request is refused: {} {location}",
        refused.status()
    );
}

#[tokio::test]
async fn pushed_authorization_requests_can_be_turned_on_or_must_not_be_off_when_required() {
    use auth_layer::AuthLayer;
    // On, against a provider that takes them without requiring them.
    let env = TestEnv::start_custom_configured(
        |c| c.pushed_authorization_requests(true),
        |client| axum::Router::new().layer(AuthLayer::new(client)),
    )
    .await;
    let (_, params) = login_redirect(&env, "").await;
    assert!(param(&params, "request_uri").len() == 1 && param(&params, "state").is_empty(), "{params:?}");
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK);
    // Off, against a provider that requires them: the client does not start.
    let (provider, config, _, _) = auth_layer_tests::provider_for_own_app_with(
        ProviderOptions { require_par: true, ..ProviderOptions::default() },
        |c| c.pushed_authorization_requests(false),
    )
    .await;
    let err = AuthClient::new(config).await.unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).map(|s| s.to_string()).unwrap_or_default());
    assert!(chain.contains("pushed"), "{chain}");
    drop(provider);
}

#[tokio::test]
async fn userinfo_at_login_works_against_the_real_provider() {
    let env = TestEnv::start_custom_configured(
        |c| c.fetch_userinfo(true),
        |client| axum::Router::new().layer(auth_layer::AuthLayer::new(client)),
    )
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!((me["sub"].as_str(), me["email"].as_str()), (Some("pat"), Some("pat@example.test")));
    assert_eq!(env.provider.userinfo_calls().await, 1, "one userinfo call, at the login");
}

#[tokio::test]
async fn a_step_up_guard_sends_browsers_to_a_fresh_login_and_api_clients_a_401_challenge() {
    use auth_layer::{AuthLayer, RequireAuthLayer};
    // No clock tolerance, so that a 2-second max_age is 2 seconds (the app and the provider
    // share this machine's clock).
    let env = TestEnv::start_custom_configured(
        |c| c.clock_skew(Duration::ZERO),
        |client| {
            axum::Router::new()
                .route("/pay", axum::routing::get(|| async { "paid" }))
                .route_layer(RequireAuthLayer::new().max_age(Duration::from_secs(2)))
                .layer(AuthLayer::new(client))
        },
    )
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    // A plain login's ID token says nothing of when the user authenticated: the guard cannot
    // know it is recent, and asks, straight at the provider (a login with max_age makes the
    // provider say).
    let unknown = browser.get(&env.url("/pay")).await;
    assert_eq!(unknown.status(), StatusCode::FOUND);
    let authorize = Url::parse(unknown.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(param(&authorize.query_pairs().into_owned().collect::<Vec<_>>(), "max_age"), ["2"]);
    let callback = browser.through_provider(unknown, "pat", &format!("{}/", env.app_url)).await;
    assert_eq!(browser.get(&callback).await.headers()["location"], env.url("/pay"));
    assert_eq!(browser.get(&env.url("/pay")).await.status(), StatusCode::OK, "auth_time known and recent");

    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let api = browser.http.get(env.url("/pay")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let challenge = api.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.contains("error=\"insufficient_user_authentication\"") && challenge.contains("max_age=2"),
        "{challenge}"
    );
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_user_authentication");

    let page = browser.get(&env.url("/pay")).await;
    assert_eq!(page.status(), StatusCode::FOUND);
    let authorize = Url::parse(page.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(param(&authorize.query_pairs().into_owned().collect::<Vec<_>>(), "max_age"), ["2"]);
    // The provider asks for the password again (the session there is older than max_age).
    let callback = browser.through_provider(page, "pat", &format!("{}/", env.app_url)).await;
    let back = browser.get(&callback).await;
    assert_eq!(back.headers()["location"], env.url("/pay"));
    assert_eq!(browser.get(&env.url("/pay")).await.status(), StatusCode::OK, "stepped up");
}

/// An app with silent login on: `/` says who is logged in, or "anonymous".
async fn silent_login_app() -> TestEnv {
    async fn home(session: auth_layer::Session) -> String {
        match session.user().await {
            Ok(Some(user)) => format!("hello {}", user.sub()),
            _ => "anonymous".to_owned(),
        }
    }
    TestEnv::start_custom_configured(
        |c| c.attempt_silent_login(true),
        |client| axum::Router::new().route("/", axum::routing::get(home)).layer(auth_layer::AuthLayer::new(client)),
    )
    .await
}

/// Follows the redirects of a silent login from `response` (to the provider, back to the
/// callback, back to the page) without filling any form; returns the last response.
async fn follow(browser: &Browser, mut response: reqwest::Response) -> reqwest::Response {
    for _ in 0..10 {
        if !response.status().is_redirection() {
            return response;
        }
        let next = response.url().join(response.headers()["location"].to_str().unwrap()).unwrap();
        response = browser.get(next.as_str()).await;
    }
    panic!("a redirect loop");
}

#[tokio::test]
async fn silent_login_logs_in_a_user_logged_in_at_the_provider_without_a_click() {
    let env = silent_login_app().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    // The app's session goes (another device's logout, an expired cookie); the provider's stays.
    browser.jar.add_cookie_str("_a0_session=; Max-Age=0; Path=/", &Url::parse(&env.app_url).unwrap());
    let first = browser.get(&env.url("/")).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    let authorize = Url::parse(first.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(param(&authorize.query_pairs().into_owned().collect::<Vec<_>>(), "prompt"), ["none"]);
    let landed = follow(&browser, first).await;
    assert_eq!(landed.text().await.unwrap(), "hello pat", "logged in again, no form filled");
}

#[tokio::test]
async fn silent_login_brings_an_unknown_user_back_anonymous_once_without_an_error_page_or_a_loop() {
    let env = silent_login_app().await;
    let browser = Browser::new();
    let first = browser.get(&env.url("/?tab=2")).await;
    assert_eq!(first.status(), StatusCode::FOUND, "the first page request tries silently");
    let landed = follow(&browser, first).await;
    assert_eq!(landed.url().path(), "/");
    assert_eq!(landed.url().query(), Some("tab=2"), "back where it was going");
    assert_eq!(landed.status(), StatusCode::OK);
    assert_eq!(landed.text().await.unwrap(), "anonymous", "no error page");
    let again = browser.get(&env.url("/")).await;
    assert_eq!(again.status(), StatusCode::OK, "not tried again on the next page");
    // API requests are never redirected.
    let api = Browser::new().http.get(env.url("/")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(api.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_logout_is_not_undone_by_a_silent_login() {
    let env = silent_login_app().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    let logout = browser.get(&env.url("/auth/logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    // The provider's session is still there (its end-session page is not confirmed here).
    let home = browser.get(&env.url("/")).await;
    assert_eq!(home.status(), StatusCode::OK, "no silent login right after a logout");
    assert_eq!(home.text().await.unwrap(), "anonymous");
}

/// An RSA key pair made with `openssl` in `dir`, named `name`: the private key (PKCS#8 PEM)
/// and the public key (PEM).
fn rsa_key_pair(dir: &std::path::Path, name: &str) -> (String, String) {
    key_pair(dir, name, "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
}

/// A key pair of `openssl genpkey {options}`, as [`rsa_key_pair`].
fn key_pair(dir: &std::path::Path, name: &str, options: &str) -> (String, String) {
    let script = format!(
        "set -e; openssl genpkey {options} -out {name}.pem 2>/dev/null; \
         openssl pkey -in {name}.pem -pubout -out {name}.pub"
    );
    let made = std::process::Command::new("sh").args(["-c", &script]).current_dir(dir).output().unwrap();
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let read = |file: String| std::fs::read_to_string(dir.join(file)).unwrap();
    (read(format!("{name}.pem")), read(format!("{name}.pub")))
}

#[tokio::test]
async fn private_key_jwt_logs_in_and_refreshes_and_a_wrong_key_is_refused() {
    use auth_layer::{AccessTokenOptions, AuthLayer, ClientAssertionAlg};
    let dir = auth_layer_tests::servers::scratch_dir("private-key-jwt");
    let (private, public) = rsa_key_pair(&dir, "client");
    let (other, _) = rsa_key_pair(&dir, "other");
    let registered = ProviderOptions {
        auth_method: Some("private_key_jwt"),
        client_public_key: Some((public, "client-key-1".into())),
        ..ProviderOptions::default()
    };
    let app = |client| axum::Router::new().layer(AuthLayer::new(client));
    for alg in [ClientAssertionAlg::Rs256, ClientAssertionAlg::Ps256] {
        let key = private.clone();
        let env = TestEnv::start_custom_with(
            registered.clone(),
            move |c| c.client_assertion_key(key, alg, Some("client-key-1".into())),
            app,
        )
        .await;
        let browser = Browser::new();
        browser.login(&env.app_url, "pat").await;
        assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "{alg:?}: the code exchange authenticated");
        let cookie = browser.cookie_header(&env.url("/"));
        let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
        let refreshed = env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
        assert!(refreshed.is_ok(), "{alg:?}: the refresh authenticated: {refreshed:?}");
    }
    // Pushed authorization requests authenticate with the key too.
    let key = private.clone();
    let env = TestEnv::start_custom_with(
        ProviderOptions { require_par: true, ..registered.clone() },
        move |c| c.client_assertion_key(key, ClientAssertionAlg::Rs256, Some("client-key-1".into())),
        app,
    )
    .await;
    let (_, params) = login_redirect(&env, "").await;
    assert_eq!(param(&params, "request_uri").len(), 1, "pushed: {params:?}");
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "PAR and the code exchange authenticated");

    // The same key given as a private JWK (its own kid), and a P-256 key for ES256, as PEM and
    // as a JWK.
    let jwk = private_jwk(&private, "client-key-1");
    let env = TestEnv::start_custom_with(
        registered.clone(),
        move |c| c.client_assertion_key(jwk, ClientAssertionAlg::Rs256, None),
        app,
    )
    .await;
    let browser = Browser::new();
    browser.login(&env.app_url, "pat").await;
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "an RSA key as a JWK");
    let (ec_private, ec_public) = key_pair(&dir, "ec", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    let ec_registered = ProviderOptions {
        auth_method: Some("private_key_jwt"),
        client_public_key: Some((ec_public, "client-ec-1".into())),
        ..ProviderOptions::default()
    };
    for key in [ec_private.clone(), private_jwk(&ec_private, "client-ec-1")] {
        let env = TestEnv::start_custom_with(
            ec_registered.clone(),
            move |c| c.client_assertion_key(key, ClientAssertionAlg::Es256, Some("client-ec-1".into())),
            app,
        )
        .await;
        let browser = Browser::new();
        browser.login(&env.app_url, "pat").await;
        assert_eq!(profile(&browser, &env).await.status(), StatusCode::OK, "ES256");
        let cookie = browser.cookie_header(&env.url("/"));
        let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
        let refreshed = env.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
        assert!(refreshed.is_ok(), "ES256 refresh: {refreshed:?}");
    }
    // A key the provider does not know: the code exchange is refused, no session.
    let env = TestEnv::start_custom_with(
        registered,
        move |c| c.client_assertion_key(other, ClientAssertionAlg::Rs256, Some("client-key-1".into())),
        app,
    )
    .await;
    let browser = Browser::new();
    let callback = browser.start_and_authorize(&env.app_url, "pat", "/auth/login").await;
    let response = browser.http.get(&callback).header("accept", "application/json").send().await.unwrap();
    assert!(response.status().is_client_error() || response.status().is_server_error(), "{}", response.status());
    assert_eq!(profile(&browser, &env).await.status(), StatusCode::UNAUTHORIZED, "no session");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `pem` (a private key) as a private JWK with `kid`, by Node's crypto (as a user would export it).
fn private_jwk(pem: &str, kid: &str) -> String {
    let script = "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{\
        const jwk=require('crypto').createPrivateKey(s).export({format:'jwk'});\
        process.stdout.write(JSON.stringify({...jwk,kid:process.argv[1]}))})";
    let mut child = std::process::Command::new("node")
        .args(["-e", script, kid])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), pem.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn the_layer_around_the_whole_router_logs_in_serves_the_user_and_logs_out() {
    async fn private(user: auth_layer::User) -> String {
        format!("private page of {}", user.sub())
    }
    async fn home(user: Option<auth_layer::User>) -> String {
        user.map_or_else(|| "stranger".to_owned(), |user| user.sub().to_owned())
    }
    let env = TestEnv::start_around(|| {
        axum::Router::new().route("/", axum::routing::get(home)).route("/private", axum::routing::get(private))
    })
    .await;
    let browser = Browser::new();
    let api = |path: &str| browser.http.get(env.url(path)).header("accept", "application/json").send();
    assert_eq!(api("/private").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(browser.get(&env.url("/")).await.text().await.unwrap(), "stranger");

    let callback = browser.login(&env.app_url, "alice").await;
    assert_eq!(callback.status(), StatusCode::FOUND, "the callback route is served around the router");
    let private = browser.get(&env.url("/private")).await;
    assert_eq!(private.status(), StatusCode::OK);
    assert_eq!(private.text().await.unwrap(), "private page of alice");
    assert_eq!(browser.get(&env.url("/")).await.text().await.unwrap(), "alice");
    let me: serde_json::Value = profile(&browser, &env).await.json().await.unwrap();
    assert_eq!(me["sub"], "alice");

    assert_eq!(browser.get(&env.url("/auth/logout")).await.status(), StatusCode::FOUND);
    assert_eq!(api("/private").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_logged_out(&browser, &env).await;
}
