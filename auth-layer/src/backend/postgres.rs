//! [`PostgresBackend`]: records in PostgreSQL, with embedded versioned migrations, the expiry as
//! a column (never returned once past, even before the periodic purge removes it), the index tags
//! in their own indexed table, atomic upserts, and a bounded pool with timeouts.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{NoTls, Socket};

use super::{Backend, Notices, Watchers, When};
use crate::error::StoreError;
use crate::telemetry;

/// The schema, one migration per version, applied in order and recorded in
/// `auth_layer_migrations`. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE auth_layer_records (
         key text PRIMARY KEY,
         value bytea NOT NULL,
         expires_at timestamptz
     );
     CREATE INDEX auth_layer_records_expires_at ON auth_layer_records (expires_at) WHERE expires_at IS NOT NULL;
     CREATE TABLE auth_layer_tags (
         tag text NOT NULL,
         key text NOT NULL REFERENCES auth_layer_records (key) ON DELETE CASCADE,
         PRIMARY KEY (tag, key)
     );
     CREATE INDEX auth_layer_tags_key ON auth_layer_tags (key);",
)];

/// An arbitrary constant naming the advisory lock that serialises concurrent migrations.
const MIGRATION_LOCK: i64 = 0x6175_7468_6c61_7972;

/// How [`PostgresBackend`] connects and keeps itself tidy.
///
/// ```no_run
/// # async fn run() -> Result<(), auth_layer::StoreError> {
/// use std::time::Duration;
/// use auth_layer::backend::{PostgresBackend, PostgresOptions};
///
/// // Migrations run by the deploy, not by each instance; a larger pool; a 5 s budget per call.
/// let options = PostgresOptions {
///     max_connections: 32,
///     timeout: Duration::from_secs(5),
///     migrate_on_connect: false,
///     ..PostgresOptions::default()
/// };
/// let backend = PostgresBackend::connect_with("postgres://app@db.internal/app", options).await?;
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most connections the pool opens. Default 8.
    pub max_connections: usize,
    /// How long a call waits for a connection, or for the server, before the store counts as
    /// unavailable. Default 2 s.
    pub timeout: Duration,
    /// How often expired rows are deleted; `None` turns the purge off (reads never return an
    /// expired row either way). Default every 60 s.
    pub purge_interval: Option<Duration>,
    /// Whether [`PostgresBackend::connect`] applies pending migrations. Default true.
    pub migrate_on_connect: bool,
    /// The certificate authority (PEM) that TLS connections trust instead of the usual public
    /// ones (webpki's roots): a private CA, as managed databases often use. Setting it makes
    /// TLS required, whatever the URL's `sslmode`. Default none.
    pub root_ca_pem: Option<Vec<u8>>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            timeout: Duration::from_secs(2),
            purge_interval: Some(Duration::from_secs(60)),
            migrate_on_connect: true,
            root_ca_pem: None,
        }
    }
}

/// How the pool's and the listener's connections are made.
#[derive(Clone)]
enum Tls {
    /// Plain TCP (`sslmode=disable` or `prefer`).
    Off,
    /// TLS with the server's certificate checked (`sslmode=require`, `verify-ca`, `verify-full`).
    On(tokio_postgres_rustls::MakeRustlsConnect),
}

/// `url` with libpq's `sslmode=verify-full` and `verify-ca`, which the driver's parser does not
/// know, as `require`: auth-layer checks the certificate and the host name whenever TLS is on.
fn normalized_sslmode(url: &str) -> String {
    url.replace("sslmode=verify-full", "sslmode=require").replace("sslmode=verify-ca", "sslmode=require")
}

/// The first host of `config` that is neither a Unix socket nor a loopback address: where a
/// connection without TLS would cross a network.
fn remote_host(config: &tokio_postgres::Config) -> Option<String> {
    config.get_hosts().iter().find_map(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => {
            let loopback = name.eq_ignore_ascii_case("localhost")
                || name.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            (!loopback).then(|| name.clone())
        }
        _ => None,
    })
}

/// The TLS that `config`'s `sslmode` (or a given CA) asks for.
fn tls_for(config: &tokio_postgres::Config, root_ca_pem: Option<&[u8]>) -> Result<Tls, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    if root_ca_pem.is_none() && !matches!(config.get_ssl_mode(), SslMode::Require) {
        if let Some(host) = remote_host(config) {
            tracing::warn!(
                host = ?host,
                "PostgreSQL: connecting without TLS to a host that is not this machine; sessions and tokens cross the network \
                 readable. Add sslmode=require (or verify-full) to the URL, or give PostgresOptions a root CA"
            );
        }
        return Ok(Tls::Off);
    }
    let mut roots = rustls::RootCertStore::empty();
    match root_ca_pem {
        Some(pem) => {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|e| unavailable(format!("the root CA does not parse: {e}")))?;
                roots.add(certificate).map_err(|e| unavailable(format!("the root CA is refused: {e}")))?;
            }
            if roots.is_empty() {
                return Err(unavailable("the root CA PEM holds no certificate"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unavailable(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Tls::On(tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
}

enum PutError {
    Db(tokio_postgres::Error),
    Timeout,
}

/// A deadlock or serialization failure: the transaction was rolled back and may be retried.
fn is_retryable(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    err.code().is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Aborts the purge task when the last clone of the backend is dropped.
struct PurgeTask(tokio::task::JoinHandle<()>);

impl Drop for PurgeTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The payload of a change notice; anything else on a channel is a heartbeat.
const CHANGED: &str = "changed";

/// The `NOTIFY` channel for a watched channel: PostgreSQL folds unquoted identifiers to lower
/// case and allows 63 bytes, so the name is kept to lower-case letters, digits and `_`.
fn channel_name(channel: &str) -> String {
    let name: String = channel
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(50)
        .collect();
    format!("auth_layer_{name}")
}

/// What a listening connection gives: its client, the task that polls the connection, and the
/// notifications it passes on (`true` for a change notice, `false` for anything else).
type Listener = (tokio_postgres::Client, tokio::task::JoinHandle<()>, tokio::sync::mpsc::UnboundedReceiver<bool>);

/// Opens the listening connection with `tls`: the connection delivers notifications as it is
/// polled, so a task polls it and passes them on; the task ends with the connection.
async fn open_listener<T>(config: &tokio_postgres::Config, tls: T, timeout: Duration) -> Result<Listener, String>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    use tokio_postgres::AsyncMessage;
    let (client, mut connection) = match tokio::time::timeout(timeout, config.connect(tls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(err)) => return Err(describe(&err)),
        Err(_) => return Err("timed out".into()),
    };
    let (sender, received) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(notification) = message
                && sender.send(notification.payload() == CHANGED).is_err()
            {
                break;
            }
        }
    });
    Ok((client, driver, received))
}

/// The listener behind [`PostgresBackend::watch`]: `LISTEN`s on a connection of its own,
/// reports notices and heartbeats to `notices`, reconnects after a loss, and stops once no one
/// holds `notices` any more.
async fn listen(config: tokio_postgres::Config, notifier: PostgresBackend, channel: String, notices: Notices) {
    while notifier.watchers.keep_listening(&channel, &notices) {
        let connected = match &notifier.tls {
            Tls::Off => open_listener(&config, NoTls, notifier.timeout).await,
            Tls::On(make) => open_listener(&config, make.clone(), notifier.timeout).await,
        };
        let (client, driver, mut received) = match connected {
            Ok(opened) => opened,
            Err(err) => {
                tracing::warn!(%err, "PostgreSQL notices: cannot connect; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let listening =
            tokio::time::timeout(notifier.timeout, client.batch_execute(&format!("LISTEN {channel}"))).await;
        if !matches!(listening, Ok(Ok(()))) {
            tracing::warn!("PostgreSQL notices: LISTEN failed; retrying");
            driver.abort();
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        notices.connected();
        while notices.is_watched() {
            match tokio::time::timeout(Notices::HEARTBEAT, received.recv()).await {
                Ok(Some(true)) => notices.changed(),
                Ok(Some(false)) => notices.heard(),
                Ok(None) => break,
                Err(_) => {
                    // Quiet for a while: a heartbeat through the pool proves this connection
                    // still hears (its arrival is the sign of life).
                    if let Err(err) = notifier.send_notice(&channel, "heartbeat").await {
                        tracing::debug!(%err, "PostgreSQL notices: heartbeat not sent");
                    }
                }
            }
        }
        notices.disconnected();
        driver.abort();
        tracing::debug!("PostgreSQL notices: listening ended");
    }
}

/// Keeps records in PostgreSQL, shared by every process of the app. While the server is
/// unreachable every call fails within the configured timeout with
/// [`StoreError::Unavailable`] (the layer answers 503); the pool reconnects by itself.
///
/// ```no_run
/// use auth_layer::backend::PostgresBackend;
/// use auth_layer::store::ServerSessionStore;
/// use auth_layer::{AuthClient, AuthConfig};
///
/// # async fn build(config: AuthConfig) -> Result<(), auth_layer::AuthError> {
/// // Migrations run at connect; `sslmode=verify-full` checks the server's certificate.
/// let postgres = PostgresBackend::connect("postgres://app@db.internal/app?sslmode=verify-full").await?;
/// let store = ServerSessionStore::new(postgres, &config);
/// let client = AuthClient::builder(config).with_server_sessions(store).build().await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresBackend {
    pool: Pool,
    /// How to open the listening connection of [`Backend::watch`] (the pool's own settings).
    config: tokio_postgres::Config,
    tls: Tls,
    timeout: Duration,
    /// The notices given out, one listening connection per channel (shared by every clone).
    watchers: Watchers,
    _purge: Option<Arc<PurgeTask>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").field("pool", &self.pool.status()).finish_non_exhaustive()
    }
}

fn unavailable(err: impl std::fmt::Display + Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    tracing::warn!(%err, "PostgreSQL call failed");
    StoreError::unavailable("PostgreSQL", err)
}

/// A driver error with the server's code and message (its `Display` says only "db error").
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

impl PostgresBackend {
    /// Connects to `url` (`postgres://user:password@host:port/db`) with default options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects over TLS trusting only the certificate authority in `root_ca_pem` (a private
    /// CA) instead of the usual public ones.
    pub async fn connect_with_root_ca(url: &str, root_ca_pem: &[u8]) -> Result<Self, StoreError> {
        Self::connect_with(
            url,
            PostgresOptions { root_ca_pem: Some(root_ca_pem.to_vec()), ..PostgresOptions::default() },
        )
        .await
    }

    /// Connects to `url` with `options`.
    ///
    /// TLS follows the URL's `sslmode`: `require`, `verify-ca` and `verify-full` connect over
    /// TLS (rustls), checking the server's certificate against webpki's roots (or
    /// [`PostgresOptions::root_ca_pem`]) and its host name, and refuse a server without TLS;
    /// `disable` and `prefer` (the default) connect in the clear. (libpq's `prefer` and
    /// `require` would use TLS without checking the certificate, which an attacker in the
    /// middle defeats; ask for `require` to have it checked.)
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&normalized_sslmode(url)).map_err(unavailable)?;
        if options.root_ca_pem.is_some() {
            config.ssl_mode(SslMode::Require);
        }
        let tls = tls_for(&config, options.root_ca_pem.as_deref())?;
        config.connect_timeout(options.timeout);
        // Every statement here is a point read or write on an index. JIT compilation, which
        // PostgreSQL starts once a plan's estimated cost passes `jit_above_cost` (as it does
        // after a bulk load, before statistics catch up), costs more than such a statement.
        let given = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{given} -c jit=off").trim_start());
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match &tls {
            Tls::Off => Manager::from_config(config.clone(), NoTls, manager_config),
            Tls::On(make) => Manager::from_config(config.clone(), make.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(unavailable)?;
        let mut backend =
            Self { pool, config, tls, timeout: options.timeout, watchers: Watchers::default(), _purge: None };
        if options.migrate_on_connect {
            backend.migrate().await?;
        }
        if let Some(every) = options.purge_interval {
            let purger = backend.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match purger.purge_expired().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(rows = n, "purged expired records"),
                        Err(err) => tracing::warn!(%err, "purging expired records failed"),
                    }
                }
            });
            backend._purge = Some(Arc::new(PurgeTask(task)));
        }
        Ok(backend)
    }

    /// Applies the migrations not yet applied, under an advisory lock (several processes may
    /// start at once). Returns how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| unavailable(describe(&e)))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS auth_layer_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| unavailable(describe(&e)))?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM auth_layer_migrations", &[])
            .await
            .map_err(|e| unavailable(describe(&e)))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut count = 0;
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
            tx.batch_execute(sql).await.map_err(|e| unavailable(describe(&e)))?;
            tx.execute("INSERT INTO auth_layer_migrations (version) VALUES ($1)", &[version])
                .await
                .map_err(|e| unavailable(describe(&e)))?;
            tracing::info!(version, "applied auth-layer migration");
            count += 1;
        }
        tx.commit().await.map_err(|e| unavailable(describe(&e)))?;
        Ok(count)
    }

    /// Deletes expired rows now; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        self.timed(|| async { client.execute("DELETE FROM auth_layer_records WHERE expires_at <= now()", &[]).await })
            .await
    }

    /// One attempt at an atomic write of a record and its tags: an upsert; with
    /// [`When::Present`] an update of a live record (the row lock it takes orders it with a
    /// concurrent deletion: whichever commits first, the record ends deleted); with
    /// [`When::Absent`] an insert that replaces only an expired row (the primary key orders
    /// concurrent inserts: one wins). Whether it wrote.
    async fn put_once(
        &self,
        client: &mut deadpool_postgres::Object,
        key: &str,
        value: &[u8],
        ttl_ms: Option<i64>,
        tags: &[String],
        when: When,
    ) -> Result<bool, PutError> {
        let attempt = async {
            let tx = client.transaction().await?;
            let sql = match when {
                When::Present => {
                    "UPDATE auth_layer_records
                     SET value = $2, expires_at = now() + $3::bigint * interval '1 millisecond'
                     WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())"
                }
                When::Absent => {
                    "INSERT INTO auth_layer_records (key, value, expires_at)
                     VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
                     WHERE auth_layer_records.expires_at IS NOT NULL AND auth_layer_records.expires_at <= now()"
                }
                When::Always => {
                    "INSERT INTO auth_layer_records (key, value, expires_at)
                     VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
                     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at"
                }
            };
            let written = tx.execute(sql, &[&key, &value, &ttl_ms]).await?;
            if written == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            tx.execute("DELETE FROM auth_layer_tags WHERE key = $1", &[&key]).await?;
            if !tags.is_empty() {
                tx.execute(
                    "INSERT INTO auth_layer_tags (tag, key) SELECT DISTINCT unnest($1::text[]), $2",
                    &[&tags, &key],
                )
                .await?;
            }
            tx.commit().await.map(|()| true)
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result.map_err(PutError::Db),
            Err(_) => Err(PutError::Timeout),
        }
    }

    /// A [`put_once`](Self::put_once), again after a lost deadlock (up to four attempts).
    async fn write(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        tags: &[String],
        when: When,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let ttl_ms: Option<i64> = ttl.map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        // Concurrent writers of one key's tags can deadlock; Postgres aborts one, which retries.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.put_once(&mut client, key, value, ttl_ms, tags, when).await;
            match result {
                Err(PutError::Db(err)) if attempt < 4 && is_retryable(&err) => {
                    tracing::debug!(%err, attempt, "retrying a write that lost a deadlock");
                }
                Err(PutError::Db(err)) => return Err(unavailable(describe(&err))),
                Err(PutError::Timeout) => return Err(unavailable("timed out")),
                Ok(written) => return Ok(written),
            }
        }
    }

    /// `NOTIFY`s `payload` on `channel`.
    async fn send_notice(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        self.timed(|| async { client.execute("SELECT pg_notify($1, $2)", &[&channel, &payload]).await }).await.map(drop)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Runs `call` within the timeout; a statement that lost a deadlock (Postgres rolled it
    /// back) is run again, up to four times.
    async fn timed<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match tokio::time::timeout(self.timeout, call()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) if attempt < 4 && is_retryable(&err) => {
                    tracing::debug!(err = %describe(&err), attempt, "retrying a statement that lost a deadlock");
                }
                Ok(Err(err)) => return Err(unavailable(describe(&err))),
                Err(_) => return Err(unavailable("timed out")),
            }
        }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "get"), async {
        let client = self.client().await?;
        let row = self
            .timed(|| async {
                client
                    .query_opt(
                        "SELECT value FROM auth_layer_records WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())",
                        &[&key],
                    )
                    .await
            })
            .await?;
        Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
        })
        .await
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>, tags: Vec<String>) -> Result<(), StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "put"), async {
            self.write(key, &value, ttl, &tags, When::Always).await.map(|_| ())
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "update"), async {
            self.write(key, &value, ttl, &tags, When::Present).await
        })
        .await
    }

    async fn insert(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        tags: Vec<String>,
    ) -> Result<bool, StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "insert"), async {
            self.write(key, &value, ttl, &tags, When::Absent).await
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "delete"), async {
            let client = self.client().await?;
            self.timed(|| async { client.execute("DELETE FROM auth_layer_records WHERE key = $1", &[&key]).await })
                .await?;
            Ok(())
        })
        .await
    }

    async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "delete_by_tag"), async {
            let client = self.client().await?;
            self.timed(|| async {
                client
                    .execute(
                        "DELETE FROM auth_layer_records WHERE key IN (SELECT key FROM auth_layer_tags WHERE tag = $1)
                     AND (expires_at IS NULL OR expires_at > now())",
                        &[&tag],
                    )
                    .await
            })
            .await
        })
        .await
    }

    async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "keys_by_tag"), async {
            let client = self.client().await?;
            let rows = self
                .timed(|| async {
                    client
                        .query(
                            "SELECT t.key FROM auth_layer_tags t JOIN auth_layer_records r ON r.key = t.key
                         WHERE t.tag = $1 AND (r.expires_at IS NULL OR r.expires_at > now())",
                            &[&tag],
                        )
                        .await
                })
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
        .await
    }

    /// A connection of its own that `LISTEN`s (PostgreSQL's `NOTIFY`), reconnecting by itself,
    /// and notifies itself a heartbeat every [`Notices::HEARTBEAT`]. One connection per
    /// channel, however many stores and clones of this backend watch it.
    fn watch(&self, channel: &str) -> Option<Notices> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let channel = channel_name(channel);
        Some(self.watchers.watch(&channel, |notices| {
            runtime.spawn(listen(self.config.clone(), self.clone(), channel.clone(), notices));
        }))
    }

    async fn notify(&self, channel: &str) -> Result<(), StoreError> {
        telemetry::store_op(telemetry::store_labels!("postgres", "notify"), async {
            self.send_notice(&channel_name(channel), CHANGED).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_host_off_this_machine_is_warned_of_when_tls_is_off() {
        let host = |url: &str| remote_host(&url.parse::<tokio_postgres::Config>().unwrap());
        assert_eq!(host("postgres://app:pw@db.internal:5432/app").as_deref(), Some("db.internal"));
        assert_eq!(host("postgres://app@10.0.0.7/app").as_deref(), Some("10.0.0.7"));
        assert_eq!(host("host=localhost,db.internal user=app").as_deref(), Some("db.internal"), "any remote host");
        for local in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://postgres@localhost/test",
            "postgres://postgres@[::1]/test",
            "host=/var/run/postgresql user=postgres",
        ] {
            assert_eq!(host(local), None, "{local}");
        }
    }
}
