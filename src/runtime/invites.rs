//! Which invites the bot accepts, and declining the others off the onboarding path.
//!
//! Why this exists: an invite can only become something the bot manages if it is a direct
//! chat with the bot from a person the access policy allows (onboarding: the direct chat is
//! their way in, their home and chats are made for them). Any other invite — a stranger's,
//! or a group room from anyone — is declined. The decision is made when the invite arrives
//! ([`decide`], pure and table-tested), and declines run in their own tasks, at most
//! [`MAX_CONCURRENT_DECLINES`] at once, so a flood of strangers' invites never queues in
//! front of an allowed person's onboarding on the provisioner's serial path.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::config::AccessPolicy;
use crate::surface::{ChatId, Invite, Surface};

/// Declines in flight at once (each is one request to the messenger).
pub const MAX_CONCURRENT_DECLINES: usize = 8;

/// What to do with an invite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Join it: a person's way in (the provisioner onboards them).
    Onboard,
    /// Decline it, for this reason (logged).
    Decline(&'static str),
}

/// Decides what to do with `invite` under `access`.
pub fn decide(access: &AccessPolicy, invite: &Invite) -> Verdict {
    if !access.allows(invite.inviter.as_str()) {
        return Verdict::Decline(
            "the inviter is not allowed (config access.allowed_users / access.allowed_homeservers)",
        );
    }
    if !invite.direct {
        return Verdict::Decline(
            "not a direct chat with the bot: only a direct chat can become a person's way in",
        );
    }
    Verdict::Onboard
}

/// Declines invites in the background, a bounded number at once. Cloning shares it.
#[derive(Clone)]
pub struct Decliner {
    slots: Arc<Semaphore>,
    /// Invites being declined (messengers repeat pending ones): `(surface, chat)`.
    pending: Arc<Mutex<HashSet<(&'static str, ChatId)>>>,
}

impl Default for Decliner {
    fn default() -> Self {
        Decliner {
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_DECLINES)),
            pending: Arc::default(),
        }
    }
}

impl Decliner {
    /// Declines `invite` in a task of its own (logged with the room and `reason`).
    pub fn decline(&self, surface: &Arc<dyn Surface>, invite: Invite, reason: &'static str) {
        let key = (surface.name(), invite.chat.clone());
        if !self.pending.lock().insert(key.clone()) {
            return;
        }
        tracing::warn!(inviter = %invite.inviter, room_id = %invite.chat, reason,
            "declining an invite");
        let (slots, pending, surface) = (self.slots.clone(), self.pending.clone(), surface.clone());
        tokio::spawn(async move {
            // The semaphore is never closed; if it were, decline anyway.
            let _slot = slots.acquire_owned().await.ok();
            if let Err(error) = surface.decline_invite(&invite.chat).await {
                tracing::error!(room_id = %invite.chat, inviter = %invite.inviter, %error,
                    "declining an invite failed");
            }
            pending.lock().remove(&key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccessConfig;
    use crate::surface::PersonId;

    #[test]
    fn only_direct_chats_from_allowed_people_are_joined() {
        let access = AccessPolicy::new(
            &AccessConfig {
                allowed_users: vec!["@alice:example.org".into()],
                ..AccessConfig::default()
            },
            "@bot:example.org",
        );
        let cases = [
            ("@alice:example.org", true, Verdict::Onboard),
            ("@alice:example.org", false, Verdict::Decline("")),
            ("@mallory:example.org", true, Verdict::Decline("")),
            ("@mallory:example.org", false, Verdict::Decline("")),
            ("not a user id", true, Verdict::Decline("")),
        ];
        for (inviter, direct, expected) in cases {
            let invite = Invite {
                chat: ChatId::new("!r:example.org"),
                inviter: PersonId::new(inviter),
                direct,
                knock: None,
            };
            let got = decide(&access, &invite);
            assert_eq!(
                matches!(got, Verdict::Onboard),
                matches!(expected, Verdict::Onboard),
                "{inviter} direct={direct}: {got:?}"
            );
        }
    }
}
