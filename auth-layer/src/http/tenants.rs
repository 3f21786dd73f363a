//! Several providers in one app: [`Tenants`] picks, for each request, the [`AuthClient`] of the
//! tenant it is for (by host name, a trusted proxy's header, or the app's own rule), among
//! tenants configured up front or loaded by the app's loader when first asked for (kept in a
//! bounded cache).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, Uri};

use crate::client::AuthClient;
use crate::config::ConfigError;
use crate::forwarded::TrustedProxies;
use crate::telemetry;

/// The app's own rule: the tenant id (one of the configured [`AuthConfig::tenant`]s) a request
/// is for, from its headers and URI.
///
/// [`AuthConfig::tenant`]: crate::AuthConfig::tenant
type Pick = Arc<dyn Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync>;

/// What the app's loader gives for a key: the tenant's client, none, or why it could not say.
type LoadFuture = Pin<Box<dyn Future<Output = Result<Option<AuthClient>, crate::error::Cause>> + Send>>;
type Load = Arc<dyn Fn(String) -> LoadFuture + Send + Sync>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tenants of a multi-tenant app, each an [`AuthClient`] of its own (its provider, client,
/// base URL, stores), and how a request finds its tenant. Given to [`TenantLayer::new`](crate::TenantLayer::new).
///
/// Each tenant's configuration names it ([`AuthConfigBuilder::tenant`](crate::AuthConfigBuilder::tenant)): its secrets are then
/// derived for it alone, so a session or login of one tenant never opens on another, even where
/// they share a database, and its callback requires the provider's `iss` (RFC 9207). Providers
/// are discovered when their clients are built, so metadata and keys are fetched only from the
/// issuers configured here: never from one a request or a token names.
///
/// A request's tenant is its host (the `Host` header, or the URI's authority in HTTP/2), as the
/// browser sends it, port included; behind a load balancer, the host it forwarded, read only
/// from the peers in [`trusted_proxies`](Self::trusted_proxies) (`Forwarded`,
/// `X-Forwarded-Host`, or the header named by [`host_header`](Self::host_header)); or the
/// app's rule ([`pick_with`](Self::pick_with)). A
/// request that matches no tenant gets 400, or the [`fallback`](Self::fallback) tenant when the
/// app set one: never a tenant chosen by accident. Back-channel logouts go to the tenant whose
/// issuer the logout token names (among the configured ones), whichever host they reach.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use auth_layer::{AuthClient, AuthConfig, TenantLayer, Tenants};
///
/// let mut tenants = Tenants::new();
/// for (host, issuer, client_id, secret) in [
///     ("acme.example.com", "https://acme.okta.com/", "acme-app", "..."),
///     ("globex.example.com", "https://globex.eu.auth0.com/", "globex-app", "..."),
/// ] {
///     let config = AuthConfig::builder()
///         .tenant(host)
///         .issuer(issuer)
///         .client_id(client_id)
///         .client_secret(secret)
///         .secret(std::env::var("AUTH_SECRET")?)
///         .base_url(format!("https://{host}"))
///         .build()?;
///     tenants = tenants.tenant(AuthClient::new(config).await?, [host])?;
/// }
/// let layer = TenantLayer::new(tenants)?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Tenants {
    clients: Vec<AuthClient>,
    by_host: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    fallback: Option<usize>,
    host_header: Option<HeaderName>,
    trusted_proxies: TrustedProxies,
    pick: Option<Pick>,
    loaded: Option<Arc<Loaded>>,
}

/// Tenants the app's loader gave, by key (a host, or the app's rule's id), keys it said are no
/// tenant (or could not say for), the loads under way (one per key at a time, at most
/// [`MAX_LOADS`] at once), and the clients whose state lives in them.
struct Loaded {
    load: Load,
    /// Tenants, least recently used out, each kept while used (see [`KeepTenant`]).
    tenants: moka::sync::Cache<String, AuthClient>,
    /// Keys that are no tenant, or whose load failed a moment ago: apart from `tenants`, so that
    /// a flood of made-up hosts only ever pushes out other made-up hosts.
    none: moka::sync::Cache<String, Negative>,
    loading: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Option<AuthClient>>>>>,
    permits: tokio::sync::Semaphore,
    /// The client of each loaded tenant whose logout markers, used logout tokens and refresh
    /// leases live in the client itself ([`SharedState::in_memory`](crate::SharedState::in_memory)),
    /// by tenant id: a reload of the same tenant at the same provider keeps serving it, so that
    /// a logout is not undone by the tenant leaving the cache. Only tenants the loader named.
    kept: Mutex<HashMap<String, AuthClient>>,
}

/// Why a key has no tenant for now.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Negative {
    /// The loader said so.
    NoTenant,
    /// The loader failed: the key's requests get 503 for a moment, without asking it again.
    Failed,
}

/// How long a loaded tenant is kept: renewed by each use, up to a limit since it was loaded
/// (after which the loader is asked again, and the provider's metadata fetched anew).
struct KeepTenant {
    idle: Duration,
    most: Duration,
}

impl<V> moka::Expiry<String, V> for KeepTenant {
    fn expire_after_create(&self, _: &String, _: &V, _: Instant) -> Option<Duration> {
        Some(self.idle.min(self.most))
    }

    fn expire_after_read(
        &self,
        _: &String,
        _: &V,
        read_at: Instant,
        _: Option<Duration>,
        loaded_at: Instant,
    ) -> Option<Duration> {
        Some(self.idle.min(self.most.saturating_sub(read_at.saturating_duration_since(loaded_at))))
    }
}

/// How long a key that is no tenant is remembered, and a failed load.
struct KeepNone {
    none: Duration,
}

impl moka::Expiry<String, Negative> for KeepNone {
    fn expire_after_create(&self, _: &String, value: &Negative, _: Instant) -> Option<Duration> {
        Some(match value {
            Negative::NoTenant => self.none,
            Negative::Failed => KEEP_FAILED.min(self.none),
        })
    }
}

/// The tenant a request is for, as far as can be told without waiting.
pub(crate) enum Resolved {
    /// A configured tenant, or one loaded before.
    Client(AuthClient),
    /// To be asked of the app's loader.
    Load(String),
    /// None: 400, or the fallback tenant.
    Unknown,
    /// The loader failed for this key a moment ago: 503.
    Unavailable,
}

/// How many loaded tenants are kept by default, and apart from them how many keys that are no
/// tenant ([`Tenants::keep_loaded`]).
const KEEP_LOADED: u64 = 1_000;
/// How long a loaded tenant is kept by default when unused: each use renews it.
const KEEP_TENANT: Duration = Duration::from_secs(3600);
/// How long a loaded tenant is kept at most, used or not: the loader is then asked again and its
/// provider's metadata and keys fetched anew (a key rotation is picked up sooner, by its
/// client's refetch).
const KEEP_TENANT_MOST: Duration = Duration::from_secs(24 * 3600);
/// How long a key whose load failed answers 503 without asking the loader again.
const KEEP_FAILED: Duration = Duration::from_secs(5);
/// How many loader calls may run at once; more first requests wait for a turn.
const MAX_LOADS: usize = 8;
/// How long a key that is no tenant is remembered by default (a tenant added since shows up
/// after that, or at once with [`Tenants::forget`]).
const KEEP_NONE: Duration = Duration::from_secs(60);

/// The longest key handed to the loader: a host name (253) with a port.
const MAX_KEY: usize = 260;

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("tenants", &self.by_id.keys().collect::<Vec<_>>())
            .field("hosts", &self.by_host.keys().collect::<Vec<_>>())
            .field("loaded", &self.loaded.as_ref().map(|loaded| loaded.tenants.entry_count()))
            .finish_non_exhaustive()
    }
}

impl Tenants {
    /// No tenants yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `client`'s tenant, served under `hosts` (as browsers send them: `app.example.com`,
    /// `127.0.0.1:3000`; compared without regard to case). Refused when its configuration names
    /// no tenant, or names one already added, or a host is taken.
    pub fn tenant<H: Into<String>>(
        mut self,
        client: AuthClient,
        hosts: impl IntoIterator<Item = H>,
    ) -> Result<Self, ConfigError> {
        let Some(id) = client.config().tenant().map(str::to_owned) else {
            return Err(ConfigError::Invalid {
                name: "tenant",
                reason: format!(
                    "the client of {} names no tenant: set AuthConfigBuilder::tenant, so that its secrets are its own",
                    client.config().issuer()
                ),
            });
        };
        if self.by_id.contains_key(&id) {
            return Err(ConfigError::Invalid { name: "tenant", reason: format!("tenant `{id}` is added twice") });
        }
        let index = self.clients.len();
        for host in hosts {
            let host = host.into().to_ascii_lowercase();
            if self.by_host.insert(host.clone(), index).is_some() {
                return Err(ConfigError::Invalid { name: "tenant", reason: format!("host `{host}` has two tenants") });
            }
        }
        self.by_id.insert(id, index);
        self.clients.push(client);
        Ok(self)
    }

    /// Serves requests that match no tenant with the tenant `id` (already added), instead of
    /// answering 400.
    pub fn fallback(mut self, id: &str) -> Result<Self, ConfigError> {
        let index = *self.by_id.get(id).ok_or_else(|| ConfigError::Invalid {
            name: "tenant",
            reason: format!("the fallback tenant `{id}` was not added"),
        })?;
        self.fallback = Some(index);
        Ok(self)
    }

    /// Reads the host a trusted proxy forwarded from `header` (e.g. `x-original-host`) rather
    /// than from `Forwarded` or `X-Forwarded-Host`. Read only on requests from a peer in
    /// [`trusted_proxies`](Self::trusted_proxies) (anyone can send it): [`TenantLayer::new`]
    /// refuses it without them.
    ///
    /// [`TenantLayer::new`]: crate::TenantLayer::new
    pub fn host_header(mut self, header: HeaderName) -> Self {
        self.host_header = Some(header);
        self
    }

    /// The load balancers and reverse proxies whose forwarded host (`Forwarded`,
    /// `X-Forwarded-Host`, or [`host_header`](Self::host_header)) picks the tenant; from any
    /// other peer the `Host` header does. None by default.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Whether the tenant is read from a header that only trusted proxies may set, but none
    /// are named (a configuration [`TenantLayer::new`](crate::TenantLayer::new) refuses).
    pub(crate) fn trusts_nobody_with_host_header(&self) -> bool {
        self.host_header.is_some() && self.trusted_proxies.is_empty()
    }

    /// Picks the tenant with the app's own rule, which returns a configured tenant's id (an
    /// unknown id is no tenant): a path prefix, a header of the app's gateway.
    pub fn pick_with(mut self, pick: impl Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync + 'static) -> Self {
        self.pick = Some(Arc::new(pick));
        self
    }

    /// Loads tenants nobody configured up front, when a request first asks for one: `load`
    /// gets the request's key (its host as sent, lowercased, or the id [`pick_with`](Self::pick_with)
    /// returned) and gives that tenant's client (built as any tenant's, with
    /// [`AuthConfigBuilder::tenant`](crate::AuthConfigBuilder::tenant) set), `None` for no
    /// tenant, or an error when it cannot tell (its database is down: the request gets 503).
    ///
    /// Configured tenants are found first. A loaded tenant is kept an hour after its last use
    /// (a day at most, then the loader is asked again), at most 1,000 tenants, least recently
    /// used first out; keys that are no tenant are remembered for a minute, 1,000 of them apart
    /// from the tenants, so made-up `Host` values never push a tenant out (see
    /// [`keep_loaded`](Self::keep_loaded)). A key is loaded once at a time, whatever the number of
    /// requests waiting for it, and at most 8 loads run at once; a load whose requests are all
    /// cancelled leaves nothing behind, and a failed one answers 503 for 5 seconds without
    /// asking again. [`forget`](Self::forget) drops a key at once (a tenant changed its
    /// provider, or was added). Providers are discovered only when the loader builds their
    /// clients: never for an issuer a request or a token names.
    ///
    /// A loaded tenant's logout markers, used logout tokens and refresh leases must outlive its
    /// place in the cache, or a logout would be undone by a reload. Give its client a
    /// [`SharedState`](crate::SharedState) in Redis or PostgreSQL (a fleet needs that anyway); a
    /// client whose state is in itself ([`SharedState::in_memory`](crate::SharedState::in_memory),
    /// the default with cookie sessions) is kept for its tenant in this process, and served again
    /// when the loader gives that tenant at the same provider and client id (its provider
    /// metadata then stays that of its first load).
    ///
    /// A session records its tenant and its provider: once a tenant moves to another provider,
    /// the sessions and logins of the old one are no longer accepted there.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use auth_layer::{AuthClient, AuthConfig, TenantLayer, Tenants};
    ///
    /// // The app's own record of its customers' providers (a database table, say).
    /// async fn customer_of(host: &str) -> Option<(String, String, String)> {
    ///     (host == "acme.example.com").then(|| ("https://acme.okta.com/".into(), "acme-app".into(), "...".into()))
    /// }
    ///
    /// let tenants = Tenants::new().load_with(|host: String| async move {
    ///     let Some((issuer, client_id, secret)) = customer_of(&host).await else { return Ok(None) };
    ///     let config = AuthConfig::builder()
    ///         .tenant(host.clone())
    ///         .issuer(issuer)
    ///         .client_id(client_id)
    ///         .client_secret(secret)
    ///         .secret(std::env::var("AUTH_SECRET")?)
    ///         .base_url(format!("https://{host}"))
    ///         .build()?;
    ///     Ok(Some(AuthClient::new(config).await?))
    /// });
    /// let layer = TenantLayer::new(tenants.clone())?;
    /// // Later, when acme changes its provider:
    /// tenants.forget("acme.example.com");
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn load_with<F, Fut>(mut self, load: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<AuthClient>, Box<dyn std::error::Error + Send + Sync>>> + Send + 'static,
    {
        let load: Load = Arc::new(move |key| {
            let loading = load(key);
            Box::pin(async move { loading.await.map_err(crate::error::Cause::from) })
        });
        self.loaded = Some(Arc::new(Loaded::new(load, KEEP_LOADED, KEEP_TENANT, KEEP_NONE)));
        self
    }

    /// How many loaded keys to keep (least recently used first out), how long a loaded tenant
    /// is kept, and how long a key that is no tenant is remembered as none. After
    /// [`load_with`](Self::load_with); forgets what was loaded so far.
    pub fn keep_loaded(mut self, capacity: u64, tenant: Duration, none: Duration) -> Self {
        if let Some(loaded) = &self.loaded {
            self.loaded = Some(Arc::new(Loaded::new(loaded.load.clone(), capacity, tenant, none)));
        }
        self
    }

    /// Drops what the loader gave for `key` (compared without regard to case, as requests'
    /// keys are): the next request for it loads it again.
    ///
    /// In this process only: behind a load balancer, each instance keeps what it loaded until
    /// it calls `forget` too (from the app's own notice that the tenant changed) or until the
    /// tenant's time is up (`keep_loaded`, an hour after its last use by default).
    pub fn forget(&self, key: &str) {
        if let Some(loaded) = &self.loaded {
            let key = load_key(key);
            loaded.tenants.invalidate(&key);
            loaded.none.invalidate(&key);
        }
    }

    /// Whether tenants are loaded when asked for ([`load_with`](Self::load_with)).
    pub fn loads(&self) -> bool {
        self.loaded.is_some()
    }

    /// Every configured tenant's client, in the order added (loaded ones are not listed).
    pub fn clients(&self) -> &[AuthClient] {
        &self.clients
    }

    /// The client of the tenant a request with these headers and URI is for, when it is known
    /// without waiting; else the key to load it by.
    pub(crate) fn resolve(&self, headers: &HeaderMap, uri: &Uri, extensions: &http::Extensions) -> Resolved {
        let (found, key) = match &self.pick {
            Some(pick) => match pick(headers, uri) {
                Some(id) => (self.by_id.get(&id).copied(), Some(id)),
                None => (None, None),
            },
            None => match self.host(headers, uri, extensions) {
                Some(host) => (self.by_host_name(host), Some(host.to_owned())),
                None => (None, None),
            },
        };
        if let Some(index) = found {
            return Resolved::Client(self.clients[index].clone());
        }
        if let (Some(loaded), Some(key)) = (&self.loaded, key)
            && key.len() <= MAX_KEY
        {
            let key = load_key(&key);
            if let Some(client) = loaded.tenants.get(&key) {
                telemetry::count(telemetry::TENANT_CACHE_HITS);
                return Resolved::Client(client);
            }
            return match loaded.none.get(&key) {
                Some(Negative::NoTenant) => self.or_fallback(),
                Some(Negative::Failed) => Resolved::Unavailable,
                None => Resolved::Load(key),
            };
        }
        self.or_fallback()
    }

    /// The fallback tenant, if any.
    pub(crate) fn or_fallback(&self) -> Resolved {
        match self.fallback {
            Some(index) => Resolved::Client(self.clients[index].clone()),
            None => Resolved::Unknown,
        }
    }

    /// Asks the loader for `key`'s tenant (once, however many ask at the same time, and at most
    /// [`MAX_LOADS`] keys at once) and keeps the answer. An error is remembered for
    /// [`KEEP_FAILED`]. Cancellation-safe: a request dropped while waiting leaves no entry behind
    /// (the last one out removes it), and a waiter left takes the load over.
    pub(crate) async fn load(&self, key: String) -> Result<Option<AuthClient>, crate::error::Cause> {
        let Some(loaded) = &self.loaded else { return Ok(None) };
        let turn = LoadTurn::new(loaded, &key);
        let Some(cell) = turn.cell.as_deref() else { return Ok(None) };
        let answer = cell
            .get_or_try_init(|| async {
                if let Some(kept) = loaded.tenants.get(&key) {
                    return Ok(Some(kept));
                }
                let _permit =
                    loaded.permits.acquire().await.map_err(|e| crate::error::Cause::from(Box::new(e) as BoxError))?;
                match (loaded.load)(key.clone()).await {
                    Ok(client) => {
                        let outcome = if client.is_some() { "tenant" } else { "none" };
                        telemetry::count_by(telemetry::TENANT_LOADS, "outcome", outcome);
                        loaded.keep(&key, client)
                    }
                    Err(err) => {
                        telemetry::count_by(telemetry::TENANT_LOADS, "outcome", "failed");
                        loaded.none.insert(key.clone(), Negative::Failed);
                        Err(err)
                    }
                }
            })
            .await
            .cloned();
        drop(turn);
        answer
    }

    /// The client of the configured tenant whose provider is `issuer`.
    pub(crate) fn by_issuer(&self, issuer: &str) -> Option<&AuthClient> {
        self.clients.iter().find(|client| client.issuer() == issuer)
    }

    fn host<'r>(&self, headers: &'r HeaderMap, uri: &'r Uri, extensions: &http::Extensions) -> Option<&'r str> {
        let trusted = &self.trusted_proxies;
        Some(crate::forwarded::destination(uri, headers, extensions, trusted, self.host_header.as_ref())?.host)
    }

    /// One lookup; a second, lowercased, only for a host sent with capitals.
    fn by_host_name(&self, host: &str) -> Option<usize> {
        let host = host.trim();
        self.by_host.get(host).copied().or_else(|| {
            host.bytes()
                .any(|b| b.is_ascii_uppercase())
                .then(|| self.by_host.get(&host.to_ascii_lowercase()).copied())
                .flatten()
        })
    }
}

impl Loaded {
    fn new(load: Load, capacity: u64, tenant: Duration, none: Duration) -> Self {
        Self {
            load,
            // Least recently used out: a new tenant is never refused a place (moka's default
            // admission weighs entries by how often they were asked for).
            tenants: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(KeepTenant { idle: tenant, most: KEEP_TENANT_MOST.max(tenant) })
                .build(),
            none: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(KeepNone { none })
                .build(),
            loading: Mutex::default(),
            permits: tokio::sync::Semaphore::new(MAX_LOADS),
            kept: Mutex::default(),
        }
    }

    /// Keeps what the loader gave for `key`, and gives the client to serve it with: for a tenant
    /// whose state is in its client, the client kept from an earlier load of it, when that one
    /// is of the same provider and client id.
    fn keep(&self, key: &str, client: Option<AuthClient>) -> Result<Option<AuthClient>, crate::error::Cause> {
        let Some(client) = client else {
            self.none.insert(key.to_owned(), Negative::NoTenant);
            return Ok(None);
        };
        let Some(id) = client.config().tenant().map(str::to_owned) else {
            return Err(crate::error::Cause::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                "the loader gave a client of {} that names no tenant: set AuthConfigBuilder::tenant, so that its secrets are its own",
                client.config().issuer()
            ))));
        };
        let client = if client.state_in_client() {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match kept.get(&id) {
                Some(earlier) if same_party(earlier, &client) => earlier.clone(),
                earlier => {
                    if earlier.is_some() {
                        tracing::warn!(
                            tenant = ?id,
                            "loaded tenant changed its client: its logout markers in this process start anew; give loaded tenants a SharedState in Redis or PostgreSQL"
                        );
                    }
                    kept.insert(id.clone(), client.clone());
                    client
                }
            }
        } else {
            client
        };
        self.none.invalidate(key);
        self.tenants.insert(key.to_owned(), client.clone());
        tracing::info!(key = ?key, tenant = ?id, "tenant loaded");
        Ok(Some(client))
    }
}

/// Whether two clients are the same relying party: one provider, one client id and secret.
fn same_party(a: &AuthClient, b: &AuthClient) -> bool {
    let (a, b) = (a.config(), b.config());
    a.issuer() == b.issuer() && a.client_id() == b.client_id() && a.client_secret == b.client_secret
}

/// A request's place among those waiting for one key's load. Dropped, however the request ends
/// (answered, or cancelled mid-load), it gives up its share of the load, and the last one out
/// removes the key's entry: nothing stays behind a load nobody waits for.
struct LoadTurn<'a> {
    loaded: &'a Loaded,
    key: &'a str,
    cell: Option<Arc<tokio::sync::OnceCell<Option<AuthClient>>>>,
}

impl<'a> LoadTurn<'a> {
    fn new(loaded: &'a Loaded, key: &'a str) -> Self {
        let cell = loaded.loading.lock().unwrap_or_else(|e| e.into_inner()).entry(key.to_owned()).or_default().clone();
        Self { loaded, key, cell: Some(cell) }
    }
}

impl Drop for LoadTurn<'_> {
    fn drop(&mut self) {
        let mut loading = self.loaded.loading.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cell) = self.cell.take() else { return };
        let ours = loading.get(self.key).is_some_and(|c| Arc::ptr_eq(c, &cell));
        // Under the lock, as every share is taken and given up: the map's is the last but ours.
        if ours && Arc::strong_count(&cell) == 2 {
            loading.remove(self.key);
        }
    }
}

/// The key a request's host or id is loaded and forgotten by: trimmed and lowercased.
fn load_key(raw: &str) -> String {
    raw.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Tenants whose loader knows no tenant (`None` for every key), or fails for keys starting
    /// with `down`; and how often it was asked.
    fn loader() -> (Tenants, Arc<Mutex<HashMap<String, u64>>>) {
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let seen = asked.clone();
        let tenants = Tenants::new().load_with(move |key: String| {
            *seen.lock().unwrap().entry(key.clone()).or_insert(0) += 1;
            async move { if key.starts_with("down") { Err("the tenants' database is down".into()) } else { Ok(None) } }
        });
        (tenants, asked)
    }

    fn host(name: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, name.parse().unwrap());
        headers
    }

    fn key(tenants: &Tenants, name: &str) -> Option<String> {
        match tenants.resolve(&host(name), &Uri::from_static("/"), &Default::default()) {
            Resolved::Load(key) => Some(key),
            _ => None,
        }
    }

    #[tokio::test]
    async fn loaded_keys_are_bounded_least_recently_used_out_and_expire() {
        let (tenants, asked) = loader();
        let tenants = tenants.keep_loaded(2, Duration::from_secs(3600), Duration::from_millis(300));
        for name in ["one.example", "two.example", "three.example"] {
            assert_eq!(tenants.load(key(&tenants, name).unwrap()).await.unwrap().map(|c| c.issuer().to_owned()), None);
        }
        tenants.loaded.as_ref().unwrap().none.run_pending_tasks();
        assert!(tenants.loaded.as_ref().unwrap().none.entry_count() <= 2, "at most 2 keys kept");
        assert_eq!(key(&tenants, "one.example").as_deref(), Some("one.example"), "the least recent is out");
        assert!(key(&tenants, "three.example").is_none(), "the latest is kept: answered without a load");
        std::thread::sleep(Duration::from_millis(400));
        assert!(key(&tenants, "three.example").is_some(), "a key that is no tenant is remembered only so long");
        assert_eq!(asked.lock().unwrap().values().sum::<u64>(), 3);
    }

    #[test]
    fn by_default_1000_tenants_and_apart_1000_keys_that_are_none_a_tenant_an_hour_after_its_last_use() {
        use moka::Expiry;
        let (tenants, _) = loader();
        let loaded = tenants.loaded.as_ref().unwrap();
        assert_eq!(loaded.tenants.policy().max_capacity(), Some(1_000));
        assert_eq!(loaded.none.policy().max_capacity(), Some(1_000));
        let none = KeepNone { none: KEEP_NONE };
        assert_eq!(
            none.expire_after_create(&"x".into(), &Negative::NoTenant, Instant::now()),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            none.expire_after_create(&"x".into(), &Negative::Failed, Instant::now()),
            Some(Duration::from_secs(5))
        );
        assert_eq!(KEEP_TENANT, Duration::from_secs(3600));
        // Each use renews an hour, up to a day after the load.
        let keep = KeepTenant { idle: KEEP_TENANT, most: KEEP_TENANT_MOST };
        let loaded_at = Instant::now();
        let renew = |after: Duration| {
            let (read_at, key) = (loaded_at + after, String::new());
            moka::Expiry::<String, ()>::expire_after_read(&keep, &key, &(), read_at, None, loaded_at)
        };
        assert_eq!(renew(Duration::from_secs(7_000)), Some(KEEP_TENANT), "used after 2 hours: an hour more");
        assert_eq!(renew(Duration::from_secs(23 * 3600 + 1800)), Some(Duration::from_secs(1800)), "the day's end");
        assert_eq!(renew(Duration::from_secs(25 * 3600)), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn a_failed_load_answers_503_for_a_moment_without_asking_again_and_keys_are_lowercased() {
        let (tenants, asked) = loader();
        assert_eq!(key(&tenants, "Down.Example").as_deref(), Some("down.example"));
        assert!(tenants.load("down.example".into()).await.is_err());
        for _ in 0..3 {
            assert!(matches!(
                tenants.resolve(&host("down.example"), &Uri::from_static("/"), &Default::default()),
                Resolved::Unavailable
            ));
        }
        assert_eq!(asked.lock().unwrap()["down.example"], 1, "not asked again within the moment");
        assert!(key(&tenants, &format!("{}.example", "a".repeat(300))).is_none(), "a key too long is no tenant");
        tenants.load("gone.example".into()).await.unwrap();
        assert!(key(&tenants, "gone.example").is_none());
        tenants.forget("GONE.example");
        assert!(key(&tenants, "gone.example").is_some(), "forgotten: loaded again");
    }

    #[tokio::test]
    async fn forget_and_the_apps_rule_agree_on_key_case() {
        let (tenants, asked) = loader();
        let tenants = tenants.pick_with(|headers, _| headers.get("x-customer")?.to_str().ok().map(str::to_owned));
        let customer = |id: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-customer", http::HeaderValue::from_static(id));
            headers
        };
        let Resolved::Load(key) = tenants.resolve(&customer("Acme"), &Uri::from_static("/"), &Default::default())
        else {
            panic!("a load")
        };
        assert_eq!(key, "acme");
        tenants.load(key).await.unwrap();
        assert!(matches!(
            tenants.resolve(&customer("ACME"), &Uri::from_static("/"), &Default::default()),
            Resolved::Unknown
        ));
        tenants.forget("Acme");
        assert!(matches!(
            tenants.resolve(&customer("acme"), &Uri::from_static("/"), &Default::default()),
            Resolved::Load(_)
        ));
        assert_eq!(asked.lock().unwrap()["acme"], 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_cancelled_first_requests_leave_nothing_behind_and_loads_are_bounded() {
        let running = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let (now, top) = (running.clone(), most.clone());
        let tenants = Arc::new(Tenants::new().load_with(move |_key: String| {
            let (now, top) = (now.clone(), top.clone());
            async move {
                let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                top.fetch_max(at_once, Ordering::SeqCst);
                // A loader that hangs (its database does not answer): cancelled from outside.
                struct Done(Arc<AtomicU64>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _done = Done(now);
                std::future::pending::<()>().await;
                Ok(None)
            }
        }));
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..3_000 {
            let tenants = tenants.clone();
            // 2,000 hosts of one request each, and 1,000 requests for one host.
            let key = if i % 3 == 0 { "one.example".to_owned() } else { format!("h{i}.example") };
            requests.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_millis(20), tenants.load(key)).await;
            });
        }
        requests.join_all().await;
        let loaded = tenants.loaded.as_ref().unwrap();
        assert_eq!(loaded.loading.lock().unwrap().len(), 0, "an entry stayed behind a cancelled load");
        assert!(most.load(Ordering::SeqCst) <= MAX_LOADS as u64, "{} loads at once", most.load(Ordering::SeqCst));
        assert_eq!(running.load(Ordering::SeqCst), 0, "every cancelled load was dropped");
        assert_eq!(loaded.permits.available_permits(), MAX_LOADS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_loads_of_one_key_ask_the_loader_once() {
        let asked = Arc::new(AtomicU64::new(0));
        let seen = asked.clone();
        let tenants = Arc::new(Tenants::new().load_with(move |_key: String| {
            seen.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(None)
            }
        }));
        let mut loads = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let tenants = tenants.clone();
            loads.spawn(async move { tenants.load("busy.example".into()).await.map(|c| c.is_none()) });
        }
        for answer in loads.join_all().await {
            assert!(answer.unwrap());
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_loader_that_fails_is_a_503_and_no_tenant_a_400_and_the_app_is_never_called() {
        use http_body_util::{BodyExt, Empty};
        use tower::{Layer, ServiceExt};
        let (tenants, _) = loader();
        let called = Arc::new(AtomicU64::new(0));
        let seen = called.clone();
        let app = tower::service_fn(move |_req: http::Request<Empty<bytes::Bytes>>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<bytes::Bytes>::new())) }
        });
        let service = crate::TenantLayer::new(tenants).unwrap().layer(app);
        for (name, status, code) in [
            ("down.example", http::StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            ("nobody.example", http::StatusCode::BAD_REQUEST, "unknown_tenant"),
        ] {
            for path in ["/", "/auth/login"] {
                let request = http::Request::get(path)
                    .header(HOST, name)
                    .header(http::header::ACCEPT, "application/json")
                    .body(Empty::new())
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                assert_eq!(response.status(), status, "{name}{path}");
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(body["error"], code, "{name}{path}");
            }
        }
        assert_eq!(called.load(Ordering::SeqCst), 0);
    }
}
