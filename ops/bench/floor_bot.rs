//! The floor of `ops/bench`: the barest matrix-sdk echo bot, for comparison with Surfaces.
//!
//! Logs in (sqlite store, so end-to-end encryption works as in Surfaces), joins every room
//! it is invited to, and answers each text message from someone else with the same text, as
//! a markdown rich reply (the shape of Surfaces' replies). Its own `sync_once` loop, back to
//! back, no pause between syncs (like `matrix::run_sync_loop`); the reply is sent from a
//! spawned task so the sync goes on (like Surfaces' dispatcher, which only queues). Nothing
//! else: no journal, no typing notice, no store, no actors, no agent.
//!
//! `bench_floor_bot HOMESERVER USER PASSWORD STORE_DIR` — prints `floor bot ready` when it
//! syncs live.

use std::time::Duration;

use anyhow::{bail, Context};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{
    AddMentions, ForwardThread, MessageType, OriginalSyncRoomMessageEvent, ReplyMetadata,
    RoomMessageEventContent,
};
use matrix_sdk::{Room, RoomState};

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [homeserver, user, password, store] = args.as_slice() else {
        bail!("usage: bench_floor_bot HOMESERVER USER PASSWORD STORE_DIR");
    };
    let client = surfaces_testkit::login::password_client(
        homeserver,
        user,
        password,
        std::path::Path::new(store),
        "bench floor bot",
    )
    .await?;
    // First sync: history, not answered; uploads the device keys.
    let first = client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await?;
    let me = client.user_id().context("no user id")?.to_owned();

    let bot = me.clone();
    client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
        let bot = bot.clone();
        async move {
            if ev.state_key != bot || ev.content.membership != MembershipState::Invite {
                return;
            }
            tokio::spawn(async move {
                for attempt in 0..10u64 {
                    if room.join().await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                }
                eprintln!("floor bot: cannot join {}", room.room_id());
            });
        }
    });
    let bot = me.clone();
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
        let bot = bot.clone();
        async move {
            if ev.sender == bot || room.state() != RoomState::Joined {
                return;
            }
            let MessageType::Text(text) = &ev.content.msgtype else {
                return;
            };
            let content = RoomMessageEventContent::text_markdown(&text.body).make_reply_to(
                ReplyMetadata::new(&ev.event_id, &ev.sender, None),
                ForwardThread::Yes,
                AddMentions::Yes,
            );
            tokio::spawn(async move {
                if let Err(error) = room.send(content).await {
                    eprintln!("floor bot: cannot reply: {error}");
                }
            });
        }
    });
    println!("floor bot ready");
    let mut token = Some(first.next_batch);
    loop {
        let mut settings = SyncSettings::default().timeout(SYNC_TIMEOUT);
        if let Some(t) = &token {
            settings = settings.token(t.clone());
        }
        match client.sync_once(settings).await {
            Ok(response) => token = Some(response.next_batch),
            Err(error) => {
                eprintln!("floor bot: sync failed: {error}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}
