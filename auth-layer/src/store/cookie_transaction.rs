//! The stateless transaction store: one sealed cookie per login attempt, named by its `state`.

use async_trait::async_trait;

use super::{StoreContext, StoreError, TransactionStore, auth_cookie, removal_cookie};
use crate::config::AuthConfig;
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

    fn cookie_name(&self, state: &str) -> String {
        format!("{}.{state}", self.config.cookies.transaction_name)
    }
}

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
        let name = self.cookie_name(&data.state);
        let plain = serde_json::to_vec(data).map_err(|e| StoreError::encode("transaction", e))?;
        let sealed = self.sealer.seal(&name, &plain);
        let ttl = self.config.transaction_duration.as_secs();
        ctx.push_cookie(auth_cookie(&self.config, name, sealed, &self.config.route_prefix, ttl));
        Ok(())
    }

    async fn delete(&self, ctx: &mut StoreContext, state: &str) -> Result<(), StoreError> {
        ctx.push_cookie(removal_cookie(&self.config, self.cookie_name(state), &self.config.route_prefix));
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
            created_at: 1_000,
        }
    }

    use crate::store::browser_round_trip as returned;

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
}
