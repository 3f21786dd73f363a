//! The cookie store's cache of opened sessions at its bound: RSS growth of a process that opens
//! far more distinct session cookies than the cache keeps (`SESSIONS`, 30,000 by default; each
//! the bench's realistic session of its own user), against the bound (32 MiB by default,
//! `BOUND_MIB` to change it).
//!
//! `cargo bench -p auth-layer-benches --bench cookie_cache_rss`; exits non-zero when the
//! process grew more than 1.15 times the bound.

use auth_layer::store::{CookieSessionStore, SessionStore, StoreContext};
use auth_layer_benches::{bench_config, rss, test_session_of};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = std::env::var("SESSIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(30_000);
    let bound: u64 = std::env::var("BOUND_MIB").ok().and_then(|n| n.parse().ok()).unwrap_or(32) << 20;
    let config = bench_config();
    let store = CookieSessionStore::new(&config).with_opened_cache(bound);
    let mut cookie_len = 0;
    let before = rss();
    for i in 0..count {
        // A login's cookie, then a request that opens it (and keeps it in the cache).
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &test_session_of(&format!("user-{i:07}"), &format!("sid-{i:07}"))).await.unwrap();
        let mut headers = http::HeaderMap::new();
        ctx.apply(&mut headers);
        let cookies: Vec<String> = headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        cookie_len = cookies.iter().map(String::len).sum();
        let cookie = http::HeaderValue::from_str(&cookies.join("; ")).unwrap();
        let session = store.get(&mut StoreContext::from_cookie_headers([&cookie])).await.unwrap();
        assert!(session.is_some(), "every cookie opens");
    }
    let held = store.opened_cache_bytes();
    let grown = rss().saturating_sub(before);
    let ratio = grown as f64 / bound as f64;
    println!(
        "cookie store: {count} sessions opened (cookie {cookie_len} bytes), cache bound {} MiB, cache counts \
         {:.1} MiB held; RSS grew {:.1} MiB: {ratio:.2}x the bound (target at most 1.15)",
        bound >> 20,
        held as f64 / (1 << 20) as f64,
        grown as f64 / (1 << 20) as f64,
    );
    if ratio > 1.15 {
        eprintln!("over target: {ratio:.2} > 1.15");
        std::process::exit(1);
    }
}
