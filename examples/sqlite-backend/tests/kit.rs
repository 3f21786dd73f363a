//! The SQLite backend and the sessions table, through auth-layer's conformance kit: the same
//! rules auth-layer's own backends and stores keep.

use auth_layer::backend::Backend;
use auth_layer::store::ServerSessionStore;
use auth_layer::testing::{check_backend, check_session_store};
use sqlite_backend::{SessionsTable, SqliteBackend};

/// A database file of this test's own, removed at the end.
struct TempDb(std::path::PathBuf);

impl TempDb {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sqlite-backend-{name}-{}.sqlite3", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_keeps_every_backend_rule() {
    let db = TempDb::new("backend");
    // Every call opens another connection to the same file, as another process would.
    check_backend(|| async { SqliteBackend::open(&db.0).unwrap() }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_layers_server_store_on_it_keeps_every_session_store_rule() {
    let db = TempDb::new("server-store");
    check_session_store(|config| {
        let path = db.0.clone();
        async move { ServerSessionStore::new(SqliteBackend::open(path).unwrap(), &config) }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sessions_table_keeps_every_session_store_rule() {
    let db = TempDb::new("sessions-table");
    check_session_store(|config| {
        let path = db.0.clone();
        async move { SessionsTable::open(path, &config).unwrap() }
    })
    .await
    .unwrap();
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, auth_layer::Store)]
#[store(key = "cart:{user}", ttl = "30m", encrypt)]
struct Cart {
    user: String,
    items: Vec<String>,
}

#[tokio::test]
async fn typed_stores_run_on_it_and_outlive_the_connection() {
    let db = TempDb::new("typed");
    let secret = ["a secret of the app, 32 bytes or more, from AUTH_SECRET"];
    let cart = Cart { user: "ann".into(), items: vec!["book".into()] };
    Cart::store_in(SqliteBackend::open(&db.0).unwrap(), &secret).set(&cart).await.unwrap();
    // A restart: a new connection to the file finds the cart, sealed at rest.
    let reopened = SqliteBackend::open(&db.0).unwrap();
    let raw = reopened.get("cart:ann").await.unwrap().expect("stored under its key");
    assert!(!String::from_utf8_lossy(&raw).contains("book"), "sealed at rest");
    assert_eq!(Cart::store_in(reopened, &secret).get("ann").await.unwrap(), Some(cart));
}

#[tokio::test]
async fn purging_removes_expired_records_and_their_tags_only() {
    let backend = SqliteBackend::in_memory().unwrap();
    let short = Some(std::time::Duration::from_millis(100));
    backend.put("old", "v".into(), short, vec!["t".into()]).await.unwrap();
    backend.put("live", "v".into(), None, vec!["t".into()]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(backend.purge_expired().await.unwrap(), 1);
    assert_eq!(backend.keys_by_tag("t").await.unwrap(), ["live"]);
    assert_eq!(backend.purge_expired().await.unwrap(), 0);
}
