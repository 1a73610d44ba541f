//! Proves the harness: a real Synapse, two simulated humans, an encrypted
//! DM, and a message that arrives decrypted. No bot involved.

use std::time::Instant;

use crate::support::{Person, Synapse, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_exchange_an_encrypted_message() -> anyhow::Result<()> {
    let started = Instant::now();
    let synapse = Synapse::start().await?;
    eprintln!(
        "synapse ready at {} in {:?}",
        synapse.base_url, synapse.startup
    );

    let alice_creds = synapse.register("alice", "alice-password", false).await?;
    let bob_creds = synapse.register("bob", "bob-password", true).await?;
    assert_eq!(alice_creds.user_id, synapse.user_id("alice"));

    let alice = Person::login(&synapse, &alice_creds).await?;
    let bob = Person::login(&synapse, &bob_creds).await?;

    // Alice opens an encrypted DM with Bob; Bob accepts.
    let room_id = alice.create_dm(bob.user_id()).await?;
    assert!(
        alice.is_encrypted(&room_id).await?,
        "create_dm makes an encrypted room"
    );
    let invited = bob
        .wait_for_invite(|invite| invite.room_id == room_id && invite.is_direct, WAIT)
        .await?;
    assert_eq!(invited, room_id);
    bob.join(&room_id).await?;
    assert!(bob.joined_rooms().await?.contains(&room_id));
    assert!(bob.is_encrypted(&room_id).await?);

    // Alice must see Bob joined before sending, or Bob gets no room key.
    alice
        .wait_for_joined_member(&room_id, bob.user_id(), WAIT)
        .await?;
    let sent = alice
        .send_text(&room_id, "hello bob, this is encrypted")
        .await?;

    let received = bob
        .wait_for_message(&room_id, |m| m.event_id == sent, WAIT)
        .await?;
    assert_eq!(received.sender, alice.user_id());
    assert_eq!(received.body, "hello bob, this is encrypted");
    assert_eq!(received.msgtype, "m.text");
    assert!(received.was_encrypted, "the message went through Megolm");

    // And back, as a reply.
    let reply = bob.send_reply(&room_id, &sent, "hi alice").await?;
    let got = alice
        .wait_for_message(&room_id, |m| m.event_id == reply, WAIT)
        .await?;
    assert_eq!(got.in_reply_to.as_ref(), Some(&sent));
    assert!(got.was_encrypted);
    assert_eq!(alice.messages_from(&room_id, bob.user_id()).await.len(), 1);

    // Raw state reads through the client-server API.
    let encryption = alice
        .room_state_event(&room_id, "m.room.encryption", "")
        .await?
        .expect("m.room.encryption state");
    assert_eq!(encryption["algorithm"], "m.megolm.v1.aes-sha2");
    assert!(alice
        .room_state_event(&room_id, "org.surfaces.room", "")
        .await?
        .is_none());

    eprintln!("harness smoke took {:?}", started.elapsed());
    Ok(())
}
