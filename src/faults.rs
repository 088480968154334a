//! Faults: deterministic failures injected for rehearsal (`--faults SPEC --seed N`).
//!
//! Each request of a call (its cassette and key) draws a number from its seed, call and
//! occurrence — never from the clock — and a fault whose rate it falls under answers it instead
//! of the backend: Graph's `429` with `Retry-After` (or without it, or fractional), `503` with
//! `Retry-After`, `504`, a connection closed without an answer, or an added latency before
//! the normal answer. The same seed gives the
//! same faults on every run and machine, whatever the timing; another seed others.

use crate::cassette::CassetteName;
use crate::graph_error::GraphError;
use crate::key::Key;
use http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Distinct calls whose occurrences are counted; past it, counting starts again.
const MAX_CALLS: usize = 65_536;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `429` with `Retry-After: 1` (scaled by `--time-scale`).
    TooMany,
    /// `429` without `Retry-After`: clients fall back to exponential backoff.
    TooManyNoRetryAfter,
    /// `429` with a fractional `Retry-After` (`0.5`, scaled), as Graph's own example has.
    TooManyFractional,
    /// `503` with `Retry-After: 1` (scaled).
    Unavailable,
    /// `504`.
    GatewayTimeout,
    /// The connection closed without an answer, as a reset by the service.
    Reset,
    /// The normal answer, this much later.
    Latency(Duration),
}

/// `--faults`: kinds and rates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spec(pub Vec<(Kind, f64)>);

impl std::str::FromStr for Spec {
    type Err = String;

    /// `429:0.1,503:0.05,429-no-retry-after:0.02,429-fractional:0.02,504:0.01,latency-200ms:0.1`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut total = 0.0;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, rate) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("{part:?}: write KIND:RATE, e.g. 429:0.1"))?;
            let rate: f64 = rate
                .parse()
                .ok()
                .filter(|r: &f64| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("{part:?}: the rate is a number from 0 to 1"))?;
            let kind = match kind {
                "429" => Kind::TooMany,
                "429-no-retry-after" => Kind::TooManyNoRetryAfter,
                "429-fractional" => Kind::TooManyFractional,
                "503" => Kind::Unavailable,
                "504" => Kind::GatewayTimeout,
                "reset" => Kind::Reset,
                k if k.starts_with("latency-") => Kind::Latency(
                    humantime::parse_duration(&k["latency-".len()..])
                        .ok()
                        .filter(|d| *d <= Duration::from_secs(60))
                        .ok_or_else(|| format!("{part:?}: latency-DURATION, at most 60s"))?,
                ),
                other => {
                    return Err(format!(
                        "{other:?} is not a fault (429, 429-no-retry-after, 429-fractional, 503, 504, reset, latency-DURATION)"
                    ));
                }
            };
            total += rate;
            out.push((kind, rate));
        }
        if total > 1.0 + 1e-9 {
            return Err(format!("the rates add up to {total}, over 1"));
        }
        Ok(Self(out))
    }
}

/// The running faults.
#[derive(Debug)]
pub struct Faults {
    spec: Spec,
    seed: u64,
    scale: f64,
    occurrences: Mutex<HashMap<(CassetteName, Key), u32>>,
}

/// What a fault does to one request.
#[derive(Debug)]
pub enum Injected {
    /// Answer with this error (and `Retry-After`, if any) instead of the backend.
    Answer(GraphError, Option<Duration>),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Close the connection without answering.
    Reset,
}

impl Faults {
    pub fn new(spec: Spec, seed: u64, scale: f64) -> Option<Self> {
        (!spec.0.is_empty()).then(|| Self {
            spec,
            seed,
            scale,
            occurrences: Mutex::new(HashMap::new()),
        })
    }

    /// The fault for this request of `call`, if it draws one.
    pub fn draw(&self, call: (CassetteName, Key)) -> Option<Injected> {
        let occurrence = {
            let mut seen = self.occurrences.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() >= MAX_CALLS && !seen.contains_key(&call) {
                seen.clear();
            }
            let n = seen.entry(call.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let u = unit(self.seed, &call.0, &call.1, occurrence);
        let mut below = 0.0;
        let kind = self.spec.0.iter().find_map(|(kind, rate)| {
            below += rate;
            (u < below).then_some(*kind)
        })?;
        let scaled = |s: f64| Duration::from_secs_f64(s * self.scale);
        let error = |status, code: &'static str, message: &str| {
            GraphError::new(
                status,
                code,
                format!("{message} (injected by graph-vcr --faults)"),
            )
        };
        Some(match kind {
            Kind::Latency(d) => Injected::Delay(d),
            Kind::Reset => Injected::Reset,
            Kind::TooMany => Injected::Answer(
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests",
                ),
                Some(scaled(1.0)),
            ),
            Kind::TooManyFractional => Injected::Answer(
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests",
                ),
                Some(scaled(0.5)),
            ),
            Kind::TooManyNoRetryAfter => Injected::Answer(
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests",
                ),
                None,
            ),
            Kind::Unavailable => Injected::Answer(
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "serviceNotAvailable",
                    "The service is temporarily unavailable",
                ),
                Some(scaled(1.0)),
            ),
            Kind::GatewayTimeout => Injected::Answer(
                error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gatewayTimeout",
                    "The gateway timed out",
                ),
                None,
            ),
        })
    }
}

/// A number in [0, 1) from the seed, the call and its occurrence (SplitMix64 over FNV).
fn unit(seed: u64, cassette: &CassetteName, key: &Key, occurrence: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in cassette
        .as_str()
        .bytes()
        .chain(key.0)
        .chain(occurrence.to_be_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        let s: Result<Spec, _> = "429:0.1, 503:0.05,latency-200ms:0.1".parse();
        assert_eq!(s.map(|s| s.0.len()), Ok(3));
        for bad in [
            "429",
            "429:2",
            "418:0.1",
            "429:0.6,503:0.6",
            "latency-2h:0.1",
        ] {
            assert!(bad.parse::<Spec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() -> Result<(), String> {
        let spec: Spec = "429:0.3,503:0.2".parse()?;
        let name = CassetteName::new("c").map_err(|e| e.to_string())?;
        let run = |seed| {
            let f = Faults::new(spec.clone(), seed, 1.0);
            (0..200u8)
                .map(|i| {
                    f.as_ref()
                        .and_then(|f| f.draw((name.clone(), Key([i % 7; 32]))))
                        .map(|x| format!("{x:?}"))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let hits = run(7).iter().filter(|x| x.is_some()).count();
        assert!((70..=130).contains(&hits), "{hits} of 200 at a 50% rate");
        Ok(())
    }
}
