//! End-to-end tests: the real `planledger` binary against real databases.

mod api;
mod audit;
mod browser;
mod catalog;
mod cli;
mod cluster;
mod concurrency;
mod console;
mod contract;
mod crash;
mod edge;
mod exactness;
mod failover;
mod grants;
mod import;
mod lifecycle;
mod migrate;
mod nodes;
mod notify;
mod ops;
mod outage;
mod proofs;
mod restore;
mod schedules;
mod server;
mod stripe;
mod tls;

use std::process::{Command, Output};

/// Runs the `planledger` binary with `args` against the database at `url`.
pub fn planledger(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_planledger"))
        .args(args)
        .env("PLANLEDGER_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the planledger binary")
}
