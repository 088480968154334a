//! Tunnel policy: where record and audit may open a raw tunnel for a host they do not
//! intercept (`--tunnel HOST`).
//!
//! Record mode as an `HTTPS_PROXY` would otherwise be an open proxy: a `CONNECT
//! 127.0.0.1:PORT` would reach any service on the machine, including graph-vcr itself. So a
//! tunnel goes only to a host on the list (default: the Entra ID sign-in hosts, which a Graph
//! client must reach to get its token), and never to a loopback, link-local, private or
//! unspecified address unless that host is named on the list itself (a wildcard does not
//! name it), and never to graph-vcr's own listener. The host is resolved once, checked, and
//! the tunnel connects to exactly the addresses that passed.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

/// Tunnelled by default: Entra ID's sign-in hosts, global and national clouds.
pub const DEFAULT_TUNNEL: &[&str] = &[
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
];

/// The hosts a tunnel may go to, and graph-vcr's own address.
#[derive(Debug)]
pub struct TunnelPolicy {
    /// Exact host names or addresses, or `*.suffix`, or `*` for any public host.
    hosts: Vec<String>,
    own: OnceLock<SocketAddr>,
}

impl TunnelPolicy {
    /// `hosts` already normalized (lower-case, no brackets); empty: [`DEFAULT_TUNNEL`].
    pub fn new(hosts: Vec<String>) -> Self {
        let hosts = if hosts.is_empty() {
            DEFAULT_TUNNEL.iter().map(|h| h.to_string()).collect()
        } else {
            hosts
        };
        Self {
            hosts,
            own: OnceLock::new(),
        }
    }

    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// graph-vcr's own listening address, once bound: never a tunnel's destination.
    pub fn set_own(&self, addr: SocketAddr) {
        let _ = self.own.set(addr);
    }

    fn named(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }

    fn listed(&self, host: &str) -> bool {
        self.named(host)
            || self.hosts.iter().any(|h| {
                h == "*"
                    || h.strip_prefix("*.")
                        .is_some_and(|suffix| host.ends_with(&format!(".{suffix}")))
            })
    }

    /// The addresses a tunnel to `host:port` may connect to, or why it may not.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if !self.listed(host) {
            return Err(format!(
                "{host} is not on the tunnel list (--tunnel; now: {})",
                self.hosts.join(", ")
            ));
        }
        let bare = host.trim_matches(['[', ']']);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("{host} does not resolve"));
        }
        let own = self.own.get().copied();
        for addr in &addrs {
            if own.is_some_and(|own| is_self(*addr, own)) {
                return Err(format!("{host}:{port} is graph-vcr itself"));
            }
            if is_internal(addr.ip()) && !self.named(host) {
                return Err(format!(
                    "{host} resolves to {}, a loopback, link-local or private address; name it with --tunnel {host} to allow it",
                    addr.ip()
                ));
            }
        }
        Ok(addrs)
    }
}

/// Whether `addr` is the listener `own` (any local address on its port counts when it listens
/// on all of them).
fn is_self(addr: SocketAddr, own: SocketAddr) -> bool {
    addr.port() == own.port()
        && (addr.ip() == own.ip() || own.ip().is_unspecified() || addr.ip().is_loopback())
}

/// Loopback, unspecified, link-local, private (RFC 1918, unique local) or shared (CGNAT).
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_private()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xffc0) == 0xfe80
                || (first & 0xfe00) == 0xfc00
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                is_internal(ip.parse().unwrap_or(IpAddr::from([8, 8, 8, 8]))),
                "{ip}"
            );
        }
        for ip in ["20.190.160.1", "40.126.0.1", "2603:1030::1"] {
            assert!(
                !is_internal(ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{ip}"
            );
        }
    }

    #[tokio::test]
    async fn only_listed_hosts_and_internal_ones_only_by_name() {
        let policy = TunnelPolicy::new(vec!["*".into()]);
        assert!(
            policy.resolve("127.0.0.1", 80).await.is_err(),
            "a wildcard names nothing"
        );
        let policy = TunnelPolicy::new(vec!["127.0.0.1".into(), "*.example.test".into()]);
        assert!(policy.resolve("127.0.0.1", 80).await.is_ok());
        assert!(policy.resolve("localhost", 80).await.is_err(), "not listed");
        policy.set_own(
            "127.0.0.1:8080"
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
        );
        let own = policy.resolve("127.0.0.1", 8080).await;
        assert!(own.is_err_and(|e| e.contains("graph-vcr itself")));
        let default = TunnelPolicy::new(vec![]);
        assert!(default.listed("login.microsoftonline.com") && !default.listed("evil.example"));
        assert!(policy.listed("a.example.test") && !policy.listed("example.test"));
    }
}
