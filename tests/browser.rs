//! `sockit serve http` seen by a real browser: headless Chromium, driven
//! over WebDriver, reads a directory listing, clicks through it and gets
//! the files' exact bytes; and it renders the hello page. Ignored unless
//! chromium and chromedriver are installed (`.ci/run` installs them).
//!
//! With `SOCKIT_SCREENSHOT_DIR=DIR` the listing test also saves what the
//! browser shows as `DIR/http-listing.png` (docs/img/ holds the one the
//! docs use).

mod common;
// Not from common/mod.rs: only the browser tests compile the WebDriver glue.
#[path = "common/browser.rs"]
mod browser;

use browser::{Browser, within};
use common::{Proc, TempDir, serve};
use fantoccini::Locator;

/// The name that must show as text: unescaped, it would be a `<b>` element
/// and the text `x&y.txt`.
const MARKUP_NAME: &str = "<b>x&amp;y.txt";
/// A name whose link only works percent-encoded (`%`, space, `#`, `?`).
const ODD_NAME: &str = "100% done #1?.txt";
/// A name outside ASCII (the listing declares UTF-8).
const UTF8_NAME: &str = "résumé ✓.txt";
/// Text outside ASCII: it shows right only because text goes out as
/// `charset=utf-8` (without it, Chromium reads windows-1252: `cafÃ©`).
const UTF8_TEXT: &str = "café ✓ naïve — 日本語\n";
const NOTES: &str = "Notes on sockit\n\nline two, with  two spaces\n\tand a tab\n";

/// A small site: two directories and a few files, one with a name that is
/// markup and one that must be percent-encoded.
fn site() -> TempDir {
    let root = TempDir::new("browser-root");
    let write = |name: &str, text: &str| std::fs::write(root.0.join(name), text).unwrap();
    std::fs::create_dir(root.0.join("docs")).unwrap();
    std::fs::create_dir(root.0.join("src")).unwrap();
    write("docs/notes.txt", NOTES);
    write("src/main.rs", "fn main() {}\n");
    write("README.md", "# demo\n");
    write("hello.txt", "hello file\n");
    write(MARKUP_NAME, "not bold\n");
    write(ODD_NAME, "percent, space, hash, question mark\n");
    write(UTF8_NAME, UTF8_TEXT);
    write(".env", "SECRET=1\n");
    root
}

/// The server's base URL, `http://127.0.0.1:PORT/`.
fn base(p: &Proc) -> String {
    format!("http://{}/", p.host_port(0))
}

/// The texts of the listing's links, in page order.
async fn link_texts(b: &Browser) -> Vec<String> {
    let links = within(
        "the listing's links",
        b.client.find_all(Locator::Css("li > a")),
    )
    .await;
    let mut texts = Vec::new();
    for a in links {
        texts.push(within("a link's text", a.text()).await);
    }
    texts
}

/// The page's `<h1>` text.
async fn heading(b: &Browser) -> String {
    let h1 = within("the <h1>", b.client.find(Locator::Css("h1"))).await;
    within("the <h1> text", h1.text()).await
}

/// Clicks the link whose text is exactly `text`, waits for the next page,
/// and returns its URL path, percent-decoded.
async fn click(b: &Browser, text: &str) -> String {
    let before = within("the current URL", b.client.current_url()).await;
    let link = within(
        &format!("the link {text:?}"),
        b.client.find(Locator::LinkText(text)),
    )
    .await;
    within(&format!("click {text:?}"), link.click()).await;
    b.wait_for_url_change(before.as_str()).await;
    let path = b.eval("return decodeURIComponent(location.pathname)").await;
    path.as_str().expect("a path").to_owned()
}

/// The text a plain-text page shows, as the browser decoded it (Chromium
/// puts it in one `<pre>`), with the document's type.
async fn plain_text(b: &Browser) -> (String, String) {
    let got = b
        .eval(
            "const pre = document.querySelector('body > pre');
             return [document.contentType, pre ? pre.textContent : document.body.outerHTML]",
        )
        .await;
    let field = |i: usize| got[i].as_str().unwrap_or_default().to_owned();
    (field(0), field(1))
}

#[tokio::test]
#[ignore = "needs chromium"]
async fn a_browser_walks_a_listing_and_gets_the_files() {
    let root = site();
    let dir = root.0.to_str().unwrap();
    let server = serve(&["http", "-l", "127.0.0.1:0", "--root", dir], 1);
    let base = base(&server);
    let b = Browser::start().await;

    b.goto(&base).await;
    assert_eq!(within("the title", b.client.title()).await, "Index of /");
    assert_eq!(heading(&b).await, "Index of /");
    assert_eq!(
        link_texts(&b).await,
        [
            "docs/",
            "src/",
            ODD_NAME,
            MARKUP_NAME,
            "README.md",
            "hello.txt",
            UTF8_NAME
        ],
        "directories first, then files, by name; no dotfiles"
    );
    // The markup in the name is text: no element came out of it.
    let bold = within("<b> elements", b.client.find_all(Locator::Css("b"))).await;
    assert!(bold.is_empty(), "a file name became markup");

    if let Some(dir) = std::env::var_os("SOCKIT_SCREENSHOT_DIR") {
        let png = within("a screenshot", b.client.screenshot()).await;
        std::fs::write(std::path::Path::new(&dir).join("http-listing.png"), png).unwrap();
    }

    // Each file link, the odd names included, opens that file as text.
    for (name, kind, want) in [
        (MARKUP_NAME, "text/plain", "not bold\n"),
        (
            ODD_NAME,
            "text/plain",
            "percent, space, hash, question mark\n",
        ),
        (UTF8_NAME, "text/plain", UTF8_TEXT),
        ("README.md", "text/markdown", "# demo\n"),
    ] {
        assert_eq!(click(&b, name).await, format!("/{name}"));
        assert_eq!(plain_text(&b).await, (kind.into(), want.into()), "{name}");
        b.goto(&base).await;
    }

    // Down into a directory, up through its `../`, down again, to a file.
    assert_eq!(click(&b, "docs/").await, "/docs/");
    assert_eq!(heading(&b).await, "Index of /docs/");
    assert_eq!(link_texts(&b).await, ["../", "notes.txt"]);
    assert_eq!(click(&b, "../").await, "/");
    assert_eq!(click(&b, "docs/").await, "/docs/");
    assert_eq!(click(&b, "notes.txt").await, "/docs/notes.txt");
    assert_eq!(plain_text(&b).await, ("text/plain".into(), NOTES.into()));

    b.close().await;
}

#[tokio::test]
#[ignore = "needs chromium"]
async fn a_browser_renders_the_hello_page() {
    let server = serve(&["http", "-l", "127.0.0.1:0"], 1);
    let base = base(&server);
    let b = Browser::start().await;

    b.goto(&base).await;
    assert_eq!(within("the title", b.client.title()).await, "sockit");
    assert_eq!(heading(&b).await, "Hello, World!");
    let code = within("the <code>", b.client.find(Locator::Css("p > code"))).await;
    assert_eq!(within("its text", code.text()).await, "sockit serve http");

    b.goto(&format!("{base}nope")).await;
    assert!(heading(&b).await.starts_with("404"), "no 404 page");

    b.close().await;
}
