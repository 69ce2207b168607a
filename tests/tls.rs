//! TLS on the real binary: `tls://` listeners for every stream service,
//! the development certificate, handshake limits, and the clients'
//! verification (`--ca`, `--servername`, `--insecure`), against a test CA
//! made here with rcgen.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Output, Proc, TempDir, bin, run_bounded, run_bounded_with, run_with_stdin, serve};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const LIMIT: Duration = Duration::from_secs(20);

/// A test PKI: a root CA, an intermediate, and a server certificate for
/// `localhost`, `127.0.0.1`, `::1` and `sockit.test`, written as PEM files
/// (the certificate file holds the chain, leaf first); plus an unrelated
/// CA that trusts nothing of ours.
struct Pki {
    dir: TempDir,
    roots: RootCertStore,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("tls");
        let root = ca("sockit test root", None);
        let intermediate = ca("sockit test intermediate", Some(&root));
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "sockit.test".into(),
        ])
        .unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "sockit test server");
        let leaf = leaf.signed_by(&leaf_key, &intermediate).unwrap();
        std::fs::write(
            dir.path("cert.pem"),
            format!("{}{}", leaf.pem(), intermediate.pem()),
        )
        .unwrap();
        std::fs::write(dir.path("key.pem"), leaf_key.serialize_pem()).unwrap();
        std::fs::write(dir.path("ca.pem"), root.pem()).unwrap();
        std::fs::write(dir.path("other-ca.pem"), ca("unrelated CA", None).pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(root.der().clone()).unwrap();
        Pki { dir, roots }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path(name)
    }

    /// `serve SERVICE` with this PKI's certificate and the given listeners.
    fn serve(&self, service: &str, listeners: &[&str], extra: &[&str]) -> Proc {
        let (cert, key) = (self.path("cert.pem"), self.path("key.pem"));
        let mut args = vec![service, "--tls-cert", &cert, "--tls-key", &key];
        for l in listeners {
            args.extend(["-l", l]);
        }
        args.extend_from_slice(extra);
        serve(&args, listeners.len())
    }
}

fn ca(
    name: &str,
    parent: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    match parent {
        None => CertifiedIssuer::self_signed(params, key).unwrap(),
        Some(parent) => CertifiedIssuer::signed_by(params, key, parent).unwrap(),
    }
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A blocking TLS client that trusts `roots` (or anything, for the
/// development certificate's tests) and checks `name`.
fn tls_connect(addr: &str, roots: Option<&RootCertStore>, name: &str) -> TlsStream {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = match roots {
        Some(roots) => builder
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(common::AnyCert(provider)))
            .with_no_client_auth(),
    };
    let conn = ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    // Finish the handshake now, so its errors show here.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// Reads until `want` bytes came or the peer closed. Over TLS a close
/// without close_notify is an error here (rustls reports it as
/// `UnexpectedEof`): sockit's servers always say goodbye.
fn read_n(s: &mut impl Read, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read after {:?}: {e}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

/// Reads until the peer closes (close_notify over TLS).
fn read_all(s: &mut impl Read) -> Vec<u8> {
    read_n(s, usize::MAX)
}

/// Sends `request` over TLS and over TCP to the same service and returns
/// both answers: `reply_len` bytes, or everything until the server closes.
fn both_ways(p: &Proc, request: &[u8], reply_len: usize, pki: &Pki) -> (Vec<u8>, Vec<u8>) {
    let mut tls = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    let mut tcp = TcpStream::connect(p.host_port(1)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tls.write_all(request).unwrap();
    tls.flush().unwrap();
    tcp.write_all(request).unwrap();
    (read_n(&mut tls, reply_len), read_n(&mut tcp, reply_len))
}

#[test]
fn every_stream_service_answers_over_tls_as_over_tcp() {
    let pki = Pki::new();
    let listeners = ["tls://127.0.0.1:0", "tcp://127.0.0.1:0"];
    for (service, request, want) in [
        (
            "hello",
            &b"World\nMoon\r\n"[..],
            &b"Hello, World\nHello, Moon\r\n"[..],
        ),
        ("ping", b"ping 1\nping 2\n", b"pong 1\npong 2\n"),
        ("echo", b"\x00\xffbinary\r\n", b"\x00\xffbinary\r\n"),
    ] {
        let p = pki.serve(service, &listeners, &[]);
        assert!(p.addrs[0].starts_with("tls://127.0.0.1:"), "{:?}", p.addrs);
        let (tls, tcp) = both_ways(&p, request, want.len(), &pki);
        assert_eq!(tls, want, "{service} over TLS");
        assert_eq!(tls, tcp, "{service}: TLS and TCP differ");
    }

    // A bare message over TLS is answered after the flush delay too (with
    // `\n`, as over TCP).
    let p = pki.serve("hello", &listeners, &[]);
    let mut tls = tls_connect(p.host_port(0), Some(&pki.roots), "localhost");
    tls.write_all(b"World").unwrap();
    tls.flush().unwrap();
    assert_eq!(read_n(&mut tls, 13), b"Hello, World\n");

    // Timestamp: same shape both ways.
    let p = pki.serve("timestamp", &listeners, &[]);
    let (tls, tcp) = both_ways(&p, b"M\n", 29, &pki);
    let tls = String::from_utf8(tls).unwrap();
    assert!(tls.starts_with('[') && tls.ends_with("] M\n"), "{tls:?}");
    assert_eq!(tls.len(), String::from_utf8(tcp).unwrap().len());

    // The speak-first services: over TLS they wait for the handshake, then
    // speak and close with close_notify (read_n fails otherwise).
    let p = pki.serve("daytime", &listeners, &[]);
    let (tls, tcp) = both_ways(&p, b"", usize::MAX, &pki);
    assert!(tls.ends_with(b"\r\n") && tls.len() == 26, "{tls:?}");
    assert_eq!(tls.len(), tcp.len());
    let p = pki.serve("time", &listeners, &[]);
    let (tls, tcp) = both_ways(&p, b"", usize::MAX, &pki);
    assert_eq!((tls.len(), tcp.len()), (4, 4));
    let since_1900 = u32::from_be_bytes(tls[..4].try_into().unwrap());
    assert!(since_1900 > 3_900_000_000, "{since_1900}");
    let p = pki.serve("chargen", &listeners, &[]);
    let (tls, tcp) = both_ways(&p, b"", 74 * 3, &pki);
    assert_eq!(tls, tcp);
    assert_eq!(&tls[72..74], b"\r\n");

    // Discard: nothing back, and our close_notify is answered with its own.
    let p = pki.serve("discard", &listeners, &[]);
    let mut tls = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    tls.write_all(&[b'x'; 100_000]).unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    assert_eq!(read_all(&mut tls), b"");
}

#[test]
fn close_notify_gets_the_owed_replies_then_close_notify() {
    let pki = Pki::new();
    let p = pki.serve("ping", &["tls://127.0.0.1:0"], &[]);
    let mut tls = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    tls.write_all(b"ping a\nping b").unwrap();
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    // read_all panics on a close without close_notify (UnexpectedEof is
    // only tolerated by rustls once close_notify came: see below).
    let got = read_all(&mut tls);
    assert_eq!(got, b"pong a\npong b\n");
    assert!(
        tls.conn.process_new_packets().unwrap().peer_has_closed(),
        "the server closed without close_notify"
    );
}

#[test]
fn a_certificate_chain_is_presented_whole() {
    let pki = Pki::new();
    let p = pki.serve("ping", &["tls://127.0.0.1:0"], &[]);
    let tls = tls_connect(p.host_port(0), Some(&pki.roots), "sockit.test");
    // Leaf and intermediate: the client knows only the root.
    assert_eq!(tls.conn.peer_certificates().unwrap().len(), 2);
}

#[test]
fn the_development_certificate_is_the_one_logged() {
    let dir = TempDir::new("tls-dev");
    let log = dir.0.join("stderr");
    let mut cmd = Command::new(bin());
    cmd.args([
        "serve",
        "echo",
        "-l",
        "tls://127.0.0.1:0",
        "-l",
        "tcp://127.0.0.1:0",
    ]);
    let p = Proc::start_logged(&mut cmd, 2, &log);
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("self-signed"))
        .unwrap_or_else(|| panic!("no self-signed warning in {logged:?}"));
    assert!(line.contains("WARN"), "{line}");
    let tls = tls_connect(p.host_port(0), None, "127.0.0.1");
    let presented = &tls.conn.peer_certificates().unwrap()[0];
    let fingerprint = sockit::net::tls::fingerprint(presented);
    assert!(line.contains(&fingerprint), "{line} lacks {fingerprint}");
    // And it names the addresses it is for, so a client can verify it.
    let mut roots = RootCertStore::empty();
    roots.add(presented.clone()).unwrap();
    let mut tls = tls_connect(p.host_port(0), Some(&roots), "localhost");
    tls.write_all(b"x").unwrap();
    tls.flush().unwrap();
    assert_eq!(read_n(&mut tls, 1), b"x");
    let _tls = tls_connect(p.host_port(0), Some(&roots), "127.0.0.1");
}

#[test]
fn plaintext_on_the_tls_port_is_closed_and_the_next_client_served() {
    let pki = Pki::new();
    let p = pki.serve("ping", &["tls://127.0.0.1:0"], &[]);
    let mut plain = TcpStream::connect(p.host_port(0)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(b"ping 1\n").unwrap();
    // An alert at most, never a pong, then the close.
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.windows(4).any(|w| w == b"pong"), "{got:?}");
    // Nor do two hundred silent connections, parked until their
    // ClientHello, stand in the next client's way.
    let _silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(p.host_port(0)).unwrap())
        .collect();
    let started = Instant::now();
    let mut tls = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    tls.write_all(b"ping 2\n").unwrap();
    tls.flush().unwrap();
    assert_eq!(read_n(&mut tls, 7), b"pong 2\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let pki = Pki::new();
    let p = pki.serve(
        "ping",
        &["tls://127.0.0.1:0"],
        &["--handshake-timeout", "300ms"],
    );
    let started = Instant::now();
    let mut silent = TcpStream::connect(p.host_port(0)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = silent.read(&mut buf).unwrap_or(0);
    let waited = started.elapsed();
    assert_eq!(n, 0, "expected a close");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    // One that starts the handshake and stalls is closed too.
    let started = Instant::now();
    let mut stalled = TcpStream::connect(p.host_port(0)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00, 0xff]).unwrap();
    let mut got = Vec::new();
    let _ = stalled.read_to_end(&mut got);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn too_many_connections_is_said_over_tls() {
    let pki = Pki::new();
    let p = pki.serve("ping", &["tls://127.0.0.1:0"], &["--max-conns", "1"]);
    let mut first = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    first.write_all(b"ping 1\n").unwrap();
    first.flush().unwrap();
    assert_eq!(read_n(&mut first, 7), b"pong 1\n");
    let mut second = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    assert_eq!(read_all(&mut second), b"error: too many connections\n");
}

#[test]
fn bad_certificate_files_are_usage_errors_naming_the_file() {
    let pki = Pki::new();
    let missing = pki.path("missing.pem");
    let (cert, key, ca) = (
        pki.path("cert.pem"),
        pki.path("key.pem"),
        pki.path("ca.pem"),
    );
    let other = Pki::new();
    let other_key = other.path("key.pem");
    for (args, want) in [
        (
            vec!["--tls-cert", &missing, "--tls-key", &key],
            missing.as_str(),
        ),
        (
            vec!["--tls-cert", &key, "--tls-key", &key],
            "no PEM certificate",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &ca],
            "no usable PEM private key",
        ),
        (
            vec!["--tls-cert", &cert, "--tls-key", &other_key],
            "does not go with",
        ),
        (vec!["--tls-cert", &cert], "--tls-key"),
    ] {
        let mut full = vec!["serve", "ping", "-l", "tls://127.0.0.1:0"];
        full.extend(args.iter().copied());
        let out = run_bounded(&full, LIMIT);
        assert_eq!(out.code, Some(2), "{full:?}: {out:?}");
        assert!(out.stderr.contains(want), "{full:?}: {}", out.stderr);
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
        assert_eq!(out.stdout, "", "nothing may bind first");
    }
}

#[test]
fn tls_settings_come_from_the_config_file_too() {
    let pki = Pki::new();
    let config = pki.path("sockit.toml");
    std::fs::write(
        &config,
        format!(
            "[[service]]\nname = \"ping\"\nlisten = [\"tls://127.0.0.1:0\"]\n\
             tls_cert = {:?}\ntls_key = {:?}\nhandshake_timeout = \"5s\"\n",
            pki.path("cert.pem"),
            pki.path("key.pem")
        ),
    )
    .unwrap();
    let p = serve(&["--config", &config], 1);
    let mut tls = tls_connect(p.host_port(0), Some(&pki.roots), "127.0.0.1");
    tls.write_all(b"ping c\n").unwrap();
    tls.flush().unwrap();
    assert_eq!(read_n(&mut tls, 7), b"pong c\n");
}

/// Runs a sockit client with `stdin` as its input.
fn client(args: &[&str], stdin: &[u8]) -> Output {
    run_with_stdin(args, stdin.to_vec(), LIMIT)
}

#[test]
fn clients_verify_against_ca_and_refuse_an_unrelated_one() {
    let pki = Pki::new();
    let p = pki.serve("hello", &["tls://127.0.0.1:0"], &[]);
    let addr = p.addrs[0].clone();
    let ca = pki.path("ca.pem");
    let other = pki.path("other-ca.pem");

    let out = client(&["send", "--ca", &ca, &addr, "World"], b"");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "Hello, World\n"),
        "{out:?}"
    );

    // connect: half-close at stdin EOF is close_notify then a write
    // shutdown; the reply still comes and connect exits.
    let out = client(&["connect", "--ca", &ca, &addr], b"Moon\nSun\n");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "Hello, Moon\nHello, Sun\n"),
        "{out:?}"
    );

    for args in [
        vec!["send", "--ca", &other, &addr, "World"],
        vec!["connect", "--ca", &other, &addr],
        vec!["ping", "-c", "1", "--ca", &other, &addr],
    ] {
        let out = client(&args, b"x\n");
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        let line = out.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains(&addr), "{line}");
        assert!(line.contains("certificate verify failed"), "{line}");
        assert!(line.contains("unknown issuer"), "{line}");
        assert_eq!(out.stdout, "");
    }

    let out = client(&["send", "--insecure", &addr, "World"], b"");
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "Hello, World\n"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("--insecure"),
        "no warning: {}",
        out.stderr
    );
}

/// `send --servername elsewhere.test` against `addr`, trusting `ca`:
/// asserts the one-line name failure, and returns the run.
fn assert_wrong_name(ca: &str, addr: &str) -> Output {
    let args = [
        "send",
        "--ca",
        ca,
        "--servername",
        "elsewhere.test",
        addr,
        "x",
    ];
    let wrong = client(&args, b"");
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    let line = wrong.failure(1);
    assert!(line.contains("not valid for this name"), "{line}");
    wrong
}

#[test]
fn without_ca_the_system_store_is_trusted() {
    let pki = Pki::new();
    let p = pki.serve("hello", &["tls://127.0.0.1:0"], &[]);
    // rustls-native-certs reads SSL_CERT_FILE instead of the system's
    // files when it is set, as OpenSSL does: a store the test controls.
    let with_store = |file: &str| {
        let mut cmd = Command::new(bin());
        cmd.args(["send", &p.addrs[0], "World"])
            .env("SSL_CERT_FILE", file)
            .env("SSL_CERT_DIR", "/nonexistent");
        run_bounded_with(&mut cmd, LIMIT)
    };
    let trusted = with_store(&pki.path("ca.pem"));
    assert_eq!(
        (trusted.code, trusted.stdout.as_str()),
        (Some(0), "Hello, World\n"),
        "{trusted:?}"
    );
    let unrelated = with_store(&pki.path("other-ca.pem"));
    let line = unrelated.failure(1);
    assert!(
        line.contains(&p.addrs[0]) && line.contains("unknown issuer"),
        "{line}"
    );
    let empty = with_store("/nonexistent/store.pem");
    let line = empty.failure(1);
    assert!(
        line.contains("no trusted certificate authorities"),
        "{line}"
    );
}

#[test]
fn servername_is_sent_and_checked() {
    let pki = Pki::new();
    let p = pki.serve("hello", &["tls://127.0.0.1:0"], &[]);
    let ca = pki.path("ca.pem");
    let port = p.host_port(0).rsplit_once(':').unwrap().1.to_owned();
    // The certificate names sockit.test, not this made-up name.
    let wrong = assert_wrong_name(&ca, &p.addrs[0]);
    assert!(wrong.stderr.contains("elsewhere.test"), "{}", wrong.stderr);
    let right = client(
        &[
            "send",
            "--ca",
            &ca,
            "--servername",
            "sockit.test",
            &p.addrs[0],
            "x",
        ],
        b"",
    );
    assert_eq!(
        (right.code, right.stdout.as_str()),
        (Some(0), "Hello, x\n"),
        "{right:?}"
    );
    // A name host: verified as that name (localhost is in the certificate).
    let by_name = client(
        &["send", "--ca", &ca, &format!("tls://localhost:{port}"), "y"],
        b"",
    );
    assert_eq!(
        (by_name.code, by_name.stdout.as_str()),
        (Some(0), "Hello, y\n"),
        "{by_name:?}"
    );
}

#[test]
fn a_bad_ca_file_is_one_line() {
    let pki = Pki::new();
    let p = pki.serve("hello", &["tls://127.0.0.1:0"], &[]);
    let missing = pki.path("nope.pem");
    let out = client(&["send", "--ca", &missing, &p.addrs[0], "x"], b"");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains(&missing), "{}", out.stderr);
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{}", out.stderr);
}

#[test]
fn ping_over_tls() {
    let pki = Pki::new();
    let p = pki.serve("ping", &["tls://127.0.0.1:0"], &[]);
    let ca = pki.path("ca.pem");
    let out = client(
        &["ping", "-c", "3", "-i", "50ms", "--ca", &ca, &p.addrs[0]],
        b"",
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("3 received"), "{}", out.stdout);
}

/// `sockit bench ARGS --json` against `addr`, parsed.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec![
        "bench", "--json", "-d", "1s", "--warmup", "200ms", "-c", "2",
    ];
    full.extend_from_slice(args);
    let out = run_bounded(&full, LIMIT);
    assert_eq!(out.code, Some(0), "{full:?}: {out:?}");
    serde_json::from_str(out.stdout.trim()).unwrap()
}

#[test]
fn bench_over_tls_with_and_without_resumption() {
    let pki = Pki::new();
    let p = pki.serve("ping", &["tls://127.0.0.1:0"], &[]);
    let ca = pki.path("ca.pem");
    let addr = p.addrs[0].as_str();

    let steady = bench_json(&["--ca", &ca, addr]);
    assert_eq!(steady["transport"], "tls");
    assert!(steady["requests"].as_u64().unwrap() > 10, "{steady}");
    assert_eq!(steady["errors"], 0, "{steady}");
    assert!(steady.get("handshakes").is_none(), "{steady}");

    let resumed = bench_json(&["--reconnect", "--ca", &ca, addr]);
    assert_eq!(resumed["mode"], "reconnect");
    let handshakes = resumed["handshakes"].as_u64().unwrap();
    assert!(handshakes > 5, "{resumed}");
    assert_eq!(
        resumed["requests"], handshakes,
        "one request per connection"
    );
    assert!(
        resumed["handshakes_per_sec"].as_f64().unwrap() > 0.0,
        "{resumed}"
    );
    // The first connection of each is full; the rest resume.
    let n_resumed = resumed["resumed"].as_u64().unwrap();
    assert!(n_resumed + 2 >= handshakes && n_resumed > 0, "{resumed}");
    assert_eq!(resumed["errors"], 0, "{resumed}");

    let full = bench_json(&["--reconnect", "--no-resume", "--ca", &ca, addr]);
    assert!(full["handshakes"].as_u64().unwrap() > 5, "{full}");
    assert_eq!(full["resumed"], 0, "{full}");

    // Verification applies to bench too.
    let other = pki.path("other-ca.pem");
    let out = run_bounded(&["bench", "-d", "1s", "--ca", &other, addr], LIMIT);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("certificate verify failed"),
        "{}",
        out.stderr
    );
}

#[test]
fn no_resume_and_reconnect_are_checked() {
    for (args, want) in [
        (
            vec!["bench", "--no-resume", "tls://127.0.0.1:1"],
            "--reconnect",
        ),
        (
            vec!["bench", "--reconnect", "--no-resume", "tcp://127.0.0.1:1"],
            "tls://",
        ),
        (
            vec!["bench", "--reconnect", "udp://127.0.0.1:1"],
            "connection per request",
        ),
    ] {
        let out = run_bounded(&args, LIMIT);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(want), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn a_self_signed_ca_certificate_named_in_ca_is_trusted_for_its_names() {
    // What `openssl req -x509` makes: self-signed, and marked as a CA.
    let dir = TempDir::new("tls-selfsigned");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path("key.pem"), key.serialize_pem()).unwrap();
    let (cert_path, key_path) = (dir.path("cert.pem"), dir.path("key.pem"));
    let p = serve(
        &[
            "hello",
            "--tls-cert",
            &cert_path,
            "--tls-key",
            &key_path,
            "-l",
            "tls://127.0.0.1:0",
        ],
        1,
    );
    let ok = client(&["send", "--ca", &cert_path, &p.addrs[0], "x"], b"");
    assert_eq!(
        (ok.code, ok.stdout.as_str()),
        (Some(0), "Hello, x\n"),
        "{ok:?}"
    );
    // Its names are still checked.
    assert_wrong_name(&cert_path, &p.addrs[0]);
    // And only that certificate is: another CA file does not vouch for it.
    let pki = Pki::new();
    let other = client(
        &["send", "--ca", &pki.path("ca.pem"), &p.addrs[0], "x"],
        b"",
    );
    assert_eq!(other.code, Some(1), "{other:?}");
    assert!(
        other.stderr.contains("certificate verify failed"),
        "{}",
        other.stderr
    );
}

#[test]
fn shutdown_lets_tls_connections_finish_then_says_goodbye() {
    let pki = Pki::new();
    let mut p = pki.serve("ping", &["tls://127.0.0.1:0"], &["--grace", "1s"]);
    let addr = p.host_port(0).to_owned();
    let mut finishing = tls_connect(&addr, Some(&pki.roots), "127.0.0.1");
    let mut lingering = tls_connect(&addr, Some(&pki.roots), "127.0.0.1");
    finishing.write_all(b"ping 1\n").unwrap();
    finishing.flush().unwrap();
    assert_eq!(read_n(&mut finishing, 7), b"pong 1\n");
    p.signal("TERM");
    // Stopped accepting (the listener is gone), still serving.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    finishing.write_all(b"ping 2\n").unwrap();
    finishing.flush().unwrap();
    assert_eq!(read_n(&mut finishing, 7), b"pong 2\n");
    finishing.conn.send_close_notify();
    finishing.flush().unwrap();
    assert_eq!(read_all(&mut finishing), b"");
    // The one that stays past the grace period is closed with close_notify
    // (read_n fails on a bare TCP close), and the server exits 0.
    assert_eq!(read_all(&mut lingering), b"");
    p.assert_exits_0(Duration::from_secs(10));
}
