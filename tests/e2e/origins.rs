//! An app served at two origins behind a proxy it trusts, against the real provider: each
//! login's `redirect_uri`, return and cookies follow the origin it started on; a host the app
//! does not list gets 400; forwarded headers count only from the trusted peer, never from
//! anyone else.

use std::net::SocketAddr;

use auth_layer::{AuthClient, AuthLayer, PeerAddr};
use auth_layer_tests::{Browser, ProviderOptions, provider_for_app_at};
use reqwest::StatusCode;
use tower::ServiceExt;

/// The `redirect_uri` of an authorization URL.
fn redirect_uri(authorize: &str) -> String {
    let url = url::Url::parse(authorize).unwrap();
    url.query_pairs().find(|(k, _)| k == "redirect_uri").map(|(_, v)| v.into_owned()).expect("a redirect_uri")
}

/// Where `GET {url}` with `headers` is sent: the `Location` of its redirect, or its status.
async fn login_at(url: &str, headers: &[(&str, &str)]) -> Result<String, (StatusCode, String)> {
    let mut request = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.header("accept", "application/json").send().await.unwrap();
    match response.status() {
        StatusCode::FOUND => Ok(response.headers()["location"].to_str().unwrap().to_owned()),
        status => Err((status, response.text().await.unwrap())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_login_follows_its_origin_and_forwarded_headers_count_only_from_the_trusted_proxy() {
    let options = ProviderOptions { localhost_origin: true, ..ProviderOptions::default() };
    let (provider, config, app_url, listener) = provider_for_app_at(options, |config, app_url| {
        // The test's own loopback connections are the proxy's.
        config
            .public_origins([app_url.replace("127.0.0.1", "localhost")])
            .trusted_proxies("127.0.0.1, ::1".parse().unwrap())
    })
    .await;
    let local = app_url.replace("127.0.0.1", "localhost");
    let port = url::Url::parse(&app_url).unwrap().port().unwrap();
    let client = AuthClient::new(config).await.unwrap();
    let app = quickstart::app(AuthLayer::new(client));
    let served = app.clone();
    tokio::spawn(async move {
        axum::serve(listener, served.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });

    // A login at the second origin: its redirect_uri, its return and its cookies are there.
    let browser = Browser::new();
    let start = browser.get(&format!("{local}/auth/login?returnTo=/private")).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    assert_eq!(redirect_uri(start.headers()["location"].to_str().unwrap()), format!("{local}/auth/callback"));
    let callback = browser.through_provider(start, "alice", &format!("{local}/")).await;
    assert!(callback.starts_with(&format!("{local}/auth/callback?")), "{callback}");
    let done = browser.get(&callback).await;
    assert_eq!(done.status(), StatusCode::FOUND, "{:?}", done.text().await);
    assert_eq!(done.headers()["location"], format!("{local}/private").as_str());
    assert_eq!(browser.get(&format!("{local}/auth/profile")).await.status(), StatusCode::OK);
    assert_eq!(
        browser.get(&format!("{app_url}/auth/profile")).await.status(),
        StatusCode::UNAUTHORIZED,
        "the session's cookies stay at the origin it started on"
    );
    // Its logout returns there too.
    let logout = browser.get(&format!("{local}/auth/logout")).await;
    assert_eq!(logout.status(), StatusCode::FOUND);
    let end_session = url::Url::parse(logout.headers()["location"].to_str().unwrap()).unwrap();
    let back = end_session.query_pairs().find(|(k, _)| k == "post_logout_redirect_uri").unwrap().1.into_owned();
    assert_eq!(back, format!("{local}/"));

    // A login at the base origin names its own callback.
    let to = login_at(&format!("{app_url}/auth/login"), &[]).await.unwrap();
    assert_eq!(redirect_uri(&to), format!("{app_url}/auth/callback"));

    // A callback brought to the other origin finds no login there (its cookies are not sent).
    let other = Browser::new();
    let callback = other.start_and_authorize(&local, "bob", "/auth/login").await;
    let moved = callback.replacen(&local, &app_url, 1);
    assert_eq!(other.get(&moved).await.status(), StatusCode::BAD_REQUEST, "{moved}");

    // A host not listed: 400, on the auth routes and the app's own.
    for path in ["/auth/login", "/private", "/"] {
        let (status, body) = login_at(&format!("{app_url}{path}"), &[("host", "evil.example")]).await.unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body.contains("unknown_host"), "{path}: {body}");
    }

    // From the trusted proxy: the host and scheme it forwarded, checked against the list.
    let from_proxy = |host: &'static str| [("host", "internal:8080"), ("x-forwarded-host", host)];
    let localhost = format!("localhost:{port}");
    let forwarded = [("host", "internal:8080"), ("x-forwarded-host", localhost.as_str())];
    let to = login_at(&format!("{app_url}/auth/login"), &forwarded).await.unwrap();
    assert_eq!(redirect_uri(&to), format!("{local}/auth/callback"));
    let rfc = format!("for=192.0.2.60;proto=http;host=\"localhost:{port}\"");
    let to = login_at(&format!("{app_url}/auth/login"), &[("host", "internal:8080"), ("forwarded", &rfc)]).await;
    assert_eq!(redirect_uri(&to.unwrap()), format!("{local}/auth/callback"));
    let (status, _) = login_at(&format!("{app_url}/auth/login"), &from_proxy("evil.example")).await.unwrap_err();
    assert_eq!(status, StatusCode::BAD_REQUEST, "a forwarded host not listed");
    let https = [("x-forwarded-proto", "https")];
    let (status, _) = login_at(&format!("{app_url}/auth/login"), &https).await.unwrap_err();
    assert_eq!(status, StatusCode::BAD_REQUEST, "a forwarded scheme not listed");

    // The same headers from a peer the app does not trust are ignored: the request's own Host.
    let untrusted = |headers: &[(&str, &str)]| {
        let mut request = axum::http::Request::get("/auth/login");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let peer = PeerAddr(SocketAddr::new("198.51.100.7".parse().unwrap(), 50_000));
        request.extension(peer).body(axum::body::Body::empty()).unwrap()
    };
    let host = format!("127.0.0.1:{port}");
    let spoofed = [
        ("host", host.as_str()),
        ("x-forwarded-host", localhost.as_str()),
        ("x-forwarded-proto", "https"),
        ("forwarded", "host=evil.example;proto=https"),
    ];
    let response = app.clone().oneshot(untrusted(&spoofed)).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response.headers()["location"].to_str().unwrap();
    assert_eq!(redirect_uri(location), format!("{app_url}/auth/callback"), "spoofed headers ignored");
    let via_spoof = [("host", "evil.example"), ("x-forwarded-host", localhost.as_str())];
    let response = app.clone().oneshot(untrusted(&via_spoof)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "an unlisted Host is not saved by a spoofed header");
    drop(provider);
}
