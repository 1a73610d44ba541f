//! Telegram as a [`Connector`]: the adapter's lifecycle.
//!
//! Why this exists: the runtime starts every messenger the same way; this file is what
//! "start" means for Telegram. [`TelegramConnector::connect`] checks the token (`getMe`),
//! picks topics or one conversation per private chat, registers the slash commands clients
//! offer, and opens the record of sent messages. With `[telegram.webhook]` it sets the
//! webhook (`setWebhook`: the URL, the secret, pending updates kept); without, it removes
//! any webhook (long polling needs none). [`Connector::prepare`] has nothing to catch up
//! (Telegram keeps no chat state: the store is the source of truth, so no reconciliation);
//! [`Connector::go_live`] starts the supervised polling actor, or the webhook receiver.
//!
//! A graceful stop does not delete the webhook: while the bot is down Telegram keeps the
//! updates and delivers them again (retrying) once the receiver answers, which is what
//! polling's stored offset gives; deleting it would only lose that, and the next start sets
//! it again anyway.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use actors::{ActorId, ChildSpec, SupervisorHandle};
use async_trait::async_trait;
use parking_lot::Mutex;

use super::api::{Api, TelegramError};
use super::intake::Intake;
use super::poller::{PollActor, PollDeps};
use super::sent::SentLog;
use super::surface::{SurfaceParts, TelegramSurface};
use super::updates::{Mode, SLASH_COMMANDS};
use super::webhook::{WebhookActor, WebhookDeps};
use crate::config::{TelegramConfig, TopicsSetting, WebhookConfig};
use crate::retry::{retry, RetryKind, RetryPolicy};
use crate::surface::health::SyncHealth;
use crate::surface::{Connector, Inbound, Shutdown, Stopper, Surface, SurfaceError};

/// The polling actor's id on `/status`.
pub const POLL_ACTOR: &str = "telegram-poll";
/// The webhook receiver's actor id on `/status`.
pub const WEBHOOK_ACTOR: &str = "telegram-webhook";
/// Where the adapter keeps its own files, under the data dir.
pub const DATA_SUBDIR: &str = "telegram";

/// The Telegram adapter, from the token check to its running polling actor.
pub struct TelegramConnector {
    surface: Arc<TelegramSurface>,
    health: Arc<SyncHealth>,
    bot_id: u64,
    config: TelegramConfig,
}

impl TelegramConnector {
    /// Checks the token and readies the adapter (see the module doc).
    pub async fn connect(config: &TelegramConfig, data_dir: &Path) -> Result<Self, TelegramError> {
        let token = config
            .token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        let api = Api::new(&config.api_url, &token, config.poll_timeout())?;
        let me = retry(
            &RetryPolicy::STARTUP,
            "the Telegram token check (getMe)",
            || api.me(),
        )
        .await?;
        let mode = match (config.topics, me.has_topics_enabled) {
            (TopicsSetting::Auto, true) => Mode::Topics,
            (TopicsSetting::Auto, _) => {
                tracing::info!(
                    "the Telegram bot has no topics in private chats (BotFather: \
                    threaded mode); each person gets one conversation in their private chat"
                );
                Mode::Single
            }
            (TopicsSetting::Off, _) => Mode::Single,
        };
        match &config.webhook {
            Some(webhook) => set_webhook(&api, webhook).await?,
            None => {
                if let Err(error) = api.delete_webhook().await {
                    tracing::warn!(%error, "cannot remove the Telegram bot's webhook; polling may be refused");
                }
            }
        }
        if let Err(error) = api.set_commands(SLASH_COMMANDS).await {
            tracing::warn!(%error, "cannot register the Telegram slash commands (setMyCommands); \
                they still work when typed");
        }
        let dir = data_dir.join(DATA_SUBDIR);
        let sent =
            SentLog::open(&dir.join("sent")).map_err(|e| TelegramError::Local(e.to_string()))?;
        let surface = Arc::new(TelegramSurface::new(SurfaceParts {
            api,
            bot_id: me.id,
            mode,
            sent,
            uploads: dir.join("uploads"),
        }));
        tracing::info!(
            bot = me.id,
            username = me.username.as_deref().unwrap_or(""),
            ?mode,
            "connected to Telegram"
        );
        Ok(Self {
            surface,
            health: SyncHealth::new(),
            bot_id: me.id,
            config: config.clone(),
        })
    }
}

/// Has Telegram call `webhook.url` (retried like the token check: without it no update
/// arrives).
async fn set_webhook(api: &Api, webhook: &WebhookConfig) -> Result<(), TelegramError> {
    let secret = webhook
        .secret_token
        .as_ref()
        .map(|s| s.expose().to_owned())
        .unwrap_or_default();
    retry(
        &RetryPolicy::STARTUP,
        "setting the Telegram webhook (setWebhook, telegram.webhook.url)",
        || api.set_webhook(&webhook.url, &secret, webhook.max_connections),
    )
    .await?;
    tracing::info!(url = %webhook.url, "Telegram sends updates to the webhook");
    Ok(())
}

#[async_trait]
impl Connector for TelegramConnector {
    fn surface(&self) -> Arc<dyn Surface> {
        self.surface.clone()
    }

    fn health(&self) -> Arc<SyncHealth> {
        self.health.clone()
    }

    fn reader(&self) -> Option<ActorId> {
        Some(ActorId::singleton(if self.config.webhook.is_some() {
            WEBHOOK_ACTOR
        } else {
            POLL_ACTOR
        }))
    }

    async fn prepare(&mut self, inbound: Arc<dyn Inbound>) -> Result<(), SurfaceError> {
        // Nothing to catch up: updates wait at Telegram until the offset passes them.
        let _ = self.surface.inbound.set(Arc::downgrade(&inbound));
        self.health.record_success();
        Ok(())
    }

    async fn go_live(
        self: Box<Self>,
        inbound: Arc<dyn Inbound>,
        supervisor: SupervisorHandle,
        stopper: Stopper,
        shutdown: Shutdown,
    ) -> Result<(), SurfaceError> {
        let intake = Intake {
            surface: self.surface.clone(),
            inbound,
            bot_id: self.bot_id,
            refused: Arc::new(Mutex::new(HashSet::new())),
        };
        let started = match &self.config.webhook {
            Some(webhook) => {
                let deps = WebhookDeps {
                    intake,
                    health: self.health.clone(),
                    bind: webhook.bind_addr().ok_or_else(|| {
                        SurfaceError::failed(
                            "reading telegram.webhook.bind",
                            RetryKind::Permanent,
                            std::io::Error::other(format!("{:?} is not an address", webhook.bind)),
                        )
                    })?,
                    path: webhook.path(),
                    secret: webhook.secret_token.clone().unwrap_or_default(),
                    shutdown,
                };
                supervisor
                    .start_child(ChildSpec::new(
                        ActorId::singleton(WEBHOOK_ACTOR),
                        move |ctx| WebhookActor::new(deps.clone(), ctx),
                    ))
                    .await
                    .map(drop)
            }
            None => {
                let deps = PollDeps {
                    intake,
                    health: self.health.clone(),
                    poll_timeout: self.config.poll_timeout(),
                    shutdown,
                    stopper,
                };
                supervisor
                    .start_child(ChildSpec::new(ActorId::singleton(POLL_ACTOR), move |ctx| {
                        PollActor::new(deps.clone(), ctx)
                    }))
                    .await
                    .map(drop)
            }
        };
        started.map_err(|e| {
            SurfaceError::failed(
                "starting the Telegram polling actor or webhook receiver",
                RetryKind::Permanent,
                e,
            )
        })?;
        Ok(())
    }
}
