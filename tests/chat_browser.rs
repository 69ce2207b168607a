//! `sockit serve chat --web` seen by a real browser: headless Chromium
//! opens the chat page, takes a nick and talks with a TCP member (as nc
//! would be) both ways, and shows the room's history and member list.
//! Ignored unless chromium and chromedriver are installed (`.ci/run`
//! installs them).
//!
//! With `SOCKIT_SCREENSHOT_DIR=DIR` the test also saves the page as
//! `DIR/chat-web.png` (docs/img/ holds the one the docs use).

mod common;
#[path = "common/tcp_member.rs"]
mod tcp_member;
// Not from common/mod.rs: only the browser tests compile the WebDriver glue.
#[path = "common/browser.rs"]
mod browser;

use std::time::{Duration, Instant};

use browser::{Browser, STEP, within};
use common::serve;
use fantoccini::Locator;
use tcp_member::Tcp;

/// Waits until the script `condition` returns true in the page.
async fn wait_until(b: &Browser, condition: &str, what: &str) {
    let start = Instant::now();
    loop {
        if b.eval(&format!("return !!({condition})")).await == serde_json::json!(true) {
            return;
        }
        let page = b.eval("return document.body.innerText").await;
        assert!(
            start.elapsed() < STEP,
            "{what} never happened; page: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page's scrollback has a line that reads `text`.
fn log_has(text: &str) -> String {
    let text = serde_json::to_string(text).unwrap();
    format!("[...document.querySelectorAll('#log > div')].some(d => d.textContent === {text})")
}

async fn type_into(b: &Browser, field: &str, text: &str) {
    let input = within(field, b.client.find(Locator::Css(field))).await;
    within("typing", input.send_keys(text)).await;
    let button = format!("form:has({field}) button");
    let button = within("its button", b.client.find(Locator::Css(&button))).await;
    within("the click", button.click()).await;
}

#[tokio::test]
#[ignore = "needs chromium"]
async fn a_browser_and_an_nc_member_chat_both_ways() {
    let mut server = serve(
        &[
            "chat",
            "-l",
            "tcp://127.0.0.1:0",
            "--web",
            "tcp://127.0.0.1:0",
            "--grace",
            "200ms",
        ],
        2,
    );
    let web = server.addrs[1].clone();
    assert!(web.starts_with("http://"), "{web}");
    let mut nc = Tcp::join(server.host_port(0), STEP).await;
    nc.send("/nick grace").await;
    assert_eq!(nc.line().await, "* you are now grace");
    nc.send("anyone here? the page should show this from history")
        .await;

    let b = Browser::start().await;
    b.goto(&format!("{web}/")).await;
    assert_eq!(within("the title", b.client.title()).await, "sockit chat");
    wait_until(
        &b,
        "document.getElementById('status').textContent === 'connected'",
        "connect",
    )
    .await;
    wait_until(
        &b,
        &log_has("[grace] anyone here? the page should show this from history"),
        "history",
    )
    .await;
    let joined = nc.line().await;
    assert!(joined.ends_with(" joined lobby"), "{joined}");
    let address = joined
        .strip_prefix("* ")
        .and_then(|rest| rest.strip_suffix(" joined lobby"))
        .unwrap()
        .to_owned();

    // The nick field sends /nick.
    type_into(&b, "#nick", "ada").await;
    wait_until(&b, &log_has("* you are now ada"), "the nick").await;
    assert_eq!(nc.line().await, format!("* {address} is now ada"));

    // The browser's line reaches nc, and nc's the browser.
    type_into(&b, "#line", "hello from chromium").await;
    assert_eq!(nc.line().await, "[ada] hello from chromium");
    wait_until(
        &b,
        &log_has("[ada] hello from chromium"),
        "our own line shown",
    )
    .await;
    nc.send("hello, browser").await;
    wait_until(&b, &log_has("[grace] hello, browser"), "nc's line").await;
    nc.send("/me waves").await;
    wait_until(&b, &log_has("* grace waves"), "nc's action").await;

    // The member list, from /who (its answer is not shown in the log).
    let who = "[...document.querySelectorAll('#who li')].map(li => li.textContent).join(',')";
    wait_until(&b, &format!("{who} === 'ada,grace'"), "the member list").await;
    assert!(
        b.eval(&format!("return {}", log_has("* in lobby: ada, grace")))
            .await
            == serde_json::json!(false),
        "the automatic /who answer is in the log"
    );

    if let Some(dir) = std::env::var_os("SOCKIT_SCREENSHOT_DIR") {
        let png = within("a screenshot", b.client.screenshot()).await;
        std::fs::write(std::path::Path::new(&dir).join("chat-web.png"), png).unwrap();
    }

    // The room field sends /join; nc sees the browser go.
    type_into(&b, "#room", "dev").await;
    wait_until(&b, &log_has("* you are now in dev"), "the join").await;
    assert_eq!(nc.line().await, "* ada left lobby");
    wait_until(
        &b,
        "document.getElementById('room-name').textContent === 'dev'",
        "the room name",
    )
    .await;

    // The server goes away and comes back on the same address: the page
    // says so, reconnects, and takes its nick and room again.
    server.signal("TERM");
    wait_until(
        &b,
        &log_has("* server shutting down"),
        "the shutdown notice",
    )
    .await;
    assert_eq!(server.wait_exit(STEP), Some(0));
    wait_until(
        &b,
        "document.getElementById('status').textContent.startsWith('reconnecting')",
        "the reconnect countdown",
    )
    .await;
    let web_addr = server.host_port(1).to_owned();
    let _again = serve(
        &[
            "chat",
            "-l",
            "tcp://127.0.0.1:0",
            "--web",
            &format!("tcp://{web_addr}"),
        ],
        2,
    );
    let count = |text: &str| {
        let text = serde_json::to_string(text).unwrap();
        format!(
            "[...document.querySelectorAll('#log > div')].filter(d => d.textContent === {text}).length"
        )
    };
    wait_until(
        &b,
        &format!("{} === 2", count("* you are now in dev")),
        "the rejoin",
    )
    .await;
    assert_eq!(
        b.eval(&format!("return {}", count("* you are now ada")))
            .await,
        serde_json::json!(2)
    );

    b.close().await;
}
