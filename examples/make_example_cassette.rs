//! Writes the bundled `example` cassette, `cassettes/example.json`: the seed document's
//! example interaction (`POST /v1.0/deviceManagement/deviceEnrollmentConfigurations/{id}/assign`
//! → `204 No Content`), as an export (format 2).
//!
//! Usage: `cargo run --example make_example_cassette -- cassettes`
//!
//! The document is `graph_vcr::export::bundled_example()`; writing it again gives the same
//! bytes (a test holds the file to them), so regenerating leaves `git status` clean.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "cassettes".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("example.json");
    let doc = graph_vcr::export::bundled_example();
    std::fs::write(&path, graph_vcr::export::to_bytes(&doc))?;
    println!(
        "wrote cassette \"example\" ({} interaction) to {}",
        doc.interactions.len(),
        path.display()
    );
    Ok(())
}
