//! The configuration from the environment: [`AuthConfigBuilder::from_env`] and
//! [`AuthConfigBuilder::from_lookup`] (every `AUTH_*` variable, read and checked for form).

use super::*;

impl AuthConfigBuilder {
    /// A builder holding what the environment sets (the variables of [`AuthConfig::from_env`]),
    /// for settings to add or change in code before [`build`](Self::build):
    /// `AuthConfigBuilder::from_env()?.profile_route(true).build()?`. A variable with a value
    /// that cannot be read is an error here; one that is missing, at `build`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut builder = Self::default();
        match (get("AUTH_ISSUER"), get("AUTH0_DOMAIN")) {
            (Some(issuer), _) => builder = builder.issuer(issuer),
            (None, Some(domain)) => {
                let domain = domain.trim_start_matches("https://").trim_end_matches('/');
                builder = builder.issuer(format!("https://{domain}/"));
            }
            (None, None) => {}
        }
        builder.client_id = get("AUTH_CLIENT_ID");
        builder.client_secret = get("AUTH_CLIENT_SECRET");
        if let Some(key) = get("AUTH_CLIENT_ASSERTION_KEY") {
            let alg = match get("AUTH_CLIENT_ASSERTION_ALG").as_deref() {
                None | Some("RS256") => ClientAssertionAlg::Rs256,
                Some("PS256") => ClientAssertionAlg::Ps256,
                Some("ES256") => ClientAssertionAlg::Es256,
                Some(other) => {
                    return Err(invalid(
                        "AUTH_CLIENT_ASSERTION_ALG",
                        format!("`{other}`: expected RS256, PS256 or ES256"),
                    ));
                }
            };
            builder = builder.client_assertion_key(key, alg, get("AUTH_CLIENT_ASSERTION_KID"));
        }
        builder.secrets = get("AUTH_SECRET")
            .map(|s| s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        builder.base_url = get("APP_BASE_URL");
        if let Some(list) = get("AUTH_PUBLIC_ORIGINS") {
            builder = builder.public_origins(list.split([',', ' ']).filter(|o| !o.is_empty()));
        }
        for (name, set) in [
            ("AUTH_PROVIDER_IDLE_TIMEOUT", Self::provider_idle_timeout as fn(Self, Duration) -> Self),
            ("AUTH_PROVIDER_CONNECT_TIMEOUT", Self::provider_connect_timeout),
            ("AUTH_PROVIDER_TIMEOUT", Self::provider_timeout),
        ] {
            if let Some(value) = get(name) {
                let seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
                    .ok_or_else(|| invalid(name, format!("`{value}`: expected seconds, from 0 to 3600")))?;
                builder = set(builder, Duration::from_secs_f64(seconds));
            }
        }
        if let Some(value) = get("AUTH_PROVIDER_MAX_CALLS") {
            let calls = value.parse().map_err(|_| invalid("AUTH_PROVIDER_MAX_CALLS", format!("`{value}`: a count")))?;
            builder = builder.provider_max_calls(calls);
        }
        if let Some(list) = get("AUTH_TRUSTED_PROXIES") {
            builder.trusted_proxies = list.parse().map_err(|why| invalid("AUTH_TRUSTED_PROXIES", why))?;
        }
        if let Some(scope) = get("AUTH_SCOPE") {
            builder = builder.scope(scope);
        }
        if let Some(audience) = get("AUTH_AUDIENCE") {
            builder = builder.audience(audience);
        }
        if let Some(method) = get("AUTH_TOKEN_ENDPOINT_AUTH") {
            builder = builder.token_endpoint_auth(match method.as_str() {
                "client_secret_basic" => TokenEndpointAuth::ClientSecretBasic,
                "client_secret_post" => TokenEndpointAuth::ClientSecretPost,
                other => {
                    return Err(invalid(
                        "AUTH_TOKEN_ENDPOINT_AUTH",
                        format!("`{other}`: expected client_secret_basic or client_secret_post"),
                    ));
                }
            });
        }
        if let Some(strategy) = get("AUTH_LOGOUT_STRATEGY") {
            builder = builder.logout_strategy(match strategy.as_str() {
                "auto" => LogoutStrategy::Auto,
                "oidc" => LogoutStrategy::Oidc,
                "v2" => LogoutStrategy::V2,
                "local" => LogoutStrategy::Local,
                other => {
                    return Err(invalid(
                        "AUTH_LOGOUT_STRATEGY",
                        format!("`{other}`: expected auto, oidc, v2 or local"),
                    ));
                }
            });
        }
        if let Some(mode) = get("AUTH_RESPONSE_MODE") {
            builder = builder.response_mode(match mode.as_str() {
                "query" => ResponseMode::Query,
                "form_post" => ResponseMode::FormPost,
                other => {
                    return Err(invalid("AUTH_RESPONSE_MODE", format!("`{other}`: expected query or form_post")));
                }
            });
        }
        if let Some(alg) = get("AUTH_ID_TOKEN_SIGNED_RESPONSE_ALG") {
            builder = builder.id_token_signed_response_alg(alg);
        }
        if let Some(key) = get("AUTH_DPOP_KEY") {
            let key = DpopKey::from_pem(&key).map_err(|e| invalid("AUTH_DPOP_KEY", e.to_string()))?;
            builder = builder.dpop_key(key);
        }
        for (name, set) in [
            ("AUTH_FETCH_USERINFO", Self::fetch_userinfo as fn(Self, bool) -> Self),
            ("AUTH_REVOKE_AT_LOGOUT", Self::revoke_at_logout),
            ("AUTH_LOGOUT_STATE", Self::logout_state),
            ("AUTH_DPOP", Self::dpop),
            ("AUTH_FAPI2", Self::fapi2),
        ] {
            if let Some(value) = get(name) {
                let on = match value.as_str() {
                    "1" | "true" | "on" => true,
                    "0" | "false" | "off" => false,
                    other => return Err(invalid(name, format!("`{other}`: expected true or false"))),
                };
                builder = set(builder, on);
            }
        }
        if let Some(max) = get("AUTH_MAX_SESSIONS_PER_USER") {
            let max = max
                .parse()
                .map_err(|_| invalid("AUTH_MAX_SESSIONS_PER_USER", format!("`{max}`: expected a number")))?;
            builder = builder.max_sessions_per_user(max);
        }
        if let Some(list) = get("AUTH_LOGIN_PARAMS") {
            builder = builder.login_query_params(list.split(',').map(str::trim).filter(|p| !p.is_empty()));
        }
        for route in get("AUTH_ROUTES").iter().flat_map(|r| r.split(',')).map(str::trim).filter(|r| !r.is_empty()) {
            match route {
                "profile" => builder.routes.profile = true,
                "access-token" => builder.routes.access_token = true,
                "backchannel-logout" => builder.routes.backchannel_logout = true,
                "sessions" => builder.routes.sessions = true,
                other => {
                    return Err(invalid(
                        "AUTH_ROUTES",
                        format!("`{other}`: expected profile, access-token, backchannel-logout or sessions"),
                    ));
                }
            }
        }
        Ok(builder)
    }
}
