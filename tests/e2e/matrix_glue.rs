//! The `surfaces::matrix` glue against a real Synapse, without the actors:
//! login and restore (same device, no new login), Space and chat-room
//! provisioning as a person sees it, a deduplicated markdown reply in an
//! encrypted room, the sync loop's health and shutdown, and a rejected token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use matrix_sdk::ruma::OwnedEventId;
use surfaces::matrix::surface::MatrixSurface;
use surfaces::matrix::{
    self, connect, create_chat_room, create_space, initial_sync, room_binding, run_sync_loop,
    space_owner, space_parent_of, LoginParams, PendingResponse, SurfacesRoomEventContent,
    SyncHealth, SyncLoopSettings, SyncOutcome, SESSION_FILE_NAME,
};
use surfaces::surface::{
    AnswerPart, ChatId, MessageId, OutMessage, PersonId, ReplyTo, SendKey, Surface,
};

use crate::support::{try_wait_until, wait_until, Person, Synapse, POLL, WAIT};

/// Long-poll timeout of the bot's sync loop in this test.
const BOT_SYNC_TIMEOUT: Duration = Duration::from_secs(5);

fn login_params(
    synapse: &Synapse,
    user_id: &str,
    password: Option<&str>,
    token: Option<&str>,
) -> LoginParams {
    LoginParams {
        homeserver_url: synapse.base_url.clone(),
        user_id: user_id.to_owned(),
        password: password.map(str::to_owned),
        access_token: token.map(str::to_owned),
        device_name: "Surfaces e2e".to_owned(),
    }
}

async fn device_ids(client: &matrix_sdk::Client) -> anyhow::Result<Vec<String>> {
    let mut ids: Vec<String> = client
        .devices()
        .await?
        .devices
        .into_iter()
        .map(|d| d.device_id.to_string())
        .collect();
    ids.sort();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_glue_against_synapse() -> anyhow::Result<()> {
    let synapse = Synapse::start().await?;
    let bot_creds = synapse
        .registrar()
        .register("surfaces-bot", "bot-password", false)
        .await?;
    let alice_creds = synapse
        .registrar()
        .register("alice", "alice-password", false)
        .await?;
    let data = tempfile::tempdir()?;
    let params = login_params(
        &synapse,
        bot_creds.user_id.as_str(),
        Some("bot-password"),
        None,
    );

    // --- First start: password login creates a device and the session file.
    let first = connect(&params, data.path())
        .await
        .context("first connect")?;
    let device_id = first.device_id().context("device id")?.to_owned();
    assert_ne!(
        device_id.as_str(),
        bot_creds.device_id,
        "a new device was created"
    );
    let health = SyncHealth::new();
    let initial = initial_sync(&first, &health, None, &SyncLoopSettings::default()).await?;
    assert!(!initial.resumed, "fresh store: full initial sync");
    assert!(health.last_success().is_some());
    let devices_after_login = device_ids(&first).await?;
    assert!(devices_after_login.contains(&device_id.to_string()));
    let session_path = data.path().join(SESSION_FILE_NAME);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session_path)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "session file is private");
    }
    drop(first);

    // --- Restart: restored from the session file, same device, no login.
    let bot = connect(&params, data.path())
        .await
        .context("second connect")?;
    assert_eq!(
        bot.device_id(),
        Some(&*device_id),
        "same device after restart"
    );
    assert_eq!(
        device_ids(&bot).await?,
        devices_after_login,
        "no new device"
    );
    let health = SyncHealth::new();
    let initial = initial_sync(&bot, &health, None, &SyncLoopSettings::default()).await?;
    assert!(initial.resumed, "the stored sync token was reused");

    // --- The bot's own sync loop, in the background.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    // What the bot's loop delivers: (event id, event type after decryption,
    // when it arrived).
    let seen: Arc<Mutex<Vec<(OwnedEventId, String, Instant)>>> = Arc::default();
    let sync_task = {
        let bot = bot.clone();
        let health = health.clone();
        let since = initial.next_batch.clone();
        let seen = seen.clone();
        let on_synced = move |outcome: SyncOutcome, _since: Option<String>| {
            let mut seen = seen.lock().unwrap();
            for room in outcome.response.rooms.joined.values() {
                for event in &room.timeline.events {
                    let event_type = event.raw().get_field::<String>("type").ok().flatten();
                    if let (Some(id), Some(event_type)) = (event.event_id(), event_type) {
                        seen.push((id, event_type, Instant::now()));
                    }
                }
            }
            std::future::ready(Ok::<(), String>(()))
        };
        tokio::spawn(async move {
            let settings = SyncLoopSettings {
                timeout: BOT_SYNC_TIMEOUT,
                filter: None,
            };
            let shutdown = async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            run_sync_loop(
                &bot,
                Some(since),
                &PendingResponse::default(),
                &settings,
                &health,
                on_synced,
                shutdown,
            )
            .await
        })
    };

    // --- Provisioning, seen by the person.
    let alice = Person::login(&synapse, &alice_creds).await?;
    let space_id = create_space(&bot, alice.user_id(), "Alice's agents").await?;
    let binding = SurfacesRoomEventContent {
        agent_id: "echo".into(),
        platform_chat_id: "sfc-1".into(),
        owner: alice.user_id().to_string(),
        chat_index: 1,
        archived: false,
    };
    let room_id =
        create_chat_room(&bot, &space_id, alice.user_id(), "Chat 1", &binding, true).await?;
    assert!(
        bot.get_room(&room_id).is_some(),
        "the new room is known to the client"
    );

    let invited_space = alice
        .wait_for_invite(
            |i| i.room_id == space_id && i.is_space && !i.is_direct,
            WAIT,
        )
        .await?;
    alice.join(&invited_space).await?;
    let invited_room = alice
        .wait_for_invite(|i| i.room_id == room_id && !i.is_direct, WAIT)
        .await?;
    alice.join(&invited_room).await?;

    let marker = alice
        .room_state_event(&space_id, "org.surfaces.space", "")
        .await?
        .context("org.surfaces.space")?;
    assert_eq!(marker["owner"], alice.user_id().as_str());
    let bound = alice
        .room_state_event(&room_id, "org.surfaces.room", "")
        .await?
        .context("org.surfaces.room")?;
    assert_eq!(
        serde_json::from_value::<SurfacesRoomEventContent>(bound)?,
        binding
    );
    let child = alice
        .room_state_event(&space_id, "m.space.child", room_id.as_str())
        .await?
        .context("m.space.child")?;
    assert_eq!(child["via"], serde_json::json!([synapse.server_name]));
    let parent = alice
        .room_state_event(&room_id, "m.space.parent", space_id.as_str())
        .await?
        .context("m.space.parent")?;
    assert_eq!(parent["via"], serde_json::json!([synapse.server_name]));
    assert_eq!(parent["canonical"], true);
    let encryption = alice
        .room_state_event(&room_id, "m.room.encryption", "")
        .await?
        .context("m.room.encryption")?;
    assert_eq!(encryption["algorithm"], "m.megolm.v1.aes-sha2");
    for id in [&space_id, &room_id] {
        let levels = alice
            .room_state_event(id, "m.room.power_levels", "")
            .await?
            .context("m.room.power_levels")?;
        assert_eq!(levels["users"][alice.user_id().as_str()], 50, "{levels}");
        assert_eq!(levels["events"]["org.surfaces.room"], 100, "{levels}");
        assert_eq!(levels["events"]["m.space.child"], 100, "{levels}");
    }
    // The person cannot rebind the room.
    let rebind = alice
        .client()
        .get_room(&room_id)
        .context("alice's room")?
        .send_state_event_raw(
            "org.surfaces.room",
            "",
            serde_json::json!({"agent_id": "other", "platform_chat_id": "sfc-9", "owner": "x", "chat_index": 9}),
        )
        .await;
    assert!(rebind.is_err(), "the owner must not change the binding");

    // --- The bot reads the same facts from its local store once synced.
    let bot_room = bot.get_room(&room_id).context("bot room")?;
    let bot_space = bot.get_room(&space_id).context("bot space")?;
    let read_binding = wait_until(WAIT, POLL, || async {
        room_binding(&bot_room).await.ok().flatten()
    })
    .await
    .context("the bot never read the binding")?;
    assert_eq!(read_binding, binding);
    let owner = wait_until(WAIT, POLL, || async {
        space_owner(&bot_space).await.ok().flatten()
    })
    .await
    .context("the bot never read the space owner")?;
    assert_eq!(owner, alice.user_id());
    let parent_of = wait_until(WAIT, POLL, || async {
        space_parent_of(&bot_room).await.ok().flatten()
    })
    .await
    .context("the bot never read the space parent")?;
    assert_eq!(parent_of, space_id);
    assert_eq!(
        room_binding(&bot_space).await?,
        None,
        "a space has no room binding"
    );

    // --- A markdown reply, sent twice with one transaction id.
    wait_until(WAIT, POLL, || async {
        let member = bot_room.get_member_no_sync(alice.user_id()).await.ok()??;
        (*member.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join)
            .then_some(())
    })
    .await
    .context("the bot never saw alice join")?;
    let sent_at = Instant::now();
    let asked = alice.send_text(&room_id, "hello bot").await?;
    // The bot's loop delivers it, decrypted, without the sdk's 1 s pause.
    let (event_type, arrived) = wait_until(WAIT, POLL, || async {
        let seen = seen.lock().unwrap();
        seen.iter()
            .find(|(id, _, _)| *id == asked)
            .map(|(_, event_type, at)| (event_type.clone(), *at))
    })
    .await
    .context("the bot's sync loop never delivered the message")?;
    assert_eq!(event_type, "m.room.message", "the bot decrypted it");
    eprintln!(
        "message reached the bot's loop {:?} after sending started",
        arrived.saturating_duration_since(sent_at)
    );
    // Through the adapter the core uses: a keyed send is idempotent.
    let surface = MatrixSurface::new(bot.clone(), true)?;
    let chat = ChatId::new(room_id.as_str());
    let asked_id = MessageId::new(asked.as_str());
    let markdown = "**Hello** Alice, here is `code`.";
    let reply = OutMessage::reply(
        ReplyTo {
            message: asked_id.clone(),
            sender: PersonId::new(alice.user_id().as_str()),
        },
        markdown,
        SendKey::answer(&asked_id, AnswerPart::Reply),
    );
    let first_send = surface.send(&chat, reply.clone()).await?;
    let second_send = surface.send(&chat, reply).await?;
    assert_eq!(
        first_send, second_send,
        "the homeserver deduplicated the retry"
    );
    let fence = surface
        .send(&chat, OutMessage::notice("fence", None))
        .await?;

    let reply = alice
        .wait_for_message(
            &room_id,
            |m| m.event_id.as_str() == first_send.as_str(),
            WAIT,
        )
        .await?;
    assert!(reply.was_encrypted, "the reply went through Megolm");
    assert_eq!(reply.msgtype, "m.text");
    assert_eq!(reply.body, markdown);
    assert_eq!(reply.in_reply_to.as_ref(), Some(&asked));
    let html = reply.formatted_body.as_deref().context("formatted_body")?;
    assert!(html.contains("<strong>Hello</strong>"), "{html}");
    let notice = alice
        .wait_for_message(&room_id, |m| m.event_id.as_str() == fence.as_str(), WAIT)
        .await?;
    assert_eq!(notice.msgtype, "m.notice");
    let from_bot = alice.messages_from(&room_id, &bot_creds.user_id).await;
    let replies: Vec<_> = from_bot
        .iter()
        .filter(|m| m.in_reply_to.as_ref() == Some(&asked))
        .collect();
    assert_eq!(replies.len(), 1, "exactly one reply visible: {from_bot:#?}");

    // --- Health, then a clean stop.
    assert_eq!(health.consecutive_failures(), 0);
    assert!(health.is_recent(BOT_SYNC_TIMEOUT * 3));
    stop_tx.send(true)?;
    let stopped = tokio::time::timeout(WAIT, sync_task)
        .await
        .context("sync loop did not stop")??;
    assert!(stopped.is_ok(), "{stopped:?}");

    // --- Adopting an access token reuses that token's device.
    let token_dir = tempfile::tempdir()?;
    let token_params = login_params(
        &synapse,
        bot_creds.user_id.as_str(),
        None,
        Some(&bot_creds.access_token),
    );
    let adopted = connect(&token_params, token_dir.path())
        .await
        .context("token connect")?;
    assert_eq!(
        adopted.device_id().map(|d| d.as_str()),
        Some(bot_creds.device_id.as_str())
    );
    assert!(token_dir.path().join(SESSION_FILE_NAME).exists());
    drop(adopted);

    // --- A rejected token stops the sync loop and the next start cleanly.
    bot.matrix_auth().logout().await?;
    let health = SyncHealth::new();
    let never = std::future::pending::<()>();
    let pending = PendingResponse::default();
    let ended = tokio::time::timeout(
        WAIT,
        run_sync_loop(
            &bot,
            None,
            &pending,
            &SyncLoopSettings::default(),
            &health,
            |_, _| std::future::ready(Ok::<(), String>(())),
            never,
        ),
    )
    .await
    .context("the sync loop did not stop on a rejected token")?;
    let error = ended.expect_err("a logged-out session cannot sync");
    assert!(error.is_invalid_token(), "{error}");
    drop(bot);
    let error = try_wait_until(WAIT, POLL, || async {
        Ok(connect(&params, data.path()).await.err())
    })
    .await?;
    assert!(
        matches!(error, matrix::MatrixError::InvalidToken { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(SESSION_FILE_NAME), "{error}");
    Ok(())
}
