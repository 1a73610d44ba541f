//! Names of incoming files: what a person called a file, made safe, and where it goes.
//!
//! A file sent in a room lands in the agent's workspace at
//! `inbox/<room hash>/<event hash>-<sanitized name>` ([`inbox_path`]):
//!
//! - `<room hash>`: the first [`ROOM_HASH_BYTES`] bytes of SHA-256 of the room id, in hex; one
//!   directory per room, stable across restarts and room renames, no `!` or `:` in paths;
//! - `<event hash>`: the first [`EVENT_HASH_BYTES`] bytes of SHA-256 of the event id, in hex;
//!   event ids are unique, so two files never share a path even with the same name, and the
//!   same event (redelivered, retried) always maps to the same path;
//! - the name from [`sanitize_file_name`]: no path separators, control or invisible
//!   formatting characters, no leading dots (no hidden files, no `..`), at most
//!   [`MAX_NAME_BYTES`] bytes with the extension kept.

use sha2::{Digest, Sha256};

use super::path::RelPath;

/// Directory of incoming files in each workspace.
pub const INBOX_DIR: &str = "inbox";
/// Longest sanitized name, in bytes (the full file name adds the event hash and a dash).
pub const MAX_NAME_BYTES: usize = 120;
/// Longest extension kept whole when a name is shortened, in bytes (dot included).
pub const MAX_EXTENSION_BYTES: usize = 16;
/// The name of a file whose name has nothing usable left.
pub const FALLBACK_NAME: &str = "file";
/// Bytes of SHA-256 of the room id in its inbox directory name.
pub const ROOM_HASH_BYTES: usize = 12;
/// Bytes of SHA-256 of the event id in a file name.
pub const EVENT_HASH_BYTES: usize = 16;

/// Characters replaced by `_`: reserved on common file systems or special to shells and
/// URLs that agents may build from the name.
const REPLACED: &[char] = &[':', '*', '?', '"', '<', '>', '|'];

/// Whether `c` is dropped from names: control characters and invisible formatting
/// (zero-width, bidirectional overrides and isolates, byte order mark).
fn is_dropped(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}')
}

/// A file name safe to create in a directory: see the module docs. Never empty.
///
/// The last path component is kept (`C:\Users\a\report.pdf` → `report.pdf`).
pub fn sanitize_file_name(name: &str) -> String {
    let last = name
        .split(['/', '\\'])
        .rfind(|part| !part.trim().is_empty())
        .unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !is_dropped(*c))
        .map(|c| if REPLACED.contains(&c) { '_' } else { c })
        .collect();
    let trimmed = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    let bounded = shorten(trimmed, MAX_NAME_BYTES);
    if bounded.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        bounded
    }
}

/// `name` cut to at most `max` bytes on a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= MAX_EXTENSION_BYTES => name.split_at(dot),
        _ => (name, ""),
    };
    let stem = truncate_bytes(stem, max - ext.len());
    format!("{}{ext}", stem.trim_end())
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lowercase hex of the first `bytes` bytes of SHA-256 of `text`.
fn short_hash(text: &str, bytes: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    crate::hex::lower(&digest[..bytes])
}

/// The inbox directory of a room: `inbox/<room hash>`.
pub fn inbox_dir(room_id: &str) -> RelPath {
    RelPath::from_clean_components(&[INBOX_DIR.to_owned(), short_hash(room_id, ROOM_HASH_BYTES)])
}

/// Where the file of event `event_id` in room `room_id`, sent as `name`, is written, relative
/// to the agent's workspace root: `inbox/<room hash>/<event hash>-<sanitized name>`.
pub fn inbox_path(room_id: &str, event_id: &str, name: &str) -> RelPath {
    let file = format!(
        "{}-{}",
        short_hash(event_id, EVENT_HASH_BYTES),
        sanitize_file_name(name)
    );
    RelPath::from_clean_components(&[
        INBOX_DIR.to_owned(),
        short_hash(room_id, ROOM_HASH_BYTES),
        file,
    ])
}

/// A MIME type for a file named `name`, from its extension (for agents that give none);
/// `application/octet-stream` when unknown.
pub fn guess_mime(name: &str) -> &'static str {
    let ext = match name.rsplit_once('.') {
        Some((_, ext)) => ext.to_ascii_lowercase(),
        None => return "application/octet-stream",
    };
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn sanitize_table() {
        let cases: &[(&str, &str)] = &[
            ("report.pdf", "report.pdf"),
            ("My Report (final).pdf", "My Report (final).pdf"),
            ("résumé.pdf", "résumé.pdf"),
            ("図表.png", "図表.png"),
            // Separators: the last component is kept.
            ("../../etc/passwd", "passwd"),
            ("/etc/passwd", "passwd"),
            ("C:\\Users\\a\\report.pdf", "report.pdf"),
            ("dir/", "dir"),
            ("a/ /", "a"),
            // Leading dots and whitespace.
            (".bashrc", "bashrc"),
            ("..", FALLBACK_NAME),
            (".", FALLBACK_NAME),
            ("...x", "x"),
            (" . .hidden", "hidden"),
            ("  spaced.txt  ", "spaced.txt"),
            ("trailing.", "trailing."),
            // Control and invisible characters.
            ("a\0b.txt", "ab.txt"),
            ("line\nbreak.txt", "linebreak.txt"),
            ("tab\there", "tabhere"),
            ("del\u{7f}.txt", "del.txt"),
            ("evil\u{202E}gpj.exe", "evilgpj.exe"),
            ("zero\u{200B}width", "zerowidth"),
            ("\u{FEFF}bom.txt", "bom.txt"),
            // Reserved characters.
            ("a:b*c?.txt", "a_b_c_.txt"),
            ("<x>|\"y\"", "_x___y_"),
            // Nothing left.
            ("", FALLBACK_NAME),
            ("   ", FALLBACK_NAME),
            ("\u{1}\u{2}", FALLBACK_NAME),
            ("///", FALLBACK_NAME),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_file_name(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn long_names_are_bounded_and_keep_their_extension() {
        let long = format!("{}.pdf", "a".repeat(500));
        let s = sanitize_file_name(&long);
        assert_eq!(s.len(), MAX_NAME_BYTES);
        assert!(s.ends_with(".pdf"));

        // Multi-byte characters are never split.
        let wide = format!("{}.txt", "é".repeat(200));
        let s = sanitize_file_name(&wide);
        assert!(s.len() <= MAX_NAME_BYTES, "{}", s.len());
        assert!(s.ends_with(".txt"));
        assert!(s.starts_with('é'));

        // A long "extension" is not kept whole.
        let odd = format!("x.{}", "y".repeat(300));
        let s = sanitize_file_name(&odd);
        assert_eq!(s.len(), MAX_NAME_BYTES);
        assert!(s.starts_with("x.yyy"));

        // Exactly at the bound: unchanged.
        let exact = "b".repeat(MAX_NAME_BYTES);
        assert_eq!(sanitize_file_name(&exact), exact);
    }

    #[test]
    fn sanitized_names_are_always_safe() {
        let nasty = [
            "../../x",
            "..\\..\\x",
            ".",
            "..",
            "/",
            "\\",
            "a/b\\c",
            "\0",
            ".\u{202E}.",
            "\u{85}..",
            " ../ ",
            "x/..",
            "..\u{200B}.",
        ];
        for input in nasty {
            let s = sanitize_file_name(input);
            assert!(!s.is_empty(), "{input:?}");
            assert!(!s.contains(['/', '\\']), "{input:?} → {s:?}");
            assert!(!s.starts_with('.'), "{input:?} → {s:?}");
            assert!(!s.chars().any(is_dropped), "{input:?} → {s:?}");
            assert!(s.len() <= MAX_NAME_BYTES);
        }
    }

    #[test]
    fn inbox_paths_are_deterministic_relative_and_distinct() {
        let room = "!abc:example.org";
        let p = inbox_path(room, "$event1", "../report.pdf");
        assert_eq!(p, inbox_path(room, "$event1", "../report.pdf"));
        let s = p.as_str();
        assert!(!s.starts_with('/'));
        let parts: Vec<&str> = p.components().collect();
        assert_eq!(parts.len(), 3, "{s}");
        assert_eq!(parts[0], INBOX_DIR);
        assert_eq!(parts[1].len(), 2 * ROOM_HASH_BYTES);
        assert_eq!(parts[1], inbox_dir(room).file_name());
        assert_eq!(
            parts[2].len(),
            2 * EVENT_HASH_BYTES + 1 + "report.pdf".len()
        );
        assert!(parts[2].ends_with("-report.pdf"));
        assert!(parts[1].chars().all(|c| c.is_ascii_hexdigit()));

        // Same name, different events or rooms: different paths.
        let mut seen = HashSet::new();
        for room in ["!a:x", "!b:x"] {
            for event in ["$1", "$2", "$3"] {
                for name in ["a.txt", "a.txt\0", ".a.txt"] {
                    seen.insert((room, event, inbox_path(room, event, name)));
                }
            }
        }
        let paths: HashSet<_> = seen.iter().map(|(_, _, p)| p.clone()).collect();
        assert_eq!(
            paths.len(),
            6,
            "names that sanitize alike share a path only within one event"
        );
    }

    #[test]
    fn known_hash_value() {
        // Pinned: a change would move every inbox.
        let digest = Sha256::digest(b"$x");
        let want: String = digest[..EVENT_HASH_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            inbox_path("!r:x", "$x", "a").file_name(),
            format!("{want}-a")
        );
    }

    #[test]
    fn mime_guesses() {
        let cases = [
            ("a.PNG", "image/png"),
            ("a.jpeg", "image/jpeg"),
            ("report.pdf", "application/pdf"),
            ("notes.txt", "text/plain"),
            ("noext", "application/octet-stream"),
            ("weird.zzz", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(guess_mime(name), want, "{name}");
        }
    }
}
