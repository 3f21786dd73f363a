//! The per-request store context: cookies in from the request, cookies out to the response.

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};

/// The most cookies read from one request; the rest are ignored (bounds the work per request).
const MAX_REQUEST_COOKIES: usize = 64;

/// What a store sees of one request and may add to its response: the seed's `store_options`.
///
/// Build one from the request's headers, pass it to the [`AuthClient`](crate::AuthClient) calls,
/// then [`apply`](Self::apply) it to the response.
#[derive(Debug, Default)]
pub struct StoreContext {
    request: Vec<(String, String)>,
    response: Vec<Cookie<'static>>,
}

impl StoreContext {
    /// Reads the cookies of a request's headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_cookie_headers(headers.get_all(COOKIE).iter())
    }

    /// Reads cookies from `Cookie` header values.
    pub fn from_cookie_headers<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut request = Vec::new();
        for value in values {
            let Ok(text) = value.to_str() else { continue };
            for cookie in Cookie::split_parse(text).flatten() {
                if request.len() == MAX_REQUEST_COOKIES {
                    tracing::debug!("request has more than {MAX_REQUEST_COOKIES} cookies; the rest are ignored");
                    break;
                }
                request.push((cookie.name().to_owned(), cookie.value().to_owned()));
            }
        }
        Self { request, response: Vec::new() }
    }

    /// The value of the request's cookie `name`, unless a cookie of that name is being set or
    /// removed in this response, in which case that newer value (or `None`) is returned.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        if let Some(out) = self.response.iter().rev().find(|c| c.name() == name) {
            return (!is_removal(out)).then(|| out.value());
        }
        self.request.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The names of the request's cookies.
    pub fn request_cookie_names(&self) -> impl Iterator<Item = &str> {
        self.request.iter().map(|(n, _)| n.as_str())
    }

    /// Sets a cookie on the response (replacing one of the same name set earlier).
    pub fn set_cookie(&mut self, cookie: Cookie<'static>) {
        self.response.retain(|c| c.name() != cookie.name());
        self.response.push(cookie);
    }

    /// Takes the response cookies of `other`, which override this context's of the same name.
    pub(crate) fn absorb(&mut self, other: StoreContext) {
        for cookie in other.response {
            self.set_cookie(cookie);
        }
    }

    /// Whether the response sets or removes any cookie.
    pub fn has_response_cookies(&self) -> bool {
        !self.response.is_empty()
    }

    /// Adds the response's `Set-Cookie` headers, and `Cache-Control: no-store` when there are
    /// any (a response that sets a session must never be cached).
    pub fn apply(self, headers: &mut HeaderMap) {
        if self.response.is_empty() {
            return;
        }
        for cookie in self.response {
            match HeaderValue::try_from(cookie.to_string()) {
                Ok(value) => {
                    headers.append(SET_COOKIE, value);
                }
                Err(_) => tracing::error!(cookie = cookie.name(), "cookie is not a valid header value; not set"),
            }
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// What a browser does with a response: applies its `Set-Cookie`s and sends back the cookies
/// still alive. Returns the `Set-Cookie` lines and the next request's context.
#[cfg(test)]
pub(crate) fn browser_round_trip(ctx: StoreContext) -> (Vec<String>, StoreContext) {
    let mut response = HeaderMap::new();
    ctx.apply(&mut response);
    let set: Vec<String> = response.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let live: Vec<String> = set
        .iter()
        .map(|line| Cookie::parse(line.clone()).unwrap())
        .filter(|c| !is_removal(c))
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    let next = match HeaderValue::from_str(&live.join("; ")) {
        Ok(value) if !live.is_empty() => StoreContext::from_cookie_headers([&value]),
        _ => StoreContext::default(),
    };
    (set, next)
}

fn is_removal(cookie: &Cookie<'_>) -> bool {
    cookie.max_age().is_some_and(|age| age.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_request_cookies_and_sees_its_own_changes() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; b=2"));
        let mut ctx = StoreContext::from_headers(&headers);
        assert_eq!(ctx.cookie("a"), Some("1"));
        ctx.set_cookie(Cookie::build(("a", "3")).build());
        assert_eq!(ctx.cookie("a"), Some("3"));
        ctx.set_cookie(Cookie::build(("b", "")).max_age(cookie::time::Duration::ZERO).build());
        assert_eq!(ctx.cookie("b"), None);
    }

    #[test]
    fn applying_cookies_forbids_caching() {
        let mut ctx = StoreContext::default();
        ctx.set_cookie(Cookie::build(("a", "1")).build());
        let mut headers = HeaderMap::new();
        ctx.apply(&mut headers);
        assert_eq!(headers[SET_COOKIE], "a=1");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn no_cookies_leaves_the_response_alone() {
        let mut headers = HeaderMap::new();
        StoreContext::default().apply(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn cookie_count_is_bounded() {
        let many = (0..500).map(|i| format!("c{i}=v")).collect::<Vec<_>>().join("; ");
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&many).unwrap());
        let ctx = StoreContext::from_headers(&headers);
        assert_eq!(ctx.request_cookie_names().count(), MAX_REQUEST_COOKIES);
    }
}
