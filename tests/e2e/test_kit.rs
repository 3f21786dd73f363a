//! The test kit apps use for their own handlers (`auth_layer::testing::TestSession`): a session
//! minted in each store opens the app's guarded routes with no provider; none, an expired one
//! and one sealed with another secret are refused; and a minted session reads through an app's
//! real client (discovered from the real provider) and logs out there as a login's would.

use std::time::Duration;

use auth_layer::backend::{PostgresBackend, RedisBackend};
use auth_layer::store::ServerSessionStore;
use auth_layer::testing::{TestLoginError, TestProvider, TestSession};
use auth_layer::{AccessTokenOptions, AuthClient, AuthClientBuilder, AuthConfig, AuthLayer, Session, User};
use auth_layer_tests::TestEnv;
use auth_layer_tests::servers::{database_url, redis_url};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::routing::get;
use tower::ServiceExt;

fn config() -> AuthConfig {
    AuthConfig::builder()
        .issuer("https://tenant.example.auth0.com/")
        .client_id("kit-client")
        .client_secret("kit-client-secret")
        .secret("the test kit's session secret, 32 bytes or more")
        .base_url("http://localhost:3000")
        .build()
        .unwrap()
}

/// The app under test: `/me` needs a user, `/token` an access token.
fn app(client: &AuthClient) -> Router {
    async fn me(user: User) -> String {
        format!("{} <{}>", user.sub(), user.claim_str("email").unwrap_or("-"))
    }
    async fn token(session: Session) -> Result<String, StatusCode> {
        let token = session.access_token(AccessTokenOptions::default()).await.map_err(|_| StatusCode::BAD_GATEWAY)?;
        Ok(token.access_token)
    }
    Router::new().route("/me", get(me)).route("/token", get(token)).layer(AuthLayer::new(client.clone()))
}

async fn get_with(app: &Router, path: &str, cookie: Option<HeaderValue>) -> (StatusCode, String) {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let answer = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = answer.status();
    let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Every promise of the kit, on the client `builder` makes (with the store under test).
async fn a_minted_session_opens_the_guarded_routes_and_the_refusals_refuse(builder: AuthClientBuilder) {
    let client = builder.build_without_provider().unwrap();
    let app = app(&client);
    let user = format!("auth0|kit-{}", auth_layer_tests::free_port());
    let minted = TestSession::for_user(&user)
        .claim("email", "kit@example.com")
        .access_token("minted-access-token", "openid read:orders", Duration::from_secs(600))
        .mint(&client)
        .await
        .unwrap();
    assert_eq!(
        get_with(&app, "/me", Some(minted.clone())).await,
        (StatusCode::OK, format!("{user} <kit@example.com>"))
    );
    assert_eq!(get_with(&app, "/token", Some(minted.clone())).await, (StatusCode::OK, "minted-access-token".into()));

    assert_eq!(get_with(&app, "/me", None).await.0, StatusCode::UNAUTHORIZED, "no session");
    let expired = TestSession::for_user(&user).expired().mint(&client).await.unwrap();
    assert_eq!(get_with(&app, "/me", Some(expired)).await.0, StatusCode::UNAUTHORIZED, "expired");
    let forged = TestSession::for_user(&user).mint_with_foreign_secret(&client).await.unwrap();
    assert_eq!(get_with(&app, "/me", Some(forged)).await.0, StatusCode::UNAUTHORIZED, "another secret's");

    // Past its access token's expiry, a fresh one is asked of the provider, which is not there.
    let stale = TestSession::for_user(&user)
        .access_token("stale", "openid", Duration::ZERO)
        .refresh_token("minted-refresh-token")
        .mint(&client)
        .await
        .unwrap();
    assert_eq!(get_with(&app, "/token", Some(stale)).await.0, StatusCode::BAD_GATEWAY);
    // The first session still reads: nothing above touched it.
    assert_eq!(get_with(&app, "/me", Some(minted.clone())).await.0, StatusCode::OK);

    // A logout sends the browser to the made-up provider, a `.invalid` host: never to the
    // configured issuer (an app's real tenant).
    let logout = Request::post("/auth/logout")
        .header(header::COOKIE, minted)
        .header(header::ORIGIN, "http://localhost:3000")
        .body(Body::empty())
        .unwrap();
    let answer = app.clone().oneshot(logout).await.unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);
    let location = answer.headers()[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with("https://no-provider.invalid/"), "{location}");
}

#[tokio::test]
async fn minted_sessions_open_guarded_routes_in_the_cookie_store() {
    a_minted_session_opens_the_guarded_routes_and_the_refusals_refuse(AuthClient::builder(config())).await;
}

#[tokio::test]
async fn minted_sessions_open_guarded_routes_in_memory() {
    let store = ServerSessionStore::in_memory(&config());
    a_minted_session_opens_the_guarded_routes_and_the_refusals_refuse(
        AuthClient::builder(config()).with_server_sessions(store),
    )
    .await;
}

#[tokio::test]
async fn minted_sessions_open_guarded_routes_in_redis() {
    let namespace = format!("kit-{}-{}", std::process::id(), auth_layer_tests::free_port());
    let backend = RedisBackend::connect(&redis_url()).await.unwrap().with_namespace(&namespace);
    let store = ServerSessionStore::new(backend, &config());
    a_minted_session_opens_the_guarded_routes_and_the_refusals_refuse(
        AuthClient::builder(config()).with_server_sessions(store),
    )
    .await;
}

#[tokio::test]
async fn minted_sessions_open_guarded_routes_in_postgres() {
    let backend = PostgresBackend::connect(&database_url()).await.unwrap();
    let store = ServerSessionStore::new(backend, &config());
    a_minted_session_opens_the_guarded_routes_and_the_refusals_refuse(
        AuthClient::builder(config()).with_server_sessions(store),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_session_reads_through_the_apps_real_client_and_logs_out_at_its_provider() {
    let env = TestEnv::start_custom(|client| {
        async fn me(user: User) -> String {
            user.sub().to_owned()
        }
        Router::new().route("/me", get(me)).layer(AuthLayer::new(client))
    })
    .await;
    let cookie = TestSession::for_user("kit-user").mint(&env.client).await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let me = http.get(env.url("/me")).header("cookie", cookie.to_str().unwrap()).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.text().await.unwrap(), "kit-user");

    // A logout sends the browser to the provider's end-session endpoint, as after a login.
    let logout = http
        .post(env.url("/auth/logout"))
        .header("cookie", cookie.to_str().unwrap())
        .header("origin", &env.app_url)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::FOUND);
    let location = logout.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&env.provider.issuer), "to the provider: {location}");
    assert!(
        logout.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().contains("Max-Age=0")),
        "the session cookie removed"
    );
}

/// The app under test with an in-process provider behind it: `/me` shows the user and the
/// provider's `sid`, `/token` an access token (refreshed when `?fresh` is asked), and the
/// back-channel logout route is on.
async fn app_of_the_test_provider(provider: &TestProvider, builder: fn(AuthConfig) -> AuthClientBuilder) -> Router {
    async fn me(user: User) -> String {
        format!("{} <{}> sid={}", user.sub(), user.email().unwrap_or("-"), user.sid().unwrap_or("-"))
    }
    async fn token(session: Session, query: axum::extract::RawQuery) -> Result<String, StatusCode> {
        let options = match query.0.as_deref() {
            Some("fresh") => AccessTokenOptions::default().force_refresh(),
            _ => AccessTokenOptions::default(),
        };
        let token = session.access_token(options).await.map_err(|_| StatusCode::BAD_GATEWAY)?;
        Ok(token.access_token)
    }
    let config = provider.config("http://localhost:3000").backchannel_logout_route(true).build().unwrap();
    let client = builder(config).build().await.expect("the in-process provider is discovered");
    Router::new().route("/me", get(me)).route("/token", get(token)).layer(AuthLayer::new(client))
}

/// A whole login through the app's routes against the in-process provider, then a refresh and
/// a back-channel logout, on `builder`'s store.
async fn the_test_provider_logs_in_refreshes_and_logs_out(builder: fn(AuthConfig) -> AuthClientBuilder) {
    let provider = TestProvider::start().await.unwrap();
    provider.log_in_as("auth0|alice").claim("email", "alice@example.com");
    let app = app_of_the_test_provider(&provider, builder).await;
    assert_eq!(get_with(&app, "/me", None).await.0, StatusCode::UNAUTHORIZED);

    let cookie = provider.log_in(&app).await.unwrap();
    let (status, me) = get_with(&app, "/me", Some(cookie.clone())).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let sid = me.strip_prefix("auth0|alice <alice@example.com> sid=").expect("the user and the provider's sid");
    assert_ne!(sid, "-", "the ID token's sid reached the session");
    assert_eq!(provider.token_requests(), 1, "one code exchange");

    // The access token of the login, then one refreshed at the provider with the refresh token.
    let (status, first) = get_with(&app, "/token", Some(cookie.clone())).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refreshed) = get_with(&app, "/token?fresh", Some(cookie.clone())).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(first, refreshed, "a new access token");
    assert_eq!(provider.token_requests(), 2, "one refresh");

    // A back-channel logout of another session leaves this one; of this one, ends it.
    assert_eq!(provider.backchannel_logout(&app, Some("another-sid")).await.unwrap(), StatusCode::OK);
    assert_eq!(get_with(&app, "/me", Some(cookie.clone())).await.0, StatusCode::OK);
    assert_eq!(provider.backchannel_logout(&app, Some(sid)).await.unwrap(), StatusCode::OK);
    assert_eq!(get_with(&app, "/me", Some(cookie)).await.0, StatusCode::UNAUTHORIZED, "ended by the provider");
}

#[tokio::test]
async fn the_in_process_provider_logs_a_user_in_through_the_apps_routes_with_cookie_sessions() {
    the_test_provider_logs_in_refreshes_and_logs_out(AuthClient::builder).await;
}

#[tokio::test]
async fn the_in_process_provider_logs_a_user_in_through_the_apps_routes_with_server_sessions() {
    the_test_provider_logs_in_refreshes_and_logs_out(|config| {
        let store = ServerSessionStore::in_memory(&config);
        AuthClient::builder(config).with_server_sessions(store)
    })
    .await;
}

/// The provider checks what a real one checks: a client with the wrong secret gets no tokens,
/// and the app's callback fails with the provider's refusal; a login the app started for
/// another provider is refused before any code is issued.
#[tokio::test]
async fn the_in_process_provider_refuses_a_wrong_client_secret_and_another_providers_login() {
    let provider = TestProvider::start().await.unwrap();
    let config = provider.config("http://localhost:3000").client_secret("not-the-secret").build().unwrap();
    let client = AuthClient::builder(config).build().await.unwrap();
    let app = Router::new().route("/me", get(|user: User| async move { user.sub().to_owned() }));
    let app = app.layer(AuthLayer::new(client));
    match provider.log_in(&app).await {
        Err(TestLoginError::App { step: "callback", status, .. }) => assert!(!status.is_success(), "{status}"),
        other => panic!("the login went through with a wrong secret: {other:?}"),
    }
    assert_eq!(provider.token_requests(), 0);

    let other = TestProvider::start().await.unwrap();
    let client = AuthClient::builder(other.config("http://localhost:3000").build().unwrap()).build().await.unwrap();
    let app = Router::new().route("/me", get(|user: User| async move { user.sub().to_owned() }));
    let app = app.layer(AuthLayer::new(client));
    match provider.log_in(&app).await {
        Err(TestLoginError::Refused(why)) => assert!(why.contains("authorization endpoint"), "{why}"),
        other => panic!("a login for another provider was answered: {other:?}"),
    }
}
