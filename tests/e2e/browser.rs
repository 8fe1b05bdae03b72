//! A real headless Chromium, driven over WebDriver (Debian's `chromium` and `chromium-driver`,
//! through the `fantoccini` crate). `.ci/run` installs both; without them the browser tests say
//! they were skipped, unless `PLANLEDGER_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile_dir::Dir,
    shots: PathBuf,
}

/// A directory removed when dropped (the browser's profile).
mod tempfile_dir {
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Browser {
    /// A fresh browser (its own profile), or `None` when Chromium is not installed and not
    /// required.
    pub async fn start(test: &str) -> Option<Browser> {
        let installed = std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
        if !installed {
            assert!(
                std::env::var("PLANLEDGER_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "PLANLEDGER_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
            );
            eprintln!("skipped {test}: Chromium is not installed (apt-get install chromium chromium-driver)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!("planledger-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(connector.clone()).capabilities(caps.clone()).connect(&url).await {
                Ok(client) => {
                    let shots = screenshot_dir();
                    return Some(Browser { client, driver, _profile: tempfile_dir::Dir(profile), shots });
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a session: {last:?}");
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap_or_else(|e| panic!("text of {css}: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {:?}: {e}", self.client.current_url().await.ok()),
        }
    }

    /// Waits until the text of `css` satisfies `done`; answers it.
    pub async fn wait_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        for _ in 0..200 {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                text = element.text().await.unwrap_or_default();
                if done(&text) {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} still says {text:?}");
    }

    /// Waits until the browser is on `path` (a click that sends a form returns before the next
    /// page is there).
    pub async fn wait_path(&self, path: &str) {
        let mut now = String::new();
        for _ in 0..200 {
            now = self.path().await;
            if now == path {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the browser stayed on {now}, not {path}");
    }

    /// Reloads the page until the text of `css` satisfies `done` (for what the server writes
    /// in the background, such as the command journal); answers it.
    pub async fn reload_until(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        for _ in 0..100 {
            text = self.text(css).await;
            if done(&text) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.client.refresh().await.expect("reload");
        }
        panic!("{css} still says {text:?}");
    }

    /// Waits until the value of the form field `css` satisfies `done`; answers it.
    pub async fn wait_value(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let mut value = String::new();
        for _ in 0..200 {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                value = element.prop("value").await.ok().flatten().unwrap_or_default();
                if done(&value) {
                    return value;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} still holds {} characters", value.len());
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.expect("current url").path().to_owned()
    }

    /// Runs a script in the page (an async one when it takes a callback: `arguments[0]`).
    pub async fn run(&self, script: &str) -> serde_json::Value {
        self.client.execute_async(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    /// Saves a screenshot of the page as `{name}.png` (under `PLANLEDGER_CONSOLE_SCREENSHOTS`, the
    /// workspace's `docs/console` when it says so, else a temporary folder) and checks it is a PNG.
    pub async fn screenshot(&self, name: &str) {
        // The whole page: the window is made as tall as the page for the picture.
        let script = "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight";
        let height = self.client.execute(script, vec![]).await.expect("height");
        let height = height.as_u64().unwrap_or(1000).clamp(600, 4000) as u32;
        self.client.set_window_size(1280, height).await.expect("resize");
        let png = self.client.screenshot().await.expect("screenshot");
        self.client.set_window_size(1280, 1000).await.expect("resize");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of {name} is a real picture");
        std::fs::create_dir_all(&self.shots).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

fn screenshot_dir() -> PathBuf {
    match std::env::var("PLANLEDGER_CONSOLE_SCREENSHOTS") {
        Ok(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir)
            }
        }
        _ => std::env::temp_dir().join(format!("planledger-console-{}", std::process::id())),
    }
}
