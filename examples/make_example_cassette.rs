//! Writes the bundled `example` cassette: the seed document's example interaction
//! (`POST /v1.0/deviceManagement/deviceEnrollmentConfigurations/{id}/assign` → `204 No Content`).
//!
//! Usage: `cargo run --example make_example_cassette -- cassettes`
//!
//! The request is the reference page's example verbatim; the response is its `204 No Content`
//! with the `request-id` / `client-request-id` headers Graph documents on every response (fixed,
//! illustrative values). Keys are computed by the library exactly as the proxy computes them.

use graph_vcr::cassette::{Access, CassetteName, Store};
use graph_vcr::export;
use graph_vcr::interaction::{Body, RecordedResponse};
use graph_vcr::key::{Key, KeyOptions};
use std::path::PathBuf;

const PATH: &str = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign";

use graph_vcr::contract::SEED_EXAMPLE_BODY as BODY;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "cassettes".into()),
    );
    let store = Store::open(&dir, Access::ReadWrite)?;
    let cassette = store.cassette(&CassetteName::new("example")?)?;
    let opts = KeyOptions::default();
    cassette.set_meta(&serde_json::json!({ "key_options": opts.to_json() }))?;

    let response = RecordedResponse {
        status: 204,
        headers: vec![
            (
                "request-id".into(),
                "6f1b8a52-3c1e-4f4e-9d0b-7a2c5e9d1f30".into(),
            ),
            (
                "client-request-id".into(),
                "6f1b8a52-3c1e-4f4e-9d0b-7a2c5e9d1f30".into(),
            ),
            ("cache-control".into(), "no-cache".into()),
        ],
        body: Body::Empty,
    };
    let mut interaction = export::made_up(
        "POST",
        PATH,
        BODY,
        response,
        "2026-11-28T00:00:00.000Z",
        &opts,
    );
    interaction.request.headers = vec![
        ("authorization".into(), "Bearer REDACTED".into()),
        ("content-type".into(), "application/json".into()),
        ("accept".into(), "application/json".into()),
    ];
    let key = Key::from_hex(&interaction.key).ok_or("made_up produced a bad key")?;
    cassette.put(&key, 0, serde_json::to_vec(&interaction)?)?;
    store.flush_blocking()?;
    store.write_manifest()?;
    println!(
        "wrote cassette \"example\" ({} interaction) to {}",
        cassette.len(),
        dir.display()
    );
    Ok(())
}
