//! Who may ask the ops endpoint: the bearer-token check and the `Host` allowlist, as pure
//! decisions (no I/O), table-tested here and applied by the endpoint's middleware.
//!
//! Why this file exists: the endpoint shows room ids, owners and error texts. A token
//! (config `ops.token`) keeps `/status` and `/metrics` to the people who hold it, compared
//! in constant time; the `Host` allowlist (config `ops.allowed_hosts`) defeats DNS
//! rebinding, where a web page on an attacker's name that resolves to the bot's address
//! would otherwise read the endpoint from the operator's own browser: such a browser sends
//! the attacker's name as `Host`, which is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::config::Secret;

/// The authorization scheme of `Authorization: Bearer <token>` (case-insensitive, RFC 7235).
const BEARER_SCHEME: &str = "bearer";
/// Host names always accepted: a person reaching the endpoint through loopback.
const LOOPBACK_NAMES: [&str; 1] = ["localhost"];

/// Whether `given` equals `expected`, in time that depends only on the length of
/// `expected` (the configured token): neither where they differ nor the given length
/// shows in the timing.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        diff |= usize::from(byte ^ given.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The token of an `Authorization` header value, when it is a bearer credential.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case(BEARER_SCHEME) && !token.is_empty()).then_some(token)
}

/// The answer to a request on a guarded path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No token is configured, or the request carries it.
    Allowed,
    /// A token is configured and the request carries none, or another one.
    Denied,
}

/// Whether a request with this `Authorization` header may read a guarded path, when the
/// endpoint's token is `expected` (unset or empty: no token needed).
pub fn authorize(expected: Option<&Secret>, authorization: Option<&str>) -> Auth {
    let Some(expected) = expected.filter(|t| !t.is_empty()) else {
        return Auth::Allowed;
    };
    match authorization.and_then(bearer_token) {
        Some(given) if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) => {
            Auth::Allowed
        }
        _ => Auth::Denied,
    }
}

/// The host part of a `Host` header (or URI authority): lower case, without the port, the
/// IPv6 brackets or a trailing dot. `None` for a value that is not a host.
pub fn host_of(value: &str) -> Option<String> {
    let value = value.trim();
    if let Ok(v6) = value.parse::<Ipv6Addr>() {
        // A bare IPv6 address (an `ops.allowed_hosts` entry; never a valid `Host`).
        return Some(v6.to_string());
    }
    if let Some(rest) = value.strip_prefix('[') {
        // [v6] or [v6]:port
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside.parse::<Ipv6Addr>().ok().map(|v6| v6.to_string());
    }
    let host = match value.rsplit_once(':') {
        Some((host, port)) if is_port(port) && !host.contains(':') => host,
        Some(_) => return None,
        None => value,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    valid.then(|| host.to_ascii_lowercase())
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The `Host` names the endpoint answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAllowlist {
    hosts: Vec<String>,
}

impl HostAllowlist {
    /// Loopback names and addresses, the address of `bind` (unless unspecified, such as
    /// `0.0.0.0`), and `extra` (config `ops.allowed_hosts`; entries that are not host
    /// names are left out, `check` refuses them at start-up).
    pub fn new(bind: SocketAddr, extra: &[String]) -> Self {
        let mut hosts: Vec<String> = LOOPBACK_NAMES.iter().map(|n| (*n).to_owned()).collect();
        hosts.push(IpAddr::V4(Ipv4Addr::LOCALHOST).to_string());
        hosts.push(IpAddr::V6(Ipv6Addr::LOCALHOST).to_string());
        if !bind.ip().is_unspecified() {
            hosts.push(bind.ip().to_string());
        }
        hosts.extend(extra.iter().filter_map(|h| host_of(h)));
        hosts.sort();
        hosts.dedup();
        HostAllowlist { hosts }
    }

    /// Whether a request whose `Host` (or HTTP/2 authority) is `host` may be answered. A
    /// request without one is refused: every browser sends it.
    pub fn allows(&self, host: Option<&str>) -> bool {
        host.and_then(host_of)
            .is_some_and(|h| self.hosts.contains(&h))
    }

    /// The accepted names (for the start-up log).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

/// Whether `entry` can be an `ops.allowed_hosts` entry (a host name or address, no port,
/// no scheme, no path).
pub fn valid_allowed_host(entry: &str) -> bool {
    let entry = entry.trim();
    let bare = entry.trim_start_matches('[').trim_end_matches(']');
    host_of(entry).is_some() && (bare.parse::<Ipv6Addr>().is_ok() || !entry.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        for (a, b, equal) in [
            ("secret", "secret", true),
            ("secret", "secreT", false),
            ("secret", "secret2", false),
            ("", "x", false),
            ("", "", true),
            ("secret\0", "secret", false),
            ("secre", "secret", false),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                equal,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn authorization_table() {
        let token = Secret::new("s3cret-token-0123456789");
        let empty = Secret::new("  ");
        let cases: &[(Option<&Secret>, Option<&str>, Auth)] = &[
            (None, None, Auth::Allowed),
            (None, Some("Bearer anything"), Auth::Allowed),
            (Some(&empty), None, Auth::Allowed),
            (Some(&token), None, Auth::Denied),
            (Some(&token), Some(""), Auth::Denied),
            (Some(&token), Some("Bearer"), Auth::Denied),
            (Some(&token), Some("Bearer "), Auth::Denied),
            (Some(&token), Some("Bearer wrong"), Auth::Denied),
            (
                Some(&token),
                Some("Bearer s3cret-token-012345678"),
                Auth::Denied,
            ),
            (
                Some(&token),
                Some("Bearer s3cret-token-01234567890"),
                Auth::Denied,
            ),
            (
                Some(&token),
                Some("Basic s3cret-token-0123456789"),
                Auth::Denied,
            ),
            (Some(&token), Some("s3cret-token-0123456789"), Auth::Denied),
            (
                Some(&token),
                Some("Bearer s3cret-token-0123456789"),
                Auth::Allowed,
            ),
            (
                Some(&token),
                Some("bearer s3cret-token-0123456789"),
                Auth::Allowed,
            ),
            (
                Some(&token),
                Some(" Bearer  s3cret-token-0123456789 "),
                Auth::Allowed,
            ),
        ];
        for (expected, header, answer) in cases {
            assert_eq!(authorize(*expected, *header), *answer, "{header:?}");
        }
    }

    #[test]
    fn host_parsing_table() {
        for (value, host) in [
            ("localhost", Some("localhost")),
            ("LOCALHOST:9797", Some("localhost")),
            ("127.0.0.1:9797", Some("127.0.0.1")),
            ("[::1]:9797", Some("::1")),
            ("[::1]", Some("::1")),
            ("surfaces.internal.", Some("surfaces.internal")),
            ("evil.example:80", Some("evil.example")),
            ("", None),
            (":9797", None),
            ("[::1]x", None),
            ("[nope]:1", None),
            ("a:b:c", None),
            ("host:port", None),
            ("user@host", None),
            ("host/path", None),
            ("host name", None),
        ] {
            assert_eq!(host_of(value).as_deref(), host, "{value:?}");
        }
    }

    #[test]
    fn host_allowlist_table() {
        let loopback = HostAllowlist::new("127.0.0.1:9797".parse().unwrap(), &[]);
        let container = HostAllowlist::new("0.0.0.0:9797".parse().unwrap(), &[]);
        let private = HostAllowlist::new(
            "10.1.2.3:9797".parse().unwrap(),
            &["surfaces".to_owned(), "Ops.Example.org".to_owned()],
        );
        for (list, host, allowed) in [
            (&loopback, Some("127.0.0.1:9797"), true),
            (&loopback, Some("localhost:9797"), true),
            (&loopback, Some("[::1]:9797"), true),
            (&loopback, Some("evil.example:9797"), false),
            (&loopback, Some("localhost.evil.example"), false),
            (&loopback, Some("10.1.2.3:9797"), false),
            (&loopback, None, false),
            (&loopback, Some(""), false),
            (&container, Some("127.0.0.1:9797"), true),
            (&container, Some("0.0.0.0:9797"), false),
            (&container, Some("surfaces:9797"), false),
            (&private, Some("10.1.2.3:9797"), true),
            (&private, Some("surfaces:9797"), true),
            (&private, Some("ops.example.org"), true),
            (&private, Some("other.example.org"), false),
        ] {
            assert_eq!(list.allows(host), allowed, "{host:?} in {:?}", list.hosts());
        }
    }

    #[test]
    fn allowed_host_entries() {
        for (entry, ok) in [
            ("surfaces", true),
            ("ops.example.org", true),
            ("10.0.0.1", true),
            ("::1", true),
            ("[::1]", true),
            ("surfaces:9797", false),
            ("http://surfaces", false),
            ("", false),
            ("*", false),
        ] {
            assert_eq!(valid_allowed_host(entry), ok, "{entry:?}");
        }
    }
}
