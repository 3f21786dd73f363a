//! The [`TransactionStore`] rules, and [`check_transaction_store`], which checks them.

use std::future::Future;
use std::sync::Arc;

use super::session_store::{Browser, kit_config};
use super::{OrFail, Outcome, Rule, Runner, ensure};
use crate::config::AuthConfig;
use crate::model::TransactionData;
use crate::store::TransactionStore;

/// Every rule [`check_transaction_store`] checks, by name, with why it matters.
pub const TRANSACTION_STORE_RULES: &[Rule] = &[
    Rule {
        name: "a_saved_transaction_reads_back_whole",
        rule: "after `set`, the same browser's request finds the transaction by its `state`, every field \
               as saved: the callback checks the nonce and PKCE verifier the login sent.",
    },
    Rule {
        name: "another_browser_finds_nothing",
        rule: "a `state` is found only by the browser that started the login: an authorization response \
               replayed into another browser's callback finds no transaction (login CSRF).",
    },
    Rule {
        name: "two_logins_at_once_both_complete",
        rule: "two logins started in one browser (two tabs) are both found: one does not overwrite the \
               other.",
    },
    Rule {
        name: "a_used_transaction_is_gone",
        rule: "after `delete`, the transaction is not found again: one authorization response completes \
               one login.",
    },
    Rule {
        name: "unreadable_values_are_no_transaction",
        rule: "tampered or made-up cookie values, and unknown states, find nothing (`Ok(None)`), never an \
               error: the callback answers 400, not 500.",
    },
];

/// Checks every rule of [`TRANSACTION_STORE_RULES`] on stores from `make` (given the kit's
/// configuration); returns the rules broken, each with what the kit saw.
///
/// ```no_run
/// # async fn run() {
/// use auth_layer::store::CookieTransactionStore;
///
/// auth_layer::testing::check_transaction_store(|config| async move { CookieTransactionStore::new(&config) })
///     .await
///     .unwrap();
/// # }
/// ```
pub async fn check_transaction_store<S, F, Fut>(make: F) -> Result<(), super::Failures>
where
    S: TransactionStore,
    F: Fn(AuthConfig) -> Fut,
    Fut: Future<Output = S>,
{
    let config = kit_config();
    let mut runner = Runner::new(TRANSACTION_STORE_RULES);
    macro_rules! rule {
        ($name:ident) => {{
            let store = Arc::new(make(config.clone()).await);
            runner.run(stringify!($name), $name(store, config.clone())).await;
        }};
    }
    rule!(a_saved_transaction_reads_back_whole);
    rule!(another_browser_finds_nothing);
    rule!(two_logins_at_once_both_complete);
    rule!(a_used_transaction_is_gone);
    rule!(unreadable_values_are_no_transaction);
    runner.finish()
}

fn transaction(config: &AuthConfig, return_to: &str) -> TransactionData {
    TransactionData {
        state: crate::seal::random_token(32),
        nonce: crate::seal::random_token(32),
        code_verifier: crate::seal::random_token(32),
        return_to: return_to.into(),
        app_state: Some(serde_json::json!({"tab": return_to})),
        created_at: config.clock().now(),
        audience: Some("https://api.kit.invalid".into()),
        scope: "openid profile".into(),
        max_age: None,
        organization: None,
        essential_acr_values: None,
        step_up: false,
        silent: false,
        tenant: config.tenant().map(str::to_owned),
        issuer: config.tenant().map(|_| config.issuer().to_owned()),
        dpop_key: None,
        origin: None,
    }
}

/// Starts a login for `tx` in `browser`.
async fn start<S: TransactionStore>(store: &S, browser: &mut Browser, tx: &TransactionData) -> Outcome {
    let mut ctx = browser.request();
    store.set(&mut ctx, tx).await.or_fail("set")?;
    browser.receive(ctx);
    Ok(())
}

async fn find<S: TransactionStore>(
    store: &S,
    browser: &Browser,
    state: &str,
) -> Result<Option<TransactionData>, String> {
    store.get(&mut browser.request(), state).await.or_fail("get")
}

async fn a_saved_transaction_reads_back_whole<S: TransactionStore>(store: Arc<S>, config: AuthConfig) -> Outcome {
    let mut browser = Browser::default();
    let tx = transaction(&config, "/orders");
    start(&*store, &mut browser, &tx).await?;
    let found = find(&*store, &browser, &tx.state).await?;
    ensure!(found.as_ref() == Some(&tx), "the login's transaction read back as {found:?}, not {tx:?}");
    Ok(())
}

async fn another_browser_finds_nothing<S: TransactionStore>(store: Arc<S>, config: AuthConfig) -> Outcome {
    let (mut victim, mut attacker) = (Browser::default(), Browser::default());
    // The victim's own login first, the attacker's last: a store that keeps only the newest
    // transaction, for everyone, hands the attacker's to the victim.
    start(&*store, &mut victim, &transaction(&config, "/mine")).await?;
    let tx = transaction(&config, "/");
    start(&*store, &mut attacker, &tx).await?;
    let found = find(&*store, &victim, &tx.state).await?;
    ensure!(found.is_none(), "another browser's state was found in this browser's request: {found:?}");
    let found = find(&*store, &Browser::default(), &tx.state).await?;
    ensure!(found.is_none(), "a request without cookies found a transaction: {found:?}");
    Ok(())
}

async fn two_logins_at_once_both_complete<S: TransactionStore>(store: Arc<S>, config: AuthConfig) -> Outcome {
    let mut browser = Browser::default();
    let (first, second) = (transaction(&config, "/tab-1"), transaction(&config, "/tab-2"));
    start(&*store, &mut browser, &first).await?;
    start(&*store, &mut browser, &second).await?;
    for tx in [&first, &second] {
        let found = find(&*store, &browser, &tx.state).await?;
        ensure!(found.as_ref() == Some(tx), "of two logins in one browser, {} found {found:?}", tx.return_to);
    }
    Ok(())
}

async fn a_used_transaction_is_gone<S: TransactionStore>(store: Arc<S>, config: AuthConfig) -> Outcome {
    let mut browser = Browser::default();
    let (used, other) = (transaction(&config, "/used"), transaction(&config, "/other"));
    start(&*store, &mut browser, &used).await?;
    start(&*store, &mut browser, &other).await?;
    let mut ctx = browser.request();
    store.delete(&mut ctx, &used.state).await.or_fail("delete")?;
    browser.receive(ctx);
    ensure!(find(&*store, &browser, &used.state).await?.is_none(), "after delete, the transaction is found again");
    ensure!(find(&*store, &browser, &other.state).await?.is_some(), "deleting one transaction ended another login");
    Ok(())
}

async fn unreadable_values_are_no_transaction<S: TransactionStore>(store: Arc<S>, config: AuthConfig) -> Outcome {
    let mut browser = Browser::default();
    let tx = transaction(&config, "/");
    start(&*store, &mut browser, &tx).await?;
    let unknown = find(&*store, &browser, "an-unknown-state").await?;
    ensure!(unknown.is_none(), "an unknown state found {unknown:?}");
    for (name, value) in browser.cookies.clone() {
        let mut flipped: Vec<char> = value.chars().collect();
        if let Some(last) = flipped.last_mut() {
            *last = if *last == 'A' { 'B' } else { 'A' };
        }
        for bad in [String::new(), "x".into(), value[..value.len() / 2].to_owned(), flipped.into_iter().collect()] {
            let mut tampered = browser.clone();
            tampered.cookies.insert(name.clone(), bad.clone());
            match store.get(&mut tampered.request(), &tx.state).await {
                Ok(None) => {}
                Ok(Some(_)) => return Err(format!("cookie `{name}` = {bad:?} (tampered) found the transaction")),
                Err(err) => return Err(format!("cookie `{name}` = {bad:?} (tampered) made `get` fail: {err}")),
            }
        }
    }
    Ok(())
}
