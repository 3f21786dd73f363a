//! Where a request was sent: the scheme and host a browser used, read from the request itself,
//! or, when the peer is a proxy the app trusts, from what that proxy forwarded (`Forwarded`,
//! RFC 7239, or `X-Forwarded-Proto` / `X-Forwarded-Host`). From any other peer those headers
//! are ignored: anyone can send them.
//!
//! Owns [`TrustedProxies`] (the addresses and ranges whose forwarded headers count),
//! [`PeerAddr`] (the peer's address, for servers other than axum) and the reading of both.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::{HeaderMap, HeaderName, Uri};
use ipnet::IpNet;

/// The peers whose forwarded headers (`Forwarded`, `X-Forwarded-Proto`, `X-Forwarded-Host`)
/// say where a request was sent: the app's own load balancers and reverse proxies, as single
/// addresses or ranges. Empty by default: then no forwarded header is read, from anyone.
///
/// The peer's address comes from the request's extensions: axum's
/// `ConnectInfo<SocketAddr>` (serve with `into_make_service_with_connect_info::<SocketAddr>()`),
/// or a [`PeerAddr`] a server of another kind inserts. A request without either is from an
/// unknown peer, which is trusted with nothing.
///
/// Of each header the last value counts: the one the nearest proxy wrote. A proxy that appends
/// to what the client sent leaves the client's value in front, where it is never read.
///
/// ```
/// use auth_layer::TrustedProxies;
/// let proxies: TrustedProxies = "10.0.0.0/8, 192.168.1.7, fd00::/8".parse()?;
/// assert!(proxies.trusts("10.1.2.3".parse()?));
/// assert!(!proxies.trusts("203.0.113.9".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts the peers in `nets`.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self { nets: nets.into_iter().map(|net| net.trunc()).collect() }
    }

    /// Whether nothing is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether a peer at `ip` is trusted (an IPv4 address mapped into IPv6 counts as itself).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Addresses (`10.0.0.7`, `::1`) and ranges (`10.0.0.0/8`), separated by commas or spaces.
    fn from_str(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split([',', ' ', '\t', '\n']).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("`{item}` is neither an IP address nor a range such as 10.0.0.0/8")),
                },
            };
            nets.push(net);
        }
        Ok(Self::new(nets))
    }
}

/// The address of the peer a request came from, for a server that is not axum: insert it into
/// the request's extensions before the layer sees the request, so that
/// [`TrustedProxies`] can be checked. (axum's `ConnectInfo<SocketAddr>` is read as well.)
///
/// ```
/// use std::net::SocketAddr;
/// use auth_layer::PeerAddr;
///
/// // In a hyper server's accept loop, for each request of the connection from `remote`:
/// let remote: SocketAddr = "10.0.0.5:51234".parse().unwrap();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr(remote));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The peer's address from the request's extensions, if the server put one there.
pub(crate) fn peer(extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

/// The scheme (when known) and host (with any port) a request was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Destination<'a> {
    pub(crate) scheme: Option<&'a str>,
    pub(crate) host: &'a str,
}

/// Where a request was sent. From a trusted peer: the host (and scheme) its proxy forwarded, in
/// `host_header` when the app names one, else in `Forwarded`, else in `X-Forwarded-Host`
/// (`-Proto`); what it did not forward comes from the request. From anyone else: the request's
/// own authority (HTTP/2) or `Host`, and its scheme only when the URI carries one.
pub(crate) fn destination<'a>(
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &http::Extensions,
    trusted: &TrustedProxies,
    host_header: Option<&HeaderName>,
) -> Option<Destination<'a>> {
    let own = Destination {
        scheme: uri.scheme_str(),
        host: match uri.authority() {
            Some(authority) => authority.as_str(),
            None => headers.get(http::header::HOST)?.to_str().ok()?,
        },
    };
    if trusted.is_empty() || !peer(extensions).is_some_and(|ip| trusted.trusts(ip)) {
        return Some(own);
    }
    let (mut scheme, mut host) = forwarded(headers);
    if let Some(name) = host_header {
        host = last_value(headers, name);
    }
    if host.is_none() {
        host = last_value(headers, &X_FORWARDED_HOST);
    }
    if scheme.is_none() {
        scheme = last_value(headers, &X_FORWARDED_PROTO);
    }
    Some(Destination { scheme: scheme.or(own.scheme), host: host.unwrap_or(own.host) })
}

static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The last comma-separated value of the last `name` header, trimmed.
fn last_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    Some(value.rsplit(',').next()?.trim()).filter(|v| !v.is_empty())
}

/// `proto` and `host` of the last element of the last `Forwarded` header (RFC 7239, 4): the
/// element the nearest proxy added. Quoted values are unquoted; a quoted comma or semicolon
/// does not split.
fn forwarded(headers: &HeaderMap) -> (Option<&str>, Option<&str>) {
    let Some(value) = headers.get_all(http::header::FORWARDED).iter().next_back().and_then(|v| v.to_str().ok()) else {
        return (None, None);
    };
    let element = split_unquoted(value, b',').next_back().unwrap_or("");
    let (mut proto, mut host) = (None, None);
    for pair in split_unquoted(element, b';') {
        let Some((name, value)) = pair.split_once('=') else { continue };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        match name.trim() {
            n if n.eq_ignore_ascii_case("proto") => proto = Some(value),
            n if n.eq_ignore_ascii_case("host") => host = Some(value),
            _ => {}
        }
    }
    (proto.filter(|v| !v.is_empty()), host.filter(|v| !v.is_empty()))
}

/// `text` split at each `at` outside double quotes.
fn split_unquoted(text: &str, at: u8) -> impl DoubleEndedIterator<Item = &str> {
    let mut quoted = false;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b if b == at && !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter()
}

/// Whether `host` (a `Host` value: a name or address, and maybe a port) names `origin`'s host
/// and port (a default port may be left out on either side). Case-insensitive.
pub(crate) fn host_matches(host: &str, origin: &url::Url) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // A bare IPv6 address has colons but no brackets: no port then.
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => match port.parse::<u16>() {
            Ok(port) => (name, Some(port)),
            Err(_) => return false,
        },
        _ => (host, None),
    };
    let Some(expected) = origin.host_str() else { return false };
    // No port in `Host` means the scheme's default one.
    let default = if origin.scheme() == "https" { 443 } else { 80 };
    name.eq_ignore_ascii_case(expected) && Some(port.unwrap_or(default)) == origin.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], peer: Option<&str>) -> (Uri, HeaderMap, http::Extensions) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        let mut extensions = http::Extensions::new();
        if let Some(peer) = peer {
            extensions.insert(PeerAddr(SocketAddr::new(peer.parse().unwrap(), 40000)));
        }
        ("/auth/login".parse().unwrap(), map, extensions)
    }

    fn seen<'a>(
        (uri, headers, extensions): &'a (Uri, HeaderMap, http::Extensions),
        trusted: &str,
    ) -> Option<Destination<'a>> {
        destination(uri, headers, extensions, &trusted.parse().unwrap(), None)
    }

    #[test]
    fn forwarded_headers_from_an_untrusted_or_unknown_peer_are_ignored() {
        let spoofed = [
            ("host", "app.example"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "host=evil.example;proto=http"),
        ];
        let own = Some(Destination { scheme: None, host: "app.example" });
        assert_eq!(seen(&request(&spoofed, Some("203.0.113.9")), "10.0.0.0/8"), own, "a peer outside the ranges");
        assert_eq!(seen(&request(&spoofed, None), "10.0.0.0/8"), own, "a request whose peer is unknown");
        assert_eq!(seen(&request(&spoofed, Some("10.0.0.2")), ""), own, "nothing trusted by default");
    }

    #[test]
    fn a_trusted_proxy_forwards_the_scheme_and_host_and_its_own_value_is_the_last() {
        let both = request(
            &[
                ("host", "internal:8080"),
                ("x-forwarded-host", "evil.example, app.example"),
                ("x-forwarded-proto", "https"),
            ],
            Some("10.0.0.2"),
        );
        assert_eq!(seen(&both, "10.0.0.0/8"), Some(Destination { scheme: Some("https"), host: "app.example" }));
        let rfc = request(
            &[
                ("host", "internal:8080"),
                ("forwarded", r#"for=1.2.3.4;host="evil.example";proto=http"#),
                ("forwarded", r#"for="[2001:db8::1]:4711";Host="app.example:8443";proto=https"#),
                ("x-forwarded-host", "other.example"),
            ],
            Some("::ffff:10.0.0.2"),
        );
        assert_eq!(
            seen(&rfc, "10.0.0.2"),
            Some(Destination { scheme: Some("https"), host: "app.example:8443" }),
            "Forwarded before X-Forwarded-*, its last element, a v4-mapped peer as itself"
        );
        let none = request(&[("host", "internal:8080")], Some("10.0.0.2"));
        assert_eq!(seen(&none, "10.0.0.0/8"), Some(Destination { scheme: None, host: "internal:8080" }));
    }

    #[test]
    fn an_app_named_host_header_counts_only_from_a_trusted_peer() {
        let headers = [("host", "internal"), ("x-original-host", "app.example")];
        let name = HeaderName::from_static("x-original-host");
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let (uri, map, ext) = request(&headers, Some("10.9.9.9"));
        assert_eq!(destination(&uri, &map, &ext, &trusted, Some(&name)).unwrap().host, "app.example");
        let (uri, map, ext) = request(&headers, Some("198.51.100.1"));
        assert_eq!(destination(&uri, &map, &ext, &trusted, Some(&name)).unwrap().host, "internal");
    }

    #[test]
    fn a_quoted_separator_does_not_split_a_forwarded_element() {
        let (_, map, _) = request(&[("forwarded", r#"for="a,b";host="x;y", host=app.example;proto=https"#)], None);
        assert_eq!(forwarded(&map), (Some("https"), Some("app.example")));
        let (_, map, _) = request(&[("forwarded", r#"for=1.1.1.1;host="a.example;b""#)], None);
        assert_eq!(forwarded(&map), (None, Some("a.example;b")));
    }

    #[test]
    fn lists_of_proxies_are_parsed_and_a_bad_item_is_named() {
        let proxies: TrustedProxies = "127.0.0.1 10.0.0.0/8,fd00::/8".parse().unwrap();
        assert!(proxies.trusts("127.0.0.1".parse().unwrap()));
        assert!(!proxies.trusts("127.0.0.2".parse().unwrap()));
        assert!(proxies.trusts("fd00::5".parse().unwrap()));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        let err = "10.0.0.0/8, proxy.internal".parse::<TrustedProxies>().unwrap_err();
        assert!(err.contains("proxy.internal"), "{err}");
    }

    #[test]
    fn hosts_match_origins_with_default_ports_and_any_case() {
        let origin = url::Url::parse("https://App.Example").unwrap();
        assert!(host_matches("app.example", &origin));
        assert!(host_matches("APP.example:443", &origin));
        assert!(!host_matches("app.example:8443", &origin));
        assert!(!host_matches("app.example.evil", &origin));
        assert!(!host_matches("app.example:x", &origin));
        let port = url::Url::parse("http://127.0.0.1:3000").unwrap();
        assert!(host_matches("127.0.0.1:3000", &port));
        assert!(!host_matches("127.0.0.1", &port));
        let v6 = url::Url::parse("http://[::1]:3000").unwrap();
        assert!(host_matches("[::1]:3000", &v6));
        assert!(!host_matches("::1", &v6));
    }
}
