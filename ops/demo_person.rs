//! The demo user of `ops/demo`: logs in, opens a direct chat with the bot, joins the Space
//! and chat room the bot makes, has a short scripted conversation and prints it.
//!
//! `cargo run --example demo_person -- HOMESERVER USER PASSWORD BOT_USER STORE_DIR`

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room::v3::Request as CreateRoomRequest;
use matrix_sdk::ruma::events::room::message::{
    OriginalSyncRoomMessageEvent, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use matrix_sdk::Room;
use surfaces_testkit::wait::wait_until;

/// How long to wait for each step of the bot.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often to look again.
const POLL: Duration = Duration::from_millis(100);
/// The scripted conversation.
const SCRIPT: [&str; 3] = [
    "Hello! Who are you?",
    "Can you show **bold** and `code`?",
    "Thanks, that's all for now.",
];

#[derive(Clone)]
struct Seen {
    room: OwnedRoomId,
    sender: OwnedUserId,
    body: String,
    reply_to: Option<OwnedEventId>,
}

/// Looks every [`POLL`] until `f` finds `what`, for up to [`STEP_TIMEOUT`].
async fn poll<T, Fut>(what: &str, f: impl FnMut() -> Fut) -> anyhow::Result<T>
where
    Fut: Future<Output = Option<T>>,
{
    wait_until(STEP_TIMEOUT, POLL, f)
        .await
        .with_context(|| format!("timed out waiting for {what}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [homeserver, user, password, bot, store] = args.as_slice() else {
        bail!("usage: demo_person HOMESERVER USER PASSWORD BOT_USER STORE_DIR");
    };
    let bot: OwnedUserId = bot.parse().context("BOT_USER")?;
    let client = surfaces_testkit::login::password_client(
        homeserver,
        user,
        password,
        std::path::Path::new(store),
        "surfaces demo",
    )
    .await
    .context("logging in as the demo user")?;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = seen.clone();
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
        let sink = sink.clone();
        async move {
            let reply_to = match &ev.content.relates_to {
                Some(matrix_sdk::ruma::events::room::message::Relation::Reply(reply)) => {
                    Some(reply.in_reply_to.event_id.clone())
                }
                _ => None,
            };
            if let Ok(mut seen) = sink.lock() {
                seen.push(Seen {
                    room: room.room_id().to_owned(),
                    sender: ev.sender.clone(),
                    body: ev.content.body().to_owned(),
                    reply_to,
                });
            }
        }
    });
    client.sync_once(SyncSettings::default()).await?;
    let syncer = client.clone();
    let sync_task = tokio::spawn(async move {
        loop {
            let settings = SyncSettings::default().timeout(Duration::from_secs(5));
            if syncer.sync_once(settings).await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });

    println!("== {user} invites {bot} to a direct chat");
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bot.clone()];
    request.is_direct = true;
    let dm = client.create_room(request).await?.room_id().to_owned();

    let joined: RefCell<Vec<OwnedRoomId>> = RefCell::default();
    poll("the Space and the first chat room", || async {
        for room in client.invited_rooms() {
            if room.join().await.is_ok() {
                joined.borrow_mut().push(room.room_id().to_owned());
            }
        }
        (joined.borrow().len() >= 2).then_some(())
    })
    .await?;
    let joined = joined.into_inner();
    let chat = poll("the welcome message", || async {
        let seen = seen.lock().ok()?;
        seen.iter()
            .find(|m| m.sender == bot && m.room != dm && joined.contains(&m.room))
            .map(|m| m.room.clone())
    })
    .await?;
    let show = |who: &str, body: &str| {
        for (i, line) in body.lines().enumerate() {
            println!(
                "{:>10} {} {line}",
                if i == 0 { who } else { "" },
                if i == 0 { '|' } else { ' ' }
            );
        }
    };
    let pointer = poll("the pointer in the direct chat", || async {
        let seen = seen.lock().ok()?;
        seen.iter()
            .find(|m| m.sender == bot && m.room == dm)
            .cloned()
    })
    .await?;
    println!("-- direct chat");
    show("bot", &pointer.body);
    println!("-- chat room {chat}");
    let welcome = poll("the welcome", || async {
        let seen = seen.lock().ok()?;
        seen.iter()
            .find(|m| m.sender == bot && m.room == chat)
            .cloned()
    })
    .await?;
    show("bot", &welcome.body);
    let room = client.get_room(&chat).context("the chat room")?;
    for line in SCRIPT {
        let sent = room
            .send(RoomMessageEventContent::text_markdown(line))
            .await?;
        show(user, line);
        let reply = poll("the bot's reply", || async {
            let seen = seen.lock().ok()?;
            seen.iter()
                .find(|m| m.sender == bot && m.reply_to.as_ref() == Some(&sent.response.event_id))
                .cloned()
        })
        .await?;
        show("bot", &reply.body);
    }
    sync_task.abort();
    Ok(())
}
