//! Outcome: what graph-vcr did with one request, under one name that the journal, the reports
//! and the end-of-run summary all use, so the three always agree.
//!
//! Every failure has its own outcome and is counted once, under it: a request graph-vcr could
//! not read (`too-large`, `too-deep`, `body-timeout`, `bad-request`), could not place (`bad-cassette`), refused
//! by contract (`rejected`), had no recording or cassette for (`miss`, `unknown-cassette`),
//! may not reach in forward mode (`refused`), could not reach the upstream for
//! (`upstream-error`), or could not store or read (`store-error`, `corrupt-record`).

use std::fmt;

macro_rules! outcomes {
    ($($variant:ident = $text:literal: $doc:literal,)*) => {
        /// What happened to one request.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Outcome { $(#[doc = $doc] $variant),* }

        impl Outcome {
            /// Every outcome, in the order reports list them.
            pub const ALL: [Outcome; [$(Outcome::$variant),*].len()] = [$(Outcome::$variant),*];

            /// The stable name, as journaled (`miss`, `upstream-error`, ...).
            pub fn as_str(self) -> &'static str {
                match self { $(Outcome::$variant => $text),* }
            }
        }
    };
}

outcomes! {
    Replayed = "replayed": "Answered from a recording.",
    Recorded = "recorded": "Forwarded, and the answer stored.",
    Forwarded = "forwarded": "Forwarded, nothing stored (audit, or out of the recorded scope).",
    Miss = "miss": "Replay had no recording for it (or all were played, `--on-exhausted miss`).",
    UnknownCassette = "unknown-cassette": "Replay: the request named a cassette that does not exist.",
    Refused = "refused": "Forward mode: a connection or request for a host graph-vcr may not reach.",
    Rejected = "rejected": "Broke the contract under `--on-deviation reject`: answered 400, not sent.",
    TooLarge = "too-large": "Body over `--max-body-size`: answered 413.",
    TooDeep = "too-deep": "JSON nested deeper than `--max-json-depth`: answered 400.",
    BodyTimeout = "body-timeout": "The body did not arrive within `--body-timeout`: answered 408, connection closed.",
    BadRequest = "bad-request": "Body could not be read (the connection broke, bad framing).",
    BadCassette = "bad-cassette": "An `x-graph-vcr-cassette` header that is not a cassette name.",
    UpstreamError = "upstream-error": "The upstream could not be reached or did not answer in time.",
    StoreError = "store-error": "The cassette store failed (reading, or making a recording durable).",
    CorruptRecord = "corrupt-record": "The recording exists but cannot be served.",
    Batch = "batch": "A `$batch` answered item by item; each item is journaled as its own call.",
    FailedDependency = "failed-dependency": "A `$batch` item not run because an item it depends on failed: answered 424, as Graph does.",
    Throttled = "throttled": "Over `--throttle`'s limits: answered 429 with `Retry-After`, neither replayed nor forwarded.",
    Fault = "fault": "Answered with a fault `--faults` injected (429, 503, 504), neither replayed nor forwarded.",
}

impl Outcome {
    /// The outcome a journal line names, if this version knows it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// Its place in [`Outcome::ALL`] (declaration order), for counters kept in arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether graph-vcr answered with a recording or the upstream's answer.
    pub fn answered(self) -> bool {
        matches!(
            self,
            Self::Replayed
                | Self::Recorded
                | Self::Forwarded
                | Self::Batch
                | Self::FailedDependency
                | Self::Throttled
                | Self::Fault
        )
    }

    /// For one-word displays of a call with several outcomes: lower is worse.
    pub fn rank(self) -> usize {
        const WORST_FIRST: [Outcome; 19] = [
            Outcome::Miss,
            Outcome::UnknownCassette,
            Outcome::Refused,
            Outcome::CorruptRecord,
            Outcome::StoreError,
            Outcome::UpstreamError,
            Outcome::Rejected,
            Outcome::BadCassette,
            Outcome::TooLarge,
            Outcome::TooDeep,
            Outcome::BodyTimeout,
            Outcome::BadRequest,
            Outcome::FailedDependency,
            Outcome::Throttled,
            Outcome::Fault,
            Outcome::Recorded,
            Outcome::Replayed,
            Outcome::Forwarded,
            Outcome::Batch,
        ];
        WORST_FIRST.iter().position(|o| *o == self).unwrap_or(0)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_rank_every_outcome() {
        let mut ranks = std::collections::HashSet::new();
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(o.index(), i);
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
            assert!(ranks.insert(o.rank()), "{o} shares a rank");
        }
        assert_eq!(Outcome::parse("error"), None);
    }
}
