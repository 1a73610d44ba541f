//! Lower-case hex of bytes, for ids and names derived from digests.
//!
//! Why this exists: ids are hashed on every message's path (turn ids, send keys), and
//! formatting each byte with `format!` allocated a string per byte: a tenth of the pipeline
//! benchmark's instructions.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex, two digits a byte.
pub fn lower(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lower_case_digits_a_byte() {
        for (bytes, want) in [
            (&[][..], ""),
            (&[0x00][..], "00"),
            (&[0x0f, 0xf0, 0xff][..], "0ff0ff"),
            (&[0xde, 0xad, 0xbe, 0xef, 0x01][..], "deadbeef01"),
        ] {
            assert_eq!(lower(bytes), want);
            let by_format: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(lower(bytes), by_format);
        }
    }
}
