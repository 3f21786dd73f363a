//! Several providers in one app (the multi-tenant example): two real test providers, the app
//! answering as tenant A at `127.0.0.1:PORT` and tenant B at `localhost:PORT`. Each tenant's
//! sessions work on its own host only; an authorization response or a logout token of one
//! provider is refused by the other tenant; a back-channel logout ends only its tenant's
//! sessions, though both tenants have a user of the same `sub`; issuers nobody configured are
//! never fetched from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use auth_layer_tests::servers::redis_url;
use auth_layer_tests::{Browser, Tenants2};
use quickstart::{SharedChoice, StoreChoice};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A user of this name at both providers: the same `sub` at A and at B.
fn shared_user() -> String {
    format!("ann-{}-{}", std::process::id(), auth_layer_tests::free_port())
}

/// `/auth/profile` at `url` with `cookie`: its status and JSON body.
async fn profile(url: &str, cookie: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{url}/auth/profile"))
        .header("accept", "application/json")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The error code of a JSON error response.
async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

/// The stores a multi-tenant app may run: each tenant's cookie sessions (markers in memory),
/// and both tenants' server-side sessions in one Redis.
fn setups() -> [(StoreChoice, SharedChoice); 2] {
    [(StoreChoice::Cookie, SharedChoice::Default), (StoreChoice::Redis(redis_url()), SharedChoice::Default)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_logs_in_at_its_own_provider_and_its_session_is_anonymous_on_the_other_host() {
    for (store, shared) in setups() {
        let env = Tenants2::start(store.clone(), shared).await;
        let user = shared_user();
        let (at_a, at_b) = (Browser::new(), Browser::new());
        at_a.login(&env.a_url, &user).await;
        at_b.login(&env.b_url, &user).await;
        let (a_cookie, b_cookie) = (at_a.cookie_header(&env.a_url), at_b.cookie_header(&env.b_url));
        let (status, me) = profile(&env.a_url, &a_cookie).await;
        assert_eq!((status, me["sub"].as_str()), (StatusCode::OK, Some(user.as_str())), "{store:?}: A's session at A");
        let (status, _) = profile(&env.b_url, &b_cookie).await;
        assert_eq!(status, StatusCode::OK, "{store:?}: B's session at B");
        // The browser keeps each host's cookies apart; a cookie carried over by hand is no
        // session on the other tenant, though the user's `sub` is the same there.
        assert_eq!(profile(&env.b_url, &a_cookie).await.0, StatusCode::UNAUTHORIZED, "{store:?}: A's cookie at B");
        assert_eq!(profile(&env.a_url, &b_cookie).await.0, StatusCode::UNAUTHORIZED, "{store:?}: B's cookie at A");

        // Logging out at A goes to A's provider and ends A's session, not B's.
        let logout =
            at_a.http.post(format!("{}/auth/logout", env.a_url)).header("origin", &env.a_url).send().await.unwrap();
        assert_eq!(logout.status(), StatusCode::FOUND, "{store:?}");
        let to = logout.headers()["location"].to_str().unwrap();
        assert!(to.starts_with(&env.a.issuer), "{store:?}: A's logout goes to A's provider: {to}");
        assert_eq!(profile(&env.a_url, &a_cookie).await.0, StatusCode::UNAUTHORIZED, "{store:?}: A logged out");
        assert_eq!(profile(&env.b_url, &b_cookie).await.0, StatusCode::OK, "{store:?}: B's session stays");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_channel_logout_ends_only_its_own_tenants_session_of_a_shared_sub() {
    let stores = [
        (StoreChoice::Cookie, SharedChoice::Default),
        (StoreChoice::Cookie, SharedChoice::Redis(redis_url())),
        (StoreChoice::Redis(redis_url()), SharedChoice::Default),
    ];
    for (store, shared) in stores {
        let env = Tenants2::start(store.clone(), shared.clone()).await;
        let user = shared_user();
        let (at_a, at_b) = (Browser::new(), Browser::new());
        at_a.login(&env.a_url, &user).await;
        at_b.login(&env.b_url, &user).await;
        let (a_cookie, b_cookie) = (at_a.cookie_header(&env.a_url), at_b.cookie_header(&env.b_url));

        // A token signed by A's provider that claims to be B's, naming the user: B's keys do
        // not verify it, and nothing ends.
        let forged = json!({
            "iss": env.b.issuer, "aud": "test-app", "iat": now(), "exp": now() + 120, "jti": format!("forged-{user}"),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": user,
        });
        let token = env.a.sign(json!({"typ": "logout+jwt"}), forged, "provider").await;
        for url in [&env.a_url, &env.b_url] {
            let response = reqwest::Client::new()
                .post(format!("{url}/auth/backchannel-logout"))
                .form(&[("logout_token", token.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{store:?}/{shared:?}: A's signature as B");
        }
        assert_eq!(profile(&env.a_url, &a_cookie).await.0, StatusCode::OK, "{store:?}/{shared:?}");
        assert_eq!(profile(&env.b_url, &b_cookie).await.0, StatusCode::OK, "{store:?}/{shared:?}");

        // B's provider logs the user out: its back-channel POST ends B's session only.
        at_b.confirm_provider_logout(&format!("{}/session/end", env.b.issuer)).await;
        assert_eq!(profile(&env.b_url, &b_cookie).await.0, StatusCode::UNAUTHORIZED, "{store:?}/{shared:?}: B ended");
        assert_eq!(profile(&env.a_url, &a_cookie).await.0, StatusCode::OK, "{store:?}/{shared:?}: A's survives");

        // A logout of every session of the `sub` (no `sid`), by B's provider: B's new session
        // ends, A's session of the same `sub` does not.
        at_b.login(&env.b_url, &user).await;
        let b_cookie = at_b.cookie_header(&env.b_url);
        assert_eq!(profile(&env.b_url, &b_cookie).await.0, StatusCode::OK, "{store:?}/{shared:?}: B again");
        let every = json!({
            "iss": env.b.issuer, "aud": "test-app", "iat": now(), "exp": now() + 120, "jti": format!("sub-{user}"),
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": user,
        });
        let token = env.b.sign(json!({"typ": "logout+jwt"}), every, "provider").await;
        let response = reqwest::Client::new()
            .post(format!("{}/auth/backchannel-logout", env.b_url))
            .form(&[("logout_token", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{store:?}/{shared:?}: B's sub-only logout");
        assert_eq!(profile(&env.b_url, &b_cookie).await.0, StatusCode::UNAUTHORIZED, "{store:?}/{shared:?}: B's sub");
        assert_eq!(profile(&env.a_url, &a_cookie).await.0, StatusCode::OK, "{store:?}/{shared:?}: A's same sub");
    }
}

/// Starts a login at `url` in `browser` and goes through its provider: the callback URL, with
/// its `code`, `state` and `iss`.
async fn authorized(browser: &Browser, url: &str, user: &str) -> url::Url {
    url::Url::parse(&browser.start_and_authorize(url, user, "/auth/login").await).unwrap()
}

fn param(url: &url::Url, name: &str) -> String {
    url.query_pairs().find(|(n, _)| n == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// `GET {base}/auth/callback` with these parameters, from `browser`.
async fn callback(browser: &Browser, base: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let mut url = url::Url::parse(&format!("{base}/auth/callback")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    browser.http.get(url).header("accept", "application/json").send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_response_of_the_other_provider_or_without_iss_is_refused() {
    let env = Tenants2::start(StoreChoice::Cookie, SharedChoice::Default).await;
    let user = shared_user();
    let (at_a, at_b) = (Browser::new(), Browser::new());
    let from_b = authorized(&at_b, &env.b_url, &user).await;
    let (b_code, b_iss) = (param(&from_b, "code"), param(&from_b, "iss"));
    assert_eq!(b_iss, env.b.issuer, "the test provider sends iss (RFC 9207)");

    // B's code, B's iss, delivered to A's callback with a login A started: the issuer is not
    // A's provider.
    let own = authorized(&at_a, &env.a_url, &user).await;
    let response =
        callback(&at_a, &env.a_url, &[("code", &b_code), ("state", &param(&own, "state")), ("iss", &b_iss)]).await;
    assert_eq!(error_code(response).await, (StatusCode::BAD_REQUEST, "issuer_mismatch".into()));

    // B's code with A's issuer claimed: A's token endpoint does not know the code.
    let own = authorized(&at_a, &env.a_url, &user).await;
    let response =
        callback(&at_a, &env.a_url, &[("code", &b_code), ("state", &param(&own, "state")), ("iss", &env.a.issuer)])
            .await;
    let (status, code) = error_code(response).await;
    assert!(status.is_client_error() || status == StatusCode::BAD_GATEWAY, "B's code exchanged at A: {status} {code}");
    assert_eq!(profile(&env.a_url, &at_a.cookie_header(&env.a_url)).await.0, StatusCode::UNAUTHORIZED);

    // A's own response without `iss`: with several providers, it is required.
    let own = authorized(&at_a, &env.a_url, &user).await;
    let response =
        callback(&at_a, &env.a_url, &[("code", &param(&own, "code")), ("state", &param(&own, "state"))]).await;
    assert_eq!(error_code(response).await, (StatusCode::BAD_REQUEST, "issuer_mismatch".into()));

    // And A's own response, whole, logs in.
    let own = authorized(&at_a, &env.a_url, &user).await;
    assert_eq!(at_a.get(own.as_str()).await.status(), StatusCode::FOUND);
    assert_eq!(profile(&env.a_url, &at_a.cookie_header(&env.a_url)).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_initiated_login_names_the_tenants_own_provider_or_is_refused() {
    let env = Tenants2::start(StoreChoice::Cookie, SharedChoice::Default).await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // B's issuer at A's initiate_login_uri: refused, nothing sent to either provider.
    let wrong = Browser::new().http.get(format!("{}/auth/login?iss={}", env.a_url, enc(&env.b.issuer)));
    let wrong = wrong.header("accept", "application/json").send().await.unwrap();
    assert_eq!(error_code(wrong).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
    // Each tenant's own issuer starts a login at its own provider.
    for (url, provider) in [(&env.a_url, &env.a), (&env.b_url, &env.b)] {
        let start = Browser::new().get(&format!("{url}/auth/login?iss={}", enc(&provider.issuer))).await;
        assert_eq!(start.status(), StatusCode::FOUND, "{url}");
        let to = start.headers()["location"].to_str().unwrap();
        assert!(to.starts_with(&provider.issuer), "{url} goes to its own provider: {to}");
    }
}

/// A server that counts the connections it is offered and answers none.
async fn counting_server() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuers_no_tenant_configured_are_never_fetched_and_unknown_hosts_get_400() {
    let env = Tenants2::start(StoreChoice::Cookie, SharedChoice::Default).await;
    let (stranger, connections) = counting_server().await;

    // A logout token naming the stranger as its issuer (signed by A's provider, with a `jku`
    // and `kid` that point there too).
    let claims = json!({
        "iss": stranger, "aud": "test-app", "iat": now(), "exp": now() + 120, "jti": "stranger-1",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": "anyone",
    });
    let header = json!({"typ": "logout+jwt", "kid": "stranger-key", "jku": format!("{stranger}/jwks")});
    let token = env.a.sign(header, claims, "provider").await;
    let response = reqwest::Client::new()
        .post(format!("{}/auth/backchannel-logout", env.a_url))
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // An authorization response naming the stranger as its issuer.
    let at_a = Browser::new();
    let own = authorized(&at_a, &env.a_url, &shared_user()).await;
    let response = callback(
        &at_a,
        &env.a_url,
        &[("code", &param(&own, "code")), ("state", &param(&own, "state")), ("iss", &stranger)],
    )
    .await;
    assert_eq!(error_code(response).await, (StatusCode::BAD_REQUEST, "issuer_mismatch".into()));
    assert_eq!(connections.load(Ordering::SeqCst), 0, "nothing was fetched from an issuer no tenant has");

    // A host that is no tenant's: 400, never a tenant by accident.
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/auth/login", env.port))
        .header("host", "evil.example")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(response).await, (StatusCode::BAD_REQUEST, "unknown_tenant".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_goes_to_the_tenants_own_provider_and_one_provider_down_leaves_the_other_working() {
    let mut env = Tenants2::start(StoreChoice::Cookie, SharedChoice::Default).await;
    let user = shared_user();
    let (at_a, at_b) = (Browser::new(), Browser::new());
    at_a.login(&env.a_url, &user).await;
    at_b.login(&env.b_url, &user).await;
    let refresh = |browser: &Browser, url: &str| {
        let request = browser.http.post(format!("{url}/refresh-token")).header("accept", "application/json");
        async move { request.send().await.unwrap() }
    };
    let (a_before, b_before) = (env.a.refresh_grants().await, env.b.refresh_grants().await);
    assert_eq!(refresh(&at_a, &env.a_url).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(env.a.refresh_grants().await, a_before + 1, "A's refresh at A's provider");
    assert_eq!(env.b.refresh_grants().await, b_before, "none at B's");

    // B's provider goes down: B's refresh fails cleanly, A carries on (refresh and login).
    env.b.stop().await;
    let status = refresh(&at_b, &env.b_url).await.status();
    assert!(status.is_server_error() && status != StatusCode::INTERNAL_SERVER_ERROR, "B's provider down: {status}");
    assert_eq!(refresh(&at_a, &env.a_url).await.status(), StatusCode::SEE_OTHER);
    let again = Browser::new();
    again.login(&env.a_url, &shared_user()).await;
    assert_eq!(profile(&env.a_url, &again.cookie_header(&env.a_url)).await.0, StatusCode::OK);
}

/// Where `GET /auth/login` sends the browser when the request carries `headers`: the tenant's
/// provider, or the status when it is refused.
async fn login_goes_to(app: &axum::Router, headers: &[(&str, &str)]) -> Result<String, StatusCode> {
    use tower::ServiceExt;
    let mut request = axum::http::Request::get("/auth/login");
    for (name, value) in headers {
        request = match *name {
            // The address the request came from, as a server puts it in the extensions.
            "peer" => {
                request.extension(auth_layer::PeerAddr(std::net::SocketAddr::new(value.parse().unwrap(), 50_000)))
            }
            _ => request.header(*name, *value),
        };
    }
    let response = app.clone().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
    match response.headers().get("location") {
        Some(location) if response.status() == StatusCode::FOUND => Ok(location.to_str().unwrap().to_owned()),
        _ => Err(response.status()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_found_by_host_trusted_header_or_the_apps_rule_and_misconfigurations_are_refused() {
    use auth_layer::{AuthClient, AuthConfig, TenantLayer, Tenants};
    use auth_layer_tests::{CLIENT_SECRET, Provider, ProviderOptions, SECRET};
    let options = ProviderOptions::default();
    let (a, b) =
        tokio::join!(Provider::start("http://a.example", &options), Provider::start("http://b.example", &options));
    let client = |tenant: Option<&str>, issuer: &str, host: &str| {
        let mut config = AuthConfig::builder();
        if let Some(id) = tenant {
            config = config.tenant(id);
        }
        let config = config
            .issuer(issuer)
            .client_id("test-app")
            .client_secret(CLIENT_SECRET)
            .secret(SECRET)
            .base_url(format!("http://{host}"))
            .build()
            .unwrap();
        async move { AuthClient::new(config).await.unwrap() }
    };
    let (client_a, client_b) =
        (client(Some("a"), &a.issuer, "a.example").await, client(Some("b"), &b.issuer, "b.example").await);
    let two = || {
        Tenants::new()
            .tenant(client_a.clone(), ["a.example"])
            .unwrap()
            .tenant(client_b.clone(), ["B.Example:8080"])
            .unwrap()
    };

    // By host, without regard to case; an unknown host is refused.
    let app = quickstart::app(TenantLayer::new(two()).unwrap());
    assert!(login_goes_to(&app, &[("host", "A.EXAMPLE")]).await.unwrap().starts_with(&a.issuer));
    assert!(login_goes_to(&app, &[("host", "b.example:8080")]).await.unwrap().starts_with(&b.issuer));
    assert_eq!(login_goes_to(&app, &[("host", "c.example")]).await, Err(StatusCode::BAD_REQUEST));
    assert_eq!(login_goes_to(&app, &[]).await, Err(StatusCode::BAD_REQUEST), "no host at all");

    // By a trusted proxy's header (the Host it reached us with is its own), with a fallback;
    // the same header from any other peer, or one whose address is unknown, is ignored.
    let proxies: auth_layer::TrustedProxies = "10.0.0.0/8".parse().unwrap();
    let app = quickstart::app(
        TenantLayer::new(
            two()
                .host_header(axum::http::HeaderName::from_static("x-original-host"))
                .trusted_proxies(proxies.clone())
                .fallback("a")
                .unwrap(),
        )
        .unwrap(),
    );
    let via = |peer: &'static str, forwarded: &'static str| {
        [("peer", peer), ("host", "internal:80"), ("x-original-host", forwarded)]
    };
    assert!(login_goes_to(&app, &via("10.0.0.9", "b.example:8080")).await.unwrap().starts_with(&b.issuer));
    assert!(login_goes_to(&app, &via("10.0.0.9", "c.example")).await.unwrap().starts_with(&a.issuer), "the fallback");
    let spoofed = [("peer", "198.51.100.7"), ("host", "a.example"), ("x-original-host", "b.example:8080")];
    assert!(login_goes_to(&app, &spoofed).await.unwrap().starts_with(&a.issuer), "an untrusted peer's header");
    let unknown = [("host", "a.example"), ("x-original-host", "b.example:8080")];
    assert!(login_goes_to(&app, &unknown).await.unwrap().starts_with(&a.issuer), "a peer of unknown address");
    // The standard headers from a trusted proxy, without the app naming one.
    let app = quickstart::app(TenantLayer::new(two().trusted_proxies(proxies)).unwrap());
    let forwarded =
        [("peer", "10.1.1.1"), ("host", "internal:80"), ("forwarded", "host=\"b.example:8080\";proto=http")];
    assert!(login_goes_to(&app, &forwarded).await.unwrap().starts_with(&b.issuer));
    let xfh = [("peer", "10.1.1.1"), ("host", "internal:80"), ("x-forwarded-host", "a.example")];
    assert!(login_goes_to(&app, &xfh).await.unwrap().starts_with(&a.issuer));
    let spoofed = [("peer", "192.0.2.1"), ("host", "c.example"), ("x-forwarded-host", "a.example")];
    assert_eq!(login_goes_to(&app, &spoofed).await, Err(StatusCode::BAD_REQUEST), "untrusted: its Host, no tenant");
    let header = axum::http::HeaderName::from_static("x-original-host");
    assert!(TenantLayer::new(two().host_header(header)).is_err(), "a host header with no proxy trusted to set it");

    // By the app's own rule.
    let app = quickstart::app(
        TenantLayer::new(
            two().pick_with(|headers, _| headers.get("x-customer").and_then(|v| v.to_str().ok()).map(str::to_owned)),
        )
        .unwrap(),
    );
    assert!(login_goes_to(&app, &[("x-customer", "b")]).await.unwrap().starts_with(&b.issuer));
    assert_eq!(login_goes_to(&app, &[("x-customer", "z"), ("host", "a.example")]).await, Err(StatusCode::BAD_REQUEST));

    // Configured tenants beside a loader: configured ones are found without asking it; a host
    // it knows nothing of goes to the fallback, never to a tenant by accident.
    let asked = Arc::new(AtomicU64::new(0));
    let counter = asked.clone();
    let loaded_b = client_b.clone();
    let with_loader = Tenants::new().tenant(client_a.clone(), ["a.example"]).unwrap().load_with(move |host: String| {
        counter.fetch_add(1, Ordering::SeqCst);
        let b = loaded_b.clone();
        async move { Ok((host == "b.example").then_some(b)) }
    });
    let app = quickstart::app(TenantLayer::new(with_loader.clone()).unwrap());
    assert!(login_goes_to(&app, &[("host", "a.example")]).await.unwrap().starts_with(&a.issuer));
    assert_eq!(asked.load(Ordering::SeqCst), 0, "a configured tenant is not asked of the loader");
    assert!(login_goes_to(&app, &[("host", "B.example")]).await.unwrap().starts_with(&b.issuer));
    assert_eq!(login_goes_to(&app, &[("host", "c.example")]).await, Err(StatusCode::BAD_REQUEST));
    let app = quickstart::app(TenantLayer::new(with_loader.fallback("a").unwrap()).unwrap());
    assert!(login_goes_to(&app, &[("host", "d.example")]).await.unwrap().starts_with(&a.issuer), "the fallback");
    assert_eq!(asked.load(Ordering::SeqCst), 3, "b, c and d, each asked once");

    // Misconfigurations, refused when the layer is put together.
    let untenanted = client(None, &a.issuer, "a.example").await;
    assert!(Tenants::new().tenant(untenanted, ["x.example"]).is_err(), "a client that names no tenant");
    assert!(two().tenant(client_a.clone(), ["c.example"]).is_err(), "a tenant added twice");
    let other_a = client(Some("a2"), &a.issuer, "a.example").await;
    assert!(two().tenant(other_a, ["A.example"]).is_err(), "a host taken");
    assert!(two().fallback("nobody").is_err(), "a fallback that is no tenant");
    assert!(TenantLayer::new(Tenants::new()).is_err(), "no tenant at all");
}

/// Two tenants given one in-memory store by mistake (ids neither hashed nor namespaced there):
/// the session records its tenant, and read on the other tenant it is no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_read_on_another_tenant_through_a_shared_store_is_no_session() {
    use auth_layer::store::ServerSessionStore;
    use auth_layer::{AuthClient, AuthConfig, TenantLayer, Tenants};
    use auth_layer_tests::{CLIENT_SECRET, Provider, ProviderOptions, SECRET};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (a_url, b_url) = (format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}"));
    let options = ProviderOptions::default();
    let (a, b) = tokio::join!(Provider::start(&a_url, &options), Provider::start(&b_url, &options));
    let config = |id: &str, issuer: &str, base: &str| {
        AuthConfig::builder()
            .tenant(id)
            .issuer(issuer)
            .client_id("test-app")
            .client_secret(CLIENT_SECRET)
            .secret(SECRET)
            .base_url(base)
            .profile_route(true)
            .build()
            .unwrap()
    };
    let (config_a, config_b) = (config("a", &a.issuer, &a_url), config("b", &b.issuer, &b_url));
    let shared = Arc::new(ServerSessionStore::in_memory(&config_a));
    let client_a = AuthClient::builder(config_a).with_server_sessions(shared.clone()).build().await.unwrap();
    let client_b = AuthClient::builder(config_b).with_server_sessions(shared).build().await.unwrap();
    let tenants = Tenants::new()
        .tenant(client_a, [format!("127.0.0.1:{port}")])
        .and_then(|t| t.tenant(client_b, [format!("localhost:{port}")]))
        .unwrap();
    let app = quickstart::app(TenantLayer::new(tenants).unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let at_a = Browser::new();
    at_a.login(&a_url, &shared_user()).await;
    let cookie = at_a.cookie_header(&a_url);
    assert_eq!(profile(&a_url, &cookie).await.0, StatusCode::OK, "A's session at A");
    assert_eq!(profile(&b_url, &cookie).await.0, StatusCode::UNAUTHORIZED, "A's session id at B");
    server.abort();
}

/// The app's own table of tenants (host -> issuer), as a loader reads it, and how often it was
/// asked, by host.
#[derive(Clone, Default)]
struct TenantTable {
    issuers: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
    asked: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
}

impl TenantTable {
    fn set(&self, host: &str, issuer: &str) {
        self.issuers.lock().unwrap().insert(host.to_owned(), issuer.to_owned());
    }

    fn asked(&self, host: &str) -> u64 {
        self.asked.lock().unwrap().get(host).copied().unwrap_or(0)
    }

    /// `Tenants` that load each host's client from this table when first asked for.
    fn tenants(&self) -> auth_layer::Tenants {
        let table = self.clone();
        auth_layer::Tenants::new().load_with(move |host: String| {
            let table = table.clone();
            async move {
                *table.asked.lock().unwrap().entry(host.clone()).or_default() += 1;
                let Some(issuer) = table.issuers.lock().unwrap().get(&host).cloned() else { return Ok(None) };
                // A slow database: concurrent first requests all wait for this one load.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let config = auth_layer::AuthConfig::builder()
                    .tenant(host.clone())
                    .issuer(issuer)
                    .client_id("test-app")
                    .client_secret(auth_layer_tests::CLIENT_SECRET)
                    .secret(auth_layer_tests::SECRET)
                    .base_url(format!("http://{host}"))
                    .profile_route(true)
                    .backchannel_logout_route(true)
                    .build()?;
                Ok(Some(quickstart::client_with(config, StoreChoice::Cookie, SharedChoice::Default).await?))
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_the_loader_gives_are_discovered_when_first_asked_for_once_and_kept() {
    use auth_layer::TenantLayer;
    use auth_layer_tests::{Provider, ProviderOptions};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (a_host, b_host) = (format!("127.0.0.1:{port}"), format!("localhost:{port}"));
    let (a_url, b_url) = (format!("http://{a_host}"), format!("http://{b_host}"));
    let options = ProviderOptions::default();
    let (a, b) = tokio::join!(Provider::start(&a_url, &options), Provider::start(&b_url, &options));
    let table = TenantTable::default();
    table.set(&a_host, &a.issuer);
    table.set(&b_host, &b.issuer);
    let tenants = table.tenants();
    let app = quickstart::app(TenantLayer::new(tenants.clone()).unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!((a.jwks_fetches().await, b.jwks_fetches().await), (0, 0), "nothing discovered before it is asked for");

    // Eight first requests for B at once: one load, one discovery; each goes to B's provider.
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = format!("{b_url}/auth/login");
        logins.spawn(async move { Browser::new().get(&url).await });
    }
    for response in logins.join_all().await {
        assert_eq!(response.status(), StatusCode::FOUND);
        assert!(response.headers()["location"].to_str().unwrap().starts_with(&b.issuer));
    }
    assert_eq!(table.asked(&b_host), 1, "concurrent first requests share one load");
    assert_eq!((a.jwks_fetches().await, b.jwks_fetches().await), (0, 1), "only B's provider was discovered");

    // Each tenant's session works at its own host only; the loader is not asked again.
    let user = shared_user();
    let (at_a, at_b) = (Browser::new(), Browser::new());
    at_a.login(&a_url, &user).await;
    at_b.login(&b_url, &user).await;
    let (a_cookie, b_cookie) = (at_a.cookie_header(&a_url), at_b.cookie_header(&b_url));
    assert_eq!(profile(&a_url, &a_cookie).await.0, StatusCode::OK);
    assert_eq!(profile(&b_url, &b_cookie).await.0, StatusCode::OK);
    assert_eq!(profile(&b_url, &a_cookie).await.0, StatusCode::UNAUTHORIZED, "A's cookie at B");
    assert_eq!((table.asked(&a_host), table.asked(&b_host)), (1, 1), "kept after the first load");

    // B's provider logs the user out over the back channel, to B's host: B's loaded client
    // checks the token and ends B's session only.
    let every = json!({
        "iss": b.issuer, "aud": "test-app", "iat": now(), "exp": now() + 120, "jti": format!("loaded-{user}"),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} }, "sub": user,
    });
    let token = b.sign(json!({"typ": "logout+jwt"}), every, "provider").await;
    let response = reqwest::Client::new()
        .post(format!("{b_url}/auth/backchannel-logout"))
        .form(&[("logout_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(profile(&b_url, &b_cookie).await.0, StatusCode::UNAUTHORIZED, "B's session ended");
    assert_eq!(profile(&a_url, &a_cookie).await.0, StatusCode::OK, "A's session of the same sub survives");

    // A host the table does not have: 400, and asked once however often it comes.
    for _ in 0..3 {
        let response = reqwest::Client::new()
            .get(format!("{a_url}/auth/login"))
            .header("host", "nobody.example")
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(response).await, (StatusCode::BAD_REQUEST, "unknown_tenant".into()));
    }
    assert_eq!(table.asked("nobody.example"), 1, "a host that is no tenant is remembered as none");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_moves_to_another_provider_keeps_none_of_the_old_ones_sessions_or_logins() {
    use auth_layer::TenantLayer;
    use auth_layer_tests::{Provider, ProviderOptions};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = format!("127.0.0.1:{port}");
    let url = format!("http://{host}");
    let options = ProviderOptions::default();
    let (old, new) = tokio::join!(Provider::start(&url, &options), Provider::start(&url, &options));
    let table = TenantTable::default();
    table.set(&host, &old.issuer);
    let tenants = table.tenants();
    let app = quickstart::app(TenantLayer::new(tenants.clone()).unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let user = shared_user();
    let browser = Browser::new();
    browser.login(&url, &user).await;
    let cookie = browser.cookie_header(&url);
    assert_eq!(profile(&url, &cookie).await.0, StatusCode::OK);
    let pending = Browser::new();
    let started = authorized(&pending, &url, &user).await;

    // The tenant moves to another provider (same tenant id, same secrets); the app tells the
    // layer. The old provider's session and its login under way are no longer accepted.
    table.set(&host, &new.issuer);
    tenants.forget(&host);
    assert_eq!(profile(&url, &cookie).await.0, StatusCode::UNAUTHORIZED, "a session of the old provider");
    let response = pending.get(started.as_str()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "a login started at the old provider");
    assert_eq!(table.asked(&host), 2, "forgotten, then loaded again");

    // Logins now go to the new provider, and work.
    let again = Browser::new();
    let redirect = again.get(&format!("{url}/auth/login")).await;
    assert!(redirect.headers()["location"].to_str().unwrap().starts_with(&new.issuer));
    again.login(&url, &user).await;
    assert_eq!(profile(&url, &again.cookie_header(&url)).await.0, StatusCode::OK);
    server.abort();
}

/// A loaded tenant whose logout markers are in its client (cookie sessions, nothing shared):
/// a flood of made-up hosts does not push it out, and when it does leave the cache (its idle
/// time is up) and is loaded again, a cookie logged out before is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_stays_final_through_a_flood_of_unknown_hosts_and_a_reload_of_the_tenant() {
    use auth_layer::TenantLayer;
    use auth_layer_tests::{Provider, ProviderOptions};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = format!("127.0.0.1:{port}");
    let url = format!("http://{host}");
    let provider = Provider::start(&url, &ProviderOptions::default()).await;
    let table = TenantTable::default();
    table.set(&host, &provider.issuer);
    let idle = std::time::Duration::from_secs(2);
    let tenants = table.tenants().keep_loaded(4, idle, std::time::Duration::from_secs(60));
    let app = quickstart::app(TenantLayer::new(tenants.clone()).unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let browser = Browser::new();
    browser.login(&url, &shared_user()).await;
    let copied = browser.cookie_header(&url);
    assert_eq!(profile(&url, &copied).await.0, StatusCode::OK);
    assert_eq!(browser.get(&format!("{url}/auth/logout")).await.status(), StatusCode::FOUND);
    assert_eq!(profile(&url, &copied).await.0, StatusCode::UNAUTHORIZED, "logged out");

    let http = reqwest::Client::new();
    for i in 0..200 {
        let response = http.get(format!("{url}/")).header("host", format!("made-up-{i}.example")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(profile(&url, &copied).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(table.asked(&host), 1, "the flood pushed the tenant out");

    tokio::time::sleep(idle + std::time::Duration::from_millis(500)).await;
    assert_eq!(profile(&url, &copied).await.0, StatusCode::UNAUTHORIZED, "still refused after the reload");
    assert_eq!(table.asked(&host), 2, "the tenant's time was up: loaded again");
    let again = Browser::new();
    again.login(&url, &shared_user()).await;
    assert_eq!(profile(&url, &again.cookie_header(&url)).await.0, StatusCode::OK, "a new login works");
    server.abort();
}

/// A provider's URLs are checked against the endpoint policy before anything is fetched from
/// them: an issuer, or a URL its metadata names, that is plain http off this machine or at a
/// private or link-local address fails discovery with the reason, so a loaded tenant whose
/// customer names such a provider never makes the app's server call into its own network.
#[tokio::test]
async fn a_provider_at_a_private_address_or_naming_one_is_refused_before_it_is_called() {
    use auth_layer::{AuthClient, AuthConfig};
    let config = |issuer: &str| {
        AuthConfig::builder()
            .tenant("t")
            .issuer(issuer)
            .client_id("test-app")
            .client_secret(auth_layer_tests::CLIENT_SECRET)
            .secret(auth_layer_tests::SECRET)
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap()
    };
    for issuer in ["https://10.0.0.7/", "http://provider.example/", "https://169.254.169.254/"] {
        let err = AuthClient::new(config(issuer)).await.unwrap_err();
        let chain = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(chain.contains("endpoint policy"), "{issuer}: {chain}");
    }

    // A provider on this machine whose metadata names a cloud metadata address for its keys.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": "http://169.254.169.254/latest/meta-data/iam",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            count.fetch_add(1, Ordering::SeqCst);
            let metadata = metadata.clone();
            async move { ([("content-type", "application/json")], metadata.to_string()) }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = AuthClient::new(config(&issuer)).await.unwrap_err();
    let chain = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(chain.contains("endpoint policy") && chain.contains("169.254.169.254"), "{chain}");
    assert_eq!(served.load(Ordering::SeqCst), 1, "the metadata was read; the key URL never called");
    server.abort();
}
