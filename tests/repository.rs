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

/// A statement's text as the backends differ in writing it: placeholders (`$1`, `?1`, `?`), the
/// time columns' naming convention (`name` / `@name` / `name_us`), case and spacing. Two texts
/// equal after this are one statement written twice.
fn statement_shape(text: &str) -> String {
    let mut shape = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' | '?' => {
                while chars.next_if(char::is_ascii_digit).is_some() {}
                shape.push('?');
            }
            '@' => {}
            c if c.is_whitespace() => {
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                shape.push(' ');
            }
            c => shape.push(c.to_ascii_lowercase()),
        }
    }
    shape.replace("_us ", " ").replace("_us,", ",").replace("_us)", ")").replace("_us=", "=").trim().to_owned()
}

/// The string literals of a Rust source that hold SQL statements.
fn statements(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') || bytes.get(i + 1) == Some(&b'\\') => {
                // A char literal: '"' must not open a string.
                i += if bytes.get(i + 1) == Some(&b'\\') { 4 } else { 3 };
                continue;
            }
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let text = &source[start..i.min(source.len())];
                let upper = text.to_ascii_uppercase();
                if ["SELECT ", "INSERT ", "UPDATE ", "DELETE "].iter().any(|word| upper.contains(word))
                    && text.len() >= 30
                {
                    found.push((source[..start].lines().count(), text.to_owned()));
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// A statement that both backends run is written once (`planledger_store::sql`'s dialect, or
/// the store's `texts.rs`), so a fix to it cannot reach one backend only: no two source files
/// hold texts that differ only by how a backend writes placeholders or time columns.
#[test]
fn no_statement_is_written_once_per_backend() {
    let mut files = Vec::new();
    rust_files(&crates_dir(), &mut files);
    let mut shapes: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a source file");
        let name = file.strip_prefix(repository()).unwrap_or(file).display().to_string();
        for (line, text) in statements(&source) {
            shapes.entry(statement_shape(&text)).or_default().push(format!("{name}:{line}"));
        }
    }
    assert!(shapes.len() > 50, "the statements were found: {} shapes", shapes.len());
    let twins: Vec<String> = shapes
        .into_values()
        .filter(|places| {
            let mut files: Vec<&str> = places.iter().map(|p| p.split(':').next().unwrap_or_default()).collect();
            files.dedup();
            files.len() > 1
        })
        .map(|places| places.join(" and "))
        .collect();
    assert!(twins.is_empty(), "one statement written in several places (write it once): {twins:#?}");
    assert_eq!(
        statement_shape("SELECT a FROM t WHERE b = $1 AND @at_us < ?2"),
        statement_shape("select a from t where b = ? and at < $2")
    );
}

/// Every setting of the binary (an `env = "..."` of its command line, and the two read outside
/// it) is in docs/deploy.md's configuration reference, so an operator finds each one there.
#[test]
fn every_setting_is_in_the_deployment_guide() {
    let main = std::fs::read_to_string(crates_dir().join("planledger/src/main.rs")).expect("main.rs");
    let guide = std::fs::read_to_string(repository().join("docs/deploy.md")).expect("docs/deploy.md");
    let mut settings: Vec<&str> = main
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| name.starts_with("PLANLEDGER_"))
        .collect();
    settings.extend(["PLANLEDGER_LOG_FORMAT", "RUST_LOG"]);
    assert!(settings.len() > 30, "the settings were found: {settings:?}");
    let missing: Vec<&&str> = settings.iter().filter(|name| !guide.contains(&format!("| `{name}` |"))).collect();
    assert!(missing.is_empty(), "docs/deploy.md's configuration table does not list: {missing:?}");
}
