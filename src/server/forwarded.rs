//! Who a request came from and where it was addressed, when face-service runs behind a proxy.
//! A proxy says so in `Forwarded` (RFC 7239) or `X-Forwarded-For` / `-Proto` / `-Host`; anyone
//! can send those headers, so they are believed only from `--trusted-proxies`. The result is
//! worked out once per request, by the listener, and read by everything that logs, audits or
//! hands back a URL.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// Proxies whose forwarding headers are believed. A flag of `serve`.
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
#[command(next_help_heading = "Connections")]
pub struct TrustedProxies {
    /// Addresses or networks (`10.0.0.0/8,127.0.0.1`) of the proxies in front, whose
    /// `Forwarded` and `X-Forwarded-*` headers give the client's address, scheme and host.
    /// From any other peer those headers are ignored. Default: none.
    #[arg(
        long = "trusted-proxies",
        env = "FACE_SERVICE_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network
    )]
    pub networks: Vec<IpNet>,
}

/// A network, or one address as a network of one.
fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither an address nor a network like 10.0.0.0/8"))
}

/// A request's client, as the trusted proxies in front tell it (or the peer itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The client's address: the peer's, or the nearest untrusted hop the proxies name.
    pub address: IpAddr,
    /// Whether the client reached the first proxy over TLS.
    pub secure: bool,
    /// The host the client addressed (a proxy's name, behind one); `None` when no valid one
    /// was given.
    pub host: Option<String>,
}

/// The listener resolves every request's origin; a router served some other way (a test's)
/// gets the peer's, with no proxy believed.
impl<S: Send + Sync> FromRequestParts<S> for ClientOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(origin) = parts.extensions.get::<ClientOrigin>() {
            return Ok(origin.clone());
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
                peer.ip()
            });
        Ok(TrustedProxies::default().resolve(peer, &parts.headers))
    }
}

/// One hop a proxy reports: who connected to it, and how.
#[derive(Debug, Default)]
struct Hop {
    /// `None` for an address the proxy hid or that does not parse.
    address: Option<IpAddr>,
    proto: Option<String>,
    host: Option<String>,
}

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.networks.iter().any(|net| net.contains(&address))
    }

    /// The origin of a request from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientOrigin {
        let host_header = header_values(headers, "host").next_back();
        let untrusted = ClientOrigin {
            address: peer.to_canonical(),
            secure: false,
            host: host_header.filter(|h| is_host(h)).map(str::to_owned),
        };
        if !self.trusts(peer) {
            return untrusted;
        }
        let mut origin = untrusted;
        let forwarded: Vec<Hop> = header_values(headers, "forwarded")
            .flat_map(|value| value.split(','))
            .map(parse_forwarded_element)
            .collect();
        if !forwarded.is_empty() {
            // Each proxy appends the hop it was reached by: the client's element says how
            // the client reached the first proxy.
            if let Some(client) = self.client_hop(&forwarded) {
                origin.address = client.address.unwrap_or(origin.address).to_canonical();
                if let Some(proto) = &client.proto {
                    origin.secure = proto.eq_ignore_ascii_case("https");
                }
                if let Some(host) = client.host.as_deref().filter(|h| is_host(h)) {
                    origin.host = Some(host.to_owned());
                }
            }
            return origin;
        }
        let hops: Vec<Hop> = header_values(headers, "x-forwarded-for")
            .flat_map(|value| value.split(','))
            .map(|address| Hop {
                address: parse_address(address),
                ..Hop::default()
            })
            .collect();
        if let Some(client) = self.client_hop(&hops) {
            origin.address = client.address.unwrap_or(origin.address).to_canonical();
        }
        // The scheme and host the nearest proxy was reached with (it sets them, replacing
        // whatever the client sent).
        let last = |name| {
            header_values(headers, name)
                .flat_map(|value| value.split(','))
                .next_back()
                .map(str::trim)
        };
        if let Some(proto) = last("x-forwarded-proto") {
            origin.secure = proto.eq_ignore_ascii_case("https");
        }
        if let Some(host) = last("x-forwarded-host").filter(|h| is_host(h)) {
            origin.host = Some(host.to_owned());
        }
        origin
    }

    /// From the nearest hop outwards, past every trusted proxy: the first hop that is not
    /// one is the client; whatever stands left of it may be forged by the client. A hop
    /// without an address stops the walk at the last one known.
    fn client_hop<'h>(&self, hops: &'h [Hop]) -> Option<&'h Hop> {
        let mut client = None;
        for hop in hops.iter().rev() {
            let Some(address) = hop.address else { break };
            client = Some(hop);
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// One element of `Forwarded`: `for=...;proto=...;host=...`, names case-insensitive, values
/// perhaps quoted.
fn parse_forwarded_element(element: &str) -> Hop {
    let mut hop = Hop::default();
    for pair in element.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "for" => hop.address = parse_address(value),
            "proto" => hop.proto = Some(value.to_owned()),
            "host" => hop.host = Some(value.to_owned()),
            _ => {}
        }
    }
    hop
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or
/// `2001:db8::1`. `unknown` and obfuscated names (`_hidden`) are no address.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    if let Some(bracketed) = text.strip_prefix('[') {
        return bracketed.split_once(']')?.0.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

fn header_values<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> impl DoubleEndedIterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
}

/// What a host may be (a name or address, and a port), so that a forged header cannot put
/// anything else into the URLs answered.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(networks: &[&str]) -> TrustedProxies {
        TrustedProxies {
            networks: networks.iter().map(|n| parse_network(n).unwrap()).collect(),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn from_an_untrusted_peer_the_forwarding_headers_are_ignored() {
        let forged = headers(&[
            ("host", "service.example"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.9;proto=https;host=evil.example"),
        ]);
        let origin = proxies(&["10.0.0.0/8"]).resolve(ip("198.51.100.7"), &forged);
        assert_eq!(
            origin,
            ClientOrigin {
                address: ip("198.51.100.7"),
                secure: false,
                host: Some("service.example".into())
            }
        );
        // No proxies trusted at all: the same.
        assert_eq!(
            proxies(&[]).resolve(ip("10.0.0.1"), &forged).address,
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_nginx_the_client_scheme_and_host_are_the_proxys_report() {
        let from_nginx = headers(&[
            ("host", "face.example"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let origin = proxies(&["127.0.0.1"]).resolve(ip("127.0.0.1"), &from_nginx);
        assert_eq!(
            origin,
            ClientOrigin {
                address: ip("203.0.113.9"),
                secure: true,
                host: Some("face.example".into())
            }
        );
    }

    #[test]
    fn a_client_cannot_forge_its_address_past_the_trusted_chain() {
        // The client sent "X-Forwarded-For: 1.2.3.4"; the outer proxy (10.0.0.5) appended the
        // client's real address, the inner one (10.0.0.6) the outer's.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.5")]);
        let origin = proxies(&["10.0.0.0/8"]).resolve(ip("10.0.0.6"), &chain);
        assert_eq!(origin.address, ip("203.0.113.9"));
        // Every hop trusted: the outermost named one.
        let internal = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.5")]);
        let origin = proxies(&["10.0.0.0/8"]).resolve(ip("10.0.0.6"), &internal);
        assert_eq!(origin.address, ip("10.1.1.1"));
        // A hidden hop stops the walk at the last address known.
        let hidden = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.0.0.5")]);
        let origin = proxies(&["10.0.0.0/8"]).resolve(ip("10.0.0.6"), &hidden);
        assert_eq!(origin.address, ip("10.0.0.5"));
    }

    #[test]
    fn the_standard_forwarded_header_wins_and_parses_its_forms() {
        let both = headers(&[
            ("host", "inner:8003"),
            ("x-forwarded-for", "192.0.2.200"),
            (
                "forwarded",
                r#"for="[2001:db8::7]:4711";proto=https;host=face.example, for=10.0.0.5:1234"#,
            ),
        ]);
        let origin = proxies(&["10.0.0.0/8", "::1"]).resolve(ip("::1"), &both);
        assert_eq!(
            origin,
            ClientOrigin {
                address: ip("2001:db8::7"),
                secure: true,
                host: Some("face.example".into())
            }
        );
    }

    #[test]
    fn a_forged_host_never_reaches_an_answer() {
        let forged = headers(&[("host", "evil.example/phish?")]);
        assert_eq!(proxies(&[]).resolve(ip("127.0.0.1"), &forged).host, None);
        let forwarded = headers(&[
            ("host", "face.example"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example/<script>"),
        ]);
        let origin = proxies(&["127.0.0.1"]).resolve(ip("127.0.0.1"), &forwarded);
        assert_eq!(origin.host.as_deref(), Some("face.example"));
    }

    #[test]
    fn ipv4_peers_on_an_ipv6_socket_match_ipv4_networks() {
        let origin = proxies(&["127.0.0.1"]).resolve(
            ip("::ffff:127.0.0.1"),
            &headers(&[("x-forwarded-for", "203.0.113.9")]),
        );
        assert_eq!(origin.address, ip("203.0.113.9"));
    }

    #[test]
    fn a_proxy_is_an_address_or_a_network() {
        assert_eq!(
            parse_network("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            parse_network(" 10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_network("proxy.internal").is_err());
    }
}
