//! Login once, then restore the same device on every restart.
//!
//! A bot that logs in afresh at each start creates a new device each time:
//! its end-to-end encryption keys change, people's clients show a growing
//! list of unverified devices, and messages encrypted for the old device
//! become unreadable. So the first start logs in (password) or adopts an
//! access token, and writes the session (user id, device id, token) to
//! `<data_dir>/matrix-session.json` (mode 0600, written atomically); every
//! later start restores that session without any login, and matrix-sdk's
//! sqlite stores in `<data_dir>/matrix/` (state, crypto, event cache) keep
//! the device's keys and the sync token.
//!
//! The sqlite stores are opened **without a passphrase**: a passphrase kept
//! next to the store would protect nothing, so the data directory itself must
//! be private (the store directory is created 0700, the session file 0600).
//!
//! If the stored token is rejected, [`connect`] returns
//! [`MatrixError::InvalidToken`] telling the operator to delete the session
//! file and the store (or fix the token) rather than silently logging in as
//! a new device next to a crypto store that belongs to the old one.
//!
//! Tokens and passwords are never logged ([`LoginParams`]' `Debug` redacts
//! them).

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use matrix_sdk::{
    authentication::matrix::MatrixSession,
    config::RequestConfig,
    ruma::{OwnedDeviceId, OwnedUserId},
    Client, SessionMeta, SessionTokens,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::MatrixError;
use crate::config::KeySharing;

/// Name of the session file inside the data directory.
pub const SESSION_FILE_NAME: &str = "matrix-session.json";
/// Name of matrix-sdk's store directory inside the data directory.
pub const STORE_DIR_NAME: &str = "matrix";
/// Version of the session file layout.
const SESSION_FILE_VERSION: u32 = 1;
/// Permissions of the session file: it holds the access token.
#[cfg(unix)]
const SESSION_FILE_MODE: u32 = 0o600;
/// Permissions of the store directory: it holds the device's private keys.
#[cfg(unix)]
const STORE_DIR_MODE: u32 = 0o700;
/// How many times matrix-sdk itself retries a failed request before handing
/// the error to us. Its default (no limit) retries transient failures for up
/// to 15 minutes inside a single call, which would hide an outage from the
/// sync loop's health report.
const REQUEST_RETRY_LIMIT: usize = 3;
/// Device id used only by the throw-away client that asks the homeserver who
/// an access token belongs to; never stored.
const PROBE_DEVICE_ID: &str = "SURFACESPROBE";

/// How to log in.
#[derive(Clone)]
pub struct LoginParams {
    /// Base URL of the homeserver's client API, e.g. `https://matrix.example.org`.
    pub homeserver_url: String,
    /// The bot's full user id, e.g. `@surfaces:example.org`.
    pub user_id: String,
    /// Password for a first login (creates a device).
    pub password: Option<String>,
    /// Access token to adopt instead of logging in (its device is reused).
    pub access_token: Option<String>,
    /// Display name of the device created by a password login.
    pub device_name: String,
}

impl fmt::Debug for LoginParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginParams")
            .field("homeserver_url", &self.homeserver_url)
            .field("user_id", &self.user_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("device_name", &self.device_name)
            .finish()
    }
}

/// What `matrix-session.json` holds.
#[derive(Clone, Serialize, Deserialize)]
struct SessionFile {
    version: u32,
    homeserver_url: String,
    /// `user_id`, `device_id`, `access_token` (and `refresh_token`).
    #[serde(flatten)]
    session: MatrixSession,
}

/// Builds a client on the sqlite store in `data_dir/matrix` and logs it in:
/// restores `data_dir/matrix-session.json` when it exists (no login, same
/// device), otherwise logs in with the password (or adopts the access token)
/// and writes that file.
///
/// A restored session is checked with `whoami`: a rejected token gives
/// [`MatrixError::InvalidToken`]; an unreachable homeserver only logs a
/// warning and the client is returned anyway (the sync loop will retry).
///
/// This client shares its room keys with every device: identity-based sharing needs the
/// device's own cross-signing identity, which only the connector sets up
/// ([`super::crypto::secure_identity`]) before choosing the strategy with [`connect_with`].
pub async fn connect(params: &LoginParams, data_dir: &Path) -> Result<Client, MatrixError> {
    connect_with(params, data_dir, KeySharing::AllDevices).await
}

/// [`connect`], the client sharing its room keys as `key_sharing` says.
pub async fn connect_with(
    params: &LoginParams,
    data_dir: &Path,
    key_sharing: KeySharing,
) -> Result<Client, MatrixError> {
    let user_id = parse_user_id(&params.user_id)?;
    fs::create_dir_all(data_dir)
        .map_err(|e| MatrixError::io("creating the data directory", data_dir, e))?;
    let session_path = data_dir.join(SESSION_FILE_NAME);
    let store_path = data_dir.join(STORE_DIR_NAME);

    if session_path.exists() {
        let stored = read_session_file(&session_path)?;
        check_stored_session(&stored, params, &user_id, &session_path)?;
        let client = build_client(&params.homeserver_url, &store_path, key_sharing).await?;
        let device_id = stored.session.meta.device_id.clone();
        client
            .restore_session(stored.session)
            .await
            .map_err(|e| MatrixError::from_sdk("restoring the stored session", e))?;
        info!(user_id = %user_id, device_id = %device_id, "restored the Matrix session");
        verify_restored(&client, &user_id, &device_id).await?;
        return Ok(client);
    }

    if params.password.is_none() && params.access_token.is_none() {
        return Err(MatrixError::Setup(format!(
            "no Matrix session in {} and neither a password nor an access token is configured",
            session_path.display()
        )));
    }

    // A store without a session file belongs to a device we can no longer
    // use (its token is lost): keep it aside rather than mixing its keys
    // with the new device's.
    set_aside_orphan_store(&store_path)?;
    let client = build_client(&params.homeserver_url, &store_path, key_sharing).await?;

    let session = if let Some(password) = &params.password {
        let response = client
            .matrix_auth()
            .login_username(user_id.as_str(), password)
            .initial_device_display_name(&params.device_name)
            .send()
            .await
            .map_err(|e| MatrixError::from_sdk("logging in", e))?;
        let session = MatrixSession::from(&response);
        info!(user_id = %session.meta.user_id, device_id = %session.meta.device_id,
            "logged in to Matrix as a new device");
        session
    } else if let Some(token) = &params.access_token {
        let device_id = device_of_token(&params.homeserver_url, &user_id, token).await?;
        let session = MatrixSession {
            meta: SessionMeta {
                user_id: user_id.clone(),
                device_id,
            },
            tokens: SessionTokens {
                access_token: token.clone(),
                refresh_token: None,
            },
        };
        client
            .restore_session(session.clone())
            .await
            .map_err(|e| MatrixError::from_sdk("adopting the access token", e))?;
        info!(user_id = %session.meta.user_id, device_id = %session.meta.device_id,
            "adopted the configured access token");
        session
    } else {
        // Checked above.
        return Err(MatrixError::Setup("no Matrix credentials".into()));
    };

    let file = SessionFile {
        version: SESSION_FILE_VERSION,
        homeserver_url: params.homeserver_url.clone(),
        session,
    };
    write_session_file(&session_path, &file)?;
    Ok(client)
}

fn parse_user_id(raw: &str) -> Result<OwnedUserId, MatrixError> {
    OwnedUserId::try_from(raw).map_err(|e| {
        MatrixError::Setup(format!(
            "the bot's user id {raw:?} is not a Matrix user id (@name:server): {e}"
        ))
    })
}

/// Refuses a session file written for another account (a changed
/// homeserver URL for the same account is only logged).
fn check_stored_session(
    stored: &SessionFile,
    params: &LoginParams,
    user_id: &OwnedUserId,
    path: &Path,
) -> Result<(), MatrixError> {
    if stored.session.meta.user_id != *user_id {
        return Err(MatrixError::Setup(format!(
            "{} holds a session of {} but the bot is configured as {}; delete that file and \
             the store directory `{STORE_DIR_NAME}/` next to it to log in again",
            path.display(),
            stored.session.meta.user_id,
            user_id
        )));
    }
    if !same_url(&stored.homeserver_url, &params.homeserver_url) {
        // Same account (checked above), reached at another URL: the token
        // is checked against the configured URL right after.
        warn!(stored = %stored.homeserver_url, configured = %params.homeserver_url,
            "the homeserver URL changed since the session was stored; using the configured one");
    }
    Ok(())
}

/// Compares homeserver URLs, ignoring a trailing slash.
fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Asks the homeserver whether the restored token is still good.
async fn verify_restored(
    client: &Client,
    user_id: &OwnedUserId,
    device_id: &OwnedDeviceId,
) -> Result<(), MatrixError> {
    match client.whoami().await {
        Ok(whoami) => {
            if whoami.user_id != *user_id {
                return Err(MatrixError::Setup(format!(
                    "the stored access token belongs to {}, not {}",
                    whoami.user_id, user_id
                )));
            }
            if let Some(actual) = whoami.device_id {
                if actual != *device_id {
                    return Err(MatrixError::Setup(format!(
                        "the stored access token belongs to device {actual}, not the stored \
                         device {device_id}; delete the session file and the store to log in \
                         again"
                    )));
                }
            }
            Ok(())
        }
        Err(error) => {
            let error = MatrixError::from_http("checking the stored session", error);
            if error.is_retryable() {
                warn!(%error, "cannot check the stored session now; continuing with it");
                Ok(())
            } else {
                Err(error)
            }
        }
    }
}

/// Finds the device of an access token with a throw-away in-memory client
/// (`whoami` needs a session, and a session needs a device id).
async fn device_of_token(
    homeserver_url: &str,
    user_id: &OwnedUserId,
    token: &str,
) -> Result<OwnedDeviceId, MatrixError> {
    let probe = Client::builder()
        .homeserver_url(homeserver_url)
        .request_config(RequestConfig::new().retry_limit(REQUEST_RETRY_LIMIT))
        .build()
        .await
        .map_err(|e| MatrixError::permanent("creating the Matrix client", e))?;
    probe
        .restore_session(MatrixSession {
            meta: SessionMeta {
                user_id: user_id.clone(),
                device_id: PROBE_DEVICE_ID.into(),
            },
            tokens: SessionTokens {
                access_token: token.to_owned(),
                refresh_token: None,
            },
        })
        .await
        .map_err(|e| MatrixError::from_sdk("preparing the access token check", e))?;
    let whoami = probe
        .whoami()
        .await
        .map_err(|e| MatrixError::from_http("checking the configured access token", e))?;
    if whoami.user_id != *user_id {
        return Err(MatrixError::Setup(format!(
            "the configured access token belongs to {}, not {}",
            whoami.user_id, user_id
        )));
    }
    whoami.device_id.ok_or_else(|| {
        MatrixError::Setup(
            "the configured access token has no device (an appservice token?); use a password \
             or a token from a device login"
                .into(),
        )
    })
}

/// Builds a client whose state and crypto stores live in `store_path`.
async fn build_client(
    homeserver_url: &str,
    store_path: &Path,
    key_sharing: KeySharing,
) -> Result<Client, MatrixError> {
    create_private_dir(store_path)?;
    Client::builder()
        .homeserver_url(homeserver_url)
        .sqlite_store(store_path, None)
        .with_encryption_settings(super::crypto::encryption_settings())
        .with_room_key_recipient_strategy(super::crypto::key_sharing_strategy(key_sharing))
        .request_config(RequestConfig::new().retry_limit(REQUEST_RETRY_LIMIT))
        .build()
        .await
        .map_err(|e| {
            MatrixError::permanent(
                format!(
                    "opening the Matrix client on {} with the store in {}",
                    homeserver_url,
                    store_path.display()
                ),
                e,
            )
        })
}

/// Creates `path` (and parents), owner-only on unix.
fn create_private_dir(path: &Path) -> Result<(), MatrixError> {
    fs::create_dir_all(path)
        .map_err(|e| MatrixError::io("creating the Matrix store directory", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(STORE_DIR_MODE))
            .map_err(|e| MatrixError::io("restricting the Matrix store directory", path, e))?;
    }
    Ok(())
}

/// Renames a store left without its session file to
/// `matrix.orphaned-<unix seconds>`.
fn set_aside_orphan_store(store_path: &Path) -> Result<(), MatrixError> {
    if !store_path.exists() {
        return Ok(());
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let aside = orphan_path(store_path, secs);
    warn!(store = %store_path.display(), moved_to = %aside.display(),
        "found a Matrix store without a session file; setting it aside and logging in as a \
         new device");
    fs::rename(store_path, &aside)
        .map_err(|e| MatrixError::io("setting aside the orphaned Matrix store", store_path, e))
}

fn orphan_path(store_path: &Path, secs: u64) -> PathBuf {
    let mut name = store_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| STORE_DIR_NAME.into());
    name.push(format!(".orphaned-{secs}"));
    store_path.with_file_name(name)
}

fn read_session_file(path: &Path) -> Result<SessionFile, MatrixError> {
    let bytes =
        fs::read(path).map_err(|e| MatrixError::io("reading the Matrix session file", path, e))?;
    let file: SessionFile = serde_json::from_slice(&bytes).map_err(|e| {
        MatrixError::Setup(format!(
            "the Matrix session file {} is unreadable ({e}); delete it and the store directory \
             `{STORE_DIR_NAME}/` next to it to log in again",
            path.display()
        ))
    })?;
    if file.version != SESSION_FILE_VERSION {
        return Err(MatrixError::Setup(format!(
            "the Matrix session file {} has version {}, this build reads version \
             {SESSION_FILE_VERSION}",
            path.display(),
            file.version
        )));
    }
    Ok(file)
}

/// Writes the session file atomically: a private temporary file next to it,
/// flushed, then renamed over it.
fn write_session_file(path: &Path, file: &SessionFile) -> Result<(), MatrixError> {
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| MatrixError::permanent("encoding the Matrix session", e))?;
    let tmp = temp_path(path);
    let result = write_private(&tmp, &json).and_then(|()| fs::rename(&tmp, path));
    if let Err(error) = result {
        let _ = fs::remove_file(&tmp);
        return Err(MatrixError::io(
            "writing the Matrix session file",
            path,
            error,
        ));
    }
    // Make the rename itself durable; not fatal if the platform refuses.
    if let Some(dir) = path.parent() {
        if let Err(error) = File::open(dir).and_then(|d| d.sync_all()) {
            warn!(%error, dir = %dir.display(), "cannot sync the data directory");
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| SESSION_FILE_NAME.into());
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(SESSION_FILE_MODE);
    }
    let mut file = options.open(path)?;
    // The mode only applies to a new file; enforce it on a leftover one.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(SESSION_FILE_MODE))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> LoginParams {
        LoginParams {
            homeserver_url: "http://127.0.0.1:8008".into(),
            user_id: "@bot:example.org".into(),
            password: Some("hunter2".into()),
            access_token: Some("syt_secret".into()),
            device_name: "Surfaces".into(),
        }
    }

    fn session_file() -> SessionFile {
        SessionFile {
            version: SESSION_FILE_VERSION,
            homeserver_url: "http://127.0.0.1:8008/".into(),
            session: MatrixSession {
                meta: SessionMeta {
                    user_id: "@bot:example.org".try_into().unwrap(),
                    device_id: "ABCDEF".into(),
                },
                tokens: SessionTokens {
                    access_token: "syt_secret".into(),
                    refresh_token: None,
                },
            },
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let shown = format!("{:?}", params());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("syt_secret"), "{shown}");
        assert!(shown.contains("@bot:example.org"));
    }

    #[test]
    fn session_file_round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SESSION_FILE_NAME);
        write_session_file(&path, &session_file()).unwrap();
        let back = read_session_file(&path).unwrap();
        assert_eq!(back.session, session_file().session);
        let value: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(value["device_id"], "ABCDEF");
        assert_eq!(value["user_id"], "@bot:example.org");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, SESSION_FILE_MODE);
        }
        // Overwriting works and leaves no temporary file behind.
        write_session_file(&path, &session_file()).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SESSION_FILE_NAME)]);
    }

    #[test]
    fn garbage_session_file_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SESSION_FILE_NAME);
        fs::write(&path, b"{not json").unwrap();
        let err = read_session_file(&path).err().unwrap();
        assert!(matches!(err, MatrixError::Setup(_)), "{err}");
        assert!(err.to_string().contains("delete it"), "{err}");
    }

    #[test]
    fn stored_session_must_match_configuration() {
        let stored = session_file();
        let path = Path::new("/data/matrix-session.json");
        let user = parse_user_id("@bot:example.org").unwrap();
        assert!(check_stored_session(&stored, &params(), &user, path).is_ok());

        let other = parse_user_id("@other:example.org").unwrap();
        let mut p = params();
        p.user_id = other.to_string();
        assert!(check_stored_session(&stored, &p, &other, path).is_err());

        let mut p = params();
        p.homeserver_url = "https://matrix.example.org".into();
        assert!(check_stored_session(&stored, &p, &user, path).is_ok());
    }

    #[test]
    fn bad_user_id_is_a_setup_error() {
        assert!(matches!(parse_user_id("bot"), Err(MatrixError::Setup(_))));
    }

    #[test]
    fn orphan_and_temp_paths() {
        assert_eq!(
            orphan_path(Path::new("/d/matrix"), 42),
            PathBuf::from("/d/matrix.orphaned-42")
        );
        let tmp = temp_path(Path::new("/d/matrix-session.json"));
        assert_eq!(tmp.parent(), Some(Path::new("/d")));
        assert!(tmp
            .to_string_lossy()
            .starts_with("/d/matrix-session.json.tmp-"));
    }

    #[tokio::test]
    async fn connect_without_credentials_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = params();
        p.password = None;
        p.access_token = None;
        let err = connect(&p, dir.path()).await.err().unwrap();
        assert!(matches!(err, MatrixError::Setup(_)), "{err}");
    }
}
