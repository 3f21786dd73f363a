//! RP-initiated logout's `state` round trip ([`AuthConfigBuilder::logout_state`]): at logout, a
//! fresh `state` and the page to land on, sealed in a short-lived cookie under the route prefix;
//! when the provider sends the browser back to `{prefix}/logout/callback`, that page only if the
//! provider returned the same `state`.
//!
//! The local logout is complete before the browser leaves for the provider, so a return with a
//! missing or different `state` (a forged link, a stale tab, a provider that drops it) changes
//! nothing but where the browser lands: the app's root instead of the page the logout named.
//!
//! [`AuthConfigBuilder::logout_state`]: crate::AuthConfigBuilder::logout_state

use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::AuthConfig;
use crate::seal::Sealer;
use crate::store::StoreContext;

/// What the logout cookie holds.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    return_to: String,
    at: u64,
}

const PURPOSE: &str = "auth-layer logout state v1";

/// The cookie holding a logout in flight: `{session cookie}_logout`.
fn cookie_name(config: &AuthConfig) -> String {
    format!("{}_logout", config.cookies.session_name)
}

/// Starts the round trip: a fresh `state` for the end-session request, kept with `return_to`
/// (already validated) in the logout cookie set on `ctx`.
pub(crate) fn begin(config: &AuthConfig, ctx: &mut StoreContext, return_to: &str) -> String {
    let state = crate::seal::random_token(32);
    let pending = Pending { state: state.clone(), return_to: return_to.to_owned(), at: config.clock.now() };
    let name = cookie_name(config);
    let plain = serde_json::to_vec(&pending).expect("a logout state serializes");
    let sealed = Sealer::new(&config.secrets, PURPOSE).seal(&name, &plain);
    let ttl = config.transaction_duration.as_secs();
    ctx.push_cookie(crate::store::auth_cookie(config, name, sealed, &config.route_prefix, ttl));
    state
}

/// Ends the round trip for the provider's return (`query`): where to send the browser. The
/// logout cookie is removed whatever the outcome.
pub(crate) fn finish(config: &AuthConfig, ctx: &mut StoreContext, query: &str) -> Url {
    let name = cookie_name(config);
    let pending = ctx
        .cookie(&name)
        .and_then(|sealed| Sealer::new(&config.secrets, PURPOSE).open(&name, sealed))
        .and_then(|plain| serde_json::from_slice::<Pending>(&plain).ok())
        .filter(|p| config.clock.now().saturating_sub(p.at) <= config.transaction_duration.as_secs());
    if ctx.cookie(&name).is_some() {
        ctx.push_cookie(crate::store::removal_cookie(config, name, &config.route_prefix));
    }
    let mut returned = url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "state").map(|(_, v)| v);
    let returned = match (returned.next(), returned.next()) {
        (Some(state), None) => Some(state),
        _ => None,
    };
    match (pending, returned) {
        (Some(pending), Some(state)) if pending.state == state => config.app_url_at(ctx.origin, &pending.return_to),
        (pending, returned) => {
            let why = match (&pending, &returned) {
                (None, _) => "no logout in flight in this browser (or it expired)",
                (Some(_), None) => "the provider returned no state",
                (Some(_), Some(_)) => "the provider returned another state",
            };
            tracing::warn!(code = "logout_state_mismatch", why, "logout return not matched; landing on the app's root");
            config.app_url_at(ctx.origin, "/")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::browser_round_trip;

    fn config() -> AuthConfig {
        crate::config::test_config(Default::default()).logout_state(true).build().unwrap()
    }

    #[test]
    fn the_page_the_logout_named_is_reached_only_with_the_state_it_sent() {
        let config = config();
        let mut ctx = StoreContext::default();
        let state = begin(&config, &mut ctx, "/goodbye?x=1");
        let (set, _) = browser_round_trip(ctx);
        assert!(set[0].contains("HttpOnly") && set[0].contains("Path=/auth"), "{set:?}");
        let cookie = http::HeaderValue::from_str(set[0].split(';').next().unwrap()).unwrap();
        let browser = || StoreContext::from_cookie_headers([&cookie]);

        let mut same = browser();
        let url = finish(&config, &mut same, &format!("state={state}"));
        assert_eq!(url.as_str(), "https://app.example/goodbye?x=1");
        let (removed, _) = browser_round_trip(same);
        assert!(removed.iter().any(|c| c.contains("Max-Age=0")), "the cookie goes: {removed:?}");

        for query in [format!("state={state}_INVALID"), String::new(), format!("state={state}&state={state}")] {
            assert_eq!(finish(&config, &mut browser(), &query).as_str(), "https://app.example/", "{query}");
        }
        let mut none = StoreContext::default();
        assert_eq!(finish(&config, &mut none, &format!("state={state}")).as_str(), "https://app.example/");
    }
}
