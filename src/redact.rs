//! Keeping internal addresses and credentials out of what people and logs see.
//!
//! Why this exists: error texts come from libraries (reqwest, hyper, the OS) and routinely
//! carry the URL that failed, an agent's `base_url` with its `user:pass@` included, or the
//! `ip:port` of an internal service. Two audiences, two rules, both pure and table-tested:
//!
//! - [`strip_credentials`], for the operator's log and `/status`: URLs stay (they help the
//!   operator), the user information before `@` never does (it becomes
//!   [`CREDENTIALS_PLACEHOLDER`]).
//! - [`for_people`], for every text that reaches a room: URLs, `user:pass@host` forms, IP
//!   addresses (v4 and v6, with or without a port) and `host:port` pairs are replaced by
//!   [`crate::texts::ADDRESS_HIDDEN`]. A bare host name without a scheme or port is left alone
//!   (it cannot be told from a file name such as `report.pdf`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// What stands in the log for the credentials of a URL.
pub const CREDENTIALS_PLACEHOLDER: &str = "***";

/// Characters that end a word when looking for URLs and addresses (besides whitespace): the
/// brackets and quotes errors wrap URLs in, and list separators.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')' | '<' | '>' | '"' | '\'' | '`' | ',' | ';' | '{' | '}'
        )
}

/// Punctuation that ends a sentence rather than an address (`… at 10.0.0.1:80.`).
fn trailing_punctuation(word: &str) -> usize {
    word.len() - word.trim_end_matches(['.', ':', '!', '?', '\\']).len()
}

/// Splits `text` into words and the delimiters between them and rebuilds it with each word
/// passed through `map` (trailing sentence punctuation is kept out of the word).
fn map_words(text: &str, map: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !is_delimiter(c)).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(is_delimiter).unwrap_or(rest.len());
        let word = &rest[..end];
        rest = &rest[end..];
        let cut = trailing_punctuation(word);
        let (core, tail) = word.split_at(word.len() - cut);
        match map(core) {
            Some(replaced) => out.push_str(&replaced),
            None => out.push_str(core),
        }
        out.push_str(tail);
    }
    out
}

/// The byte range of the user information of a URL-like `word` (`scheme://user:pass@host`),
/// `@` excluded.
fn userinfo_range(word: &str) -> Option<(usize, usize)> {
    let start = word.find("://")? + 3;
    let authority_end = word[start..]
        .find(['/', '?', '#'])
        .map_or(word.len(), |i| start + i);
    let at = word[start..authority_end].rfind('@')?;
    Some((start, start + at))
}

/// `text` with the credentials of every URL in it replaced by [`CREDENTIALS_PLACEHOLDER`];
/// the rest of each URL is kept. For the operator's log.
pub fn strip_credentials(text: &str) -> String {
    map_words(text, |word| {
        let (start, end) = userinfo_range(word)?;
        Some(format!(
            "{}{CREDENTIALS_PLACEHOLDER}{}",
            &word[..start],
            &word[end..]
        ))
    })
}

/// Whether `word` is a network address: a URL, `user:pass@host`, an IP address (with or
/// without a port, IPv6 with or without brackets) or `host:port`.
pub fn is_address(word: &str) -> bool {
    if word.contains("://") {
        return true;
    }
    if let Some((before, _)) = word.split_once('@') {
        // `user:pass@host` (an e-mail address or a Matrix id has no `:` before the `@`).
        if before.contains(':') && !before.starts_with('@') {
            return true;
        }
    }
    if word.parse::<IpAddr>().is_ok() || word.parse::<SocketAddr>().is_ok() {
        return true;
    }
    if let Some(inner) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
        if inner.parse::<Ipv6Addr>().is_ok() {
            return true;
        }
    }
    if let Some((host, port)) = word.rsplit_once(':') {
        return is_port(port) && is_host_name(host);
    }
    false
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.parse::<u16>().is_ok()
}

/// A DNS name with a dot (`agent.internal`) or `localhost`; a Matrix id (`@a:b`, `!r:b`)
/// is not one.
fn is_host_name(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && host
            .chars()
            .any(|c| c.is_ascii_alphabetic() || c.is_ascii_digit())
}

/// `text` with every address in it (see [`is_address`]) replaced by
/// [`crate::texts::ADDRESS_HIDDEN`], credentials included. For everything shown in a room.
pub fn for_people(text: &str) -> String {
    map_words(text, |word| {
        is_address(word).then(|| crate::texts::ADDRESS_HIDDEN.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIDDEN: &str = crate::texts::ADDRESS_HIDDEN;

    #[test]
    fn credentials_are_stripped_for_the_log() {
        let cases = [
            ("http://user:pass@agent:8080/v1", "http://***@agent:8080/v1"),
            ("https://token@h/", "https://***@h/"),
            (
                "error sending request for url (http://u:p%40ss@10.0.0.5:9/v1/chats/x): refused",
                "error sending request for url (http://***@10.0.0.5:9/v1/chats/x): refused",
            ),
            (
                "agent base URL \"http://u:p@h\" must not have a query",
                "agent base URL \"http://***@h\" must not have a query",
            ),
            // The `@` of a path or query is not user information.
            ("http://h/a@b?c=d@e", "http://h/a@b?c=d@e"),
            ("no url here: user:pass", "no url here: user:pass"),
            ("http://plain.example/x", "http://plain.example/x"),
            ("", ""),
        ];
        for (text, want) in cases {
            assert_eq!(strip_credentials(text), want, "{text}");
        }
    }

    #[test]
    fn addresses_are_hidden_from_people() {
        let cases: Vec<(&str, String)> = vec![
            (
                "error sending request for url (http://user:pass@127.0.0.1:9/v1/chats/sfc-1/context): \
                 client error (Connect): tcp connect error: Connection refused (os error 111)",
                format!(
                    "error sending request for url ({HIDDEN}): client error (Connect): \
                     tcp connect error: Connection refused (os error 111)"
                ),
            ),
            ("connect to 10.1.2.3:8080 failed", format!("connect to {HIDDEN} failed")),
            ("connect to 10.1.2.3 failed.", format!("connect to {HIDDEN} failed.")),
            ("peer [::1]:8080 reset", format!("peer {HIDDEN} reset")),
            ("peer fe80::1 reset", format!("peer {HIDDEN} reset")),
            ("dns: agent.internal:443: nxdomain", format!("dns: {HIDDEN}: nxdomain")),
            ("at localhost:9", format!("at {HIDDEN}")),
            ("creds user:pass@host leaked", format!("creds {HIDDEN} leaked")),
            ("see https://example.org.", format!("see {HIDDEN}.")),
            // Not addresses: left as they are.
            ("report.pdf is 3 MiB", "report.pdf is 3 MiB".to_owned()),
            ("agent failed (HTTP 502)", "agent failed (HTTP 502)".to_owned()),
            ("@alice:example.org said", "@alice:example.org said".to_owned()),
            ("room !abc:example.org", "room !abc:example.org".to_owned()),
            ("mail bob@example.org", "mail bob@example.org".to_owned()),
            ("agent turn failed: oops: 12:30", "agent turn failed: oops: 12:30".to_owned()),
            ("", String::new()),
        ];
        for (text, want) in cases {
            assert_eq!(for_people(text), want, "{text}");
        }
    }
}
