//! One conformance suite of backend behaviours (get/put/delete, TTL, indexes, concurrency,
//! corrupt bytes, encryption at rest), run against moka, Redis (standalone and a three-node
//! Cluster) and PostgreSQL alike; and the outage behaviour of the two servers.

use std::time::Duration;

use auth_layer::Store;
use auth_layer::backend::{Backend, ClientCache, MokaBackend, PostgresBackend, PostgresOptions, RedisBackend};
use auth_layer::store::StoreError;
use auth_layer_tests::servers::{PgServer, RedisCluster, RedisServer, database_url, redis_url};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

const SECRET: &str = "backend-suite-secret-backend-suite-secret";

/// A fresh prefix, so that tests sharing a server never see each other's keys.
fn prefix() -> String {
    format!("t{}-{}:", std::process::id(), auth_layer_tests::free_port())
}

async fn redis() -> RedisBackend {
    let url = redis_url();
    RedisBackend::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} (set REDIS_URL): {e}"))
        .with_namespace(&prefix())
}

/// A Redis backend with client-side caching (default settings), in `namespace`.
async fn redis_cached_in(namespace: &str) -> RedisBackend {
    redis_cached_with(namespace, ClientCache::new(std::num::NonZeroUsize::new(1_000).unwrap())).await
}

async fn redis_cached_with(namespace: &str, cache: ClientCache) -> RedisBackend {
    let url = redis_url();
    RedisBackend::connect_with_client_cache(&url, cache)
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {url} with RESP3 (set REDIS_URL): {e}"))
        .with_namespace(namespace)
}

async fn postgres() -> PostgresBackend {
    let url = database_url();
    PostgresBackend::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {url} (set DATABASE_URL): {e}"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Store)]
#[store(key = "{id}", ttl = "1h", encrypt)]
struct Secretive {
    id: String,
    #[store(index)]
    owner: String,
}

mod suite {
    use super::*;

    fn tags(p: &str, list: &[&str]) -> Vec<String> {
        list.iter().map(|t| format!("{p}{t}")).collect()
    }

    pub(super) async fn get_put_delete<B: Backend>(b: &B, p: &str) {
        let k = format!("{p}k");
        assert_eq!(b.get(&k).await.unwrap(), None);
        b.put(&k, Bytes::from_static(b"v1"), None, tags(p, &["a"])).await.unwrap();
        assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"v1"[..]));
        b.put(&k, Bytes::from_static(b"v2"), None, tags(p, &["a"])).await.unwrap();
        assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"v2"[..]), "put replaces");
        b.delete(&k).await.unwrap();
        assert_eq!(b.get(&k).await.unwrap(), None);
        assert!(b.keys_by_tag(&format!("{p}a")).await.unwrap().is_empty(), "deletion unlists");
        b.delete(&k).await.unwrap();
    }

    pub(super) async fn expired_values_are_never_returned_nor_listed<B: Backend>(b: &B, p: &str) {
        let (short, long) = (format!("{p}short"), format!("{p}long"));
        b.put(&short, Bytes::from_static(b"v"), Some(Duration::from_millis(300)), tags(p, &["t"])).await.unwrap();
        b.put(&long, Bytes::from_static(b"v"), None, tags(p, &["t"])).await.unwrap();
        assert!(b.get(&short).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(b.get(&short).await.unwrap(), None);
        assert_eq!(b.keys_by_tag(&format!("{p}t")).await.unwrap(), std::slice::from_ref(&long));
        assert_eq!(b.delete_by_tag(&format!("{p}t")).await.unwrap(), 1, "only the live key counts");
        assert_eq!(b.get(&long).await.unwrap(), None);
    }

    pub(super) async fn replacing_a_value_replaces_its_tags<B: Backend>(b: &B, p: &str) {
        let k = format!("{p}k");
        b.put(&k, Bytes::from_static(b"1"), None, tags(p, &["a", "b"])).await.unwrap();
        b.put(&k, Bytes::from_static(b"2"), None, tags(p, &["b", "c"])).await.unwrap();
        assert!(b.keys_by_tag(&format!("{p}a")).await.unwrap().is_empty());
        assert_eq!(b.keys_by_tag(&format!("{p}b")).await.unwrap(), std::slice::from_ref(&k));
        assert_eq!(b.keys_by_tag(&format!("{p}c")).await.unwrap(), std::slice::from_ref(&k));
        assert_eq!(b.delete_by_tag(&format!("{p}a")).await.unwrap(), 0, "a dropped tag deletes nothing");
        assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"2"[..]));
    }

    pub(super) async fn delete_by_tag_removes_exactly_the_tagged_keys<B: Backend>(b: &B, p: &str) {
        for i in 0..10 {
            let tag = if i % 2 == 0 { "even" } else { "odd" };
            b.put(&format!("{p}k{i}"), Bytes::from_static(b"v"), Some(Duration::from_secs(60)), tags(p, &[tag, "all"]))
                .await
                .unwrap();
        }
        assert_eq!(b.delete_by_tag(&format!("{p}even")).await.unwrap(), 5);
        for i in 0..10 {
            assert_eq!(b.get(&format!("{p}k{i}")).await.unwrap().is_some(), i % 2 == 1, "k{i}");
        }
        let mut all = b.keys_by_tag(&format!("{p}all")).await.unwrap();
        all.sort();
        assert_eq!(all, (0..10).filter(|i| i % 2 == 1).map(|i| format!("{p}k{i}")).collect::<Vec<_>>());
        assert_eq!(b.delete_by_tag(&format!("{p}nothing")).await.unwrap(), 0);
    }

    pub(super) async fn concurrent_writers_leave_a_consistent_index<B: Backend + Clone>(b: &B, p: &str) {
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let (b, p) = (b.clone(), p.to_owned());
            tasks.push(tokio::spawn(async move {
                for round in 0..40u64 {
                    let key = format!("{p}k{}", (task * 7 + round) % 20);
                    let tag = format!("{p}t{}", round % 3);
                    match round % 5 {
                        4 => b.delete(&key).await.unwrap(),
                        3 => {
                            b.delete_by_tag(&tag).await.unwrap();
                        }
                        _ => b
                            .put(&key, Bytes::from(vec![task as u8]), None, vec![tag, format!("{p}all")])
                            .await
                            .unwrap(),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let listed = b.keys_by_tag(&format!("{p}all")).await.unwrap();
        let mut per_tag = 0;
        for t in 0..3 {
            per_tag += b.keys_by_tag(&format!("{p}t{t}")).await.unwrap().len();
        }
        let mut live = 0;
        for i in 0..20 {
            let key = format!("{p}k{i}");
            let present = b.get(&key).await.unwrap().is_some();
            live += usize::from(present);
            assert_eq!(present, listed.contains(&key), "{key}: present {present}");
        }
        assert_eq!(listed.len(), live);
        assert_eq!(per_tag, live, "every live key is listed under exactly one of t0..t2");
    }

    pub(super) async fn update_replaces_a_present_value_and_never_creates_one<B: Backend>(b: &B, p: &str) {
        let (k, gone, short) = (format!("{p}k"), format!("{p}gone"), format!("{p}short"));
        assert!(!b.update(&gone, Bytes::from_static(b"v"), None, tags(p, &["u"])).await.unwrap(), "absent");
        assert_eq!(b.get(&gone).await.unwrap(), None, "update created nothing");
        assert!(b.keys_by_tag(&format!("{p}u")).await.unwrap().is_empty(), "nor listed anything");

        b.put(&k, Bytes::from_static(b"1"), None, tags(p, &["a"])).await.unwrap();
        assert!(b.update(&k, Bytes::from_static(b"2"), None, tags(p, &["u"])).await.unwrap());
        assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"2"[..]));
        assert!(b.keys_by_tag(&format!("{p}a")).await.unwrap().is_empty(), "tags replaced as put does");
        assert_eq!(b.keys_by_tag(&format!("{p}u")).await.unwrap(), std::slice::from_ref(&k));

        b.delete(&k).await.unwrap();
        assert!(!b.update(&k, Bytes::from_static(b"3"), None, tags(p, &["u"])).await.unwrap(), "deleted");
        assert_eq!(b.get(&k).await.unwrap(), None, "a deletion is final");

        b.put(&short, Bytes::from_static(b"1"), Some(Duration::from_millis(300)), vec![]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(!b.update(&short, Bytes::from_static(b"2"), None, vec![]).await.unwrap(), "expired");
        assert_eq!(b.get(&short).await.unwrap(), None);
    }

    /// `insert` writes only where the key holds nothing (never written, deleted, expired), and
    /// of many racing inserts of one key exactly one wins: a lease has one holder.
    pub(super) async fn insert_writes_only_where_nothing_is_and_one_racer_wins<B: Backend + Clone>(b: &B, p: &str) {
        let (k, short) = (format!("{p}lease"), format!("{p}short-lease"));
        assert!(b.insert(&k, Bytes::from_static(b"1"), None, tags(p, &["l"])).await.unwrap(), "absent: written");
        assert!(!b.insert(&k, Bytes::from_static(b"2"), None, tags(p, &["m"])).await.unwrap(), "present: refused");
        assert_eq!(b.get(&k).await.unwrap().as_deref(), Some(&b"1"[..]), "the first value stays");
        assert!(b.keys_by_tag(&format!("{p}m")).await.unwrap().is_empty(), "a refused insert lists nothing");
        assert_eq!(b.keys_by_tag(&format!("{p}l")).await.unwrap(), std::slice::from_ref(&k));
        b.delete(&k).await.unwrap();
        assert!(b.insert(&k, Bytes::from_static(b"3"), None, vec![]).await.unwrap(), "deleted: written again");

        b.insert(&short, Bytes::from_static(b"1"), Some(Duration::from_millis(300)), vec![]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(b.insert(&short, Bytes::from_static(b"2"), None, vec![]).await.unwrap(), "expired: written");
        assert_eq!(b.get(&short).await.unwrap().as_deref(), Some(&b"2"[..]));

        for round in 0..20u32 {
            let key = format!("{p}race{round}");
            let racers: Vec<_> = (0..8u8)
                .map(|racer| {
                    let (b, key) = (b.clone(), key.clone());
                    tokio::spawn(async move {
                        b.insert(&key, Bytes::from(vec![racer]), Some(Duration::from_secs(30)), vec![]).await.unwrap()
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for (racer, task) in racers.into_iter().enumerate() {
                if task.await.unwrap() {
                    winners.push(racer as u8);
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: exactly one insert wins, got {winners:?}");
            assert_eq!(b.get(&key).await.unwrap().as_deref(), Some(&winners[..]), "the winner's value is kept");
        }
    }

    /// Updates (renewals) racing deletions by key and by tag (logouts), from many tasks: once
    /// a key is deleted no update brings it back, and no tag lists a deleted key.
    pub(super) async fn updates_racing_deletions_never_bring_a_key_back<B: Backend + Clone>(b: &B, p: &str) {
        for round in 0..40u32 {
            let key = format!("{p}s{round}");
            let tag = format!("{p}sid{round}");
            b.put(&key, Bytes::from_static(b"0"), Some(Duration::from_secs(60)), vec![tag.clone()]).await.unwrap();
            let mut tasks = Vec::new();
            for writer in 0..6u8 {
                let (b, key, tag) = (b.clone(), key.clone(), tag.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..4 {
                        b.update(&key, Bytes::from(vec![writer]), Some(Duration::from_secs(60)), vec![tag.clone()])
                            .await
                            .unwrap();
                        tokio::task::yield_now().await;
                    }
                }));
            }
            let (deleter, key2, tag2) = (b.clone(), key.clone(), tag.clone());
            let by_tag = round % 2 == 0;
            let deletion = tokio::spawn(async move {
                tokio::task::yield_now().await;
                if by_tag { deleter.delete_by_tag(&tag2).await.map(|_| ()) } else { deleter.delete(&key2).await }
            });
            deletion.await.unwrap().unwrap();
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(b.get(&key).await.unwrap(), None, "round {round}: deleted, then brought back");
            assert!(b.keys_by_tag(&tag).await.unwrap().is_empty(), "round {round}: a deleted key is listed");
        }
    }

    pub(super) async fn records_that_do_not_decode_are_absent<B: Backend + Clone>(b: &B, p: &str) {
        let store = Secretive::store_in(b.clone(), &[SECRET]);
        let key = format!("{p}bad");
        for garbage in
            [&b""[..], b"\xff\xfe", b"{\"v\":1,\"d\":{}}", b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
        {
            b.put(&key, Bytes::copy_from_slice(garbage), None, vec![]).await.unwrap();
            assert_eq!(store.get(&key).await.unwrap(), None);
        }
    }

    pub(super) async fn encrypted_records_do_not_open_under_another_key<B: Backend + Clone>(b: &B, p: &str) {
        let store = Secretive::store_in(b.clone(), &[SECRET]);
        let record = Secretive { id: format!("{p}one"), owner: format!("{p}ann") };
        store.set(&record).await.unwrap();
        assert_eq!(store.get(&record.id).await.unwrap(), Some(record.clone()));
        // Over a backend (moka too: only `TypedStore::in_memory` keeps records as they are)
        // records are sealed at rest.
        let raw = b.get(&record.id).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("ann"), "sealed at rest");
        let copy = format!("{p}two");
        b.put(&copy, raw, None, vec![]).await.unwrap();
        assert_eq!(store.get(&copy).await.unwrap(), None, "a record copied to another key does not open");
        assert_eq!(store.find_by(Secretive::OWNER, &record.owner).await.unwrap(), vec![record.clone()]);
        assert_eq!(store.delete_by(Secretive::OWNER, &record.owner).await.unwrap(), 1);
    }
}

macro_rules! conformance {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn get_put_delete() {
                suite::get_put_delete(&$make, &prefix()).await;
            }

            #[tokio::test]
            async fn expired_values_are_never_returned_nor_listed() {
                suite::expired_values_are_never_returned_nor_listed(&$make, &prefix()).await;
            }

            #[tokio::test]
            async fn replacing_a_value_replaces_its_tags() {
                suite::replacing_a_value_replaces_its_tags(&$make, &prefix()).await;
            }

            #[tokio::test]
            async fn delete_by_tag_removes_exactly_the_tagged_keys() {
                suite::delete_by_tag_removes_exactly_the_tagged_keys(&$make, &prefix()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_writers_leave_a_consistent_index() {
                suite::concurrent_writers_leave_a_consistent_index(&$make, &prefix()).await;
            }

            #[tokio::test]
            async fn update_replaces_a_present_value_and_never_creates_one() {
                suite::update_replaces_a_present_value_and_never_creates_one(&$make, &prefix()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn insert_writes_only_where_nothing_is_and_one_racer_wins() {
                suite::insert_writes_only_where_nothing_is_and_one_racer_wins(&$make, &prefix()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn updates_racing_deletions_never_bring_a_key_back() {
                suite::updates_racing_deletions_never_bring_a_key_back(&$make, &prefix()).await;
            }

            #[tokio::test]
            async fn records_that_do_not_decode_are_absent() {
                suite::records_that_do_not_decode_are_absent(&$make, &prefix()).await;
            }

            #[tokio::test]
            async fn encrypted_records_do_not_open_under_another_key() {
                suite::encrypted_records_do_not_open_under_another_key(&$make, &prefix()).await;
            }
        }
    };
}

conformance!(moka, MokaBackend::new());
conformance!(redis_standalone, redis().await);
conformance!(redis_client_cache, redis_cached_in(&prefix()).await);
conformance!(postgresql, postgres().await);

/// Two processes' caches of one Redis: what one changes or deletes, the other stops serving
/// (Redis's invalidation, not the copies' maximum age of 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_client_caches_drop_what_another_connection_changes_or_deletes() {
    let namespace = prefix();
    let (a, b) = (redis_cached_in(&namespace).await, redis_cached_in(&namespace).await);
    let within = |backend: RedisBackend, want: Option<&'static [u8]>| async move {
        for _ in 0..100 {
            if backend.get("session").await.unwrap().as_deref() == want {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        false
    };
    a.put("session", Bytes::from_static(b"one"), None, vec!["sid=s1".into()]).await.unwrap();
    assert_eq!(b.get("session").await.unwrap().as_deref(), Some(&b"one"[..]), "b reads, and caches");
    let (hits, _) = b.client_cache_stats().unwrap();
    for _ in 0..10 {
        assert_eq!(b.get("session").await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    assert_eq!(b.client_cache_stats().unwrap().0, hits + 10, "unchanged, it is served from b's cache");
    a.put("session", Bytes::from_static(b"two"), None, vec!["sid=s1".into()]).await.unwrap();
    assert!(within(b.clone(), Some(b"two")).await, "b serves the new value within 200 ms");
    assert_eq!(a.delete_by_tag("sid=s1").await.unwrap(), 1);
    assert!(within(b.clone(), None).await, "b stops serving the deleted value within 200 ms");
}

/// Should invalidations stop arriving, a copy is still read from Redis again once older than
/// the cache's `max_age`: an unchanged value is a hit within it and a miss after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_client_cache_copies_are_read_again_once_older_than_max_age() {
    let max_age = std::time::Duration::from_millis(400);
    let cache = ClientCache::new(std::num::NonZeroUsize::new(100).unwrap()).max_age(max_age);
    let b = redis_cached_with(&prefix(), cache).await;
    b.put("session", Bytes::from_static(b"one"), None, vec![]).await.unwrap();
    assert_eq!(b.get("session").await.unwrap().as_deref(), Some(&b"one"[..]));
    let (hits, misses) = b.client_cache_stats().unwrap();
    assert_eq!(b.get("session").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(b.client_cache_stats().unwrap(), (hits + 1, misses), "a fresh copy is served from the cache");
    tokio::time::sleep(max_age + std::time::Duration::from_millis(200)).await;
    assert_eq!(b.get("session").await.unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(b.client_cache_stats().unwrap(), (hits + 1, misses + 1), "an old copy is read from Redis again");
}

#[tokio::test]
async fn redis_client_cache_with_max_age_zero_serves_nothing_from_the_cache() {
    let cache = ClientCache::new(std::num::NonZeroUsize::new(100).unwrap()).max_age(Duration::ZERO);
    let b = redis_cached_with(&prefix(), cache).await;
    b.put("session", Bytes::from_static(b"one"), None, vec![]).await.unwrap();
    let (hits, _) = b.client_cache_stats().unwrap();
    for _ in 0..5 {
        assert_eq!(b.get("session").await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    let (hits_after, misses_after) = b.client_cache_stats().unwrap();
    assert_eq!(hits_after, hits, "no read is a cache hit");
    assert!(misses_after >= 5, "every read went to Redis: {misses_after} misses");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_the_same_suite() {
    let cluster = RedisCluster::start();
    let b = RedisBackend::connect_cluster(&cluster.urls).await.expect("cluster connection");
    let p = prefix();
    suite::get_put_delete(&b, &p).await;
    suite::expired_values_are_never_returned_nor_listed(&b, &format!("{p}e")).await;
    suite::replacing_a_value_replaces_its_tags(&b, &format!("{p}r")).await;
    suite::delete_by_tag_removes_exactly_the_tagged_keys(&b, &format!("{p}d")).await;
    suite::concurrent_writers_leave_a_consistent_index(&b, &format!("{p}c")).await;
    suite::update_replaces_a_present_value_and_never_creates_one(&b, &format!("{p}u")).await;
    suite::updates_racing_deletions_never_bring_a_key_back(&b, &format!("{p}w")).await;
    suite::insert_writes_only_where_nothing_is_and_one_racer_wins(&b, &format!("{p}i")).await;
    suite::records_that_do_not_decode_are_absent(&b, &format!("{p}x")).await;
    suite::encrypted_records_do_not_open_under_another_key(&b, &format!("{p}s")).await;
    // Two namespaces land on different nodes, and both work.
    let other = RedisBackend::connect_cluster(&cluster.urls).await.unwrap().with_namespace("another-app");
    suite::get_put_delete(&other, &p).await;
}

async fn outage_fails_fast_then_recovers_with_nothing_lost<B: Backend>(
    backend: &B,
    stop: impl FnOnce(),
    restart: impl FnOnce(),
) {
    backend.put("committed", Bytes::from_static(b"kept"), None, vec!["t".into()]).await.unwrap();
    stop();
    let started = std::time::Instant::now();
    let during = backend.get("committed").await;
    assert!(
        matches!(during, Err(StoreError::Unavailable { .. })),
        "a down server is an error, not a panic: {during:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "fails within the timeouts: {:?}", started.elapsed());
    assert!(backend.put("other", Bytes::from_static(b"x"), None, vec![]).await.is_err());
    restart();
    let mut recovered = None;
    for _ in 0..50 {
        if let Ok(value) = backend.get("committed").await {
            recovered = Some(value);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        recovered.expect("service resumes by itself").as_deref(),
        Some(&b"kept"[..]),
        "nothing committed is lost"
    );
    assert_eq!(backend.keys_by_tag("t").await.unwrap(), ["committed"]);
}

/// How many times a private server has run `command`, from its own `INFO commandstats`.
fn redis_calls(port: u16, command: &str) -> u64 {
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "commandstats"])
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    let stats = String::from_utf8_lossy(&output.stdout);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().and_then(|n| n.parse().ok()).expect("a count of calls"))
}

#[tokio::test]
async fn redis_reads_made_at_once_share_one_round_trip() {
    let server = RedisServer::start();
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    // Every fourth key is absent: an MGET's holes must reach the right readers.
    for i in (0..40).filter(|i| i % 4 != 0) {
        backend.put(&format!("k{i}"), Bytes::from(format!("value {i}")), None, vec![]).await.unwrap();
    }
    let (mgets, gets) = (redis_calls(server.port, "mget"), redis_calls(server.port, "get"));
    let reads: Vec<_> = (0..40)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { (i, backend.get(&format!("k{i}")).await.unwrap()) })
        })
        .collect();
    for read in reads {
        let (i, value) = read.await.unwrap();
        let expected = (i % 4 != 0).then(|| format!("value {i}"));
        assert_eq!(value.as_deref(), expected.as_deref().map(str::as_bytes), "k{i} got its own value");
    }
    assert_eq!(redis_calls(server.port, "get"), gets, "no read went alone");
    assert_eq!(redis_calls(server.port, "mget") - mgets, 1, "40 reads made at once left in one MGET");

    // A lone read still goes, in an MGET of its own.
    assert_eq!(backend.get("k1").await.unwrap().as_deref(), Some(&b"value 1"[..]));
    assert_eq!(redis_calls(server.port, "mget") - mgets, 2);

    // 300 reads at once: MGETs of at most 128 keys, each reader still getting its own value.
    let reads: Vec<_> = (0..300)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { (i, backend.get(&format!("k{}", i % 40)).await.unwrap()) })
        })
        .collect();
    for read in reads {
        let (i, value) = read.await.unwrap();
        let expected = (i % 4 != 0).then(|| format!("value {}", i % 40));
        assert_eq!(value.as_deref(), expected.as_deref().map(str::as_bytes), "read {i} got its own value");
    }
    assert_eq!(redis_calls(server.port, "mget") - mgets, 2 + 3, "300 reads in three MGETs");
}

/// Polls `read` once, as a request that then gives up would (the read queues itself and, if it
/// is the first, spawns the sending), and drops it unanswered.
fn start_then_give_up(read: impl std::future::Future) {
    let mut read = std::pin::pin!(read);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(read.as_mut().poll(&mut context).is_pending(), "the read was still waiting when it was given up");
}

#[tokio::test]
async fn a_redis_read_given_up_leaves_the_reads_gathered_with_it_answered() {
    let backend = redis().await;
    backend.put("kept", Bytes::from_static(b"v"), None, vec![]).await.unwrap();
    start_then_give_up(backend.get("kept"));
    // A read gathered with it is answered all the same.
    let next = tokio::time::timeout(Duration::from_secs(5), backend.get("kept")).await;
    assert_eq!(next.expect("answered, not stuck").unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn a_redis_read_whose_runtime_stops_before_sending_does_not_stall_later_reads() {
    let backend = redis().await;
    backend.put("kept", Bytes::from_static(b"v"), None, vec![]).await.unwrap();
    let elsewhere = backend.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The read spawns its sender on this runtime, which stops before the sender ever runs.
        let entered = runtime.enter();
        start_then_give_up(elsewhere.get("kept"));
        drop(entered);
        drop(runtime);
    })
    .join()
    .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), backend.get("kept")).await;
    assert_eq!(next.expect("answered, not stuck behind the stranded read").unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn redis_outage_fails_fast_then_recovers_with_nothing_lost() {
    let server = std::cell::RefCell::new(RedisServer::start());
    let url = server.borrow().url();
    let backend = RedisBackend::connect(&url).await.unwrap();
    outage_fails_fast_then_recovers_with_nothing_lost(
        &backend,
        || server.borrow_mut().stop(),
        || server.borrow_mut().restart(),
    )
    .await;
}

#[tokio::test]
async fn postgres_outage_fails_fast_then_recovers_with_nothing_lost() {
    let server = PgServer::start();
    let options = PostgresOptions { max_connections: 2, purge_interval: None, ..PostgresOptions::default() };
    let backend = PostgresBackend::connect_with(&server.url(), options).await.unwrap();
    outage_fails_fast_then_recovers_with_nothing_lost(&backend, || server.stop(), || server.restart()).await;
}

#[tokio::test]
async fn postgres_migrations_are_versioned_and_applied_once() {
    let server = PgServer::start();
    let options = PostgresOptions { migrate_on_connect: false, purge_interval: None, ..PostgresOptions::default() };
    let backend = PostgresBackend::connect_with(&server.url(), options).await.unwrap();
    assert!(backend.get("k").await.is_err(), "no schema before migrate()");
    assert_eq!(backend.migrate().await.unwrap(), 1);
    assert_eq!(backend.migrate().await.unwrap(), 0, "applied once");
    backend.put("k", Bytes::from_static(b"v"), Some(Duration::from_millis(100)), vec![]).await.unwrap();
    backend.put("kept", Bytes::from_static(b"v"), None, vec![]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(backend.get("k").await.unwrap(), None, "an expired row is never returned, even before the purge");
    assert_eq!(backend.purge_expired().await.unwrap(), 1, "the purge deletes exactly the expired rows");
    assert!(backend.get("kept").await.unwrap().is_some());
}

#[tokio::test]
async fn redis_password_comes_from_the_url() {
    let server = RedisServer::start_with_args(&["--requirepass", "s3cret-pass"]);
    let without = RedisBackend::connect(&server.url()).await;
    let refused = match without {
        Ok(backend) => backend.get("k").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "no password, no access");
    let url = format!("redis://:s3cret-pass@127.0.0.1:{}", server.port);
    let backend = RedisBackend::connect(&url).await.unwrap();
    suite::get_put_delete(&backend, &prefix()).await;
}

#[tokio::test]
async fn redis_over_tls_from_a_rediss_url() {
    let dir = auth_layer_tests::servers::scratch_dir("redis-tls");
    let (ca_cert, cert, key) = auth_layer_tests::servers::private_ca(&dir);
    let port = auth_layer_tests::free_port();
    let mut server = std::process::Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .args(["--tls-auth-clients", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = std::fs::read(&ca_cert).unwrap();
    let mut backend = None;
    for _ in 0..50 {
        match RedisBackend::connect_with_root_ca(&url, &ca).await {
            Ok(b) => {
                backend = Some(b);
                break;
            }
            Err(e) => eprintln!("TLS connect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backend = backend.expect("TLS connection");
    suite::get_put_delete(&backend, &prefix()).await;
    let untrusted = RedisBackend::connect(&url).await;
    let refused = match untrusted {
        Ok(b) => b.get("k").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a certificate the system does not trust is refused");
    let plain = RedisBackend::connect(&format!("redis://127.0.0.1:{port}")).await;
    let refused = match plain {
        Ok(b) => b.get("k").await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "plain TCP to the TLS port fails");
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn postgres_over_tls_from_the_urls_sslmode_with_a_private_ca() {
    let dir = auth_layer_tests::servers::scratch_dir("pg-tls");
    let (ca, cert, key) = auth_layer_tests::servers::private_ca(&dir);
    // The server reads its key as the postgres user, and only from a private file.
    let owned = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap();
    assert!(owned.success());
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let settings = format!("-c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", cert.display(), key.display());
    let server = PgServer::start_with_settings(&settings);
    let ca = std::fs::read(&ca).unwrap();

    // libpq's strictest mode, with the app's private CA: TLS, the certificate checked.
    let url = format!("{}?sslmode=verify-full&application_name=auth-layer-tls", server.url());
    let backend = PostgresBackend::connect_with_root_ca(&url, &ca).await.expect("TLS to the private-CA server");
    suite::get_put_delete(&backend, &prefix()).await;
    let psql = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string(), "-U", "postgres", "-d", "postgres", "-Atc"])
        .arg(
            "SELECT count(*) FILTER (WHERE ssl), count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
              WHERE application_name = 'auth-layer-tls'",
        )
        .output()
        .expect("psql must be installed");
    let counts = String::from_utf8_lossy(&psql.stdout).trim().to_owned();
    let (tls, all) = counts.split_once('|').unwrap_or_else(|| panic!("psql said {counts:?}"));
    assert!(all != "0" && tls == all, "every connection of the backend is TLS: {tls} of {all}");

    // `require` without the private CA: the public roots do not know it, so it is refused.
    let untrusted = PostgresBackend::connect(&format!("{}?sslmode=require", server.url())).await;
    assert!(untrusted.is_err(), "a certificate no trusted CA signed is refused");
    // `disable`: the clear, as asked.
    let plain = PostgresBackend::connect(&format!("{}?sslmode=disable", server.url())).await.expect("plain");
    suite::get_put_delete(&plain, &format!("{}plain", prefix())).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
