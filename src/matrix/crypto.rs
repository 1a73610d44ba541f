//! The bot's cryptographic identity: cross-signed from the first start, recoverable after.
//!
//! Why this exists: clients now share room keys only with devices their owner has
//! cross-signed (MSC4153; Element's "exclude insecure devices", matrix-sdk's
//! `CollectStrategy::IdentityBasedStrategy`). A bot without a published identity gets no
//! room keys from such a client, so it cannot read, and does not answer, what that person
//! writes. So at every start, before the first sync, [`secure_identity`]:
//! - bootstraps cross-signing on an account that has none (password UIA; with an
//!   access-token login and no password, the log says what the operator must do);
//! - restores the identity (and the key backup) from secret storage with the recovery key on
//!   an account that has one but whose keys this device does not hold (a fresh data dir);
//! - signs its own device when it holds the keys but the device is not signed yet;
//! - then sets up recovery (secret storage + key backup, [`super::recovery`]).
//!
//! Each step is idempotent: a device already signed and an account with recovery are left
//! alone. What to do is a pure decision ([`identity_step`], [`recovery_step`]), table-tested;
//! the effects follow it. A failure here is logged with what to do and the bot goes on (it
//! still reads the rooms of people whose clients share with every device), and the next
//! start tries again.
//!
//! The room keys the bot sends follow the same recommendation ([`key_sharing_strategy`]):
//! identity-based by default (`matrix.key_sharing`).

use std::fmt;
use std::path::PathBuf;

use matrix_sdk::encryption::recovery::RecoveryState;
use matrix_sdk::encryption::{BackupDownloadStrategy, EncryptionSettings};
use matrix_sdk::ruma::api::client::uiaa::{
    AuthData, MatrixUserIdentifier, Password, UserIdentifier,
};
use matrix_sdk::Client;
/// matrix-sdk's key-sharing strategies (re-exported for the test kit's simulated clients).
pub use matrix_sdk_crypto::CollectStrategy;
use tracing::{error, info, warn};

use matrix_sdk::ruma::api::client::backup::get_latest_backup_info;
use matrix_sdk::ruma::api::client::keys::upload_keys;

use super::recovery::{self, KeySource};
use super::MatrixError;
use crate::config::KeySharing;
use crate::surface::encryption::EncryptionHealth;

/// What [`secure_identity`] needs besides the client.
#[derive(Clone)]
pub struct CryptoSetup {
    /// The bot's password, for the user-interactive auth of the first cross-signing upload.
    pub password: Option<String>,
    /// `matrix.recovery_key`, when configured.
    pub recovery_key: Option<String>,
    /// The data directory (where `recovery-key` is written and read).
    pub data_dir: PathBuf,
    /// `matrix.key_sharing`.
    pub key_sharing: KeySharing,
}

impl fmt::Debug for CryptoSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoSetup")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "recovery_key",
                &self.recovery_key.as_ref().map(|_| "<redacted>"),
            )
            .field("data_dir", &self.data_dir)
            .field("key_sharing", &self.key_sharing)
            .finish()
    }
}

/// matrix-sdk's key-sharing strategy for `matrix.key_sharing`.
pub fn key_sharing_strategy(sharing: KeySharing) -> CollectStrategy {
    match sharing {
        KeySharing::IdentityBased => CollectStrategy::IdentityBasedStrategy,
        KeySharing::AllDevices => CollectStrategy::AllDevices,
    }
}

/// The client's encryption settings: nothing automatic at login (our own steps below run
/// them, with log lines an operator can act on); once a backup key is known (recovery), all
/// the room keys in the backup are downloaded.
pub fn encryption_settings() -> EncryptionSettings {
    EncryptionSettings {
        auto_enable_cross_signing: false,
        backup_download_strategy: BackupDownloadStrategy::OneShot,
        auto_enable_backups: false,
    }
}

/// What the device knows of its identity, read before deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityFacts {
    /// The device holds the private self-signing key (it can sign devices).
    pub holds_keys: bool,
    /// The device is signed by its owner's identity.
    pub device_signed: bool,
    /// The account has a published cross-signing identity on the homeserver.
    pub identity_on_server: bool,
    /// A recovery key is at hand (config or file).
    pub recovery_key: bool,
    /// A password is configured.
    pub password: bool,
}

/// What to do about the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityStep {
    /// Signed and able to sign: nothing to do.
    Nothing,
    /// The device holds the keys but is not signed: sign it.
    SignDevice,
    /// The account has an identity this device lacks: restore it with the recovery key.
    Recover,
    /// The account has no identity: create and upload one (password UIA).
    Bootstrap,
    /// The operator must act; the reason says what.
    Operator(OperatorAction),
}

/// Why the operator must act.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    /// No identity and no password (access-token login).
    NeedPassword,
    /// An identity exists but this device lacks its keys and no recovery key is at hand.
    NeedRecoveryKey,
}

impl OperatorAction {
    /// The log line telling the operator what to do.
    pub fn advice(self) -> &'static str {
        match self {
            OperatorAction::NeedPassword => {
                "the bot's device is not cross-signed and the account has no cross-signing \
                 identity; people whose clients exclude insecure devices (Element's default \
                 direction, MSC4153) will not share room keys with it and the bot cannot read \
                 their messages. Uploading a new identity needs the account's password: set \
                 matrix.password (or SURFACES__MATRIX__PASSWORD) for one start (the bot keeps \
                 its device and session; the password can be removed afterwards), or set up \
                 cross-signing and recovery for this account in a client and give the \
                 recovery key as matrix.recovery_key"
            }
            OperatorAction::NeedRecoveryKey => {
                "the account has a cross-signing identity but this device does not hold its \
                 keys (a fresh data directory?), so the device stays unsigned and people who \
                 exclude insecure devices share no room keys with it. Give the bot's recovery \
                 key as matrix.recovery_key (or SURFACES__MATRIX__RECOVERY_KEY; it was written \
                 to <data_dir>/recovery-key at the first start) and restart"
            }
        }
    }
}

/// The identity decision (pure).
pub fn identity_step(facts: IdentityFacts) -> IdentityStep {
    if facts.holds_keys {
        return if facts.device_signed {
            IdentityStep::Nothing
        } else {
            IdentityStep::SignDevice
        };
    }
    if facts.identity_on_server {
        return if facts.recovery_key {
            IdentityStep::Recover
        } else {
            IdentityStep::Operator(OperatorAction::NeedRecoveryKey)
        };
    }
    if facts.password {
        IdentityStep::Bootstrap
    } else {
        IdentityStep::Operator(OperatorAction::NeedPassword)
    }
}

/// What to do about recovery (secret storage + key backup), once the identity is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryStep {
    /// Recovery is set up and this device holds every secret.
    Nothing,
    /// No secret storage on the account: create it and the key backup, hand the key over.
    Enable,
    /// Secret storage exists but this device lacks secrets: import them with the key.
    Recover,
    /// Secret storage exists, the device lacks secrets and no key is at hand.
    NeedKey,
    /// The device has no identity to protect (cross-signing could not be set up).
    NoIdentity,
}

/// The recovery decision (pure).
pub fn recovery_step(state: RecoveryState, holds_keys: bool, recovery_key: bool) -> RecoveryStep {
    match state {
        RecoveryState::Enabled => RecoveryStep::Nothing,
        _ if !holds_keys && !recovery_key => RecoveryStep::NoIdentity,
        RecoveryState::Incomplete if recovery_key => RecoveryStep::Recover,
        RecoveryState::Incomplete => RecoveryStep::NeedKey,
        // Disabled, or Unknown (the check failed): enabling checks the server again.
        RecoveryState::Disabled | RecoveryState::Unknown if holds_keys => RecoveryStep::Enable,
        RecoveryState::Disabled | RecoveryState::Unknown => RecoveryStep::NoIdentity,
    }
}

/// Sets up, restores or checks the bot's identity and recovery (see the module docs).
/// Never fails the start: every problem is logged with what to do. Returns whether the
/// device now holds its identity's keys: matrix-sdk refuses to send with identity-based key
/// sharing without them, so the caller then shares with every device instead.
pub async fn secure_identity(client: &Client, setup: &CryptoSetup) -> bool {
    let started = std::time::Instant::now();
    // matrix-sdk's own set-up after login (backup resume, recovery state) runs in the
    // background; the decisions below read its results.
    client
        .encryption()
        .wait_for_e2ee_initialization_tasks()
        .await;
    let key = recovery::find_key(setup.recovery_key.as_deref(), &setup.data_dir);
    if let Err(error) = settle_identity(client, setup, key.as_ref()).await {
        error!(%error, "cannot set up the bot's cross-signing identity; people who exclude \
            insecure devices cannot write to it until this is fixed (retried at the next \
            start)");
    }
    if let Err(error) = settle_recovery(client, setup, key.as_ref()).await {
        error!(%error, "cannot set up key backup and recovery; the bot's room keys are not \
            backed up (retried at the next start)");
    }
    let status = client.encryption().cross_signing_status().await;
    let signed = own_device_signed(client).await;
    info!(
        cross_signed = signed,
        holds_cross_signing_keys = status.is_some_and(|s| s.is_complete()),
        recovery = ?client.encryption().recovery().state(),
        device_id = ?client.device_id(),
        device_ed25519 = ?client.encryption().ed25519_key().await,
        backup = ?client.encryption().backups().state(),
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "end-to-end encryption identity checked"
    );
    holds_keys(client).await
}

/// The device's encryption state now, for `/status` (reads the local store; asks the
/// homeserver for the backup's version).
pub async fn snapshot(client: &Client) -> EncryptionHealth {
    let encryption = client.encryption();
    let backup_version = match client
        .send(get_latest_backup_info::v3::Request::new())
        .await
    {
        Ok(response) => Some(response.version),
        Err(error) => {
            // 404 M_NOT_FOUND: no backup at all.
            tracing::debug!(%error, "no key backup version");
            None
        }
    };
    EncryptionHealth {
        cross_signed: own_device_signed(client).await,
        backup_enabled: encryption.backups().are_enabled().await,
        backup_version,
        recovery: recovery_label(encryption.recovery().state()).to_owned(),
        one_time_keys: one_time_key_count(client).await,
    }
}

/// The one-time keys the homeserver holds for the device: an upload of nothing answers
/// the counts (matrix-sdk keeps its own count for its tests only).
async fn one_time_key_count(client: &Client) -> Option<u64> {
    match client.send(upload_keys::v3::Request::new()).await {
        Ok(response) => Some(
            response
                .one_time_key_counts
                .values()
                .map(|n| u64::from(*n))
                .sum(),
        ),
        Err(error) => {
            tracing::debug!(%error, "cannot read the one-time key count");
            None
        }
    }
}

/// How `/status` names a recovery state.
pub fn recovery_label(state: RecoveryState) -> &'static str {
    match state {
        RecoveryState::Enabled => "enabled",
        RecoveryState::Incomplete => "incomplete",
        RecoveryState::Disabled => "disabled",
        RecoveryState::Unknown => "unknown",
    }
}

/// Refreshes the snapshot in `health` every [`SNAPSHOT_EVERY`] until `shutdown`.
pub async fn keep_snapshot_fresh(
    client: Client,
    health: std::sync::Arc<crate::surface::health::SyncHealth>,
    mut shutdown: crate::surface::Shutdown,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SNAPSHOT_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        health.set_encryption(snapshot(&client).await);
    }
}

/// How often the encryption snapshot of `/status` is refreshed.
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

async fn own_device_signed(client: &Client) -> bool {
    match client.encryption().get_own_device().await {
        Ok(Some(device)) => device.is_cross_signed_by_owner(),
        _ => false,
    }
}

async fn holds_keys(client: &Client) -> bool {
    client
        .encryption()
        .cross_signing_status()
        .await
        .is_some_and(|s| s.has_self_signing && s.has_master)
}

async fn settle_identity(
    client: &Client,
    setup: &CryptoSetup,
    key: Option<&KeySource>,
) -> Result<(), MatrixError> {
    let user_id = client
        .user_id()
        .map(ToOwned::to_owned)
        .ok_or_else(|| MatrixError::Setup("the Matrix session has no user id".into()))?;
    let holds = holds_keys(client).await;
    let identity_on_server = if holds {
        true
    } else {
        client
            .encryption()
            .request_user_identity(&user_id)
            .await
            .map_err(|e| MatrixError::from_sdk("reading the bot's cross-signing identity", e))?
            .is_some()
    };
    let facts = IdentityFacts {
        holds_keys: holds,
        device_signed: own_device_signed(client).await,
        identity_on_server,
        recovery_key: key.is_some(),
        password: setup.password.is_some(),
    };
    let step = identity_step(facts);
    match step {
        IdentityStep::Nothing => {
            info!("the bot's device is cross-signed by its identity");
        }
        IdentityStep::SignDevice => {
            let device = client
                .encryption()
                .get_own_device()
                .await
                .map_err(|e| MatrixError::permanent("reading the bot's own device", e))?
                .ok_or_else(|| MatrixError::Setup("the bot's own device is unknown".into()))?;
            device
                .verify()
                .await
                .map_err(|e| MatrixError::permanent("signing the bot's device", e))?;
            info!("signed the bot's device with its cross-signing identity");
        }
        IdentityStep::Recover => {
            if let Some(key) = key {
                recovery::recover(client, key).await?;
            }
        }
        IdentityStep::Bootstrap => {
            let password = setup.password.clone().unwrap_or_default();
            bootstrap(client, &user_id, password).await?;
            info!(
                "created the bot's cross-signing identity and signed its device; clients \
                that exclude insecure devices now share room keys with it"
            );
        }
        IdentityStep::Operator(action) => {
            warn!(
                advice = action.advice(),
                "the bot's device is not cross-signed"
            );
        }
    }
    Ok(())
}

/// Uploads a new cross-signing identity: first without auth (homeservers with MSC3967 allow
/// the first upload), then with the password when the homeserver asks for it.
async fn bootstrap(
    client: &Client,
    user_id: &matrix_sdk::ruma::UserId,
    password: String,
) -> Result<(), MatrixError> {
    let encryption = client.encryption();
    match encryption.bootstrap_cross_signing(None).await {
        Ok(()) => Ok(()),
        Err(error) => {
            let Some(uiaa) = error.as_uiaa_response() else {
                return Err(MatrixError::from_sdk(
                    "uploading the cross-signing keys",
                    error,
                ));
            };
            let mut auth = Password::new(
                UserIdentifier::Matrix(MatrixUserIdentifier::new(user_id.to_string())),
                password,
            );
            auth.session = uiaa.session.clone();
            encryption
                .bootstrap_cross_signing(Some(AuthData::Password(auth)))
                .await
                .map_err(|e| {
                    MatrixError::from_sdk("uploading the cross-signing keys with the password", e)
                })
        }
    }
}

async fn settle_recovery(
    client: &Client,
    setup: &CryptoSetup,
    key: Option<&KeySource>,
) -> Result<(), MatrixError> {
    let state = client.encryption().recovery().state();
    let holds = holds_keys(client).await;
    match recovery_step(state, holds, key.is_some()) {
        RecoveryStep::Nothing => {
            info!(backup = ?client.encryption().backups().state(),
                "key backup and recovery are set up");
            Ok(())
        }
        RecoveryStep::Enable => recovery::enable(client, &setup.data_dir, key).await,
        RecoveryStep::Recover => match key {
            Some(key) => recovery::recover(client, key).await,
            None => Ok(()),
        },
        RecoveryStep::NeedKey => {
            warn!(
                "the account has secret storage but this device lacks some of its secrets \
                and no recovery key is at hand; set matrix.recovery_key (or \
                SURFACES__MATRIX__RECOVERY_KEY) to the bot's recovery key and restart"
            );
            Ok(())
        }
        RecoveryStep::NoIdentity => {
            warn!(
                "key backup and recovery are not set up: the bot has no cross-signing \
                identity yet (see the line above)"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(holds: bool, signed: bool, server: bool, key: bool, pw: bool) -> IdentityFacts {
        IdentityFacts {
            holds_keys: holds,
            device_signed: signed,
            identity_on_server: server,
            recovery_key: key,
            password: pw,
        }
    }

    #[test]
    fn identity_steps() {
        use IdentityStep::*;
        use OperatorAction::*;
        let table = [
            // holds, signed, on server, key, password
            (facts(true, true, true, false, false), Nothing),
            (facts(true, true, true, true, true), Nothing),
            (facts(true, false, true, false, false), SignDevice),
            (facts(false, false, true, true, false), Recover),
            (facts(false, false, true, true, true), Recover),
            (
                facts(false, false, true, false, true),
                Operator(NeedRecoveryKey),
            ),
            (facts(false, false, false, false, true), Bootstrap),
            (facts(false, false, false, true, true), Bootstrap),
            (
                facts(false, false, false, false, false),
                Operator(NeedPassword),
            ),
            (
                facts(false, false, false, true, false),
                Operator(NeedPassword),
            ),
        ];
        for (facts, want) in table {
            assert_eq!(identity_step(facts), want, "{facts:?}");
        }
    }

    #[test]
    fn recovery_steps() {
        use RecoveryState as S;
        use RecoveryStep::*;
        let table = [
            // state, holds keys, key at hand
            (S::Enabled, true, false, Nothing),
            (S::Enabled, false, false, Nothing),
            (S::Disabled, true, false, Enable),
            (S::Disabled, true, true, Enable),
            (S::Unknown, true, false, Enable),
            (S::Disabled, false, false, NoIdentity),
            (S::Incomplete, true, true, Recover),
            (S::Incomplete, false, true, Recover),
            (S::Incomplete, true, false, NeedKey),
            (S::Incomplete, false, false, NoIdentity),
        ];
        for (state, holds, key, want) in table {
            assert_eq!(
                recovery_step(state, holds, key),
                want,
                "{state:?} {holds} {key}"
            );
        }
    }

    #[test]
    fn recovery_labels() {
        assert_eq!(recovery_label(RecoveryState::Enabled), "enabled");
        assert_eq!(recovery_label(RecoveryState::Incomplete), "incomplete");
        assert_eq!(recovery_label(RecoveryState::Disabled), "disabled");
        assert_eq!(recovery_label(RecoveryState::Unknown), "unknown");
    }

    #[test]
    fn strategies() {
        assert_eq!(
            key_sharing_strategy(KeySharing::default()),
            CollectStrategy::IdentityBasedStrategy
        );
        assert_eq!(
            key_sharing_strategy(KeySharing::AllDevices),
            CollectStrategy::AllDevices
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let setup = CryptoSetup {
            password: Some("hunter2".into()),
            recovery_key: Some("EsT1 sekrit".into()),
            data_dir: PathBuf::from("/data"),
            key_sharing: KeySharing::default(),
        };
        let shown = format!("{setup:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
    }
}
