//! The per-request store context: cookies in from the request, cookies out to the response.

use std::ops::Range;
use std::time::Duration;

use cookie::Cookie;
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use smallvec::SmallVec;

use super::{auth_cookie, removal_cookie};
use crate::config::AuthConfig;

/// The most `Cookie` header bytes read from one request; cookies past it are ignored (bounds
/// the work per request). A bound on bytes, not on a count: the auth cookies are found by name
/// however many others come first (a browser sends `Path=/auth` cookies before `Path=/` ones).
/// Room for the largest cookie session (8 chunks of 3,800 bytes) and as much again.
pub const MAX_COOKIE_BYTES: usize = 64 * 1024;

/// What a store sees of one request and may add to its response: the seed's `store_options`.
///
/// Build one from the request's headers, pass it to the [`AuthClient`](crate::AuthClient) calls,
/// then [`apply`](Self::apply) it to the response.
///
/// ```
/// use auth_layer::StoreContext;
/// use http::header::{COOKIE, SET_COOKIE};
///
/// let mut request = http::HeaderMap::new();
/// request.insert(COOKIE, "_a0_session=abc; theme=dark".parse().unwrap());
/// let ctx = StoreContext::from_headers(&request);
/// assert_eq!(ctx.cookie("theme"), Some("dark"));
///
/// // What the calls set goes on the response:
/// let mut response = http::HeaderMap::new();
/// ctx.apply(&mut response);
/// assert!(response.get(SET_COOKIE).is_none(), "nothing was set");
/// ```
///
/// The request's cookies are not copied: the context keeps the `Cookie` header values (which
/// share the request's bytes) and where each cookie's name and value lie in them. A request
/// with one `Cookie` header (HTTP/1.1 sends one) and a few cookies is read without allocating.
///
/// `Debug` names the cookies, never their values (sealed sessions are credentials).
#[derive(Default)]
pub struct StoreContext {
    headers: SmallVec<[HeaderValue; 1]>,
    request: SmallVec<[RequestCookie; INLINE_COOKIES]>,
    response: Vec<Cookie<'static>>,
    /// The number of the app's origin the request was sent to
    /// ([`AuthConfig::origins`](crate::AuthConfig::origins)): 0, the base URL's, unless the
    /// layer found another.
    pub(crate) origin: u8,
    /// What a login's callback recorded of its browser, for the session a login saves
    /// ([`AuthClient::describe_login`](crate::AuthClient::describe_login)).
    pub(crate) login_device: Option<Box<LoginDevice>>,
}

impl std::fmt::Debug for StoreContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreContext")
            .field("request", &self.request_cookie_names().collect::<Vec<_>>())
            .field("response", &self.response.iter().map(|c| c.name()).collect::<Vec<_>>())
            .finish()
    }
}

/// What a login's callback records of the browser it came from, for the session the login
/// saves (a listing of the user's sessions shows it).
#[derive(Debug, Default)]
pub(crate) struct LoginDevice {
    pub(crate) device: Option<String>,
    pub(crate) location: Option<String>,
}

/// How many request cookies a context holds before it allocates.
const INLINE_COOKIES: usize = 6;

/// Where one request cookie lies: in `headers[header]`, its name and value byte ranges (within
/// [`MAX_COOKIE_BYTES`], so `u32` holds them).
#[derive(Debug, Clone)]
struct RequestCookie {
    header: u32,
    name: Range<u32>,
    value: Range<u32>,
}

impl StoreContext {
    /// Reads the cookies of a request's headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_cookie_headers(headers.get_all(COOKIE).iter())
    }

    /// Reads cookies from `Cookie` header values: `name=value` pairs split at `;`, with the
    /// spaces around each name and value dropped (RFC 6265, section 5.4); a pair without `=` or
    /// with an empty name is skipped. One pass over each header, which for a session cookie
    /// is most of it.
    pub fn from_cookie_headers<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut ctx = Self::default();
        let mut budget = MAX_COOKIE_BYTES;
        for value in values {
            if budget == 0 {
                break;
            }
            // Within the budget only; a pair the budget cuts is not read.
            let whole = value.as_bytes();
            let bytes = &whole[..whole.len().min(budget)];
            let cut = bytes.len() < whole.len();
            if cut {
                tracing::debug!("request cookies exceed {MAX_COOKIE_BYTES} bytes; the rest are ignored");
            }
            budget -= bytes.len();
            let header = ctx.headers.len() as u32;
            let mut start = 0;
            while start < bytes.len() {
                let Some(end) =
                    memchr::memchr(b';', &bytes[start..]).map(|i| start + i).or((!cut).then_some(bytes.len()))
                else {
                    break;
                };
                if let Some(eq) = memchr::memchr(b'=', &bytes[start..end]).map(|i| start + i) {
                    let name = trim(bytes, start..eq);
                    if !name.is_empty() {
                        let value = trim(bytes, eq + 1..end);
                        ctx.request.push(RequestCookie { header, name: narrow(name), value: narrow(value) });
                    }
                }
                start = end + 1;
            }
            if ctx.request.last().is_some_and(|c| c.header == header) {
                ctx.headers.push(value.clone());
            }
        }
        ctx
    }

    /// The value of the request's cookie `name`, unless a cookie of that name is being set or
    /// removed in this response, in which case that newer value (or `None`) is returned.
    /// A value that is not UTF-8 is `None`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookie_bytes(name).and_then(|value| std::str::from_utf8(value).ok())
    }

    /// [`cookie`](Self::cookie) as bytes, not checked to be text: for a caller that compares
    /// them with a value it knows before it needs text.
    pub(crate) fn cookie_bytes(&self, name: &str) -> Option<&[u8]> {
        if let Some(out) = self.response.iter().rev().find(|c| c.name() == name) {
            return (!is_removal(out)).then(|| out.value().as_bytes());
        }
        let found = self.request.iter().find(|c| self.bytes(c.header, &c.name) == name.as_bytes())?;
        Some(self.bytes(found.header, &found.value))
    }

    /// The names of the request's cookies.
    pub fn request_cookie_names(&self) -> impl Iterator<Item = &str> {
        self.request.iter().filter_map(|c| self.text(c.header, &c.name))
    }

    fn bytes(&self, header: u32, range: &Range<u32>) -> &[u8] {
        let range = range.start as usize..range.end as usize;
        self.headers.get(header as usize).and_then(|value| value.as_bytes().get(range)).unwrap_or_default()
    }

    /// A name or value as text; `None` when it is not UTF-8.
    fn text(&self, header: u32, range: &Range<u32>) -> Option<&str> {
        std::str::from_utf8(self.bytes(header, range)).ok()
    }

    /// Sets cookie `name` to `value` on the response for `max_age`, with the attributes
    /// `config` gives auth-layer's session cookie: `HttpOnly`, its `SameSite`, `Secure` on
    /// https, its `Domain` and `Path`. Replaces a cookie of the same name set earlier in this
    /// response. For a [`SessionStore`](crate::store::SessionStore) of your own that keeps an
    /// id in a cookie.
    pub fn set_cookie(&mut self, config: &AuthConfig, name: &str, value: &str, max_age: Duration) {
        let path = &config.cookies.path;
        self.push_cookie(auth_cookie(config, name.to_owned(), value.to_owned(), path, max_age.as_secs()));
    }

    /// Makes the browser drop cookie `name` (one set by [`set_cookie`](Self::set_cookie)).
    pub fn remove_cookie(&mut self, config: &AuthConfig, name: &str) {
        self.push_cookie(removal_cookie(config, name.to_owned(), &config.cookies.path));
    }

    /// Sets `cookie` on the response, replacing one of the same name set earlier.
    pub(crate) fn push_cookie(&mut self, cookie: Cookie<'static>) {
        self.response.retain(|c| c.name() != cookie.name());
        self.response.push(cookie);
    }

    /// A context with this one's request cookies and no response: for a read whose cookie
    /// changes (a stale session's removal) must not reach the response.
    pub(crate) fn request_only(&self) -> StoreContext {
        StoreContext {
            headers: self.headers.clone(),
            request: self.request.clone(),
            response: Vec::new(),
            origin: self.origin,
            login_device: None,
        }
    }

    /// Takes the response cookies of `other`, which override this context's of the same name.
    pub(crate) fn absorb(&mut self, other: StoreContext) {
        for cookie in other.response {
            self.push_cookie(cookie);
        }
    }

    /// Whether the response sets cookie `name` (not as a removal).
    pub(crate) fn sets_cookie(&self, name: &str) -> bool {
        self.response.iter().any(|c| c.name() == name && !is_removal(c))
    }

    /// The name and value of every cookie the response sets (removals left out), whatever its
    /// `Max-Age`.
    #[cfg(feature = "testing")]
    pub(crate) fn response_cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.response.iter().filter(|c| !c.value().is_empty()).map(|c| (c.name(), c.value()))
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

/// A range within the first [`MAX_COOKIE_BYTES`] of a header, as `u32`s.
fn narrow(range: Range<usize>) -> Range<u32> {
    const _: () = assert!(MAX_COOKIE_BYTES <= u32::MAX as usize);
    range.start as u32..range.end as u32
}

/// `range` of `bytes` without the spaces and tabs at either end.
fn trim(bytes: &[u8], mut range: Range<usize>) -> Range<usize> {
    let blank = |b: u8| b == b' ' || b == b'\t';
    while range.start < range.end && blank(bytes[range.start]) {
        range.start += 1;
    }
    while range.end > range.start && blank(bytes[range.end - 1]) {
        range.end -= 1;
    }
    range
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
        ctx.push_cookie(Cookie::build(("a", "3")).build());
        assert_eq!(ctx.cookie("a"), Some("3"));
        ctx.push_cookie(Cookie::build(("b", "")).max_age(cookie::time::Duration::ZERO).build());
        assert_eq!(ctx.cookie("b"), None);
    }

    #[test]
    fn applying_cookies_forbids_caching() {
        let mut ctx = StoreContext::default();
        ctx.push_cookie(Cookie::build(("a", "1")).build());
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
    fn the_session_cookie_is_found_behind_hundreds_of_others_and_the_bytes_read_are_bounded() {
        // What a browser sends when a page planted many `Path=/auth` cookies: theirs first.
        let mut many = (0..500).map(|i| format!("_a0_tx.state{i}=v")).collect::<Vec<_>>();
        many.push("_a0_session=the-session".into());
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(&many.join("; ")).unwrap());
        let ctx = StoreContext::from_headers(&headers);
        assert_eq!(ctx.cookie("_a0_session"), Some("the-session"), "found by name, not cut off by a count");

        let filler = "x".repeat(1_000);
        let mut huge = (0..80).map(|i| format!("f{i}={filler}")).collect::<Vec<_>>();
        huge.push("late=1".into());
        headers.insert(COOKIE, HeaderValue::from_str(&huge.join("; ")).unwrap());
        let ctx = StoreContext::from_headers(&headers);
        assert_eq!(ctx.cookie("late"), None, "past {MAX_COOKIE_BYTES} bytes nothing is read");
        let read = ctx.request_cookie_names().count();
        assert!(read < 66 && read > 60, "{read} cookies of 1 KB read");
        let last = ctx.request_cookie_names().last().unwrap().to_owned();
        assert_eq!(ctx.cookie(&last).map(str::len), Some(1_000), "a pair the bound cuts is not read in part");
    }

    #[test]
    fn one_cookie_header_with_a_few_cookies_is_read_without_allocating() {
        use crate::alloc_count::allocations_in;
        let value = HeaderValue::from_static("_a0_session=sealed; theme=dark; lang=en; a=1; b=2; c=3");
        let (ctx, allocations) = allocations_in(|| StoreContext::from_cookie_headers([&value]));
        assert_eq!(allocations, 0, "one header of {INLINE_COOKIES} cookies");
        assert_eq!((ctx.cookie("_a0_session"), ctx.cookie("c")), (Some("sealed"), Some("3")));

        // Past the room kept inline every cookie is still read; they then take an allocation.
        let more = HeaderValue::from_static("a=1; b=2; c=3; d=4; e=5; f=6; g=7");
        let (ctx, allocations) = allocations_in(|| StoreContext::from_cookie_headers([&more]));
        assert_eq!(allocations, 1, "seven cookies");
        assert_eq!(ctx.request_cookie_names().collect::<String>(), "abcdefg");
    }

    #[test]
    fn cookies_of_every_header_are_read_and_values_that_are_not_utf8_are_absent() {
        let first = HeaderValue::from_static("a=1;  b = 2 ");
        let broken = HeaderValue::from_bytes(b"c=\xff\xfe; =x; junk").unwrap();
        let second = HeaderValue::from_static("d=\"4\"; e=");
        let ctx = StoreContext::from_cookie_headers([&first, &broken, &second]);
        assert_eq!(ctx.request_cookie_names().collect::<Vec<_>>(), ["a", "b", "c", "d", "e"]);
        assert_eq!((ctx.cookie("a"), ctx.cookie("b"), ctx.cookie("c")), (Some("1"), Some("2"), None));
        assert_eq!((ctx.cookie("d"), ctx.cookie("e")), (Some("\"4\""), Some("")));
    }
}
