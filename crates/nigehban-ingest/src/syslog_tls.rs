//! Syslog over TLS (RFC 5425). The same connection handling as TCP (framing detected per
//! message, one acknowledged batch per read) behind a rustls server. With a client CA
//! configured, clients must present a certificate that chains to it, and the organisation
//! comes from that certificate (fingerprint, subject CN or DNS name) instead of the address.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::cert;
use crate::config::syslog_format_hint;
use crate::syslog_tcp::{Connection, serve_connection};
use crate::{
    IngestError, IngestMetrics, OrgMap, Origin, RawBatch, Shutdown, SourceKind, Spawned, SyslogTlsConfig, stopped,
};

/// Loads the certificate, key and client CA, binds `config.listen` and starts accepting.
/// Without a client CA, senders are mapped to organisations by address through `orgs`.
pub async fn spawn_syslog_tls(
    config: &SyslogTlsConfig,
    orgs: Arc<OrgMap>,
    tx: mpsc::Sender<RawBatch>,
    metrics: Arc<IngestMetrics>,
    mut shutdown: Shutdown,
) -> Result<Spawned, IngestError> {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(config)?));
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Bind { addr: config.listen.to_string(), source })?;
    let local_addr = listener.local_addr().ok();
    let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let format = syslog_format_hint(&config.format);
    let client_auth = config.client_ca.is_some();
    let client_orgs = Arc::new((config.client_orgs.clone(), config.client_default_org.clone()));
    let max_message = config.max_message_bytes;
    let idle_timeout = Duration::from_secs(config.idle_timeout_secs.max(1));
    let handshake_timeout = Duration::from_secs(config.handshake_timeout_secs.max(1));
    let gathering = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(message = "Syslog TLS accept failed.", error = %e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                metrics.add_over_limit(SourceKind::SyslogTls);
                tracing::warn!(message = "Syslog TLS connection refused: too many connections.", sender = %peer);
                continue;
            };
            let ip = peer.ip().to_canonical();
            // Without client certificates the address decides, before any handshake work.
            let address_org = if client_auth {
                None
            } else {
                match orgs.org_for(ip) {
                    Some(org) => Some(org.to_owned()),
                    None => {
                        metrics.add_unmapped(SourceKind::SyslogTls, 1);
                        tracing::warn!(message = "Syslog TLS connection from an unmapped sender refused.", sender = %ip);
                        continue;
                    }
                }
            };
            let acceptor = acceptor.clone();
            let client_orgs = client_orgs.clone();
            let (tx, metrics, shutdown, format) = (tx.clone(), metrics.clone(), shutdown.clone(), format.clone());
            let gathering = gathering.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        metrics.add_tls_handshake_failure();
                        tracing::warn!(message = "Syslog TLS handshake failed.", sender = %ip, error = %e);
                        return;
                    }
                    Err(_) => {
                        metrics.add_tls_handshake_failure();
                        tracing::warn!(message = "Syslog TLS handshake timed out.", sender = %ip);
                        return;
                    }
                };
                let (org, source) = match address_org {
                    Some(org) => (org, format!("syslog-tls {ip}")),
                    None => {
                        let Some(der) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                            // The verifier requires a certificate; this is only a safeguard.
                            metrics.add_tls_handshake_failure();
                            return;
                        };
                        let (entries, default_org) = &*client_orgs;
                        let name = cert::describe(der);
                        match cert::org_for_cert(der, entries, default_org.as_deref()) {
                            Some(org) => (org.to_owned(), format!("syslog-tls {ip} {name}")),
                            None => {
                                metrics.add_unmapped(SourceKind::SyslogTls, 1);
                                tracing::warn!(
                                    message = "Syslog TLS client certificate maps to no organisation; connection refused.",
                                    sender = %ip,
                                    certificate = %name,
                                    sha256 = %cert::sha256_hex(der),
                                );
                                return;
                            }
                        }
                    }
                };
                let conn = Connection {
                    origin: Origin { org, source },
                    kind: SourceKind::SyslogTls,
                    format,
                    max_message,
                    idle_timeout,
                    tx,
                    metrics,
                    shutdown,
                    gathering,
                };
                serve_connection(tls, conn).await;
                drop(permit);
            });
        }
    });
    Ok(Spawned { local_addr, task })
}

fn tls_error(path: &Path, message: impl std::fmt::Display) -> IngestError {
    IngestError::Tls { path: path.to_owned(), message: message.to_string() }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, IngestError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(path, e))?;
    if certs.is_empty() {
        return Err(tls_error(path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// The rustls server configuration (ring provider; client verification when a CA is set).
fn server_config(config: &SyslogTlsConfig) -> Result<ServerConfig, IngestError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&config.cert)?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| tls_error(&config.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| IngestError::TlsConfig(e.to_string()))?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| tls_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).map_err(|e| tls_error(&config.cert, format!("certificate and key: {e}")))
}
