//! The quickstart's metrics (`METRICS_ADDR`): after a scripted refused callback, login, refresh
//! and logout against the real provider, the Prometheus scrape shows each counter moved by
//! exactly what happened. One test per process: a process has one metrics recorder.

use std::time::Duration;

use auth_layer::backend::{Backend, PostgresBackend, RedisBackend};
use auth_layer_tests::{Browser, TestEnv};
use bytes::Bytes;
use reqwest::StatusCode;

/// The sum of the series of `name` whose labels include all of `labels`, in a scrape.
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            series_name == name && labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn a_scrape_after_a_login_a_refresh_and_a_logout_shows_each_counted() {
    let handle = quickstart::install_metrics().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_url = format!("http://{}/metrics", listener.local_addr().unwrap());
    tokio::spawn(quickstart::serve_metrics(listener, handle));

    let env = TestEnv::start().await;
    let browser = Browser::new();
    // A callback no login started: refused.
    let forged = browser.get(&env.url("/auth/callback?state=forged&code=stolen")).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    browser.login(&env.app_url, "kim").await;
    // A refresh (forced: the clock stays, so that the provider's logout token is fresh).
    let cookie = browser.cookie_header(&env.url("/"));
    let mut ctx = auth_layer::StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let options = auth_layer::AccessTokenOptions::default().force_refresh();
    assert!(env.client.access_token(&mut ctx, options).await.is_ok(), "refreshed");
    let logout = browser.get(&env.url("/auth/logout")).await;
    let end_session = logout.headers()["location"].to_str().unwrap().to_owned();
    browser.confirm_provider_logout(&end_session).await;
    // The provider's back-channel logout reaches the app as the confirmation is answered.
    let mut scrape = String::new();
    for _ in 0..50 {
        scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        if value(&scrape, "auth_layer_backchannel_logouts_total", &[]) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let expect = |name: &str, labels: &[(&str, &str)], expected: f64| {
        assert_eq!(value(&scrape, name, labels), expected, "{name} {labels:?} in:\n{scrape}");
    };
    expect("auth_layer_logins_started_total", &[], 1.0);
    expect("auth_layer_logins_completed_total", &[], 1.0);
    expect("auth_layer_logins_refused_total", &[("reason", "missing_transaction")], 1.0);
    expect("auth_layer_callback_duration_seconds_count", &[("outcome", "completed")], 1.0);
    expect("auth_layer_callback_duration_seconds_count", &[("outcome", "refused")], 1.0);
    expect("auth_layer_provider_request_duration_seconds_count", &[("endpoint", "token"), ("outcome", "ok")], 2.0);
    expect("auth_layer_refreshes_total", &[("outcome", "granted")], 1.0);
    expect("auth_layer_refresh_wait_duration_seconds_count", &[("scope", "process")], 1.0);
    expect("auth_layer_refresh_wait_duration_seconds_count", &[("scope", "fleet")], 1.0);
    expect("auth_layer_sessions_created_total", &[], 1.0);
    expect("auth_layer_sessions_ended_total", &[("cause", "logout")], 1.0);
    expect("auth_layer_backchannel_logouts_total", &[("outcome", "ended")], 1.0);
    expect("auth_layer_sessions_ended_total", &[("cause", "backchannel")], 1.0);
    // A session renewed once less than half its idle time is left, then found expired.
    let lee = Browser::new();
    lee.login(&env.app_url, "lee").await;
    // A login over the session the browser holds replaces it.
    let again = lee.login(&env.app_url, "lee").await;
    assert_eq!(again.status(), StatusCode::FOUND);
    env.advance_clock(Duration::from_secs(13 * 3600));
    assert_eq!(lee.get(&env.url("/auth/profile")).await.status(), StatusCode::OK, "renewed");
    env.advance_clock(Duration::from_secs(25 * 3600));
    assert_eq!(lee.get(&env.url("/auth/profile")).await.status(), StatusCode::UNAUTHORIZED, "idle too long");
    let scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(value(&scrape, "auth_layer_sessions_renewed_total", &[]), 1.0, "{scrape}");
    assert_eq!(value(&scrape, "auth_layer_sessions_ended_total", &[("cause", "expired")]), 1.0, "{scrape}");
    assert_eq!(value(&scrape, "auth_layer_sessions_ended_total", &[("cause", "replaced")]), 1.0, "{scrape}");

    // A tenant loader: loaded once (a tenant), then served from the cache; a host it knows
    // nothing of (none).
    let tenant = auth_layer::AuthConfig::builder()
        .tenant("b.example")
        .issuer(env.provider.issuer.clone())
        .client_id("test-app")
        .client_secret(auth_layer_tests::CLIENT_SECRET)
        .secret(auth_layer_tests::SECRET)
        .base_url(env.app_url.clone())
        .build()
        .unwrap();
    let tenant = auth_layer::AuthClient::new(tenant).await.unwrap();
    let tenants = auth_layer::Tenants::new().load_with(move |host: String| {
        let tenant = tenant.clone();
        async move { Ok((host == "b.example").then_some(tenant)) }
    });
    let app = quickstart::app(auth_layer::TenantLayer::new(tenants).unwrap());
    for host in ["b.example", "b.example", "b.example", "nobody.example"] {
        use tower::ServiceExt;
        let request = axum::http::Request::get("/auth/login").header("host", host);
        let response = app.clone().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
        let expected = if host == "b.example" { StatusCode::FOUND } else { StatusCode::BAD_REQUEST };
        assert_eq!(response.status().as_u16(), expected.as_u16(), "{host}");
    }
    let scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(value(&scrape, "auth_layer_tenants_loads_total", &[("outcome", "tenant")]), 1.0, "{scrape}");
    assert_eq!(value(&scrape, "auth_layer_tenants_loads_total", &[("outcome", "none")]), 1.0, "{scrape}");
    assert_eq!(value(&scrape, "auth_layer_tenants_cache_hits_total", &[]), 2.0, "{scrape}");

    // The shared backends' operations, timed, and their failures counted: a private Redis
    // server, stopped halfway; PostgreSQL.
    let mut redis = auth_layer_tests::servers::RedisServer::start();
    let backend = RedisBackend::connect(&redis.url()).await.unwrap();
    backend.put("metrics-test", Bytes::from_static(b"v"), None, Vec::new()).await.unwrap();
    assert!(backend.get("metrics-test").await.unwrap().is_some());

    // Notices: a listener connected is in the gauge; one frozen past the silence limit is
    // counted once, however often it is read; a stopped one leaves the gauge.
    let connected = "auth_layer_notices_connected";
    let notices = backend.watch("metrics-notices").expect("Redis pushes notices");
    let heard = async {
        while notices.version().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), heard).await.expect("the listener connects");
    let scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(value(&scrape, connected, &[]), 1.0, "{scrape}");
    redis.pause();
    tokio::time::sleep(auth_layer::backend::Notices::SILENCE_LIMIT + Duration::from_millis(500)).await;
    assert_eq!(notices.version(), None, "silent past the limit");
    assert_eq!(notices.version(), None);
    redis.resume();
    let scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    assert_eq!(value(&scrape, "auth_layer_notices_silences_total", &[]), 1.0, "{scrape}");
    drop(notices);
    let left = async {
        loop {
            let scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
            if value(&scrape, connected, &[]) == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), left).await.expect("the stopped listener leaves the gauge");
    redis.stop();
    assert!(backend.get("metrics-test").await.is_err(), "Redis is down");
    let postgres = PostgresBackend::connect(&auth_layer_tests::servers::database_url()).await.unwrap();
    assert!(postgres.get("metrics-test-absent").await.unwrap().is_none());
    let scrape = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
    let expect = |name: &str, labels: &[(&str, &str)], expected: f64| {
        assert_eq!(value(&scrape, name, labels), expected, "{name} {labels:?} in:\n{scrape}");
    };
    let timed = "auth_layer_store_operation_duration_seconds_count";
    expect(timed, &[("backend", "redis"), ("operation", "put"), ("outcome", "ok")], 1.0);
    expect(timed, &[("backend", "redis"), ("operation", "get"), ("outcome", "ok")], 1.0);
    expect(timed, &[("backend", "redis"), ("operation", "get"), ("outcome", "error")], 1.0);
    expect("auth_layer_store_errors_total", &[("backend", "redis"), ("operation", "get")], 1.0);
    expect(timed, &[("backend", "postgres"), ("operation", "get"), ("outcome", "ok")], 1.0);

    // Histograms with buckets (they add up over a fleet), help texts, and no label naming a
    // user or a session.
    let buckets = value(&scrape, "auth_layer_callback_duration_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(buckets, 4.0, "the refused callback and the three logins: {scrape}");
    assert!(scrape.contains("# HELP auth_layer_logins_started_total"), "{scrape}");
    assert!(!scrape.contains("kim"), "no user in a label");
}
