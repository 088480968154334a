//! Damage never passes in silence: a cassette database with flipped bytes or cut short opens
//! smaller (sled stops at the first record that fails its checksum), and the manifest beside
//! it says so: `cassette list` and `cassette check` exit non-zero naming the cassette, and a
//! replay over it fails its verdict.

mod common;

use common::*;
use std::path::Path;

/// Records `n` distinct seed calls into `dir`'s cassette `default`.
async fn record(tmp: &Path, n: usize) -> Result<std::path::PathBuf, Error> {
    let (proxy, stand_in, dir) = forwarding("record", tmp, &[]).await?;
    let client = HttpClient::new();
    for i in 0..n {
        let body = SEED_BODY.replace("Collection Id value", &format!("c-{i}-{}", "x".repeat(200)));
        assert_eq!(
            client
                .assign(&proxy.base, SEED_PATH, &body, &[])
                .await?
                .status,
            204
        );
    }
    let exit = proxy.signal("TERM")?;
    stand_in.stop().await;
    assert!(exit.status.success(), "{}", exit.stderr);
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_cassette_database_is_named_and_fails() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = record(tmp.path(), 60).await?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("graph-vcr.manifest"))?)?;
    assert_eq!(manifest["cassettes"]["default"], 60, "{manifest}");
    // Whole: both tools pass.
    for tool in ["list", "check"] {
        let e = run_to_end(&["cassette", tool, "--cassettes", s(&dir)?])?;
        assert_eq!(e.status.code(), Some(0), "{tool}: {}", e.stderr);
    }

    let db_len = std::fs::metadata(dir.join("db"))?.len() as usize;
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: [(&str, Damage); 3] = [
        ("cut to nothing", Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "cut in half",
            Box::new(move |b: &mut Vec<u8>| b.truncate(db_len / 2)),
        ),
        (
            "64 bytes flipped",
            Box::new(move |b: &mut Vec<u8>| {
                let at = db_len / 3;
                for x in &mut b[at..(at + 64).min(db_len)] {
                    *x = !*x;
                }
            }),
        ),
    ];
    for (what, damage) in damages {
        let broken = tmp.path().join(what.replace(' ', "-"));
        copy_dir(&dir, &broken)?;
        let mut db = std::fs::read(broken.join("db"))?;
        damage(&mut db);
        std::fs::write(broken.join("db"), db)?;
        for tool in ["list", "check"] {
            let e = run_to_end(&["cassette", tool, "--cassettes", s(&broken)?])?;
            assert_ne!(
                e.status.code(),
                Some(0),
                "{what}: {tool} passed: {}",
                e.stderr
            );
            assert!(
                e.stderr.contains("DAMAGED cassette default") || e.status.code() == Some(2),
                "{what}: {tool}: {}",
                e.stderr
            );
        }
        // Replay over it: refuses to start, or its run fails naming the damage.
        let Ok(proxy) = Proxy::try_start(&["replay", "--cassettes", s(&broken)?]) else {
            continue;
        };
        let _ = HttpClient::new()
            .assign(&proxy.base, SEED_PATH, SEED_BODY, &[])
            .await;
        let exit = proxy.signal("TERM")?;
        assert_eq!(exit.status.code(), Some(1), "{what}: {}", exit.stderr);
        assert!(
            exit.stderr.contains("damaged recording(s)")
                && exit.stderr.contains("of the 60 recordings"),
            "{what}: {}",
            exit.stderr
        );
    }
    Ok(())
}
