//! The outbound network policy: which destinations a source may connect to.
//!
//! Private, loopback, link-local and other non-public addresses are refused unless
//! `SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true`; unspecified, broadcast and multicast addresses are
//! never valid destinations. `ws://` (unencrypted) is only for private hosts, and only when that
//! setting is on. The caller checks the URL when a source is saved, and the resolved addresses
//! at every connect (DNS can change between the two).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Why a destination is refused, in words the operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A non-public address while private networks are not allowed.
    #[error("destination {ip} is {class}; set SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true to allow it")]
    Forbidden {
        /// The refused address.
        ip: IpAddr,
        /// What kind of address it is.
        class: AddressClass,
    },
    /// An address no connection can ever go to, whatever the configuration.
    #[error("destination {ip} is {class} and can never be connected to")]
    NeverAllowed {
        /// The refused address.
        ip: IpAddr,
        /// What kind of address it is.
        class: AddressClass,
    },
    /// `localhost` or a `*.localhost` name while private networks are not allowed.
    #[error(
        "destination {host} is a loopback host name; set SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true to allow it"
    )]
    LoopbackHost {
        /// The refused host name.
        host: String,
    },
    /// A scheme other than `wss` or `ws` (`https` or `http` for HTTP calls).
    #[error("URL scheme `{scheme}` is not supported; use wss://")]
    UnsupportedScheme {
        /// The refused scheme.
        scheme: String,
    },
    /// `ws://` (or `http://`) while private networks are not allowed.
    #[error(
        "unencrypted {scheme}:// URLs are refused; use {scheme}s://, or set SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true to use {scheme}:// to private or loopback hosts"
    )]
    InsecureScheme {
        /// `ws` or `http`.
        scheme: String,
    },
    /// `ws://` (or `http://`) to a public address: never, traffic on the internet must be
    /// encrypted.
    #[error("unencrypted {scheme}:// to the public address {host} is refused; use {scheme}s://")]
    InsecureSchemePublic {
        /// `ws` or `http`.
        scheme: String,
        /// The public host or address.
        host: String,
    },
    /// The URL names no host.
    #[error("the URL has no host")]
    MissingHost,
    /// DNS resolution returned nothing to check.
    #[error("the destination host resolved to no addresses")]
    NoAddresses,
}

/// The kind of a non-public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `0.0.0.0/8` or `::`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// RFC 1918, unique-local `fc00::/7`, site-local `fec0::/10`, local-use NAT64.
    Private,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT shared space `100.64.0.0/10`.
    SharedCgnat,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// IETF protocol assignments, benchmarking, `240.0.0.0/4`, discard-only `100::/64`.
    Reserved,
    /// `255.255.255.255`.
    Broadcast,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
}

impl AddressClass {
    /// Whether `SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true` makes this kind of address reachable.
    pub fn allowed_with_private_networks(self) -> bool {
        !matches!(self, Self::Unspecified | Self::Broadcast | Self::Multicast)
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "an unspecified address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::SharedCgnat => "a carrier-grade NAT (shared) address",
            Self::Documentation => "a documentation address",
            Self::Reserved => "a reserved address",
            Self::Broadcast => "a broadcast address",
            Self::Multicast => "a multicast address",
        })
    }
}

/// The kind of a non-public address, or `None` for a public one. IPv6 forms that embed an IPv4
/// address (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address.
pub fn classify_ip(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` is anything but a public unicast address.
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    classify_ip(ip).is_some()
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    Some(match ip.octets() {
        [0, ..] => Unspecified,
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => Private,
        [127, ..] => Loopback,
        [169, 254, ..] => LinkLocal,
        [100, 64..=127, ..] => SharedCgnat,
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => Documentation,
        [192, 0, 0, _] | [198, 18..=19, ..] => Reserved,
        [224..=239, ..] => Multicast,
        [255, 255, 255, 255] => Broadcast,
        [240..=255, ..] => Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    Some(match ip.segments() {
        [0xfe80..=0xfebf, ..] => LinkLocal,
        [0xfc00..=0xfdff, ..] | [0xfec0..=0xfeff, ..] | [0x64, 0xff9b, 1, ..] => Private,
        [0xff00..=0xffff, ..] => Multicast,
        [0x2001, 0xdb8, ..] | [0x3fff, 0..=0xfff, ..] => Documentation,
        [0x100, 0, 0, 0, ..] => Reserved,
        _ => return None,
    })
}

/// The IPv4 address inside mapped (`::ffff:a.b.c.d`, `::ffff:0:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`) addresses.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match ip.segments() {
        [0, 0, 0, 0, 0, 0 | 0xffff, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo]
        | [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

fn is_localhost_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost")
}

/// The outbound policy in force, from `SWITCHBOARD_ALLOW_PRIVATE_NETWORKS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Allow private, loopback, link-local and other non-public (but unicast) destinations.
    pub allow_private: bool,
}

impl NetworkPolicy {
    /// Whether a connection may go to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), PolicyError> {
        match classify_ip(ip) {
            None => Ok(()),
            Some(class) if !class.allowed_with_private_networks() => {
                Err(PolicyError::NeverAllowed { ip, class })
            }
            Some(_) if self.allow_private => Ok(()),
            Some(class) => Err(PolicyError::Forbidden { ip, class }),
        }
    }

    /// Every address a host name resolved to must be allowed (an empty list is refused).
    pub fn check_addrs(&self, addrs: &[SocketAddr]) -> Result<(), PolicyError> {
        if addrs.is_empty() {
            return Err(PolicyError::NoAddresses);
        }
        addrs.iter().try_for_each(|addr| self.check_ip(addr.ip()))
    }

    /// The scheme and host rules that need no DNS, for a source URL: `wss://` anywhere allowed,
    /// `ws://` only to private hosts with `allow_private`, literal addresses checked at once. For
    /// a `ws://` URL with a host name, [`NetworkPolicy::check_resolved`] completes the rule after
    /// resolution.
    pub fn check_url(&self, url: &Url) -> Result<(), PolicyError> {
        match url.scheme() {
            "wss" | "ws" => self.check_endpoint(url),
            other => Err(PolicyError::UnsupportedScheme {
                scheme: other.to_owned(),
            }),
        }
    }

    /// [`NetworkPolicy::check_url`] for any outbound URL: `https://` is held to the rules of
    /// `wss://` and `http://` to those of `ws://` (the Slack Web API call).
    pub fn check_endpoint(&self, url: &Url) -> Result<(), PolicyError> {
        let insecure = match url.scheme() {
            "wss" | "https" => false,
            "ws" | "http" if self.allow_private => true,
            scheme @ ("ws" | "http") => {
                let scheme = scheme.to_owned();
                return Err(PolicyError::InsecureScheme { scheme });
            }
            other => {
                let scheme = other.to_owned();
                return Err(PolicyError::UnsupportedScheme { scheme });
            }
        };
        let ip = match url.host() {
            None => return Err(PolicyError::MissingHost),
            Some(Host::Domain(name)) if is_localhost_name(name) && !self.allow_private => {
                let host = name.to_owned();
                return Err(PolicyError::LoopbackHost { host });
            }
            Some(Host::Domain(_)) => return Ok(()),
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        self.check_ip(ip)?;
        if insecure && !is_forbidden_ip(ip) {
            let scheme = url.scheme().to_owned();
            let host = ip.to_string();
            return Err(PolicyError::InsecureSchemePublic { scheme, host });
        }
        Ok(())
    }

    /// Whether the rule for `url` can only be completed after DNS: an unencrypted URL whose host
    /// is a name (other than `localhost`), which must resolve to private or loopback addresses
    /// only. The name and port to resolve, when so.
    pub fn needs_resolution(&self, url: &Url) -> Option<(String, u16)> {
        let insecure = matches!(url.scheme(), "ws" | "http");
        match url.host() {
            Some(Host::Domain(name)) if insecure && !is_localhost_name(name) => {
                let port = url.port_or_known_default().unwrap_or(80);
                Some((name.to_owned(), port))
            }
            _ => None,
        }
    }

    /// The full check at connect time: the URL rules ([`NetworkPolicy::check_endpoint`]), every
    /// resolved address, and for `ws://` and `http://` that no resolved address is public.
    pub fn check_resolved(&self, url: &Url, addrs: &[SocketAddr]) -> Result<(), PolicyError> {
        self.check_endpoint(url)?;
        self.check_addrs(addrs)?;
        let public = addrs.iter().find(|addr| !is_forbidden_ip(addr.ip()));
        match public {
            Some(addr) if matches!(url.scheme(), "ws" | "http") => {
                let scheme = url.scheme().to_owned();
                let host = addr.ip().to_string();
                Err(PolicyError::InsecureSchemePublic { scheme, host })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::AddressClass::*;
    use super::*;

    const OPEN: NetworkPolicy = NetworkPolicy {
        allow_private: true,
    };
    const STRICT: NetworkPolicy = NetworkPolicy {
        allow_private: false,
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_forbidden_range_is_classified() {
        let cases = [
            (Unspecified, "0.0.0.0 0.1.2.3 :: ::ffff:0.0.0.0"),
            (Loopback, "127.0.0.1 127.255.0.9 ::1 ::ffff:127.0.0.1"),
            (Loopback, "64:ff9b::127.0.0.1 2002:7f00:1::"),
            (Private, "10.0.0.5 172.16.0.1 172.31.255.255 192.168.1.1"),
            (
                Private,
                "fc00::1 fd12:3456::1 fec0::1 ::ffff:10.0.0.5 ::10.0.0.5",
            ),
            (Private, "::ffff:0:192.168.0.1 64:ff9b:1::1 2002:a00:1::"),
            (
                LinkLocal,
                "169.254.169.254 fe80::1 febf::1 ::ffff:169.254.0.1",
            ),
            (SharedCgnat, "100.64.0.1 100.127.255.255"),
            (Documentation, "192.0.2.7 198.51.100.7 203.0.113.7"),
            (Documentation, "2001:db8::1 3fff::1"),
            (Reserved, "192.0.0.8 198.18.0.1 240.0.0.1 100::1"),
            (Multicast, "224.0.0.251 239.255.255.250 ff02::1"),
            (Broadcast, "255.255.255.255"),
        ];
        for (class, ips) in cases {
            for text in ips.split_whitespace() {
                assert_eq!(classify_ip(ip(text)), Some(class), "{text}");
                assert!(is_forbidden_ip(ip(text)), "{text}");
            }
        }
    }

    #[test]
    fn public_addresses_next_to_the_ranges_are_allowed() {
        let public = "1.1.1.1 8.8.8.8 9.255.255.255 11.0.0.0 172.15.255.255 172.32.0.0 169.253.1.1 \
            100.63.255.255 100.128.0.0 192.0.3.1 223.255.255.255 2606:4700::1111 2a00:1450::1 \
            fe7f::1 ::ffff:8.8.8.8 64:ff9b::8.8.8.8 2002:808:808::";
        for text in public.split_whitespace() {
            assert_eq!(classify_ip(ip(text)), None, "{text}");
            assert_eq!(STRICT.check_ip(ip(text)), Ok(()), "{text}");
        }
    }

    #[test]
    fn allow_private_opens_unicast_ranges_only() {
        for text in ["10.0.0.5", "127.0.0.1", "::1", "fe80::1", "100.64.0.1"] {
            assert_eq!(OPEN.check_ip(ip(text)), Ok(()), "{text}");
            assert!(STRICT.check_ip(ip(text)).is_err(), "{text}");
        }
        for text in ["0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1"] {
            let err = OPEN.check_ip(ip(text)).unwrap_err();
            assert!(matches!(err, PolicyError::NeverAllowed { .. }), "{text}");
        }
        let err = STRICT.check_ip(ip("10.0.0.5")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "destination 10.0.0.5 is a private address; \
             set SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true to allow it"
        );
    }

    #[test]
    fn every_resolved_address_must_be_allowed() {
        let public: SocketAddr = "8.8.8.8:443".parse().unwrap();
        let private: SocketAddr = "[fd00::1]:443".parse().unwrap();
        assert_eq!(STRICT.check_addrs(&[public]), Ok(()));
        assert!(STRICT.check_addrs(&[public, private]).is_err());
        assert_eq!(STRICT.check_addrs(&[]), Err(PolicyError::NoAddresses));
    }

    /// `(allow_private, url, expected)`: `"ok"` or the name of the error variant.
    const URL_CASES: &[(bool, &str, &str)] = &[
        (false, "wss://feed.example.com/socket", "ok"),
        (false, "wss://8.8.8.8/", "ok"),
        (true, "wss://10.1.2.3/", "ok"),
        (true, "ws://127.0.0.1:8080/", "ok"),
        (true, "ws://[::1]:8080/", "ok"),
        (true, "ws://relay.internal/", "ok"),
        (true, "ws://localhost:9000/", "ok"),
        (false, "ws://127.0.0.1/", "InsecureScheme"),
        (false, "ws://feed.example.com/", "InsecureScheme"),
        (true, "ws://8.8.8.8/", "InsecureSchemePublic"),
        (false, "wss://10.0.0.5/", "Forbidden"),
        (false, "wss://[::ffff:7f00:1]/", "Forbidden"),
        // The WHATWG parser normalises odd IPv4 spellings, so they cannot sneak past.
        (false, "wss://2130706433/", "Forbidden"),
        (false, "wss://0x7f.1/", "Forbidden"),
        (true, "wss://0.0.0.0/", "NeverAllowed"),
        (false, "wss://LocalHost./", "LoopbackHost"),
        (false, "wss://a.localhost/", "LoopbackHost"),
        (true, "https://example.com/", "UnsupportedScheme"),
        (true, "http://10.0.0.1/", "UnsupportedScheme"),
    ];

    #[test]
    fn url_scheme_and_host_rules() {
        for &(allow_private, url, expected) in URL_CASES {
            let policy = if allow_private { OPEN } else { STRICT };
            let outcome = policy.check_url(&Url::parse(url).unwrap());
            let name = outcome.map_or_else(|e| format!("{e:?}"), |()| "ok".to_owned());
            let name = name.split([' ', '{']).next().unwrap();
            assert_eq!(name, expected, "{url} with allow_private={allow_private}");
        }
    }

    #[test]
    fn resolved_ws_hosts_must_all_be_private() {
        let url = Url::parse("ws://relay.internal:8080/").unwrap();
        let private: SocketAddr = "10.0.0.9:8080".parse().unwrap();
        let public: SocketAddr = "93.184.216.34:8080".parse().unwrap();
        assert_eq!(OPEN.check_resolved(&url, &[private]), Ok(()));
        let err = OPEN.check_resolved(&url, &[private, public]).unwrap_err();
        assert!(matches!(err, PolicyError::InsecureSchemePublic { .. }));
        let secure = Url::parse("wss://feed.example.com/").unwrap();
        assert_eq!(STRICT.check_resolved(&secure, &[public]), Ok(()));
        assert!(
            NetworkPolicy::default()
                .check_resolved(&secure, &[private])
                .is_err()
        );
    }

    #[test]
    fn http_endpoints_follow_the_websocket_rules() {
        let url = |text: &str| Url::parse(text).unwrap();
        assert_eq!(STRICT.check_endpoint(&url("https://slack.com/api")), Ok(()));
        let err = STRICT
            .check_endpoint(&url("http://127.0.0.1:9/api"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unencrypted http:// URLs are refused; use https://, or set \
             SWITCHBOARD_ALLOW_PRIVATE_NETWORKS=true to use http:// to private or loopback hosts"
        );
        assert_eq!(OPEN.check_endpoint(&url("http://127.0.0.1:9/api")), Ok(()));
        let err = OPEN.check_endpoint(&url("http://8.8.8.8/api")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unencrypted http:// to the public address 8.8.8.8 is refused; use https://"
        );
        assert!(matches!(
            STRICT.check_endpoint(&url("https://localhost:8443/api")),
            Err(PolicyError::LoopbackHost { .. })
        ));
        // A source URL never takes an HTTP scheme, whatever the endpoint rules allow.
        assert!(matches!(
            OPEN.check_url(&url("https://example.com/")),
            Err(PolicyError::UnsupportedScheme { .. })
        ));
        let public: SocketAddr = "93.184.216.34:80".parse().unwrap();
        let private: SocketAddr = "10.0.0.9:80".parse().unwrap();
        let api = url("http://relay.internal/api");
        assert_eq!(OPEN.check_resolved(&api, &[private]), Ok(()));
        assert!(matches!(
            OPEN.check_resolved(&api, &[public]),
            Err(PolicyError::InsecureSchemePublic { .. })
        ));
        assert!(matches!(
            STRICT.check_resolved(&url("https://api.example.com/"), &[private]),
            Err(PolicyError::Forbidden { .. })
        ));
    }

    #[test]
    fn only_unencrypted_host_names_wait_for_dns() {
        let needs = |text: &str| OPEN.needs_resolution(&Url::parse(text).unwrap());
        assert_eq!(
            needs("ws://relay.internal:8080/"),
            Some(("relay.internal".to_owned(), 8080))
        );
        assert_eq!(
            needs("ws://feed.example.com/"),
            Some(("feed.example.com".to_owned(), 80))
        );
        assert_eq!(
            needs("http://api.internal/"),
            Some(("api.internal".to_owned(), 80))
        );
        for settled in [
            "wss://feed.example.com/",
            "ws://localhost:9000/",
            "ws://127.0.0.1:9000/",
            "ws://[::1]:9000/",
            "https://slack.com/api",
        ] {
            assert_eq!(needs(settled), None, "{settled}");
        }
    }
}
