//! graph-vcr: a record/replay testing proxy for Microsoft Graph's Intune `assign` actions.
//!
//! A request flows through one module per stage:
//! [`listener`] → [`classify`] (which action, which contract in [`contract`]) → [`check`] →
//! [`redact`] → [`key`] → [`mode`] (record / replay / auto / audit) → [`respond`] ([`upstream`],
//! [`graph_error`], store in [`cassette`]; replay serves from the in-memory [`index`]) → [`journal`]. [`proxy`] runs the stages;
//! `docs/ARCHITECTURE.md` draws the same path. The binary (`src/main.rs`) only parses flags
//! and calls into this library, so tests and benchmarks exercise exactly the shipped code.

pub mod ca;
pub mod cassette;
pub mod check;
pub mod classify;
pub mod contract;
pub mod diff;
pub mod export;
pub mod forward;
pub mod graph_error;
pub mod headers;
pub mod index;
pub mod inspect;
pub mod interaction;
pub mod journal;
pub mod key;
pub mod listener;
pub mod memo;
pub mod mode;
pub mod proxy;
pub mod redact;
pub mod report;
pub mod respond;
pub mod stats;
pub mod upstream;
