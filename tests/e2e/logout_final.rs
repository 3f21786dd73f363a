//! A logout is final: a save of a session read before a logout (a renewal, a refresh that
//! waited for the provider) never brings it back, on each store, from one process or from
//! several processes' stores sharing one Redis or PostgreSQL.

use auth_layer::backend::{Backend, MokaBackend, PostgresBackend, RedisBackend};
use auth_layer::store::{CookieSessionStore, LogoutTarget, ServerSessionStore, SessionStore, StoreContext};
use auth_layer::{AuthConfig, SessionData, User};
use auth_layer_tests::servers::{database_url, redis_url};

fn config() -> AuthConfig {
    AuthConfig::builder()
        .issuer("https://issuer.example/")
        .client_id("c")
        .client_secret("s")
        .secret("logout-final-secret-logout-final-secret")
        .base_url("https://app.example")
        .build()
        .unwrap()
}

fn session(sid: &str) -> SessionData {
    let claims = serde_json::json!({ "sub": format!("sub-{sid}"), "sid": sid });
    SessionData::new(
        User::from_id_token_claims(claims.as_object().unwrap().clone()),
        "t".into(),
        config().clock().now(),
    )
}

/// What the browser sends back after `ctx`'s response.
fn next_request(ctx: StoreContext) -> StoreContext {
    let mut response = http::HeaderMap::new();
    ctx.apply(&mut response);
    let cookies: Vec<String> = response
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .filter(|pair| !pair.ends_with('='))
        .collect();
    let mut request = http::HeaderMap::new();
    if !cookies.is_empty() {
        request.insert(http::header::COOKIE, cookies.join("; ").parse().unwrap());
    }
    StoreContext::from_headers(&request)
}

/// The `sid` index tag a server-side store files a session under.
fn sid_tag(sid: &str) -> String {
    format!("session#sid={sid}")
}

fn unique(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), auth_layer_tests::free_port())
}

/// Logged in; the request reads the session; a logout (by the cookie, or by the provider over
/// the back channel) lands; then the request saves its renewed copy: refused, the session stays
/// ended, nothing is listed under its `sid`, and the response clears the cookie.
async fn a_save_after_a_logout_is_refused<S: SessionStore>(store: &S, backend: Option<&dyn Backend>, name: &str) {
    for by_back_channel in [false, true] {
        let sid = unique(name);
        let mut login = StoreContext::default();
        let data = session(&sid);
        store.set(&mut login, &data).await.unwrap();
        let mut request = next_request(login);
        let read = store.get(&mut request).await.unwrap().expect("logged in");
        let mut other_tab = next_request_of(&request);
        if by_back_channel {
            let target = LogoutTarget { iss: "https://issuer.example/".into(), sub: None, sid: Some(sid.clone()) };
            store.delete_by_logout_token(&target).await.unwrap();
        } else {
            store.delete(&mut other_tab).await.unwrap();
        }
        let mut renewed = SessionData::clone(&read);
        renewed.touched_at += 1;
        assert!(!store.update(&mut request, &renewed).await.unwrap(), "{name}: saved after the logout");
        let mut after = next_request(request);
        assert_eq!(store.get(&mut after).await.unwrap(), None, "{name}: the session came back");
        if let Some(backend) = backend {
            assert!(backend.keys_by_tag(&sid_tag(&sid)).await.unwrap().is_empty(), "{name}: still indexed");
        }
    }
}

/// The same request's cookies, as a second tab of the browser sends them.
fn next_request_of(ctx: &StoreContext) -> StoreContext {
    let header = ctx.request_cookie_names().map(|n| format!("{n}={}", ctx.cookie(n).unwrap())).collect::<Vec<_>>();
    let mut request = http::HeaderMap::new();
    request.insert(http::header::COOKIE, header.join("; ").parse().unwrap());
    StoreContext::from_headers(&request)
}

#[tokio::test]
async fn a_save_after_a_logout_does_not_bring_an_in_memory_session_back() {
    a_save_after_a_logout_is_refused(&ServerSessionStore::in_memory(&config()), None, "memory").await;
    let backend = MokaBackend::new();
    let store = ServerSessionStore::new(backend.clone(), &config());
    a_save_after_a_logout_is_refused(&store, Some(&backend), "moka bytes").await;
}

#[tokio::test]
async fn a_save_after_a_logout_does_not_bring_a_redis_session_back() {
    let backend = RedisBackend::connect(&redis_url()).await.unwrap().with_namespace(&unique("final"));
    let store = ServerSessionStore::new(backend.clone(), &config());
    a_save_after_a_logout_is_refused(&store, Some(&backend), "redis").await;
}

#[tokio::test]
async fn a_save_after_a_logout_does_not_bring_a_postgres_session_back() {
    let backend = PostgresBackend::connect(&database_url()).await.unwrap();
    let store = ServerSessionStore::new(backend.clone(), &config());
    a_save_after_a_logout_is_refused(&store, Some(&backend), "postgres").await;
}

#[tokio::test]
async fn a_save_after_a_back_channel_logout_does_not_renew_a_cookie_session() {
    let store = CookieSessionStore::new(&config());
    let sid = unique("cookie");
    let mut login = StoreContext::default();
    store.set(&mut login, &session(&sid)).await.unwrap();
    let mut request = next_request(login);
    let read = store.get(&mut request).await.unwrap().expect("logged in");
    let target = LogoutTarget { iss: "https://issuer.example/".into(), sub: None, sid: Some(sid) };
    store.delete_by_logout_token(&target).await.unwrap();
    assert!(!store.update(&mut request, &read).await.unwrap(), "a new cookie was issued after the logout");
    assert_eq!(store.get(&mut next_request(request)).await.unwrap(), None);
}

/// Three processes' stores over one shared backend (each with its own connection and its own
/// decoded-session cache). Each round: a session is read on all three; twelve renewals race a
/// logout made on one of them (by cookie or back channel, alternately). Afterwards the session
/// answers on none, and nothing is listed under its `sid`.
async fn renewals_racing_logouts<B: Backend + Clone>(instances: [ServerSessionStore<B>; 3], backend: B, name: &str) {
    let instances = std::sync::Arc::new(instances);
    for round in 0..30 {
        let sid = unique(&format!("{name}-{round}"));
        let mut login = StoreContext::default();
        instances[0].set(&mut login, &session(&sid)).await.unwrap();
        let request = next_request(login);
        let read = instances[1].get(&mut next_request_of(&request)).await.unwrap().expect("logged in");
        let mut tasks = tokio::task::JoinSet::new();
        for renewal in 0..12u64 {
            let (instances, mut ctx, mut renewed) = (instances.clone(), next_request_of(&request), (*read).clone());
            tasks.spawn(async move {
                renewed.touched_at += renewal;
                instances[(renewal % 3) as usize].update(&mut ctx, &renewed).await.unwrap();
            });
        }
        let (instances2, mut ctx, sid2) = (instances.clone(), next_request_of(&request), sid.clone());
        tasks.spawn(async move {
            tokio::task::yield_now().await;
            if round % 2 == 0 {
                instances2[2].delete(&mut ctx).await.unwrap();
            } else {
                let target = LogoutTarget { iss: "https://issuer.example/".into(), sub: None, sid: Some(sid2) };
                instances2[2].delete_by_logout_token(&target).await.unwrap();
            }
        });
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        for (i, instance) in instances.iter().enumerate() {
            let answer = instance.get(&mut next_request_of(&request)).await.unwrap();
            assert_eq!(answer, None, "{name} round {round}: instance {i} still has the session");
        }
        assert!(backend.keys_by_tag(&sid_tag(&sid)).await.unwrap().is_empty(), "{name} round {round}: indexed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_racing_logouts_on_three_instances_sharing_redis_never_revive_the_session() {
    let namespace = unique("fleet");
    let connect = || async { RedisBackend::connect(&redis_url()).await.unwrap().with_namespace(&namespace) };
    let config = config();
    let instances = [
        ServerSessionStore::new(connect().await, &config),
        ServerSessionStore::new(connect().await, &config),
        ServerSessionStore::new(connect().await, &config),
    ];
    renewals_racing_logouts(instances, connect().await, "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_racing_logouts_on_three_instances_sharing_postgres_never_revive_the_session() {
    let connect = || async { PostgresBackend::connect(&database_url()).await.unwrap() };
    let config = config();
    let instances = [
        ServerSessionStore::new(connect().await, &config),
        ServerSessionStore::new(connect().await, &config),
        ServerSessionStore::new(connect().await, &config),
    ];
    renewals_racing_logouts(instances, connect().await, "postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_racing_logouts_in_memory_never_revive_the_session() {
    let backend = MokaBackend::new();
    let config = config();
    let instances = [
        ServerSessionStore::new(backend.clone(), &config),
        ServerSessionStore::new(backend.clone(), &config),
        ServerSessionStore::new(backend.clone(), &config),
    ];
    renewals_racing_logouts(instances, backend, "moka").await;
}
