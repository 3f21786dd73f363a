//! Sessions users manage, against the real provider: the list of a user's sessions and what
//! ends them (one, every other, all of a user's), the cap on sessions per user on a fleet of
//! three instances, and the refresh tokens of every session so ended revoked at the provider.

use std::sync::Arc;
use std::time::Duration;

use auth_layer::{AuthError, StoreContext};
use auth_layer_tests::servers::{database_url, redis_url, scratch_dir};
use auth_layer_tests::{Browser, EnvOptions, Fleet, ProviderOptions, TestEnv, cookies_after};
use quickstart::{SharedChoice, StoreChoice};
use reqwest::StatusCode;
use serde_json::Value;

/// A user name no other test uses: indexes of a shared backend are by user.
fn unique_user(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), auth_layer_tests::free_port())
}

const FIREFOX_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

/// The sessions routes on, for a test app.
fn with_sessions_route(builder: auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder {
    builder.sessions_route(true)
}

/// `GET {prefix}/sessions` from `browser`: the status and the listing.
async fn listing(browser: &Browser, url: &str) -> (StatusCode, Vec<Value>) {
    let answer =
        browser.http.get(format!("{url}/auth/sessions")).header("accept", "application/json").send().await.unwrap();
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    (status, body["sessions"].as_array().cloned().unwrap_or_default())
}

/// A same-site `POST` of `path` from `browser` (as a page of the app sends it).
async fn post(browser: &Browser, url: &str, path: &str, origin: &str) -> StatusCode {
    browser.http.post(format!("{url}{path}")).header("origin", origin).send().await.unwrap().status()
}

async fn profile(browser: &Browser, url: &str) -> StatusCode {
    browser.http.get(format!("{url}/auth/profile")).header("accept", "application/json").send().await.unwrap().status()
}

fn handle(session: &Value) -> &str {
    session["handle"].as_str().expect("a handle")
}

async fn a_user_sees_their_sessions_and_ends_one_then_the_others(store: StoreChoice) {
    let env = TestEnv::start_with(EnvOptions {
        store: store.clone(),
        configure: with_sessions_route,
        ..EnvOptions::default()
    })
    .await;
    let url = env.app_url.clone();
    let user = unique_user("mona");
    let browsers: Vec<Browser> =
        [FIREFOX_LINUX, CHROME_ANDROID, SAFARI_IOS].iter().map(|ua| Browser::with_user_agent(ua)).collect();
    for browser in &browsers {
        browser.login(&url, &user).await;
        env.advance_clock(Duration::from_secs(2));
    }
    let (laptop, phone, tablet) = (&browsers[0], &browsers[1], &browsers[2]);
    let stranger = Browser::with_user_agent(FIREFOX_LINUX);
    stranger.login(&url, &unique_user("stranger")).await;
    assert_eq!(listing(&Browser::new(), &url).await.0, StatusCode::UNAUTHORIZED, "{store:?}: no session, no list");

    // The phone is used again past half its inactivity window: its renewal is its last activity.
    env.advance_clock(Duration::from_secs(13 * 3600));
    assert_eq!(profile(phone, &url).await, StatusCode::OK);
    let (status, sessions) = listing(laptop, &url).await;
    assert_eq!(status, StatusCode::OK, "{store:?}");
    let devices: Vec<&str> = sessions.iter().map(|s| s["device"].as_str().unwrap_or("?")).collect();
    assert_eq!(devices, ["Safari on iOS", "Chrome on Android", "Firefox on Linux"], "{store:?}: newest first");
    let current: Vec<bool> = sessions.iter().map(|s| s["current"].as_bool().unwrap()).collect();
    assert_eq!(current, [false, false, true], "{store:?}: the laptop's own is marked");
    let (tablet_entry, phone_entry) = (&sessions[0], &sessions[1]);
    assert!(phone_entry["last_active"].as_u64() > phone_entry["created_at"].as_u64(), "{store:?}: {phone_entry}");
    assert_eq!(tablet_entry["last_active"], tablet_entry["created_at"], "{store:?}: not used since its login");
    assert!(sessions.iter().all(|s| s["location"].is_null()), "{store:?}: no location without the app's hook");
    for entry in &sessions {
        assert_eq!(handle(entry).len(), 22);
        for browser in &browsers {
            let cookie = browser.cookie_header(&url);
            assert!(!cookie.contains(handle(entry)), "{store:?}: a handle is not a session id");
        }
    }

    // Another user's handle names none of this user's sessions: nothing ends.
    let (_, theirs) = listing(&stranger, &url).await;
    let end_theirs = format!("/auth/sessions/{}/end", handle(&theirs[0]));
    assert_eq!(post(laptop, &url, &end_theirs, &url).await, StatusCode::NOT_FOUND, "{store:?}");
    assert_eq!(profile(&stranger, &url).await, StatusCode::OK, "{store:?}: another user's session stays");

    // Ending another device: refused cross-site, done same-site, its refresh token revoked.
    let end_phone = format!("/auth/sessions/{}/end", handle(phone_entry));
    assert_eq!(post(laptop, &url, &end_phone, "http://evil.example").await, StatusCode::FORBIDDEN);
    assert_eq!(profile(phone, &url).await, StatusCode::OK, "{store:?}: a refused request ends nothing");
    assert_eq!(post(laptop, &url, &end_phone, &url).await, StatusCode::NO_CONTENT, "{store:?}");
    assert_eq!(profile(phone, &url).await, StatusCode::UNAUTHORIZED, "{store:?}: the phone is logged out");
    assert_eq!(env.provider.revocations_settled(1).await, 1, "{store:?}: its refresh token revoked");
    assert_eq!(post(laptop, &url, &end_phone, &url).await, StatusCode::NOT_FOUND, "{store:?}: ended already");
    let made_up = format!("/auth/sessions/{}/end", "A".repeat(22));
    assert_eq!(post(laptop, &url, &made_up, &url).await, StatusCode::NOT_FOUND, "{store:?}");
    assert_eq!(listing(phone, &url).await.0, StatusCode::UNAUTHORIZED, "{store:?}");

    // Every other device.
    assert_eq!(post(laptop, &url, "/auth/sessions/end-others", "http://evil.example").await, StatusCode::FORBIDDEN);
    assert_eq!(post(laptop, &url, "/auth/sessions/end-others", &url).await, StatusCode::NO_CONTENT);
    assert_eq!(profile(tablet, &url).await, StatusCode::UNAUTHORIZED, "{store:?}: the tablet is logged out");
    assert_eq!(profile(laptop, &url).await, StatusCode::OK, "{store:?}: the laptop stays");
    assert_eq!(env.provider.revocations_settled(2).await, 2, "{store:?}");
    let (_, left) = listing(laptop, &url).await;
    assert_eq!(left.len(), 1, "{store:?}: {left:?}");

    // Its own entry: a logout.
    let end_own = format!("/auth/sessions/{}/end", handle(&left[0]));
    assert_eq!(post(laptop, &url, &end_own, &url).await, StatusCode::NO_CONTENT);
    assert_eq!(profile(laptop, &url).await, StatusCode::UNAUTHORIZED, "{store:?}: its own session ended");
    assert_eq!(env.provider.revocations_settled(3).await, 3, "{store:?}: each ended session revoked once");
}

#[tokio::test]
async fn a_user_lists_their_sessions_and_ends_one_then_the_others_in_memory() {
    a_user_sees_their_sessions_and_ends_one_then_the_others(StoreChoice::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lists_their_sessions_and_ends_one_then_the_others_in_redis_and_postgres() {
    for store in [StoreChoice::Redis(redis_url()), StoreChoice::Postgres(database_url())] {
        a_user_sees_their_sessions_and_ends_one_then_the_others(store).await;
    }
}

/// Server-side stores a fleet shares.
fn fleet_stores() -> [StoreChoice; 3] {
    let sqlite = scratch_dir("sessions-sqlite").join(format!("{}.sqlite3", unique_user("cap")));
    [
        StoreChoice::Redis(redis_url()),
        StoreChoice::Postgres(database_url()),
        StoreChoice::Sqlite(sqlite.display().to_string()),
    ]
}

fn capped(builder: auth_layer::AuthConfigBuilder) -> auth_layer::AuthConfigBuilder {
    builder.max_sessions_per_user(2).sessions_route(true)
}

/// A browser whose requests carry `x-place: {place}`, which the test app's location hook reads.
fn browser_at(place: &str) -> Browser {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-place", place.parse().unwrap());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .unwrap();
    Browser { jar, http }
}

async fn start_capped_fleet(store: StoreChoice) -> Fleet {
    Fleet::start_configured(3, store, SharedChoice::Default, ProviderOptions::default(), capped, |builder| {
        builder.session_location(|headers| Some(headers.get("x-place")?.to_str().ok()?.to_owned()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_of_two_ends_the_first_of_three_logins_on_three_instances_everywhere() {
    for store in fleet_stores() {
        let fleet = start_capped_fleet(store.clone()).await;
        let user = unique_user("cap");
        let browsers: Vec<Browser> = ["Lyon", "Oslo", "Lima"].iter().map(|place| browser_at(place)).collect();
        for (i, browser) in browsers.iter().enumerate() {
            let answer = browser.login_completed_at(&fleet.app_url, &fleet.instances[i], &user).await;
            assert!(answer.status().is_redirection(), "{store:?}: login {i} completed on instance {i}");
            fleet.advance_clock(Duration::from_secs(2));
        }
        for i in 0..3 {
            let at = &fleet.instances[i];
            assert_eq!(profile(&browsers[0], at).await, StatusCode::UNAUTHORIZED, "{store:?}: the first, on {i}");
            assert_eq!(profile(&browsers[1], at).await, StatusCode::OK, "{store:?}: the second, on {i}");
            assert_eq!(profile(&browsers[2], at).await, StatusCode::OK, "{store:?}: the third, on {i}");
        }
        assert_eq!(fleet.provider.revocations_settled(1).await, 1, "{store:?}: the ended session's token revoked");
        let (_, sessions) = listing(&browsers[2], &fleet.instances[1]).await;
        let places: Vec<&str> = sessions.iter().map(|s| s["location"].as_str().unwrap_or("?")).collect();
        assert_eq!(places, ["Lima", "Oslo"], "{store:?}: the app's hook names where each login came from");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_logins_racing_on_three_instances_never_leave_more_sessions_than_the_cap() {
    for store in fleet_stores() {
        let fleet = start_capped_fleet(store.clone()).await;
        let user = unique_user("race");
        let browsers: Vec<Browser> = (0..3).map(|_| Browser::new()).collect();
        let mut callbacks = Vec::new();
        for browser in &browsers {
            callbacks.push(browser.start_and_authorize(&fleet.app_url, &user, "/auth/login").await);
        }
        // The provider's three answers delivered at once, each to another instance.
        let deliveries: Vec<_> = callbacks
            .iter()
            .zip(&browsers)
            .enumerate()
            .map(|(i, (callback, browser))| {
                let at = format!("{}{}", fleet.instances[i], callback.strip_prefix(&fleet.app_url).unwrap());
                let browser = browser.clone();
                tokio::spawn(async move { browser.get(&at).await.status() })
            })
            .collect();
        for delivery in deliveries {
            assert!(delivery.await.unwrap().is_redirection(), "{store:?}: every login completes");
        }
        let mut live = 0;
        for browser in &browsers {
            if profile(browser, &fleet.instances[0]).await == StatusCode::OK {
                live += 1;
            }
        }
        assert!((1..=2).contains(&live), "{store:?}: {live} sessions live under a cap of 2");
        let ended = 3 - live;
        assert_eq!(fleet.provider.revocations_settled(ended).await, ended, "{store:?}: each ended one revoked");
    }
}

#[tokio::test]
async fn an_administrator_ends_every_session_of_a_user_and_a_later_login_stands() {
    for store in [StoreChoice::Memory, StoreChoice::Cookie] {
        let env = TestEnv::start_with(EnvOptions { store: store.clone(), ..EnvOptions::default() }).await;
        let (one, two, other) = (Browser::new(), Browser::new(), Browser::new());
        one.login(&env.app_url, "nils").await;
        two.login(&env.app_url, "nils").await;
        other.login(&env.app_url, "olga").await;
        env.client.end_all_sessions("nils").await.unwrap();
        assert_eq!(profile(&one, &env.app_url).await, StatusCode::UNAUTHORIZED, "{store:?}");
        assert_eq!(profile(&two, &env.app_url).await, StatusCode::UNAUTHORIZED, "{store:?}");
        assert_eq!(profile(&other, &env.app_url).await, StatusCode::OK, "{store:?}: another user's stays");
        // Server-side sessions hold their refresh tokens: both revoked. Cookie sessions hold
        // theirs in the browsers: none can be.
        let revoked = if store == StoreChoice::Memory { 2 } else { 0 };
        assert_eq!(env.provider.revocations_settled(revoked).await, revoked, "{store:?}");
        env.advance_clock(Duration::from_secs(1));
        one.login(&env.app_url, "nils").await;
        assert_eq!(profile(&one, &env.app_url).await, StatusCode::OK, "{store:?}: a login after it stands");
    }
}

#[tokio::test]
async fn on_the_cookie_store_ending_the_other_sessions_ends_every_other_copy_and_keeps_this_one() {
    let env = TestEnv::start().await;
    let (laptop, phone) = (Browser::new(), Browser::new());
    laptop.login(&env.app_url, "pia").await;
    phone.login(&env.app_url, "pia").await;
    let copied = laptop.cookie_header(&env.app_url);
    let mut ctx = StoreContext::from_cookie_headers([&copied.parse().unwrap()]);
    env.client.end_other_sessions(&mut ctx).await.unwrap();
    let renewed = cookies_after(ctx).expect("the laptop's session saved again");
    assert_eq!(profile(&phone, &env.app_url).await, StatusCode::UNAUTHORIZED, "the phone is logged out");
    let with = |cookie: String| {
        let url = format!("{}/auth/profile", env.app_url);
        async move {
            reqwest::Client::new()
                .get(url)
                .header("accept", "application/json")
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(with(renewed).await, StatusCode::OK, "the laptop's session, saved after the marker, stands");
    assert_eq!(with(copied).await, StatusCode::UNAUTHORIZED, "a copy of its cookie from before is another session");
}

#[tokio::test]
async fn a_cap_or_the_sessions_routes_over_the_cookie_store_fail_at_start() {
    for configure in [capped as fn(_) -> _, with_sessions_route] {
        let (_provider, config, _, _) =
            auth_layer_tests::provider_for_own_app_with(ProviderOptions::default(), configure).await;
        let refused = quickstart::auth_layer(config, StoreChoice::Cookie).await.map(|_| ()).unwrap_err();
        assert!(matches!(refused, AuthError::Misconfigured(_)), "{refused}");
        assert!(refused.to_string().contains("lists a user's sessions"), "{refused}");
    }
}

#[tokio::test]
async fn a_handler_lists_and_ends_sessions_through_the_requests_session() {
    use auth_layer::store::ServerSessionStore;
    use auth_layer::{AuthClient, AuthLayer, Session};
    use axum::routing::{get, post};

    let (provider, config, url, listener) = auth_layer_tests::provider_for_own_app().await;
    let store = ServerSessionStore::in_memory(&config);
    let client = AuthClient::builder(config).with_server_sessions(store).build().await.unwrap();
    let app = axum::Router::new()
        .route(
            "/devices",
            get(|session: Session| async move {
                let devices = session.list_sessions().await.unwrap();
                devices
                    .iter()
                    .map(|d| format!("{}:{}", d.device.as_deref().unwrap_or("?"), d.current))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        )
        .route(
            "/devices/{handle}/end",
            post(|session: Session, axum::extract::Path(handle): axum::extract::Path<String>| async move {
                session.end_session(&handle).await.unwrap().to_string()
            }),
        )
        .route(
            "/devices/end-others",
            post(|session: Session| async move { session.end_other_sessions().await.is_ok().to_string() }),
        )
        .layer(AuthLayer::new(client.clone()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (laptop, phone, tablet) = (
        Browser::with_user_agent(FIREFOX_LINUX),
        Browser::with_user_agent(CHROME_ANDROID),
        Browser::with_user_agent(SAFARI_IOS),
    );
    let user = unique_user("hugo");
    for browser in [&laptop, &phone, &tablet] {
        browser.login(&url, &user).await;
    }
    let text = |browser: &Browser, path: &str, method: reqwest::Method| {
        let request = browser.http.request(method, format!("{url}{path}"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let listed = text(&laptop, "/devices", reqwest::Method::GET).await;
    let mut seen: Vec<&str> = listed.split(',').collect();
    seen.sort_unstable();
    assert_eq!(seen, ["Chrome on Android:false", "Firefox on Linux:true", "Safari on iOS:false"], "{listed}");

    let mut ctx = StoreContext::from_cookie_headers([&laptop.cookie_header(&url).parse().unwrap()]);
    let sessions = client.list_sessions(&mut ctx).await.unwrap();
    let phone_handle = &sessions.iter().find(|s| s.device.as_deref() == Some("Chrome on Android")).unwrap().handle;
    assert_eq!(text(&laptop, &format!("/devices/{phone_handle}/end"), reqwest::Method::POST).await, "true");
    assert_eq!(profile(&phone, &url).await, StatusCode::UNAUTHORIZED, "the phone is logged out");
    assert_eq!(text(&laptop, &format!("/devices/{phone_handle}/end"), reqwest::Method::POST).await, "false");
    assert_eq!(text(&laptop, "/devices/end-others", reqwest::Method::POST).await, "true");
    assert_eq!(profile(&tablet, &url).await, StatusCode::UNAUTHORIZED, "the tablet is logged out");
    assert_eq!(text(&laptop, "/devices", reqwest::Method::GET).await, "Firefox on Linux:true");
    assert_eq!(provider.revocations_settled(2).await, 2, "both ended sessions revoked");
    server.abort();
}
