//! A CA bundle read once and indexed by each certificate's subject name.
//!
//! A system bundle holds about 150 certificates, and turning every one into a trust anchor costs
//! as much as the rest of a process's start. webpki only ever uses the anchors whose subject is
//! the issuer of a certificate in the server's chain, so each handshake gets a verifier with just
//! those: the verdict and its error are the ones the whole bundle would give. Only the first
//! bytes of each certificate are decoded to find its subject, and the whole of the ones a chain
//! needs, with the `base64` crate (certificates are public: no constant-time decoder needed).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Lenient about padding and trailing bits, as PEM readers are.
const PEM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// How much of a certificate's base64 is decoded to find its subject name (3/4 as many bytes):
/// enough for nearly every certificate; the rest are decoded whole.
const NAMES_PREFIX: usize = 512;

/// The certificates of a bundle as their base64 text, each with its subject name (`None`: not
/// found, so the certificate is offered to every handshake). A certificate is decoded whole only
/// when a chain may need it.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    certs: Vec<Pem>,
}

#[derive(Debug)]
struct Pem {
    base64: Vec<u8>,
    subject: Option<Vec<u8>>,
}

impl Bundle {
    /// Reads the PEM certificate sections of `path`.
    pub fn read(path: &Path) -> Result<Bundle, String> {
        let cannot =
            |e: std::io::Error| format!("cannot read {}: {}", path.display(), rustls::pki_types::pem::Error::Io(e));
        let file = std::fs::File::open(path).map_err(cannot)?;
        let texts = pem_certificates(std::io::BufReader::with_capacity(32 * 1024, file)).map_err(cannot)?;
        if texts.is_empty() {
            return Err(format!("no PEM certificate in {}", path.display()));
        }
        let certs = texts.into_iter().map(|base64| Pem { subject: subject_of(&base64), base64 }).collect();
        Ok(Bundle { path: path.to_path_buf(), certs })
    }

    /// A verifier with the bundle's certificates that can have issued a certificate of the chain
    /// `end_entity` + `intermediates`, or with all of them when none can (so that the failure is
    /// the whole bundle's) or a chain certificate's issuer cannot be read.
    pub fn verifier_for(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, String> {
        let chain = std::iter::once(end_entity).chain(intermediates);
        let issuers: Option<Vec<&[u8]>> = chain.map(|c| names(c).map(|(issuer, _)| issuer)).collect();
        let mut roots = RootCertStore::empty();
        if let Some(issuers) = issuers {
            let may_issue = self.certs.iter().filter(|c| c.subject.as_ref().is_none_or(|s| issuers.contains(&&s[..])));
            roots.add_parsable_certificates(may_issue.filter_map(|c| decode(&c.base64)).map(CertificateDer::from));
        }
        if roots.is_empty() {
            let all: Vec<_> = self.certs.iter().filter_map(|c| decode(&c.base64)).collect();
            if all.is_empty() {
                return Err(format!("no PEM certificate in {}", self.path.display()));
            }
            roots.add_parsable_certificates(all.into_iter().map(CertificateDer::from));
        }
        if roots.is_empty() {
            return Err(format!("no usable CA certificate in {}", self.path.display()));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("CA certificates in {}: {e}", self.path.display()))
    }
}

/// The base64 text (lines joined, trimmed) of every `CERTIFICATE` section of PEM text.
fn pem_certificates(mut input: impl BufRead) -> std::io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let (mut line, mut text, mut inside) = (Vec::with_capacity(80), Vec::with_capacity(4096), false);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(out);
        }
        let trimmed = line.trim_ascii();
        if trimmed.starts_with(b"-----BEGIN ") {
            inside = trimmed == b"-----BEGIN CERTIFICATE-----";
            text.clear();
        } else if inside && trimmed.starts_with(b"-----END CERTIFICATE-----") {
            inside = false;
            out.push(text.clone());
        } else if inside {
            text.extend_from_slice(trimmed);
        }
    }
}

/// The DER bytes of a certificate's base64 text, `None` when it does not decode.
fn decode(base64: &[u8]) -> Option<Vec<u8>> {
    // Whitespace inside a line is rare: the bytes are filtered only when it is there.
    PEM_BASE64.decode(base64).ok().or_else(|| {
        let packed: Vec<u8> = base64.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        PEM_BASE64.decode(packed).ok()
    })
}

/// The subject name of a certificate's base64 text, from its first bytes when they hold it.
fn subject_of(base64: &[u8]) -> Option<Vec<u8>> {
    if base64.len() > NAMES_PREFIX
        && let Ok(start) = PEM_BASE64.decode(&base64[..NAMES_PREFIX])
        && let Some((_, subject)) = names(&start)
    {
        return Some(subject.to_vec());
    }
    let der = decode(base64)?;
    names(&der).map(|(_, subject)| subject.to_vec())
}

/// The contents of the issuer and subject names of DER certificate `der`, as webpki compares
/// them; `None` when they cannot be found. `der` may be the certificate's first bytes only.
pub(super) fn names(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    // The certificate and its to-be-signed part may be cut short; the names must be whole.
    let (SEQUENCE, cert) = opening(der)? else { return None };
    let (SEQUENCE, tbs) = opening(cert)? else { return None };
    // [0] version (absent in v1 certificates), serial number, signature algorithm, issuer,
    // validity, subject.
    let (tag, _, after_version) = element(tbs)?;
    let rest = if tag == 0xa0 { after_version } else { tbs };
    let (_, _, rest) = element(rest)?;
    let (_, _, rest) = element(rest)?;
    let (SEQUENCE, issuer, rest) = element(rest)? else { return None };
    let (_, _, rest) = element(rest)?;
    let (SEQUENCE, subject, _) = element(rest)? else { return None };
    Some((issuer, subject))
}

/// The tag of the first DER element of `der` and as much of its contents as `der` holds.
fn opening(der: &[u8]) -> Option<(u8, &[u8])> {
    let (tag, len, rest) = header(der)?;
    Some((tag, &rest[..len.min(rest.len())]))
}

/// The first DER element of `der`: its tag, its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, len, rest) = header(der)?;
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The tag and length of the first DER element of `der`, and the bytes after them.
fn header(der: &[u8]) -> Option<(u8, usize, &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            (bytes.iter().fold(0, |len, &b| len << 8 | usize::from(b)), rest)
        }
        _ => return None,
    };
    Some((tag, len, rest))
}

#[cfg(test)]
mod tests;
