//! Catch-up planning: which of a room's events the bot still has to answer, in order.
//!
//! Why this exists: a sync carries at most a few dozen timeline events per room. When more
//! arrived (a person pasting many messages, a busy room while the bot was down), the
//! homeserver marks the timeline `limited` and leaves a gap behind it. Every message in
//! that gap must still be answered, once, before the newer ones.
//!
//! The decision is pure and lives here; the paging (effects) is in [`super::backfill`]. A
//! [`Scan`] is fed a room's events **newest first** — the sync's timeline, then older pages —
//! and stops where everything older is known to be handled:
//! - an event the bot has handled (journaled or answered: the caller's `handled` test);
//! - the person's message that one of the bot's replies answers (the bot answers a room in
//!   order, so everything before an answered message was handled too);
//! - the bot's own join (nothing before it was addressed to the bot);
//! - the start of the gap (the previous sync's token, or the start of the visible history);
//! - the scan cap (then the count of what was left out is a lower bound).
//!
//! [`Scan::plan`] then applies the bounds (how old, how many) and lists what to deliver,
//! oldest first.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

/// The scan looks at up to this many times `max_messages` messages, to count what the
/// bounds leave out; past that the count is "at least".
pub const SCAN_FACTOR: usize = 4;

/// What catch-up needs to know of one timeline event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFacts {
    /// The event id.
    pub event_id: String,
    /// Who sent it.
    pub sender: String,
    /// The homeserver's timestamp (ms since the epoch).
    pub origin_ms: u64,
    /// What kind of event it is, for catch-up.
    pub kind: FactKind,
}

/// The kinds of events catch-up tells apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FactKind {
    /// A message of someone other than the bot (text, file, undecryptable): a candidate to
    /// answer.
    Message,
    /// The bot's own message; `reply_to` is the event it answers, if it is a reply.
    BotMessage {
        /// The answered event.
        reply_to: Option<String>,
    },
    /// The bot's own membership turning to `join`.
    BotJoin,
    /// Anything else (state, reactions, notices of other bots, redacted events).
    Other,
}

/// The subset of an event's JSON read by [`EventFacts::from_json`].
#[derive(Deserialize)]
struct RawEvent {
    event_id: String,
    sender: String,
    #[serde(default)]
    origin_server_ts: u64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: Option<String>,
    #[serde(default)]
    content: RawContent,
}

#[derive(Default, Deserialize)]
struct RawContent {
    #[serde(default)]
    msgtype: Option<String>,
    #[serde(default)]
    membership: Option<String>,
    #[serde(default, rename = "m.relates_to")]
    relates_to: Option<RawRelatesTo>,
}

#[derive(Deserialize)]
struct RawRelatesTo {
    #[serde(default, rename = "m.in_reply_to")]
    in_reply_to: Option<RawInReplyTo>,
}

#[derive(Deserialize)]
struct RawInReplyTo {
    event_id: String,
}

/// Message types that are not addressed to the bot (other bots' status lines).
const IGNORED_MSGTYPES: &[&str] = &["m.notice"];

impl EventFacts {
    /// Reads the facts of an event (decrypted where it could be) given as JSON; `None` for
    /// JSON that is not an event.
    pub fn from_json(json: &str, bot: &str) -> Option<EventFacts> {
        let raw: RawEvent = serde_json::from_str(json).ok()?;
        let from_bot = raw.sender == bot;
        let kind = match raw.kind.as_str() {
            "m.room.message" if from_bot => FactKind::BotMessage {
                reply_to: raw
                    .content
                    .relates_to
                    .and_then(|r| r.in_reply_to)
                    .map(|r| r.event_id),
            },
            "m.room.message" => match raw.content.msgtype.as_deref() {
                Some(t) if !IGNORED_MSGTYPES.contains(&t) => FactKind::Message,
                _ => FactKind::Other,
            },
            "m.room.encrypted" if !from_bot => FactKind::Message,
            "m.room.member"
                if raw.state_key.as_deref() == Some(bot)
                    && raw.content.membership.as_deref() == Some("join") =>
            {
                FactKind::BotJoin
            }
            _ => FactKind::Other,
        };
        Some(EventFacts {
            event_id: raw.event_id,
            sender: raw.sender,
            origin_ms: raw.origin_server_ts,
            kind,
        })
    }
}

/// Why a scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An event the bot already handled.
    Handled,
    /// A message the bot answered (a reply of the bot names it).
    Answered,
    /// The bot's own join.
    BotJoin,
    /// The start of the gap (or of the visible history) was reached.
    Start,
    /// The scan cap was reached: older messages exist that were not looked at.
    Capped,
}

/// The bounds of one catch-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// At most this many messages are answered (the newest).
    pub max_messages: usize,
    /// Messages older than this are not answered.
    pub max_age: Duration,
}

/// A backward scan over a room's events (see the module docs).
#[derive(Debug)]
pub struct Scan {
    /// Messages collected so far, newest first, with the key the caller gave them.
    collected: Vec<(usize, EventFacts)>,
    /// Messages the bot's replies seen so far answer.
    answered: HashSet<String>,
    /// Messages collected before the cap stops the scan.
    cap: usize,
    stop: Option<Stop>,
}

impl Scan {
    /// A scan that looks at no more than [`SCAN_FACTOR`] × `bounds.max_messages` messages.
    pub fn new(bounds: &Bounds) -> Self {
        Self {
            collected: Vec::new(),
            answered: HashSet::new(),
            cap: bounds.max_messages.saturating_mul(SCAN_FACTOR).max(1),
            stop: None,
        }
    }

    /// Why the scan stopped, once it did.
    pub fn stopped(&self) -> Option<Stop> {
        self.stop
    }

    /// Feeds events newest first; `key` identifies each for [`Plan::deliver`]. Returns
    /// whether the scan has stopped (the caller fetches no older events then).
    pub fn feed<'a>(
        &mut self,
        events: impl IntoIterator<Item = (usize, &'a EventFacts)>,
        handled: &dyn Fn(&str) -> bool,
    ) -> bool {
        for (key, facts) in events {
            if self.stop.is_some() {
                break;
            }
            if handled(&facts.event_id) {
                self.stop = Some(Stop::Handled);
                break;
            }
            match &facts.kind {
                FactKind::BotJoin => self.stop = Some(Stop::BotJoin),
                FactKind::BotMessage { reply_to } => {
                    // A message the bot handled is the journal's to settle: a reply seen to
                    // a pending one may be a live reply cut short by a crash, which its room
                    // resumes and finishes.
                    if let Some(target) = reply_to.as_ref().filter(|t| !handled(t)) {
                        self.answered.insert(target.clone());
                    }
                }
                FactKind::Message if self.answered.contains(&facts.event_id) => {
                    self.stop = Some(Stop::Answered);
                }
                FactKind::Message => {
                    self.collected.push((key, facts.clone()));
                    if self.collected.len() >= self.cap {
                        self.stop = Some(Stop::Capped);
                    }
                }
                FactKind::Other => {}
            }
        }
        self.stop.is_some()
    }

    /// Marks the end of the events: nothing older exists in the gap.
    pub fn reached_start(&mut self) {
        self.stop.get_or_insert(Stop::Start);
    }

    /// What to deliver, given the bounds, the time now (ms since the epoch) and which
    /// messages the bot would answer at all (`answerable`: access policy); the rest of the
    /// collected messages are neither delivered nor counted.
    pub fn plan(
        self,
        bounds: &Bounds,
        now_ms: u64,
        answerable: &dyn Fn(&EventFacts) -> bool,
    ) -> Plan {
        let oldest_allowed =
            now_ms.saturating_sub(u64::try_from(bounds.max_age.as_millis()).unwrap_or(u64::MAX));
        let mut deliver = Vec::new();
        let mut skipped = Skipped::default();
        // Newest first: the newest `max_messages` recent enough are kept.
        for (key, facts) in self.collected.iter().filter(|(_, f)| answerable(f)) {
            if facts.origin_ms < oldest_allowed {
                skipped.too_old += 1;
            } else if deliver.len() >= bounds.max_messages {
                skipped.too_many += 1;
            } else {
                deliver.push(*key);
            }
        }
        deliver.reverse();
        skipped.at_least = self.stop == Some(Stop::Capped);
        Plan {
            deliver,
            answered: self.answered.into_iter().collect(),
            skipped,
            stop: self.stop.unwrap_or(Stop::Start),
        }
    }
}

/// What a catch-up delivers and leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Keys of the messages to hand to the core's intake, oldest first.
    pub deliver: Vec<usize>,
    /// Messages the bot's replies (seen in the scan) answer.
    pub answered: Vec<String>,
    /// Messages the bounds left out.
    pub skipped: Skipped,
    /// Why the scan stopped.
    pub stop: Stop,
}

/// Messages a catch-up did not answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Older than the age bound.
    pub too_old: usize,
    /// Beyond the count bound.
    pub too_many: usize,
    /// More may exist (the scan was capped).
    pub at_least: bool,
}

impl Skipped {
    /// All messages left out.
    pub fn total(&self) -> usize {
        self.too_old + self.too_many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "@bot:x";
    const NOW: u64 = 10_000_000;

    fn msg(id: &str, at: u64) -> EventFacts {
        EventFacts {
            event_id: id.into(),
            sender: "@alice:x".into(),
            origin_ms: at,
            kind: FactKind::Message,
        }
    }

    fn reply(id: &str, to: &str) -> EventFacts {
        EventFacts {
            event_id: id.into(),
            sender: BOT.into(),
            origin_ms: NOW,
            kind: FactKind::BotMessage {
                reply_to: Some(to.into()),
            },
        }
    }

    fn join() -> EventFacts {
        EventFacts {
            event_id: "$join".into(),
            sender: BOT.into(),
            origin_ms: 0,
            kind: FactKind::BotJoin,
        }
    }

    const BOUNDS: Bounds = Bounds {
        max_messages: 3,
        max_age: Duration::from_secs(3600),
    };

    /// Runs a scan over `events` (chronological) fed newest first in pages of `page`,
    /// `ends` saying whether the events reach the start of the gap; returns the delivered
    /// ids, the plan and how many pages were read.
    fn run(
        events: &[EventFacts],
        handled: &[&str],
        page: usize,
        ends: bool,
    ) -> (Vec<String>, Plan, usize) {
        let handled = |id: &str| handled.contains(&id);
        let newest_first: Vec<(usize, &EventFacts)> = events.iter().enumerate().rev().collect();
        let mut scan = Scan::new(&BOUNDS);
        let mut pages = 0;
        let mut stopped = false;
        for chunk in newest_first.chunks(page) {
            pages += 1;
            if scan.feed(chunk.iter().copied(), &handled) {
                stopped = true;
                break;
            }
        }
        if !stopped && ends {
            scan.reached_start();
        }
        let plan = scan.plan(&BOUNDS, NOW, &|f: &EventFacts| f.sender != "@mallory:x");
        let ids = plan
            .deliver
            .iter()
            .map(|k| events[*k].event_id.clone())
            .collect();
        (ids, plan, pages)
    }

    /// A case: name, events (chronological), handled ids, delivered ids, why it stops.
    type Case = (
        &'static str,
        Vec<EventFacts>,
        Vec<&'static str>,
        Vec<&'static str>,
        Stop,
    );

    #[test]
    fn scans_stop_where_everything_older_is_handled() {
        let recent = NOW - 1000;
        let mut mallory = msg("$m", recent);
        mallory.sender = "@mallory:x".into();
        let cases: Vec<Case> = vec![
            (
                "a journaled message ends the gap",
                vec![msg("$1", recent), msg("$2", recent), msg("$3", recent)],
                vec!["$1"],
                vec!["$2", "$3"],
                Stop::Handled,
            ),
            (
                "an answered message ends it (its reply comes later)",
                vec![
                    msg("$1", recent),
                    msg("$2", recent),
                    reply("$r1", "$1"),
                    msg("$3", recent),
                ],
                vec![],
                vec!["$2", "$3"],
                Stop::Answered,
            ),
            (
                "replies to later messages do not end it early",
                vec![
                    msg("$1", recent),
                    msg("$2", recent),
                    msg("$3", recent),
                    reply("$r1", "$1"),
                    reply("$r2", "$2"),
                ],
                vec![],
                vec!["$3"],
                Stop::Answered,
            ),
            (
                "history before the bot joined is not for the bot",
                vec![msg("$0", recent), join(), msg("$1", recent)],
                vec![],
                vec!["$1"],
                Stop::BotJoin,
            ),
            (
                "the start of the gap ends it",
                vec![msg("$1", recent), msg("$2", recent)],
                vec![],
                vec!["$1", "$2"],
                Stop::Start,
            ),
            (
                "messages the bot would not answer are neither delivered nor counted",
                vec![mallory, msg("$1", recent)],
                vec![],
                vec!["$1"],
                Stop::Start,
            ),
        ];
        for (name, events, handled, want, stop) in cases {
            for page in [1, 2, 100] {
                let (got, plan, _) = run(&events, &handled, page, true);
                assert_eq!(got, want, "{name} (page {page})");
                assert_eq!(plan.stop, stop, "{name} (page {page})");
                assert_eq!(plan.skipped, Skipped::default(), "{name}");
            }
        }
    }

    #[test]
    fn bounds_keep_the_newest_recent_messages_and_count_the_rest() {
        let old = NOW - 2 * 3600 * 1000;
        let recent = NOW - 1000;
        let events = vec![
            msg("$old1", old),
            msg("$old2", old),
            msg("$1", recent),
            msg("$2", recent),
            msg("$3", recent),
            msg("$4", recent),
            msg("$5", recent),
        ];
        let (got, plan, _) = run(&events, &[], 2, true);
        assert_eq!(got, vec!["$3", "$4", "$5"]);
        assert_eq!(
            plan.skipped,
            Skipped {
                too_old: 2,
                too_many: 2,
                at_least: false
            }
        );
        assert_eq!(plan.skipped.total(), 4);
    }

    #[test]
    fn the_scan_cap_stops_paging_and_makes_the_count_a_lower_bound() {
        let recent = NOW - 1000;
        let events: Vec<EventFacts> = (0..40).map(|i| msg(&format!("${i}"), recent)).collect();
        let (got, plan, pages) = run(&events, &[], 5, true);
        let cap = BOUNDS.max_messages * SCAN_FACTOR;
        assert_eq!(pages, cap.div_ceil(5), "no page is read past the cap");
        assert_eq!(got, vec!["$37", "$38", "$39"]);
        assert_eq!(plan.stop, Stop::Capped);
        assert!(plan.skipped.at_least);
        assert_eq!(plan.skipped.too_many, cap - 3);
    }

    #[test]
    fn answered_messages_are_reported() {
        let recent = NOW - 1000;
        let events = vec![
            msg("$1", recent),
            msg("$2", recent),
            reply("$r1", "$1"),
            reply("$r2", "$2"),
        ];
        let (got, mut plan, _) = run(&events, &[], 10, true);
        assert!(got.is_empty());
        plan.answered.sort();
        assert_eq!(plan.answered, vec!["$1", "$2"]);
    }

    #[test]
    fn replies_to_handled_messages_are_not_reported_answered() {
        let recent = NOW - 1000;
        // `$1` is pending in the journal with a live reply cut short (`$r1`), `$2` waited
        // behind it: the scan stops at `$2` and reports nothing answered.
        let events = vec![msg("$1", recent), msg("$2", recent), reply("$r1", "$1")];
        let (got, plan, _) = run(&events, &["$1", "$2"], 10, true);
        assert!(got.is_empty(), "{got:?}");
        assert_eq!(plan.stop, Stop::Handled);
        assert!(plan.answered.is_empty(), "{:?}", plan.answered);
        let (_, mut plan, _) = run(&events, &["$2"], 10, true);
        plan.answered.sort();
        assert_eq!(
            plan.answered,
            vec!["$1"],
            "a message not handled is reported"
        );
    }

    #[test]
    fn facts_from_event_json() {
        let cases = [
            (
                r#"{"event_id":"$a","sender":"@alice:x","origin_server_ts":5,"type":"m.room.message","content":{"msgtype":"m.text","body":"hi"}}"#,
                FactKind::Message,
            ),
            (
                r#"{"event_id":"$a","sender":"@alice:x","origin_server_ts":5,"type":"m.room.message","content":{"msgtype":"m.notice","body":"hi"}}"#,
                FactKind::Other,
            ),
            (
                r#"{"event_id":"$a","sender":"@alice:x","origin_server_ts":5,"type":"m.room.encrypted","content":{"algorithm":"m.megolm.v1.aes-sha2"}}"#,
                FactKind::Message,
            ),
            (
                r#"{"event_id":"$a","sender":"@bot:x","origin_server_ts":5,"type":"m.room.message","content":{"msgtype":"m.text","body":"ok","m.relates_to":{"m.in_reply_to":{"event_id":"$q"}}}}"#,
                FactKind::BotMessage {
                    reply_to: Some("$q".into()),
                },
            ),
            (
                r#"{"event_id":"$a","sender":"@bot:x","origin_server_ts":5,"type":"m.room.member","state_key":"@bot:x","content":{"membership":"join"}}"#,
                FactKind::BotJoin,
            ),
            (
                r#"{"event_id":"$a","sender":"@alice:x","origin_server_ts":5,"type":"m.room.member","state_key":"@alice:x","content":{"membership":"join"}}"#,
                FactKind::Other,
            ),
            (
                r#"{"event_id":"$a","sender":"@alice:x","origin_server_ts":5,"type":"m.room.message","content":{}}"#,
                FactKind::Other,
            ),
        ];
        for (json, kind) in cases {
            let facts = EventFacts::from_json(json, BOT).expect(json);
            assert_eq!(facts.kind, kind, "{json}");
            assert_eq!(facts.origin_ms, 5);
        }
        assert_eq!(EventFacts::from_json("{}", BOT), None);
        assert_eq!(EventFacts::from_json("not json", BOT), None);
    }
}
