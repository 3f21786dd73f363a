//! The quickstart's OTLP export (feature `otlp`): with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the
//! spans of a login against the real provider reach a collector as OTLP/HTTP protobuf, under
//! `OTEL_SERVICE_NAME`. One test per process: it sets the process's environment and its global
//! subscriber.

use std::sync::{Arc, Mutex};

use auth_layer_tests::{Browser, CLIENT_SECRET, EnvOptions, TestEnv};
use tracing_subscriber::layer::SubscriberExt;

/// What a collector received: each request's content type and body.
type Received = Arc<Mutex<Vec<(String, bytes::Bytes)>>>;

#[test]
fn the_spans_of_a_login_reach_an_otlp_collector_named_by_the_environment() {
    // A collector: the OTLP/HTTP traces path, answering as one does.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let received = Received::default();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let kept = kept.clone();
            async move {
                let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                kept.lock().unwrap().push((kind, body));
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    // SAFETY: set before this process's other threads read the environment (the runtime's
    // workers read none, and nothing else runs yet).
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector);
        std::env::set_var("OTEL_SERVICE_NAME", "auth-layer-otlp-test");
    }

    runtime.block_on(async {
        let provider = quickstart::otlp::tracer_provider().unwrap().expect("export is on");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("auth_layer=debug"))
            .with(quickstart::otlp::layer(&provider));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        let redis = auth_layer_tests::servers::redis_url();
        let env =
            TestEnv::start_with(EnvOptions { store: quickstart::StoreChoice::Redis(redis), ..Default::default() })
                .await;
        let done = Browser::new().login(&env.app_url, "otto").await;
        assert_eq!(done.status(), reqwest::StatusCode::FOUND);
        // Shutting down sends what the exporter holds (blocking: off the runtime's workers).
        tokio::task::spawn_blocking(move || provider.shutdown()).await.unwrap().unwrap();
    });

    let received = received.lock().unwrap();
    assert!(!received.is_empty(), "nothing reached the collector");
    assert!(
        received.iter().all(|(kind, _)| kind == "application/x-protobuf"),
        "{:?}",
        received.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    let all: Vec<u8> = received.iter().flat_map(|(_, body)| body.iter().copied()).collect();
    let holds = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    for needle in [
        &b"auth-layer-otlp-test"[..],
        b"auth_route",
        b"provider_request",
        b"store_operation",
        b"http.request.method",
        b"db.system.name",
        b"callback",
    ] {
        assert!(holds(needle), "no {} in what the collector received", String::from_utf8_lossy(needle));
    }
    assert!(!holds(CLIENT_SECRET.as_bytes()), "the client secret was exported");
}
