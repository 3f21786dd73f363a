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

/// The auth cookies are found by name however many cookies come first (a page can make a
/// browser carry hundreds under `Path=/auth`, which it sends first); what bounds the work is
/// the bytes read, 64 KB, past which nothing is.
#[tokio::test]
async fn auth_cookies_are_found_behind_many_others_and_the_bytes_read_are_bounded() {
    let env = TestEnv::start().await;
    let browser = Browser::new();
    browser.login(&env.app_url, "lim").await;
    let session = browser.cookie_header(&env.url("/"));
    let crowd: Vec<String> = (0..500).map(|i| format!("_a0_tx.planted{i}=v")).collect();
    let http = reqwest::Client::new();
    let buried = format!("{}; {session}", crowd.join("; "));
    let response = http.get(env.url("/auth/profile")).header("cookie", buried).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "found by name behind 500 cookies");
    let filler = "x".repeat(1_000);
    let heavy: Vec<String> = (0..70).map(|i| format!("f{i}={filler}")).collect();
    let beyond = format!("{}; {session}", heavy.join("; "));
    let response = http.get(env.url("/auth/profile")).header("cookie", beyond).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "past 64 KB of cookies nothing is read");
    let response = http.get(env.url("/auth/profile")).header("cookie", &session).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the same session alone still works");
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let logout = no_redirects.get(env.url("/auth/logout")).header("cookie", format!("{}; {session}", crowd.join("; ")));
    let cleared = logout.send().await.unwrap();
    let set: Vec<&str> = cleared.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap()).collect();
    assert!(
        set.iter().any(|c| c.starts_with("_a0_session=;")),
        "logout sees the session cookie and clears it: {set:?}"
    );
    let removed = set.iter().filter(|c| c.starts_with("_a0_tx.")).count();
    assert!(removed > 0 && removed <= 16, "{removed} planted cookies removed: some, in a response of bounded size");
    still_serving(&env).await;
}

/// Sends `GET /auth/profile` with `cookie` over a plain TCP connection, and returns what the
/// server answered (write errors after the server closed are expected).
async fn raw_request(app_url: &str, cookie: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET /auth/profile HTTP/1.1\r\nhost: {address}\r\ncookie: {cookie}\r\n\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn huge_cookie_headers_are_refused_and_the_server_survives() {
    let env = TestEnv::start().await;
    let http = reqwest::Client::new();
    // Past the cookie store's limit, within the HTTP server's: an answer, and a 4xx.
    let large = format!("_a0_session={}", "A".repeat(100_000));
    let response = http.get(env.url("/auth/profile")).header("cookie", large).send().await.unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());
    // Past the HTTP server's header limit: it answers 431 before the request is read whole, and
    // closes; the answer is read over a raw connection, which (unlike an HTTP client) reads
    // what arrived whether or not the rest of the request could be sent.
    let answer = raw_request(&env.app_url, &format!("_a0_session={}", "A".repeat(1_000_000))).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{:?}", &answer[..answer.len().min(80)]);
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
