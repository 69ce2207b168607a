//! The one address syntax sockit uses everywhere (SPEC 1): `tcp://HOST:PORT`,
//! `udp://HOST:PORT`, `tls://HOST:PORT`, `unix:///abs/path`,
//! `unixgram:///abs/path`, and the shorthands `HOST:PORT`, `:PORT`, `PORT`.
//!
//! Parsing is pure and total: any string yields an [`Endpoint`] or an
//! [`AddrError`] whose one-line message names the bad part. Name resolution
//! happens later, in [`HostPort::resolve`], because only the socket code
//! knows whether it wants one address (a listener) or all of them (a client).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The address forms, as printed in every address error.
pub const ACCEPTED_FORMS: &str = "tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT, \
unix:///abs/path, unixgram:///abs/path, HOST:PORT, :PORT or PORT";

/// The longest Unix socket path the kernel accepts (`sun_path` less its NUL).
pub const MAX_UNIX_PATH: usize = 107;

/// How much of a bad input an error message quotes, so that 10 KB of garbage
/// still makes a one-line error.
const QUOTE_LIMIT: usize = 64;

/// A parsed address: what to bind or connect to, and over which transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP stream.
    Tcp(HostPort),
    /// UDP datagrams.
    Udp(HostPort),
    /// TCP wrapped in TLS.
    Tls(HostPort),
    /// A Unix-domain stream socket at an absolute path.
    Unix(PathBuf),
    /// A Unix-domain datagram socket at an absolute path.
    UnixGram(PathBuf),
}

/// The scheme a bare `HOST:PORT` stands for: TCP everywhere but `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultScheme {
    /// `HOST:PORT` means `tcp://HOST:PORT`.
    Tcp,
    /// `HOST:PORT` means `udp://HOST:PORT`.
    Udp,
}

/// A host and a port, before name resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Where; `None` when the address left the host out (`:PORT`, `PORT`).
    pub host: Option<Host>,
    /// The port; 0 asks the OS for a free one.
    pub port: u16,
}

/// The host part of an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A name to resolve.
    Name(String),
}

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {quoted}: {reason}; accepted forms: {ACCEPTED_FORMS}")]
pub struct AddrError {
    quoted: String,
    /// What is wrong, naming the bad part.
    pub reason: String,
}

impl AddrError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        AddrError {
            quoted: quote(input),
            reason: reason.into(),
        }
    }
}

/// Quotes user input for an error message: escaped so it stays on one line,
/// and cut short so a huge input makes a short message.
pub(crate) fn quote(input: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in input.chars().enumerate() {
        if i == QUOTE_LIMIT {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

impl Endpoint {
    /// Parses an address; a bare `HOST:PORT` means `default`.
    ///
    /// # Errors
    /// An [`AddrError`] naming the bad part of `input`.
    ///
    /// ```
    /// use sockit::net::addr::{DefaultScheme, Endpoint};
    /// let e = Endpoint::parse("udp://[::1]:8888", DefaultScheme::Tcp).unwrap();
    /// assert_eq!(e.to_string(), "udp://[::1]:8888");
    /// let e = Endpoint::parse(":0", DefaultScheme::Tcp).unwrap();
    /// assert_eq!(e.to_string(), "tcp://127.0.0.1:0");
    /// assert!(Endpoint::parse("tcp://:99999", DefaultScheme::Tcp).is_err());
    /// ```
    pub fn parse(input: &str, default: DefaultScheme) -> Result<Endpoint, AddrError> {
        Endpoint::parse_inner(input, default, None)
    }

    /// Like [`Endpoint::parse`], but a host without a port (`HOST`,
    /// `[IPv6]`, `tls://HOST`) means `port`: for clients of one service,
    /// such as `sockit chat` and the chat's 5000. A bare number is still a
    /// port.
    ///
    /// # Errors
    /// As [`Endpoint::parse`].
    ///
    /// ```
    /// use sockit::net::addr::{DefaultScheme, Endpoint};
    /// let e = Endpoint::parse_or_port("chat.example", DefaultScheme::Tcp, 5000).unwrap();
    /// assert_eq!(e.to_string(), "tcp://chat.example:5000");
    /// let e = Endpoint::parse_or_port("5001", DefaultScheme::Tcp, 5000).unwrap();
    /// assert_eq!(e.to_string(), "tcp://127.0.0.1:5001");
    /// ```
    pub fn parse_or_port(
        input: &str,
        default: DefaultScheme,
        port: u16,
    ) -> Result<Endpoint, AddrError> {
        Endpoint::parse_inner(input, default, Some(port))
    }

    fn parse_inner(
        input: &str,
        default: DefaultScheme,
        default_port: Option<u16>,
    ) -> Result<Endpoint, AddrError> {
        let err = |reason: String| AddrError::new(input, reason);
        if input.is_empty() {
            return Err(err("empty address".into()));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(format!(
                "contains the character {:?}, which no address may contain",
                c
            )));
        }
        let host_port = |text: &str| parse_host_port(text, default_port).map_err(err);
        let Some((scheme, rest)) = input.split_once("://") else {
            let hp = host_port(input)?;
            return Ok(match default {
                DefaultScheme::Tcp => Endpoint::Tcp(hp),
                DefaultScheme::Udp => Endpoint::Udp(hp),
            });
        };
        match scheme {
            "tcp" => Ok(Endpoint::Tcp(host_port(rest)?)),
            "udp" => Ok(Endpoint::Udp(host_port(rest)?)),
            "tls" => Ok(Endpoint::Tls(host_port(rest)?)),
            "unix" => Ok(Endpoint::Unix(parse_unix_path(rest).map_err(err)?)),
            "unixgram" => Ok(Endpoint::UnixGram(parse_unix_path(rest).map_err(err)?)),
            other => Err(err(format!("unknown scheme {}", quote(other)))),
        }
    }

    /// The scheme as written in addresses.
    pub fn scheme(&self) -> &'static str {
        match self {
            Endpoint::Tcp(_) => "tcp",
            Endpoint::Udp(_) => "udp",
            Endpoint::Tls(_) => "tls",
            Endpoint::Unix(_) => "unix",
            Endpoint::UnixGram(_) => "unixgram",
        }
    }

    /// Whether this is a datagram transport (UDP or unixgram).
    pub fn is_datagram(&self) -> bool {
        matches!(self, Endpoint::Udp(_) | Endpoint::UnixGram(_))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(hp) | Endpoint::Udp(hp) | Endpoint::Tls(hp) => {
                write!(f, "{}://{hp}", self.scheme())
            }
            Endpoint::Unix(p) | Endpoint::UnixGram(p) => {
                write!(f, "{}://{}", self.scheme(), p.display())
            }
        }
    }
}

impl HostPort {
    /// The host a missing one stands for: the loopback address, so nothing
    /// is exposed beyond this machine unless asked.
    pub const DEFAULT_HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// The host as a certificate names it: the name, the IP address, or
    /// [`DEFAULT_HOST`](Self::DEFAULT_HOST) when none was given.
    pub fn host_text(&self) -> String {
        match &self.host {
            Some(Host::Name(name)) => name.clone(),
            Some(Host::Ip(ip)) => ip.to_string(),
            None => Self::DEFAULT_HOST.to_string(),
        }
    }

    /// Resolves the host: every address for a name, in the resolver's order.
    ///
    /// # Errors
    /// The resolver's error, or `NotFound` when a name has no address.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match &self.host {
            None => Ok(vec![SocketAddr::new(Self::DEFAULT_HOST, self.port)]),
            Some(Host::Ip(ip)) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Some(Host::Name(name)) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), self.port))
                    .await?
                    .collect();
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{name} has no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            None => write!(f, "{}:{}", Self::DEFAULT_HOST, self.port),
            Some(Host::Ip(IpAddr::V6(ip))) => write!(f, "[{ip}]:{}", self.port),
            Some(Host::Ip(ip)) => write!(f, "{ip}:{}", self.port),
            Some(Host::Name(name)) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Parses `HOST:PORT`, `[IPv6]:PORT`, `:PORT` or `PORT`; with a
/// `default_port`, `HOST` and `[IPv6]` too.
fn parse_host_port(text: &str, default_port: Option<u16>) -> Result<HostPort, String> {
    if text.is_empty() {
        return Err("missing host and port".into());
    }
    if let Some(after_bracket) = text.strip_prefix('[') {
        let Some((inside, after)) = after_bracket.split_once(']') else {
            return Err("IPv6 address is missing its closing ']'".into());
        };
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("{} is not an IPv6 address", quote(inside)))?;
        let Some(port) = after.strip_prefix(':') else {
            if let (true, Some(port)) = (after.is_empty(), default_port) {
                return Ok(HostPort {
                    host: Some(Host::Ip(IpAddr::V6(ip))),
                    port,
                });
            }
            return Err(if after.is_empty() {
                "missing port after the IPv6 address (write [IPv6]:PORT)".into()
            } else {
                format!("unexpected {} after the IPv6 address", quote(after))
            });
        };
        return Ok(HostPort {
            host: Some(Host::Ip(IpAddr::V6(ip))),
            port: parse_port(port)?,
        });
    }
    let (host, port) = match text.split_once(':') {
        None if text.bytes().all(|b| b.is_ascii_digit()) => ("", text),
        None => match default_port {
            Some(port) => {
                return Ok(HostPort {
                    host: parse_host(text)?,
                    port,
                });
            }
            None => return Err(format!("missing port after host {}", quote(text))),
        },
        Some((host, port)) => {
            if port.contains(':') {
                return Err("IPv6 addresses need brackets, as in [::1]:PORT".into());
            }
            (host, port)
        }
    };
    Ok(HostPort {
        host: parse_host(host)?,
        port: parse_port(port)?,
    })
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {} is not a number", quote(text)));
    }
    match text.parse::<u32>() {
        Ok(n) if n <= u32::from(u16::MAX) => Ok(n as u16),
        _ => Err(format!("port {text} is out of range (0-65535)")),
    }
}

fn parse_host(text: &str) -> Result<Option<Host>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Some(Host::Ip(IpAddr::V4(ip))));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    // All-numeric names are mistyped IPv4 addresses (`256.0.0.1`, `1.2.3`),
    // which the resolver would otherwise take, or reinterpret, silently.
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("host {} is not a valid IPv4 address", quote(text)));
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "host {} is not an IP address or host name",
            quote(text)
        ));
    }
    Ok(Some(Host::Name(text.to_owned())))
}

fn parse_unix_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("missing socket path".into());
    }
    if !text.starts_with('/') {
        return Err(format!(
            "socket path {} is not absolute (write unix:///abs/path)",
            quote(text)
        ));
    }
    if text.len() > MAX_UNIX_PATH {
        return Err(format!(
            "socket path is {} bytes long, more than the {MAX_UNIX_PATH} the kernel accepts",
            text.len()
        ));
    }
    if text.ends_with('/') {
        return Err(format!("socket path {} names a directory", quote(text)));
    }
    Ok(Path::new(text).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        Endpoint::parse(s, DefaultScheme::Tcp)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .to_string()
    }

    fn reason(s: &str) -> String {
        Endpoint::parse(s, DefaultScheme::Tcp).expect_err(s).reason
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(ok("tcp://127.0.0.1:80"), "tcp://127.0.0.1:80");
        assert_eq!(ok("udp://[::1]:0"), "udp://[::1]:0");
        assert_eq!(ok("tls://example.com:443"), "tls://example.com:443");
        assert_eq!(ok("unix:///tmp/s.sock"), "unix:///tmp/s.sock");
        assert_eq!(ok("unixgram:///tmp/g.sock"), "unixgram:///tmp/g.sock");
        assert_eq!(ok("localhost:8000"), "tcp://localhost:8000");
        assert_eq!(ok(":8000"), "tcp://127.0.0.1:8000");
        assert_eq!(ok("8000"), "tcp://127.0.0.1:8000");
        assert_eq!(ok("tcp://:0"), "tcp://127.0.0.1:0");
        assert_eq!(ok("[::]:65535"), "tcp://[::]:65535");
        assert_eq!(
            Endpoint::parse("9999", DefaultScheme::Udp)
                .unwrap()
                .to_string(),
            "udp://127.0.0.1:9999"
        );
    }

    #[test]
    fn a_missing_port_can_have_a_default() {
        let or_5000 = |s: &str| {
            Endpoint::parse_or_port(s, DefaultScheme::Tcp, 5000)
                .map(|e| e.to_string())
                .map_err(|e| e.reason)
        };
        assert_eq!(or_5000("localhost"), Ok("tcp://localhost:5000".into()));
        assert_eq!(or_5000("[::1]"), Ok("tcp://[::1]:5000".into()));
        assert_eq!(or_5000("tls://10.0.0.5"), Ok("tls://10.0.0.5:5000".into()));
        assert_eq!(
            or_5000("chat.example:6000"),
            Ok("tcp://chat.example:6000".into())
        );
        assert_eq!(or_5000("6000"), Ok("tcp://127.0.0.1:6000".into()));
        assert_eq!(
            or_5000("unix:///tmp/c.sock"),
            Ok("unix:///tmp/c.sock".into())
        );
        assert_eq!(or_5000("host:"), Err("missing port".into()));
        assert!(
            or_5000("256.1.1.1")
                .unwrap_err()
                .contains("not a valid IPv4")
        );
        assert!(or_5000("[::1]x").unwrap_err().contains("unexpected"));
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert_eq!(reason(""), "empty address");
        assert_eq!(reason("tcp://"), "missing host and port");
        assert_eq!(
            reason("tcp://:99999"),
            "port 99999 is out of range (0-65535)"
        );
        assert_eq!(
            reason("udp://[::1"),
            "IPv6 address is missing its closing ']'"
        );
        assert!(reason("unix://relative").contains("not absolute"));
        assert!(reason("ftp://x:1").contains("unknown scheme \"ftp\""));
        assert!(reason("::1:80").contains("brackets"));
        assert!(reason("host").contains("missing port"));
        assert!(reason("tcp://h:port").contains("not a number"));
        assert!(reason("tcp://[nope]:1").contains("not an IPv6 address"));
        assert!(reason("tcp://[::1]").contains("missing port"));
        assert!(reason("tcp://a b:1").contains("character"));
        assert!(reason("tcp://bad!host:1").contains("not an IP address or host name"));
        assert!(reason("tcp://256.0.0.1:80").contains("not a valid IPv4 address"));
        assert!(reason("1.2.3:80").contains("not a valid IPv4 address"));
        assert!(reason(&format!("unix:///{}", "a".repeat(200))).contains("107"));
    }

    #[test]
    fn garbage_makes_a_short_single_line_error() {
        let garbage: String = (0..10_000)
            .map(|i| char::from(b'!' + (i % 90) as u8))
            .collect();
        let msg = Endpoint::parse(&garbage, DefaultScheme::Tcp)
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\n'));
        assert!(msg.len() < 400, "{} bytes", msg.len());
        let msg = Endpoint::parse("tcp://\n\0x", DefaultScheme::Tcp)
            .unwrap_err()
            .to_string();
        assert!(!msg.contains('\n') && !msg.contains('\0'));
        assert!(msg.contains(ACCEPTED_FORMS));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "tcp://[::1]:1",
            "udp://10.0.0.1:53",
            "unix:///x",
            "tls://a.b:1",
        ] {
            let e = Endpoint::parse(s, DefaultScheme::Tcp).unwrap();
            assert_eq!(
                Endpoint::parse(&e.to_string(), DefaultScheme::Tcp).unwrap(),
                e
            );
        }
    }
}
