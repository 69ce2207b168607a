//! TLS for both sides, on rustls with the ring provider (it builds faster
//! than aws-lc on small machines, and needs no C toolchain beyond cc).
//!
//! Servers: a [`ServerIdentity`] is a certificate chain and its key, read
//! from PEM files ([`ServerIdentity::load`]) or made up on the spot as a
//! self-signed development certificate ([`ServerIdentity::development`]);
//! [`acceptor`] turns one into a per-listener acceptor with its own ALPN
//! list and the process's session-ticket keys.
//!
//! Clients: [`TlsClient`] holds the verifying configuration (system roots,
//! `--ca`, or `--insecure`), the name to send and check, and the session
//! cache that lets a reconnecting client skip the full handshake.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

/// PEM files larger than this are refused rather than read: a certificate
/// chain is a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Resumable sessions a server remembers (TLS 1.2 session IDs; TLS 1.3
/// uses tickets, which cost the server nothing to keep).
const SERVER_SESSION_CACHE: usize = 4096;

/// The crypto provider every config is built on: ring, with AES-128-GCM
/// suites first. Both sides prefer them (the server over the client's
/// order): AES-128-GCM is as safe for TLS's purposes and faster in bulk
/// than AES-256, and its SHA-256 key schedule runs on the CPU's SHA
/// instructions, where ring's SHA-384 has none: a profile of resumed
/// handshakes spent 15% of the server's time in SHA-512 blocks before.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(provider)
}

/// A server's certificate chain and private key, checked to match.
#[derive(Debug, Clone)]
pub struct ServerIdentity {
    key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate, as `openssl x509 -fingerprint
    /// -sha256` prints it (`AB:CD:...`).
    pub fingerprint: String,
}

impl ServerIdentity {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    ///
    /// # Errors
    /// One line naming the file: unreadable, no certificate or key in it,
    /// or a key that does not belong to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerIdentity, String> {
        let cert_pem = read_pem_file(cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!(
                "--tls-cert {}: no PEM certificate in it",
                cert.display()
            ));
        }
        let key_pem = read_pem_file(key)?;
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            format!(
                "--tls-key {}: no usable PEM private key ({e})",
                key.display()
            )
        })?;
        Self::from_der(chain, key_der).map_err(|e| {
            format!(
                "--tls-key {} does not go with --tls-cert {}: {e}",
                key.display(),
                cert.display()
            )
        })
    }

    /// A self-signed certificate for `localhost`, `127.0.0.1`, `::1` and
    /// each of `hosts` (names or IP addresses), made now; its key never
    /// leaves the process.
    ///
    /// # Errors
    /// A host that cannot be a certificate name.
    pub fn development(hosts: &[String]) -> Result<ServerIdentity, String> {
        Self::development_with_key(hosts).map(|(identity, _)| identity)
    }

    /// [`development`](Self::development), with the certificate and key
    /// as DER, for worker processes to take on
    /// ([`from_development`](Self::from_development)).
    ///
    /// # Errors
    /// As [`development`](Self::development).
    pub fn development_with_key(
        hosts: &[String],
    ) -> Result<(ServerIdentity, DevelopmentKey), String> {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
        for host in hosts {
            if !names.contains(host) {
                names.push(host.clone());
            }
        }
        let made = rcgen::generate_simple_self_signed(names)
            .map_err(|e| format!("development certificate: {e}"))?;
        let der = DevelopmentKey {
            cert: made.cert.der().to_vec(),
            key: made.signing_key.serialize_der(),
        };
        Ok((Self::from_development(&der)?, der))
    }

    /// The development certificate another process made.
    ///
    /// # Errors
    /// DER that is no certificate and key of each other.
    pub fn from_development(der: &DevelopmentKey) -> Result<ServerIdentity, String> {
        let key = PrivateKeyDer::Pkcs8(der.key.clone().into());
        Self::from_der(vec![CertificateDer::from(der.cert.clone())], key)
            .map_err(|e| format!("development certificate: {e}"))
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerIdentity, rustls::Error> {
        let fingerprint = fingerprint(&chain[0]);
        let key = CertifiedKey::from_der(chain, key, &provider())?;
        Ok(ServerIdentity {
            key: Arc::new(key),
            fingerprint,
        })
    }
}

/// The development certificate and its PKCS#8 key, as DER: what the
/// parent of `--workers N` hands each worker (over its private channel).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct DevelopmentKey {
    /// The certificate.
    pub cert: Vec<u8>,
    /// Its private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for DevelopmentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("DevelopmentKey").finish_non_exhaustive()
    }
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    let named = |e: io::Error| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(named)?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!(
            "{}: larger than {MAX_PEM_BYTES} bytes; not a PEM file",
            path.display()
        ));
    }
    std::fs::read(path).map_err(named)
}

/// The SHA-256 fingerprint of a DER certificate, colon-separated upper-case
/// hex, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Session-ticket keys for every TLS listener of a process, rotated by
/// rustls every 6 hours; one set, so a client resumes on any listener.
///
/// # Errors
/// When the system's random source fails.
pub fn ticketer() -> io::Result<Arc<dyn ProducesTickets>> {
    rustls::crypto::ring::Ticketer::new().map_err(io::Error::other)
}

/// A server-side acceptor: the identity, the ALPN protocols the listener
/// offers (most preferred first; empty: no ALPN), and resumption by
/// tickets and by session IDs.
///
/// # Errors
/// When the provider rejects the protocol versions (it does not: ring
/// supports TLS 1.2 and 1.3).
pub fn acceptor(
    identity: &ServerIdentity,
    alpn: &[&[u8]],
    tickets: Arc<dyn ProducesTickets>,
) -> io::Result<tokio_rustls::TlsAcceptor> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            identity.key.clone(),
        )));
    config.ignore_client_order = true;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ticketer = tickets;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SERVER_SESSION_CACHE);
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// How a client checks the server (SPEC 3).
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// Trust only the certificates in this PEM file instead of the system
    /// roots.
    pub ca: Option<PathBuf>,
    /// The name sent (SNI) and verified; default: the address's host.
    pub servername: Option<String>,
    /// Skip verification altogether.
    pub insecure: bool,
    /// Keep sessions for resumption (the default). Off only for measuring
    /// full handshakes.
    pub no_resume: bool,
}

/// A TLS client configuration, ready to start sessions.
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    servername: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("servername", &self.servername)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Builds the client side from the options. With `--insecure` a
    /// warning goes to the log (stderr).
    ///
    /// # Errors
    /// One line: an unreadable or empty `--ca` file, or a `--servername`
    /// that is no valid name.
    pub fn new(options: &ClientTlsOptions) -> Result<TlsClient, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let trust = if options.insecure {
            tracing::warn!(
                "--insecure: the server's certificate is not verified; anyone in the path can read and change this connection"
            );
            Trust::Anything
        } else {
            let (roots, from_file) = roots(options.ca.as_deref())?;
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| format!("trust roots: {e}"))?;
            Trust::Roots { webpki, from_file }
        };
        let verifier = Verifier {
            trust,
            provider: provider(),
        };
        let mut config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        if options.no_resume {
            config.resumption = rustls::client::Resumption::disabled();
        }
        let servername = options
            .servername
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("--servername {name:?}: not a host name or IP address"))
            })
            .transpose()?;
        Ok(TlsClient {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            servername,
        })
    }

    /// Runs the client handshake over `tcp`. `host` is the address's host,
    /// used as the server name unless `--servername` was given; for an IP
    /// address no SNI is sent and the certificate must name the IP.
    ///
    /// # Errors
    /// A one-phrase reason: the certificate problem, or the handshake
    /// failure.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = match &self.servername {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|_| format!("{host:?} cannot be checked against a certificate"))?,
        };
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| handshake_failure(&e))
    }
}

/// The trust anchors: the `--ca` file's certificates (also returned as
/// they are, for [`Trust::Roots`]), or the system's.
fn roots(ca: Option<&Path>) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut roots = RootCertStore::empty();
    let mut from_file = Vec::new();
    match ca {
        Some(path) => {
            let pem = read_pem_file(path).map_err(|e| format!("--ca {e}"))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("--ca {}: {e}", path.display()))?;
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?;
                from_file.push(cert);
            }
            if roots.is_empty() {
                return Err(format!("--ca {}: no PEM certificate in it", path.display()));
            }
        }
        None => {
            // The system store (Debian: /etc/ssl/certs; SSL_CERT_FILE and
            // SSL_CERT_DIR are honoured). Certificates it cannot parse are
            // skipped, as OpenSSL skips them.
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::debug!(%error, "skipping part of the system certificate store");
            }
            let (added, skipped) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, skipped, "system trust roots");
            if roots.is_empty() {
                return Err("no trusted certificate authorities in the system store \
                     (/etc/ssl/certs, or SSL_CERT_FILE and SSL_CERT_DIR): install \
                     ca-certificates, or name the ones to trust with --ca FILE"
                    .into());
            }
        }
    }
    Ok((roots, from_file))
}

/// Turns a failed client handshake into the phrase an error line ends
/// with: what is wrong with the certificate, in words, or the TLS error.
pub fn handshake_failure(error: &io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return crate::net::connect::Cause(error).to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => {
            let problem = match cert {
                CertificateError::UnknownIssuer => {
                    "not issued by a trusted certificate authority (unknown issuer; see --ca)"
                        .to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    format!("not valid for this name ({cert:?}; see --servername)")
                        .replace("NotValidForNameContext ", "")
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "expired".to_owned()
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    "not valid yet".to_owned()
                }
                CertificateError::Other(other)
                    if other.to_string().contains("CaUsedAsEndEntity") =>
                {
                    "a CA certificate, not a server's".to_owned()
                }
                CertificateError::Other(other) => other.to_string(),
                other => format!("{other:?}"),
            };
            format!("certificate verify failed: {problem}")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

/// What a client trusts.
#[derive(Debug)]
enum Trust {
    /// `--insecure`: any certificate.
    Anything,
    /// WebPKI verification against the roots, with one allowance for a
    /// certificate given in `--ca` itself: the self-signed certificate
    /// `openssl req -x509` makes is marked as a CA, which WebPKI refuses
    /// as a server's own (`CaUsedAsEndEntity`). A user who names that very
    /// certificate in `--ca` trusts it, as curl's and OpenSSL's `--cacert`
    /// do; its names are still checked.
    Roots {
        webpki: Arc<rustls::client::WebPkiServerVerifier>,
        from_file: Vec<CertificateDer<'static>>,
    },
}

/// The client's certificate check. Whatever is trusted, the handshake
/// signatures are checked, so the session is bound to whoever holds the
/// key of the certificate shown.
#[derive(Debug)]
struct Verifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Trust::Roots { webpki, from_file } = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // rustls wraps webpki's error kinds that it has no variant for
            // in `Other`; this one is only told apart by its name.
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(other)))
                if other.to_string().contains("CaUsedAsEndEntity")
                    && from_file.iter().any(|c| c == end_entity) =>
            {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_like_openssl() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF:"), "{fp}");
    }

    #[test]
    fn development_certificate_names_the_listener_host() {
        let id = ServerIdentity::development(&["example.test".into()]).unwrap();
        assert_eq!(id.fingerprint.len(), 95);
        let der = id.key.end_entity_cert().unwrap();
        assert_eq!(fingerprint(der), id.fingerprint);
    }

    #[test]
    fn missing_files_are_named() {
        let err =
            ServerIdentity::load(Path::new("/nonexistent/c.pem"), Path::new("/k.pem")).unwrap_err();
        assert!(err.contains("/nonexistent/c.pem"), "{err}");
        let err = TlsClient::new(&ClientTlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("--ca /nonexistent/ca.pem"), "{err}");
    }
}
