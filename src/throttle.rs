//! Throttle: Intune's documented limits, rehearsed offline (`--throttle intune`).
//!
//! Intune throttles per tenant and per app in each tenant, over 20-second windows: writes
//! (POST, PUT, PATCH, DELETE — assign among them) 100 per app and 200 per tenant, any request
//! 1,000 per app and 2,000 per tenant (Graph's throttling limits for Intune, as the reference
//! data records them: `../shared/reference/graph-assign-contracts.json`, `throttling`). The
//! tenant and app come from the bearer token's `tid` and `appid`/`azp` claims (read, never
//! verified; one shared tenant and app when the token has none). A request over a limit is
//! answered as Graph answers it — `429` with `TooManyRequests` and `Retry-After` — and is
//! neither replayed nor forwarded. `--time-scale F` shrinks the windows (and so `Retry-After`)
//! by F, so a CI run rehearses a 20-second window in one second with `--time-scale 0.05`.
//!
//! Windows slide: a bucket remembers when each request it admitted arrived, at most its limit,
//! so memory is bounded per bucket, and the number of buckets is bounded too ([`MAX_BUCKETS`]).

use crate::cassette::CassetteName;
use crate::check::{Code, Deviation};
use crate::key::Key;
use http::Method;
use http::request::Parts;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct (tenant, app) buckets remembered; past it, new ones share one.
const MAX_BUCKETS: usize = 10_000;
/// The window of Intune's limits.
const WINDOW: Duration = Duration::from_secs(20);

/// `--throttle`, `--time-scale`.
#[derive(clap::Args, Debug, Clone)]
pub struct ThrottleOptions {
    /// Answer over Intune's documented limits with Graph's 429 (replay, auto, audit).
    ///
    /// `intune`: writes 100 per 20 s per app per tenant and 200 per tenant, any request 1,000
    /// and 2,000, counted from the token's `tid` and `appid`/`azp`. A throttled request is
    /// neither replayed nor forwarded.
    #[arg(long, env = "GRAPH_VCR_THROTTLE", value_enum, value_name = "LIMITS")]
    pub throttle: Option<Limits>,
    /// Scale the throttling windows and Retry-After by this factor (0.05: 20 s become 1 s).
    #[arg(long, env = "GRAPH_VCR_TIME_SCALE", value_name = "F", default_value_t = 1.0, value_parser = positive)]
    pub time_scale: f64,
    /// Inject faults at these rates, chosen from the seed, the call and its occurrence (never
    /// the clock): `429`, `429-no-retry-after`, `429-fractional`, `503`, `504`, `latency-DURATION`.
    ///
    /// Example: `--faults 429:0.1,503:0.05 --seed 7`. The same seed gives the same faults.
    #[arg(long, env = "GRAPH_VCR_FAULTS", value_name = "SPEC", value_parser = fault_spec)]
    pub faults: Option<crate::faults::Spec>,
    /// The seed of `--faults`.
    #[arg(long, env = "GRAPH_VCR_SEED", value_name = "N", default_value_t = 0)]
    pub seed: u64,
}

impl Default for ThrottleOptions {
    /// As the flags default: off, at the service's own time scale.
    fn default() -> Self {
        Self {
            throttle: None,
            time_scale: 1.0,
            faults: None,
            seed: 0,
        }
    }
}

fn fault_spec(s: &str) -> Result<crate::faults::Spec, String> {
    s.parse()
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 1000.0 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a factor between 0 (exclusive) and 1000"
        )),
    }
}

/// Which limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Limits {
    /// Intune's documented limits.
    Intune,
}

/// What a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bucket {
    tenant: String,
    /// `None`: the tenant's bucket, all apps together.
    app: Option<String>,
    write: bool,
}

/// The running limits.
#[derive(Debug)]
pub struct Throttle {
    /// `--throttle` given: the limits are enforced (otherwise only retries are watched).
    limits: bool,
    window: Duration,
    buckets: Mutex<HashMap<Bucket, VecDeque<Instant>>>,
    /// Per throttled call (cassette, key): until when its retry is too early.
    retry_after: Mutex<HashMap<(CassetteName, Key), Instant>>,
}

/// What [`Throttle::admit`] decided.
#[derive(Debug)]
pub struct Admitted {
    pub result: Result<(), Throttled>,
    /// A retry of a throttled call sent this long before its `Retry-After` elapsed.
    pub early: Option<Duration>,
}

/// Most throttled calls whose `Retry-After` is remembered.
const MAX_RETRIES_WATCHED: usize = 65_536;

/// A request over a limit: which one, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    pub limit: String,
    pub retry_after: Duration,
}

impl Throttle {
    /// The limits (`--throttle`) and the watch on retries, when either limits or faults are on.
    pub fn new(options: &ThrottleOptions) -> Option<Self> {
        let on = options.throttle.is_some() || options.faults.is_some();
        on.then(|| Self {
            limits: options.throttle.is_some(),
            window: WINDOW.mul_f64(options.time_scale),
            buckets: Mutex::new(HashMap::new()),
            retry_after: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a request of `call` (its cassette and key, once analyzed), or says why it is
    /// over a limit (and counts nothing); and whether it retries a throttled call too early.
    pub fn admit(&self, parts: &Parts, call: Option<(CassetteName, Key)>) -> Admitted {
        let now = Instant::now();
        let mut waits = self.retry_after.lock().unwrap_or_else(|p| p.into_inner());
        let early = call
            .as_ref()
            .and_then(|c| waits.get(c))
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero());
        let result = if self.limits {
            self.admit_at(parts, now)
        } else {
            Ok(())
        };
        if let Some(call) = call {
            match &result {
                Err(t) => {
                    if waits.len() >= MAX_RETRIES_WATCHED {
                        waits.clear();
                    }
                    waits.insert(call, now + t.retry_after);
                }
                Ok(()) => {
                    waits.remove(&call);
                }
            }
        }
        Admitted { result, early }
    }

    /// A call answered with `Retry-After` by something else (an injected fault): its retry is
    /// watched the same way.
    pub fn watch_retry(&self, call: (CassetteName, Key), after: Duration) {
        let mut waits = self.retry_after.lock().unwrap_or_else(|p| p.into_inner());
        if waits.len() >= MAX_RETRIES_WATCHED {
            waits.clear();
        }
        waits.insert(call, Instant::now() + after);
    }

    fn admit_at(&self, parts: &Parts, now: Instant) -> Result<(), Throttled> {
        let (tenant, app) = identity(parts);
        let write = matches!(
            parts.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let mut checks = vec![
            (
                Bucket {
                    tenant: tenant.clone(),
                    app: Some(app.clone()),
                    write: false,
                },
                1_000,
                "1,000 requests per app per tenant",
            ),
            (
                Bucket {
                    tenant: tenant.clone(),
                    app: None,
                    write: false,
                },
                2_000,
                "2,000 requests per tenant",
            ),
        ];
        if write {
            checks.push((
                Bucket {
                    tenant: tenant.clone(),
                    app: Some(app),
                    write: true,
                },
                100,
                "100 writes per app per tenant",
            ));
            checks.push((
                Bucket {
                    tenant,
                    app: None,
                    write: true,
                },
                200,
                "200 writes per tenant",
            ));
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for (bucket, limit, what) in &checks {
            let Some(times) = buckets.get_mut(bucket) else {
                continue;
            };
            while times
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                times.pop_front();
            }
            if times.len() >= *limit {
                let oldest = times.front().copied().unwrap_or(now);
                return Err(Throttled {
                    limit: format!("{what} per {}", humantime::format_duration(self.window)),
                    retry_after: self.window.saturating_sub(now.duration_since(oldest)),
                });
            }
        }
        for (bucket, _, _) in checks {
            let bucket = if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&bucket) {
                Bucket {
                    tenant: "(many)".into(),
                    app: bucket.app.map(|_| "(many)".into()),
                    write: bucket.write,
                }
            } else {
                bucket
            };
            buckets.entry(bucket).or_default().push_back(now);
        }
        Ok(())
    }
}

/// The token's tenant and app, or one shared tenant and app.
fn identity(parts: &Parts) -> (String, String) {
    let claims = crate::check::permissions::claims(&parts.headers);
    let text = |name: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(|v| v.as_str())
            .filter(|s| s.len() <= 64)
            .map(str::to_string)
    };
    let tenant = text("tid").unwrap_or_else(|| "(no tenant)".into());
    let app = text("appid")
        .or_else(|| text("azp"))
        .unwrap_or_else(|| "(no app)".into());
    (tenant, app)
}

/// The deviation of a retry sent before the `Retry-After` it was given elapsed.
pub fn retry_too_early(early: Duration) -> Deviation {
    Deviation::new(
        Code::RetryTooEarly,
        "Retry-After",
        format!(
            "retried {} s before the Retry-After of the throttled try elapsed: the service throttles it again, \
             and a client that does not wait keeps a tenant throttled",
            retry_after_value(early)
        ),
    )
}

/// `Retry-After` as Graph writes it: seconds, fractional when under a few (the docs' example
/// is `2.128`).
pub fn retry_after_value(d: Duration) -> String {
    let s = d.as_secs_f64().max(0.001);
    if s >= 10.0 {
        format!("{}", s.ceil() as u64)
    } else {
        format!("{s:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method) -> Parts {
        let (parts, ()) = http::Request::builder()
            .method(method)
            .uri("/v1.0/deviceManagement/deviceConfigurations/c/assign")
            .body(())
            .map(http::Request::into_parts)
            .unwrap_or_else(|_| http::Request::new(()).into_parts());
        parts
    }

    #[test]
    fn a_hundred_writes_per_window_then_429_until_it_slides() {
        let t = Throttle::new(&ThrottleOptions {
            throttle: Some(Limits::Intune),
            time_scale: 0.05,
            ..Default::default()
        });
        let Some(t) = t else { panic!("no throttle") };
        let start = Instant::now();
        let admitted = (0..150)
            .filter(|_| t.admit_at(&request(Method::POST), start).is_ok())
            .count();
        assert_eq!(admitted, 100);
        let refused = t.admit_at(&request(Method::POST), start + Duration::from_millis(400));
        assert!(
            refused
                .as_ref()
                .is_err_and(|r| r.retry_after == Duration::from_millis(600)),
            "{refused:?}"
        );
        // Reads have their own, larger limit.
        assert!(t.admit_at(&request(Method::GET), start).is_ok());
        assert!(
            t.admit_at(&request(Method::POST), start + Duration::from_secs(1))
                .is_ok()
        );
    }
}
