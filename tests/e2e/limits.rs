//! Oversized and odd input is refused with a 4xx before any expensive work, and the server keeps
//! serving: long queries, long `returnTo`, many or huge cookies, deep JSON in a logout token.

use auth_layer_tests::{Browser, TestEnv};
use reqwest::StatusCode;

async fn still_serving(env: &TestEnv) {
    let home = reqwest::get(env.url("/")).await.unwrap();
    assert_eq!(home.status(), StatusCode::OK, "the server still serves");
}

#[tokio::test]
async fn oversized_queries_are_refused() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    let long = "a".repeat(10_000);
    for path in [
        format!("/auth/callback?state=s&code={long}"),
        format!("/auth/login?returnTo=/{long}"),
        format!("/auth/logout?returnTo=/{long}"),
        format!("/auth/login?x={long}"),
    ] {
        let response = http.get(env.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{}", &path[..30]);
    }
    still_serving(&env).await;
}

#[tokio::test]
async fn many_cookies_are_read_up_to_a_bound() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "lim").await;
    let session = browser.cookie_header(&env.url("/"));
    let crowd: Vec<String> = (0..500).map(|i| format!("c{i}=v")).collect();
    let http = reqwest::Client::new();
    // The session cookie after 500 others is past the bound: not read, so logged out (401).
    let buried = format!("{}; {session}", crowd.join("; "));
    let response = http.get(env.url("/auth/profile")).header("cookie", buried).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Before them, it is read.
    let first = format!("{session}; {}", crowd.join("; "));
    let response = http.get(env.url("/auth/profile")).header("cookie", first).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    still_serving(&env).await;
}

#[tokio::test]
async fn huge_cookie_headers_are_refused_and_the_server_survives() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    let huge = format!("_a0_session={}", "A".repeat(1_000_000));
    // The server may close the connection instead of answering; if it answers, it is a 4xx.
    if let Ok(response) = http.get(env.url("/auth/profile")).header("cookie", huge).send().await {
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let chunked: Vec<String> = (0..20).map(|i| format!("_a0_session.{i}={}", "A".repeat(3000))).collect();
    let response = http.get(env.url("/auth/profile")).header("cookie", chunked.join("; ")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "too many chunks: no session, no decryption");
    still_serving(&env).await;
}

#[tokio::test]
async fn deeply_nested_json_in_a_logout_token_is_refused() {
    let env = TestEnv::start().await;
    let mut nested = serde_json::json!({});
    for _ in 0..200 {
        nested = serde_json::json!({ "a": nested });
    }
    let claims = serde_json::json!({ "iss": env.provider.issuer, "aud": "test-app", "deep": nested });
    let token = env.provider.sign(serde_json::json!({}), claims, "provider").await;
    let response = reqwest::Client::new()
        .post(env.url("/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    still_serving(&env).await;
}
