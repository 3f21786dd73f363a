//! The parameters of one login, from their three sources merged by one rule, and what the
//! callback checks because of them.
//!
//! The sources, weakest last:
//! 1. the app's configuration ([`AuthConfigBuilder::authorization_param`], `scope`, `audience`,
//!    `acr_values_essential`);
//! 2. the app's code for this login ([`LoginOptions`]: its parameters, scope and audience, a
//!    step-up guard's requirements, a silent login's `prompt=none`), which replaces configured
//!    parameters of the same name;
//! 3. `/auth/login`'s query, through the configured allowlist, which may add a parameter but
//!    never change one the configuration or the code set: a different value is refused with 400
//!    (the same value passes). Refused rather than dropped so that a link's author learns that
//!    the app decides it, and a user sent to `?organization=org_globex` is not silently logged
//!    in somewhere else than the link said.
//!
//! What the callback then checks (`max_age`, `organization`, essential `acr_values`) is read
//! from the merged parameters, so it is what the app configured or its code asked for, never
//! less.
//!
//! [`AuthConfigBuilder::authorization_param`]: crate::AuthConfigBuilder::authorization_param

use crate::client::LoginOptions;
use crate::config::{AuthConfig, RESERVED_AUTHORIZATION_PARAMS};
use crate::error::AuthError;

/// One login's authorization parameters, merged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LoginParams {
    pub(crate) scope: String,
    pub(crate) audience: Option<String>,
    /// Every other parameter, each once, in the order first set.
    pub(crate) params: Vec<(String, String)>,
    /// What the ID token must then prove.
    pub(crate) checks: LoginChecks,
}

/// What a login's callback checks of its ID token because of what the login asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LoginChecks {
    /// `auth_time` present and no older than this.
    pub(crate) max_age: Option<u64>,
    /// The organization the ID token must name.
    pub(crate) organization: Option<String>,
    /// The `acr` must be one of these (space-separated).
    pub(crate) essential_acr_values: Option<String>,
    /// Started by a step-up guard: an authentication still short of it is refused with 403,
    /// not sent round again.
    pub(crate) step_up: bool,
}

/// Where a parameter came from: what may replace what.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Query,
    Configuration,
    Code,
}

impl LoginParams {
    /// Merges `config`'s parameters, `options`' and the query's (already through the
    /// allowlist), by the rule this module states.
    pub(crate) fn merge(config: &AuthConfig, options: &LoginOptions) -> Result<Self, AuthError> {
        let mut merged = Merge::default();
        merged.set(Source::Configuration, "scope", &config.scope)?;
        if let Some(audience) = &config.audience {
            merged.set(Source::Configuration, "audience", audience)?;
        }
        for (name, value) in &config.authorization_params {
            merged.set(Source::Configuration, name, value)?;
        }
        for (name, value) in &options.authorization_params {
            merged.set(Source::Code, name, value)?;
        }
        if let Some(scope) = &options.scope {
            merged.set(Source::Code, "scope", scope)?;
        }
        if let Some(audience) = &options.audience {
            merged.set(Source::Code, "audience", audience)?;
        }
        if let Some(step_up) = &options.step_up {
            if let Some(acr) = &step_up.acr_values {
                merged.set(Source::Code, "acr_values", acr)?;
            }
            if let Some(max_age) = step_up.max_age {
                merged.set(Source::Code, "max_age", &max_age.to_string())?;
            }
        }
        if options.silent {
            merged.set(Source::Code, "prompt", "none")?;
        }
        for (name, value) in &options.query_params {
            merged.set(Source::Query, name, value)?;
        }
        let mut params = merged.0;
        let mut take = |name: &str| {
            let at = params.iter().position(|(n, _, _)| n == name)?;
            Some(params.remove(at).1)
        };
        let mut scope = take("scope").unwrap_or_default();
        if !scope.split_whitespace().any(|s| s == "openid") {
            scope = format!("openid {scope}").trim_end().to_owned();
        }
        let audience = take("audience");
        let find = |name: &str| params.iter().find(|(n, _, _)| n == name).map(|(_, v, _)| v.clone());
        let max_age = find("max_age").map(|v| parse_max_age(&v)).transpose()?;
        let step_up = options.step_up.is_some();
        let checks = LoginChecks {
            max_age,
            organization: find("organization"),
            essential_acr_values: if config.acr_values_essential || step_up { find("acr_values") } else { None },
            step_up,
        };
        Ok(Self { scope, audience, params: params.into_iter().map(|(n, v, _)| (n, v)).collect(), checks })
    }
}

/// Parameters as they are merged, each with the source that set it.
#[derive(Default)]
struct Merge(Vec<(String, String, Source)>);

impl Merge {
    fn set(&mut self, source: Source, name: &str, value: &str) -> Result<(), AuthError> {
        if RESERVED_AUTHORIZATION_PARAMS.contains(&name) {
            return Err(AuthError::InvalidRequest(format!(
                "the authorization parameter `{name}` is set by auth-layer"
            )));
        }
        if name == "max_age" {
            parse_max_age(value)?;
        }
        match self.0.iter_mut().find(|(n, _, _)| n == name) {
            None => self.0.push((name.to_owned(), value.to_owned(), source)),
            Some((_, kept, _)) if kept == value => {}
            Some((_, _, by)) if source == Source::Query => {
                let by = if *by == Source::Code { "the app's code" } else { "the app's configuration" };
                return Err(AuthError::InvalidRequest(format!("`{name}` is set by {by}; the query may not change it")));
            }
            Some((_, kept, by)) => {
                // The app's code replaces its configuration (and a later call of its own).
                *kept = value.to_owned();
                *by = source.max(*by);
            }
        }
        Ok(())
    }
}

/// `max_age`: a number of seconds. The one parser of it, wherever it comes from.
pub(crate) fn parse_max_age(value: &str) -> Result<u64, AuthError> {
    value.parse::<u64>().map_err(|_| AuthError::InvalidRequest("max_age: expected a number of seconds".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::StepUp;

    fn config(edit: impl FnOnce(crate::AuthConfigBuilder) -> crate::AuthConfigBuilder) -> AuthConfig {
        edit(crate::config::test_config(Default::default())).build().unwrap()
    }

    fn query(pairs: &[(&str, &str)]) -> LoginOptions {
        LoginOptions {
            query_params: pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            ..LoginOptions::default()
        }
    }

    fn param<'a>(merged: &'a LoginParams, name: &str) -> Option<&'a str> {
        merged.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_query_parameter_never_replaces_a_configured_one() {
        let config = config(|c| {
            c.authorization_param("organization", "org_acme")
                .authorization_param("acr_values", "urn:mfa")
                .authorization_param("max_age", "300")
                .authorization_param("connection", "acme-sso")
                .authorization_param("prompt", "login")
                .audience("https://api.example")
                .acr_values_essential(true)
        });
        for (name, value) in [
            ("organization", "org_globex"),
            ("acr_values", "urn:pwd"),
            ("max_age", "999999"),
            ("connection", "google-oauth2"),
            ("prompt", "none"),
            ("scope", "openid admin"),
            ("audience", "https://other.api"),
        ] {
            let err = LoginParams::merge(&config, &query(&[(name, value)])).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{name}={value}");
            assert!(err.to_string().contains("configuration"), "{err}");
        }
        let same = LoginParams::merge(&config, &query(&[("organization", "org_acme")])).unwrap();
        assert_eq!(param(&same, "organization"), Some("org_acme"), "the configured value repeated passes");
        assert_eq!(same.checks.organization.as_deref(), Some("org_acme"));
        assert_eq!(same.checks.essential_acr_values.as_deref(), Some("urn:mfa"));
        assert_eq!(same.checks.max_age, Some(300));
    }

    #[test]
    fn a_query_may_add_what_the_app_left_open_and_the_callback_checks_it() {
        let config = config(|c| c.acr_values_essential(true));
        let merged = LoginParams::merge(
            &config,
            &query(&[("organization", "org_acme"), ("screen_hint", "signup"), ("acr_values", "urn:mfa")]),
        )
        .unwrap();
        assert_eq!(param(&merged, "screen_hint"), Some("signup"));
        assert_eq!(merged.checks.organization.as_deref(), Some("org_acme"));
        assert_eq!(merged.checks.essential_acr_values.as_deref(), Some("urn:mfa"), "only ever stricter");
    }

    #[test]
    fn the_apps_code_replaces_its_configuration_and_the_query_cannot_change_the_code() {
        let config = config(|c| c.authorization_param("organization", "org_acme").scope("openid profile"));
        let mut options = LoginOptions::default().organization("org_globex").scope("openid email");
        let merged = LoginParams::merge(&config, &options).unwrap();
        assert_eq!(param(&merged, "organization"), Some("org_globex"));
        assert_eq!(merged.checks.organization.as_deref(), Some("org_globex"));
        assert_eq!(merged.scope, "openid email");
        options.query_params = vec![("organization".into(), "org_initech".into())];
        let err = LoginParams::merge(&config, &options).unwrap_err();
        assert!(err.to_string().contains("the app's code"), "{err}");
    }

    #[test]
    fn max_age_is_parsed_once_whatever_its_source() {
        for (config, options) in [
            (config(|c| c.authorization_param("max_age", "soon")), LoginOptions::default()),
            (config(|c| c), LoginOptions::default().param("max_age", "-1")),
            (config(|c| c), query(&[("max_age", "1e3")])),
        ] {
            assert_eq!(LoginParams::merge(&config, &options).unwrap_err().code(), "invalid_request");
        }
        let big = LoginParams::merge(&config(|c| c), &query(&[("max_age", "5000000000")])).unwrap();
        assert_eq!(big.checks.max_age, Some(5_000_000_000), "one integer type: u64");
    }

    #[test]
    fn a_step_up_asks_for_the_guards_requirements_over_the_configuration_and_makes_them_essential() {
        let config = config(|c| c.authorization_param("acr_values", "urn:pwd").authorization_param("max_age", "86400"));
        let options = LoginOptions {
            step_up: Some(StepUp { acr_values: Some("urn:mfa urn:hw".into()), max_age: Some(60) }),
            ..LoginOptions::default()
        };
        let merged = LoginParams::merge(&config, &options).unwrap();
        assert_eq!(param(&merged, "acr_values"), Some("urn:mfa urn:hw"));
        assert_eq!(param(&merged, "max_age"), Some("60"));
        assert_eq!(merged.checks.essential_acr_values.as_deref(), Some("urn:mfa urn:hw"), "essential for a step-up");
        assert!(merged.checks.step_up);
        let plain = LoginParams::merge(&config, &LoginOptions::default()).unwrap();
        assert_eq!(plain.checks.essential_acr_values, None, "voluntary unless configured essential");
    }

    #[test]
    fn reserved_parameters_are_refused_from_every_source_and_openid_is_always_asked_for() {
        let config = config(|c| c.scope("profile"));
        assert!(LoginParams::merge(&config, &LoginOptions::default().param("redirect_uri", "https://x")).is_err());
        assert!(LoginParams::merge(&config, &query(&[("state", "x")])).is_err());
        assert_eq!(LoginParams::merge(&config, &LoginOptions::default()).unwrap().scope, "openid profile");
    }
}
