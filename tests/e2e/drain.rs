//! Readiness and a rolling restart: three instances of the quickstart (cookie sessions, shared
//! state and logout notices in a private Redis) under a user's load; one is told to stop while
//! a request is in flight, drains and comes back. The others never fail a request, the one
//! stopping never answers an error, its request in flight finishes, `/readyz` turns 503 as the
//! drain starts, and its notice listener leaves Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_layer::AuthLayer;
use auth_layer_tests::servers::RedisServer;
use auth_layer_tests::{Browser, ProviderOptions, provider_for_app_at};
use quickstart::{Drain, SharedChoice, StoreChoice};
use reqwest::StatusCode;
use tokio::sync::oneshot;

/// One instance: the quickstart's app (plus a slow route) served by `serve_until` on
/// `listener`, stopped by sending on the returned channel; the task ends once it drained.
async fn instance(
    listener: tokio::net::TcpListener,
    config: auth_layer::AuthConfig,
    redis: &str,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>) {
    let client = quickstart::client_with(config, StoreChoice::Cookie, SharedChoice::Redis(redis.to_owned()))
        .await
        .expect("the instance's client");
    let router = quickstart::app(AuthLayer::new(client.clone())).route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "finished"
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let drain = Drain { delay: Duration::from_millis(600), timeout: Duration::from_secs(10) };
    let shutdown = async move {
        let _ = stopped.await;
    };
    (stop, tokio::spawn(quickstart::serve_until(listener, router, client, drain, shutdown)))
}

/// `/readyz` of `base`: its status and JSON.
async fn readyz(base: &str) -> Option<(StatusCode, serde_json::Value)> {
    let response = reqwest::get(format!("{base}/readyz")).await.ok()?;
    Some((response.status(), response.json().await.ok()?))
}

/// Waits until `/readyz` of `base` answers 200.
async fn until_ready(base: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some((StatusCode::OK, json)) = readyz(base).await {
            return json;
        }
        assert!(Instant::now() < deadline, "{base} not ready in 15 s: {:?}", readyz(base).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribers of the one channel this Redis has (the logout markers' notices).
fn subscribers(redis: &RedisServer) -> i64 {
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli").args(["-p", &redis.port.to_string()]).args(args).output();
        String::from_utf8(out.expect("redis-cli").stdout).unwrap()
    };
    let channels = cli(&["PUBSUB", "CHANNELS"]);
    let Some(channel) = channels.lines().next().filter(|c| !c.is_empty()) else { return 0 };
    cli(&["PUBSUB", "NUMSUB", channel]).lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(-1)
}

/// What the load saw on one instance.
#[derive(Default, Debug)]
struct Seen {
    ok: u64,
    /// Answers other than 200: never acceptable.
    errors: Vec<String>,
    /// Requests that got no answer (connection refused or closed): only the stopped instance's.
    unanswered: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request_and_drains_the_stopped_instance() {
    let redis = RedisServer::start();
    let options = ProviderOptions::default();
    let (provider, config, app_url, first) = provider_for_app_at(options, |config, _| config).await;
    let mut listeners = vec![first];
    for _ in 1..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let urls: Vec<String> =
        listeners.iter().map(|l| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())).collect();
    assert_eq!(urls[0], app_url);
    let mut running = Vec::new();
    for listener in listeners {
        running.push(instance(listener, config.clone(), &redis.url()).await);
    }
    for url in &urls {
        let json = until_ready(url).await;
        assert_eq!(json["store"]["state"], "ok", "{json}");
        assert_eq!(json["shared_state"]["state"], "ok", "{json}");
        assert_eq!(json["notices"]["state"], "ok", "{json}");
        assert_eq!(json["provider"]["state"], "ok", "{json}");
    }
    assert_eq!(subscribers(&redis), 3, "one notice listener per instance");

    // One user, logged in once, its requests spread over the three instances.
    let browser = Browser::new();
    assert_eq!(browser.login(&app_url, "ada").await.status(), StatusCode::FOUND);
    let cookie = browser.cookie_header(&app_url);
    let load_on = Arc::new(AtomicBool::new(true));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (url, cookie, on) = (urls[worker % 3].clone(), cookie.clone(), load_on.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut seen = Seen::default();
            while on.load(Ordering::Relaxed) {
                match http.get(format!("{url}/auth/profile")).header("cookie", &cookie).send().await {
                    Ok(response) if response.status() == StatusCode::OK => seen.ok += 1,
                    Ok(response) => seen.errors.push(format!("{} {:?}", response.status(), response.text().await)),
                    Err(_) => {
                        seen.unanswered += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (worker % 3, seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Instance 1 is told to stop while a slow request is in flight there.
    let slow = tokio::spawn({
        let url = urls[1].clone();
        async move { reqwest::get(format!("{url}/slow")).await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (stop, task) = running.remove(1);
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, json) = readyz(&urls[1]).await.expect("still listening during the drain delay");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(json["draining"], true);
    assert_eq!(slow.await.unwrap().expect("the request in flight is answered"), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("drained in time").unwrap().unwrap();
    assert!(reqwest::get(format!("{}/healthz", urls[1])).await.is_err(), "the listener is closed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscribers(&redis) != 2 {
        assert!(Instant::now() < deadline, "the stopped instance's notice listener still subscribed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // It comes back on the same address and serves the same session.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = tokio::net::TcpListener::bind(urls[1].trim_start_matches("http://")).await.unwrap();
    running.insert(1, instance(listener, config.clone(), &redis.url()).await);
    until_ready(&urls[1]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    load_on.store(false, Ordering::Relaxed);

    let mut by_instance: [Seen; 3] = Default::default();
    for worker in load {
        let (i, seen) = worker.await.unwrap();
        by_instance[i].ok += seen.ok;
        by_instance[i].errors.extend(seen.errors);
        by_instance[i].unanswered += seen.unanswered;
    }
    for (i, seen) in by_instance.iter().enumerate() {
        assert!(seen.errors.is_empty(), "instance {i} answered errors: {seen:?}");
        assert!(seen.ok > 20, "instance {i} served the load: {seen:?}");
        if i != 1 {
            assert_eq!(seen.unanswered, 0, "instance {i} left requests unanswered: {seen:?}");
        }
    }
    let after = reqwest::Client::new().get(format!("{}/auth/profile", urls[1])).header("cookie", &cookie);
    assert_eq!(after.send().await.unwrap().status(), StatusCode::OK, "the session, on the restarted instance");
    for (stop, task) in running {
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_store_is_down_and_recovers_with_it() {
    let mut redis = RedisServer::start();
    let (provider, config, app_url, listener) = provider_for_app_at(ProviderOptions::default(), |c, _| c).await;
    let (stop, task) = instance(listener, config, &redis.url()).await;
    until_ready(&app_url).await;
    assert_eq!(reqwest::get(format!("{app_url}/healthz")).await.unwrap().status(), StatusCode::OK);
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    let json = loop {
        if let Some((StatusCode::SERVICE_UNAVAILABLE, json)) = readyz(&app_url).await
            && json["shared_state"]["state"] == "failing"
            && json["notices"]["state"] == "failing"
        {
            break json;
        }
        assert!(Instant::now() < deadline, "not reported down: {:?}", readyz(&app_url).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(json["ready"], false, "{json}");
    assert_eq!(json["store"]["state"], "failing", "the cookie store's markers live there too: {json}");
    assert_eq!(reqwest::get(format!("{app_url}/healthz")).await.unwrap().status(), StatusCode::OK, "alive");
    redis.restart();
    let json = until_ready(&app_url).await;
    assert_eq!(json["ready"], true);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    drop(provider);
}
