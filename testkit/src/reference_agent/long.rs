//! The long-reply scenario: a turn whose text is `ref:long-reply <bytes>` is answered with a
//! markdown reply of exactly that many bytes (paragraphs, fenced code blocks, multi-byte
//! characters), so tests can show how Surfaces delivers replies past a messenger's limits.
//!
//! It exists apart from the plain reply because its content is generated, and the tests
//! compare what the person got with [`long_reply`] itself.

/// The text that asks for a long reply, followed by its size in bytes.
pub const LONG_REPLY_COMMAND: &str = "ref:long-reply ";
/// Largest long reply the agent makes (a test asking for more gets this).
pub const MAX_LONG_REPLY_BYTES: usize = 8 * 1024 * 1024;

/// The size asked for, if `text` asks for a long reply.
pub fn requested(text: &str) -> Option<usize> {
    let n: usize = text.strip_prefix(LONG_REPLY_COMMAND)?.trim().parse().ok()?;
    Some(n.min(MAX_LONG_REPLY_BYTES))
}

/// The long reply of `bytes` bytes (deterministic).
pub fn long_reply(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 256);
    let mut i = 0usize;
    while text.len() < bytes {
        if i % 5 == 4 {
            text.push_str(&format!("```rust\n// block {i}\n"));
            for line in 0..8 {
                text.push_str(&format!("let value_{line} = {i} * {line}; // ünïcödé\n"));
            }
            text.push_str("```\n\n");
        } else {
            text.push_str(&format!(
                "Paragraph {i}: the agent keeps talking, with a few multi-byte characters \
                 (é, €, 🦀) so that no cut may land inside one.\n\n"
            ));
        }
        i += 1;
    }
    let mut cut = bytes.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    while text.len() < bytes {
        text.push('.');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_replies_have_the_size_asked() {
        for n in [0, 1, 100, 1000, 200_000] {
            assert_eq!(long_reply(n).len(), n);
        }
        assert_eq!(requested("ref:long-reply 5000"), Some(5000));
        assert_eq!(requested("hello"), None);
        assert_eq!(requested("ref:long-reply x"), None);
    }
}
