//! The command line: no secret in `--help`, `--json` from `migrate`, logs without colour codes
//! off a terminal and as JSON on request. (`replay --json`, `projections status --json` and
//! `--catalog` are in `audit.rs`, beside the history they read.)

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_planledger"));
    command.args(args).env_remove("PLANLEDGER_LOG_FORMAT").env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run planledger")
}

#[test]
fn help_never_prints_a_secret() {
    let env = [
        ("PLANLEDGER_DATABASE_URL", "postgres://app:hunter2-db@db.internal:5432/ledger"),
        ("PLANLEDGER_TOKENS", "ops:admin:hunter2-token"),
    ];
    let helps: [&[&str]; 6] = [
        &["--help"],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["replay", "--help"],
        &["projections", "status", "--help"],
        &["projections", "rebuild", "--help"],
    ];
    for args in helps {
        let out = run(args, &env);
        assert!(out.status.success(), "{args:?}");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("hunter2"), "{args:?} printed a secret:\n{text}");
    }
    let serve = run(&["serve", "--help"], &env);
    let text = String::from_utf8_lossy(&serve.stdout);
    assert!(text.contains("PLANLEDGER_DATABASE_URL") && text.contains("--catalog"), "{text}");
}

#[test]
fn migrate_reports_as_json_and_logs_plainly_or_as_json() {
    let dir = std::env::temp_dir().join(format!("planledger-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("cli.db").display());
    let out = run(&["migrate", "--json"], &[("PLANLEDGER_DATABASE_URL", &url), ("RUST_LOG", "info")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("migrate --json is JSON");
    assert_eq!(report["backend"], "sqlite");
    assert_eq!(report["applied"].as_array().map(Vec::len), Some(planledger_store::migrate::SQLITE.len()));
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("migrations checked"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "no colour codes off a terminal: {logs:?}");

    let out = run(
        &["migrate", "--json"],
        &[("PLANLEDGER_DATABASE_URL", &url), ("RUST_LOG", "info"), ("PLANLEDGER_LOG_FORMAT", "json")],
    );
    assert!(out.status.success());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (again["applied"].as_array().map(Vec::len), again["alreadyApplied"].as_array().map(Vec::len)),
        (Some(0), Some(planledger_store::migrate::SQLITE.len()))
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("a log line that is not JSON: {line:?}")))
        .collect();
    assert!(lines.iter().any(|l| l["fields"]["message"] == "migrations checked" && l["level"] == "INFO"), "{lines:?}");

    let out = run(&["migrate"], &[("PLANLEDGER_DATABASE_URL", &url), ("PLANLEDGER_LOG_FORMAT", "xml")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PLANLEDGER_LOG_FORMAT must be text or json"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `planledger token new` makes an entry the server takes: 256 random bits in hex, a new one
/// each time; a role or a name the server would refuse is refused here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_token_is_random_and_the_server_takes_it() {
    let entry = |name: &str, role: &str| run(&["token", "new", "--name", name, "--role", role], &[]);
    let first = entry("billing", "service");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let line = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    let secret = line.strip_prefix("billing:service:").expect("name:role:secret").to_owned();
    assert!(secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    assert!(String::from_utf8_lossy(&first.stderr).contains("PLANLEDGER_TOKENS"), "how to use it is said");
    let second = String::from_utf8_lossy(&entry("billing", "service").stdout).trim().to_owned();
    assert_ne!(second, line, "a new secret each time");
    for (name, role) in [("billing", "boss"), ("a,b", "service"), ("a:b", "service"), ("", "admin")] {
        let refused = entry(name, role);
        assert!(!refused.status.success(), "{name:?} {role:?} was accepted");
        assert!(refused.stdout.is_empty(), "nothing printed for a refused token");
    }

    // The server takes the entry, and the secret signs a caller in (404: authenticated, no
    // such store); without it, 401.
    let db = crate::server::Db::create(crate::server::Backend::Sqlite, "new token").await.expect("sqlite");
    let options = crate::server::Options { tokens: Some(line), ..Default::default() };
    let server = crate::server::Server::start(db.url(), &options);
    let path = format!("/v1/stores/{}", uuid::Uuid::new_v4());
    assert_eq!(server.as_token(Some(&secret)).get(&path).await.0, 404);
    assert_eq!(server.as_token(None).get(&path).await.0, 401);
}
