//! `sockit serve chat --web` on the real binary: the page at `/`, the
//! WebSocket at `/ws` and its origin check, WebSocket members and TCP
//! members in one chat both ways, bad frames, the shared connection
//! limit, shutdown. The WebSocket side is tokio-tungstenite's client; the
//! TCP side reads raw lines, as nc would.

mod common;
#[path = "common/tcp_member.rs"]
mod tcp_member;

use std::sync::Arc;
use std::time::Duration;

use common::{Proc, serve};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tcp_member::Tcp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The longest any one step may take.
const STEP: Duration = Duration::from_secs(10);

const WELCOME: &str = "* welcome, you are ";

/// `serve chat` with one TCP listener and one web listener, plus `args`;
/// the TCP address and the web one (`HOST:PORT`).
fn chat(args: &[&str]) -> (Proc, String, String) {
    let mut full = vec![
        "chat",
        "-l",
        "tcp://127.0.0.1:0",
        "--web",
        "tcp://127.0.0.1:0",
    ];
    full.extend_from_slice(args);
    let server = serve(&full, 2);
    assert!(server.addrs[0].starts_with("tcp://"), "{:?}", server.addrs);
    let web = server.addrs[1]
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("the --web line comes after -l: {:?}", server.addrs))
        .to_owned();
    let tcp = server.host_port(0).to_owned();
    (server, tcp, web)
}

type Ws = WebSocketStream<TcpStream>;

/// A WebSocket member, welcomed; its name.
async fn ws_join(web: &str) -> (Ws, String) {
    let mut ws = ws_connect(web, None).await.expect("the upgrade");
    let welcome = ws_line(&mut ws).await;
    let name = welcome
        .strip_prefix(WELCOME)
        .and_then(|rest| rest.split_once(" in lobby"))
        .unwrap_or_else(|| panic!("not a welcome: {welcome:?}"))
        .0
        .to_owned();
    (ws, name)
}

/// Opens `ws://WEB/ws`, with `origin` if given.
async fn ws_connect(web: &str, origin: Option<&str>) -> Result<Ws, WsError> {
    let mut request = format!("ws://{web}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let tcp = TcpStream::connect(web).await.unwrap();
    let (ws, _) = timeout(STEP, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("the handshake in time")?;
    Ok(ws)
}

/// The next message that is not a ping or pong.
async fn ws_next(ws: &mut Ws) -> Option<Message> {
    loop {
        let message = timeout(STEP, ws.next()).await.expect("a frame in time");
        match message {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return Some(message),
            Some(Err(e)) => panic!("WebSocket error: {e}"),
            None => return None,
        }
    }
}

/// The next line: one text frame, without a line end.
async fn ws_line(ws: &mut Ws) -> String {
    match ws_next(ws).await {
        Some(Message::Text(text)) => {
            assert!(!text.ends_with('\n'), "a line end in {text:?}");
            text.to_string()
        }
        other => panic!("not a text frame: {other:?}"),
    }
}

async fn ws_send(ws: &mut Ws, line: &str) {
    timeout(STEP, ws.send(Message::text(line)))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn browser_and_telnet_members_share_rooms_nicks_and_history() {
    let (_server, tcp_addr, web) = chat(&[]);
    let (mut ws, ws_name) = ws_join(&web).await;
    assert!(ws_name.starts_with("127.0.0.1:"), "{ws_name}");
    let mut tcp = Tcp::join(&tcp_addr, STEP).await;
    assert_eq!(
        ws_line(&mut ws).await,
        format!("* {} joined lobby", tcp.name)
    );

    ws_send(&mut ws, "/nick webby").await;
    assert_eq!(ws_line(&mut ws).await, "* you are now webby");
    assert_eq!(tcp.line().await, format!("* {ws_name} is now webby"));
    // The nick is the chat's: taken for telnet members too.
    tcp.send("/nick WEBBY").await;
    assert_eq!(tcp.line().await, "* nick WEBBY is taken");

    ws_send(&mut ws, "hello from the web").await;
    assert_eq!(tcp.line().await, "[webby] hello from the web");
    tcp.send("hi back").await;
    assert_eq!(ws_line(&mut ws).await, format!("[{}] hi back", tcp.name));
    ws_send(&mut ws, "/me waves").await;
    assert_eq!(tcp.line().await, "* webby waves");
    tcp.send("/msg webby psst").await;
    assert_eq!(
        ws_line(&mut ws).await,
        format!("[{} -> webby] psst", tcp.name)
    );

    ws_send(&mut ws, "/who").await;
    let mut names = [tcp.name.as_str(), "webby"];
    names.sort_unstable();
    assert_eq!(
        ws_line(&mut ws).await,
        format!("* in lobby: {}", names.join(", "))
    );

    // A second browser member gets the lobby's history.
    let (mut late, late_name) = ws_join(&web).await;
    assert_eq!(ws_line(&mut late).await, "[webby] hello from the web");
    assert_eq!(ws_line(&mut late).await, format!("[{}] hi back", tcp.name));
    assert_eq!(ws_line(&mut late).await, "* webby waves");
    let joined = format!("* {late_name} joined lobby");
    assert_eq!(ws_line(&mut ws).await, joined);
    assert_eq!(tcp.line().await, joined);

    // Rooms: the TCP member follows the browser one into dev.
    ws_send(&mut ws, "/join dev").await;
    assert_eq!(ws_line(&mut ws).await, "* you are now in dev");
    tcp.send("/join dev").await;
    assert!(tcp.line().await.contains("left lobby"));
    assert_eq!(tcp.line().await, "* you are now in dev");
    assert_eq!(ws_line(&mut ws).await, format!("* {} joined dev", tcp.name));

    // /quit: the bye, then a normal close frame; the room is told.
    ws_send(&mut ws, "/quit").await;
    assert_eq!(ws_line(&mut ws).await, "* bye");
    match ws_next(&mut ws).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("no close frame: {other:?}"),
    }
    assert_eq!(tcp.line().await, "* webby left dev");
}

#[tokio::test]
async fn a_web_member_that_reads_late_gets_a_burst_whole_and_in_order() {
    // Its receive buffer is 4 KiB and it reads nothing at first, so the
    // server's writes to it block partway through the burst, and its
    // frames go out over many polls: each line must come once, in order.
    let (_server, tcp_addr, web) = chat(&["--flood-rate", "0"]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(web.parse().unwrap()).await.unwrap();
    let request = format!("ws://{web}/ws").into_client_request().unwrap();
    let (mut ws, _) = timeout(STEP, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("the handshake in time")
        .expect("the upgrade");
    assert!(ws_line(&mut ws).await.starts_with(WELCOME));
    let mut sender = Tcp::join(&tcp_addr, STEP).await;
    assert!(ws_line(&mut ws).await.ends_with(" joined lobby"));

    // 900 lines of 1,000 bytes in one write: far more than the kernel
    // holds for the member, fewer than its `--queue` (1000).
    let text = "x".repeat(994);
    let burst: Vec<String> = (0..900).map(|i| format!("{i:05} {text}")).collect();
    sender.send(&burst.join("\n")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for line in &burst {
        assert_eq!(ws_line(&mut ws).await, format!("[{}] {line}", sender.name));
    }
}

#[tokio::test]
async fn the_upgrade_is_refused_to_other_origins() {
    let (_server, _, web) = chat(&[]);
    for origin in [
        "http://evil.example",
        "https://127.0.0.1:1",
        &format!("https://{web}"),
        "null",
    ] {
        match ws_connect(&web, Some(origin)).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), 403, "{origin}"),
            other => panic!("{origin}: not refused: {:?}", other.map(|_| ())),
        }
    }
    // The page's own origin, and none at all (websocat, scripts).
    for origin in [Some(format!("http://{web}")), None] {
        let mut ws = ws_connect(&web, origin.as_deref()).await.unwrap();
        assert!(ws_line(&mut ws).await.starts_with(WELCOME));
    }
}

/// Sends `request` on a fresh connection and reads the response until the
/// server closes (each request says `Connection: close`).
async fn http(web: &str, request: &str) -> String {
    let mut tcp = TcpStream::connect(web).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    timeout(STEP, tcp.read_to_end(&mut got))
        .await
        .expect("the response in time")
        .unwrap();
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn the_page_is_at_the_root_and_nothing_else_is_served() {
    let (_server, _, web) = chat(&[]);
    let get =
        |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n");
    let page = http(&web, &get("/")).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html; charset=utf-8\r\n"));
    assert!(lower.contains("content-security-policy: default-src 'none'"));
    assert!(page.contains("<title>sockit chat</title>"));
    assert!(page.contains("new WebSocket("), "the page speaks WebSocket");

    assert!(http(&web, &get("/nope")).await.starts_with("HTTP/1.1 404 "));
    assert!(http(&web, &get("/ws/x")).await.starts_with("HTTP/1.1 404 "));
    // /ws without the upgrade headers.
    let plain = http(&web, &get("/ws")).await;
    assert!(plain.starts_with("HTTP/1.1 426 "), "{plain}");
    let post =
        format!("POST / HTTP/1.1\r\nHost: {web}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let post = http(&web, &post).await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get, head\r\n"));
    // A bad key or version is refused before any upgrade.
    let bad_version = format!(
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
         Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let res = http(&web, &bad_version).await;
    assert!(res.starts_with("HTTP/1.1 426 "), "{res}");
    assert!(
        res.to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
    // Garbage instead of HTTP: an error status or a close, never a crash.
    let garbage = http(&web, "\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let (mut ws, _) = ws_join(&web).await;
    ws_send(&mut ws, "/who").await;
    assert!(ws_line(&mut ws).await.starts_with("* in lobby: "));
}

#[tokio::test]
async fn bad_frames_get_notices_and_huge_ones_a_close() {
    // No history: the second member below would get the first one's lines.
    let (_server, tcp_addr, web) = chat(&["--max-line", "100", "--history", "0"]);
    let mut tcp = Tcp::join(&tcp_addr, STEP).await;
    let (mut ws, name) = ws_join(&web).await;
    assert_eq!(tcp.line().await, format!("* {name} joined lobby"));

    // Binary frames: one notice, then ignored.
    for _ in 0..3 {
        timeout(STEP, ws.send(Message::binary(vec![1u8, 2, 3])))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        ws_line(&mut ws).await,
        "* binary frames are not lines, ignored: send text frames"
    );
    // Over --max-line: the same notice a telnet member gets.
    ws_send(&mut ws, &"x".repeat(101)).await;
    assert_eq!(
        ws_line(&mut ws).await,
        "* line too long (max 100 bytes), dropped"
    );
    // A line end at the end of a frame is not part of the line; one
    // inside it is escaped, as are other control characters.
    ws_send(&mut ws, "two\nlines\x1b\r\n").await;
    assert_eq!(tcp.line().await, format!("[{name}] two\\x0alines\\x1b"));
    // The connection went on through all of that.
    ws_send(&mut ws, &"y".repeat(100)).await;
    assert_eq!(tcp.line().await, format!("[{name}] {}", "y".repeat(100)));

    // Text that is not UTF-8: closed with 1007, the room told.
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    let frame = Frame::from_payload(header, vec![0xff, 0xfe, b'a'].into());
    timeout(STEP, ws.send(Message::Frame(frame)))
        .await
        .unwrap()
        .unwrap();
    match ws_next(&mut ws).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Invalid),
        other => panic!("no close frame: {other:?}"),
    }
    assert_eq!(tcp.line().await, format!("* {name} left lobby"));

    // Past four times --max-line: closed with 1009 before it is buffered.
    let (mut ws, name) = ws_join(&web).await;
    assert_eq!(tcp.line().await, format!("* {name} joined lobby"));
    let _ = timeout(STEP, ws.send(Message::text("z".repeat(2000)))).await;
    match ws_next(&mut ws).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("no close frame: {other:?}"),
    }
    assert_eq!(tcp.line().await, format!("* {name} left lobby"));
}

#[tokio::test]
async fn web_members_count_against_max_conns() {
    let (_server, tcp_addr, web) = chat(&["--max-conns", "1"]);
    let _tcp = Tcp::join(&tcp_addr, STEP).await;
    // The one slot is taken: the WebSocket never gets its upgrade.
    assert!(ws_connect(&web, None).await.is_err());
}

#[tokio::test]
async fn shutdown_tells_web_members_then_closes_them() {
    let (mut server, _, web) = chat(&["--grace", "500ms"]);
    let (mut ws, _) = ws_join(&web).await;
    server.signal("TERM");
    assert_eq!(ws_line(&mut ws).await, "* server shutting down");
    match ws_next(&mut ws).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("no close frame: {other:?}"),
    }
    assert_eq!(server.wait_exit(STEP), Some(0));
}

#[test]
fn web_listeners_are_for_chat_and_streams_only() {
    for (args, want) in [
        (
            &["serve", "echo", "-l", "127.0.0.1:0", "--web", "127.0.0.1:0"][..],
            "--web is for the chat service, not echo",
        ),
        (
            &[
                "serve",
                "chat",
                "-l",
                "127.0.0.1:0",
                "--web",
                "udp://127.0.0.1:0",
            ][..],
            "does not serve datagrams",
        ),
    ] {
        let out = common::run_bounded(args, STEP);
        assert!(
            out.failure(2).contains(want),
            "{args:?}: {}",
            out.failure(2)
        );
    }
}

/// Over TLS (the development certificate, any certificate accepted) and
/// over a Unix socket, the WebSocket works the same, and the page's own
/// origin is the `https://` one.
#[tokio::test]
async fn web_listeners_take_tls_and_unix_addresses() {
    let dir = common::TempDir::new("chat-web");
    let unix = format!("unix://{}", dir.path("web.sock"));
    let tls = "tls://127.0.0.1:0";
    let server = serve(
        &[
            "chat",
            "-l",
            "tcp://127.0.0.1:0",
            "--web",
            tls,
            "--web",
            &unix,
        ],
        3,
    );
    let https = server.addrs[1]
        .strip_prefix("https://")
        .expect("an https:// line");
    assert_eq!(
        server.addrs[2],
        format!("http+unix://{}", dir.path("web.sock"))
    );

    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client()));
    let name = ServerName::try_from("localhost").unwrap();
    for origin in [format!("https://{https}"), format!("http://{https}")] {
        let tcp = TcpStream::connect(https).await.unwrap();
        let tls = connector.connect(name.clone(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut request = format!("wss://{https}/ws").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        let upgraded = timeout(STEP, tokio_tungstenite::client_async(request, tls))
            .await
            .unwrap();
        if origin.starts_with("http://") {
            assert!(
                upgraded.is_err(),
                "plain http:// is not the TLS page's origin"
            );
            continue;
        }
        let (mut ws, _) = upgraded.unwrap();
        let welcome = ws.next().await.unwrap().unwrap();
        assert!(
            welcome.to_text().unwrap().starts_with(WELCOME),
            "{welcome:?}"
        );
        ws.send(Message::text("/who")).await.unwrap();
        let who = ws.next().await.unwrap().unwrap();
        assert!(
            who.to_text().unwrap().starts_with("* in lobby: "),
            "{who:?}"
        );
    }

    let socket = tokio::net::UnixStream::connect(dir.path("web.sock"))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/ws", socket)
        .await
        .unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(
        welcome
            .to_text()
            .unwrap()
            .starts_with("* welcome, you are unix-"),
        "{welcome:?}"
    );
}

/// A TLS client that accepts any certificate (the development one); the
/// handshake's signatures are still checked. It offers ALPN `http/1.1`.
fn tls_client() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(common::AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}
