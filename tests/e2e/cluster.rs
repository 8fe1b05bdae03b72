//! Throwaway PostgreSQL clusters of the tests' own (data directory, port, settings), so that a
//! test may stop, kill, replicate and promote them without disturbing any other test: the
//! outage and failover tests stage their faults here.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A cluster, stopped and removed when dropped.
pub struct PrivateCluster {
    dir: PathBuf,
    pub port: u16,
    /// `-c name=value` settings it is started with.
    settings: Vec<String>,
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().expect("runuser")
}

fn succeeded(args: &[&str]) -> bool {
    as_postgres(args).status.success()
}

/// Whether the binaries are here; panics if PostgreSQL is required and they are not.
fn binaries(test: &str) -> bool {
    if std::path::Path::new(BIN).exists() {
        return true;
    }
    if planledger_testkit::postgres_required() {
        panic!("PostgreSQL is required but {BIN} is missing");
    }
    println!("skipped {test}: no PostgreSQL binaries at {BIN}");
    false
}

/// A fresh folder owned by `postgres`.
fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("planledger-cluster-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(Command::new("chown").args(["postgres", dir.to_str().unwrap()]).status().unwrap().success());
    dir
}

/// A free port below the kernel's ephemeral range (32768 and up), where no server of another
/// test listening on port 0, and no outgoing connection, can take it while the cluster is
/// stopped mid-test; the first free one from a place that differs per process and per call.
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let offset = NEXT.fetch_add(37, std::sync::atomic::Ordering::Relaxed);
    let first = 20_000 + ((std::process::id() as u16 % 10_000) + offset) % 12_000;
    (first..32_000)
        .chain(20_000..first)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port below the ephemeral range")
}

impl PrivateCluster {
    /// A new primary with `settings` (`name=value`), started; `None` (skipped) without the binaries.
    pub fn create(test: &str, settings: &[&str]) -> Option<PrivateCluster> {
        if !binaries(test) {
            return None;
        }
        let dir = folder();
        let data = dir.join("data");
        assert!(
            succeeded(&[&format!("{BIN}/initdb"), "-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust"]),
            "initdb"
        );
        let cluster =
            PrivateCluster { dir, port: free_port(), settings: settings.iter().map(|s| (*s).to_owned()).collect() };
        cluster.start();
        Some(cluster)
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`, so it follows the primary), started,
    /// and streaming when this returns.
    pub fn standby_of(primary: &PrivateCluster, name: &str) -> PrivateCluster {
        let dir = folder();
        let data = dir.join("data");
        let output = as_postgres(&[
            &format!("{BIN}/pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            data.to_str().unwrap(),
            "-R",
            "--checkpoint=fast",
            "-X",
            "stream",
        ]);
        assert!(output.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&output.stderr));
        // The standby's name is what the primary's `synchronous_standby_names` would list.
        let settings = vec![format!("cluster_name={name}")];
        let standby = PrivateCluster { dir, port: free_port(), settings };
        standby.start();
        let deadline = Instant::now() + Duration::from_secs(30);
        while primary.sql(&format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{name}' AND state = 'streaming'"
        )) != "1"
        {
            assert!(Instant::now() < deadline, "the standby {name} did not start streaming");
            std::thread::sleep(Duration::from_millis(100));
        }
        standby
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        let data = self.dir.join("data");
        let mut all = vec![format!("{BIN}/pg_ctl"), "-D".into(), data.display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        succeeded(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn start(&self) {
        self.start_on(self.port);
    }

    /// Starts the cluster on `port`, which may be another cluster's: the address then reaches
    /// this server, as when a failover moves an address.
    pub fn start_on(&self, port: u16) {
        let mut options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", self.dir.display());
        for setting in &self.settings {
            options.push_str(&format!(" -c {setting}"));
        }
        let log = self.dir.join("log");
        assert!(self.pg_ctl(&["-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]), "pg_ctl start");
    }

    /// Stops at once, as a crash would: no shutdown checkpoint, clients cut off.
    pub fn stop(&self) {
        assert!(self.pg_ctl(&["-m", "immediate", "-w", "stop"]), "pg_ctl stop");
    }

    /// Ends recovery: this standby becomes a primary.
    pub fn promote(&self) {
        assert!(self.pg_ctl(&["-w", "promote"]), "pg_ctl promote");
    }

    /// Runs `sql` on the cluster's `postgres` database; its output, unaligned and trimmed.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_on(self.port, sql)
    }

    fn sql_on(&self, port: u16, sql: &str) -> String {
        let output =
            as_postgres(&[&format!("{BIN}/psql"), "-h", "127.0.0.1", "-p", &port.to_string(), "-XAtq", "-c", sql]);
        assert!(output.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
