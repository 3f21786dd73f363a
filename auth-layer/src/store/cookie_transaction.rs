//! The stateless transaction store: one sealed cookie per login attempt, named by its `state`.

use async_trait::async_trait;

use super::{StoreContext, StoreError, TransactionStore, auth_cookie};
use crate::config::{AuthConfig, ResponseMode};
use crate::model::TransactionData;
use crate::seal::Sealer;

/// Keeps each login attempt in its own short-lived cookie `{prefix}.{state}`, sealed with the
/// full cookie name as associated data, so parallel logins in several tabs don't overwrite each
/// other and a transaction cannot be replayed under another `state`.
#[derive(Debug, Clone)]
pub struct CookieTransactionStore {
    config: AuthConfig,
    sealer: Sealer,
}

impl CookieTransactionStore {
    /// A store sealing with a key derived from `config`'s secrets.
    pub fn new(config: &AuthConfig) -> Self {
        Self { sealer: Sealer::new(&config.secrets, "auth-layer transaction cookie v1"), config: config.clone() }
    }

    /// A transaction cookie: auth-layer's attributes, but `SameSite=None` when logins return as
    /// a form post on https (the post comes from the provider's site, where a `Lax` cookie is
    /// not sent; `None` needs `Secure`, so on plain http it stays as configured).
    fn cookie(&self, name: String, value: String, ttl: u64) -> cookie::Cookie<'static> {
        let mut cookie = auth_cookie(&self.config, name, value, &self.config.route_prefix, ttl);
        if self.config.response_mode == ResponseMode::FormPost && self.config.secure_cookies {
            cookie.set_same_site(cookie::SameSite::None);
        }
        cookie
    }

    fn cookie_name(&self, state: &str) -> String {
        format!("{}.{state}", self.config.cookies.transaction_name)
    }

    /// The request's transaction cookies, oldest first (browsers send cookies of one path in
    /// the order they were set).
    fn request_transactions(&self, ctx: &StoreContext) -> Vec<String> {
        let prefix = format!("{}.", self.config.cookies.transaction_name);
        ctx.request_cookie_names().filter(|n| n.starts_with(&prefix)).map(str::to_owned).collect()
    }
}

/// The most logins in flight one browser keeps: a new one past this drops the oldest. Each is a
/// cookie of up to ~1 KB sent with every request under the route prefix; without a bound, a page
/// could make a browser collect them (by navigations to `/auth/login`) until its requests are
/// refused as too large.
pub const MAX_TRANSACTIONS: usize = 4;

/// The most transaction cookies one response removes: a browser made to carry hundreds (by a
/// page that planted them) is cleaned over several responses, each of a bounded size.
const MAX_REMOVALS: usize = 16;

#[async_trait]
impl TransactionStore for CookieTransactionStore {
    async fn get(&self, ctx: &mut StoreContext, state: &str) -> Result<Option<TransactionData>, StoreError> {
        let name = self.cookie_name(state);
        let Some(sealed) = ctx.cookie(&name) else { return Ok(None) };
        let Some(plain) = self.sealer.open(&name, sealed) else {
            tracing::warn!("transaction cookie does not open; treated as absent");
            return Ok(None);
        };
        let data: TransactionData = match serde_json::from_slice(&plain) {
            Ok(data) => data,
            Err(err) => {
                tracing::warn!(%err, "transaction cookie does not decode; treated as absent");
                return Ok(None);
            }
        };
        let age = self.config.clock.now().saturating_sub(data.created_at);
        if data.state != state || age > self.config.transaction_duration.as_secs() {
            tracing::warn!(age, "transaction expired or mismatched; treated as absent");
            return Ok(None);
        }
        Ok(Some(data))
    }

    async fn set(&self, ctx: &mut StoreContext, data: &TransactionData) -> Result<(), StoreError> {
        let live = self.request_transactions(ctx);
        let excess = (live.len() + 1).saturating_sub(MAX_TRANSACTIONS);
        for oldest in live.iter().take(excess.min(MAX_REMOVALS)) {
            ctx.push_cookie(self.cookie(oldest.clone(), String::new(), 0));
        }
        let name = self.cookie_name(&data.state);
        let plain = serde_json::to_vec(data).map_err(|e| StoreError::encode("transaction", e))?;
        let sealed = self.sealer.seal(&name, &plain);
        let ttl = self.config.transaction_duration.as_secs();
        ctx.push_cookie(self.cookie(name, sealed, ttl));
        Ok(())
    }

    async fn delete(&self, ctx: &mut StoreContext, state: &str) -> Result<(), StoreError> {
        ctx.push_cookie(self.cookie(self.cookie_name(state), String::new(), 0));
        Ok(())
    }

    async fn delete_all(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
        for name in self.request_transactions(ctx).into_iter().take(MAX_REMOVALS) {
            ctx.push_cookie(self.cookie(name, String::new(), 0));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;
    use http::{HeaderMap, HeaderValue};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn store(now: Arc<AtomicU64>) -> CookieTransactionStore {
        CookieTransactionStore::new(&crate::config::test_config(now).build().unwrap())
    }

    fn tx(state: &str) -> TransactionData {
        TransactionData {
            state: state.into(),
            nonce: "n".into(),
            code_verifier: "v".into(),
            return_to: "/".into(),
            app_state: None,
            audience: None,
            scope: "openid".into(),
            max_age: None,
            organization: None,
            essential_acr_values: None,
            step_up: false,
            silent: false,
            created_at: 1_000,
            tenant: None,
            issuer: None,
            dpop_key: None,
            origin: None,
        }
    }

    use crate::store::browser_round_trip as returned;

    #[tokio::test]
    async fn a_form_post_login_on_https_gets_a_same_site_none_transaction_cookie_and_only_then() {
        let build = |base: &str, mode: ResponseMode| {
            let config = crate::config::test_config(Default::default()).base_url(base).response_mode(mode);
            CookieTransactionStore::new(&config.build().unwrap())
        };
        for (base, mode, same_site) in [
            ("https://app.example", ResponseMode::FormPost, "SameSite=None"),
            ("http://127.0.0.1:3000", ResponseMode::FormPost, "SameSite=Lax"),
            ("https://app.example", ResponseMode::Query, "SameSite=Lax"),
        ] {
            let store = build(base, mode);
            let mut ctx = StoreContext::default();
            store.set(&mut ctx, &tx("state-a")).await.unwrap();
            store.delete(&mut ctx, "state-b").await.unwrap();
            let (set, _) = returned(ctx);
            assert_eq!(set.len(), 2);
            for line in &set {
                assert!(line.contains(same_site), "{base} {mode:?}: {line}");
                assert_eq!(line.contains("Secure"), base.starts_with("https"), "{line}");
            }
        }
    }

    #[tokio::test]
    async fn parallel_logins_each_keep_their_own_transaction() {
        let now = Arc::new(AtomicU64::new(1_000));
        let store = store(now);
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &tx("state-a")).await.unwrap();
        store.set(&mut ctx, &tx("state-b")).await.unwrap();
        let (set, mut next) = returned(ctx);
        assert!(
            set[0].starts_with("_a0_tx.state-a=") && set[0].contains("Max-Age=600") && set[0].contains("Path=/auth")
        );
        assert_eq!(store.get(&mut next, "state-a").await.unwrap(), Some(tx("state-a")));
        assert_eq!(store.get(&mut next, "state-b").await.unwrap(), Some(tx("state-b")));
        assert_eq!(store.get(&mut next, "state-c").await.unwrap(), None);
    }

    #[tokio::test]
    async fn transaction_expires_after_its_duration() {
        let now = Arc::new(AtomicU64::new(1_000));
        let store = store(now.clone());
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &tx("s")).await.unwrap();
        let (_, mut next) = returned(ctx);
        now.store(1_000 + 601, Ordering::SeqCst);
        assert_eq!(store.get(&mut next, "s").await.unwrap(), None);
    }

    #[tokio::test]
    async fn transaction_cookie_renamed_to_another_state_does_not_open() {
        let store = store(Arc::new(AtomicU64::new(1_000)));
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &tx("real")).await.unwrap();
        let (set, _) = returned(ctx);
        let value = set[0].split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(&format!("_a0_tx.forged={value}")).unwrap());
        assert_eq!(store.get(&mut StoreContext::from_headers(&request), "forged").await.unwrap(), None);
    }

    #[tokio::test]
    async fn deleted_transaction_is_gone() {
        let store = store(Arc::new(AtomicU64::new(1_000)));
        let mut ctx = StoreContext::default();
        store.set(&mut ctx, &tx("s")).await.unwrap();
        let (_, mut next) = returned(ctx);
        store.delete(&mut next, "s").await.unwrap();
        assert_eq!(store.get(&mut next, "s").await.unwrap(), None);
    }

    /// What a browser holding `states` (oldest first) and `_a0_session` sends to `/auth/...`.
    fn browser_with(store: &CookieTransactionStore, states: &[String]) -> StoreContext {
        let mut pairs = Vec::new();
        for state in states {
            let mut one = StoreContext::default();
            block_on(store.set(&mut one, &tx(state))).unwrap();
            let (set, _) = returned(one);
            pairs.push(set.last().unwrap().split(';').next().unwrap().to_owned());
        }
        pairs.push("_a0_session=s".into());
        let mut request = HeaderMap::new();
        request.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        StoreContext::from_headers(&request)
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    fn removed(set: &[String]) -> Vec<String> {
        set.iter()
            .filter(|line| line.contains("Max-Age=0"))
            .map(|line| line.split('=').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_new_login_drops_the_oldest_attempts_past_the_bound() {
        let store = store(Arc::new(AtomicU64::new(1_000)));
        let states: Vec<String> = (0..20).map(|i| format!("planted{i:02}")).collect();
        let mut ctx = browser_with(&store, &states);
        block_on(store.set(&mut ctx, &tx("newest"))).unwrap();
        let (set, _) = returned(ctx);
        let dropped = removed(&set);
        let excess = 20 - (MAX_TRANSACTIONS - 1);
        assert!(excess > MAX_REMOVALS, "the bound on removals per response is exercised");
        let expected: Vec<String> = states[..excess.min(MAX_REMOVALS)].iter().map(|s| format!("_a0_tx.{s}")).collect();
        assert_eq!(dropped, expected, "the oldest go, {MAX_REMOVALS} at most per response");

        let states: Vec<String> = (0..10).map(|i| format!("tab{i:02}")).collect();
        let mut ctx = browser_with(&store, &states);
        block_on(store.set(&mut ctx, &tx("newest"))).unwrap();
        let expected: Vec<String> =
            states[..10 - (MAX_TRANSACTIONS - 1)].iter().map(|s| format!("_a0_tx.{s}")).collect();
        assert_eq!(
            removed(&returned(ctx).0),
            expected,
            "below that bound, exactly the newest {} stay",
            MAX_TRANSACTIONS - 1
        );
        assert!(set.iter().any(|line| line.starts_with("_a0_tx.newest=") && !line.contains("Max-Age=0")));

        let few: Vec<String> = (0..MAX_TRANSACTIONS - 1).map(|i| format!("tab{i}")).collect();
        let mut ctx = browser_with(&store, &few);
        block_on(store.set(&mut ctx, &tx("another-tab"))).unwrap();
        assert!(removed(&returned(ctx).0).is_empty(), "parallel logins within the bound are kept");
    }

    #[test]
    fn every_attempt_is_cleared_and_the_session_cookie_left_alone() {
        let store = store(Arc::new(AtomicU64::new(1_000)));
        let states: Vec<String> = (0..3).map(|i| format!("s{i}")).collect();
        let mut ctx = browser_with(&store, &states);
        block_on(store.delete_all(&mut ctx)).unwrap();
        let (set, _) = returned(ctx);
        assert_eq!(removed(&set), ["_a0_tx.s0", "_a0_tx.s1", "_a0_tx.s2"]);
    }
}
