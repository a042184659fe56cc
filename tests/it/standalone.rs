//! The repository stands alone: a clone with nothing beside it has every file the tests
//! read, and no file points outside it for a contract or a fixture. Every fixture under
//! `tests/fixtures/` is listed in its SOURCES.md with its origin and licence.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files git tracks (what a clone has), or, outside a git checkout, none.
fn tracked() -> Option<Vec<PathBuf>> {
    let out = Command::new("git").args(["ls-files", "-z"]).current_dir(root()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        out.stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| root().join(String::from_utf8_lossy(p).as_ref()))
            .collect(),
    )
}

#[test]
fn nothing_points_outside_the_repository() {
    let Some(files) = tracked() else {
        eprintln!("not a git checkout; skipping");
        return;
    };
    // Spelled apart so that this file does not find itself.
    let outside = [concat!("../", "shared"), concat!("DESIGN", ".md"), concat!("STYLE", ".md")];
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for needle in outside {
            if let Some(line) = text.lines().position(|l| l.contains(needle)) {
                found.push(format!("{}:{}: {needle}", file.strip_prefix(root()).unwrap().display(), line + 1));
            }
        }
    }
    assert!(found.is_empty(), "files that point outside the repository: {found:#?}");
}

#[test]
fn every_fixture_has_its_source_and_licence() {
    let dir = root().join("tests/fixtures");
    let sources = std::fs::read_to_string(dir.join("SOURCES.md")).unwrap();
    let mut missing = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "SOURCES.md" {
                // Named in backquotes, by its name or its path under its section's folder.
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let inner = path.strip_prefix(&dir).unwrap().components().skip(1).collect::<PathBuf>();
                let named = [name, inner.display().to_string()].iter().any(|n| sources.contains(&format!("`{n}`")));
                if !named {
                    missing.push(path.strip_prefix(&dir).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "fixtures without a line in tests/fixtures/SOURCES.md: {missing:?}");
    assert!(sources.contains("Licence"), "SOURCES.md names each source's licence");
}
