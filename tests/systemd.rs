//! Running under systemd: sockets passed by socket activation
//! (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, from the test itself), and
//! the notify protocol (`READY=1`, `STOPPING=1`) on a test socket.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, TempDir, bin, connect, roundtrip, wait_for_children};

const LIMIT: Duration = Duration::from_secs(10);

/// Runs `sockit ARGS` the way systemd would after activation: the two
/// sockets as descriptors 3 and 4, named, with `LISTEN_PID` the server's
/// own pid. A shell does the descriptor shuffling (it gets them as stdin
/// and stderr) and then becomes sockit, keeping its pid.
fn activated(
    tcp: TcpListener,
    udp: UdpSocket,
    names: &str,
    args: &[&str],
    listeners: usize,
) -> Proc {
    let script = r#"exec 3<&0 4<&2 0</dev/null 2>/dev/null
LISTEN_PID=$$ LISTEN_FDS=2 exec "$0" "$@""#;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(bin())
        .args(args)
        .env("LISTEN_FDNAMES", names)
        .stdin(Stdio::from(OwnedFd::from(tcp)))
        .stderr(Stdio::from(OwnedFd::from(udp)));
    Proc::start_own_stdio(&mut cmd, listeners)
}

#[test]
fn passed_sockets_are_served_in_place_of_the_defaults() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let p = activated(tcp, udp, "web:dns", &["serve", "echo"], 2);
    assert_eq!(
        p.addrs,
        [format!("tcp://{tcp_addr}"), format!("udp://{udp_addr}")]
    );
    let mut s = connect(&p.addrs[0]);
    roundtrip(
        &mut *s,
        b"over the passed socket\n",
        b"over the passed socket\n",
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.send_to(b"datagram", udp_addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"datagram"[..], udp_addr));
}

#[test]
fn passed_sockets_are_shared_by_workers_and_outlive_one() {
    // With `--workers`, the parent takes systemd's sockets and every worker
    // serves on them; a worker killed is restarted on the same sockets,
    // and the others go on meanwhile.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let mut p = activated(tcp, udp, "web:dns", &["serve", "echo", "--workers", "2"], 2);
    assert_eq!(
        p.addrs,
        [format!("tcp://{tcp_addr}"), format!("udp://{udp_addr}")]
    );
    let workers = wait_for_children(p.pid(), 2, LIMIT);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    let served = |round: usize| {
        for i in 0..10 {
            let line = format!("round {round} connection {i}\n");
            roundtrip(&mut *connect(&p.addrs[0]), line.as_bytes(), line.as_bytes());
            client.send_to(line.as_bytes(), udp_addr).unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from), (line.as_bytes(), udp_addr));
        }
    };
    served(1);
    common::signal(workers[0], "KILL");
    served(2);
    let now = wait_for_children(p.pid(), 2, LIMIT);
    assert!(!now.contains(&workers[0]), "{workers:?} -> {now:?}");
    served(3);
    p.signal("TERM");
    assert_eq!(p.wait_exit(LIMIT), Some(0));
}

#[test]
fn passed_sockets_and_listen_flags_together() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let p = activated(
        tcp,
        udp,
        "",
        &["serve", "echo", "-l", "tcp://127.0.0.1:0"],
        3,
    );
    assert_eq!(p.addrs[0], format!("tcp://{tcp_addr}"));
    let mut s = connect(&p.addrs[2]);
    roundtrip(&mut *s, b"and -l too\n", b"and -l too\n");
}

#[test]
fn a_socket_named_tls_is_served_over_tls() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap();
    let p = activated(tcp, udp, "tls:udp", &["serve", "echo"], 2);
    assert_eq!(p.addrs[0], format!("tls://{tcp_addr}"));
    // sockit's own client, over TLS (trusting the development certificate).
    let out = common::run_with_stdin(&["connect", "--insecure", &p.addrs[0]], "secret\n", LIMIT);
    assert_eq!(out.stdout, "secret\n", "{}", out.stderr);
}

/// Receives the next notify message within the limit.
fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_once_listening_and_stopping_on_sigterm() {
    let dir = TempDir::new("systemd-notify");
    let path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "echo",
        "-l",
        "127.0.0.1:0",
        "-l",
        "udp://127.0.0.1:0",
    ])
    .env("NOTIFY_SOCKET", &path);
    let mut p = Proc::start_with(&mut cmd, 2);
    let ready = next_message(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=serving on 2 socket(s)"), "{ready:?}");
    // Ready means ready: the socket answers now.
    let mut s = connect(&p.addrs[0]);
    roundtrip(&mut *s, b"up\n", b"up\n");
    drop(s);

    p.signal("TERM");
    let stopping = next_message(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert_eq!(p.wait_exit(LIMIT), Some(0));
}
