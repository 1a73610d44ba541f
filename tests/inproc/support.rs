//! Helpers shared by the in-process scenarios.

use surfaces::surface::{ChatId, PersonId};
use surfaces_testkit::inproc::Bot;
use surfaces_testkit::memory::World;

/// The platform chat id bound to `chat` in the messenger.
pub fn platform_chat(bot: &Bot, chat: &ChatId) -> String {
    bot.world
        .chat(chat)
        .and_then(|c| c.binding)
        .map(|b| b.platform_chat_id)
        .unwrap_or_default()
}

/// Sends a command and returns the bot's answer, which must be a notice.
pub async fn command(bot: &Bot, person: &PersonId, chat: &ChatId, text: &str) -> String {
    let answer = bot
        .ask(person, chat, text)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e:#}"));
    assert!(answer.is_notice(), "{text}: not a notice: {answer:?}");
    answer.text().to_owned()
}

/// Asserts that `text` holds `needle`.
#[track_caller]
pub fn expect(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

/// The id of a person of the in-memory messenger.
pub fn person(name: &str) -> PersonId {
    World::person(name)
}
