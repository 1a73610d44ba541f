//! Our own reading of `mxc://` media URIs, done before anything from ruma touches them.
//!
//! Why this exists: a media URI is written by whoever sent the message, so it is hostile
//! input. ruma's `MxcUri::parts` (ruma-identifiers-validation 0.12, `mxc_uri::validate`)
//! stores the position of the `/` in a `u8` and unwraps it, so a valid but long server name
//! (250 characters and more) panics inside it and takes the room actor down with it. This
//! module checks the spec's grammar itself and hands back the two parts as plain strings;
//! the media code builds its download URLs from those and never calls `parts`.
//!
//! Grammar (Matrix spec, "Server name" and "Matrix Content (mxc://) URIs"):
//! `mxc://<server-name>/<media-id>`, where `server-name = host [ ":" port ]`, `host` is an
//! IPv4 address, a bracketed IPv6 address or a DNS name (letters, digits, `-` and `.`),
//! `port` is 1 to 5 digits, the whole server name is at most [`MAX_SERVER_NAME_LEN`]
//! characters, and the media id is one or more of `[A-Za-z0-9_-]`. On top of the grammar,
//! each label of a DNS name is at most [`MAX_DNS_LABEL_LEN`] characters (RFC 1035): a longer
//! one can never resolve, so such a link is refused at once instead of sending the homeserver
//! after it.

/// The scheme of Matrix media URIs.
pub const MXC_SCHEME: &str = "mxc://";
/// Longest server name the spec allows.
pub const MAX_SERVER_NAME_LEN: usize = 255;
/// Longest label of a DNS name (RFC 1035).
pub const MAX_DNS_LABEL_LEN: usize = 63;
/// Longest media id we accept (the spec sets no bound; homeservers mint ids of a few dozen
/// characters).
pub const MAX_MEDIA_ID_LEN: usize = 255;

/// Why a media URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MxcError {
    /// It does not start with `mxc://`.
    #[error("not an mxc:// URI")]
    Scheme,
    /// No `/` between the server name and the media id.
    #[error("no media id")]
    MissingMediaId,
    /// The server name is empty, too long or not per the grammar.
    #[error("malformed server name")]
    ServerName,
    /// The media id is empty, too long or has characters outside `[A-Za-z0-9_-]`.
    #[error("malformed media id")]
    MediaId,
}

/// The two parts of a valid media URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mxc<'a> {
    /// The server name (`example.org`, `10.0.0.1:8448`, `[::1]`).
    pub server: &'a str,
    /// The media id.
    pub media_id: &'a str,
}

/// Reads `uri` as `mxc://<server-name>/<media-id>` (see the module docs).
pub fn parse_mxc(uri: &str) -> Result<Mxc<'_>, MxcError> {
    let rest = uri.strip_prefix(MXC_SCHEME).ok_or(MxcError::Scheme)?;
    let (server, media_id) = rest.split_once('/').ok_or(MxcError::MissingMediaId)?;
    if !is_server_name(server) {
        return Err(MxcError::ServerName);
    }
    if media_id.is_empty()
        || media_id.len() > MAX_MEDIA_ID_LEN
        || !media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(MxcError::MediaId);
    }
    Ok(Mxc { server, media_id })
}

/// `host [ ":" port ]` per the spec, at most [`MAX_SERVER_NAME_LEN`] long.
pub fn is_server_name(server: &str) -> bool {
    if server.is_empty() || server.len() > MAX_SERVER_NAME_LEN {
        return false;
    }
    let (host, port) = if let Some(after) = server.strip_prefix('[') {
        // `[IPv6]` or `[IPv6]:port`.
        let Some((inside, tail)) = after.split_once(']') else {
            return false;
        };
        if !is_ipv6_literal(inside) {
            return false;
        }
        match tail {
            "" => return true,
            _ => match tail.strip_prefix(':') {
                Some(port) => return is_port(port),
                None => return false,
            },
        }
    } else {
        match server.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (server, None),
        }
    };
    if let Some(port) = port {
        if !is_port(port) {
            return false;
        }
    }
    // IPv4 addresses are made of DNS characters too, so this covers both.
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        && host
            .split('.')
            .all(|label| label.len() <= MAX_DNS_LABEL_LEN)
}

fn is_port(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

/// `2*45` of hex digits, `:` and `.` (the spec's `IPv6char`), and a real IPv6 address.
fn is_ipv6_literal(text: &str) -> bool {
    (2..=45).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        && text.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mxc_table() {
        let long = |n: usize| format!("mxc://{}/abc", "a".repeat(n));
        // A server name of `n` characters made of short labels (`a.a.a…`).
        let dotted = |n: usize| {
            let name: String = (0..n).map(|i| if i % 2 == 0 { 'a' } else { '.' }).collect();
            let name = if name.ends_with('.') {
                format!("{}b", &name[..n - 1])
            } else {
                name
            };
            format!("mxc://{name}/abc")
        };
        let ok = |server: &str, media_id: &str| Ok((server.to_owned(), media_id.to_owned()));
        type Want = Result<(String, String), MxcError>;
        let cases: Vec<(String, Want)> = vec![
            (
                "mxc://example.org/AbC123".into(),
                ok("example.org", "AbC123"),
            ),
            ("mxc://example.org/a_b-c".into(), ok("example.org", "a_b-c")),
            ("mxc://10.0.0.1:8448/x".into(), ok("10.0.0.1:8448", "x")),
            ("mxc://[::1]/x".into(), ok("[::1]", "x")),
            (
                "mxc://[2001:db8::1]:8448/x".into(),
                ok("[2001:db8::1]:8448", "x"),
            ),
            ("mxc://localhost/x".into(), ok("localhost", "x")),
            ("https://example.org/x".into(), Err(MxcError::Scheme)),
            ("MXC://example.org/x".into(), Err(MxcError::Scheme)),
            ("".into(), Err(MxcError::Scheme)),
            ("mxc://example.org".into(), Err(MxcError::MissingMediaId)),
            ("mxc:///x".into(), Err(MxcError::ServerName)),
            ("mxc://exa mple.org/x".into(), Err(MxcError::ServerName)),
            ("mxc://user@example.org/x".into(), Err(MxcError::ServerName)),
            ("mxc://example.org:/x".into(), Err(MxcError::ServerName)),
            (
                "mxc://example.org:123456/x".into(),
                Err(MxcError::ServerName),
            ),
            ("mxc://example.org:80a/x".into(), Err(MxcError::ServerName)),
            ("mxc://[::1/x".into(), Err(MxcError::ServerName)),
            ("mxc://[zz::1]/x".into(), Err(MxcError::ServerName)),
            ("mxc://[::1]x/x".into(), Err(MxcError::ServerName)),
            ("mxc://example.org/".into(), Err(MxcError::MediaId)),
            ("mxc://example.org/a/b".into(), Err(MxcError::MediaId)),
            ("mxc://example.org/../x".into(), Err(MxcError::MediaId)),
            ("mxc://example.org/a%2Fb".into(), Err(MxcError::MediaId)),
            (
                format!("mxc://example.org/{}", "a".repeat(256)),
                Err(MxcError::MediaId),
            ),
            // The lengths that make ruma panic are fine here when the labels are...
            (dotted(250), ok(&dotted(250)[6..256], "abc")),
            (dotted(255), ok(&dotted(255)[6..261], "abc")),
            (
                format!("mxc://{}/abc", "a".repeat(63)),
                ok(&"a".repeat(63), "abc"),
            ),
            // ...but a label longer than DNS allows is not...
            (long(64), Err(MxcError::ServerName)),
            (long(250), Err(MxcError::ServerName)),
            // ...and one past the spec's bound is refused.
            (dotted(256), Err(MxcError::ServerName)),
            (long(10_000), Err(MxcError::ServerName)),
        ];
        for (uri, want) in cases {
            let got = parse_mxc(&uri).map(|m| (m.server.to_owned(), m.media_id.to_owned()));
            assert_eq!(got, want, "{uri}");
        }
    }

    /// Documents the upstream bug this module works around: when this starts failing, ruma
    /// no longer panics on long server names (the workaround can then be reconsidered).
    #[test]
    fn ruma_mxc_parts_panics_on_long_server_names() {
        use matrix_sdk::ruma::OwnedMxcUri;
        let uri = OwnedMxcUri::from(format!("mxc://{}/abc", "a".repeat(250)));
        let outcome =
            std::panic::catch_unwind(|| uri.parts().map(|(s, m)| (s.to_string(), m.to_owned())));
        assert!(
            outcome.is_err(),
            "ruma's MxcUri::parts no longer panics on a 250-character server name: {outcome:?}"
        );
        // Our parser refuses it calmly (a 250-character label never resolves).
        assert_eq!(parse_mxc(uri.as_str()), Err(MxcError::ServerName));
    }
}
