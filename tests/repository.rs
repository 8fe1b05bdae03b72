//! Checks of the repository as a whole.
//!
//! The persistence boundary: no crate above `planledger-store` names a backend.
//! Their statements are written once (`planledger_store::sql`), their rows declared as tables
//! (`planledger_store::rows`), and what must differ by backend is a named store operation.
//!
//! Two crates are not above the store and are not read: the store itself, and the test kit,
//! which creates and drops the databases tests run on (a server's business, not the ledger's).
//! The one exception above it is the bench (`planledger-bench`), a PostgreSQL benchmark by
//! design: it reaches the ledger through the store like `serve` does, and keeps a PostgreSQL
//! pool of its own for the designs it compares against and for checking what the ledger wrote.

use std::path::{Path, PathBuf};

/// What naming a backend looks like in source.
const BACKEND_NAMES: &[&str] = &[
    "AnyEventLog::Postgres",
    "AnyEventLog::Sqlite",
    "AnyTx::Postgres",
    "AnyTx::Sqlite",
    "PgEventLog",
    "SqliteEventLog",
    "sqlx::postgres",
    "sqlx::sqlite",
    "PgPool",
    "SqlitePool",
    "PgConnection",
    "SqliteConnection",
];

/// The bench may name PostgreSQL's own pool, and nothing else.
const BENCH_MAY_NAME: &[&str] = &["sqlx::postgres", "PgPool"];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crates folder").to_owned()
}

fn repository() -> PathBuf {
    crates_dir().parent().expect("the repository").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_crate_above_the_store_names_a_backend() {
    let mut found = Vec::new();
    let mut read = 0;
    for entry in std::fs::read_dir(crates_dir()).expect("the crates folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "planledger-store" || name == "planledger-testkit" {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&entry.path().join("src"), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("a source file");
            read += 1;
            for (number, line) in text.lines().enumerate() {
                for backend in BACKEND_NAMES {
                    let allowed = name == "planledger-bench" && BENCH_MAY_NAME.contains(backend);
                    if line.contains(backend) && !allowed {
                        found.push(format!("{}:{}: {backend}", file.display(), number + 1));
                    }
                }
            }
        }
    }
    assert!(read > 50, "the crates' sources were not found ({read} files)");
    assert!(found.is_empty(), "a crate above the store names a backend:\n{}", found.join("\n"));
}

/// ARCHITECTURE.md's codemap names every source file: in the section of its crate
/// (`### `crates/<name>``), by its path under `src/` (`console/pages.rs`) or, for a folder the
/// section names as a whole (`console/`), by that folder.
#[test]
fn the_codemap_names_every_source_file() {
    let map = std::fs::read_to_string(repository().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(crates_dir()).expect("the crates folder").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let heading = format!("### `crates/{name}`");
        let Some(start) = map.find(&heading) else {
            missing.push(format!("crates/{name}: no section"));
            continue;
        };
        crates += 1;
        let rest = &map[start + heading.len()..];
        let section = &rest[..rest.find("\n### ").or_else(|| rest.find("\n## ")).unwrap_or(rest.len())];
        let src = entry.path().join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
            let folder = relative.split_once('/').map(|(folder, _)| format!("`{folder}/`"));
            let named = section.contains(&format!("`{relative}`"))
                || folder.as_ref().is_some_and(|folder| section.contains(folder.as_str()));
            if !named {
                missing.push(format!("crates/{name}/src/{relative}"));
            }
        }
    }
    assert!(crates > 10, "the crates were not found");
    assert!(missing.is_empty(), "ARCHITECTURE.md's codemap does not name:\n{}", missing.join("\n"));
}
