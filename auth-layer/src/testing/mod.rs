//! The conformance kit (feature `testing`): the rules a [`Backend`](crate::backend::Backend) or a
//! [`SessionStore`](crate::store::SessionStore) of your own must keep, as two functions to call
//! from your tests. auth-layer runs the same two on its own backends (moka, Redis, Redis Cluster,
//! PostgreSQL) and stores (cookie, server-side), so the kit and the built-in stores cannot drift.
//!
//! ```no_run
//! # use auth_layer::backend::MokaBackend as MyBackend;
//! use auth_layer::store::ServerSessionStore;
//! use auth_layer::testing::{check_backend, check_session_store};
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn my_backend_keeps_every_rule() {
//!     // Every call returns a handle on the same data (a new connection to the same database).
//!     let database = MyBackend::new();
//!     check_backend(|| async { database.clone() }).await.unwrap();
//!     // And the session store the app will run on it:
//!     check_session_store(|config| {
//!         let database = database.clone();
//!         async move { ServerSessionStore::new(database, &config) }
//!     })
//!     .await
//!     .unwrap();
//! }
//! ```
//!
//! Each rule runs on a fresh value from the factory, under keys of its own (a random prefix), so
//! the kit can run against a database that holds other data, and several runs can share one
//! server. A rule that fails, errs or hangs (60 s) is reported by name with what it saw; the
//! others still run. The rules, with why each matters, are listed on [`BACKEND_RULES`],
//! [`SESSION_STORE_RULES`] and [`TRANSACTION_STORE_RULES`] ([`check_transaction_store`], for
//! the rare app that replaces the transaction cookie). Run the kit on a multi-threaded runtime, so its concurrent
//! rules race for real. It takes a few seconds: expiry is checked with real time.

mod backend;
mod mint;
#[cfg(feature = "axum")]
mod provider;
mod session_store;
mod transaction_store;

pub use backend::{BACKEND_RULES, check_backend};
pub use mint::TestSession;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use provider::{TEST_CLIENT_ID, TEST_CLIENT_SECRET, TestLoginError, TestProvider};
pub use session_store::{SESSION_STORE_RULES, check_session_store};
pub use transaction_store::{TRANSACTION_STORE_RULES, check_transaction_store};

use std::future::Future;
use std::time::Duration;

/// How long one rule may take before it is reported as hanging.
const RULE_TIMEOUT: Duration = Duration::from_secs(60);

/// One rule of a contract: its name (as failures report it), what it asks and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The rule's name, as [`Failure::rule`] reports it.
    pub name: &'static str,
    /// What an implementation must do, and why.
    pub rule: &'static str,
}

/// A rule an implementation broke, and what the kit saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The broken rule's name (one of [`BACKEND_RULES`] or [`SESSION_STORE_RULES`]).
    pub rule: &'static str,
    /// What happened, in the kit's words.
    pub message: String,
}

/// Every rule an implementation broke; `Display` (and so `unwrap`) lists them with the rules'
/// text.
///
/// ```
/// use auth_layer::backend::MokaBackend;
/// use auth_layer::testing::check_backend;
///
/// # async fn demo() {
/// // Every call hands out the same data, as each process of the app would open it.
/// let database = MokaBackend::new();
/// match check_backend(|| {
///     let handle = database.clone();
///     async move { handle }
/// })
/// .await
/// {
///     Ok(()) => {}
///     // Each broken rule by name, with what the kit saw and why the rule exists.
///     Err(failures) => panic!("{failures}"),
/// }
/// # }
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(demo());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Failures {
    /// The failures, in the order the rules ran.
    pub failures: Vec<Failure>,
    rules: &'static [Rule],
}

impl Failures {
    /// Whether `rule` is among the broken ones.
    pub fn broke(&self, rule: &str) -> bool {
        self.failures.iter().any(|f| f.rule == rule)
    }
}

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} rule(s) broken:", self.failures.len())?;
        for failure in &self.failures {
            writeln!(f, "\n- `{}`: {}", failure.rule, failure.message)?;
            if let Some(rule) = self.rules.iter().find(|r| r.name == failure.rule) {
                writeln!(f, "  the rule: {}", rule.rule)?;
            }
        }
        Ok(())
    }
}

// `unwrap` prints `Debug`: the same readable list.
impl std::fmt::Debug for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Failures {}

/// What a rule's body returns: `Err` with what it saw.
type Outcome = Result<(), String>;

/// Fails the rule with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}
pub(crate) use ensure;

/// Turns an implementation's error into the rule's failure, naming the call that erred.
trait OrFail<T> {
    fn or_fail(self, call: &str) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, call: &str) -> Result<T, String> {
        self.map_err(|e| format!("`{call}` returned an error: {e}"))
    }
}

/// Runs rules in order and collects the failures of those that break, err, panic or hang.
struct Runner {
    rules: &'static [Rule],
    failures: Vec<Failure>,
}

impl Runner {
    fn new(rules: &'static [Rule]) -> Self {
        Self { rules, failures: Vec::new() }
    }

    async fn run(&mut self, rule: &'static str, body: impl Future<Output = Outcome> + Send + 'static) {
        debug_assert!(self.rules.iter().any(|r| r.name == rule), "rule `{rule}` is listed");
        // Spawned, so that a panic in the implementation is a failure of this rule only.
        let outcome = match tokio::time::timeout(RULE_TIMEOUT, tokio::spawn(body)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => Err(format!("panicked: {}", panic_message(join))),
            Err(_) => Err(format!("did not finish within {} s (a call that never returns?)", RULE_TIMEOUT.as_secs())),
        };
        if let Err(message) = outcome {
            tracing::warn!(rule, %message, "conformance rule broken");
            self.failures.push(Failure { rule, message });
        }
    }

    fn finish(self) -> Result<(), Failures> {
        if self.failures.is_empty() { Ok(()) } else { Err(Failures { failures: self.failures, rules: self.rules }) }
    }
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".into()),
        Err(join) => join.to_string(),
    }
}

/// A prefix of 16 random hex digits: keys of one rule's run, apart from everything else.
fn fresh_prefix() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("kit:{hex}:")
}

/// Waits for `spawned` tasks, a panic in one being the rule's failure.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Result<Vec<T>, String> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.map_err(|e| format!("a concurrent task panicked: {}", panic_message(e)))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    //! The kit on the in-memory backend and stores (Redis and PostgreSQL: `tests/e2e/backends.rs`
    //! and `tests/e2e/shared_stores.rs`), and on implementations broken on purpose: each must
    //! fail by the name of the rule it breaks.

    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::StoreError;
    use crate::backend::{Backend, MokaBackend};
    use crate::config::AuthConfig;
    use crate::model::SessionData;
    use crate::store::{CookieSessionStore, LogoutTarget, ServerSessionStore, SessionStore, StoreContext};

    /// A moka backend with one behaviour broken.
    #[derive(Clone)]
    struct Broken {
        inner: MokaBackend,
        flaw: Flaw,
        /// Every tag each key was ever put with (for `PutKeepsOldTags`).
        tags_ever: Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>,
        /// What `get` read, by key (for `ReadsLagWrites`).
        copies: Arc<std::sync::Mutex<std::collections::HashMap<String, Option<Bytes>>>>,
    }

    impl Broken {
        /// Drops the copy of `key` (of every key: `None`) a moment from now (for `ReadsLagWrites`).
        fn drop_copy_later(&self, key: Option<&str>) {
            if self.flaw != Flaw::ReadsLagWrites {
                return;
            }
            let (copies, key) = (self.copies.clone(), key.map(str::to_owned));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let mut copies = copies.lock().unwrap();
                match key {
                    Some(key) => drop(copies.remove(&key)),
                    None => copies.clear(),
                }
            });
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Flaw {
        /// `delete_by_tag` counts the tagged keys and deletes none.
        DeleteByTagLeavesRecords,
        /// `update` reads, then writes in a second step: a deletion in between is undone.
        UpdateChecksThenWrites,
        /// `put` adds the new tags to the old ones instead of replacing them.
        PutKeepsOldTags,
        /// Values stored as text (a `TEXT` column): bytes that are not UTF-8 are mangled.
        StoresText,
        /// Reads kept in a local copy that a write drops a moment after it returns, as a
        /// client-side cache whose invalidation arrives after the write's reply.
        ReadsLagWrites,
    }

    fn broken(flaw: Flaw) -> impl Fn() -> std::future::Ready<Broken> {
        move || {
            let inner = MokaBackend::new();
            std::future::ready(Broken { inner, flaw, tags_ever: Arc::default(), copies: Arc::default() })
        }
    }

    #[async_trait]
    impl Backend for Broken {
        async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
            if self.flaw != Flaw::ReadsLagWrites {
                return self.inner.get(key).await;
            }
            if let Some(copy) = self.copies.lock().unwrap().get(key) {
                return Ok(copy.clone());
            }
            let value = self.inner.get(key).await?;
            self.copies.lock().unwrap().insert(key.to_owned(), value.clone());
            Ok(value)
        }
        async fn put(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
            mut tags: Vec<String>,
        ) -> Result<(), StoreError> {
            let value = match self.flaw {
                Flaw::StoresText => Bytes::from(String::from_utf8_lossy(&value).into_owned()),
                _ => value,
            };
            if self.flaw == Flaw::PutKeepsOldTags {
                let mut ever = self.tags_ever.lock().unwrap();
                let kept = ever.entry(key.to_owned()).or_default();
                for tag in kept.iter() {
                    if !tags.contains(tag) {
                        tags.push(tag.clone());
                    }
                }
                kept.clone_from(&tags);
            }
            self.inner.put(key, value, ttl, tags).await?;
            self.drop_copy_later(Some(key));
            Ok(())
        }
        async fn update(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
            tags: Vec<String>,
        ) -> Result<bool, StoreError> {
            if self.flaw != Flaw::UpdateChecksThenWrites {
                let updated = self.inner.update(key, value, ttl, tags).await?;
                self.drop_copy_later(Some(key));
                return Ok(updated);
            }
            if self.inner.get(key).await?.is_none() {
                return Ok(false);
            }
            tokio::task::yield_now().await;
            self.inner.put(key, value, ttl, tags).await?;
            Ok(true)
        }
        async fn insert(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<Duration>,
            tags: Vec<String>,
        ) -> Result<bool, StoreError> {
            let inserted = self.inner.insert(key, value, ttl, tags).await?;
            self.drop_copy_later(Some(key));
            Ok(inserted)
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.inner.delete(key).await?;
            self.drop_copy_later(Some(key));
            Ok(())
        }
        async fn delete_by_tag(&self, tag: &str) -> Result<u64, StoreError> {
            if self.flaw == Flaw::DeleteByTagLeavesRecords {
                return Ok(self.inner.keys_by_tag(tag).await?.len() as u64);
            }
            let deleted = self.inner.delete_by_tag(tag).await?;
            self.drop_copy_later(None);
            Ok(deleted)
        }
        async fn keys_by_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
            self.inner.keys_by_tag(tag).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_memory_backend_keeps_every_rule() {
        check_backend(|| async { MokaBackend::new() }).await.unwrap();
    }

    async fn broken_rules(flaw: Flaw) -> Failures {
        check_backend(broken(flaw)).await.expect_err("a broken backend fails the kit")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_by_tag_that_leaves_records_fails_by_that_rule_s_name() {
        let failures = broken_rules(Flaw::DeleteByTagLeavesRecords).await;
        assert!(failures.broke("delete_by_tag_removes_exactly_the_tagged_keys"), "{failures}");
        let report = failures.to_string();
        assert!(report.contains("`delete_by_tag_removes_exactly_the_tagged_keys`: k0 is present"), "{report}");
        assert!(report.contains("how a back-channel logout ends the sessions"), "the rule's reason is given: {report}");
        assert!(!failures.broke("insert_has_one_winner"), "only the broken rules are reported: {failures}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_that_checks_then_writes_fails_the_race_rule() {
        let failures = broken_rules(Flaw::UpdateChecksThenWrites).await;
        assert!(failures.broke("deleted_keys_stay_deleted_under_racing_updates"), "{failures}");
        assert!(!failures.broke("update_never_creates_a_key"), "without a race it behaves: {failures}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_put_that_keeps_old_tags_fails_the_replace_rule() {
        let failures = broken_rules(Flaw::PutKeepsOldTags).await;
        assert!(failures.broke("put_replaces_value_ttl_and_tags"), "{failures}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backend_that_stores_text_fails_the_byte_rules() {
        let failures = broken_rules(Flaw::StoresText).await;
        assert!(failures.broke("get_returns_what_put_stored"), "{failures}");
        assert!(failures.broke("sealed_records_stay_sealed"), "{failures}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_cache_dropped_after_the_write_returns_fails_the_read_after_write_rule() {
        let failures = broken_rules(Flaw::ReadsLagWrites).await;
        assert!(failures.broke("a_read_right_after_a_write_sees_it"), "{failures}");
        let report = failures.to_string();
        assert!(report.contains("round 0: right after update, get returned \"put 0\""), "{report}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cookie_store_keeps_every_session_store_rule() {
        // One process: every "instance" is this one store.
        let store = std::sync::OnceLock::<Arc<CookieSessionStore>>::new();
        check_session_store(|config| {
            let store = store.get_or_init(|| Arc::new(CookieSessionStore::new(&config))).clone();
            async move { store }
        })
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cookie_transaction_store_keeps_every_transaction_store_rule() {
        check_transaction_store(|config| async move { crate::store::CookieTransactionStore::new(&config) })
            .await
            .unwrap();
    }

    /// A transaction store of one slot for everyone: Auth0's fixed transaction cookie, and worse.
    struct OneSlot(std::sync::Mutex<Option<crate::model::TransactionData>>);

    #[async_trait]
    impl crate::store::TransactionStore for OneSlot {
        async fn get(
            &self,
            _: &mut StoreContext,
            state: &str,
        ) -> Result<Option<crate::model::TransactionData>, StoreError> {
            Ok(self.0.lock().unwrap().clone().filter(|tx| tx.state == state))
        }
        async fn set(&self, _: &mut StoreContext, data: &crate::model::TransactionData) -> Result<(), StoreError> {
            *self.0.lock().unwrap() = Some(data.clone());
            Ok(())
        }
        async fn delete(&self, _: &mut StoreContext, _: &str) -> Result<(), StoreError> {
            *self.0.lock().unwrap() = None;
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_single_shared_transaction_slot_fails_the_browser_and_tab_rules() {
        let failures = check_transaction_store(|_| async { OneSlot(Default::default()) }).await.unwrap_err();
        assert!(failures.broke("another_browser_finds_nothing"), "{failures}");
        assert!(failures.broke("two_logins_at_once_both_complete"), "{failures}");
        assert!(!failures.broke("a_saved_transaction_reads_back_whole"), "{failures}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_store_in_memory_and_over_a_backend_keeps_every_session_store_rule() {
        let store = std::sync::OnceLock::<Arc<ServerSessionStore>>::new();
        check_session_store(|config| {
            let store = store.get_or_init(|| Arc::new(ServerSessionStore::in_memory(&config))).clone();
            async move { store }
        })
        .await
        .unwrap();
        let database = MokaBackend::new();
        check_session_store(|config| {
            let database = database.clone();
            async move { ServerSessionStore::new(database, &config) }
        })
        .await
        .unwrap();
    }

    /// A session store with one behaviour broken, over the server store.
    struct BrokenStore {
        inner: ServerSessionStore,
        flaw: StoreFlaw,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum StoreFlaw {
        /// A logout by `sid` ends every session of the user.
        SidLogoutEndsTheUser,
        /// `update` saves as a new login does, whatever happened since the read.
        UpdateWritesBlindly,
    }

    #[async_trait]
    impl SessionStore for BrokenStore {
        async fn get(&self, ctx: &mut StoreContext) -> Result<Option<Arc<SessionData>>, StoreError> {
            self.inner.get(ctx).await
        }
        async fn set(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<(), StoreError> {
            self.inner.set(ctx, data).await
        }
        async fn update(&self, ctx: &mut StoreContext, data: &SessionData) -> Result<bool, StoreError> {
            if self.flaw == StoreFlaw::UpdateWritesBlindly {
                self.inner.sessions().set(data).await?;
                return Ok(true);
            }
            self.inner.update(ctx, data).await
        }
        async fn delete(&self, ctx: &mut StoreContext) -> Result<(), StoreError> {
            self.inner.delete(ctx).await
        }
        async fn delete_by_logout_token(&self, target: &LogoutTarget) -> Result<(), StoreError> {
            if self.flaw == StoreFlaw::SidLogoutEndsTheUser && target.sid.is_some() {
                let sub =
                    self.inner.sessions().find_by(SessionData::SID, target.sid.as_deref().unwrap_or_default()).await?;
                for session in sub {
                    let everyone = LogoutTarget { sub: Some(session.sub().to_owned()), sid: None, ..target.clone() };
                    self.inner.delete_by_logout_token(&everyone).await?;
                }
                return Ok(());
            }
            self.inner.delete_by_logout_token(target).await
        }
    }

    async fn broken_store_rules(flaw: StoreFlaw) -> Failures {
        let database = MokaBackend::new();
        check_session_store(|config: AuthConfig| {
            let database = database.clone();
            async move { BrokenStore { inner: ServerSessionStore::new(database, &config), flaw } }
        })
        .await
        .expect_err("a broken store fails the kit")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sid_logout_that_ends_the_whole_user_fails_by_that_rule_s_name() {
        let failures = broken_store_rules(StoreFlaw::SidLogoutEndsTheUser).await;
        assert!(failures.broke("logout_by_sid_ends_only_that_session"), "{failures}");
        assert!(!failures.broke("logout_by_sub_ends_every_session_of_the_user"), "{failures}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_update_that_writes_blindly_fails_the_logout_rules() {
        let failures = broken_store_rules(StoreFlaw::UpdateWritesBlindly).await;
        assert!(failures.broke("a_save_after_a_logout_does_not_bring_it_back"), "{failures}");
        assert!(failures.broke("delete_ends_the_session_and_every_copy"), "{failures}");
    }
}
