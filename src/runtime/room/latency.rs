//! Reply latency as the person feels it: when their message arrived, and the moments of its
//! answer that the metrics record.
//!
//! Why this exists: an agent turn's duration (`surfaces_agent_turn_duration_seconds`) is not
//! what a person waits. They wait from the moment their message reaches the bot — through the
//! journal's flush, the queue behind their chat's earlier messages, the turn, and the sends —
//! until the first words appear and then until the whole reply is there. The intake stamps each
//! text message with its [`Arrival`]; the room actor carries it with the message and, once the
//! agent is known, makes a [`ReplyClock`] that records each moment once: the turn started
//! (queue wait), the first words, the final reply (and, where the messenger gave its own
//! timestamp, the time since then, sync lag included). Messages resumed from the journal after
//! a restart have no arrival of this run and are not measured. The same moments go to the
//! room's story ([`super::story`]) through the clock's pen.
//!
//! Each series is labelled with the agent and the messenger (`surface`), and each reply
//! latency observation carries the message's id as its exemplar ([`exemplar_id`]), so a
//! slow bucket leads to the log lines of a message that landed in it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::story::{Moment, StoryPen};
use crate::metrics::{fits_exemplar, Metrics, ReplySeries, ReplyStage};
use crate::surface::{turn_id_for, MessageId};

/// When a person's message reached the bot.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    /// When the intake accepted it.
    pub accepted: Instant,
    /// When the messenger says it was sent, if it says (includes the sync lag).
    pub origin: Option<SystemTime>,
}

impl Arrival {
    /// A message accepted now, sent at `origin` by the messenger's clock.
    pub fn now(origin: Option<SystemTime>) -> Self {
        Self {
            accepted: Instant::now(),
            origin,
        }
    }
}

/// Records the moments of one message's answer by `agent`, each once. Shared by the turn and
/// its live reply.
pub struct ReplyClock {
    metrics: Arc<Metrics>,
    /// The agent's and messenger's series (made once per pair).
    series: Arc<ReplySeries>,
    /// The exemplar of the reply latency observations ([`exemplar_id`]).
    exemplar: String,
    arrival: Arrival,
    first_recorded: AtomicBool,
    /// The message's record in its room's story.
    story: Option<StoryPen>,
}

impl std::fmt::Debug for ReplyClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyClock")
            .field("agent", &self.series.agent())
            .field("surface", &self.series.surface())
            .field("exemplar", &self.exemplar)
            .field("arrival", &self.arrival)
            .finish_non_exhaustive()
    }
}

impl ReplyClock {
    /// The clock of `message`, on the messenger `surface`, that arrived at `arrival`
    /// (`None`: not measured) and is answered by `agent`; `story` gets the same moments.
    pub fn start(
        metrics: &Arc<Metrics>,
        agent: &str,
        surface: &'static str,
        message: &MessageId,
        arrival: Option<Arrival>,
        story: Option<StoryPen>,
    ) -> Option<Arc<Self>> {
        arrival.map(|arrival| {
            Arc::new(Self {
                metrics: metrics.clone(),
                series: metrics.reply_series(agent, surface),
                exemplar: exemplar_id(message),
                arrival,
                first_recorded: AtomicBool::new(false),
                story,
            })
        })
    }

    fn tell_story(&self, moment: Moment, took: std::time::Duration) {
        if let Some(story) = &self.story {
            story.timing(moment, took);
        }
    }

    /// The agent turn starts now: records the queue wait.
    pub fn turn_started(&self) {
        let took = self.arrival.accepted.elapsed();
        self.metrics.queue_wait(&self.series, took);
        self.tell_story(Moment::QueueWait, took);
    }

    /// The messenger accepted the first words of the reply (a live reply's first post); only
    /// the first call records.
    pub fn first_words(&self) {
        if !self.first_recorded.swap(true, Ordering::Relaxed) {
            let took = self.arrival.accepted.elapsed();
            self.metrics
                .reply_latency(&self.series, ReplyStage::First, took, &self.exemplar);
            self.tell_story(Moment::FirstWords, took);
        }
    }

    /// The messenger accepted the whole reply: records the final latency, and the first words
    /// too when nothing was shown earlier (a reply not streamed arrives all at once).
    pub fn replied(&self) {
        self.first_words();
        let took = self.arrival.accepted.elapsed();
        self.metrics
            .reply_latency(&self.series, ReplyStage::Final, took, &self.exemplar);
        self.tell_story(Moment::FinalReply, took);
        if let Some(origin) = self.arrival.origin {
            // A messenger clock ahead of ours gives no meaningful figure: not recorded.
            match SystemTime::now().duration_since(origin) {
                Ok(took) => self.metrics.reply_from_origin(&self.series, took),
                Err(ahead) => tracing::debug!(ahead = ?ahead.duration(),
                    "the messenger's timestamp is ahead of our clock; not measured from it"),
            }
        }
    }
}

/// The exemplar naming `message`: its id, the `msg` field of its log lines; an id too long
/// for an exemplar's 128 characters gives its turn id (`turn-…`, on the `agent_turn` span of
/// the same log lines) instead.
pub fn exemplar_id(message: &MessageId) -> String {
    if fits_exemplar(message.as_str()) {
        message.to_string()
    } else {
        turn_id_for(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Exposition, Observed};
    use std::time::Duration;

    /// The `_count` of `series` (name and labels as exported) in the Prometheus text.
    fn count(text: &str, series: &str) -> Option<f64> {
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|value| value.trim().parse().ok())
    }

    #[test]
    fn each_moment_is_recorded_once_and_only_when_measured() {
        let second = Duration::from_secs(1);
        let past = SystemTime::now().checked_sub(second);
        let future = SystemTime::now().checked_add(Duration::from_secs(3600));
        // (arrival, first words seen before the end, want first, final, from origin)
        let table = [
            (None, true, None, None, None),
            (Some(Arrival::now(None)), false, Some(1.0), Some(1.0), None),
            (Some(Arrival::now(None)), true, Some(1.0), Some(1.0), None),
            (
                Some(Arrival::now(past)),
                true,
                Some(1.0),
                Some(1.0),
                Some(1.0),
            ),
            (
                Some(Arrival::now(future)),
                false,
                Some(1.0),
                Some(1.0),
                None,
            ),
        ];
        for (arrival, live, first, last, origin) in table {
            let metrics = Arc::new(Metrics::new());
            let message = MessageId::new("$m:hs");
            if let Some(clock) =
                ReplyClock::start(&metrics, "ref", "matrix", &message, arrival, None)
            {
                clock.turn_started();
                if live {
                    clock.first_words();
                    clock.first_words();
                }
                clock.replied();
            }
            let text = metrics
                .encode(&Observed::default(), Exposition::Prometheus)
                .unwrap_or_default();
            let case = format!("{arrival:?} live={live}");
            assert_eq!(
                count(
                    &text,
                    "surfaces_reply_latency_seconds_count{agent=\"ref\",surface=\"matrix\",stage=\"first\"}"
                ),
                first,
                "{case}\n{text}"
            );
            assert_eq!(
                count(
                    &text,
                    "surfaces_reply_latency_seconds_count{agent=\"ref\",surface=\"matrix\",stage=\"final\"}"
                ),
                last,
                "{case}"
            );
            assert_eq!(
                count(
                    &text,
                    "surfaces_reply_latency_from_origin_seconds_count{agent=\"ref\",surface=\"matrix\"}"
                ),
                origin,
                "{case}"
            );
            assert_eq!(
                count(
                    &text,
                    "surfaces_queue_wait_seconds_count{agent=\"ref\",surface=\"matrix\"}"
                ),
                first,
                "{case}"
            );
        }
    }

    #[test]
    fn the_exemplar_is_the_message_id_unless_too_long() {
        let long = MessageId::new(format!("${}:example.org", "a".repeat(200)));
        // (message, want)
        let table = [
            (
                MessageId::new("$abc:example.org"),
                "$abc:example.org".to_owned(),
            ),
            (MessageId::new("telegram:42:5"), "telegram:42:5".to_owned()),
            (long.clone(), turn_id_for(&long)),
        ];
        for (message, want) in table {
            let got = exemplar_id(&message);
            assert_eq!(got, want, "{message}");
            assert!(fits_exemplar(&got), "{got}");
        }
    }
}
