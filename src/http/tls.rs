//! rustls client settings with the ring provider.
//!
//! Trust anchors are read only when the first certificate must be verified: a process that makes
//! no HTTPS request never opens the system CA bundle. Of the bundle, each handshake turns into
//! trust anchors only the certificates that can have issued the server's chain (see `anchors`),
//! and a serving process keeps the bundle's index in the state directory for the next one. The
//! system bundle is the distribution's PEM file (which `update-ca-certificates` rebuilds), or
//! `tls.root_ca` instead.

use super::anchors::{Bundle, IndexDir};
use crate::config::TlsSpec;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// System CA bundles, first found wins (Debian/Ubuntu, RHEL/Fedora, SUSE, older RHEL, Alpine/BSD).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// Builds the rustls settings for `spec`. The client certificate is read here (on first need).
/// `index_dir`: where the CA bundle's index is kept between processes (the state directory).
pub fn client_config(spec: &TlsSpec, index_dir: Option<&Arc<IndexDir>>) -> Result<ClientConfig, String> {
    let provider = Arc::new(provider());
    let versions: &[&rustls::SupportedProtocolVersion] =
        if spec.tls13_only { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS12, &rustls::version::TLS13] };
    let trust = if spec.skip_verify {
        Trust::Any
    } else {
        Trust::Roots { source: spec.root_ca.clone(), index_dir: index_dir.cloned(), loaded: OnceLock::new() }
    };
    let verifier = Arc::new(Verifier { provider: provider.clone(), trust });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &spec.identity {
        Some((cert, key)) => {
            let chain = read_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read the client key {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate not usable: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// ring's algorithms, with AES-128-GCM offered first (Go's client order; ring's own puts
/// AES-256-GCM first). A server that follows the client's order (most do) then runs the
/// handshake's transcript and key schedule on SHA-256, which CPUs compute in hardware, rather than
/// SHA-384. Every suite stays offered, in ring's order otherwise.
fn provider() -> CryptoProvider {
    use rustls::CipherSuite::{
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256,
    };
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            TLS13_AES_128_GCM_SHA256 | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    provider
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(format!("no PEM certificate in {}", path.display()));
    }
    Ok(certs)
}

fn system_bundle() -> Result<PathBuf, String> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no system CA bundle found (looked in {}); set tls.root_ca", SYSTEM_BUNDLES.join(", ")))
}

fn read_bundle(source: &Option<PathBuf>, index_dir: Option<&IndexDir>) -> Result<Bundle, String> {
    match source {
        Some(p) => Bundle::read(p, index_dir),
        None => Bundle::read(&system_bundle()?, index_dir),
    }
}

/// Checks server certificates against trust anchors loaded on the first handshake, or (with
/// `skip_verify`) accepts any certificate while still checking the handshake signatures.
#[derive(Debug)]
struct Verifier {
    provider: Arc<CryptoProvider>,
    trust: Trust,
}

#[derive(Debug)]
enum Trust {
    Any,
    Roots { source: Option<PathBuf>, index_dir: Option<Arc<IndexDir>>, loaded: OnceLock<Result<Bundle, String>> },
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
        let Trust::Roots { source, index_dir, loaded } = &self.trust else {
            return Ok(ServerCertVerified::assertion());
        };
        let verifier = match loaded.get_or_init(|| read_bundle(source, index_dir.as_deref())) {
            Ok(bundle) => bundle.verifier_for(end_entity, intermediates, &self.provider),
            Err(e) => Err(e.clone()),
        };
        match verifier {
            Ok(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            Err(e) => Err(rustls::Error::General(e)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    /// AES-128-GCM leads (SHA-256 key schedule), and nothing ring offers is left out or added.
    #[test]
    fn aes_128_gcm_is_offered_first_and_every_suite_stays() {
        let ours: Vec<CipherSuite> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours[0], CipherSuite::TLS13_AES_128_GCM_SHA256);
        let tls13: Vec<_> = ours.iter().filter(|s| format!("{s:?}").starts_with("TLS13_")).collect();
        assert_eq!(tls13[1], &CipherSuite::TLS13_AES_256_GCM_SHA384, "ring's order after the first: {ours:?}");
        let mut ours_codes: Vec<u16> = ours.iter().map(|s| u16::from(*s)).collect();
        let mut ring: Vec<u16> =
            rustls::crypto::ring::default_provider().cipher_suites.iter().map(|s| u16::from(s.suite())).collect();
        assert_ne!(ours_codes, ring, "the order differs from ring's");
        ours_codes.sort_unstable();
        ring.sort_unstable();
        assert_eq!(ours_codes, ring);
    }
}
