//! Media in and out of rooms: downloading what a person sends, uploading what an agent makes.
//!
//! Incoming: [`incoming_file`] reads an `m.file` / `m.image` / `m.audio` / `m.video` message
//! (name, MIME type, announced size, caption per the spec's media captions) and
//! [`download`] fetches its content, plain or encrypted (`file` with key, IV and hash: the
//! content is decrypted and its SHA-256 checked). The size is checked twice: the caller refuses
//! a file whose announced size is over the limit without downloading it, and [`download`]
//! enforces a hard cap while reading (the announced size is the sender's word; the
//! `Content-Length` and the bytes actually received are checked too), so an oversized file
//! never sits in memory whole. Downloads use the authenticated media endpoint
//! (`/_matrix/client/v1/media/download`, with the bot's token), falling back to the legacy
//! one on homeservers that do not know it. matrix-sdk's own `get_media_content` reads the
//! whole body before anyone can look at its size, which is why this module streams itself.
//!
//! Outgoing: [`send_file`] uploads and posts with `Room::send_attachment`, which encrypts
//! the upload in encrypted rooms; the message type follows the MIME type (`m.image` with its
//! size and dimensions, `m.audio`, `m.video`, else `m.file`), see [`attachment_info`].

use std::io::Read;
use std::sync::OnceLock;
use std::time::Duration;

use matrix_sdk::attachment::{
    AttachmentConfig, AttachmentInfo, BaseAudioInfo, BaseFileInfo, BaseImageInfo, BaseVideoInfo,
};
use matrix_sdk::ruma::events::room::message::MessageType;
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::{MxcUri, OwnedEventId, TransactionId, UInt};
use matrix_sdk::{Client, Room};
use mime::Mime;

use super::mxc::{parse_mxc, MxcError};
use super::MatrixError;
use crate::files::image::image_dimensions;

/// Connect timeout of media downloads.
pub const DOWNLOAD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a whole media download may take.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// A file a person sent, as read from their message.
#[derive(Debug, Clone)]
pub struct IncomingFile {
    /// Where the content is (plain `mxc://`, or encrypted with its keys).
    pub source: MediaSource,
    /// The file name as sent (`filename`, else `body`); not sanitized.
    pub name: String,
    /// The announced MIME type, if any.
    pub mime: Option<String>,
    /// The announced size in bytes, if any (the sender's word).
    pub size: Option<u64>,
    /// The caption: the `body` when a distinct `filename` is set (non-blank only).
    pub caption: Option<String>,
    /// `m.file`, `m.image`, `m.audio` or `m.video`.
    pub msgtype: &'static str,
}

/// The parts of a file-like message content (they share field names, not a trait).
macro_rules! file_parts {
    ($c:expr, $kind:literal) => {{
        let info = $c.info.as_deref();
        (
            &$c.source,
            $c.filename(),
            $c.caption(),
            info.and_then(|i| i.mimetype.clone()),
            info.and_then(|i| i.size).map(u64::from),
            $kind,
        )
    }};
}

/// The file of a message, when it is a file, image, audio or video message.
pub fn incoming_file(msgtype: &MessageType) -> Option<IncomingFile> {
    let (source, name, caption, mime, size, kind) = match msgtype {
        MessageType::File(c) => file_parts!(c, "m.file"),
        MessageType::Image(c) => file_parts!(c, "m.image"),
        MessageType::Audio(c) => file_parts!(c, "m.audio"),
        MessageType::Video(c) => file_parts!(c, "m.video"),
        _ => return None,
    };
    Some(IncomingFile {
        source: source.clone(),
        name: name.to_owned(),
        mime: mime.filter(|m| !m.trim().is_empty()),
        size,
        caption: caption
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        msgtype: kind,
    })
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The content is larger than the cap.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// The homeserver could not be reached or refused.
    #[error(transparent)]
    Matrix(#[from] MatrixError),
    /// The encrypted content could not be decrypted (bad keys, hash mismatch).
    #[error("cannot decrypt the file: {0}")]
    Decrypt(String),
    /// The media URI is malformed (checked by [`parse_mxc`] before anything else reads it).
    #[error("invalid media URI: {0}")]
    InvalidLink(#[from] MxcError),
}

/// Downloads (and decrypts) a media file, failing with [`DownloadError::TooLarge`] as soon as
/// more than `max_bytes` arrive (or are announced by `Content-Length`).
pub async fn download(
    client: &Client,
    source: &MediaSource,
    max_bytes: u64,
) -> Result<Vec<u8>, DownloadError> {
    match source {
        MediaSource::Plain(uri) => fetch_capped(client, uri, max_bytes).await,
        MediaSource::Encrypted(file) => {
            // AES-CTR: the ciphertext is exactly as long as the plaintext.
            let ciphertext = fetch_capped(client, &file.url, max_bytes).await?;
            let info = matrix_sdk_crypto::MediaEncryptionInfo::from((**file).clone());
            tokio::task::spawn_blocking(move || decrypt(ciphertext, info))
                .await
                .map_err(|e| DownloadError::Decrypt(e.to_string()))?
        }
    }
}

fn decrypt(
    ciphertext: Vec<u8>,
    info: matrix_sdk_crypto::MediaEncryptionInfo,
) -> Result<Vec<u8>, DownloadError> {
    let len = ciphertext.len();
    let mut cursor = std::io::Cursor::new(ciphertext);
    let mut reader = matrix_sdk_crypto::AttachmentDecryptor::new(&mut cursor, info)
        .map_err(|e| DownloadError::Decrypt(e.to_string()))?;
    let mut plain = Vec::with_capacity(len);
    reader
        .read_to_end(&mut plain)
        .map_err(|e| DownloadError::Decrypt(e.to_string()))?;
    Ok(plain)
}

/// The HTTP client of media downloads (its own: matrix-sdk does not lend its one).
fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(DOWNLOAD_CONNECT_TIMEOUT)
            .timeout(DOWNLOAD_TIMEOUT)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new())
    })
}

/// The download URLs of `uri` on the bot's homeserver: authenticated, then legacy. The URI
/// is read by our own [`parse_mxc`], never by ruma's `MxcUri::parts` (it panics on long
/// server names, see [`super::mxc`]).
fn download_urls(homeserver: &url::Url, uri: &MxcUri) -> Result<[url::Url; 2], DownloadError> {
    let mxc = parse_mxc(uri.as_str())?;
    let (server, media_id) = (mxc.server, mxc.media_id);
    let build = |prefix: &[&str]| -> Result<url::Url, MatrixError> {
        let mut url = homeserver.clone();
        url.path_segments_mut()
            .map_err(|()| MatrixError::Setup(format!("homeserver URL {homeserver} has no path")))?
            .pop_if_empty()
            .extend(prefix)
            .extend([server, media_id]);
        Ok(url)
    };
    Ok([
        build(&["_matrix", "client", "v1", "media", "download"])?,
        build(&["_matrix", "media", "v3", "download"])?,
    ])
}

async fn fetch_capped(client: &Client, uri: &MxcUri, cap: u64) -> Result<Vec<u8>, DownloadError> {
    let context = || format!("downloading {uri}");
    let token = client.access_token();
    let [authenticated, legacy] = download_urls(&client.homeserver(), uri)?;
    let mut response = None;
    for (url, last) in [(authenticated, false), (legacy, true)] {
        let mut request = http().get(url);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.map_err(|e| MatrixError::Network {
            context: context(),
            source: Box::new(e),
        })?;
        let status = resp.status().as_u16();
        if !last && (status == 404 || status == 405 || status == 400) {
            // An old homeserver without authenticated media answers M_UNRECOGNIZED.
            let body = resp.bytes().await.unwrap_or_default();
            if String::from_utf8_lossy(&body).contains("M_UNRECOGNIZED") {
                continue;
            }
            return Err(status_error(context(), status, &body).into());
        }
        response = Some(resp);
        break;
    }
    let Some(mut resp) = response else {
        return Err(MatrixError::permanent(context(), "no download endpoint").into());
    };
    let status = resp.status().as_u16();
    if !resp.status().is_success() {
        let body = resp.bytes().await.unwrap_or_default();
        return Err(status_error(context(), status, &body).into());
    }
    if resp.content_length().is_some_and(|len| len > cap) {
        return Err(DownloadError::TooLarge { limit: cap });
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| MatrixError::Network {
        context: context(),
        source: Box::new(e),
    })? {
        if data.len() as u64 + chunk.len() as u64 > cap {
            return Err(DownloadError::TooLarge { limit: cap });
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// A homeserver error answer to a download, classified.
fn status_error(context: String, status: u16, body: &[u8]) -> MatrixError {
    let text = String::from_utf8_lossy(body);
    let message: String = format!("HTTP {status}: {}", text.trim())
        .chars()
        .take(300)
        .collect();
    if status == 429 || (500..600).contains(&status) {
        MatrixError::Transient {
            context,
            retry_after: None,
            source: message.into(),
        }
    } else {
        MatrixError::permanent(context, message)
    }
}

/// The attachment info of a file of type `mime` with content `data`: the size always, and
/// for images their dimensions when the header says.
pub fn attachment_info(mime: &Mime, data: &[u8]) -> AttachmentInfo {
    let size = UInt::try_from(data.len() as u64).ok();
    match mime.type_() {
        mime::IMAGE => {
            let dims = image_dimensions(data);
            AttachmentInfo::Image(BaseImageInfo {
                width: dims.and_then(|(w, _)| UInt::try_from(u64::from(w)).ok()),
                height: dims.and_then(|(_, h)| UInt::try_from(u64::from(h)).ok()),
                size,
                blurhash: None,
                is_animated: None,
            })
        }
        mime::AUDIO => AttachmentInfo::Audio(BaseAudioInfo {
            size,
            ..Default::default()
        }),
        mime::VIDEO => AttachmentInfo::Video(BaseVideoInfo {
            size,
            ..Default::default()
        }),
        _ => AttachmentInfo::File(BaseFileInfo { size }),
    }
}

/// Uploads `data` as `name` of type `mime` and posts it to the room (encrypted in encrypted
/// rooms), with transaction id `txn_id` (a retried post is deduplicated; the upload is not).
pub async fn send_file(
    room: &Room,
    name: &str,
    mime: &Mime,
    data: Vec<u8>,
    txn_id: &TransactionId,
) -> Result<OwnedEventId, MatrixError> {
    let config = AttachmentConfig::new()
        .txn_id(txn_id.to_owned())
        .info(attachment_info(mime, &data));
    let response = room
        .send_attachment(name, mime, data, config)
        .await
        .map_err(|e| MatrixError::from_sdk("posting a file", e))?;
    Ok(response.event_id)
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::events::room::message::{
        AudioInfo, AudioMessageEventContent, FileInfo, FileMessageEventContent,
        ImageMessageEventContent, TextMessageEventContent, VideoMessageEventContent,
    };
    use matrix_sdk::ruma::events::room::ImageInfo;
    use matrix_sdk::ruma::owned_mxc_uri;

    use super::*;

    fn plain() -> MediaSource {
        MediaSource::Plain(owned_mxc_uri!("mxc://example.org/abc"))
    }

    #[test]
    fn incoming_file_reads_every_media_type() {
        let mut file = FileMessageEventContent::plain(
            "report.pdf".into(),
            owned_mxc_uri!("mxc://example.org/abc"),
        );
        let mut info = FileInfo::new();
        info.mimetype = Some("application/pdf".into());
        info.size = Some(UInt::from(48213u32));
        file.info = Some(Box::new(info));
        let got = incoming_file(&MessageType::File(file.clone())).unwrap();
        assert!(
            matches!(&got.source, MediaSource::Plain(uri) if uri.as_str() == "mxc://example.org/abc")
        );
        assert_eq!(got.name, "report.pdf");
        assert_eq!(got.mime.as_deref(), Some("application/pdf"));
        assert_eq!(got.size, Some(48213));
        assert_eq!(got.caption, None);
        assert_eq!(got.msgtype, "m.file");

        // A caption: `body` differs from `filename`.
        file.body = "  summarise this  ".into();
        file.filename = Some("report.pdf".into());
        let got = incoming_file(&MessageType::File(file.clone())).unwrap();
        assert_eq!(got.name, "report.pdf");
        assert_eq!(got.caption.as_deref(), Some("summarise this"));
        // Same `filename` as `body`: no caption.
        file.body = "report.pdf".into();
        assert_eq!(
            incoming_file(&MessageType::File(file.clone()))
                .unwrap()
                .caption,
            None
        );
        // A blank caption is none.
        file.body = "   ".into();
        assert_eq!(
            incoming_file(&MessageType::File(file)).unwrap().caption,
            None
        );

        let mut image = ImageMessageEventContent::new("cat.png".into(), plain());
        let mut info = ImageInfo::new();
        info.mimetype = Some("image/png".into());
        image.info = Some(Box::new(info));
        let got = incoming_file(&MessageType::Image(image)).unwrap();
        assert_eq!(
            (got.msgtype, got.mime.as_deref(), got.size),
            ("m.image", Some("image/png"), None)
        );

        let mut audio = AudioMessageEventContent::new("a.ogg".into(), plain());
        let mut info = AudioInfo::new();
        info.size = Some(UInt::from(7u32));
        info.mimetype = Some(String::new());
        audio.info = Some(Box::new(info));
        let got = incoming_file(&MessageType::Audio(audio)).unwrap();
        assert_eq!(
            (got.msgtype, got.mime, got.size),
            ("m.audio", None, Some(7))
        );

        let video = VideoMessageEventContent::new("v.mp4".into(), plain());
        let got = incoming_file(&MessageType::Video(video)).unwrap();
        assert_eq!((got.msgtype, got.name.as_str()), ("m.video", "v.mp4"));

        let text = MessageType::Text(TextMessageEventContent::plain("hi"));
        assert!(incoming_file(&text).is_none());
    }

    #[test]
    fn attachment_info_by_mime() {
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend(640u32.to_be_bytes());
        png.extend(480u32.to_be_bytes());
        match attachment_info(&mime::IMAGE_PNG, &png) {
            AttachmentInfo::Image(i) => {
                assert_eq!(i.width, Some(UInt::from(640u32)));
                assert_eq!(i.height, Some(UInt::from(480u32)));
                assert_eq!(i.size, Some(UInt::from(png.len() as u32)));
            }
            other => panic!("{other:?}"),
        }
        match attachment_info(&mime::IMAGE_JPEG, b"not really") {
            AttachmentInfo::Image(i) => {
                assert_eq!((i.width, i.size), (None, Some(UInt::from(10u32))))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            attachment_info(&mime::APPLICATION_PDF, b"%PDF"),
            AttachmentInfo::File(BaseFileInfo { size: Some(s) }) if s == UInt::from(4u32)
        ));
        let ogg: Mime = "audio/ogg".parse().unwrap();
        assert!(matches!(
            attachment_info(&ogg, b"x"),
            AttachmentInfo::Audio(_)
        ));
        let mp4: Mime = "video/mp4".parse().unwrap();
        assert!(matches!(
            attachment_info(&mp4, b"x"),
            AttachmentInfo::Video(_)
        ));
    }

    #[test]
    fn download_urls_use_both_endpoints() {
        let hs = url::Url::parse("https://matrix.example.org/").unwrap();
        let uri = owned_mxc_uri!("mxc://other.org/AbC123");
        let [auth, legacy] = download_urls(&hs, &uri).unwrap();
        assert_eq!(
            auth.as_str(),
            "https://matrix.example.org/_matrix/client/v1/media/download/other.org/AbC123"
        );
        assert_eq!(
            legacy.as_str(),
            "https://matrix.example.org/_matrix/media/v3/download/other.org/AbC123"
        );
        let prefixed = url::Url::parse("https://example.org/synapse").unwrap();
        let [auth, _] = download_urls(&prefixed, &uri).unwrap();
        assert_eq!(
            auth.as_str(),
            "https://example.org/synapse/_matrix/client/v1/media/download/other.org/AbC123"
        );
        assert!(download_urls(&hs, &matrix_sdk::ruma::OwnedMxcUri::from("not-an-mxc")).is_err());
        // Server names that make ruma's `MxcUri::parts` panic are read without it.
        let server = "ab.".repeat(83) + "c"; // 250 characters
        let long = matrix_sdk::ruma::OwnedMxcUri::from(format!("mxc://{server}/abc"));
        let [auth, _] = download_urls(&hs, &long).unwrap();
        assert!(auth.as_str().ends_with(&format!("/{server}/abc")));
        let label = matrix_sdk::ruma::OwnedMxcUri::from(format!("mxc://{}/abc", "a".repeat(250)));
        assert!(matches!(
            download_urls(&hs, &label),
            Err(DownloadError::InvalidLink(MxcError::ServerName))
        ));
        let too_long =
            matrix_sdk::ruma::OwnedMxcUri::from(format!("mxc://{}/abc", "a".repeat(256)));
        assert!(matches!(
            download_urls(&hs, &too_long),
            Err(DownloadError::InvalidLink(MxcError::ServerName))
        ));
    }

    #[test]
    fn decrypt_checks_the_hash() {
        use matrix_sdk_crypto::AttachmentEncryptor;
        let data = b"secret report".to_vec();
        let mut cursor = std::io::Cursor::new(data.clone());
        let mut encryptor = AttachmentEncryptor::new(&mut cursor);
        let mut ciphertext = Vec::new();
        encryptor.read_to_end(&mut ciphertext).unwrap();
        let info = encryptor.finish();
        assert_eq!(ciphertext.len(), data.len());
        let copy = |i: &matrix_sdk_crypto::MediaEncryptionInfo| {
            serde_json::from_value(serde_json::to_value(i).unwrap()).unwrap()
        };
        assert_eq!(decrypt(ciphertext.clone(), copy(&info)).unwrap(), data);
        ciphertext[0] ^= 1;
        assert!(matches!(
            decrypt(ciphertext, info),
            Err(DownloadError::Decrypt(_))
        ));
    }
}
