//! Sessions on a Redis Cluster of three masters with a replica each (the spread layout): they
//! land on every master alike, a logout by `sub` ends them on every shard, a write stopped
//! between its steps leaves nothing a logout can miss, records of the one-tag layout stay
//! readable, and a failover (a replica promoted, a master killed) loses no session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_layer::backend::{Backend, RedisBackend};
use auth_layer::store::{ServerSessionStore, SessionStore, StoreContext};
use auth_layer::{AuthConfig, SessionData, User};
use auth_layer_tests::servers::RedisCluster;
use bytes::Bytes;

fn config() -> AuthConfig {
    AuthConfig::builder()
        .issuer("https://issuer.example/")
        .client_id("cluster-test")
        .client_secret("cluster-test-secret")
        .secret("the cluster test's session secret, 32 bytes or more")
        .base_url("https://app.example")
        .build()
        .unwrap()
}

fn session(sub: &str, sid: &str) -> SessionData {
    let claims = serde_json::json!({"sub": sub, "sid": sid});
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    SessionData::new(User::from_id_token_claims(claims.as_object().unwrap().clone()), "h.c.s".into(), now)
}

/// Saves `sessions` through `store`, 64 at a time; the cookies that read them.
async fn save_all(store: &Arc<ServerSessionStore<RedisBackend>>, sessions: Vec<SessionData>) -> Vec<String> {
    let mut cookies = Vec::with_capacity(sessions.len());
    for chunk in sessions.chunks(64) {
        let mut saving = tokio::task::JoinSet::new();
        for data in chunk {
            let (store, data) = (store.clone(), data.clone());
            saving.spawn(async move { store.set(&mut StoreContext::default(), &data).await.expect("saved") });
        }
        saving.join_all().await;
        cookies.extend(chunk.iter().map(|data| format!("_a0_session={}", data.id())));
    }
    cookies
}

/// Whether the session of `cookie` reads through `store`.
async fn opens(store: &ServerSessionStore<RedisBackend>, cookie: &str) -> Result<bool, auth_layer::StoreError> {
    let mut ctx = StoreContext::from_cookie_headers([&cookie.parse().unwrap()]);
    Ok(store.get(&mut ctx).await?.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_thousand_sessions_land_on_the_three_masters_alike_and_a_logout_by_sub_ends_them_on_every_shard() {
    let cluster = RedisCluster::start();
    let backend = RedisBackend::connect_cluster(&cluster.urls).await.unwrap();
    let store = Arc::new(ServerSessionStore::new(backend.clone(), &config()));
    let sessions: Vec<SessionData> = (0..30_000).map(|i| session(&format!("user-{i}"), &format!("sid-{i}"))).collect();
    let cookies = save_all(&store, sessions).await;
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let counts: Vec<usize> = masters.iter().map(|port| cluster.count_keys(*port, "auth-layer:v:*")).collect();
    assert_eq!(counts.iter().sum::<usize>(), 30_000, "{counts:?}");
    for count in &counts {
        assert!((9_000..=11_000).contains(count), "within 10% of a third on each master: {counts:?}");
    }
    eprintln!("spread: 30,000 sessions over the three masters: {counts:?}");
    assert!(opens(&store, &cookies[12_345]).await.unwrap());

    // One user's sessions on every shard; a logout by `sub` ends each of them.
    let many: Vec<SessionData> = (0..30).map(|i| session("roaming", &format!("roaming-{i}"))).collect();
    let theirs = save_all(&store, many).await;
    let after: Vec<usize> = masters.iter().map(|port| cluster.count_keys(*port, "auth-layer:v:*")).collect();
    assert!(
        after.iter().zip(&counts).all(|(a, b)| a > b),
        "the user's sessions on every master: {counts:?} then {after:?}"
    );
    let ended = backend.delete_by_tag("session#sub=roaming").await.unwrap();
    assert_eq!(ended, 30, "every session the index names, wherever it sits");
    for cookie in &theirs {
        assert!(!opens(&store, cookie).await.unwrap(), "a session of the user survived the logout");
    }
    assert!(opens(&store, &cookies[7]).await.unwrap(), "another user's stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stopped_between_its_index_and_its_value_leaves_nothing_a_logout_can_miss() {
    let cluster = RedisCluster::start();
    let backend = RedisBackend::connect_cluster(&cluster.urls).await.unwrap().with_namespace("stopped");
    let stopped = backend.clone().stop_writes_after_index();
    let tags = || vec!["user=ann".to_owned()];
    assert!(stopped.put("k1", Bytes::from_static(b"v"), Some(Duration::from_secs(60)), tags()).await.is_err());
    assert_eq!(backend.get("k1").await.unwrap(), None, "no value without its index entries");
    let index_entries = cluster.masters().iter().map(|port| cluster.count_keys(*port, "stopped:t:*")).sum::<usize>();
    assert_eq!(index_entries, 1, "the index entry was written first");
    assert_eq!(backend.keys_by_tag("user=ann").await.unwrap(), Vec::<String>::new(), "an entry names no record");
    assert_eq!(backend.delete_by_tag("user=ann").await.unwrap(), 0);

    // The same write completed, and another that stops again: the logout ends the one there.
    backend.put("k1", Bytes::from_static(b"v"), Some(Duration::from_secs(60)), tags()).await.unwrap();
    assert!(stopped.put("k2", Bytes::from_static(b"v"), Some(Duration::from_secs(60)), tags()).await.is_err());
    assert_eq!(backend.keys_by_tag("user=ann").await.unwrap(), vec!["k1".to_owned()]);
    assert_eq!(backend.delete_by_tag("user=ann").await.unwrap(), 1);
    assert_eq!(backend.get("k1").await.unwrap(), None);
    // An update stopped between its steps writes nothing either.
    backend.put("k3", Bytes::from_static(b"old"), None, tags()).await.unwrap();
    assert!(stopped.update("k3", Bytes::from_static(b"new"), None, tags()).await.is_err());
    assert_eq!(backend.get("k3").await.unwrap().as_deref(), Some(&b"old"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_one_tag_layout_are_read_renewed_and_deleted_where_they_are() {
    let cluster = RedisCluster::start();
    let earlier = RedisBackend::connect_cluster(&cluster.urls).await.unwrap().with_one_slot();
    let now = RedisBackend::connect_cluster(&cluster.urls).await.unwrap();
    let ttl = Some(Duration::from_secs(60));
    for i in 0..4 {
        let tags = vec![format!("user=old-{}", i % 2), format!("sid=old-{i}")];
        earlier.put(&format!("old-{i}"), Bytes::from(format!("v{i}")), ttl, tags).await.unwrap();
    }
    assert_eq!(now.get("old-0").await.unwrap().as_deref(), Some(&b"v0"[..]), "read where it is");
    let tags = vec!["user=old-0".to_owned(), "sid=old-0".to_owned()];
    assert!(now.update("old-0", Bytes::from_static(b"renewed"), ttl, tags).await.unwrap(), "renewed");
    assert_eq!(earlier.get("old-0").await.unwrap().as_deref(), Some(&b"renewed"[..]), "where it is");
    let mut listed = now.keys_by_tag("user=old-0").await.unwrap();
    listed.sort();
    assert_eq!(listed, ["old-0", "old-2"]);
    now.delete("old-1").await.unwrap();
    assert_eq!(earlier.get("old-1").await.unwrap(), None, "deleted where it is");
    assert_eq!(now.delete_by_tag("user=old-0").await.unwrap(), 2);
    assert_eq!(earlier.get("old-2").await.unwrap(), None);
    assert!(!now.insert("old-3", Bytes::from_static(b"x"), ttl, vec![]).await.unwrap(), "held there: no insert");
    // A put moves it to the spread layout; the copy there goes.
    now.put("old-3", Bytes::from_static(b"moved"), ttl, vec!["user=old-1".into()]).await.unwrap();
    assert_eq!(earlier.get("old-3").await.unwrap(), None);
    assert_eq!(now.get("old-3").await.unwrap().as_deref(), Some(&b"moved"[..]));
    assert_eq!(now.keys_by_tag("user=old-1").await.unwrap(), ["old-3"]);
}

/// Reads of `cookies` (one every few milliseconds, round the list) until stopped, counting the
/// failed ones and when the last failure was.
struct Reader {
    failures: Arc<AtomicU64>,
    last_failure_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(store: Arc<ServerSessionStore<RedisBackend>>, cookies: Vec<String>, since: Instant) -> Self {
        let (failures, last_failure_ms) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (f, l) = (failures.clone(), last_failure_ms.clone());
        let task = tokio::spawn(async move {
            for i in 0.. {
                match opens(&store, &cookies[i % cookies.len()]).await {
                    Ok(true) => {}
                    Ok(false) => panic!("a session written before the failover is gone"),
                    Err(_) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        l.store(since.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Self { failures, last_failure_ms, task }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_and_a_killed_master_lose_no_session_and_reads_resume_within_seconds() {
    let mut cluster = RedisCluster::start();
    let backend = RedisBackend::connect_cluster(&cluster.urls).await.unwrap();
    let store = Arc::new(ServerSessionStore::new(backend.clone(), &config()));
    let sessions: Vec<SessionData> = (0..600).map(|i| session(&format!("f-{i}"), &format!("fs-{i}"))).collect();
    let cookies = save_all(&store, sessions).await;
    // Replication is asynchronous: the test waits for the replicas before failing over.
    for master in cluster.masters() {
        cluster.wait_for_replica(master);
    }

    // A replica promoted by `CLUSTER FAILOVER` while reads run.
    let since = Instant::now();
    let reader = Reader::start(store.clone(), cookies.clone(), since);
    let master = cluster.masters()[0];
    let replica = cluster.replica_of(master);
    cluster.failover(replica);
    let promoted_at = since.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (failed, last) = (reader.failures.load(Ordering::Relaxed), reader.last_failure_ms.load(Ordering::Relaxed));
    assert!(failed == 0 || last < promoted_at + 1_000, "reads still failed a second after the promotion ({failed})");
    eprintln!("failover: {failed} reads failed around the promotion");

    // A master killed outright: its replica takes over after the node timeout.
    let victim = cluster.masters()[1];
    let killed_at = since.elapsed().as_millis() as u64;
    cluster.kill(victim);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.masters().len() < 3 || cluster.masters().contains(&victim) {
        assert!(Instant::now() < deadline, "no replica took over the killed master");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let last = reader.last_failure_ms.load(Ordering::Relaxed);
    let now_ms = since.elapsed().as_millis() as u64;
    assert!(now_ms.saturating_sub(last) >= 2_000, "reads did not resume: last failure {last} ms, now {now_ms} ms");
    let outage_ms = last.saturating_sub(killed_at);
    assert!(outage_ms < 15_000, "reads failed for {outage_ms} ms after the kill");
    reader.task.abort();
    for (i, cookie) in cookies.iter().enumerate() {
        assert!(opens(&store, cookie).await.unwrap(), "session {i}, written before both failovers, is gone");
    }
    eprintln!(
        "failover: {} reads failed in all; after the kill, reads failed for {outage_ms} ms",
        reader.failures.load(Ordering::Relaxed)
    );
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, auth_layer::Store)]
#[store(key = "cart:{user_id}", ttl = "30m", encrypt)]
struct Cart {
    user_id: String,
    #[store(index)]
    org_id: String,
    items: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_stores_spread_too_and_two_namespaces_keep_their_records_apart() {
    let cluster = RedisCluster::start();
    const SECRET: &str = "a typed store's secret of 32 bytes or more";
    let backend = RedisBackend::connect_cluster(&cluster.urls).await.unwrap();
    let shop = Cart::store_in(backend.clone().with_namespace("shop"), &[SECRET]);
    let other = Cart::store_in(backend.with_namespace("other-shop"), &[SECRET]);
    let before: Vec<usize> = cluster.masters().iter().map(|port| cluster.count_keys(*port, "shop:v:*")).collect();
    for i in 0..300 {
        let cart = Cart { user_id: format!("u{i}"), org_id: "acme".into(), items: vec![format!("item {i}")] };
        shop.set(&cart).await.unwrap();
    }
    let counts: Vec<usize> = cluster.masters().iter().map(|port| cluster.count_keys(*port, "shop:v:*")).collect();
    assert_eq!(before, [0, 0, 0]);
    assert!(counts.iter().all(|n| *n >= 50), "the carts land on every master: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 300);
    assert_eq!(shop.find_by(Cart::ORG_ID, "acme").await.unwrap().len(), 300, "one index over every shard");
    assert_eq!(other.get("u1").await.unwrap(), None, "another namespace does not see them");
    assert_eq!(other.delete_by(Cart::ORG_ID, "acme").await.unwrap(), 0);
    assert_eq!(shop.delete_by(Cart::ORG_ID, "acme").await.unwrap(), 300);
    assert_eq!(shop.get("u7").await.unwrap(), None);
}

/// `INFO` field `name` of `section` on the node at `port` (a number in `INFO stats`, or the
/// `calls=` of a command in `INFO commandstats`).
fn info_count(port: u16, section: &str, name: &str) -> u64 {
    let out =
        std::process::Command::new("redis-cli").args(["-p", &port.to_string(), "info", section]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(line) = text.lines().find(|line| line.starts_with(&format!("{name}:"))) else { return 0 };
    let value = &line[name.len() + 1..];
    let number = value.strip_prefix("calls=").map_or(value, |rest| rest.split(',').next().unwrap());
    number.trim().parse().unwrap()
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Per master: `GET`s, `MGET`s and read events (`total_reads_processed`) so far.
fn read_counts(masters: &[u16]) -> Vec<(u64, u64, u64)> {
    masters
        .iter()
        .map(|port| {
            (
                info_count(*port, "commandstats", "cmdstat_get"),
                info_count(*port, "commandstats", "cmdstat_mget"),
                info_count(*port, "stats", "total_reads_processed"),
            )
        })
        .collect()
}

/// Reads every key of `keys` at once and checks each answer. On a current-thread runtime the
/// reads' tasks all run before the task that sends them: one batch.
async fn read_at_once(backend: &RedisBackend, keys: &[String]) {
    let mut reads = tokio::task::JoinSet::new();
    for key in keys {
        let (backend, key) = (backend.clone(), key.clone());
        reads.spawn(async move {
            let value = backend.get(&key).await.unwrap();
            assert_eq!(value.as_deref(), Some(format!("value of {key}").as_bytes()), "{key}");
        });
    }
    reads.join_all().await;
}

#[tokio::test]
async fn a_batch_of_reads_goes_to_each_master_as_one_pipeline_and_follows_a_moved_slot() {
    let cluster = RedisCluster::start();
    let backend = RedisBackend::connect_cluster(&cluster.urls).await.unwrap();
    let keys: Vec<String> = (0..3000).map(|i| format!("batch-{i}")).collect();
    for key in &keys {
        backend.put(key, Bytes::from(format!("value of {key}")), Some(Duration::from_secs(600)), vec![]).await.unwrap();
    }
    // The first batch fetches the slot map (and goes by slot meanwhile).
    read_at_once(&backend, &keys[..3]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let masters = cluster.masters();
    let held: Vec<usize> = masters.iter().map(|port| cluster.count_keys(*port, "auth-layer:v:*")).collect();
    // What taking the counts costs in read events (redis-cli's own connections).
    let idle = read_counts(&masters);
    let before = read_counts(&masters);
    read_at_once(&backend, &keys).await;
    let after = read_counts(&masters);
    for (i, port) in masters.iter().enumerate() {
        let (gets, mgets) = (after[i].0 - before[i].0, after[i].1 - before[i].1);
        let reads = (after[i].2 - before[i].2).saturating_sub(before[i].2 - idle[i].2);
        eprintln!("master {port}: {} keys, {gets} GETs, {mgets} MGETs, {reads} read events", held[i]);
        assert_eq!(gets, held[i] as u64, "each key read once, from the master holding it");
        assert_eq!(mgets, 0, "no MGET split per slot");
        // At most 128 reads a pipeline, each arriving in one or two read events. Split per
        // slot (the path before), ~1,000 keys a master took 44 read events.
        let pipelines = held[i].div_ceil(128) as u64;
        assert!(reads <= 2 * pipelines, "{reads} read events on master {port} for {} keys", held[i]);
    }

    // A slot moved to another master behind the map's back: its keys still read (MOVED, then
    // alone) and the next batch goes by node again with a fresh map.
    let (from, record) = masters
        .iter()
        .find_map(|port| {
            let found = cli(*port, &["--scan", "--pattern", "auth-layer:v:*}batch-0"]);
            (!found.is_empty()).then_some((*port, found))
        })
        .expect("the record of batch-0 is on a master");
    let slot: u16 = cli(from, &["cluster", "keyslot", &record]).parse().unwrap();
    let to = *masters.iter().find(|port| **port != from).unwrap();
    move_slot(slot, from, to, &masters);
    // Every record at once, batch-0's slot moved: its reads are answered `MOVED` inside their
    // pipelines and sent again, grouped by a fresh map; every answer is right.
    read_at_once(&backend, &keys).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held: Vec<usize> = masters.iter().map(|port| cluster.count_keys(*port, "auth-layer:v:*")).collect();
    let idle = read_counts(&masters);
    let before = read_counts(&masters);
    read_at_once(&backend, &keys).await;
    let after = read_counts(&masters);
    for i in 0..masters.len() {
        let (gets, mgets) = (after[i].0 - before[i].0, after[i].1 - before[i].1);
        let reads = (after[i].2 - before[i].2).saturating_sub(before[i].2 - idle[i].2);
        eprintln!("after the move, master {}: {} keys, {gets} GETs, {reads} read events", masters[i], held[i]);
        assert_eq!((gets, mgets), (held[i] as u64, 0), "with a fresh map, each key read once from its master");
        assert!(reads <= 2 * held[i].div_ceil(128) as u64, "grouped by node again: {reads} read events");
    }
}

/// Moves `slot` with its keys from the master at `from` to the one at `to` (`CLUSTER SETSLOT`
/// and `MIGRATE`, as `redis-cli --cluster reshard` does), telling every master.
fn move_slot(slot: u16, from: u16, to: u16, masters: &[u16]) {
    let (from_id, to_id) = (cli(from, &["cluster", "myid"]), cli(to, &["cluster", "myid"]));
    let slot = slot.to_string();
    assert_eq!(cli(to, &["cluster", "setslot", &slot, "importing", &from_id]), "OK");
    assert_eq!(cli(from, &["cluster", "setslot", &slot, "migrating", &to_id]), "OK");
    let keys = cli(from, &["cluster", "getkeysinslot", &slot, "1000"]);
    let mut args = vec!["migrate", "127.0.0.1", "", "", "0", "5000", "KEYS"];
    let to_port = to.to_string();
    args[2] = &to_port;
    args.extend(keys.lines());
    assert_eq!(cli(from, &args), "OK");
    for port in masters {
        assert_eq!(cli(*port, &["cluster", "setslot", &slot, "node", &to_id]), "OK");
    }
}
