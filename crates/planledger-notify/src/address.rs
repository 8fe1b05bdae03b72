//! Where webhook deliveries may go: the outbound address policy.
//!
//! An endpoint's URL is chosen by whoever holds an admin token, and the ledger then POSTs signed
//! bodies to it from inside the network it runs in. So by default a delivery may only go to a
//! public address: loopback, private (RFC 1918, unique-local), link-local (where the clouds'
//! metadata services answer), shared (CGNAT), multicast, broadcast, documentation and other
//! reserved ranges are refused, as are the names `localhost` (and `*.localhost`) and the
//! metadata services' names. The policy is checked when an endpoint is registered (every address
//! its host resolves to) and again for every attempt, by the resolver the HTTP client connects
//! through: it drops the addresses the policy refuses, and the client connects only to what it
//! returned, so a name that resolves to a public address at registration and to a private one
//! later (DNS rebinding) reaches nothing. An explicit allow-list
//! (`PLANLEDGER_WEBHOOK_ALLOW`: networks such as `10.1.0.0/16` or `127.0.0.1`, and host names)
//! admits internal receivers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// Names that always mean this machine or a cloud's metadata service, whatever they resolve to.
const REFUSED_NAMES: &[&str] = &["localhost", "metadata.google.internal", "metadata", "instance-data"];

/// How long a registration waits for its host's name to resolve.
const RESOLVE_FOR: Duration = Duration::from_secs(3);

/// Which addresses deliveries may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Networks admitted whatever their kind.
    networks: Vec<IpNet>,
    /// Host names admitted whatever they resolve to (lowercase, no trailing dot).
    hosts: Vec<String>,
}

/// Why an endpoint's URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "{host} is not a public address ({address}): deliveries may not reach loopback, private, link-local or metadata addresses unless PLANLEDGER_WEBHOOK_ALLOW admits them"
    )]
    Address { host: String, address: IpAddr },
    #[error("{0} names this machine or a cloud metadata service: deliveries may not go there unless PLANLEDGER_WEBHOOK_ALLOW admits it")]
    Name(String),
}

impl AddressPolicy {
    /// The policy of `PLANLEDGER_WEBHOOK_ALLOW`: comma-separated networks (`10.0.0.0/8`),
    /// addresses (`127.0.0.1`) and host names (`hooks.internal`) admitted beside public addresses.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut policy = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(network) = entry.parse::<IpNet>() {
                policy.networks.push(network);
            } else if let Ok(address) = entry.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(address));
            } else if entry.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && entry.contains(|c: char| c.is_ascii_alphabetic())
            {
                policy.hosts.push(normalized(entry));
            } else {
                return Err(format!("{entry:?} is not a network (10.0.0.0/8), an address or a host name"));
            }
        }
        Ok(policy)
    }

    fn admits_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| *h == normalized(host))
    }

    /// Whether a delivery for `host` may connect to `address`.
    pub fn permits(&self, host: &str, address: IpAddr) -> bool {
        self.admits_host(host) || self.networks.iter().any(|n| n.contains(&address)) || is_public(address)
    }

    /// Checks an endpoint's URL as it is registered: its host's name, and every address it
    /// resolves to now (an IP literal is its own address). A name that does not resolve is
    /// accepted (its DNS may come later); every attempt is checked again when it connects.
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let Some(host) = url.host_str() else { return Ok(()) };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self.admits_host(host) {
            return Ok(());
        }
        if let Ok(address) = host.parse::<IpAddr>() {
            return self.check(host, address);
        }
        let name = normalized(host);
        if REFUSED_NAMES.contains(&name.as_str()) || name.ends_with(".localhost") {
            return Err(Refused::Name(name));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let resolved = tokio::time::timeout(RESOLVE_FOR, tokio::net::lookup_host((name.as_str(), port))).await;
        if let Ok(Ok(addresses)) = resolved {
            for address in addresses {
                self.check(host, address.ip())?;
            }
        }
        Ok(())
    }

    /// The check of one address of `host`.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        if self.permits(host, address) {
            Ok(())
        } else {
            Err(Refused::Address { host: host.to_owned(), address })
        }
    }
}

fn normalized(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `address` is one the public internet routes to this host's peers: not loopback,
/// unspecified, private, shared, link-local, multicast, broadcast, documentation, benchmarking or
/// reserved (IPv4), nor loopback, unspecified, unique-local, link-local, multicast or
/// documentation (IPv6). An IPv6 address that embeds an IPv4 one (mapped, NAT64, 6to4) is judged
/// by the IPv4 address it reaches.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (RFC 6598, carrier-grade NAT).
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments (192.0.0.0/24), benchmarking (198.18.0.0/15).
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        // Reserved (240.0.0.0/4).
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), documentation (2001:db8::/32),
        // IPv4-compatible (::/96, deprecated).
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || segments[..6] == [0, 0, 0, 0, 0, 0])
}

/// The resolver the deliverer's HTTP client connects through: the system's, with the addresses
/// the policy refuses taken out. A name left with none fails to connect, with a message that
/// says why and nothing about the host's ports.
#[derive(Debug)]
pub(crate) struct PolicyResolver {
    pub(crate) policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let lowered = normalized(&host);
            if !policy.admits_host(&host)
                && (REFUSED_NAMES.contains(&lowered.as_str()) || lowered.ends_with(".localhost"))
            {
                return Err(Box::new(Refused::Name(lowered)) as Box<dyn std::error::Error + Send + Sync>);
            }
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| policy.permits(&host, a.ip())).collect();
            match (permitted.is_empty(), resolved.first()) {
                (true, Some(first)) => Err(Box::new(Refused::Address { host, address: first.ip() })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_are_reached_by_default() {
        for private in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.10",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip(public)), "{public}");
        }
    }

    #[test]
    fn the_allow_list_admits_networks_addresses_and_names() {
        let policy = AddressPolicy::parse("10.1.0.0/16, 127.0.0.1,Hooks.Internal.").unwrap();
        assert!(policy.permits("x", ip("10.1.200.3")));
        assert!(!policy.permits("x", ip("10.2.0.1")));
        assert!(policy.permits("x", ip("127.0.0.1")));
        assert!(!policy.permits("x", ip("127.0.0.2")));
        assert!(policy.permits("hooks.internal", ip("192.168.0.9")), "an admitted name, whatever it resolves to");
        assert!(AddressPolicy::parse("10.0.0.0/33").is_err());
        assert!(AddressPolicy::parse("not a host").is_err());
        assert_eq!(AddressPolicy::parse("").unwrap(), AddressPolicy::default());
    }

    #[tokio::test]
    async fn a_registration_is_checked_by_name_and_by_every_address() {
        let policy = AddressPolicy::default();
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        for refused in [
            "http://127.0.0.1:9000/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://10.0.0.8/",
        ] {
            assert!(policy.check_url(&url(refused)).await.is_err(), "{refused}");
        }
        assert!(policy.check_url(&url("https://8.8.8.8/hook")).await.is_ok());
        // A name that does not resolve now may be registered: every attempt is checked again.
        assert!(policy.check_url(&url("https://receiver.invalid/hook")).await.is_ok());
        let allowed = AddressPolicy::parse("127.0.0.1,localhost").unwrap();
        assert!(allowed.check_url(&url("http://127.0.0.1:9000/hook")).await.is_ok());
        assert!(allowed.check_url(&url("http://localhost:9000/hook")).await.is_ok());
    }
}
