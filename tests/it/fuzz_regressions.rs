//! Replays every input under `tests/fixtures/fuzz/<target>/` (inputs that once crashed,
//! hung or blew the memory of a fuzz target, kept after the fix) through the very checks
//! the `cargo fuzz` targets run (`fuzz/src/lib.rs`, included here by path), so a fixed
//! finding stays fixed in `cargo test`. A replay that panics names its file.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails again", file.display());
    }
    files.len()
}

#[test]
fn fuzz_findings_stay_fixed() {
    let replayed = replay("url_grammar", checks::url_grammar)
        + replay("article", checks::article)
        + replay("image", checks::image);
    // The seeds are replayed too: the checks pass on valid inputs of every kind.
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut seeded = 0;
    for (target, check) in [
        ("url_grammar", checks::url_grammar as fn(&[u8])),
        ("image", checks::image),
    ] {
        for entry in std::fs::read_dir(seeds.join(target)).unwrap().flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            // Image seeds are images: the target reads a selector byte first.
            let data = if target == "image" {
                [&[0x4c][..], &data].concat()
            } else {
                data
            };
            check(&data);
            seeded += 1;
        }
    }
    let post =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-article.md"))
            .unwrap();
    checks::article(&[&[0u8][..], &post].concat());
    assert!(seeded >= 10, "{seeded} seeds");
    eprintln!("replayed {replayed} fuzz findings and {seeded} seeds");
}
