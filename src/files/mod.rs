//! Files between chats and the agents' workspaces.
//!
//! Agents and Surfaces share a volume. Each agent has a workspace root on it (config
//! `agents[].workspace`, e.g. `/agents/3`; the agent's own container sees the same directory
//! as `/workspace`). Files travel through that volume, never through the agent API itself:
//!
//! - **Inbound** ([`receive`]): a file, image, audio or video message is fetched by its
//!   chat's messenger (on Matrix: downloaded, and decrypted in encrypted rooms) into
//!   `inbox/<room hash>/<event hash>-<sanitized name>`
//!   under the room's agent's root ([`name`]), and the agent gets it as an
//!   [`Attachment`] with that *relative* path, the MIME type and the size. A file whose
//!   announced size is over `files.max_bytes` is not downloaded at all; one that turns out
//!   bigger while downloading is dropped at the limit.
//! - **Outbound** ([`load_outbound`], [`post_files`]): the `file` events of a turn name paths
//!   relative to the root or absolute under `/workspace/` or `/agents/<n>/`. They are
//!   normalized ([`path::normalize_agent_path`]: no `..` escape, not another agent's root),
//!   opened beneath the root without following links or blocking ([`open`]: a symbolic link,
//!   a FIFO or a device is refused, the size is checked on the opened descriptor), then posted by the chat's messenger (on Matrix `m.image` with size and
//!   dimensions, `m.file` and so on by MIME type; encrypted in encrypted rooms). What is
//!   refused is listed in one notice in the chat.
//!
//! When a file goes to the agent (the caption rule) is the room actor's business; see
//! `runtime::room`.
//!
//! An agent without a workspace cannot take or give files; people are told so.

pub mod image;
pub mod name;
pub mod open;
pub mod path;
pub mod retention;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use mime::Mime;

pub use self::name::{guess_mime, inbox_path, sanitize_file_name};
pub use self::open::{open_file_beneath, write_beneath};
pub use self::path::{normalize_agent_path, PathRefusal, RelPath};
use crate::agent::{Attachment, FileEvent};
use crate::surface::{ChatId, FetchError, IncomingFile, MessageId, OutFile, SendKey, Surface};

/// The name `/agents/<n>/` paths use for the agent whose root is `workspace`: its last
/// component (`3` for `/agents/3`).
pub fn agent_root_name(workspace: &Path) -> String {
    workspace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

/// Why an incoming file was not passed to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundRefusal {
    /// Over the limit (announced, or found while downloading); nothing was kept.
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The download or the write failed; the text is for the log and a short reason.
    Failed(String),
}

/// Fetches the file of message `message` in chat `chat` (through its messenger, `surface`)
/// into the agent's `workspace` (see the module docs) and describes it for the agent.
/// Refuses without fetching when the announced size is over `max_bytes`.
pub async fn receive(
    surface: &dyn Surface,
    workspace: &Path,
    chat: &ChatId,
    message: &MessageId,
    file: &IncomingFile,
    max_bytes: u64,
) -> Result<Attachment, InboundRefusal> {
    if file.size.is_some_and(|size| size > max_bytes) {
        return Err(InboundRefusal::TooLarge { limit: max_bytes });
    }
    let data = match surface.fetch_file(file, max_bytes).await {
        Ok(data) => data,
        Err(FetchError::TooLarge { limit }) => return Err(InboundRefusal::TooLarge { limit }),
        Err(FetchError::Failed(error)) => return Err(InboundRefusal::Failed(error)),
    };
    if data.len() as u64 > max_bytes {
        return Err(InboundRefusal::TooLarge { limit: max_bytes });
    }
    let rel = inbox_path(chat.as_str(), message.as_str(), &file.name);
    let size = data.len() as u64;
    let root = workspace.to_path_buf();
    let target = rel.clone();
    tokio::task::spawn_blocking(move || write_into_workspace(&root, &target, &data))
        .await
        .map_err(|e| InboundRefusal::Failed(e.to_string()))?
        .map_err(|e| InboundRefusal::Failed(format!("writing into the workspace: {e}")))?;
    Ok(Attachment {
        path: rel.as_str().to_owned(),
        name: file.name.clone(),
        mime: file
            .mime
            .clone()
            .unwrap_or_else(|| guess_mime(&file.name).to_owned()),
        size,
    })
}

/// Writes `data` at `rel` under `root` without following any link on the way (an `inbox`
/// swapped for a link by the agent is refused, not written through), into a temporary file
/// created afresh and renamed into place (the agent never sees half a file; a link at the
/// final name is replaced, not followed); see [`open::write_beneath`]. Returns the final path.
pub fn write_into_workspace(root: &Path, rel: &RelPath, data: &[u8]) -> std::io::Result<PathBuf> {
    write_beneath(root, rel, data)
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

/// Why a file the agent named was not posted. `Display` is the reason shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundRefusal {
    /// The path is not acceptable, or the file is not there.
    Path(PathRefusal),
    /// Larger than the limit.
    TooLarge {
        /// Its size, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Reading it failed.
    Unreadable(String),
    /// Uploading or posting it failed.
    Post(String),
}

impl fmt::Display for OutboundRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundRefusal::Path(refusal) => write!(f, "{refusal}"),
            OutboundRefusal::TooLarge { size, limit } => write!(
                f,
                "is {}, over the {} limit",
                human_size(*size),
                human_size(*limit)
            ),
            OutboundRefusal::Unreadable(why) => write!(f, "cannot be read ({why})"),
            OutboundRefusal::Post(why) => write!(f, "could not be posted ({why})"),
        }
    }
}

/// A file ready to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundFile {
    /// Where it is, relative to the root.
    pub rel: RelPath,
    /// The name to show (sanitized).
    pub name: String,
    /// Its MIME type (the agent's, else guessed from the name).
    pub mime: Mime,
    /// The content.
    pub data: Vec<u8>,
}

/// Reads the file a `file` event names, under the agent's `workspace`, when it is allowed
/// (see the module docs) and at most `max_bytes` long. Blocking.
pub fn load_outbound(
    workspace: &Path,
    file: &FileEvent,
    max_bytes: u64,
) -> Result<OutboundFile, OutboundRefusal> {
    let rel = normalize_agent_path(&file.path, &agent_root_name(workspace))
        .map_err(OutboundRefusal::Path)?;
    let unreadable = |e: std::io::Error| OutboundRefusal::Unreadable(e.kind().to_string());
    let (opened, size) = open_file_beneath(workspace, &rel).map_err(OutboundRefusal::Path)?;
    if size > max_bytes {
        return Err(OutboundRefusal::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    let mut data = Vec::with_capacity(size as usize);
    opened
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(unreadable)?;
    if data.len() as u64 > max_bytes {
        // It grew after the check.
        return Err(OutboundRefusal::TooLarge {
            size: data.len() as u64,
            limit: max_bytes,
        });
    }
    let name = if file.name.trim().is_empty() {
        sanitize_file_name(rel.file_name())
    } else {
        sanitize_file_name(&file.name)
    };
    let mime = file
        .mime
        .trim()
        .parse::<Mime>()
        .ok()
        .filter(|m| m.type_() != mime::STAR)
        .unwrap_or_else(|| {
            guess_mime(&name)
                .parse()
                .unwrap_or(mime::APPLICATION_OCTET_STREAM)
        });
    Ok(OutboundFile {
        rel,
        name,
        mime,
        data,
    })
}

/// A file that was not posted: the path as the agent gave it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The path as the agent gave it.
    pub path: String,
    /// Why it was not posted.
    pub reason: OutboundRefusal,
}

/// Posts the files of a turn to the chat, in order, the `i`-th with key `key_for(i)`.
/// Returns the ones that were refused or failed.
pub async fn post_files(
    surface: &dyn Surface,
    chat: &ChatId,
    workspace: &Path,
    files: &[FileEvent],
    max_bytes: u64,
    key_for: impl Fn(usize) -> SendKey,
) -> Vec<Refused> {
    let mut refused = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let root = workspace.to_path_buf();
        let event = file.clone();
        let loaded = tokio::task::spawn_blocking(move || load_outbound(&root, &event, max_bytes))
            .await
            .unwrap_or_else(|e| Err(OutboundRefusal::Unreadable(e.to_string())));
        let outcome = match loaded {
            Ok(out) => {
                tracing::info!(path = %out.rel, mime = %out.mime, size = out.data.len(),
                    "posting a file from the agent");
                let file = OutFile {
                    name: out.name,
                    mime: out.mime.to_string(),
                    data: out.data,
                };
                surface
                    .send_file(chat, file, key_for(index))
                    .await
                    .map(|_| ())
                    .map_err(|e| OutboundRefusal::Post(e.to_string()))
            }
            Err(refusal) => Err(refusal),
        };
        if let Err(reason) = outcome {
            tracing::warn!(path = %file.path, %reason, "a file from the agent was not posted");
            refused.push(Refused {
                path: file.path.clone(),
                reason,
            });
        }
    }
    refused
}

/// `512 bytes`, `20 KiB`, `20 MiB`, `1.5 GiB`: sizes as people read them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return if bytes == 1 {
            "1 byte".to_owned()
        } else {
            format!("{bytes} bytes")
        };
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, name: &str, mime: &str) -> FileEvent {
        FileEvent {
            path: path.into(),
            name: name.into(),
            mime: mime.into(),
        }
    }

    struct Ws {
        _dir: tempfile::TempDir,
        root: PathBuf,
        other: PathBuf,
    }

    fn workspace() -> Ws {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("3");
        let other = dir.path().join("4");
        std::fs::create_dir_all(root.join("out")).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(root.join("out/chart.png"), b"\x89PNG fake").unwrap();
        std::fs::write(root.join("out/notes"), b"some notes").unwrap();
        std::fs::write(root.join("big.bin"), vec![7u8; 2048]).unwrap();
        std::fs::write(other.join("secret.txt"), b"secret").unwrap();
        Ws {
            _dir: dir,
            root,
            other,
        }
    }

    #[test]
    fn outbound_table() {
        let ws = workspace();
        #[cfg(unix)]
        std::os::unix::fs::symlink(ws.other.join("secret.txt"), ws.root.join("out/leak")).unwrap();
        let limit = 1024;
        type Want = Result<(&'static str, &'static str, &'static str), OutboundRefusal>;
        let cases: Vec<(FileEvent, Want)> = vec![
            (
                event("out/chart.png", "chart.png", "image/png"),
                Ok(("out/chart.png", "chart.png", "image/png")),
            ),
            (
                event("/workspace/out/chart.png", "", ""),
                Ok(("out/chart.png", "chart.png", "image/png")),
            ),
            (
                event("/agents/3/out/notes", "../notes.txt", "not a mime"),
                Ok(("out/notes", "notes.txt", "text/plain")),
            ),
            (
                event("out/notes", "notes", "*/*"),
                Ok(("out/notes", "notes", "application/octet-stream")),
            ),
            (
                event("../4/secret.txt", "s", "text/plain"),
                Err(OutboundRefusal::Path(PathRefusal::Escapes)),
            ),
            (
                event("/agents/4/secret.txt", "s", "text/plain"),
                Err(OutboundRefusal::Path(PathRefusal::OtherAgent("4".into()))),
            ),
            (
                event("/etc/passwd", "p", "text/plain"),
                Err(OutboundRefusal::Path(PathRefusal::OutsideWorkspace)),
            ),
            (
                event("out/missing.png", "m", "image/png"),
                Err(OutboundRefusal::Path(PathRefusal::Missing)),
            ),
            (
                event("big.bin", "big.bin", "application/octet-stream"),
                Err(OutboundRefusal::TooLarge { size: 2048, limit }),
            ),
        ];
        for (file, want) in cases {
            let got = load_outbound(&ws.root, &file, limit);
            match (&got, &want) {
                (Ok(out), Ok((rel, name, mime))) => {
                    assert_eq!(out.rel.as_str(), *rel, "{file:?}");
                    assert_eq!(out.name, *name, "{file:?}");
                    assert_eq!(out.mime.essence_str(), *mime, "{file:?}");
                    let on_disk = std::fs::read(ws.root.join(rel)).unwrap();
                    assert_eq!(out.data, on_disk);
                }
                (Err(e), Err(w)) => assert_eq!(e, w, "{file:?}"),
                _ => panic!("{file:?}: got {got:?}, want {want:?}"),
            }
        }
        #[cfg(unix)]
        assert_eq!(
            load_outbound(&ws.root, &event("out/leak", "x", "text/plain"), limit),
            Err(OutboundRefusal::Path(PathRefusal::Link))
        );
    }

    #[test]
    fn refusal_texts_name_the_limit() {
        let r = OutboundRefusal::TooLarge {
            size: 30 * 1024 * 1024,
            limit: 20 * 1024 * 1024,
        };
        assert_eq!(r.to_string(), "is 30 MiB, over the 20 MiB limit");
        assert_eq!(
            OutboundRefusal::Path(PathRefusal::Escapes).to_string(),
            "climbs out of the agent's workspace with `..`"
        );
    }

    #[test]
    fn human_sizes() {
        let cases = [
            (0, "0 bytes"),
            (1, "1 byte"),
            (1023, "1023 bytes"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (20 * 1024 * 1024, "20 MiB"),
            (3 * 1024 * 1024 * 1024 / 2, "1.5 GiB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn inbound_write_is_atomic_and_stays_inside() {
        let ws = workspace();
        let rel = inbox_path("!room:x", "$event", "../../report.pdf");
        let written = write_into_workspace(&ws.root, &rel, b"%PDF-1.7").unwrap();
        assert_eq!(written, ws.root.canonicalize().unwrap().join(rel.as_str()));
        assert_eq!(std::fs::read(&written).unwrap(), b"%PDF-1.7");
        // Writing the same event again replaces, and leaves no temporary file behind.
        write_into_workspace(&ws.root, &rel, b"second").unwrap();
        assert_eq!(std::fs::read(&written).unwrap(), b"second");
        let entries: Vec<_> = std::fs::read_dir(written.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    #[cfg(unix)]
    #[test]
    fn inbound_write_does_not_follow_a_planted_symlink() {
        let ws = workspace();
        // The agent made its inbox a link to another agent's root.
        std::os::unix::fs::symlink(&ws.other, ws.root.join("inbox")).unwrap();
        let rel = inbox_path("!room:x", "$event", "a.txt");
        let err = write_into_workspace(&ws.root, &rel, b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(std::fs::read_dir(&ws.other)
            .unwrap()
            .all(|e| e.unwrap().file_name() == "secret.txt"));

        // A symlink at the final name is replaced, not written through.
        let ws = workspace();
        let rel = inbox_path("!room:x", "$event", "a.txt");
        let dir = rel.under(&ws.root);
        std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(ws.other.join("secret.txt"), &dir).unwrap();
        write_into_workspace(&ws.root, &rel, b"mine").unwrap();
        assert_eq!(
            std::fs::read(ws.other.join("secret.txt")).unwrap(),
            b"secret"
        );
        assert_eq!(std::fs::read(&dir).unwrap(), b"mine");
    }

    #[test]
    fn root_names() {
        assert_eq!(agent_root_name(Path::new("/agents/3")), "3");
        assert_eq!(agent_root_name(Path::new("/agents/3/")), "3");
        assert_eq!(agent_root_name(Path::new("/")), "");
    }
}
