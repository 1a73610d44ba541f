//! Matrix as a [`Connector`]: the Matrix adapter's lifecycle.
//!
//! Why this exists: the runtime starts every messenger the same way; this file is what
//! "start" means for Matrix. [`MatrixConnector::connect`] logs in (or restores the session);
//! [`Connector::prepare`] uploads the sync filter, registers the invite handler and runs the
//! first sync from the bot's own cursor (so reconciliation reads current room state);
//! [`Connector::go_live`] hands the first sync's messages to the core (catch-up after down
//! time), starts the watcher of messages that cannot be decrypted yet, and the supervised
//! sync actor.

use std::sync::Arc;
use std::time::Duration;

use actors::{ActorId, ChildSpec, SupervisorHandle};
use async_trait::async_trait;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::OwnedUserId;
use matrix_sdk::{Client, Room, RoomState};

use super::inbound::{InboundDeps, MatrixInbound};
use super::surface::MatrixSurface;
use super::sync_actor::{SyncActor, SyncDeps};
use super::{bot_filter, initial_sync, InitialSync, LoginParams, MatrixError, SyncHealth};
use super::{MatrixError as Error, SyncLoopSettings};
use super::{PendingResponse, SyncOutcome, Unhandled};
use crate::config::{Config, KeySharing};
use crate::retry::{retry, RetryPolicy};
use crate::runtime::ids::SYNC_ACTOR;
use crate::surface::{
    ChatId, Connector, Inbound, Invite, PersonId, Shutdown, Stopper, Surface, SurfaceError,
};

/// The Matrix adapter, from login to its running sync actor.
pub struct MatrixConnector {
    surface: Arc<MatrixSurface>,
    client: Client,
    bot: OwnedUserId,
    health: Arc<SyncHealth>,
    sync: crate::config::SyncConfig,
    settings: SyncLoopSettings,
    initial: Option<InitialSync>,
    /// `matrix.undecryptable_grace_secs`.
    undecryptable_grace: std::time::Duration,
}

impl MatrixConnector {
    /// Logs in as `config.matrix` (or restores the session in the data dir).
    pub async fn connect(config: &Config) -> Result<Self, MatrixError> {
        let params = LoginParams {
            homeserver_url: config.matrix.homeserver_url.clone(),
            user_id: config.matrix.user_id.clone(),
            // An empty secret is unset (as the config check reads it), so an empty
            // password beside an access token does not turn into a failing password login.
            password: config
                .matrix
                .password
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| s.expose().to_owned()),
            access_token: config
                .matrix
                .access_token
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| s.expose().to_owned()),
            device_name: config.matrix.device_name.clone(),
        };
        let mut client =
            super::connect_with(&params, &config.data_dir, config.matrix.key_sharing).await?;
        let setup = super::crypto::CryptoSetup {
            password: params.password.clone(),
            recovery_key: config
                .matrix
                .recovery_key
                .as_ref()
                .map(|s| s.expose().to_owned()),
            data_dir: config.data_dir.clone(),
            key_sharing: config.matrix.key_sharing,
        };
        let has_identity = super::crypto::secure_identity(&client, &setup).await;
        if !has_identity && config.matrix.key_sharing == KeySharing::IdentityBased {
            // matrix-sdk cannot send at all with identity-based sharing from a device
            // without a verified identity; the strategy is fixed when the client is built.
            tracing::warn!(
                "the bot has no cross-signing identity (see above), so it cannot \
                share room keys by identity (matrix.key_sharing); until it has one it shares \
                them with every device"
            );
            drop(client);
            client = super::connect_with(&params, &config.data_dir, KeySharing::AllDevices).await?;
        }
        let this = Self::new(client, config)?;
        this.health
            .set_encryption(super::crypto::snapshot(&this.client).await);
        Ok(this)
    }

    /// The adapter of the bot logged in as `client`.
    pub fn new(client: Client, config: &Config) -> Result<Self, MatrixError> {
        let bot = client
            .user_id()
            .map(ToOwned::to_owned)
            .ok_or_else(|| Error::Setup("the Matrix session has no user id".to_owned()))?;
        let surface = Arc::new(MatrixSurface::new(
            client.clone(),
            config.matrix.encrypt_rooms,
        )?);
        tracing::info!(user_id = %bot, "connected to the homeserver");
        Ok(Self {
            surface,
            client,
            bot,
            health: SyncHealth::new(),
            sync: config.sync.clone(),
            settings: SyncLoopSettings::default(),
            initial: None,
            undecryptable_grace: config.matrix.undecryptable_grace(),
        })
    }

    /// The matrix-sdk client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Connector for MatrixConnector {
    fn surface(&self) -> Arc<dyn Surface> {
        self.surface.clone()
    }

    fn health(&self) -> Arc<SyncHealth> {
        self.health.clone()
    }

    fn reader(&self) -> Option<ActorId> {
        Some(ActorId::singleton(SYNC_ACTOR))
    }

    async fn prepare(&mut self, inbound: Arc<dyn Inbound>) -> Result<(), SurfaceError> {
        register_invites(&self.client, &self.bot, self.surface(), inbound.clone());
        super::verification::cancel_incoming_requests(&self.client);
        self.settings.filter = sync_filter(&self.client, self.sync.timeline_limit).await;
        let cursor = inbound.cursor(self.surface.name()).map_err(|e| {
            SurfaceError::failed(
                "reading the sync cursor",
                crate::retry::RetryKind::Permanent,
                e,
            )
        })?;
        let (client, health, settings) = (&self.client, &self.health, &self.settings);
        let initial = retry(&RetryPolicy::STARTUP, "the first sync", || {
            initial_sync(client, health, cursor.as_deref(), settings)
        })
        .await?;
        self.initial = Some(initial);
        Ok(())
    }

    async fn go_live(
        self: Box<Self>,
        inbound: Arc<dyn Inbound>,
        supervisor: SupervisorHandle,
        stopper: Stopper,
        shutdown: Shutdown,
    ) -> Result<(), SurfaceError> {
        let this = *self;
        let undecryptable = super::undecryptable::start(super::undecryptable::WatcherDeps {
            client: this.client.clone(),
            bot: this.bot.clone(),
            surface: this.surface.clone(),
            inbound: inbound.clone(),
            grace: this.undecryptable_grace,
            shutdown: shutdown.clone(),
        });
        let matrix_inbound = MatrixInbound::new(InboundDeps {
            surface: this.surface.clone(),
            client: this.client.clone(),
            bot: this.bot.clone(),
            inbound,
            health: this.health.clone(),
            sync: this.sync.clone(),
            undecryptable,
        });
        let pending = PendingResponse::default();
        let start = match this.initial {
            Some(initial) => {
                let next_batch = initial.next_batch.clone();
                let since = initial.since.clone();
                // Kept: matrix-sdk would not hand this response over again (see `sync`).
                let kept = Unhandled {
                    outcome: SyncOutcome {
                        response: initial.response.clone(),
                        elapsed: Duration::ZERO,
                        first: true,
                    },
                    since: since.clone(),
                };
                match matrix_inbound
                    .handle_sync(initial.response, since.clone(), true)
                    .await
                {
                    Ok(()) => Some(next_batch),
                    Err(error) => {
                        tracing::warn!(%error, "the first sync's messages were not all handled; \
                            the sync loop handles the same range again");
                        pending.keep(kept);
                        since
                    }
                }
            }
            None => None,
        };
        tokio::spawn(super::crypto::keep_snapshot_fresh(
            this.client.clone(),
            this.health.clone(),
            shutdown.clone(),
        ));
        let deps = SyncDeps {
            client: this.client.clone(),
            health: this.health.clone(),
            inbound: matrix_inbound,
            settings: this.settings.clone(),
            start,
            pending,
            shutdown,
            stopper,
        };
        supervisor
            .start_child(ChildSpec::new(ActorId::singleton(SYNC_ACTOR), move |ctx| {
                SyncActor::new(deps.clone(), ctx)
            }))
            .await
            .map_err(|e| {
                SurfaceError::failed(
                    "starting the sync actor",
                    crate::retry::RetryKind::Permanent,
                    e,
                )
            })?;
        Ok(())
    }
}

/// Hands the bot's invites to the core (the provisioner decides: onboarding, or decline).
fn register_invites(
    client: &Client,
    bot: &OwnedUserId,
    surface: Arc<dyn Surface>,
    inbound: Arc<dyn Inbound>,
) {
    let bot = bot.clone();
    client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
        let (bot, surface, inbound) = (bot.clone(), surface.clone(), inbound.clone());
        async move {
            if ev.state_key != bot
                || ev.content.membership != MembershipState::Invite
                || room.state() != RoomState::Invited
            {
                return;
            }
            inbound.invited(
                &surface,
                Invite {
                    chat: ChatId::new(room.room_id().as_str()),
                    inviter: PersonId::new(ev.sender.as_str()),
                    direct: ev.content.is_direct.unwrap_or(false),
                    knock: None,
                },
            );
        }
    });
}

/// The bot's sync filter (timeline limit `sync.timeline_limit`), uploaded with a few
/// retries; without it the homeserver's default limit applies (catch-up still fills the
/// gaps, with more requests), which the log says.
async fn sync_filter(
    client: &Client,
    timeline_limit: u32,
) -> Option<matrix_sdk::ruma::api::client::sync::sync_events::v3::Filter> {
    match retry(&RetryPolicy::STARTUP, "uploading the sync filter", || {
        bot_filter(client, timeline_limit)
    })
    .await
    {
        Ok(filter) => Some(filter),
        Err(error) => {
            tracing::error!(%error, "cannot upload the sync filter (sync.timeline_limit); \
                syncing with the homeserver's default timeline limit");
            None
        }
    }
}
