//! The memory store's footprint: RSS growth per session with 1,000,000 sessions stored
//! (`SESSIONS` to change it), against the size of one session's JSON. Every session is the
//! bench's realistic test session (profile claims, ID, access and refresh tokens) of its own
//! user and provider session, stored through `ServerSessionStore::set` as a login does, then read
//! once through `get` as a request does (which fills the opened cache to its bound).
//!
//! `cargo bench -p auth-layer-benches --bench memory_per_session`; exits non-zero when a session
//! costs more than twice its JSON.

use std::sync::Arc;

use auth_layer::store::{ServerSessionStore, SessionStore, StoreContext};
use auth_layer_benches::{bench_config, rss, test_session_of};
use http::HeaderValue;
use http::header::SET_COOKIE;

/// Length of a session id (256 bits, base64url).
const ID_LEN: usize = 43;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = std::env::var("SESSIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let config = bench_config();
    let store = Arc::new(ServerSessionStore::in_memory(&config));
    let json = serde_json::to_vec(&test_session_of("user-0000000", "sid-0000000")).unwrap().len();

    // The bench keeps every session's cookie value to read it back: in one buffer of known
    // size, taken off the growth.
    let mut ids = String::with_capacity(count * ID_LEN);
    let before = rss();
    for i in 0..count {
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &test_session_of(&format!("user-{i:07}"), &format!("sid-{i:07}"))).await.unwrap();
        let mut headers = http::HeaderMap::new();
        ctx.apply(&mut headers);
        let set = headers[SET_COOKIE].to_str().unwrap();
        let id = set.split(';').next().unwrap().split_once('=').unwrap().1;
        assert_eq!(id.len(), ID_LEN);
        ids.push_str(id);
    }
    let bench_bytes = ids.capacity();
    for i in 0..count {
        let cookie = HeaderValue::from_str(&format!("_a0_session={}", &ids[i * ID_LEN..(i + 1) * ID_LEN])).unwrap();
        let session = store.get(&mut StoreContext::from_cookie_headers([&cookie])).await.unwrap();
        assert!(session.is_some(), "every stored session reads back");
    }
    store.sessions().backend().run_pending_tasks().await;
    let grown = rss().saturating_sub(before).saturating_sub(bench_bytes as u64);
    let per_session = grown as f64 / count as f64;
    let ratio = per_session / json as f64;
    println!(
        "memory store: {count} sessions, RSS grew {:.1} MiB (the bench's own list of ids left out): \
         {per_session:.0} bytes per session; session JSON {json} bytes; ratio {ratio:.2} (target at most 2)",
        grown as f64 / (1 << 20) as f64
    );
    if ratio > 2.0 {
        eprintln!("over target: {ratio:.2} > 2");
        std::process::exit(1);
    }
}
