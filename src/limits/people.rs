//! The per-person message limit: a token bucket per person, and the rule that a person is
//! told once per flood, not once per refused message.

use std::time::Instant;

use parking_lot::Mutex;

use super::bucket::{Rate, TokenBucket};
use crate::idmap::IdMap;

/// People remembered before idle ones (full buckets) are forgotten.
const FORGET_IDLE_PAST: usize = 10_000;

/// What to do with one message from a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Take it.
    Take,
    /// Refuse it, and tell the person (the first refusal of this flood).
    RefuseAndTell,
    /// Refuse it quietly (they were told).
    Refuse,
}

#[derive(Debug)]
struct Person {
    bucket: TokenBucket,
    /// Told since their last message was taken.
    told: bool,
}

/// The buckets of everyone who wrote lately. Shared by every messenger's messages.
#[derive(Debug)]
pub struct PersonLimiter {
    rate: Rate,
    people: Mutex<IdMap<String, Person>>,
}

impl PersonLimiter {
    /// A limiter at `rate` for everyone.
    pub fn new(rate: Rate) -> Self {
        PersonLimiter {
            rate,
            people: Mutex::new(IdMap::default()),
        }
    }

    /// The limiter's rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Decides about one message of `person` arriving at `now`.
    pub fn admit(&self, person: &str, now: Instant) -> Admission {
        if self.rate.is_unlimited() {
            return Admission::Take;
        }
        let mut people = self.people.lock();
        if people.len() >= FORGET_IDLE_PAST && !people.contains_key(person) {
            let rate = self.rate;
            people.retain(|_, p| !p.bucket.is_full(&rate, now));
        }
        let entry = people.entry(person.to_owned()).or_insert_with(|| Person {
            bucket: TokenBucket::full(&self.rate, now),
            told: false,
        });
        decide(entry, &self.rate, now)
    }

    /// People with a record (for tests and the memory figure).
    pub fn remembered(&self) -> usize {
        self.people.lock().len()
    }
}

fn decide(person: &mut Person, rate: &Rate, now: Instant) -> Admission {
    if person.bucket.try_take(rate, now) {
        person.told = false;
        Admission::Take
    } else if person.told {
        Admission::Refuse
    } else {
        person.told = true;
        Admission::RefuseAndTell
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use Admission::*;

    #[test]
    fn a_flood_is_told_once_and_told_again_only_after_a_message_was_taken() {
        let rate = Rate {
            burst: 2,
            per_minute: 60,
        };
        // (person, ms after start, expected)
        let script: &[(&str, u64, Admission)] = &[
            ("a", 0, Take),
            ("a", 0, Take),
            ("a", 0, RefuseAndTell),
            ("a", 10, Refuse),
            ("b", 10, Take), // someone else is not affected
            ("a", 500, Refuse),
            ("a", 1_000, Take),          // a token came back
            ("a", 1_001, RefuseAndTell), // a new flood: told again
            ("a", 1_002, Refuse),
            ("b", 1_002, Take),
            ("b", 1_003, RefuseAndTell),
        ];
        let limiter = PersonLimiter::new(rate);
        let start = Instant::now();
        for (i, (person, ms, want)) in script.iter().enumerate() {
            let got = limiter.admit(person, start + Duration::from_millis(*ms));
            assert_eq!(got, *want, "step {i}: {person} at {ms} ms");
        }
    }

    #[test]
    fn an_unlimited_rate_takes_everything_and_remembers_no_one() {
        let limiter = PersonLimiter::new(Rate {
            burst: 0,
            per_minute: 0,
        });
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.admit("a", now), Take);
        }
        assert_eq!(limiter.remembered(), 0);
    }

    #[test]
    fn idle_people_are_forgotten_when_many_are_remembered() {
        let rate = Rate {
            burst: 1,
            per_minute: 60,
        };
        let limiter = PersonLimiter::new(rate);
        let start = Instant::now();
        for i in 0..FORGET_IDLE_PAST {
            limiter.admit(&format!("p{i}"), start);
        }
        assert_eq!(limiter.remembered(), FORGET_IDLE_PAST);
        // A second later every bucket is full again: the next newcomer sweeps them.
        limiter.admit("late", start + Duration::from_secs(1));
        assert_eq!(limiter.remembered(), 1);
    }
}
