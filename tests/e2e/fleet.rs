//! Three instances of the app behind one public URL, each with its own layer and caches,
//! sharing Redis or PostgreSQL, for the cookie store (logout markers and shared state in the
//! backend) and the server-side stores; one user's requests spread over all three, and the real
//! provider (rotating refresh tokens, retrying back-channel logouts) behind them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auth_layer::backend::{Backend, PostgresBackend, RedisBackend};
use auth_layer::store::{CookieSessionStore, LogoutTarget, SessionStore, StoreContext};
use auth_layer::{SessionData, User};
use auth_layer_tests::servers::{RedisServer, database_url, redis_url, scratch_dir};
use auth_layer_tests::{Browser, CountingReads, Fleet, ProviderOptions};
use quickstart::{SharedChoice, StoreChoice};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A user name no other test uses: markers and indexes of a shared backend are by user.
fn unique_user(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), auth_layer_tests::free_port())
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The ways to run a fleet: cookie sessions with shared state in Redis or PostgreSQL,
/// server-side sessions in Redis or PostgreSQL (shared state in the same backend by default),
/// and server-side sessions in one SQLite file (the `sqlite-backend` example: processes of one
/// machine sharing a file, as instances restarted one after another do).
fn setups() -> [(StoreChoice, SharedChoice); 5] {
    let sqlite = scratch_dir("fleet-sqlite").join(format!("{}.sqlite3", unique_user("sessions")));
    [
        (StoreChoice::Cookie, SharedChoice::Redis(redis_url())),
        (StoreChoice::Cookie, SharedChoice::Postgres(database_url())),
        (StoreChoice::Redis(redis_url()), SharedChoice::Default),
        (StoreChoice::Postgres(database_url()), SharedChoice::Default),
        (StoreChoice::Sqlite(sqlite.display().to_string()), SharedChoice::Default),
    ]
}

/// A `GET` of `url` sending `cookie`, asking for JSON.
async fn get_json(url: impl reqwest::IntoUrl, cookie: impl AsRef<str>) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .header("accept", "application/json")
        .header("cookie", cookie.as_ref())
        .send()
        .await
        .unwrap()
}

/// `/auth/profile` on instance `i` with `cookie`: 200 with a session, 401 without.
async fn profile_status(fleet: &Fleet, i: usize, cookie: &str) -> StatusCode {
    get_json(fleet.url(i, "/auth/profile"), cookie).await.status()
}

async fn a_provider_logout_reaching_one_instance_ends_the_session_on_all(store: StoreChoice, shared: SharedChoice) {
    let fleet = Fleet::start(3, store.clone(), shared.clone(), ProviderOptions::default()).await;
    let browser = Browser::new();
    browser.login(&fleet.app_url, &unique_user("ann")).await;
    let cookie = browser.cookie_header(&fleet.url(0, "/"));
    for i in 0..3 {
        // Each instance reads the session once, and keeps it opened in its caches.
        assert_eq!(profile_status(&fleet, i, &cookie).await, StatusCode::OK, "{store:?}/{shared:?}: instance {i}");
    }
    // The provider's own logout page: its back-channel POST reaches instance 0 only.
    browser.confirm_provider_logout(&format!("{}/session/end", fleet.provider.issuer)).await;
    // At once on instance 0; on the others as soon as the backend's notice arrives (cookie
    // sessions; under a millisecond here) or at once (server-side sessions): within 1 s.
    let since = std::time::Instant::now();
    for i in 0..3 {
        while profile_status(&fleet, i, &cookie).await != StatusCode::UNAUTHORIZED {
            assert!(since.elapsed() < Duration::from_secs(1), "{store:?}/{shared:?}: instance {i} still serves it");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_logout_reaching_one_instance_ends_the_session_on_all_three() {
    for (store, shared) in setups() {
        a_provider_logout_reaching_one_instance_ends_the_session_on_all(store, shared).await;
    }
}

async fn fifty_requests_over_three_instances_share_one_refresh(store: StoreChoice, shared: SharedChoice) {
    let provider = ProviderOptions { rotate_refresh: true, ..ProviderOptions::default() };
    let fleet = Fleet::start(3, store.clone(), shared.clone(), provider).await;
    let browser = Browser::new();
    browser.login(&fleet.app_url, &unique_user("bob")).await;
    let cookie = browser.cookie_header(&fleet.url(0, "/"));
    let token = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    };
    let access_token = |i: usize, cookie: String| {
        let url = fleet.url(i, "/auth/access-token");
        async move { get_json(url, cookie).await }
    };
    let first = token(access_token(0, cookie.clone()).await).await;

    // Past the provider's hour, less than the refresh buffer: every request needs a refresh.
    fleet.advance_clock(Duration::from_secs(3600 - 30));
    let requests: Vec<_> = (0..50).map(|i| tokio::spawn(access_token(i % 3, cookie.clone()))).collect();
    let mut tokens = Vec::new();
    let mut renewed_cookies = Vec::new();
    for request in requests {
        let response = request.await.unwrap();
        let set: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        renewed_cookies.push(set.join("; "));
        tokens.push(token(response).await);
    }
    assert_eq!(fleet.provider.refresh_grants().await, 1, "{store:?}/{shared:?}: one grant for the fleet");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "{store:?}/{shared:?}: one refreshed token for all");
    assert_ne!(tokens[0], first, "the token was refreshed");
    // The session survives on every instance, with the refreshed token and no further grant.
    for (i, renewed) in renewed_cookies.iter().take(3).enumerate() {
        let cookie = if renewed.is_empty() { cookie.clone() } else { renewed.clone() };
        assert_eq!(token(access_token(i, cookie).await).await, tokens[0], "{store:?}/{shared:?}: instance {i}");
    }
    assert_eq!(fleet.provider.refresh_grants().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_over_three_instances_make_one_refresh_grant() {
    for (store, shared) in setups() {
        fifty_requests_over_three_instances_share_one_refresh(store, shared).await;
    }
}

async fn a_logout_on_one_instance_stays_final_while_others_renew(store: StoreChoice, shared: SharedChoice) {
    let fleet = Fleet::start(3, store.clone(), shared.clone(), ProviderOptions::default()).await;
    let browser = Browser::new();
    browser.login(&fleet.app_url, &unique_user("cy")).await;
    let cookie = browser.cookie_header(&fleet.url(0, "/"));
    // Past half the inactivity window: every read renews (saves) the session.
    fleet.advance_clock(Duration::from_secs(24 * 3600 * 3 / 5));
    let mut reads = Vec::new();
    for n in 0..30 {
        let (url, cookie) = (fleet.url(1 + n % 2, "/auth/profile"), cookie.clone());
        reads.push(tokio::spawn(async move {
            let response = get_json(url, cookie).await;
            let set: Vec<String> = response
                .headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
                .filter(|pair| !pair.ends_with('='))
                .collect();
            set.join("; ")
        }));
    }
    let logout = browser.http.get(fleet.url(0, "/auth/logout")).header("accept", "text/html").send().await.unwrap();
    assert!(logout.status().is_redirection(), "logout redirects: {}", logout.status());
    let mut renewed = Vec::new();
    for read in reads {
        let cookie = read.await.unwrap();
        if !cookie.is_empty() {
            renewed.push(cookie);
        }
    }
    for i in 0..3 {
        assert_eq!(profile_status(&fleet, i, &cookie).await, StatusCode::UNAUTHORIZED, "{store:?}/{shared:?}: {i}");
        for copy in &renewed {
            assert_eq!(
                profile_status(&fleet, i, copy).await,
                StatusCode::UNAUTHORIZED,
                "{store:?}/{shared:?}: a cookie renewed around the logout opens a session on instance {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_stays_final_while_the_others_renew() {
    for (store, shared) in setups() {
        a_logout_on_one_instance_stays_final_while_others_renew(store, shared).await;
    }
}

/// How long the app's `before_save_async` takes at a refresh in the slow-holder test: longer
/// than the refresh lease's 20 s and than the 22 s another instance waits for it.
const SLOW_SAVE: Duration = Duration::from_secs(25);

async fn a_refresh_slower_than_its_lease_is_sent_once(store: StoreChoice, shared: SharedChoice) {
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook_slow = slow.clone();
    let provider = ProviderOptions { rotate_refresh: true, ..ProviderOptions::default() };
    let fleet = Fleet::start_with(3, store.clone(), shared.clone(), provider, move |builder| {
        let slow = hook_slow.clone();
        builder.before_save_async(move |session| {
            let slow = slow.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                // The app's own database, slow today: longer than the lease lasts unrenewed.
                if slow {
                    tokio::time::sleep(SLOW_SAVE).await;
                }
                Ok(session)
            }
        })
    })
    .await;
    let browser = Browser::new();
    browser.login(&fleet.app_url, &unique_user("lea")).await;
    let cookie = browser.cookie_header(&fleet.url(0, "/"));
    slow.store(true, std::sync::atomic::Ordering::SeqCst);
    fleet.advance_clock(Duration::from_secs(3600 - 30));
    let access_token = |i: usize| {
        let (url, cookie) = (fleet.url(i, "/auth/access-token"), cookie.clone());
        async move {
            let response = get_json(url, cookie).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["access_token"].as_str().map(str::to_owned))
        }
    };
    // One user's requests on the three instances at once, each needing the refresh.
    let requests: Vec<_> = (0..6).map(|i| tokio::spawn(access_token(i % 3))).collect();
    let mut refreshed = Vec::new();
    for request in requests {
        match request.await.unwrap() {
            (StatusCode::OK, Some(token)) => refreshed.push(token),
            // An instance that waited the 22 s it waits for another's refresh: a retry gets it.
            (StatusCode::SERVICE_UNAVAILABLE, _) => {}
            other => panic!("{store:?}/{shared:?}: {other:?}"),
        }
    }
    assert_eq!(
        fleet.provider.refresh_grants().await,
        1,
        "{store:?}/{shared:?}: a second instance sent the refresh token while the first was still at work"
    );
    assert!(!refreshed.is_empty(), "{store:?}/{shared:?}: the holder's request got the refreshed token");
    assert!(refreshed.iter().all(|t| *t == refreshed[0]), "{store:?}/{shared:?}: one refreshed token");
    // The grant is alive (with rotation, a reused refresh token would have revoked it): every
    // instance now serves the refreshed token, with no further grant.
    slow.store(false, std::sync::atomic::Ordering::SeqCst);
    for i in 0..3 {
        assert_eq!(access_token(i).await, (StatusCode::OK, Some(refreshed[0].clone())), "{store:?}/{shared:?}: {i}");
    }
    assert_eq!(fleet.provider.refresh_grants().await, 1);
}

/// The refresh lease's holder at work longer than the lease lasts unrenewed (a slow
/// `before_save_async`, 25 s against a 20 s lease): it renews the lease, so no other instance
/// sends the same refresh token meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_holder_slower_than_the_lease_keeps_it_and_the_token_is_sent_once() {
    let [cookie_redis, _, _, postgres, _] = setups();
    tokio::join!(
        a_refresh_slower_than_its_lease_is_sent_once(cookie_redis.0, cookie_redis.1),
        a_refresh_slower_than_its_lease_is_sent_once(postgres.0, postgres.1),
    );
}

async fn post_logout_token(fleet: &Fleet, i: usize, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(fleet.url(i, "/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

/// `call`'s status once the instance's Redis connection is back: an instance that has not used
/// it since Redis restarted finds it broken (503, at once) and reconnects.
async fn once_reconnected<F: std::future::Future<Output = StatusCode>>(call: impl Fn() -> F) -> StatusCode {
    for _ in 0..20 {
        let status = call().await;
        if status != StatusCode::SERVICE_UNAVAILABLE {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    StatusCode::SERVICE_UNAVAILABLE
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_channel_logout_during_a_redis_outage_is_retried_and_ends_the_session() {
    let mut redis = RedisServer::start();
    for store in [StoreChoice::Cookie, StoreChoice::Redis(redis.url())] {
        let fleet = Fleet::start(3, store.clone(), SharedChoice::Redis(redis.url()), ProviderOptions::default()).await;
        let browser = Browser::new();
        let user = unique_user("dee");
        browser.login(&fleet.app_url, &user).await;
        let cookie = browser.cookie_header(&fleet.url(0, "/"));
        let me: Value = reqwest::Client::new()
            .get(fleet.url(0, "/auth/profile"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sid = me["sid"].as_str().expect("the provider sends sid").to_owned();
        let claims = json!({
            "iss": fleet.provider.issuer, "aud": "test-app", "iat": now(), "exp": now() + 120,
            "jti": format!("jti-{user}"), "sid": sid, "sub": user,
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        let token = fleet.provider.sign(json!({ "typ": "logout+jwt" }), claims, "provider").await;

        redis.stop();
        assert_eq!(post_logout_token(&fleet, 1, &token).await, StatusCode::SERVICE_UNAVAILABLE, "{store:?}");
        redis.restart();
        // The provider retries the same token, on another instance: not a replay, and it ends it.
        let retried = once_reconnected(|| post_logout_token(&fleet, 2, &token)).await;
        assert_eq!(retried, StatusCode::OK, "{store:?}: the retried logout token is accepted");
        for i in 0..3 {
            let status = once_reconnected(|| profile_status(&fleet, i, &cookie)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{store:?}: instance {i}");
        }
        // Now it has been used: a replay, on any instance, is refused.
        let replay = once_reconnected(|| post_logout_token(&fleet, 0, &token)).await;
        assert_eq!(replay, StatusCode::BAD_REQUEST, "{store:?}: replay");
    }
}

/// Two processes' cookie stores with their markers in one shared backend, each over its own
/// connection (`connect`): once a session has been checked, reading it again costs no round
/// trip; a marker one process writes reaches the other by the backend's notice, at once.
async fn shared_markers_cost_no_read_per_request_and_reach_every_process<B, F>(connect: impl Fn() -> F, name: &str)
where
    B: Backend + Clone,
    F: std::future::Future<Output = B>,
{
    let config = auth_layer::AuthConfig::builder()
        .issuer("https://issuer.example/")
        .client_id("c")
        .client_secret("s")
        .secret("fleet-markers-secret-fleet-markers-secret")
        .base_url("https://app.example")
        .build()
        .unwrap();
    let (a_backend, b_backend) = (CountingReads::new(connect().await), CountingReads::new(connect().await));
    let a = CookieSessionStore::new(&config).with_marker_backend(a_backend.clone());
    let b = CookieSessionStore::new(&config).with_marker_backend(b_backend.clone());
    // Both listening (the first notice, "connected", moves nothing a test can see): wait a
    // moment for the subscriptions.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let user = unique_user("eve");
    let claims = json!({ "sub": user });
    let session = SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "t".into(), now());
    let mut login = StoreContext::default();
    a.set(&mut login, &session).await.unwrap();
    let mut response = http::HeaderMap::new();
    login.apply(&mut response);
    let cookie: Vec<&str> =
        response.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().split(';').next().unwrap()).collect();
    let cookie = cookie.join("; ");
    let request = || StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);

    assert!(a.get(&mut request()).await.unwrap().is_some(), "{name}: logged in");
    let after_first = a_backend.reads();
    for _ in 0..100 {
        assert!(a.get(&mut request()).await.unwrap().is_some());
    }
    assert_eq!(a_backend.reads(), after_first, "{name}: 100 reads of a checked session, no round trip");

    let logout = LogoutTarget { iss: "https://issuer.example/".into(), sub: Some(user), sid: None };
    b.delete_by_logout_token(&logout).await.unwrap();
    let since = std::time::Instant::now();
    while a.get(&mut request()).await.unwrap().is_some() {
        assert!(since.elapsed() < Duration::from_secs(1), "{name}: the other process's logout never arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(b.get(&mut request()).await.unwrap(), None, "{name}: and the writer refuses it at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_markers_shared_through_redis_cost_no_read_per_request_and_reach_every_process() {
    shared_markers_cost_no_read_per_request_and_reach_every_process(
        || async { RedisBackend::connect(&redis_url()).await.unwrap() },
        "Redis",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_markers_shared_through_postgres_cost_no_read_per_request_and_reach_every_process() {
    shared_markers_cost_no_read_per_request_and_reach_every_process(
        || async { PostgresBackend::connect(&database_url()).await.unwrap() },
        "PostgreSQL",
    )
    .await;
}

async fn a_logout_sent_to_every_instance_at_once_revokes_the_refresh_token_once(
    store: StoreChoice,
    shared: SharedChoice,
) {
    let fleet = Fleet::start(3, store.clone(), shared.clone(), ProviderOptions::default()).await;
    let browser = Browser::new();
    browser.login(&fleet.app_url, &unique_user("lev")).await;
    let cookie = browser.cookie_header(&fleet.url(0, "/"));
    for i in 0..3 {
        assert_eq!(profile_status(&fleet, i, &cookie).await, StatusCode::OK, "{store:?}/{shared:?}: instance {i}");
    }
    // Tabs and retries: nine logouts of the one session, three on each instance, at once.
    let logouts: Vec<_> = (0..9)
        .map(|n| {
            let (url, cookie) = (fleet.url(n % 3, "/auth/logout"), cookie.clone());
            tokio::spawn(async move {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap()
                    .get(url)
                    .header("accept", "text/html")
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for logout in logouts {
        let status = logout.await.unwrap();
        assert!(status.is_redirection(), "{store:?}/{shared:?}: a logout answered {status}");
    }
    assert_eq!(fleet.provider.revocations_settled(1).await, 1, "{store:?}/{shared:?}: one revocation for the fleet");
    for i in 0..3 {
        assert_eq!(profile_status(&fleet, i, &cookie).await, StatusCode::UNAUTHORIZED, "{store:?}/{shared:?}: {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_sent_to_three_instances_at_once_revokes_the_refresh_token_once() {
    for (store, shared) in setups() {
        a_logout_sent_to_every_instance_at_once_revokes_the_refresh_token_once(store, shared).await;
    }
}

/// The fleet suite on a Redis Cluster of three masters with a replica each, sessions and shared
/// state (refresh leases, revocation claims, used logout tokens) spread over its slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_suite_passes_on_a_spread_redis_cluster() {
    let cluster = auth_layer_tests::servers::RedisCluster::start();
    let store = StoreChoice::RedisCluster(cluster.urls.clone());
    a_provider_logout_reaching_one_instance_ends_the_session_on_all(store.clone(), SharedChoice::Default).await;
    fifty_requests_over_three_instances_share_one_refresh(store.clone(), SharedChoice::Default).await;
    a_logout_on_one_instance_stays_final_while_others_renew(store.clone(), SharedChoice::Default).await;
    a_logout_sent_to_every_instance_at_once_revokes_the_refresh_token_once(store, SharedChoice::Default).await;
}
