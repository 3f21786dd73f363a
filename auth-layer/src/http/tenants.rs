//! Several providers in one app: [`Tenants`] picks, for each request, the [`AuthClient`] of the
//! tenant it is for (by host name, a trusted proxy's header, or the app's own rule), among
//! tenants configured up front or loaded by the app's loader when first asked for (kept in a
//! bounded cache).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::{HeaderMap, HeaderName, Uri};

use crate::client::AuthClient;
use crate::config::ConfigError;

/// The app's own rule: the tenant id (one of the configured [`AuthConfig::tenant`]s) a request
/// is for, from its headers and URI.
///
/// [`AuthConfig::tenant`]: crate::AuthConfig::tenant
type Pick = Arc<dyn Fn(&HeaderMap, &Uri) -> Option<String> + Send + Sync>;

/// What the app's loader gives for a key: the tenant's client, none, or why it could not say.
type LoadFuture = Pin<Box<dyn Future<Output = Result<Option<AuthClient>, crate::error::Cause>> + Send>>;
type Load = Arc<dyn Fn(String) -> LoadFuture + Send + Sync>;

/// The tenants of a multi-tenant app, each an [`AuthClient`] of its own (its provider, client,
/// base URL, stores), and how a request finds its tenant. Given to [`AuthLayer::tenants`](crate::AuthLayer::tenants).
///
/// Each tenant's configuration names it ([`AuthConfigBuilder::tenant`](crate::AuthConfigBuilder::tenant)): its secrets are then
/// derived for it alone, so a session or login of one tenant never opens on another, even where
/// they share a database, and its callback requires the provider's `iss` (RFC 9207). Providers
/// are discovered when their clients are built, so metadata and keys are fetched only from the
/// issuers configured here: never from one a request or a token names.
///
/// A request's tenant is its host (the `Host` header, or the URI's authority in HTTP/2), as the
/// browser sends it, port included; or the header a trusted proxy sets
/// ([`host_header`](Self::host_header)); or the app's rule ([`pick_with`](Self::pick_with)). A
/// request that matches no tenant gets 400, or the [`fallback`](Self::fallback) tenant when the
/// app set one: never a tenant chosen by accident. Back-channel logouts go to the tenant whose
/// issuer the logout token names (among the configured ones), whichever host they reach.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// use auth_layer::{AuthClient, AuthConfig, AuthLayer, Tenants};
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
/// let layer = AuthLayer::tenants(tenants)?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Tenants {
    clients: Vec<AuthClient>,
    by_host: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    fallback: Option<usize>,
    host_header: Option<HeaderName>,
    pick: Option<Pick>,
    loaded: Option<Arc<Loaded>>,
}

/// Tenants the app's loader gave, by key (a host, or the app's rule's id), and the loads under
/// way (one per key at a time).
struct Loaded {
    load: Load,
    cache: moka::sync::Cache<String, Option<AuthClient>>,
    loading: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Option<AuthClient>>>>>,
}

/// How long a loaded tenant is kept: its client, and with it its provider's metadata and keys.
struct KeepFor {
    tenant: Duration,
    none: Duration,
}

impl moka::Expiry<String, Option<AuthClient>> for KeepFor {
    fn expire_after_create(&self, _: &String, value: &Option<AuthClient>, _: Instant) -> Option<Duration> {
        Some(if value.is_some() { self.tenant } else { self.none })
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
}

/// How many loaded keys are kept by default ([`Tenants::keep_loaded`]).
const KEEP_LOADED: u64 = 1_000;
/// How long a loaded tenant is kept by default: its provider's metadata and keys are fetched
/// again after that (a key rotation is picked up sooner, by its client's refetch).
const KEEP_TENANT: Duration = Duration::from_secs(3600);
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
            .field("loaded", &self.loaded.as_ref().map(|loaded| loaded.cache.entry_count()))
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

    /// Reads the host from `header` (e.g. `x-forwarded-host`) instead of `Host`: only when a
    /// proxy the app trusts sets it on every request and drops the client's own, since anyone
    /// can send it.
    pub fn host_header(mut self, header: HeaderName) -> Self {
        self.host_header = Some(header);
        self
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
    /// Configured tenants are found first. A loaded tenant is kept for an hour, a key that is no
    /// tenant for a minute, at most 1,000 keys, least recently used first out (see
    /// [`keep_loaded`](Self::keep_loaded)); a key is loaded once at a time, whatever the number
    /// of requests waiting for it; [`forget`](Self::forget) drops one at once (a tenant changed
    /// its provider, or was added). Providers are discovered only when the loader builds their
    /// clients: never for an issuer a request or a token names.
    ///
    /// A session records its tenant and its provider: once a tenant moves to another provider,
    /// the sessions and logins of the old one are no longer accepted there.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use auth_layer::{AuthClient, AuthConfig, AuthLayer, Tenants};
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
    /// let layer = AuthLayer::tenants(tenants.clone())?;
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

    /// Drops what the loader gave for `key`: the next request for it loads it again.
    ///
    /// In this process only: behind a load balancer, each instance keeps what it loaded until
    /// it calls `forget` too (from the app's own notice that the tenant changed) or until the
    /// tenant's time is up (`keep_loaded`, an hour by default).
    pub fn forget(&self, key: &str) {
        if let Some(loaded) = &self.loaded {
            loaded.cache.invalidate(&key.to_ascii_lowercase());
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
    pub(crate) fn resolve(&self, headers: &HeaderMap, uri: &Uri) -> Resolved {
        let (found, key) = match &self.pick {
            Some(pick) => match pick(headers, uri) {
                Some(id) => (self.by_id.get(&id).copied(), Some(id)),
                None => (None, None),
            },
            None => match self.host(headers, uri) {
                Some(host) => (self.by_host_name(host), Some(host.trim().to_ascii_lowercase())),
                None => (None, None),
            },
        };
        if let Some(index) = found {
            return Resolved::Client(self.clients[index].clone());
        }
        if let (Some(loaded), Some(key)) = (&self.loaded, key)
            && key.len() <= MAX_KEY
        {
            return match loaded.cache.get(&key) {
                Some(Some(client)) => Resolved::Client(client),
                Some(None) => self.or_fallback(),
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

    /// Asks the loader for `key`'s tenant (once, however many ask at the same time) and keeps
    /// the answer. An error is not kept: the next request asks again.
    pub(crate) async fn load(&self, key: String) -> Result<Option<AuthClient>, crate::error::Cause> {
        let Some(loaded) = &self.loaded else { return Ok(None) };
        let cell = loaded.loading.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
        let answer = cell
            .get_or_try_init(|| async {
                if let Some(kept) = loaded.cache.get(&key) {
                    return Ok(kept);
                }
                let client = (loaded.load)(key.clone()).await?;
                if let Some(client) = &client
                    && client.config().tenant().is_none()
                {
                    return Err(crate::error::Cause::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                        "the loader gave a client of {} that names no tenant: set AuthConfigBuilder::tenant, so that its secrets are its own",
                        client.config().issuer()
                    ))));
                }
                loaded.cache.insert(key.clone(), client.clone());
                tracing::info!(?key, tenant = ?client.as_ref().and_then(|c| c.config().tenant()), "tenant loaded");
                Ok(client)
            })
            .await
            .cloned();
        let mut loading = loaded.loading.lock().unwrap_or_else(|e| e.into_inner());
        if loading.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            loading.remove(&key);
        }
        answer
    }

    /// The client of the configured tenant whose provider is `issuer`.
    pub(crate) fn by_issuer(&self, issuer: &str) -> Option<&AuthClient> {
        self.clients.iter().find(|client| client.issuer() == issuer)
    }

    fn host<'r>(&self, headers: &'r HeaderMap, uri: &'r Uri) -> Option<&'r str> {
        match &self.host_header {
            Some(header) => headers.get(header).and_then(|v| v.to_str().ok()),
            None => uri.authority().map(|a| a.as_str()).or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok())),
        }
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
            // Least recently used out: a tenant in use is never refused a place by a flood of
            // hosts that are none (moka's default admission would weigh them by frequency).
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(KeepFor { tenant, none })
                .build(),
            loading: Mutex::default(),
        }
    }
}

/// The `iss` a back-channel logout request's token claims, read without checking anything:
/// only to pick, among the configured tenants, the one whose client then checks the token.
pub(crate) fn logout_token_issuer(body: &[u8]) -> Option<String> {
    use base64::Engine;
    let token = url::form_urlencoded::parse(body).find(|(name, _)| name == "logout_token")?.1;
    let payload = token.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        match tenants.resolve(&host(name), &Uri::from_static("/")) {
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
        tenants.loaded.as_ref().unwrap().cache.run_pending_tasks();
        assert!(tenants.loaded.as_ref().unwrap().cache.entry_count() <= 2, "at most 2 keys kept");
        assert_eq!(key(&tenants, "one.example").as_deref(), Some("one.example"), "the least recent is out");
        assert!(key(&tenants, "three.example").is_none(), "the latest is kept: answered without a load");
        std::thread::sleep(Duration::from_millis(400));
        assert!(key(&tenants, "three.example").is_some(), "a key that is no tenant is remembered only so long");
        assert_eq!(asked.lock().unwrap().values().sum::<u64>(), 3);
    }

    #[test]
    fn by_default_1000_keys_a_tenant_for_an_hour_and_none_for_a_minute() {
        use moka::Expiry;
        let (tenants, _) = loader();
        let loaded = tenants.loaded.as_ref().unwrap();
        assert_eq!(loaded.cache.policy().max_capacity(), Some(1_000));
        let keep = KeepFor { tenant: KEEP_TENANT, none: KEEP_NONE };
        assert_eq!(keep.expire_after_create(&"x".into(), &None, Instant::now()), Some(Duration::from_secs(60)));
        assert_eq!(KEEP_TENANT, Duration::from_secs(3600));
    }

    #[tokio::test]
    async fn a_failed_load_is_not_kept_and_keys_are_lowercased_and_bounded() {
        let (tenants, asked) = loader();
        assert_eq!(key(&tenants, "Down.Example").as_deref(), Some("down.example"));
        assert!(tenants.load("down.example".into()).await.is_err());
        assert!(tenants.load("down.example".into()).await.is_err());
        assert_eq!(asked.lock().unwrap()["down.example"], 2, "an error is asked again, never kept as none");
        assert!(key(&tenants, &format!("{}.example", "a".repeat(300))).is_none(), "a key too long is no tenant");
        tenants.load("gone.example".into()).await.unwrap();
        assert!(key(&tenants, "gone.example").is_none());
        tenants.forget("GONE.example");
        assert!(key(&tenants, "gone.example").is_some(), "forgotten: loaded again");
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
        let service = crate::AuthLayer::tenants(tenants).unwrap().layer(app);
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
