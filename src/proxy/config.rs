//! The proxy's options and start-up errors: what the CLI (and tests, and benches) give
//! [`Proxy::new`](super::Proxy::new). Each option is documented where it is defined, which is
//! also its `--help`.

use crate::cassette::{CassetteName, StoreError};
use crate::check::CheckOptions;
use crate::journal::JournalOptions;
use crate::key::KeyOptions;
use crate::mode::{Mode, OnExhausted};
use crate::upstream::{UpstreamError, UpstreamOptions};
use std::path::PathBuf;
use thiserror::Error;

/// Limits on what a request may carry. Inputs from the network are hostile until checked.
#[derive(clap::Args, Debug, Clone)]
pub struct RequestLimits {
    /// Largest request body in bytes; larger is answered 413, never forwarded or stored.
    #[arg(long, env = "GRAPH_VCR_MAX_BODY_SIZE", value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_size: usize,

    /// Deepest JSON nesting accepted in a body; deeper is answered 400, never forwarded.
    ///
    /// Assign bodies nest five or six levels; the limit keeps every JSON walk bounded.
    #[arg(
        long,
        env = "GRAPH_VCR_MAX_JSON_DEPTH",
        value_name = "N",
        default_value_t = crate::analyze::DEFAULT_MAX_JSON_DEPTH
    )]
    pub max_json_depth: usize,

    /// Longest a request body may take to arrive, from the end of its head; slower is answered
    /// 408 and the connection closed.
    ///
    /// `--header-timeout` covers the head only: without this, a client that sends a head and
    /// then trickles (or stops sending) its body would hold its connection slot for ever.
    #[arg(long, env = "GRAPH_VCR_BODY_TIMEOUT", value_name = "DURATION", default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub body_timeout: std::time::Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_body_size: 16 * 1024 * 1024,
            max_json_depth: crate::analyze::DEFAULT_MAX_JSON_DEPTH,
            body_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Where cassettes live and which one a request uses.
#[derive(clap::Args, Debug, Clone)]
pub struct CassetteOptions {
    /// Directory holding the cassettes (one sled database).
    ///
    /// Example: `--cassettes tests/cassettes`.
    #[arg(
        long,
        env = "GRAPH_VCR_CASSETTES",
        value_name = "DIR",
        default_value = "cassettes"
    )]
    pub cassettes: PathBuf,

    /// Cassette used when a request has no `x-graph-vcr-cassette: NAME` header.
    ///
    /// Names are 1-100 letters, digits, '.', '_' or '-'. Example: `--cassette onboarding`.
    #[arg(
        long,
        env = "GRAPH_VCR_CASSETTE",
        value_name = "NAME",
        default_value = "default"
    )]
    pub cassette: CassetteName,

    /// Record only Intune assign actions (the scope before 0.6), not the whole conversation.
    ///
    /// By default record and auto store every request to the Graph API (any method, any path
    /// under `/v1.0` or `/beta`, each `$batch` item as its own call), so a tool that reads
    /// before it writes replays offline. Calls outside the scope are still forwarded, and the
    /// summary says how many.
    #[arg(long, env = "GRAPH_VCR_ASSIGN_ONLY")]
    pub assign_only: bool,

    /// Accepted for old scripts: recording everything is now the default.
    #[arg(long, hide = true, conflicts_with = "assign_only")]
    pub record_all: bool,

    /// Record: keep throttled answers (429, 503) as recordings of their own.
    ///
    /// By default a throttled answer is passed to the client (which retries) and not stored,
    /// and the retry's answer is recorded as the call's; with this flag the whole sequence is
    /// recorded, so replay throttles where the recording run was throttled.
    #[arg(long, env = "GRAPH_VCR_RECORD_THROTTLING")]
    pub record_throttling: bool,
}

/// Everything a proxy needs to start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub mode: Mode,
    pub cassettes: CassetteOptions,
    pub key: KeyOptions,
    /// Required for record, auto and audit; never used (nor connected) in replay.
    pub upstream: Option<UpstreamOptions>,
    pub on_exhausted: OnExhausted,
    pub check: CheckOptions,
    pub journal: JournalOptions,
    pub limits: RequestLimits,
    /// Replay: remember each distinct request's analysis (see `memo`). Off only to diagnose
    /// the memo (`--no-memo`): every request then takes the full analysis.
    pub memo: bool,
    /// `--throttle`, `--time-scale` (replay, auto, audit).
    pub throttle: crate::throttle::ThrottleOptions,
    /// `--pseudonymize` (record, auto) and the project's `[[sanitize]]` rules.
    pub sanitize: SanitizeConfig,
}

/// What is sanitized before anything is keyed or stored (see `sanitize`).
#[derive(Debug, Clone, Default)]
pub struct SanitizeConfig {
    pub pseudonymize: bool,
    pub rules: std::sync::Arc<crate::sanitize::Rules>,
}

/// `--pseudonymize`, for record and auto.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PseudonymizeOption {
    /// Replace the tenant's identifiers (GUIDs, UPNs and e-mail addresses, *.onmicrosoft.com
    /// domains) by deterministic aliases in everything stored, keyed and journaled.
    ///
    /// Remembered in each new cassette, so replay aliases incoming requests the same way: a
    /// request carrying the real ids and one carrying ids read from a replayed response both
    /// match. The key is GRAPH_VCR_PSEUDONYM_KEY, else DIR/graph-vcr.pseudonym-key (made on
    /// first use; keep it out of version control). What is forwarded is never changed.
    #[arg(long, env = "GRAPH_VCR_PSEUDONYMIZE")]
    pub pseudonymize: bool,
}

/// Why a proxy could not start.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Sanitize(#[from] crate::sanitize::SanitizeError),
    #[error("--pseudonymize applies to what record and auto store; audit stores nothing")]
    PseudonymizeInAudit,
    #[error("{0} mode needs an upstream")]
    NoUpstream(&'static str),
    #[error(
        "--throttle and --faults rehearse the service's limits and failures offline (replay, auto, \
         audit); record talks to the real service, which throttles and fails for itself"
    )]
    ThrottleInRecord,
    #[error(
        "cassette {cassette} was recorded with key options {recorded}, and this run was given {given}; \
         replay keys each cassette as it was recorded, so drop --ordered-arrays/--ignore-field, \
         or re-record the cassette with them"
    )]
    KeyOptions {
        cassette: String,
        recorded: String,
        given: String,
    },
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
