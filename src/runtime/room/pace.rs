//! When a streamed reply is posted and edited: the pure decision.
//!
//! Why this exists: time to the first word is what a person waiting feels, so the first text
//! is posted soon (`streaming.first_post_ms`: a turn done by then is posted whole, with no
//! edit); but every edit is an event in the room, and rooms with hundreds of edits
//! to one message stop loading. So edits follow a ramp (`streaming.first_interval_ms`, each
//! pause half as long again, up to `streaming.max_interval_ms`) and a hard cap
//! (`streaming.max_edits`, the final edit included: it is always kept for the whole reply).

use std::time::{Duration, Instant};

use crate::config::StreamingConfig;

/// How much longer each pause is than the one before (×1.5).
const RAMP_NUMERATOR: u32 = 3;
/// See [`RAMP_NUMERATOR`].
const RAMP_DENOMINATOR: u32 = 2;

/// What to do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Post the first message (the reply).
    Post,
    /// Edit it with what there is now.
    Edit,
    /// Nothing before this instant (then ask again).
    WaitUntil(Instant),
    /// Nothing until something new arrives (or, with the cap reached, until the end).
    Idle,
}

/// The pacing of one streamed reply.
#[derive(Clone, Debug)]
pub struct Pacer {
    first_post: Duration,
    first: Duration,
    max: Duration,
    max_edits: u32,
    /// When the first text arrived.
    text_since: Option<Instant>,
    /// When the message was posted or last edited.
    last: Option<Instant>,
    /// Edits made before the final one.
    edits: u32,
}

impl Pacer {
    /// A pacer for `config`.
    pub fn new(config: &StreamingConfig) -> Self {
        Self {
            first_post: config.first_post(),
            text_since: None,
            first: config.first_interval(),
            max: config.max_interval(),
            max_edits: config.max_edits,
            last: None,
            edits: 0,
        }
    }

    /// What to do at `now`; `changed`: there is text not shown yet (before the post: any text
    /// at all).
    pub fn step(&self, now: Instant, changed: bool) -> Step {
        let Some(last) = self.last else {
            return match (changed, self.text_since) {
                (false, _) => Step::Idle,
                (true, None) => Step::WaitUntil(now + self.first_post),
                (true, Some(since)) if now >= since + self.first_post => Step::Post,
                (true, Some(since)) => Step::WaitUntil(since + self.first_post),
            };
        };
        // The last edit is the final one.
        if !changed || self.edits.saturating_add(1) >= self.max_edits {
            return Step::Idle;
        }
        let due = last + self.pause(self.edits);
        if now >= due {
            Step::Edit
        } else {
            Step::WaitUntil(due)
        }
    }

    /// The pause before edit `n` (from 0): the ramp.
    pub fn pause(&self, n: u32) -> Duration {
        let mut pause = self.first;
        for _ in 0..n {
            pause = pause * RAMP_NUMERATOR / RAMP_DENOMINATOR;
            if pause >= self.max {
                return self.max;
            }
        }
        pause.min(self.max)
    }

    /// The first text arrived at `now` (later calls change nothing).
    pub fn text_arrived(&mut self, now: Instant) {
        self.text_since.get_or_insert(now);
    }

    /// The message was posted at `now`.
    pub fn posted(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// It was edited at `now` (not the final edit).
    pub fn edited(&mut self, now: Instant) {
        self.last = Some(now);
        self.edits = self.edits.saturating_add(1);
    }

    /// Edits made so far (the final one not counted).
    pub fn edits(&self) -> u32 {
        self.edits
    }

    /// Whether the message was posted.
    pub fn is_posted(&self) -> bool {
        self.last.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_edits: u32) -> StreamingConfig {
        StreamingConfig {
            enabled: true,
            first_post_ms: 300,
            first_interval_ms: 500,
            max_interval_ms: 5_000,
            max_edits,
        }
    }

    #[test]
    fn the_ramp_grows_by_half_up_to_the_longest_pause() {
        let pacer = Pacer::new(&config(20));
        let pauses: Vec<u128> = (0..8).map(|n| pacer.pause(n).as_millis()).collect();
        assert_eq!(pauses, [500, 750, 1125, 1687, 2531, 3796, 5000, 5000]);
        assert_eq!(pacer.pause(u32::MAX).as_millis(), 5000);
    }

    #[test]
    fn what_to_do_when() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // (name, edits made before, posted at, now, changed, expected); text arrived at 0
        let table: Vec<(&str, u32, Option<u64>, u64, bool, Step)> = vec![
            ("nothing yet", 0, None, 0, false, Step::Idle),
            (
                "first words wait a moment",
                0,
                None,
                100,
                true,
                Step::WaitUntil(ms(300)),
            ),
            ("then they are posted", 0, None, 300, true, Step::Post),
            ("posted, nothing new", 0, Some(0), 10_000, false, Step::Idle),
            (
                "new text, too soon",
                0,
                Some(0),
                100,
                true,
                Step::WaitUntil(ms(500)),
            ),
            (
                "new text, first pause over",
                0,
                Some(0),
                500,
                true,
                Step::Edit,
            ),
            (
                "the third pause is longer",
                2,
                Some(1_000),
                1_500,
                true,
                Step::WaitUntil(ms(2_125)),
            ),
            (
                "the cap keeps the final edit",
                19,
                Some(0),
                60_000,
                true,
                Step::Idle,
            ),
            ("one below the cap", 18, Some(0), 60_000, true, Step::Edit),
        ];
        for (name, edits, posted, now, changed, expected) in table {
            let mut pacer = Pacer::new(&config(20));
            pacer.text_arrived(ms(0));
            if let Some(at) = posted {
                pacer.posted(ms(at));
            }
            pacer.edits = edits;
            assert_eq!(pacer.step(ms(now), changed), expected, "{name}");
        }
    }

    #[test]
    fn a_two_minute_stream_stays_under_the_cap() {
        // Text arrives every 100 ms for two minutes; the pacer is asked at each arrival.
        let t0 = Instant::now();
        let mut pacer = Pacer::new(&config(20));
        let mut events = 0u32;
        for tick in 0..1_200u64 {
            let now = t0 + Duration::from_millis(tick * 100);
            pacer.text_arrived(now);
            match pacer.step(now, true) {
                Step::Post => pacer.posted(now),
                Step::Edit => {
                    pacer.edited(now);
                    events += 1;
                }
                Step::WaitUntil(_) | Step::Idle => {}
            }
        }
        assert!(pacer.is_posted());
        assert_eq!(events, 19, "19 edits, and the final one makes 20");
        assert_eq!(pacer.edits(), 19);
    }
}
