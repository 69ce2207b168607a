//! A headless Chromium for the browser tests, driven over WebDriver with
//! fantoccini: find `chromium` and `chromedriver`, start the driver on a
//! free loopback port, open a session with a throwaway profile, and kill
//! the driver and every browser process it started when the [`Browser`]
//! drops, a panic included. Every step the tests take goes through
//! [`within`], so nothing waits longer than [`STEP`].
//!
//! The browser is kept on loopback: no host name resolves, and
//! background networking, component updates and the first-run checks are
//! off (see [`CHROMIUM_FLAGS`]).
//!
//! Included with `#[path]` by the tests that need it rather than from
//! `common/mod.rs`, so the other test binaries do not compile it.

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::common::TempDir;

/// The longest one WebDriver command, page load or wait may take.
pub const STEP: Duration = Duration::from_secs(20);

/// How long Chromium may take to start and give a WebDriver session.
const SESSION_START: Duration = Duration::from_secs(90);

/// How long chromedriver may take to say which port it listens on.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);

/// The flags headless Chromium needs here, and the ones that keep it on
/// loopback. `--no-sandbox` because the tests (and CI) run as root, where
/// Chromium refuses to start with its sandbox; `--disable-dev-shm-usage`
/// because a container's /dev/shm is often 64 MiB, too small for it.
///
/// Even with background networking off, a net log of a run shows Chromium
/// trying update.googleapis.com, accounts.google.com and its search
/// engine; the resolver rule stops all of them before any packet leaves.
/// It matches IP literals too, hence `EXCLUDE 127.0.0.1` (without it the
/// server's own URL fails with `ERR_NAME_NOT_RESOLVED`).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1000,600",
];

/// The first of `names` found in PATH (or the path in `env`, if set).
fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(path.into());
    }
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium's binary: `$CHROMIUM`, or `chromium` (Debian), `chromium-browser`
/// or `google-chrome` in PATH.
pub fn chromium() -> PathBuf {
    find_program(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    )
    .expect("chromium not found (apt-get install chromium, or set CHROMIUM)")
}

/// chromedriver: `$CHROMEDRIVER`, or `chromedriver` in PATH.
pub fn chromedriver() -> PathBuf {
    find_program("CHROMEDRIVER", &["chromedriver"])
        .expect("chromedriver not found (apt-get install chromium-driver, or set CHROMEDRIVER)")
}

/// A running chromedriver, in a process group of its own so that the
/// browser processes it starts can be killed with it.
pub struct Driver {
    child: Child,
    /// The port it printed on its startup line.
    pub port: u16,
}

impl Driver {
    /// Starts chromedriver on a free loopback port (`--port=0`: the driver
    /// picks it and prints it, so there is no race for a port) and waits
    /// for its startup line. Its output goes to stderr, for failures.
    pub fn start() -> Driver {
        let mut child = Command::new(chromedriver())
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // The guard exists before the wait, so a failed start still kills it.
        let mut driver = Driver { child, port: 0 };
        forward(stderr);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let port = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok());
                match port {
                    Some(port) => {
                        let _ = tx.send(port);
                    }
                    None => eprintln!("chromedriver: {line}"),
                }
            }
        });
        driver.port = rx
            .recv_timeout(DRIVER_STARTUP)
            .expect("chromedriver's startup line in time");
        driver
    }

    /// The WebDriver URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Copies a child's output to stderr, line by line, on a thread.
fn forward(out: impl std::io::Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            eprintln!("chromedriver: {line}");
        }
    });
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group, by its id: chromedriver and the Chromium
        // processes it started. chrome_crashpad_handler leaves the group,
        // but exits by itself once the browser has gone.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session in a fresh headless Chromium. Fields drop in order:
/// the client, then the driver (which kills the browser), then the
/// profile directory.
pub struct Browser {
    pub client: Client,
    driver: Driver,
    profile: TempDir,
    /// Held for the browser's life: one Chromium at a time per test
    /// binary, so two tests never start one each on a loaded 2-core CI
    /// machine and run out of their step limits.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Whose turn it is to run a browser.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Browser {
    /// Starts chromedriver and opens a session: headless Chromium with
    /// [`CHROMIUM_FLAGS`], a temporary `--user-data-dir`, and page loads
    /// and scripts limited to [`STEP`].
    pub async fn start() -> Browser {
        let turn = TURN.lock().await;
        let driver = Driver::start();
        let profile = TempDir::new("chromium-profile");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.0.display()));
        let step_ms = STEP.as_millis() as u64;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": args,
            },
            "timeouts": { "pageLoad": step_ms, "script": step_ms, "implicit": 0 },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        // Chromium's cold start is the slowest step by far, and on a
        // loaded 2-core machine it has taken over 20 s.
        let mut builder = ClientBuilder::new(connector);
        builder.capabilities(caps);
        let url = driver.url();
        let client = match tokio::time::timeout(SESSION_START, builder.connect(&url)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => panic!("a WebDriver session: {e:?}"),
            Err(_) => panic!("a WebDriver session: no answer within {SESSION_START:?}"),
        };
        Browser {
            client,
            driver,
            profile,
            _turn: turn,
        }
    }

    /// Ends the session (Chromium quits), within [`STEP`]; the drop kills
    /// whatever is left either way.
    pub async fn close(self) {
        let _ = tokio::time::timeout(STEP, self.client.clone().close()).await;
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        within(&format!("load {url}"), self.client.goto(url)).await;
    }

    /// Waits until the page's URL is no longer `before` (after a click)
    /// and the new page has loaded.
    pub async fn wait_for_url_change(&self, before: &str) {
        let deadline = Instant::now() + STEP;
        loop {
            let now = within("the current URL", self.client.current_url()).await;
            if now.as_str() != before && self.eval("return document.readyState").await == "complete"
            {
                return;
            }
            assert!(Instant::now() < deadline, "still at {now} after {STEP:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs `script` (a function body that returns a value) in the page.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        within(
            &format!("run {script:?}"),
            self.client.execute(script, vec![]),
        )
        .await
    }
}

/// Awaits a WebDriver step for at most [`STEP`], failing the test with
/// `what` on a timeout or an error.
pub async fn within<T, E: std::fmt::Debug>(
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(STEP, step).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what}: {e:?}"),
        Err(_) => panic!("{what}: no answer within {STEP:?}"),
    }
}
