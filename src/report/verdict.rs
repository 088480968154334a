//! Verdict: whether a run passes, by one rule for every serving mode and for `verify`.
//!
//! A run fails on each of these unless its own flag allows it: a miss (`--allow-misses`), a
//! contract error in a request or a response (`--allow-deviations`), a request graph-vcr
//! turned away — rejected by contract, too large, too deep, unreadable, a bad cassette name
//! (`--allow-rejected`) — an upstream error (`--allow-upstream-errors`), a connection or
//! request forward mode refused (`--allow-refused`), a request for a cassette that does not
//! exist (`--allow-unknown-cassettes`). It always fails when graph-vcr itself failed (a store
//! error, a recording it cannot serve, a damaged recording), and, with `--fail-on-unplayed`,
//! when a recording was never played. The summary and every report name each cause and its
//! count, allowed or not.

use super::{Report, ReportOptions};
use crate::outcome::Outcome;
use serde::Serialize;

/// One reason a run may fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// A stable name: `miss`, `contract-error`, `rejected`, `upstream-error`, `refused`,
    /// `unknown-cassette`, `graph-vcr-failure`, `damaged`, `unplayed`.
    pub cause: &'static str,
    pub count: u64,
    /// The flag that changes whether it fails the run, if any.
    pub flag: Option<&'static str>,
    /// Whether it fails this run.
    pub fails: bool,
    /// For people: what happened.
    pub what: String,
}

/// The run's verdict: passed when no cause fails it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub passed: bool,
    pub causes: Vec<Cause>,
}

impl Verdict {
    /// The causes that fail the run, as one line each.
    pub fn failures(&self) -> Vec<String> {
        self.causes
            .iter()
            .filter(|c| c.fails)
            .map(Cause::line)
            .collect()
    }
}

impl Cause {
    /// The cause for people, with the flag that changes it.
    pub fn line(&self) -> String {
        match (self.flag, self.fails) {
            (Some(flag), true) if flag.starts_with("--allow") => {
                format!("{} ({flag} to accept)", self.what)
            }
            (Some(flag), _) => format!("{} ({flag})", self.what),
            (None, _) => self.what.clone(),
        }
    }
}

impl Report {
    /// The verdict under `opts`.
    pub fn verdict(&self, opts: &ReportOptions) -> Verdict {
        let t = &self.totals;
        let n = |o: Outcome| t.outcomes.get(o.as_str()).copied().unwrap_or(0);
        let rejected = [
            Outcome::Rejected,
            Outcome::TooLarge,
            Outcome::TooDeep,
            Outcome::BodyTimeout,
            Outcome::BadRequest,
            Outcome::BadCassette,
        ]
        .into_iter()
        .map(n)
        .sum::<u64>();
        let own = n(Outcome::StoreError) + n(Outcome::CorruptRecord);
        let candidates = [
            (
                "miss",
                n(Outcome::Miss),
                Some("--allow-misses"),
                !opts.allow_misses,
                "request(s) missed",
            ),
            (
                "contract-error",
                t.deviation_errors as u64,
                Some("--allow-deviations"),
                !opts.allow_deviations,
                "contract error(s)",
            ),
            (
                "rejected",
                rejected,
                Some("--allow-rejected"),
                !opts.allow_rejected,
                "request(s) turned away (rejected, too large or deep, too slow, unreadable, bad cassette name)",
            ),
            (
                "upstream-error",
                n(Outcome::UpstreamError),
                Some("--allow-upstream-errors"),
                !opts.allow_upstream_errors,
                "upstream error(s)",
            ),
            (
                "refused",
                n(Outcome::Refused),
                Some("--allow-refused"),
                !opts.allow_refused,
                "connection(s) refused: the code under test tried to reach a host that is not intercepted",
            ),
            (
                "unknown-cassette",
                n(Outcome::UnknownCassette),
                Some("--allow-unknown-cassettes"),
                !opts.allow_unknown_cassettes,
                "request(s) for a cassette that does not exist",
            ),
            (
                "graph-vcr-failure",
                own,
                None,
                true,
                "request(s) graph-vcr failed itself (store error, unservable recording)",
            ),
            (
                "damaged",
                t.damaged as u64,
                None,
                true,
                "damaged recording(s) in the cassettes (re-record or re-import them)",
            ),
            (
                "unplayed",
                t.unplayed as u64,
                Some("--fail-on-unplayed"),
                opts.fail_on_unplayed,
                "recording(s) never played",
            ),
        ];
        let causes: Vec<Cause> = candidates
            .into_iter()
            .filter(|(_, count, ..)| *count > 0)
            .map(|(cause, count, flag, fails, what)| Cause {
                cause,
                count,
                flag,
                fails,
                what: format!("{count} {what}"),
            })
            .collect();
        Verdict {
            passed: !causes.iter().any(|c| c.fails),
            causes,
        }
    }

    /// Why the run fails under `opts`; empty when it passes.
    pub fn failures(&self, opts: &ReportOptions) -> Vec<String> {
        self.verdict(opts).failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Report, Totals};

    fn report(outcomes: &[(Outcome, u64)], errors: usize) -> Report {
        let mut all: std::collections::BTreeMap<String, u64> = Outcome::ALL
            .iter()
            .map(|o| (o.as_str().to_string(), 0))
            .collect();
        for (o, n) in outcomes {
            all.insert(o.as_str().to_string(), *n);
        }
        Report {
            format: "graph-vcr-report",
            version: 1,
            mode: "replay".into(),
            started: String::new(),
            totals: Totals {
                requests: 0,
                calls: 0,
                outcomes: all,
                replayed: 0,
                recorded: 0,
                forwarded: 0,
                misses: 0,
                rejected: 0,
                upstream_errors: 0,
                deviation_errors: errors,
                deviation_warnings: 0,
                unplayed: 0,
                damaged: 0,
            },
            calls: vec![],
            unplayed: vec![],
            damaged: vec![],
            needs: vec![],
        }
    }

    #[test]
    fn each_cause_fails_unless_its_flag_allows_it() {
        type Allow = fn(&mut ReportOptions);
        let cases: [(Outcome, Allow); 6] = [
            (Outcome::Miss, |o| o.allow_misses = true),
            (Outcome::TooLarge, |o| o.allow_rejected = true),
            (Outcome::BadCassette, |o| o.allow_rejected = true),
            (Outcome::UpstreamError, |o| o.allow_upstream_errors = true),
            (Outcome::Refused, |o| o.allow_refused = true),
            (Outcome::UnknownCassette, |o| {
                o.allow_unknown_cassettes = true
            }),
        ];
        for (outcome, allow) in cases {
            let r = report(&[(outcome, 2), (Outcome::Replayed, 5)], 0);
            let v = r.verdict(&ReportOptions::default());
            assert!(!v.passed, "{outcome}");
            assert_eq!(v.causes.len(), 1);
            assert_eq!(v.causes[0].count, 2);
            let mut opts = ReportOptions::default();
            allow(&mut opts);
            let v = r.verdict(&opts);
            assert!(v.passed, "{outcome} allowed");
            assert!(!v.causes[0].fails, "the cause is still named");
        }
        let r = report(&[], 1);
        assert!(!r.verdict(&ReportOptions::default()).passed);
        let opts = ReportOptions {
            allow_deviations: true,
            ..Default::default()
        };
        assert!(r.verdict(&opts).passed);
        // graph-vcr's own failures are never allowed.
        let r = report(&[(Outcome::StoreError, 1)], 0);
        let everything = ReportOptions {
            allow_misses: true,
            allow_deviations: true,
            allow_rejected: true,
            allow_upstream_errors: true,
            allow_refused: true,
            allow_unknown_cassettes: true,
            ..Default::default()
        };
        assert!(!r.verdict(&everything).passed);
        assert!(
            report(&[(Outcome::Replayed, 3)], 0)
                .verdict(&everything)
                .passed
        );
    }
}
