//! Image dimensions from file headers, for the `w`/`h` of an `m.image` (clients size the
//! placeholder before the download). Pure and partial: PNG, GIF, JPEG and WebP; anything
//! else (or a damaged header) gives `None`, and the image is posted without dimensions.

/// Width and height of a PNG, GIF, JPEG or WebP image, from its first bytes.
pub fn image_dimensions(data: &[u8]) -> Option<(u32, u32)> {
    png(data)
        .or_else(|| gif(data))
        .or_else(|| jpeg(data))
        .or_else(|| webp(data))
        .filter(|(w, h)| *w > 0 && *h > 0)
}

fn be16(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes(
        d.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn le16(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes(
        d.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn le24(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at + 3)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}

fn png(d: &[u8]) -> Option<(u32, u32)> {
    if !d.starts_with(b"\x89PNG\r\n\x1a\n") || d.get(12..16)? != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(d.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(d.get(20..24)?.try_into().ok()?);
    Some((w, h))
}

fn gif(d: &[u8]) -> Option<(u32, u32)> {
    if !(d.starts_with(b"GIF87a") || d.starts_with(b"GIF89a")) {
        return None;
    }
    Some((le16(d, 6)?, le16(d, 8)?))
}

fn jpeg(d: &[u8]) -> Option<(u32, u32)> {
    if !d.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    loop {
        if *d.get(i)? != 0xFF {
            return None;
        }
        // Fill bytes.
        while *d.get(i + 1)? == 0xFF {
            i += 1;
        }
        let marker = *d.get(i + 1)?;
        match marker {
            // Standalone markers: no length.
            0x01 | 0xD0..=0xD7 => i += 2,
            // End of image / start of scan before any frame header: give up.
            0xD9 | 0xDA => return None,
            // Start of frame (all but DHT, JPG, DAC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let h = be16(d, i + 5)?;
                let w = be16(d, i + 7)?;
                return Some((w, h));
            }
            _ => {
                let len = be16(d, i + 2)? as usize;
                if len < 2 {
                    return None;
                }
                i += 2 + len;
            }
        }
    }
}

fn webp(d: &[u8]) -> Option<(u32, u32)> {
    if d.get(0..4)? != b"RIFF" || d.get(8..12)? != b"WEBP" {
        return None;
    }
    match d.get(12..16)? {
        b"VP8 " => {
            if d.get(23..26)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            Some((le16(d, 26)? & 0x3FFF, le16(d, 28)? & 0x3FFF))
        }
        b"VP8L" => {
            if *d.get(20)? != 0x2F {
                return None;
            }
            let b = d.get(21..25)?;
            let (b0, b1, b2, b3) = (
                u32::from(b[0]),
                u32::from(b[1]),
                u32::from(b[2]),
                u32::from(b[3]),
            );
            let w = 1 + (b0 | (b1 & 0x3F) << 8);
            let h = 1 + (b1 >> 6 | b2 << 2 | (b3 & 0x0F) << 10);
            Some((w, h))
        }
        b"VP8X" => Some((1 + le24(d, 24)?, 1 + le24(d, 27)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PNG header (signature + IHDR) of `w`×`h`.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut d = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        d.extend(w.to_be_bytes());
        d.extend(h.to_be_bytes());
        d.extend([8, 6, 0, 0, 0]);
        d
    }

    #[test]
    fn dimensions_table() {
        let gif = {
            let mut d = b"GIF89a".to_vec();
            d.extend(300u16.to_le_bytes());
            d.extend(200u16.to_le_bytes());
            d
        };
        let jpeg = {
            // SOI, APP0 (length 16), SOF0 with height 480, width 640.
            let mut d = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
            d.extend([0u8; 14]);
            d.extend([0xFF, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x01, 0xE0, 0x02, 0x80]);
            d
        };
        let jpeg_dht_first = {
            let mut d = vec![0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x04, 0x00, 0x00];
            d.extend([0xFF, 0xC2, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x20]);
            d
        };
        let webp_lossy = {
            let mut d = b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00".to_vec();
            d.extend([0x00, 0x00, 0x00, 0x9D, 0x01, 0x2A]);
            d.extend(64u16.to_le_bytes());
            d.extend(48u16.to_le_bytes());
            d
        };
        let webp_lossless = {
            let mut d = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2F".to_vec();
            // width-1 = 99 (14 bits), height-1 = 49 (14 bits).
            let bits: u32 = 99 | 49 << 14;
            d.extend(bits.to_le_bytes());
            d
        };
        let webp_extended = {
            let mut d = b"RIFF\x00\x00\x00\x00WEBPVP8X\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
            d.extend([0x1F, 0x03, 0x00]); // 800 - 1
            d.extend([0x57, 0x02, 0x00]); // 600 - 1
            d
        };
        type Case = (&'static str, Vec<u8>, Option<(u32, u32)>);
        let cases: Vec<Case> = vec![
            ("png", png_header(1920, 1080), Some((1920, 1080))),
            ("png truncated", png_header(1, 1)[..20].to_vec(), None),
            ("png zero", png_header(0, 5), None),
            ("gif", gif, Some((300, 200))),
            ("jpeg", jpeg, Some((640, 480))),
            ("jpeg progressive after DHT", jpeg_dht_first, Some((32, 16))),
            ("jpeg truncated", vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00], None),
            ("jpeg scan first", vec![0xFF, 0xD8, 0xFF, 0xDA, 0, 2], None),
            ("webp lossy", webp_lossy, Some((64, 48))),
            ("webp lossless", webp_lossless, Some((100, 50))),
            ("webp extended", webp_extended, Some((800, 600))),
            ("text", b"hello world, not an image".to_vec(), None),
            ("empty", Vec::new(), None),
        ];
        for (name, data, want) in cases {
            assert_eq!(image_dimensions(&data), want, "{name}");
        }
    }
}
