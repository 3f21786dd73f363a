//! [`AuthConfigBuilder::build`]: the settings checked together (what is required, what cannot
//! go with what, FAPI 2.0's demands), defaults filled in, derived values made once.

use super::*;

impl AuthConfigBuilder {
    /// Validates and builds the configuration.
    pub fn build(self) -> Result<AuthConfig, ConfigError> {
        let issuer = self.issuer.ok_or(ConfigError::Missing("AUTH_ISSUER or AUTH0_DOMAIN (issuer)"))?;
        let issuer_url = Url::parse(&issuer).map_err(|e| invalid("AUTH_ISSUER", e.to_string()))?;
        if !matches!(issuer_url.scheme(), "https" | "http") || issuer_url.query().is_some() {
            return Err(invalid("AUTH_ISSUER", "must be an http(s) URL without a query"));
        }
        let client_id = self.client_id.ok_or(ConfigError::Missing("AUTH_CLIENT_ID (client_id)"))?;
        let client_secret = match (self.client_secret, self.token_endpoint_auth) {
            (Some(secret), _) => secret,
            // The client proves itself with its key; no secret exists.
            (None, TokenEndpointAuth::PrivateKeyJwt) => String::new(),
            (None, _) => return Err(ConfigError::Missing("AUTH_CLIENT_SECRET (client_secret)")),
        };
        if self.token_endpoint_auth == TokenEndpointAuth::PrivateKeyJwt && self.client_assertion.is_none() {
            return Err(ConfigError::Missing("AUTH_CLIENT_ASSERTION_KEY (client_assertion_key)"));
        }
        if self.secrets.is_empty() {
            return Err(ConfigError::Missing("AUTH_SECRET (secret)"));
        }
        if let Some(tenant) = &self.tenant
            && (tenant.is_empty() || !tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)))
        {
            return Err(invalid("tenant", format!("`{tenant}`: letters, digits and `.-_:` only")));
        }
        if let Some(short) = self.secrets.iter().position(|s| s.chars().count() < MIN_SECRET_LEN) {
            return Err(invalid(
                "AUTH_SECRET",
                format!("secret #{} is shorter than {MIN_SECRET_LEN} characters", short + 1),
            ));
        }
        let base = self.base_url.ok_or(ConfigError::Missing("APP_BASE_URL (base_url)"))?;
        let base_url = Url::parse(&base).map_err(|e| invalid("APP_BASE_URL", e.to_string()))?;
        if !matches!(base_url.scheme(), "https" | "http") || base_url.host_str().is_none() {
            return Err(invalid("APP_BASE_URL", "must be an absolute http(s) URL"));
        }
        if base_url.path() != "/" || base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(invalid(
                "APP_BASE_URL",
                "must be an origin such as https://app.example.com, without a path or query",
            ));
        }
        let provider_idle_timeout = self.provider_idle_timeout.unwrap_or(Duration::from_secs(30));
        let provider_connect_timeout = self.provider_connect_timeout.unwrap_or(Duration::from_secs(5));
        let provider_timeout = self.provider_timeout.unwrap_or(Duration::from_secs(10));
        let provider_max_calls = self.provider_max_calls.unwrap_or(64);
        if provider_max_calls == 0 {
            return Err(invalid("AUTH_PROVIDER_MAX_CALLS", "must be at least 1"));
        }
        if provider_connect_timeout.is_zero() || provider_timeout.is_zero() {
            return Err(invalid("provider timeouts", "must be longer than zero"));
        }
        if provider_connect_timeout > provider_timeout {
            return Err(invalid(
                "AUTH_PROVIDER_CONNECT_TIMEOUT",
                "the connect timeout is part of the whole request's: make it shorter than AUTH_PROVIDER_TIMEOUT",
            ));
        }
        let mut origins = vec![base_url.clone()];
        for origin in &self.public_origins {
            let url = Url::parse(origin).map_err(|e| invalid("AUTH_PUBLIC_ORIGINS", format!("`{origin}`: {e}")))?;
            if url.scheme() != base_url.scheme()
                || url.host_str().is_none()
                || url.path() != "/"
                || url.query().is_some()
                || url.fragment().is_some()
                || !url.username().is_empty()
            {
                return Err(invalid(
                    "AUTH_PUBLIC_ORIGINS",
                    format!(
                        "`{origin}`: each must be an origin such as {}://custom.example.com (the base URL's \
                         scheme, so that cookies are Secure alike), without a path",
                        base_url.scheme()
                    ),
                ));
            }
            if !origins.iter().any(|o| o.origin() == url.origin()) {
                origins.push(url);
            }
        }
        if origins.len() > usize::from(u8::MAX) {
            return Err(invalid("AUTH_PUBLIC_ORIGINS", "at most 255 origins"));
        }
        if origins.len() > 1 && self.cookies.domain.is_some() {
            return Err(invalid(
                "AUTH_PUBLIC_ORIGINS",
                "a cookie Domain cannot follow several origins: leave cookies host-only (no domain)",
            ));
        }
        let route_prefix = self.route_prefix.unwrap_or_else(|| "/auth".into());
        if !route_prefix.starts_with('/')
            || route_prefix.len() < 2
            || route_prefix.ends_with('/')
            || route_prefix.contains(['?', '#', ' '])
        {
            return Err(invalid("route_prefix", "must look like /auth (a leading slash, no trailing one)"));
        }
        let mut scope = self.scope.unwrap_or_else(|| "openid profile email offline_access".into());
        if !scope.split_whitespace().any(|s| s == "openid") {
            scope = format!("openid {scope}");
        }
        let absolute_duration = self.absolute_duration.unwrap_or(Duration::from_secs(3 * 86_400));
        let inactivity_duration = self.inactivity_duration.unwrap_or(Duration::from_secs(86_400));
        if absolute_duration.is_zero() || inactivity_duration.is_zero() {
            return Err(invalid("session durations", "must be longer than zero"));
        }
        let transaction_duration = self.transaction_duration.unwrap_or(Duration::from_secs(600));
        if transaction_duration.is_zero() {
            return Err(invalid("transaction_duration", "must be longer than zero"));
        }
        for name in [&self.cookies.session_name, &self.cookies.transaction_name] {
            let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
            if !valid {
                return Err(invalid("cookie names", format!("`{name}`: use letters, digits, _ and -")));
            }
        }
        let secure_cookies = self.cookies.secure.unwrap_or(base_url.scheme() == "https");
        if self.cookies.same_site == SameSite::None && !secure_cookies {
            return Err(invalid("cookies.same_site", "SameSite=None needs Secure cookies (an https base URL)"));
        }
        let host_only = !secure_cookies || self.cookies.domain.is_some() || self.cookies.path != "/";
        if self.cookies.session_name.starts_with("__Host-") && host_only {
            return Err(invalid("cookie names", "a __Host- cookie needs Secure (https), no Domain and Path=/"));
        }
        let login_query_params = self.login_query_params.unwrap_or_else(|| {
            // FAPI 2.0: no login turns silent because of a link's query.
            let params = DEFAULT_LOGIN_QUERY_PARAMS.iter().filter(|p| !(self.fapi2 && **p == "prompt"));
            params.map(|p| (*p).to_owned()).collect()
        });
        if let Some(reserved) = login_query_params.iter().find(|p| RESERVED_AUTHORIZATION_PARAMS.contains(&p.as_str()))
        {
            return Err(invalid("login_query_params", format!("`{reserved}` is set by auth-layer itself")));
        }
        if let Some((reserved, _)) =
            self.authorization_params.iter().find(|(p, _)| RESERVED_AUTHORIZATION_PARAMS.contains(&p.as_str()))
        {
            return Err(invalid("authorization_param", format!("`{reserved}` is set by auth-layer itself")));
        }
        let id_token_alg = self.id_token_alg.unwrap_or_else(|| if self.fapi2 { "PS256" } else { "RS256" }.into());
        if id_token_alg.eq_ignore_ascii_case("none") {
            return Err(invalid(
                "id_token_signed_response_alg",
                "unsigned ID tokens (`none`) are never accepted: register the client for a signing algorithm",
            ));
        }
        if !ID_TOKEN_SIGNING_ALGS.contains(&id_token_alg.as_str()) {
            return Err(invalid(
                "id_token_signed_response_alg",
                format!("`{id_token_alg}`: expected one of {}", ID_TOKEN_SIGNING_ALGS.join(", ")),
            ));
        }
        if id_token_alg.starts_with("HS") && self.token_endpoint_auth == TokenEndpointAuth::PrivateKeyJwt {
            return Err(invalid(
                "id_token_signed_response_alg",
                "an HMAC-signed ID token needs a client secret, which private_key_jwt has not",
            ));
        }
        let dpop = match (self.dpop.unwrap_or(self.fapi2), self.dpop_key) {
            (false, _) => None,
            (true, Some(key)) => Some(DpopMode::PerProcess(Arc::new(key))),
            (true, None) => Some(DpopMode::PerSession),
        };
        if self.fapi2 {
            let mut short = Vec::new();
            if self.token_endpoint_auth != TokenEndpointAuth::PrivateKeyJwt {
                short.push("private_key_jwt client authentication (client_assertion_key)".to_owned());
            }
            if let Some((_, ClientAssertionAlg::Rs256, _)) = &self.client_assertion {
                short.push("client assertions signed PS256 or ES256, not RS256 (client_assertion_key)".to_owned());
            }
            if self.pushed_authorization == Some(false) {
                short.push("pushed authorization requests, turned off (pushed_authorization_requests)".to_owned());
            }
            if dpop.is_none() {
                short.push("DPoP, turned off (dpop)".to_owned());
            }
            if !FAPI2_SIGNING_ALGS.contains(&id_token_alg.as_str()) {
                short.push(format!(
                    "ID tokens signed {}, not {id_token_alg} (id_token_signed_response_alg)",
                    FAPI2_SIGNING_ALGS.join(", ")
                ));
            }
            // Loopback is for tests (the endpoint policy lets it through too).
            let loopback = matches!(issuer_url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
            if issuer_url.scheme() != "https" && !loopback && !self.allow_private_endpoints {
                short.push("an https issuer (AUTH_ISSUER)".to_owned());
            }
            if self.attempt_silent_login {
                short.push("no silent login, but attempt_silent_login is on".to_owned());
            }
            if !short.is_empty() {
                return Err(invalid("fapi2", format!("the FAPI 2.0 profile needs {}", short.join("; "))));
            }
        }
        let max_sessions_per_user = match self.max_sessions_per_user {
            None => None,
            Some(max) => Some(std::num::NonZeroUsize::new(max).ok_or_else(|| {
                invalid("max_sessions_per_user", "0 would end every session at its login; at least 1")
            })?),
        };
        let secrets = match &self.tenant {
            Some(tenant) => self.secrets.iter().map(|secret| tenant_secret(secret, tenant)).collect(),
            None => self.secrets,
        };
        Ok(AuthConfig {
            tenant: self.tenant,
            issuer,
            client_id,
            client_secret,
            client_assertion: self.client_assertion,
            secrets,
            base_url,
            origins,
            trusted_proxies: self.trusted_proxies,
            scope,
            audience: self.audience,
            authorization_params: self.authorization_params,
            login_query_params,
            logout_params: self.logout_params,
            route_prefix,
            routes: OptionalRoutes { logout_callback: self.logout_state, ..self.routes },
            logout_by_get: self.logout_by_get.unwrap_or(true),
            logout_strategy: self.logout_strategy,
            pushed_authorization: if self.fapi2 { Some(true) } else { self.pushed_authorization },
            fetch_userinfo: self.fetch_userinfo,
            revoke_at_logout: !self.keep_refresh_tokens,
            max_sessions_per_user,
            attempt_silent_login: self.attempt_silent_login,
            acr_values_essential: self.acr_values_essential,
            allow_private_endpoints: self.allow_private_endpoints,
            response_mode: self.response_mode,
            id_token_alg,
            logout_state: self.logout_state,
            dpop,
            fapi2: self.fapi2,
            cookies: self.cookies,
            secure_cookies,
            absolute_duration,
            inactivity_duration,
            transaction_duration,
            clock_skew: self.clock_skew.unwrap_or(Duration::from_secs(60)),
            provider_idle_timeout,
            provider_connect_timeout,
            provider_timeout,
            provider_max_calls,
            logout_token_max_age: self.logout_token_max_age.unwrap_or(Duration::from_secs(120)),
            refresh_buffer: self.refresh_buffer.unwrap_or(Duration::from_secs(60)),
            renew_below: self.renew_below.unwrap_or(inactivity_duration / 2).min(inactivity_duration),
            token_endpoint_auth: self.token_endpoint_auth,
            clock: self.clock.unwrap_or_default(),
        })
    }
}
