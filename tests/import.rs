//! `cassette import` is all or nothing: killed at any moment, it leaves the cassette as it
//! was or the whole new one, never part of it, `--replace` included. (The import writes one
//! atomic sled batch; this test kills it at points through its run and checks the result.)

mod common;

use common::*;
use graph_vcr::export;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn body(i: usize) -> String {
    SEED_BODY.replace("Collection Id value", &format!("collection-{i}"))
}

/// The interaction count `cassette list` shows for `big` (None when it has no such line).
fn listed(dir: &Path) -> Result<Option<usize>, Error> {
    let e = run_to_end(&["cassette", "list", "--cassettes", s(dir)?])?;
    assert!(e.status.success(), "{}", e.stderr);
    Ok(e.stderr
        .lines()
        .find_map(|l| l.strip_prefix("big\t"))
        .and_then(|rest| rest.split('\t').next()?.parse().ok()))
}

#[test]
fn an_import_killed_midway_leaves_the_old_cassette_or_the_whole_new_one() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("cassettes");
    let (old_file, new_file) = (tmp.path().join("old.json"), tmp.path().join("new.json"));
    const OLD: usize = 10;
    const NEW: usize = 2_000;
    std::fs::write(
        &old_file,
        export::to_bytes(&export::synthetic("big", SEED_PATH, OLD, body)),
    )?;
    let mut new = export::synthetic("big", SEED_PATH, NEW, body);
    // Answers of some size, so that writing is a real part of an import's time.
    for i in &mut new.interactions {
        i.response.body = graph_vcr::interaction::Body::Text("x".repeat(4 * 1024));
    }
    std::fs::write(&new_file, export::to_bytes(&new))?;
    let import = |file: &Path, replace: bool| -> Result<Command, Error> {
        let mut c = Command::new(binary());
        c.args(["cassette", "import", s(file)?, "--cassettes", s(&dir)?]);
        if replace {
            c.arg("--replace");
        }
        Ok(c)
    };
    assert!(import(&old_file, false)?.output()?.status.success());
    assert_eq!(listed(&dir)?, Some(OLD));

    // How long a whole import takes here, then kills at points inside it.
    let started = Instant::now();
    let out = import(&new_file, true)?.output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = started.elapsed();
    assert_eq!(listed(&dir)?, Some(NEW));
    assert!(import(&old_file, true)?.output()?.status.success());
    let mut seen_old = false;
    for fraction in [0.1, 0.3, 0.5, 0.7, 0.9] {
        let mut child = import(&new_file, true)?.spawn()?;
        std::thread::sleep(whole.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL
        let status = child.wait()?;
        let count = listed(&dir)?;
        assert!(
            count == Some(OLD) || count == Some(NEW),
            "killed at {fraction} of {whole:?} ({status}): the cassette has {count:?} interactions"
        );
        seen_old |= count == Some(OLD);
        if count == Some(NEW) {
            assert!(import(&old_file, true)?.output()?.status.success());
        }
    }
    assert!(
        seen_old,
        "no kill landed before the import finished: the test proved nothing"
    );
    // And a complete import after the kills is whole.
    assert!(import(&new_file, true)?.output()?.status.success());
    assert_eq!(listed(&dir)?, Some(NEW));
    Ok(())
}
