//! Key backup and recovery: the bot's identity and room keys survive a lost data directory.
//!
//! Why this exists: the bot's crypto store is the only place its identity and room keys
//! live. Redeploying on a fresh volume used to make a new, unsigned device that could read
//! nothing sent before it. With recovery set up (secret storage holding the cross-signing
//! keys and the key-backup key, and every room key uploaded to the server-side backup), a
//! fresh device given the recovery key restores the identity, signs itself and downloads
//! the room keys, so it reads the rooms' history and what was sent while it was down.
//!
//! The recovery key is handed to the operator once: written to `<data_dir>/recovery-key`
//! (mode 0600, never overwritten) and named in the log, never printed. It is read back from
//! `matrix.recovery_key` (a secret) or, failing that, from that file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use matrix_sdk::Client;
use tracing::{info, warn};

use super::MatrixError;

/// Name of the recovery key file inside the data directory.
pub const RECOVERY_KEY_FILE_NAME: &str = "recovery-key";
/// Permissions of the recovery key file: it unlocks the bot's identity and room keys.
#[cfg(unix)]
const RECOVERY_KEY_FILE_MODE: u32 = 0o600;

/// Where a recovery key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `matrix.recovery_key`.
    Config,
    /// The file written at the first start.
    File(PathBuf),
}

/// A recovery key at hand.
#[derive(Clone)]
pub struct KeySource {
    key: String,
    /// Where it came from (for the log).
    pub origin: KeyOrigin,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("key", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}

impl KeySource {
    /// Where the key came from, for the log.
    pub fn describe(&self) -> String {
        match &self.origin {
            KeyOrigin::Config => "matrix.recovery_key".to_owned(),
            KeyOrigin::File(path) => path.display().to_string(),
        }
    }
}

/// The path of the recovery key file in `data_dir`.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(RECOVERY_KEY_FILE_NAME)
}

/// The recovery key: the configured one, else the file's (trimmed), else none. An unreadable
/// file is logged and ignored.
pub fn find_key(configured: Option<&str>, data_dir: &Path) -> Option<KeySource> {
    if let Some(key) = configured.map(str::trim).filter(|k| !k.is_empty()) {
        return Some(KeySource {
            key: key.to_owned(),
            origin: KeyOrigin::Config,
        });
    }
    let path = key_file(data_dir);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim();
            if key.is_empty() {
                warn!(path = %path.display(), "the recovery key file is empty; ignoring it");
                None
            } else {
                Some(KeySource {
                    key: key.to_owned(),
                    origin: KeyOrigin::File(path),
                })
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => {
            warn!(path = %path.display(), %error, "cannot read the recovery key file; ignoring it");
            None
        }
    }
}

/// Restores the identity and the key backup (room keys included) from secret storage.
pub async fn recover(client: &Client, key: &KeySource) -> Result<(), MatrixError> {
    client
        .encryption()
        .recovery()
        .recover_and_fix_backup(&key.key)
        .await
        .map_err(|e| {
            MatrixError::permanent(
                format!(
                    "restoring the bot's identity with the recovery key from {} (is it the \
                     right key?)",
                    key.describe()
                ),
                e,
            )
        })?;
    info!(key_from = %key.describe(), backup = ?client.encryption().backups().state(),
        "restored the bot's identity and room keys from secret storage with the recovery key");
    Ok(())
}

/// Creates secret storage and the key backup, and writes the new recovery key to the data
/// directory (once; the log names the file).
pub async fn enable(
    client: &Client,
    data_dir: &Path,
    configured: Option<&KeySource>,
) -> Result<(), MatrixError> {
    if let Some(key) = configured {
        warn!(key_from = %key.describe(), "a recovery key is configured but the account has \
            no secret storage to open with it; creating new secret storage with a new key");
    }
    let new_key = client
        .encryption()
        .recovery()
        .enable()
        .await
        .map_err(|e| MatrixError::permanent("setting up key backup and recovery", e))?;
    let path = write_new_key(data_dir, &new_key)?;
    warn!(path = %path.display(),
        "key backup and recovery are set up. The recovery key was written to this file \
         (mode 0600) and is not shown anywhere else: copy it somewhere safe outside this \
         machine, then give it as matrix.recovery_key (or SURFACES__MATRIX__RECOVERY_KEY) when \
         the bot starts on a fresh data directory, to restore its identity and room keys. \
         Anyone holding it can read the bot's encrypted messages");
    Ok(())
}

/// Writes `key` to `<data_dir>/recovery-key`, or next to it with a numbered suffix when
/// that file exists already (an old key is never overwritten). Returns the path written.
fn write_new_key(data_dir: &Path, key: &str) -> Result<PathBuf, MatrixError> {
    let base = key_file(data_dir);
    for n in 0..MAX_KEY_FILES {
        let path = if n == 0 {
            base.clone()
        } else {
            base.with_file_name(format!("{RECOVERY_KEY_FILE_NAME}.{n}"))
        };
        match write_private_new(&path, key) {
            Ok(()) => return Ok(path),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(MatrixError::io("writing the recovery key", &path, error)),
        }
    }
    Err(MatrixError::Setup(format!(
        "cannot write the new recovery key: {} and {MAX_KEY_FILES} numbered files next to it \
         exist already",
        base.display()
    )))
}

/// How many `recovery-key.<n>` files [`write_new_key`] tries before giving up.
const MAX_KEY_FILES: u32 = 100;

/// Creates `path` (failing if it exists), owner-only on unix, and writes `key` to it.
fn write_private_new(path: &Path, key: &str) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(RECOVERY_KEY_FILE_MODE);
    }
    let mut file = options.open(path)?;
    file.write_all(key.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_key(None, dir.path()).is_none());
        assert!(find_key(Some("  "), dir.path()).is_none());
        let path = write_new_key(dir.path(), "EsTa key").unwrap();
        assert_eq!(path, key_file(dir.path()));
        let from_file = find_key(None, dir.path()).unwrap();
        assert_eq!(from_file.key, "EsTa key");
        assert_eq!(from_file.origin, KeyOrigin::File(path.clone()));
        let configured = find_key(Some(" EsTb other "), dir.path()).unwrap();
        assert_eq!(configured.key, "EsTb other");
        assert_eq!(configured.origin, KeyOrigin::Config);
        assert!(!format!("{configured:?}").contains("other"));
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_new_key(dir.path(), "first").unwrap();
        let second = write_new_key(dir.path(), "second").unwrap();
        assert_ne!(first, second);
        assert_eq!(fs::read_to_string(&first).unwrap().trim(), "first");
        assert_eq!(fs::read_to_string(&second).unwrap().trim(), "second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&first).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, RECOVERY_KEY_FILE_MODE);
        }
    }
}
