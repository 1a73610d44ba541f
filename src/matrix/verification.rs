//! Interactive verification requests to the bot are cancelled, with a log line.
//!
//! Why this exists: verification (emoji or QR) asks both sides to compare what they see.
//! A bot cannot look at a screen, so accepting would be a pretence that marks the person's
//! device as verified by nobody; leaving the request open makes the person's client wait
//! for minutes. So every request (to-device, or in a room) is cancelled at once (the
//! person's client shows it as cancelled by the other side), and the log says who asked.
//! People compare the bot's device fingerprint out of band instead (docs/SECURITY.md).

use matrix_sdk::ruma::events::key::verification::request::ToDeviceKeyVerificationRequestEvent;
use matrix_sdk::ruma::events::room::message::{MessageType, OriginalSyncRoomMessageEvent};
use matrix_sdk::ruma::UserId;
use matrix_sdk::Client;

/// Registers the handlers that cancel incoming verification requests.
pub fn cancel_incoming_requests(client: &Client) {
    client.add_event_handler(
        |event: ToDeviceKeyVerificationRequestEvent, client: Client| async move {
            cancel(
                &client,
                &event.sender,
                event.content.transaction_id.as_str(),
            )
            .await;
        },
    );
    client.add_event_handler(
        |event: OriginalSyncRoomMessageEvent, client: Client| async move {
            if matches!(event.content.msgtype, MessageType::VerificationRequest(_)) {
                cancel(&client, &event.sender, event.event_id.as_str()).await;
            }
        },
    );
}

async fn cancel(client: &Client, sender: &UserId, flow_id: &str) {
    if client.user_id() == Some(sender) {
        return;
    }
    let Some(request) = client
        .encryption()
        .get_verification_request(sender, flow_id)
        .await
    else {
        tracing::debug!(%sender, flow_id, "a verification request that is already gone");
        return;
    };
    match request.cancel().await {
        Ok(()) => tracing::info!(%sender, flow_id,
            "cancelled a verification request: a bot cannot compare emoji or scan a code; \
             people can compare the bot's device fingerprint out of band instead"),
        Err(error) => tracing::warn!(%sender, flow_id, %error,
            "cannot cancel a verification request"),
    }
}
