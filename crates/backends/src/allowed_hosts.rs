//! `allowed_outbound_hosts`: which network destinations a component may reach.
//!
//! Entries are `scheme://host[:port]` as in Spin; `*` may stand for the scheme,
//! the host (or a leading `*.` label) and the port. A missing port means the
//! scheme's default port. Anything else is refused.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq)]
struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

/// The parsed allow-list of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" | "postgresql" => Some(5432),
        "redis" => Some(6379),
        "mysql" => Some(3306),
        _ => None,
    }
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Result<Self> {
        let mut parsed = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            let Some((scheme, rest)) = entry.split_once("://") else {
                bail!("allowed_outbound_hosts entry `{entry}` must look like scheme://host[:port]");
            };
            let rest = rest.trim_end_matches('/');
            if rest.contains('/') {
                bail!("allowed_outbound_hosts entry `{entry}` must not contain a path");
            }
            let (host, port) = match rest.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                    (host, Some(port))
                }
                _ => (rest, None),
            };
            let port = match port {
                Some("*") => None,
                Some(p) => Some(p.parse::<u16>().map_err(|_| {
                    anyhow::anyhow!("allowed_outbound_hosts entry `{entry}` has a bad port")
                })?),
                None if scheme == "*" => None,
                None => match default_port(scheme) {
                    Some(p) => Some(p),
                    None => bail!("allowed_outbound_hosts entry `{entry}` needs a port"),
                },
            };
            let host = if host == "*" {
                HostPattern::Any
            } else if let Some(suffix) = host.strip_prefix("*.") {
                HostPattern::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
            } else if host.is_empty() {
                bail!("allowed_outbound_hosts entry `{entry}` has no host");
            } else {
                HostPattern::Exact(host.to_ascii_lowercase())
            };
            let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
            parsed.push(AllowedHost { scheme, host, port });
        }
        Ok(AllowedHosts { entries: parsed })
    }

    /// Whether `scheme://host:port` may be reached.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        let scheme = if scheme == "postgresql" {
            "postgres".to_string()
        } else {
            scheme
        };
        let host = host.to_ascii_lowercase();
        self.entries.iter().any(|allowed| {
            allowed.scheme.as_deref().is_none_or(|s| s == scheme)
                && allowed.port.is_none_or(|p| p == port)
                && match &allowed.host {
                    HostPattern::Any => true,
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_entries_match_scheme_host_and_port() {
        let allowed = hosts(&["postgres://127.0.0.1:5432", "https://relay.example.com"]);
        assert!(allowed.allows("postgres", "127.0.0.1", 5432));
        assert!(!allowed.allows("postgres", "127.0.0.1", 5433));
        assert!(allowed.allows("https", "RELAY.example.com", 443));
        assert!(!allowed.allows("http", "relay.example.com", 80));
        assert!(!allowed.allows("https", "evil.example.com", 443));
    }

    #[test]
    fn wildcards() {
        let allowed = hosts(&["http://*.example.com:*", "*://localhost:8080"]);
        assert!(allowed.allows("http", "a.example.com", 9999));
        assert!(!allowed.allows("http", "example.com.evil", 80));
        assert!(allowed.allows("https", "localhost", 8080));
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        assert!(!hosts(&[]).allows("http", "127.0.0.1", 80));
    }

    #[test]
    fn malformed_entries_are_errors() {
        for bad in [
            "127.0.0.1:80",
            "http://",
            "http://h:port",
            "http://h/path",
            "ftp://h",
        ] {
            assert!(AllowedHosts::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
