//! The conformance kit (`auth_layer::testing`) on every backend and shared session store
//! auth-layer ships: moka, Redis (standalone, with a client cache, and a three-node Cluster) and
//! PostgreSQL; and what the kit cannot check alone: client caches across connections, batching,
//! outages, migrations and TLS.

use std::time::Duration;

use auth_layer::backend::{Backend, ClientCache, MokaBackend, PostgresBackend, PostgresOptions, RedisBackend};
use auth_layer::store::{CookieSessionStore, ServerSessionStore, StoreError};
use auth_layer::testing::{check_backend, check_session_store};
use auth_layer_tests::servers::{PgServer, RedisCluster, RedisServer, database_url, redis_url};
use bytes::Bytes;

/// A fresh prefix, so that tests sharing a server never see each other's keys.
fn prefix() -> String {
    format!("t{}-{}:", std::process::id(), auth_layer_tests::free_port())
}

/// A value written, read and deleted: the connection works (the kit checks the rest).
async fn round_trip<B: Backend>(backend: &B) {
    let key = format!("{}round-trip", prefix());
    backend.put(&key, Bytes::from_static(b"v"), None, vec![]).await.unwrap();
    assert_eq!(backend.get(&key).await.unwrap().as_deref(), Some(&b"v"[..]));
    backend.delete(&key).await.unwrap();
    assert_eq!(backend.get(&key).await.unwrap(), None);
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

// The conformance kit (`auth_layer::testing`), the one users run on a backend of their own, on
// every backend auth-layer ships: the kit and the built-in backends cannot drift.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_keeps_every_backend_rule() {
    check_backend(|| async { MokaBackend::new() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keeps_every_backend_rule() {
    let namespace = prefix();
    check_backend(|| async { redis().await.with_namespace(&namespace) }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_a_client_cache_keeps_every_backend_rule() {
    let namespace = prefix();
    check_backend(|| redis_cached_in(&namespace)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_keeps_every_backend_rule() {
    check_backend(postgres).await.unwrap();
}

/// The session stores a fleet runs over Redis and PostgreSQL: every "instance" is a store of
/// its own, on a connection of its own, over one namespace or database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_stores_over_redis_and_postgresql_keep_every_session_store_rule() {
    let namespace = prefix();
    check_session_store(|config| {
        let namespace = namespace.clone();
        async move { ServerSessionStore::new(redis().await.with_namespace(&namespace), &config) }
    })
    .await
    .unwrap();
    check_session_store(|config| async move { ServerSessionStore::new(postgres().await, &config) }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_stores_with_markers_in_redis_and_postgresql_keep_every_session_store_rule() {
    let namespace = prefix();
    check_session_store(|config| {
        let namespace = namespace.clone();
        async move { CookieSessionStore::new(&config).with_marker_backend(redis().await.with_namespace(&namespace)) }
    })
    .await
    .unwrap();
    check_session_store(|config| async move { CookieSessionStore::new(&config).with_marker_backend(postgres().await) })
        .await
        .unwrap();
}

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
async fn redis_cluster_passes_the_same_suite_in_both_layouts() {
    let cluster = RedisCluster::start();
    // The spread layout, a cluster's default: every backend and session store rule.
    let spread = RedisBackend::connect_cluster(&cluster.urls).await.expect("cluster connection");
    assert!(spread.spreads());
    check_backend(|| async { spread.clone() }).await.unwrap();
    check_session_store(|config| {
        let spread = spread.clone();
        async move { ServerSessionStore::new(spread, &config) }
    })
    .await
    .unwrap();
    // The one-tag layout: every rule too, and two namespaces (each one hash tag: slots 3546 and
    // 10979 of the three masters' thirds) on two masters.
    let one = RedisBackend::connect_cluster(&cluster.urls).await.unwrap().with_one_slot();
    assert!(!one.spreads());
    check_backend(|| async { one.clone() }).await.unwrap();
    let other =
        RedisBackend::connect_cluster(&cluster.urls).await.unwrap().with_one_slot().with_namespace("another-app");
    check_backend(|| async { other.clone() }).await.unwrap();
    one.put("probe", Bytes::from_static(b"1"), None, vec![]).await.unwrap();
    other.put("probe", Bytes::from_static(b"1"), None, vec![]).await.unwrap();
    let holder = |namespace: &str| {
        let holders: Vec<u16> = cluster
            .masters()
            .into_iter()
            .filter(|port| cluster.count_keys(*port, &format!("{namespace}*probe")) > 0)
            .collect();
        assert_eq!(holders.len(), 1, "{namespace} keys on one master: {holders:?}");
        holders[0]
    };
    assert_ne!(holder("{auth-layer}"), holder("{another-app}"), "the two namespaces share a master");
}

/// Client-side caching on a cluster (one cache per node connection, redis-rs's): every backend
/// and session store rule, a read right after a write included; reads of an unchanged value
/// served from the cache; and what another connection changes or deletes, on whichever master,
/// dropped from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_with_a_client_cache_keeps_every_rule_and_drops_what_another_connection_changes() {
    let cluster = RedisCluster::start();
    let cache = || ClientCache::new(std::num::NonZeroUsize::new(1_000).unwrap());
    let cached = RedisBackend::connect_cluster_with_client_cache(&cluster.urls, cache()).await.expect("cluster");
    assert!(cached.spreads());
    check_backend(|| async { cached.clone() }).await.unwrap();
    check_session_store(|config| {
        let cached = cached.clone();
        async move { ServerSessionStore::new(cached, &config) }
    })
    .await
    .unwrap();
    // The kit's read-after-write rule, many more times, four writers at once on keys over every
    // master: an update or delete that returned before its own invalidation was read let a read
    // serve the old copy (seen once in the kit's 100 rounds, on the update of the spread layout).
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let cached = cached.clone();
            tokio::spawn(async move {
                for round in 0..400 {
                    let key = format!("settled-{writer}-{}", round % 40);
                    let at = |what: &str| format!("writer {writer}, round {round}: right after {what}");
                    cached.put(&key, Bytes::from_static(b"put"), None, vec!["sub=settled".into()]).await.unwrap();
                    assert_eq!(cached.get(&key).await.unwrap().as_deref(), Some(&b"put"[..]), "{}", at("put"));
                    assert!(cached.update(&key, Bytes::from_static(b"update"), None, vec![]).await.unwrap());
                    assert_eq!(cached.get(&key).await.unwrap().as_deref(), Some(&b"update"[..]), "{}", at("update"));
                    cached.delete(&key).await.unwrap();
                    assert_eq!(cached.get(&key).await.unwrap(), None, "{}", at("delete"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let a = RedisBackend::connect_cluster(&cluster.urls).await.unwrap();
    let b = RedisBackend::connect_cluster_with_client_cache(&cluster.urls, cache()).await.unwrap();
    let within = |backend: RedisBackend, key: String, want: Option<&'static [u8]>| async move {
        for _ in 0..100 {
            if backend.get(&key).await.unwrap().as_deref() == want {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        false
    };
    // Keys on every master (30 of them spread over the slots).
    let keys: Vec<String> = (0..30).map(|i| format!("cached-{i}")).collect();
    for key in &keys {
        a.put(key, Bytes::from_static(b"one"), None, vec!["sid=cached".into()]).await.unwrap();
        assert_eq!(b.get(key).await.unwrap().as_deref(), Some(&b"one"[..]), "b reads, and caches");
    }
    let (hits, _) = b.client_cache_stats().expect("a cache");
    for key in &keys {
        assert_eq!(b.get(key).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    assert_eq!(b.client_cache_stats().unwrap().0, hits + 30, "unchanged, every read is served from b's cache");
    for key in &keys[..10] {
        a.put(key, Bytes::from_static(b"two"), None, vec!["sid=cached".into()]).await.unwrap();
        assert!(within(b.clone(), key.clone(), Some(b"two")).await, "b serves the new value of {key} within 200 ms");
    }
    assert_eq!(a.delete_by_tag("sid=cached").await.unwrap(), 30);
    for key in &keys {
        assert!(within(b.clone(), key.clone(), None).await, "b stops serving the deleted {key} within 200 ms");
    }
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
    round_trip(&backend).await;
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
    round_trip(&backend).await;
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
    round_trip(&backend).await;
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
    round_trip(&plain).await;
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tenant's configuration, as a loaded tenant's cookie store gets it.
fn tenant_config(tenant: &str) -> auth_layer::AuthConfig {
    auth_layer::AuthConfig::builder()
        .tenant(tenant)
        .issuer(format!("https://{tenant}.issuer.example/"))
        .client_id("c")
        .client_secret("s")
        .secret("listener-secret-listener-secret-listener-0")
        .base_url(format!("https://{tenant}.example"))
        .build()
        .unwrap()
}

/// Polls `count` every 100 ms for up to 10 s until it gives `want`; the last count.
async fn settles_at(want: u64, count: impl Fn() -> u64) -> u64 {
    let mut seen = count();
    for _ in 0..100 {
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = count();
    }
    seen
}

/// The connections of the app named `app` that are listening (their last statement a `LISTEN`).
fn postgres_listeners(app: &str) -> u64 {
    let output = std::process::Command::new("psql")
        .arg(database_url())
        .arg("-Atc")
        .arg(format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND query LIKE 'LISTEN %'"
        ))
        .output()
        .expect("psql must be installed (scripts/services installs postgresql-client)");
    let said = String::from_utf8_lossy(&output.stdout);
    said.trim().parse().unwrap_or_else(|_| panic!("psql said {said:?}"))
}

/// Subscribers of the Redis channels whose names contain `part`.
fn redis_subscribers(part: &str) -> u64 {
    let cli = |args: &[&str]| {
        let output = std::process::Command::new("redis-cli").args(args).output().expect("redis-cli must be installed");
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let channels = cli(&["pubsub", "channels", &format!("*{part}*")]);
    let channels: Vec<&str> = channels.iter().map(String::as_str).filter(|c| !c.is_empty()).collect();
    if channels.is_empty() {
        return 0;
    }
    let mut args = vec!["pubsub", "numsub"];
    args.extend(&channels);
    // Name, count, name, count, ...
    cli(&args).iter().skip(1).step_by(2).map(|n| n.parse::<u64>().unwrap_or(0)).sum()
}

/// Fifty loaded tenants' cookie stores over one PostgreSQL backend: one listening connection,
/// not fifty; gone once the stores are; a new one when a store watches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tenants_cookie_stores_over_one_postgresql_backend_share_one_listening_connection() {
    let app = format!("auth-layer-listen-{}", auth_layer_tests::free_port());
    let url = format!("{}?application_name={app}", database_url());
    let backend = PostgresBackend::connect(&url).await.expect("PostgreSQL");
    let stores: Vec<_> = (0..50)
        .map(|i| CookieSessionStore::new(&tenant_config(&format!("t{i}"))).with_marker_backend(backend.clone()))
        .collect();
    assert_eq!(settles_at(1, || postgres_listeners(&app)).await, 1, "one listener connects");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(postgres_listeners(&app), 1, "fifty stores, one listening connection");
    drop(stores);
    assert_eq!(settles_at(0, || postgres_listeners(&app)).await, 0, "no store left: the listener closes");
    let again = CookieSessionStore::new(&tenant_config("t0")).with_marker_backend(backend.clone());
    assert_eq!(settles_at(1, || postgres_listeners(&app)).await, 1, "watched again: listening again");
    drop(again);
}

/// The same over Redis: one subscriber for the fifty stores' channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tenants_cookie_stores_over_one_redis_backend_share_one_subscriber() {
    let backend = redis().await;
    let namespace = prefix();
    let backend = backend.with_namespace(&namespace);
    let stores: Vec<_> = (0..50)
        .map(|i| CookieSessionStore::new(&tenant_config(&format!("t{i}"))).with_marker_backend(backend.clone()))
        .collect();
    assert_eq!(settles_at(1, || redis_subscribers(&namespace)).await, 1, "one subscriber");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(redis_subscribers(&namespace), 1, "fifty stores, one subscriber");
    drop(stores);
    assert_eq!(settles_at(0, || redis_subscribers(&namespace)).await, 0, "no store left: unsubscribed");
}
