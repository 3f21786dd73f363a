//! The login loop again with sessions on the server (moka), only an id in the cookie.

use std::time::Duration;

use auth_layer_tests::{Browser, EnvOptions, TestEnv};
use quickstart::StoreChoice;
use reqwest::StatusCode;

async fn start() -> TestEnv {
    TestEnv::start_with(EnvOptions { store: StoreChoice::Memory, ..EnvOptions::default() }).await
}

fn session_id(browser: &Browser, env: &TestEnv) -> String {
    let header = browser.cookie_header(&env.url("/"));
    header.split("; ").find_map(|c| c.strip_prefix("_a0_session=")).unwrap_or_default().to_owned()
}

async fn profile_status(browser: &Browser, env: &TestEnv) -> StatusCode {
    browser.http.get(env.url("/auth/profile")).header("accept", "application/json").send().await.unwrap().status()
}

#[tokio::test]
async fn login_keeps_only_a_random_id_in_the_cookie() {
    let env = start().await;
    let browser = Browser::new();
    let callback = browser.login(&env.app_url, "alice").await;
    assert_eq!(callback.status(), StatusCode::FOUND);
    let id = session_id(&browser, &env);
    assert_eq!(id.len(), 43, "256 random bits, base64url: {id}");
    assert!(!browser.cookie_header(&env.url("/")).contains("_a0_session.0"), "no chunks");
    let me: serde_json::Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["sub"], "alice");
    assert_eq!(browser.get(&env.url("/private")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn large_claims_stay_on_the_server() {
    let env = start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "bigbea").await;
    assert_eq!(session_id(&browser, &env).len(), 43);
    let me: serde_json::Value = browser.http.get(env.url("/auth/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["bio"].as_str().unwrap().len(), 6000);
}

#[tokio::test]
async fn logout_deletes_the_record_so_a_copied_cookie_stops_working() {
    let env = start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "carl").await;
    let copied = browser.cookie_header(&env.url("/"));
    let logout = browser.get(&env.url("/auth/logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    assert_eq!(profile_status(&browser, &env).await, StatusCode::UNAUTHORIZED);
    let replayed = reqwest::Client::new().get(env.url("/auth/profile")).header("cookie", copied).send().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED, "the server-side record is gone");
}

#[tokio::test]
async fn second_login_gets_a_new_id_and_the_old_one_is_dead() {
    let env = start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "dina").await;
    let first = session_id(&browser, &env);
    browser.login(&env.app_url, "dina").await;
    let second = session_id(&browser, &env);
    assert_ne!(first, second);
    let old = reqwest::Client::new()
        .get(env.url("/auth/profile"))
        .header("cookie", format!("_a0_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "the old session was deleted at the new login");
    assert_eq!(profile_status(&browser, &env).await, StatusCode::OK);
}

#[tokio::test]
async fn session_survives_many_requests() {
    let env = start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "eli").await;
    let id = session_id(&browser, &env);
    for _ in 0..200 {
        let home = browser.get(&env.url("/")).await;
        assert!(home.headers().get("set-cookie").is_none(), "no write on a fresh session");
        assert!(home.text().await.unwrap().contains("Logged in"));
    }
    assert_eq!(session_id(&browser, &env), id);
}

#[tokio::test]
async fn inactivity_and_absolute_limits_end_server_sessions() {
    let env = start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "fay").await;
    let id = session_id(&browser, &env);
    for _ in 0..5 {
        env.advance_clock(Duration::from_secs(13 * 3600));
        assert_eq!(profile_status(&browser, &env).await, StatusCode::OK, "rolling renewal keeps it alive");
    }
    assert_eq!(session_id(&browser, &env), id, "renewal keeps the id");
    env.advance_clock(Duration::from_secs(8 * 3600));
    assert_eq!(profile_status(&browser, &env).await, StatusCode::UNAUTHORIZED, "3 days after login it ends");

    let idle = Browser::new();
    idle.login(&env.app_url, "fay").await;
    env.advance_clock(Duration::from_secs(86_400 + 1));
    assert_eq!(profile_status(&idle, &env).await, StatusCode::UNAUTHORIZED, "a day idle ends it");
}
