//! `sockit peer`: the P2P UDP mesh (SPEC 6). Every node is client and
//! server on one UDP socket; docs/peer-protocol.md has the wire format and
//! the guarantees.
//!
//! - [`config`]: checked settings from the command line;
//! - [`node`]: the loop owning the socket, driving foca (SWIM membership
//!   and failure detection) and everything below;
//! - [`message`]: the versioned datagram format and foca's codec;
//! - [`delivery`]: exactly-once, in-order messages (acks, retransmission,
//!   reassembly), all bounded;
//! - [`crypto`]: `--secret` (HKDF-SHA256, XChaCha20-Poly1305, replay window);
//! - [`transport`]: the socket, plus the simulated faults the tests use;
//! - [`command`] and [`output`]: stdin commands in, text or JSON lines out.

pub mod command;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod message;
pub mod node;
pub mod output;
pub mod transport;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::cli::PeerArgs;
use crate::net::addr::{Endpoint, HostPort};
use crate::net::listener::{Bound, DatagramSocket};
use config::PeerConfig;
use message::{MAX_NAME, PeerId, valid_name};

/// Runs a peer node until Ctrl-C, SIGTERM or `/quit`.
///
/// # Errors
/// A usage error (exit 2) for bad options; a bind or resolution failure,
/// or a closed stdout.
pub fn run(args: &PeerArgs) -> anyhow::Result<()> {
    let config = PeerConfig::from_args(args)?;
    // One thread: the node is one loop over one socket, and foca's codec
    // state is shared through an `Rc`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_node(config))
}

async fn run_node(config: PeerConfig) -> anyhow::Result<()> {
    let endpoint = Endpoint::Udp(config.listen.clone());
    let Bound::Datagram(DatagramSocket::Udp(socket)) =
        crate::net::listener::bind(&endpoint).await?
    else {
        unreachable!("a udp:// endpoint binds a UDP socket");
    };
    let local = socket.local_addr()?;
    // Installed before the listening line, so a script that signals the
    // node as soon as it is up gets a clean leave.
    let signals = crate::shutdown::Signals::install();
    let shutdown = async move {
        match signals {
            Ok(mut signals) => {
                signals.next().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "no signal handlers; stop with /quit");
                std::future::pending::<()>().await;
            }
        }
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on udp://{local}")?;
        out.flush()?;
    }
    let mut joins = Vec::new();
    for hp in &config.joins {
        joins.push(resolve_like(hp, local).await?);
    }
    let addr = match &config.advertise {
        Some(hp) => resolve_like(hp, local).await?,
        None => advertised(local, joins.first().copied()),
    };
    let name = match &config.name {
        Some(n) => n.clone(),
        None => default_name(addr.port()),
    };
    let session = loop {
        let s = u64::from_be_bytes(crypto::os_random());
        if s != 0 {
            break s;
        }
    };
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let me = PeerId {
        addr,
        name,
        epoch,
        session,
    };
    tracing::info!(
        name = %me.name,
        addr = %me.addr,
        session = format_args!("{session:016x}"),
        encrypted = config.secret.is_some(),
        "peer node up"
    );
    if config.faults.any() {
        tracing::warn!(faults = ?config.faults, "simulating network faults (testing aid)");
    }
    let transport = transport::Transport::new(socket, config.faults);
    let node = node::Node::new(me, transport, joins, config.secret.as_deref(), config.json);
    let input = command::spawn_stdin_reader().context("start the stdin reader")?;
    node.run(input, shutdown).await?;
    Ok(())
}

/// Resolves a peer address, preferring one of the family we are bound to
/// (a v4 socket cannot send to a v6 address).
async fn resolve_like(hp: &HostPort, local: SocketAddr) -> anyhow::Result<SocketAddr> {
    let addrs = hp
        .resolve()
        .await
        .with_context(|| format!("cannot resolve udp://{hp}"))?;
    addrs
        .iter()
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .copied()
        .with_context(|| {
            format!(
                "udp://{hp} has no IPv{} address to reach from udp://{local}",
                if local.is_ipv4() { 4 } else { 6 }
            )
        })
}

/// The address other members reach us at. A wildcard bind (0.0.0.0, ::)
/// says nothing about that: we ask the kernel which local address it would
/// use towards the first join address, else fall back to loopback (and
/// `--advertise` is the way to say it outright).
fn advertised(local: SocketAddr, join: Option<SocketAddr>) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let via_route = join.and_then(|target| {
        let probe = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)).ok()?;
        probe.connect(target).ok()?;
        probe.local_addr().ok().map(|a| a.ip())
    });
    let ip = via_route.unwrap_or_else(|| {
        tracing::warn!(
            "listening on a wildcard address with nothing to join: advertising loopback; \
             use --advertise ADDR to be reachable from other hosts"
        );
        if local.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        }
    });
    SocketAddr::new(ip, local.port())
}

/// `HOSTNAME-PORT`: unique per host and port, readable, and a valid name
/// (characters outside the name alphabet become `-`, long hostnames are
/// cut).
fn default_name(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let suffix = format!("-{port}");
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if valid_name(&c.to_string()) && c != ':' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut host = if host.is_empty() {
        "peer".to_owned()
    } else {
        host
    };
    while host.len() + suffix.len() > MAX_NAME {
        host.pop();
    }
    format!("{host}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid() {
        for port in [0, 9999, 65535] {
            let n = default_name(port);
            assert!(valid_name(&n), "{n:?}");
            assert!(n.ends_with(&format!("-{port}")));
        }
    }

    #[test]
    fn wildcard_binds_advertise_a_real_address() {
        let local: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let a = advertised(local, Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(a, "127.0.0.1:4000".parse().unwrap());
        let specific: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        assert_eq!(advertised(specific, None), specific);
    }
}
