//! Real `planledger serve` processes on port 0, each on a database of its own (or a shared
//! one), and a small JSON client for them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use planledger_testkit::{PgTestDatabase, SqliteTestDatabase};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A test database that lives as long as the servers on it.
pub enum Db {
    Sqlite(SqliteTestDatabase),
    Postgres(Box<PgTestDatabase>),
}

impl Db {
    /// A fresh database, or `None` if PostgreSQL is not reachable and not required.
    pub async fn create(backend: Backend, test: &str) -> Option<Db> {
        match backend {
            Backend::Sqlite => Some(Db::Sqlite(SqliteTestDatabase::create())),
            Backend::Postgres => PgTestDatabase::create(test).await.map(|db| Db::Postgres(Box::new(db))),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Db::Sqlite(db) => &db.url,
            Db::Postgres(db) => &db.url,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub tokens: Option<String>,
    pub test_clock: bool,
    pub catalog: Option<String>,
    /// Capture the server's log (stderr, at debug level) into this file.
    pub log_file: Option<std::path::PathBuf>,
    /// More environment for the server process (`PLANLEDGER_...` settings).
    pub env: Vec<(&'static str, String)>,
}

pub const ADMIN: &str = "admin-secret-1";
pub const SERVICE: &str = "service-secret-1";
pub const READER: &str = "reader-secret-1";

impl Options {
    pub fn test_clock() -> Self {
        Self { test_clock: true, ..Self::default() }
    }

    pub fn with_tokens(mut self) -> Self {
        self.tokens = Some(format!("ops:admin:{ADMIN},billing:service:{SERVICE},dash:reader:{READER}"));
        self
    }
}

pub struct Server {
    child: Child,
    pub base: String,
    pub client: reqwest::Client,
    pub token: Option<String>,
}

impl Server {
    /// Starts `planledger serve` on `url` and waits until it listens.
    pub fn start(url: &str, options: &Options) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_planledger"));
        command
            .arg("serve")
            .env("PLANLEDGER_DATABASE_URL", url)
            .env("PLANLEDGER_BIND", "127.0.0.1:0")
            .env("PLANLEDGER_TEST_CLOCK", if options.test_clock { "1" } else { "0" })
            .env("PLANLEDGER_SWEEP_INTERVAL_MS", "200")
            .env("PLANLEDGER_DB_POOL_SIZE", "8")
            .env("PLANLEDGER_DB_READERS", "4")
            .env("RUST_LOG", "warn")
            // The tests' receivers listen on loopback, which deliveries may not reach by default.
            .env("PLANLEDGER_WEBHOOK_ALLOW", "127.0.0.1")
            .env_remove("PLANLEDGER_TOKENS")
            .env_remove("PLANLEDGER_CATALOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(tokens) = &options.tokens {
            command.env("PLANLEDGER_TOKENS", tokens);
        }
        if let Some(catalog) = &options.catalog {
            command.env("PLANLEDGER_CATALOG", catalog);
        }
        for (name, value) in &options.env {
            command.env(name, value);
        }
        if let Some(path) = &options.log_file {
            command.env("RUST_LOG", "debug").stderr(std::fs::File::create(path).expect("log file"));
        }
        let mut child = command.spawn().expect("spawn planledger serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("planledger listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let token = options.tokens.as_ref().map(|_| ADMIN.to_owned());
        Server { child, base, client: reqwest::Client::new(), token }
    }

    /// A typed client of this server, with the admin token if tokens are on.
    pub fn client(&self) -> planledger_client::Client {
        let client = planledger_client::Client::with_http(self.client.clone(), &self.base);
        match &self.token {
            Some(token) => client.with_token(token),
            None => client,
        }
    }

    /// The same server, calling with another bearer token (or none).
    pub fn as_token(&self, token: Option<&str>) -> Caller<'_> {
        Caller { server: self, token: token.map(str::to_owned) }
    }

    pub fn caller(&self) -> Caller<'_> {
        Caller { server: self, token: self.token.clone() }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.caller().get(path).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.caller().post(path, body).await
    }

    /// POSTs with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.caller().send(self.client.post(url).header("Idempotency-Key", key).json(&body)).await
    }

    /// The server process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// The names of the server process's threads (`/proc/<pid>/task/*/comm`).
    pub fn thread_names(&self) -> Vec<String> {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).expect("the server's threads");
        tasks
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    pub async fn register(&self, name: &str) -> String {
        register_with(&self.client(), name).await
    }

    /// The store's raw stream.
    pub async fn event_types(&self, store: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/v1/stores/{store}/events?limit=1000")).await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
    }

    /// Moves the test clock on; the server sweeps the deadlines that passed before answering.
    pub async fn advance_days(&self, days: i64) -> chrono::DateTime<chrono::Utc> {
        self.client().advance_test_clock(days * 86_400).await.expect("advance the test clock").value.now
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        assert!(sent.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for exit")
    }

    /// Waits up to `within` for the process to exit; `None` if it still runs.
    pub fn wait_within(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Some(status) = self.child.try_wait().expect("poll the process") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Caller<'a> {
    server: &'a Server,
    token: Option<String>,
}

impl Caller<'_> {
    fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = self.auth(request).send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        self.send(self.server.client.get(url)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        self.send(self.server.client.post(url).json(&body)).await
    }

    pub async fn raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.base);
        self.send(self.server.client.request(method, url).header("content-type", "application/json").body(body)).await
    }
}

/// Registers a new store named `name` through `client`; returns its id.
pub async fn register_with(client: &planledger_client::Client, name: &str) -> String {
    let body = planledger_client::wire::RegisterStore {
        store_id: Some(uuid::Uuid::new_v4()),
        name: Some(name.to_owned()),
        time_zone: None,
    };
    let reply = client.register_store(&body, &Default::default()).await.expect("register");
    assert_eq!(reply.status, 201);
    reply.value.store_id.to_string()
}

/// Runs an async test body on both backends: `fn name(backend)` becomes `sqlite::name` and
/// `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::server::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::server::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Starts one server on a fresh database of `backend`, or returns from the test if skipped.
#[macro_export]
macro_rules! server_or_skip {
    ($backend:expr, $test:expr, $options:expr) => {{
        let Some(db) = $crate::server::Db::create($backend, $test).await else { return };
        let server = $crate::server::Server::start(db.url(), &$options);
        (server, db)
    }};
}
