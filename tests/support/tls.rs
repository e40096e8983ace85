//! A throw-away PKI for TLS tests: a CA (CA:TRUE), a server leaf for
//! `127.0.0.1` and `localhost`, and a client certificate, all signed by the
//! CA and written as PEM files into a temp dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

pub struct TlsFiles {
    /// Holds the files; removed when dropped.
    pub dir: tempfile::TempDir,
    /// The CA certificate (trust anchor).
    pub ca_pem: PathBuf,
    /// The server certificate (SAN: IP 127.0.0.1, DNS localhost).
    pub leaf_cert_pem: PathBuf,
    /// The server key (PKCS#8).
    pub leaf_key_pem: PathBuf,
    /// A client certificate (EKU clientAuth) signed by the same CA.
    pub client_cert_pem: PathBuf,
    /// The client key (PKCS#8).
    pub client_key_pem: PathBuf,
}

fn write(dir: &Path, name: &str, data: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// A fresh CA, server leaf and client certificate. Every call makes a new
/// CA, so a second call gives a CA that does not trust the first's leaf.
pub fn make_tls_files() -> TlsFiles {
    let dir = super::temp_dir();

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.distinguished_name.push(DnType::CommonName, "pfxhttp test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf params");
    leaf_params.distinguished_name.push(DnType::CommonName, "localhost");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut client_params = CertificateParams::new(vec!["client.pfxhttp.test".to_string()]).expect("client params");
    client_params.distinguished_name.push(DnType::CommonName, "pfxhttp test client");
    client_params.is_ca = IsCa::ExplicitNoCa;
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client_params.use_authority_key_identifier_extension = true;
    let client_cert = client_params.signed_by(&client_key, &issuer).expect("client cert");

    let d = dir.path().to_path_buf();
    TlsFiles {
        ca_pem: write(&d, "ca.pem", &ca_cert.pem()),
        leaf_cert_pem: write(&d, "leaf.pem", &leaf_cert.pem()),
        leaf_key_pem: write(&d, "leaf.key", &leaf_key.serialize_pem()),
        client_cert_pem: write(&d, "client.pem", &client_cert.pem()),
        client_key_pem: write(&d, "client.key", &client_key.serialize_pem()),
        dir,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A root store holding the test CA.
pub fn roots(tls: &TlsFiles) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in load_certs(&tls.ca_pem) {
        roots.add(c).expect("add CA to root store");
    }
    roots
}

/// Server config with the leaf certificate; with `client_auth`, a client
/// certificate signed by the test CA is required.
pub fn server_config(tls: &TlsFiles, client_auth: bool) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = if client_auth {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(tls)), provider())
            .build()
            .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config =
        builder.with_single_cert(load_certs(&tls.leaf_cert_pem), load_key(&tls.leaf_key_pem)).expect("server cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Client config trusting only the test CA; with `client_cert`, it presents
/// the test client certificate.
pub fn client_config(tls: &TlsFiles, client_cert: bool) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots(tls));
    let config = if client_cert {
        builder
            .with_client_auth_cert(load_certs(&tls.client_cert_pem), load_key(&tls.client_key_pem))
            .expect("client cert")
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(config)
}

/// A rustls client stream to `addr`, verifying the server as `server_name`
/// (e.g. "localhost" or "127.0.0.1"). The handshake happens on first I/O.
pub fn connect(
    config: Arc<ClientConfig>,
    addr: std::net::SocketAddr,
    server_name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("read timeout");
    tcp.set_write_timeout(Some(std::time::Duration::from_secs(5))).expect("write timeout");
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(config, name).expect("client connection");
    rustls::StreamOwned::new(conn, tcp)
}
