//! The WebSocket-to-chat line path: whatever bytes a client sends after
//! the upgrade (frames, masked or not, fragments, pings, closes, garbage)
//! go through tungstenite and the chat's line checks into a real hub,
//! with another member watching. No panic; the session ends (the client
//! hangs up at the end of the input); it leaves the hub; and every line
//! the watcher gets is well formed: a `[NAME] ...` line or a `* ` notice,
//! without control characters.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sockit::chat::{ChatConfig, Hub, ws};
use sockit::metrics::Metrics;
use sockit::net::stream::PeerAddr;
use sockit::service::{ConnContext, ListenerContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(session(data));
});

async fn session(data: &[u8]) {
    let hub = Arc::new(Hub::new(ChatConfig {
        flood_rate: 0,
        ..ChatConfig::default()
    }));
    let (_watcher, mut inbox) = hub.join("watcher".into(), None).await;
    let (metrics, _) = Metrics::new().stream_listener("chat", "fuzz", false);
    let ctx = ConnContext {
        peer: PeerAddr::Unix(1),
        listener: Arc::new(ListenerContext {
            max_line: 256,
            idle_timeout: None,
            park_after: None,
            flush_delay: Duration::from_millis(10),
            stop_accepting: CancellationToken::new(),
            force_close: CancellationToken::new(),
            metrics,
        }),
    };
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let serving = ws::serve(&hub, server, &ctx);
    let client = async move {
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        // Read what the server writes, so it never blocks on a full pipe.
        let mut sink = Vec::new();
        let _ = client.read_to_end(&mut sink).await;
    };
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(serving, client)
    })
    .await;
    assert!(ended.is_ok(), "the session did not end");
    assert_eq!(hub.members(), 1, "the member did not leave");
    while let Some(lines) = inbox.try_recv() {
        for line in lines.iter() {
            assert!(!line.chars().any(char::is_control), "{line:?}");
            assert!(line.starts_with("* ") || line.starts_with('['), "{line:?}");
        }
    }
}
