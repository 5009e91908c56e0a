//! The rooms of the code and what each may touch (docs/ARCHITECTURE.md), checked on the
//! source: only `store` names rusqlite or a connection, and every room uses only rooms
//! below it, so there are no import cycles. Test code (`#[cfg(test)]` onwards) is left
//! out: a test may reach anywhere.

use std::path::{Path, PathBuf};

/// The rooms from the bottom up; a room may use the rooms of a lower rank.
const RANKS: &[(&str, u8)] = &[
    ("domain", 0),
    ("telemetry", 0),
    ("tls", 0),
    ("config", 1),
    ("store", 1),
    ("templates", 1),
    ("oauth2", 2),
    ("outbox", 3),
    ("newsletter", 4),
    ("inbox", 5),
    ("app", 6),
    ("web", 7),
    ("cli", 8),
];

fn rank(room: &str) -> Option<u8> {
    RANKS.iter().find(|(r, _)| *r == room).map(|(_, n)| *n)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The room of a file: the first path segment below `src/` without `.rs`.
fn room_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

/// The lines of a file before its tests, without comments.
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn all_sources() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 20, "the source tree was not found: {}", src.display());
    (src, files)
}

#[test]
fn only_the_store_names_rusqlite_or_a_connection() {
    let (src, files) = all_sources();
    let mut found = Vec::new();
    for f in &files {
        if room_of(&src, f) == "store" {
            continue;
        }
        for (n, line) in code_lines(f) {
            if line.contains("rusqlite") || line.contains(".conn()") {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "SQL belongs in src/store/; found outside it:\n{}", found.join("\n"));
}

#[test]
fn every_room_uses_only_rooms_below_it() {
    let (src, files) = all_sources();
    let mut found = Vec::new();
    for f in &files {
        let room = room_of(&src, f);
        let Some(own) = rank(&room) else {
            if !matches!(room.as_str(), "lib" | "main") {
                found.push(format!("{}: room `{room}` is not in the list of rooms", f.display()));
            }
            continue;
        };
        for (n, line) in code_lines(f) {
            for (i, _) in line.match_indices("crate::") {
                let used: String =
                    line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                match rank(&used) {
                    Some(r) if used == room || r < own => {}
                    Some(_) => found.push(format!("{}:{n}: `{room}` uses `{used}`: {}", f.display(), line.trim())),
                    None => found.push(format!("{}:{n}: unknown room `{used}`", f.display())),
                }
            }
        }
    }
    assert!(found.is_empty(), "layering broken (docs/ARCHITECTURE.md):\n{}", found.join("\n"));
}
