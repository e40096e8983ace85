//! A CA bundle read once and indexed by each certificate's subject name.
//!
//! A system bundle holds about 150 certificates, and turning every one into a trust anchor costs
//! as much as the rest of a process's start. webpki only ever uses the anchors whose subject is
//! the issuer of a certificate in the server's chain, so each handshake gets a verifier with just
//! those: the verdict and its error are the ones the whole bundle would give. The PEM text is
//! decoded with the `base64` crate (certificates are public: no constant-time decoder needed).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use std::io::BufRead;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Lenient about padding and trailing bits, as PEM readers are.
const PEM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The certificates of a bundle, each with where its subject name is (`None`: not found, so the
/// certificate is offered to every handshake).
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    certs: Vec<(CertificateDer<'static>, Option<Range<usize>>)>,
}

impl Bundle {
    /// Reads the PEM certificates of `path`; sections that do not decode are skipped.
    pub fn read(path: &Path) -> Result<Bundle, String> {
        let cannot =
            |e: std::io::Error| format!("cannot read {}: {}", path.display(), rustls::pki_types::pem::Error::Io(e));
        let file = std::fs::File::open(path).map_err(cannot)?;
        let ders = pem_certificates(std::io::BufReader::with_capacity(32 * 1024, file)).map_err(cannot)?;
        if ders.is_empty() {
            return Err(format!("no PEM certificate in {}", path.display()));
        }
        let certs = ders
            .into_iter()
            .map(|der| {
                let subject = names(&der).map(|(_, subject)| offset_in(&der, subject));
                (CertificateDer::from(der), subject)
            })
            .collect();
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
            let may_issue = self
                .certs
                .iter()
                .filter(|(der, subject)| subject.as_ref().is_none_or(|s| issuers.contains(&&der[s.clone()])));
            roots.add_parsable_certificates(may_issue.map(|(der, _)| der.clone()));
        }
        if roots.is_empty() {
            roots.add_parsable_certificates(self.certs.iter().map(|(der, _)| der.clone()));
        }
        if roots.is_empty() {
            return Err(format!("no usable CA certificate in {}", self.path.display()));
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("CA certificates in {}: {e}", self.path.display()))
    }
}

/// The DER bytes of every `CERTIFICATE` section of PEM text.
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
            // Whitespace inside a line is rare: the bytes are filtered only when it is there.
            let der = PEM_BASE64.decode(&text).or_else(|_| {
                text.retain(|b| !b.is_ascii_whitespace());
                PEM_BASE64.decode(&text)
            });
            out.extend(der.ok());
        } else if inside {
            text.extend_from_slice(trimmed);
        }
    }
}

/// Where `part`, a slice of `whole`, lies in it.
fn offset_in(whole: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    start..start + part.len()
}

/// The contents of the issuer and subject names of DER certificate `der`, as webpki compares
/// them; `None` when they cannot be found.
pub(super) fn names(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, cert, _) = element(der)? else { return None };
    let (SEQUENCE, tbs, _) = element(cert)? else { return None };
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

/// The first DER element of `der`: its tag, its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests;
