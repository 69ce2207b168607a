//! Checked settings for `sockit peer`, built from the command line before
//! any socket is bound. Every mistake is a one-line [`UsageError`] (exit 2).

use std::path::Path;

use crate::cli::PeerArgs;
use crate::error::UsageError;
use crate::net::addr::{DefaultScheme, Endpoint, HostPort};

use super::message::{MAX_NAME, valid_name};
use super::transport::Faults;

/// The largest secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// What a node runs with.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Where to bind.
    pub listen: HostPort,
    /// Members to join through.
    pub joins: Vec<HostPort>,
    /// The name asked for; `None`: HOSTNAME-PORT once the port is known.
    pub name: Option<String>,
    /// The address to give other members, when not the bound one.
    pub advertise: Option<HostPort>,
    /// The shared secret, when datagrams are encrypted.
    pub secret: Option<Vec<u8>>,
    /// Script mode.
    pub json: bool,
    /// Simulated network faults (testing aid).
    pub faults: Faults,
}

impl PeerConfig {
    /// Checks `args`.
    ///
    /// # Errors
    /// A [`UsageError`] naming the bad option.
    pub fn from_args(args: &PeerArgs) -> Result<PeerConfig, UsageError> {
        let listen = udp_addr(&args.listen, "--listen")?;
        let joins = args
            .join
            .iter()
            .map(|j| udp_addr(j, "--join"))
            .collect::<Result<Vec<_>, _>>()?;
        let advertise = args
            .advertise
            .as_deref()
            .map(|a| udp_addr(a, "--advertise"))
            .transpose()?;
        if let Some(name) = &args.name
            && !valid_name(name)
        {
            return Err(UsageError(format!(
                "invalid --name {}: 1 to {MAX_NAME} letters, digits or -_.:@",
                crate::net::addr::quote(name)
            )));
        }
        let secret = match (&args.secret, &args.secret_file) {
            (Some(s), _) => Some(s.as_bytes().to_vec()),
            (None, Some(path)) => Some(read_secret(path)?),
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(Vec::is_empty) {
            return Err(UsageError("the secret is empty".into()));
        }
        // The fractions were range-checked by clap.
        let faults = Faults {
            loss: args.simulate_loss,
            duplicate: args.simulate_duplicate,
            reorder: args.simulate_reorder,
        };
        Ok(PeerConfig {
            listen,
            joins,
            name: args.name.clone(),
            advertise,
            secret,
            json: args.json,
            faults,
        })
    }
}

/// Parses a peer address: `udp://` or a shorthand (which means UDP here).
fn udp_addr(input: &str, option: &str) -> Result<HostPort, UsageError> {
    match Endpoint::parse(input, DefaultScheme::Udp) {
        Ok(Endpoint::Udp(hp)) => Ok(hp),
        Ok(other) => Err(UsageError(format!(
            "{option} {other}: peers talk UDP; use udp://HOST:PORT or HOST:PORT"
        ))),
        Err(e) => Err(UsageError(format!("{option}: {e}"))),
    }
}

/// Reads a secret file; a trailing line end is not part of the secret.
fn read_secret(path: &Path) -> Result<Vec<u8>, UsageError> {
    let fail = |why: String| UsageError(format!("--secret-file {}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_SECRET_FILE {
        return Err(fail(format!("larger than {MAX_SECRET_FILE} bytes")));
    }
    let mut secret = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(fail("empty".into()));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> Result<PeerConfig, UsageError> {
        let mut argv = vec!["sockit", "peer"];
        argv.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        match cli.command {
            crate::cli::Command::Peer(a) => PeerConfig::from_args(&a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_and_shorthands_are_udp() {
        let c = args(&[]).unwrap();
        assert_eq!(c.listen.port, 9999);
        let c = args(&[
            "-l",
            ":0",
            "--join",
            "127.0.0.1:4000",
            "-j",
            "udp://[::1]:5",
        ])
        .unwrap();
        assert_eq!(c.listen.port, 0);
        assert_eq!(c.joins.len(), 2);
        assert!(c.secret.is_none() && !c.json && !c.faults.any());
    }

    #[test]
    fn mistakes_are_usage_errors() {
        let e = args(&["--join", "tcp://127.0.0.1:4000"]).unwrap_err();
        assert!(e.0.contains("peers talk UDP"), "{e}");
        assert!(
            args(&["-l", "udp://:99999"])
                .unwrap_err()
                .0
                .contains("--listen")
        );
        assert!(args(&["--name", "two words"]).is_err());
        assert!(args(&["--secret", ""]).is_err());
        assert!(
            crate::cli::Cli::try_parse_from(["sockit", "peer", "--simulate-loss", "1.5"]).is_err()
        );
        assert!(args(&["--secret-file", "/nonexistent/x"]).is_err());
    }

    #[test]
    fn secret_files_lose_their_line_end() {
        let path = std::env::temp_dir().join(format!("sockit-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let c = args(&["--secret-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.secret.as_deref(), Some(&b"s3cret"[..]));
        std::fs::remove_file(&path).unwrap();
    }
}
