//! The provider's network (issue 40): logins and refreshes through a relay in front of the real
//! provider that resets connections the app reuses after the network forgot them, or that keeps
//! the provider's close from the app until its next packet. Every login and refresh succeeds;
//! every token request reaches the provider once; the idle time the provider announces is
//! honoured.

use std::net::SocketAddr;
use std::time::Duration;

use auth_layer::{AccessTokenOptions, AuthClient, AuthLayer, StoreContext};
use auth_layer_tests::relay::{Relay, RelayMode};
use auth_layer_tests::{Browser, Provider, ProviderOptions, cookies_after, provider_for_app_at};
use reqwest::StatusCode;

/// The quickstart app whose provider is reached through a relay in `mode`.
struct Behind {
    provider: Provider,
    relay: Relay,
    client: AuthClient,
    app_url: String,
}

async fn behind(mode: RelayMode, options: ProviderOptions) -> Behind {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ProviderOptions { public_port: Some(listener.local_addr().unwrap().port()), ..options };
    let (provider, config, app_url, app_listener) = provider_for_app_at(options, |config, _| config).await;
    let relay = Relay::on(listener, SocketAddr::from(([127, 0, 0, 1], provider.port)), mode);
    let client = AuthClient::new(config).await.expect("discovery through the relay");
    let app = quickstart::app(AuthLayer::new(client.clone()));
    tokio::spawn(async move { axum::serve(app_listener, app).await.unwrap() });
    Behind { provider, relay, client, app_url }
}

/// Pauses around the network's idle limit (`around`), in turn shorter and longer.
fn pause(i: usize, around: Duration) -> Duration {
    around.mul_f64([0.2, 0.8, 1.3, 2.0][i % 4])
}

/// `logins` logins and then `refreshes` forced refreshes of one session, pausing around
/// `around` before each; every one must succeed. Returns how many token requests the app made.
async fn logins_and_refreshes(at: &Behind, logins: usize, refreshes: usize, around: Duration) -> u64 {
    let mut cookie = String::new();
    for i in 0..logins {
        tokio::time::sleep(pause(i, around)).await;
        // The harness's browser opens a new connection each time: only the app is under test.
        let browser = Browser::fresh_connections();
        let done = browser.login(&at.app_url, &format!("user-{i}")).await;
        assert_eq!(done.status(), StatusCode::FOUND, "login {i}: {:?}", done.text().await);
        cookie = browser.cookie_header(&at.app_url);
    }
    for i in 0..refreshes {
        tokio::time::sleep(pause(i, around)).await;
        let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
        let refreshed = at.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
        assert!(refreshed.is_ok(), "refresh {i}: {refreshed:?}");
        // The next refresh starts from this one's session (another access token: another
        // refresh, not this one's result again).
        cookie = cookies_after(ctx).expect("the refreshed session's cookie");
    }
    (logins + refreshes) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_forgets_idle_connections_fails_no_login_and_no_refresh() {
    // The provider keeps connections 5 s (announced); the network forgets them after 100 ms.
    let idle = Duration::from_millis(100);
    let at = behind(RelayMode::ResetIdle(idle), ProviderOptions::default()).await;
    let made = logins_and_refreshes(&at, 30, 100, idle).await;
    assert!(at.relay.resets() >= 20, "the relay reset reused connections: {}", at.relay.resets());
    assert_eq!(at.provider.token_requests().await, made, "each token request reached the provider once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_that_reaches_the_app_only_with_its_next_packet_fails_no_login_and_no_refresh() {
    // The provider closes idle connections after 200 ms without announcing it; the relay keeps
    // the close from the app until the app sends on the connection again.
    let closes = Duration::from_millis(200);
    let options = ProviderOptions { idle_close_ms: Some(200), ..ProviderOptions::default() };
    let at = behind(RelayMode::HoldClose, options).await;
    let made = logins_and_refreshes(&at, 30, 100, closes).await;
    assert!(at.relay.resets() >= 20, "the app sent on connections the provider had closed: {}", at.relay.resets());
    assert_eq!(at.provider.token_requests().await, made, "each token request reached the provider once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_not_reused_past_the_idle_time_the_provider_announces() {
    // `Keep-Alive: timeout=2`: reused for 1 s at most (the announcement less a second).
    let options = ProviderOptions { keep_alive_ms: Some(2_000), ..ProviderOptions::default() };
    let at = behind(RelayMode::Plain, options).await;
    let browser = Browser::fresh_connections();
    assert_eq!(browser.login(&at.app_url, "kai").await.status(), StatusCode::FOUND, "the announcement is heard");
    let mut cookie = browser.cookie_header(&at.app_url);
    let refresh = async |cookie: &mut String| {
        let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
        at.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await.unwrap();
        *cookie = cookies_after(ctx).unwrap();
    };
    refresh(&mut cookie).await;
    let opened = at.relay.connections();
    tokio::time::sleep(Duration::from_millis(300)).await;
    refresh(&mut cookie).await;
    assert_eq!(at.relay.connections(), opened, "idle 0.3 s: the connection is reused");
    tokio::time::sleep(Duration::from_millis(1_400)).await;
    refresh(&mut cookie).await;
    assert_eq!(at.relay.connections(), opened + 1, "idle 1.4 s, past 2 s less the margin: a new connection");
    assert_eq!(at.relay.resets(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_hangs_fails_calls_fast_leaves_sessions_alone_and_is_used_again_once_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = ProviderOptions { public_port: Some(listener.local_addr().unwrap().port()), ..Default::default() };
    let (provider, config, app_url, app_listener) = provider_for_app_at(options, |config, _| {
        config.provider_timeout(Duration::from_secs(1)).provider_connect_timeout(Duration::from_millis(500))
    })
    .await;
    let relay = Relay::on(listener, SocketAddr::from(([127, 0, 0, 1], provider.port)), RelayMode::Plain);
    let client = AuthClient::new(config).await.unwrap();
    let app = quickstart::app(AuthLayer::new(client.clone()));
    tokio::spawn(async move { axum::serve(app_listener, app).await.unwrap() });
    let browser = Browser::fresh_connections();
    assert_eq!(browser.login(&app_url, "hana").await.status(), StatusCode::FOUND);
    let cookie = browser.cookie_header(&app_url);
    let refresh = |cookie: String| {
        let client = client.clone();
        async move {
            let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
            let started = std::time::Instant::now();
            let result = client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
            (result.map(|_| cookies_after(ctx).unwrap()), started.elapsed())
        }
    };
    // A login started now, to be completed while the provider hangs.
    let other = Browser::fresh_connections();
    let callback = other.start_and_authorize(&app_url, "ines", "/auth/login").await;

    relay.swallow(true);
    let (first, took) = refresh(cookie.clone()).await;
    assert!(matches!(first, Err(auth_layer::AuthError::Provider(_))), "{first:?}");
    assert!(took >= Duration::from_millis(900), "the first call waits out its timeout: {took:?}");
    // Twenty more at once: they fail at once (one may be the probe, which waits its timeout).
    let calls = (0..20).map(|_| tokio::spawn(refresh(cookie.clone())));
    let mut slow = 0;
    for call in calls {
        let (result, took) = call.await.unwrap();
        assert!(result.is_err());
        if took > Duration::from_millis(200) {
            slow += 1;
        }
    }
    assert!(slow <= 1, "{slow} calls waited on a provider known to be down");
    // The callback answers 503 with Retry-After; reading the session needs no provider.
    let answer = other.get(&callback).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers()["retry-after"], "1");
    let started = std::time::Instant::now();
    let profile = browser.get(&format!("{app_url}/auth/profile")).await;
    assert_eq!(profile.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300), "the session read waited: {:?}", started.elapsed());

    // Back: a login completes within a second, and a refresh goes through.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    relay.swallow(false);
    let back = std::time::Instant::now();
    loop {
        let done = Browser::fresh_connections().login(&app_url, "jo").await;
        if done.status() == StatusCode::FOUND {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(1), "no login 1 s after the provider's return: {}", done.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut cookie = cookie;
    loop {
        match refresh(cookie.clone()).await {
            (Ok(next), _) => {
                cookie = next;
                break;
            }
            (Err(err), _) => {
                assert!(
                    back.elapsed() < Duration::from_secs(1),
                    "still failing 1 s after the provider's return: {err:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(refresh(cookie).await.0.is_ok(), "and the next one too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_asks_again_until_a_provider_that_is_starting_answers() {
    // The provider's public port answers nothing at first (connections refused), then, 0.7 s
    // later, leads to it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let options = ProviderOptions { public_port: Some(port), ..Default::default() };
    let (provider, config, _, _) = provider_for_app_at(options, |config, _| config).await;
    let started = std::time::Instant::now();
    let discovery = tokio::spawn(AuthClient::new(config));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let relay = Relay::on(listener, SocketAddr::from(([127, 0, 0, 1], provider.port)), RelayMode::Plain);
    let client = discovery.await.unwrap().expect("discovered once the provider answers");
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(client.config().issuer(), provider.issuer);
    assert!(relay.connections() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_the_provider_received_before_the_connection_broke_ends_the_session_cleanly_under_rotation() {
    // Rotation: a refresh token used twice is refused (and the provider ends the grant).
    let options = ProviderOptions { rotate_refresh: true, ..ProviderOptions::default() };
    let at = behind(RelayMode::Plain, options).await;
    let browser = Browser::fresh_connections();
    assert_eq!(browser.login(&at.app_url, "lou").await.status(), StatusCode::FOUND);
    let cookie = browser.cookie_header(&at.app_url);
    let before = at.provider.token_requests().await;
    // The provider answers the refresh, but the answer never reaches the app: its connection
    // is reset. The app sends the refresh once more, and the provider sees the token again.
    at.relay.drop_next_answer();
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    let refreshed = at.client.access_token(&mut ctx, AccessTokenOptions::default().force_refresh()).await;
    assert!(
        matches!(refreshed, Err(auth_layer::AuthError::Provider(auth_layer::ProviderError::InvalidGrant(_)))),
        "{refreshed:?}"
    );
    assert_eq!(at.provider.token_requests().await - before, 2, "sent once more after the reset");
    assert_eq!(at.relay.resets(), 1);
    assert_eq!(cookies_after(ctx), None, "the session's cookies are removed: it ended");
}
