//! A CA bundle read once and indexed by each certificate's subject name.
//!
//! A system bundle holds about 150 certificates, and turning every one into a trust anchor costs
//! as much as the rest of a process's start. webpki only ever uses the anchors whose subject is
//! the issuer of a certificate in the server's chain, so each handshake gets a verifier with just
//! those: the verdict and its error are the ones the whole bundle would give. Only the first
//! bytes of each certificate are decoded to find its subject, and the whole of the ones a chain
//! needs, with the `base64` crate (certificates are public: no constant-time decoder needed).
//! The index (where each certificate lies, and a hash of its subject) is kept in the state
//! directory for the next process (see `index`): reading it costs a hundredth of scanning the
//! bundle.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use std::fs::File;
use std::io::BufRead;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

mod index;

/// Lenient about padding and trailing bits, as PEM readers are.
const PEM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// How much of a certificate's base64 is decoded to find its subject name (3/4 as many bytes),
/// at first and at most, and by how much more at each try: the names of half of Debian's
/// bundle end within 256 bytes, of all within 500; the rare certificate whose names end later
/// is decoded whole. Multiples of 4, so each piece decodes alone.
const FIRST_NAMES_TRY: usize = 320;
const NAMES_PREFIX: usize = 768;
const NAMES_STEP: usize = 64;

/// The certificates of a bundle, each with a hash of its subject name (`None`: not found, so
/// the certificate is offered to every handshake) and where its base64 text lies in the file. A
/// certificate is decoded whole, from the file as it was opened, only when a chain may need it.
#[derive(Debug)]
pub struct Bundle {
    path: PathBuf,
    file: File,
    /// The file's size when it was opened.
    size: u64,
    certs: Vec<Pem>,
}

/// The longest section text read as one certificate (a certificate's is a few KiB).
const MAX_SECTION: u64 = 1 << 20;

/// How far before and after a section's text its BEGIN and END lines are looked for.
const MARKER_WINDOW: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pem {
    /// The file's bytes between the section's BEGIN and END lines.
    body: Range<u64>,
    /// [`name_hash`] of the subject name.
    subject: Option<u64>,
}

/// Where bundles' indexes are kept: a directory (the state directory), opened on first need by
/// the function given, and every index file opened relative to it.
pub struct IndexDir {
    open: Box<dyn Fn() -> Option<OwnedFd> + Send + Sync>,
    dir: OnceLock<Option<OwnedFd>>,
}

impl IndexDir {
    pub fn new(open: impl Fn() -> Option<OwnedFd> + Send + Sync + 'static) -> IndexDir {
        IndexDir { open: Box::new(open), dir: OnceLock::new() }
    }

    fn get(&self) -> Option<BorrowedFd<'_>> {
        self.dir.get_or_init(&self.open).as_ref().map(OwnedFd::as_fd)
    }
}

impl std::fmt::Debug for IndexDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexDir").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Bundle {
    /// Reads the PEM certificate sections of `path`, or their index kept in `index_dir` from an
    /// earlier read of the same file (which it then writes when it had none).
    pub fn read(path: &Path, index_dir: Option<&IndexDir>) -> Result<Bundle, String> {
        let cannot =
            |e: std::io::Error| format!("cannot read {}: {}", path.display(), rustls::pki_types::pem::Error::Io(e));
        let file = File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let size = meta.len();
        let kept = index_dir.and_then(IndexDir::get).map(|dir| index::Kept::new(dir, path, &meta));
        if let Some(certs) = kept.as_ref().and_then(index::Kept::read) {
            return Ok(Bundle { path: path.to_path_buf(), file, size, certs });
        }
        let certs = pem_certificates(std::io::BufReader::with_capacity(32 * 1024, &file)).map_err(cannot)?;
        if certs.is_empty() {
            return Err(format!("no PEM certificate in {}", path.display()));
        }
        if let Some(kept) = kept {
            kept.write(&certs);
        }
        Ok(Bundle { path: path.to_path_buf(), file, size, certs })
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
            let hashes: Vec<u64> = issuers.iter().map(|i| name_hash(i)).collect();
            let may_issue = self.certs.iter().filter(|c| c.subject.is_none_or(|s| hashes.contains(&s)));
            // A hash that matches by chance (or an index written wrong) is told apart here.
            let issues = |der: &Vec<u8>| names(der).is_none_or(|(_, subject)| issuers.contains(&subject));
            let ders = may_issue.filter_map(|c| self.der(c)).filter(issues);
            roots.add_parsable_certificates(ders.map(CertificateDer::from));
        }
        if roots.is_empty() {
            let all: Vec<_> = self.certs.iter().filter_map(|c| self.der(c)).collect();
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

    /// The DER bytes of `pem`, `None` when they cannot be read or do not decode, or when its
    /// place in the file is not the whole text of a `CERTIFICATE` section (an index says where
    /// the sections are, and may be wrong: a place in a section of another kind, or a size
    /// larger than the file, must not be read as a certificate).
    fn der(&self, pem: &Pem) -> Option<Vec<u8>> {
        let Range { start, end } = pem.body;
        if start > end || end > self.size || end - start > MAX_SECTION {
            return None;
        }
        let (before, after) = (start.min(MARKER_WINDOW), (self.size - end).min(MARKER_WINDOW));
        let mut text = vec![0; usize::try_from(before + (end - start) + after).ok()?];
        self.file.read_exact_at(&mut text, start - before).ok()?;
        let (head, rest) = text.split_at(usize::try_from(before).ok()?);
        let (body, tail) = rest.split_at(usize::try_from(end - start).ok()?);
        let begin = head.strip_suffix(b"\n")?;
        let begin = match begin.iter().rposition(|&b| b == b'\n') {
            Some(at) => &begin[at + 1..],
            None if before == start => begin,
            None => return None,
        };
        let end_line = tail.split(|&b| b == b'\n').next()?;
        let whole = begin.trim_ascii() == b"-----BEGIN CERTIFICATE-----"
            && end_line.trim_ascii().starts_with(b"-----END CERTIFICATE-----");
        whole.then(|| decode(body)).flatten()
    }
}

/// Every `CERTIFICATE` section of PEM text, with its subject name. A line is trimmed of
/// surrounding whitespace; a section's base64 text is its lines joined.
fn pem_certificates(input: impl BufRead) -> std::io::Result<Vec<Pem>> {
    let mut out = Vec::new();
    let (mut text, mut body_start) = (Vec::with_capacity(4096), None);
    each_line(input, |line, at| {
        let trimmed = line.trim_ascii();
        if trimmed.starts_with(b"-----BEGIN ") {
            body_start = (trimmed == b"-----BEGIN CERTIFICATE-----").then_some(at.end);
            text.clear();
        } else if let Some(start) = body_start {
            if trimmed.starts_with(b"-----END CERTIFICATE-----") {
                body_start = None;
                out.push(Pem { body: start..at.start, subject: subject_of(&text) });
            } else {
                text.extend_from_slice(trimmed);
            }
        }
    })?;
    Ok(out)
}

/// Calls `each` with every line of `input` (its line end included) and where it lies, reading
/// the lines where the reader's buffer holds them.
fn each_line(mut input: impl BufRead, mut each: impl FnMut(&[u8], Range<u64>)) -> std::io::Result<()> {
    let (mut offset, mut carried) = (0u64, Vec::new());
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            if !carried.is_empty() {
                each(&carried, offset - carried.len() as u64..offset);
            }
            return Ok(());
        }
        let mut used = 0;
        for end in memchr::memchr_iter(b'\n', buf).map(|i| i + 1) {
            let line = &buf[used..end];
            let at = offset + used as u64 - carried.len() as u64..offset + end as u64;
            if carried.is_empty() {
                each(line, at);
            } else {
                carried.extend_from_slice(line);
                each(&carried, at);
                carried.clear();
            }
            used = end;
        }
        carried.extend_from_slice(&buf[used..]);
        let read = buf.len();
        input.consume(read);
        offset += read as u64;
    }
}

/// The DER bytes of base64 text, `None` when it does not decode. Whitespace (line ends, and
/// the rare space inside a line) is left out.
fn decode(base64: &[u8]) -> Option<Vec<u8>> {
    if !base64.iter().any(u8::is_ascii_whitespace) {
        return PEM_BASE64.decode(base64).ok();
    }
    let packed: Vec<u8> = base64.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    PEM_BASE64.decode(packed).ok()
}

/// A 64-bit FNV-1a hash: what the index keeps of a subject name (its DER contents), and how an
/// index file is named after its bundle's path.
fn name_hash(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The [`name_hash`] of the subject name of a certificate's base64 text. The text is decoded a
/// line at a time until the names are whole; a text that does not decode so is decoded whole.
fn subject_of(base64: &[u8]) -> Option<u64> {
    let mut der = Vec::with_capacity(NAMES_PREFIX / 4 * 3);
    let mut decoded = 0;
    for end in (FIRST_NAMES_TRY..=NAMES_PREFIX).step_by(NAMES_STEP).take_while(|&end| end < base64.len()) {
        if PEM_BASE64.decode_vec(&base64[decoded..end], &mut der).is_err() {
            break;
        }
        decoded = end;
        if let Some((_, subject)) = names(&der) {
            return Some(name_hash(subject));
        }
    }
    let der = decode(base64)?;
    names(&der).map(|(_, subject)| name_hash(subject))
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
