//! graph-vcr: a record/replay testing proxy for Microsoft Graph's Intune `assign` actions.
//!
//! A request flows through one module per stage, carried as one [`exchange::Exchange`]:
//! [`listener`] → [`analyze`] ([`redact`] → [`classify`] → [`check`] → [`key`]) → the mode's
//! [`backend`] (replay from the in-memory [`index`] and [`memo`]; record and auto into the
//! [`cassette`] store through [`upstream`]; audit through [`upstream`]) → [`respond`] →
//! [`journal`] and [`report`], which share one [`outcome::Outcome`] ([`stats`] tallies what
//! the report does not hold). [`proxy`] runs
//! the stages; `docs/ARCHITECTURE.md` draws the same path. The binary (`src/main.rs`) only
//! parses flags and calls into this library, so tests and benchmarks exercise exactly the
//! shipped code.

pub mod analyze;
pub mod backend;
pub mod batch;
pub mod ca;
pub mod cassette;
pub mod check;
pub mod classify;
pub mod config;
pub mod connection;
pub mod contract;
pub mod diff;
pub mod drain;
pub mod exchange;
pub mod export;
pub mod faults;
pub mod forward;
pub mod graph_error;
pub mod headers;
pub mod index;
pub mod inspect;
pub mod interaction;
pub mod journal;
pub mod json;
pub mod key;
pub mod links;
pub mod listener;
pub mod memo;
pub mod memory;
pub mod mode;
pub mod nearest;
pub mod outcome;
pub mod proxy;
pub mod redact;
pub mod report;
pub mod respond;
pub mod sanitize;
pub mod serve;
pub mod stats;
pub mod throttle;
pub mod upstream;
pub mod wrap;
