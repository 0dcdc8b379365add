use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nigehban_ingest::{ClientCertOrg, SourceKind, Spawned, SyslogTlsConfig, spawn_syslog_tls};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{Harness, collect, eventually, harness, loopback_is, nobody};

/// A CA, a server certificate for `localhost` and a device certificate, all made here.
struct Pki {
    _dir: tempfile::TempDir,
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    ca_der: CertificateDer<'static>,
    client_der: CertificateDer<'static>,
    client_key: Vec<u8>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Test devices CA");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");

    let server_key = KeyPair::generate().expect("key");
    let server_params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let server = server_params.signed_by(&server_key, &ca).expect("server certificate");

    let client_key = KeyPair::generate().expect("key");
    let mut client_params = CertificateParams::new(vec!["fw1.org-a.example".to_owned()]).expect("params");
    client_params.distinguished_name.push(DnType::CommonName, "fw1.org-a.example");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca).expect("client certificate");

    let ca_path = dir.path().join("ca.pem");
    let cert_path = dir.path().join("server.pem");
    let key_path = dir.path().join("server.key");
    std::fs::write(&ca_path, ca.pem()).expect("write");
    std::fs::write(&cert_path, server.pem()).expect("write");
    std::fs::write(&key_path, server_key.serialize_pem()).expect("write");
    Pki {
        ca_path,
        cert_path,
        key_path,
        ca_der: ca.der().clone(),
        client_der: client.der().clone(),
        client_key: client_key.serialize_der(),
        _dir: dir,
    }
}

fn connector(pki: &Pki, with_client_cert: bool) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).expect("root");
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = if with_client_cert {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.client_key.clone()));
        builder.with_client_auth_cert(vec![pki.client_der.clone()], key).expect("client certificate")
    } else {
        builder.with_no_client_auth()
    };
    TlsConnector::from(Arc::new(config))
}

async fn connect(s: &Spawned, connector: &TlsConnector) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(s.local_addr.expect("bound")).await?;
    connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await
}

fn config(pki: &Pki) -> SyslogTlsConfig {
    SyslogTlsConfig::new("127.0.0.1:0".parse().expect("addr"), pki.cert_path.clone(), pki.key_path.clone())
}

fn with_client_auth(pki: &Pki) -> SyslogTlsConfig {
    let mut cfg = config(pki);
    cfg.client_ca = Some(pki.ca_path.clone());
    cfg.client_orgs = vec![
        ClientCertOrg { sha256: None, name: Some("someone.else".into()), org: "org-x".into() },
        ClientCertOrg { sha256: None, name: Some("FW1.org-a.example".into()), org: "org-a".into() },
    ];
    cfg
}

#[tokio::test]
async fn octet_counted_messages_over_tls_take_the_org_of_the_address() {
    let pki = pki();
    let mut h = harness(16);
    let s = spawn_syslog_tls(&config(&pki), loopback_is("org-b"), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    let mut c = connect(&s, &connector(&pki, false)).await.expect("handshake");
    c.write_all(b"9 <13>hello13 <13>two\nlines<13>newline framed\n").await.expect("write");
    c.shutdown().await.expect("close");
    let got = collect(&mut h.rx, 3).await;
    assert_eq!(got, ["<13>hello", "<13>two\nlines", "<13>newline framed"]);
    assert_eq!(h.metrics.records(SourceKind::SyslogTls), 3);
}

#[tokio::test]
async fn with_client_authentication_the_org_comes_from_the_certificate() {
    let pki = pki();
    let mut h = harness(16);
    // The address mapping holds no loopback address: only the certificate can name the org.
    let s = spawn_syslog_tls(&with_client_auth(&pki), nobody(), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    let mut c = connect(&s, &connector(&pki, true)).await.expect("handshake");
    c.write_all(b"15 <13>from device").await.expect("write");
    c.flush().await.expect("flush");
    let b = crate::next_batch(&mut h.rx).await;
    assert_eq!(b.origin.org, "org-a");
    assert_eq!(b.origin.source, "syslog-tls 127.0.0.1 fw1.org-a.example");
    assert_eq!(crate::ack(b), ["<13>from device"]);
}

#[tokio::test]
async fn clients_without_a_certificate_or_with_an_unmapped_one_are_refused() {
    let pki = pki();
    let h: Harness = harness(16);
    let s = spawn_syslog_tls(&with_client_auth(&pki), nobody(), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect("listen");
    // No certificate: the server ends the handshake (TLS 1.3 clients may only see it on read).
    if let Ok(mut c) = connect(&s, &connector(&pki, false)).await {
        let _ = c.write_all(b"5 <13>x").await;
        let mut buf = [0u8; 8];
        let _ = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    }
    let m = h.metrics.clone();
    eventually("the failed handshake to be counted", || m.tls_handshake_failures() == 1).await;

    // A valid certificate that no entry names, and no default organisation.
    let mut cfg = with_client_auth(&pki);
    cfg.client_orgs.retain(|e| e.org != "org-a");
    let h2 = harness(16);
    let s2 = spawn_syslog_tls(&cfg, loopback_is("org-b"), h2.tx.clone(), h2.metrics.clone(), h2.shutdown.clone())
        .await
        .expect("listen");
    let mut c = connect(&s2, &connector(&pki, true)).await.expect("handshake");
    let _ = c.write_all(b"5 <13>x").await;
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed by the server");
    assert_eq!(h2.metrics.unmapped_refused(SourceKind::SyslogTls), 1);
    assert_eq!(h2.metrics.records(SourceKind::SyslogTls), 0);
}

#[tokio::test]
async fn a_missing_certificate_file_is_an_error_at_start() {
    let pki = pki();
    let h = harness(1);
    let mut cfg = config(&pki);
    cfg.cert = pki.cert_path.with_file_name("absent.pem");
    let err = spawn_syslog_tls(&cfg, loopback_is("o"), h.tx.clone(), h.metrics.clone(), h.shutdown.clone())
        .await
        .expect_err("no certificate");
    assert!(err.to_string().contains("absent.pem"), "{err}");
}
