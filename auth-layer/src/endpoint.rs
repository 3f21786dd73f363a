//! Where the relying party may connect: the endpoint policy. A provider's URLs (its issuer, and
//! every URL its metadata names) must be `https`, or `http` to this machine (`localhost`,
//! `127.0.0.0/8`, `::1`), and must not lead to an address that is private, link-local or
//! otherwise not public, whether written as an IP or behind a host name (checked again on every
//! DNS resolution, so a name that later resolves inward is refused too). A loaded tenant's
//! provider is a URL a customer chose: without this, it could point the app's server at its own
//! network (a cloud's metadata service, an internal admin page).
//!
//! [`AuthConfigBuilder::allow_private_endpoints`](crate::AuthConfigBuilder::allow_private_endpoints)
//! turns the policy off, for a provider inside the app's own network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether `url` may be called under the policy: `Err` says why not.
pub(crate) fn check(url: &url::Url) -> Result<(), String> {
    let Some(host) = url.host() else { return Err(format!("`{url}` names no host")) };
    let ip = match host {
        url::Host::Domain(name) => {
            let local = name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost");
            return match url.scheme() {
                "https" => Ok(()),
                "http" if local => Ok(()),
                _ => Err(format!("`{url}` is not https (plain http is accepted for this machine only)")),
            };
        }
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
    };
    match url.scheme() {
        "https" => {}
        "http" if ip.is_loopback() => {}
        _ => return Err(format!("`{url}` is not https (plain http is accepted for this machine only)")),
    }
    if !reachable(ip) {
        return Err(format!("`{url}` is a private, link-local or reserved address"));
    }
    Ok(())
}

/// Whether the policy lets a connection reach `ip`: a public address, or this machine's own.
pub(crate) fn reachable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback() || public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.is_loopback() || public_v4(v4),
            None => ip.is_loopback() || public_v6(ip),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// Resolves host names for the provider's HTTP client, keeping only the addresses the policy
/// lets it reach; a name with none left is an error naming the setting that allows it.
pub(crate) struct PolicyResolver;

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| reachable(a.ip())).collect();
            if allowed.is_empty() {
                let refused = format!(
                    "`{host}` resolves to no public address ({found:?}): refused by the endpoint policy \
                     (AuthConfigBuilder::allow_private_endpoints allows it)"
                );
                return Err(refused.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_public_and_this_machine_pass_private_and_plain_http_elsewhere_do_not() {
        let ok = |u: &str| check(&u.parse().unwrap());
        for allowed in [
            "https://login.example.com/",
            "https://93.184.216.34/jwks",
            "http://127.0.0.1:4000/",
            "http://localhost:3000/",
            "http://[::1]:4000/",
            "https://[2606:4700::1111]/",
        ] {
            assert!(ok(allowed).is_ok(), "{allowed}: {:?}", ok(allowed));
        }
        for refused in [
            "http://login.example.com/",
            "https://10.0.0.5/",
            "https://172.16.3.4/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data/",
            "http://169.254.169.254/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://[::]/",
            "ftp://login.example.com/",
        ] {
            assert!(ok(refused).is_err(), "{refused} must be refused");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_only_inward_are_refused_and_this_machine_is_not() {
        use reqwest::dns::Resolve;
        let resolve = |name: &str| PolicyResolver.resolve(name.parse().unwrap());
        let local: Vec<SocketAddr> = resolve("localhost").await.unwrap().collect();
        assert!(!local.is_empty() && local.iter().all(|a| a.ip().is_loopback()));
        // A name for an address in a private range (numeric names resolve to themselves).
        let err = match resolve("10.1.2.3").await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("allow_private_endpoints"), "{err}");
    }
}
