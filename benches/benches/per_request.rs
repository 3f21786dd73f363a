//! The per-request path, in-process (no network between client and app):
//!
//! - `seal`: sealing and opening a session value of 1 KB, and of 6 KB (chunked over two cookies);
//! - `session_read`: reading the request's session from each store (cookie, memory, Redis,
//!   PostgreSQL), as `AuthClient::session` does for a handler;
//! - `service`: one whole `AuthService::call`, against the bare inner service it wraps, for a
//!   route that never touches the session and for one that reads the user's `sub`; for the
//!   memory store also `/me-user`, the same read through axum's `User` extractor (which hands
//!   the handler its own `User`); and `cookie-tenants`, the cookie store behind `Tenants` (two
//!   tenants, found by the `Host` header): what a tenant resolver adds to a request.
//!
//! `cargo bench -p auth-layer-benches --bench per_request` (the test provider installed by
//! `npm ci --prefix tests/idp`; Redis and PostgreSQL at `REDIS_URL` and `DATABASE_URL`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use auth_layer::__private::Sealer;
use auth_layer::backend::{PostgresBackend, RedisBackend};
use auth_layer::store::{CookieSessionStore, ServerSessionStore, SessionStore, StoreContext};
use auth_layer::{AuthClient, AuthConfig, AuthLayer, Session, SessionData, SharedState, User};
use auth_layer_benches::test_session;
use auth_layer_tests::servers::{database_url, redis_url};
use auth_layer_tests::{CLIENT_SECRET, Provider, ProviderOptions, SECRET};
use axum::extract::FromRequestParts;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

fn config(issuer: &str) -> AuthConfig {
    AuthConfig::builder()
        .issuer(issuer)
        .client_id("test-app")
        .client_secret(CLIENT_SECRET)
        .secret(SECRET)
        .base_url("http://127.0.0.1:9")
        .build()
        .expect("bench configuration")
}

/// A session whose JSON is about `bytes` long.
fn session_of_size(bytes: usize) -> SessionData {
    let mut session = test_session();
    let json = serde_json::to_vec(&session).unwrap().len();
    if bytes > json {
        session.user.claims_mut().insert("bio".into(), "b".repeat(bytes - json - 10).into());
    }
    session
}

/// The request `Cookie` header a browser sends back after `ctx`'s `Set-Cookie`s.
fn cookie_header(ctx: StoreContext) -> HeaderValue {
    let mut headers = HeaderMap::new();
    ctx.apply(&mut headers);
    let pairs: Vec<&str> =
        headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().split(';').next().unwrap()).collect();
    HeaderValue::from_str(&pairs.join("; ")).unwrap()
}

fn seal(c: &mut Criterion) {
    let sealer = Sealer::new(&[SECRET], "bench");
    let mut group = c.benchmark_group("seal");
    for size in [1_024usize, 6_144] {
        let plain = vec![b'x'; size];
        let sealed = sealer.seal("_a0_session", &plain);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &plain, |b, plain| {
            b.iter(|| sealer.seal("_a0_session", plain))
        });
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, sealed| {
            b.iter(|| sealer.open("_a0_session", sealed).unwrap())
        });
    }
    group.finish();
}

fn cookie_store(c: &mut Criterion, rt: &Runtime, issuer: &str) {
    let config = config(issuer);
    let store = CookieSessionStore::new(&config);
    let mut group = c.benchmark_group("cookie_store");
    for size in [1_024usize, 6_144] {
        let session = session_of_size(size);
        group.bench_with_input(BenchmarkId::new("set", size), &session, |b, session| {
            b.iter(|| {
                let mut ctx = StoreContext::default();
                rt.block_on(store.set(&mut ctx, session)).unwrap();
                ctx
            })
        });
        let mut ctx = StoreContext::default();
        rt.block_on(store.set(&mut ctx, &session)).unwrap();
        let header = cookie_header(ctx);
        let chunks = header.to_str().unwrap().matches("_a0_session").count();
        assert!(if size > 4_000 { chunks > 1 } else { chunks == 1 }, "{size} bytes: {chunks} cookies");
        group.bench_with_input(BenchmarkId::new("get", size), &header, |b, header| {
            b.iter(|| {
                let mut ctx = StoreContext::from_cookie_headers([header]);
                rt.block_on(store.get(&mut ctx)).unwrap().unwrap()
            })
        });
    }
    group.finish();
}

/// Reading the request's session from `store`, which holds 1,000 other sessions.
fn bench_read(c: &mut Criterion, rt: &Runtime, name: &str, store: Arc<dyn SessionStore>) {
    let header = rt.block_on(async {
        for i in 0..1_000 {
            let other = auth_layer_benches::test_session_of(&format!("user-{i}"), &format!("sid-{i}"));
            store.set(&mut StoreContext::default(), &other).await.unwrap();
        }
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &test_session()).await.unwrap();
        cookie_header(ctx)
    });
    c.bench_function(&format!("session_read/{name}"), |b| {
        b.to_async(rt).iter(|| async {
            let mut ctx = StoreContext::from_cookie_headers([&header]);
            store.get(&mut ctx).await.unwrap().unwrap()
        })
    });
}

fn session_read(c: &mut Criterion, rt: &Runtime, issuer: &str) {
    let config = config(issuer);
    bench_read(c, rt, "cookie", Arc::new(CookieSessionStore::new(&config)));
    bench_read(c, rt, "memory", Arc::new(ServerSessionStore::in_memory(&config)));
    let redis = rt.block_on(RedisBackend::connect(&redis_url())).expect("Redis at REDIS_URL");
    let namespace = format!("bench-read-{}", std::process::id());
    bench_read(c, rt, "redis", Arc::new(ServerSessionStore::new(redis.with_namespace(&namespace), &config)));
    let postgres = rt.block_on(PostgresBackend::connect(&database_url())).expect("PostgreSQL at DATABASE_URL");
    bench_read(c, rt, "postgres", Arc::new(ServerSessionStore::new(postgres, &config)));
}

/// The app behind the layer: `/me` reads the session's `sub`, anything else answers at once.
#[derive(Clone)]
struct App;

impl Service<Request<Empty<Bytes>>> for App {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Empty<Bytes>>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() == "/me-user" {
                let (mut parts, _) = req.into_parts();
                let body = match <User as FromRequestParts<()>>::from_request_parts(&mut parts, &()).await {
                    Ok(user) => Bytes::copy_from_slice(user.sub().as_bytes()),
                    Err(_) => Bytes::from_static(b"none"),
                };
                return Ok(Response::new(Full::new(body)));
            }
            if req.uri().path() != "/me" {
                return Ok(Response::new(Full::from("public")));
            }
            let body = match req.extensions().get::<Session>() {
                Some(session) => match session.user().await {
                    Ok(Some(user)) => Bytes::copy_from_slice(user.sub().as_bytes()),
                    _ => Bytes::from_static(b"none"),
                },
                None => Bytes::from_static(b"bench-user"),
            };
            Ok(Response::new(Full::new(body)))
        })
    }
}

fn request(path: &str, cookie: &HeaderValue) -> Request<Empty<Bytes>> {
    Request::get(path).header(COOKIE, cookie.clone()).body(Empty::new()).unwrap()
}

async fn body(response: Response<impl http_body::Body<Data = Bytes, Error = impl std::fmt::Debug>>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

fn service(c: &mut Criterion, rt: &Runtime, issuer: &str) {
    let config = config(issuer);
    let mut group = c.benchmark_group("service");
    let bare_cookie = HeaderValue::from_static("bare=0123456789abcdefghijklmnopqrstuvwxyzABCDEFG");
    for path in ["/public", "/me"] {
        group.bench_function(BenchmarkId::new("bare", path), |b| {
            b.to_async(rt).iter(|| async { body(App.call(request(path, &bare_cookie)).await.unwrap()).await })
        });
    }
    let stores: [(&str, Arc<dyn SessionStore>); 2] = [
        ("cookie", Arc::new(CookieSessionStore::new(&config))),
        ("memory", Arc::new(ServerSessionStore::in_memory(&config))),
    ];
    for (name, store) in stores {
        let layer = rt
            .block_on(
                AuthClient::builder(config.clone())
                    .with_session_store(store.clone())
                    .with_shared_state(SharedState::in_memory())
                    .build(),
            )
            .map(AuthLayer::new)
            .expect("discovery");
        let cookie = rt.block_on(async {
            let mut ctx = StoreContext::default();
            store.set(&mut ctx, &test_session()).await.unwrap();
            cookie_header(ctx)
        });
        let mut svc = layer.layer(App);
        let paths: &[&str] = if name == "memory" { &["/public", "/me", "/me-user"] } else { &["/public", "/me"] };
        // Every route that reads the session must answer the minted one before it is timed.
        for &path in paths.iter().filter(|&&path| path != "/public") {
            let answer = rt
                .block_on(async { body(svc.ready().await.unwrap().call(request(path, &cookie)).await.unwrap()).await });
            assert_eq!(answer, test_session().sub().as_bytes(), "{name} {path}: the layer reads the minted session");
        }
        for &path in paths {
            group.bench_function(BenchmarkId::new(name, path), |b| {
                b.to_async(rt).iter(|| {
                    let mut svc = svc.clone();
                    let cookie = cookie.clone();
                    async move { body(svc.ready().await.unwrap().call(request(path, &cookie)).await.unwrap()).await }
                })
            });
        }
    }
    // The same cookie store behind `Tenants` (two tenants, found by the `Host` header): the
    // per-request cost a resolver adds over one provider.
    let tenant_config = |id: &str| {
        AuthConfig::builder()
            .tenant(id)
            .issuer(issuer)
            .client_id("test-app")
            .client_secret(CLIENT_SECRET)
            .secret(SECRET)
            .base_url(format!("http://{id}"))
            .build()
            .expect("tenant configuration")
    };
    let (a, b) = (tenant_config("a.example"), tenant_config("b.example"));
    let session_a = test_session().with_tenant(&a);
    let store_a: Arc<dyn SessionStore> = Arc::new(CookieSessionStore::new(&a));
    let client_a = rt
        .block_on(
            AuthClient::builder(a)
                .with_session_store(store_a.clone())
                .with_shared_state(SharedState::in_memory())
                .build(),
        )
        .expect("discovery");
    let client_b = rt.block_on(AuthClient::new(b)).expect("discovery");
    let tenants = auth_layer::Tenants::new()
        .tenant(client_a.clone(), ["a.example"])
        .and_then(|t| t.tenant(client_b, ["b.example"]))
        .expect("two tenants");
    let cookie = rt.block_on(async {
        let mut ctx = StoreContext::default();
        store_a.set(&mut ctx, &session_a).await.unwrap();
        cookie_header(ctx)
    });
    let at_a = |path: &str, cookie: &HeaderValue| {
        let mut req = request(path, cookie);
        req.headers_mut().insert(http::header::HOST, HeaderValue::from_static("a.example"));
        req
    };
    // Each layer answers the minted session before it is timed, on `/public` and `/me` of tenant A.
    let mut bench_tenants = |name: &str, layer: auth_layer::TenantLayer| {
        let mut svc = layer.layer(App);
        let answer =
            rt.block_on(async { body(svc.ready().await.unwrap().call(at_a("/me", &cookie)).await.unwrap()).await });
        assert_eq!(answer, test_session().sub().as_bytes(), "{name} /me: the layer reads the minted session");
        for path in ["/public", "/me"] {
            group.bench_function(BenchmarkId::new(name, path), |b| {
                b.to_async(rt).iter(|| {
                    let mut svc = svc.clone();
                    let req = at_a(path, &cookie);
                    async move { body(svc.ready().await.unwrap().call(req).await.unwrap()).await }
                })
            });
        }
    };
    bench_tenants("cookie-tenants", auth_layer::TenantLayer::new(tenants).expect("a layer"));
    // The same tenant given by a loader (`Tenants::load_with`), loaded by the first request:
    // every later request finds it with one cache lookup.
    let loaded_client = client_a;
    let loaded = auth_layer::Tenants::new().load_with(move |host: String| {
        let client = loaded_client.clone();
        async move { Ok((host == "a.example").then_some(client)) }
    });
    bench_tenants("cookie-tenants-loaded", auth_layer::TenantLayer::new(loaded).expect("a layer"));
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let provider = rt.block_on(Provider::start("http://127.0.0.1:9", &ProviderOptions::default()));
    seal(c);
    cookie_store(c, &rt, &provider.issuer);
    session_read(c, &rt, &provider.issuer);
    service(c, &rt, &provider.issuer);
    drop(provider);
}

criterion_group! {
    name = per_request;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(per_request);
