use super::*;
use pfxhttp_test_support::tls::{TlsFiles, make_tls_files};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{ServerName, UnixTime};
use std::os::unix::fs::MetadataExt;

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn pki_types_reading(path: &Path) -> Vec<Vec<u8>> {
    CertificateDer::pem_file_iter(path).unwrap().filter_map(Result::ok).map(|c| c.to_vec()).collect()
}

/// The DER bytes of every certificate section of `text` that decodes.
fn decoded(text: &[u8]) -> Vec<Vec<u8>> {
    let sections = pem_certificates(text).unwrap();
    let body = |p: &Pem| &text[p.body.start as usize..p.body.end as usize];
    sections.iter().filter_map(|p| decode(body(p))).collect()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes rustls's PEM reader gets from the same text, for every kind of input a bundle
/// can hold: CRLF lines, other sections, a section that does not decode, text between sections.
#[test]
fn pem_sections_decode_as_rustls_decodes_them() {
    let tls = make_tls_files();
    let ca = std::fs::read_to_string(&tls.ca_pem).unwrap();
    let leaf = std::fs::read_to_string(&tls.leaf_cert_pem).unwrap();
    let key = std::fs::read_to_string(&tls.leaf_key_pem).unwrap();
    let broken = "-----BEGIN CERTIFICATE-----\nno*base64*here\n-----END CERTIFICATE-----\n";
    // A space inside the CA's second line of base64.
    let mut lines: Vec<String> = ca.lines().map(String::from).collect();
    lines[2].insert(10, ' ');
    let spaced = lines.join("\n");
    let text = format!("# a comment\n{spaced}\n{key}{broken}{}", leaf.replace('\n', "\r\n"));
    let path = tls.dir.path().join("mixed.pem");
    std::fs::write(&path, &text).unwrap();
    let ours = decoded(text.as_bytes());
    assert_eq!(ours.len(), 2, "the CA and the leaf");
    assert_eq!(ours, pki_types_reading(&path));
    if Path::new(SYSTEM_BUNDLE).is_file() {
        let system = decoded(&std::fs::read(SYSTEM_BUNDLE).unwrap());
        assert_eq!(system, pki_types_reading(Path::new(SYSTEM_BUNDLE)));
    }
}

/// Lines that a read cuts in two (a buffer of 7 bytes, and the system bundle through the
/// buffer `Bundle::read` uses) give the same sections, at the same offsets, as the whole text.
#[test]
fn sections_do_not_depend_on_where_reads_end() {
    let tls = make_tls_files();
    let ca = std::fs::read_to_string(&tls.ca_pem).unwrap();
    let leaf = std::fs::read_to_string(&tls.leaf_cert_pem).unwrap();
    let text = format!("{ca}\n# between\n{}", leaf.replace('\n', "\r\n").trim_end());
    let system = std::fs::read(SYSTEM_BUNDLE).unwrap_or_default();
    let facts =
        |pems: Vec<Pem>| -> Vec<(Range<u64>, Option<u64>)> { pems.into_iter().map(|p| (p.body, p.subject)).collect() };
    for (text, capacity) in [(text.as_bytes(), 7), (&system[..], 32 * 1024)] {
        let whole = facts(pem_certificates(text).unwrap());
        let cut = facts(pem_certificates(std::io::BufReader::with_capacity(capacity, text)).unwrap());
        assert_eq!(cut, whole);
    }
    let whole = facts(pem_certificates(text.as_bytes()).unwrap());
    assert_eq!(whole.len(), 2, "the CA and the leaf, the last without a final line end");
    assert!(whole.iter().all(|(_, subject)| subject.is_some()));
}

/// The subject found for every certificate (from its first bytes) is the one webpki gives its
/// trust anchor, and a certificate's issuer is its CA's subject.
#[test]
fn subjects_are_webpkis() {
    let tls = make_tls_files();
    let mut paths = vec![tls.ca_pem.clone()];
    if Path::new(SYSTEM_BUNDLE).is_file() {
        paths.push(SYSTEM_BUNDLE.into());
    }
    for path in paths {
        let bundle = Bundle::read(&path, None).unwrap();
        for pem in &bundle.certs {
            let mut store = RootCertStore::empty();
            store.add(CertificateDer::from(bundle.der(pem).unwrap())).unwrap();
            assert_eq!(pem.subject, Some(name_hash(store.roots[0].subject.as_ref())));
        }
    }
    let ca = pki_types_reading(&tls.ca_pem).remove(0);
    let leaf = pki_types_reading(&tls.leaf_cert_pem).remove(0);
    assert_eq!(names(&leaf).unwrap().0, names(&ca).unwrap().1);
    assert_eq!(names(&leaf[..leaf.len() - 1]), names(&leaf), "the first bytes hold the names");
    assert_eq!(names(&leaf[..20]), None, "too few bytes");
}

/// Verifying against a bundle (the system's, when there is one, plus a local CA) gives the same
/// verdict as a store of every certificate: the local CA's leaf is trusted, another CA's is not,
/// with the same error.
#[test]
fn verdicts_are_the_whole_bundles() {
    let (tls, other) = (make_tls_files(), make_tls_files());
    let system = std::fs::read_to_string(SYSTEM_BUNDLE).unwrap_or_default();
    let path = tls.dir.path().join("bundle.pem");
    std::fs::write(&path, format!("{system}{}", std::fs::read_to_string(&tls.ca_pem).unwrap())).unwrap();
    let index_dir = tls.dir.path().join("state");
    std::fs::create_dir(&index_dir).unwrap();
    // Scanned, scanned and its index written, read from the index.
    for index in [None, Some(&index_dir), Some(&index_dir)] {
        let bundle = Bundle::read(&path, index.map(|d| place(d)).as_ref()).unwrap();
        assert_same_verdicts(&bundle, &path, [(&tls.leaf_cert_pem, true), (&other.leaf_cert_pem, false)]);
    }
}

/// Each leaf's verdict with `bundle` is the one a store of every certificate in `path` gives,
/// and trusted or not as said.
fn assert_same_verdicts<'a>(bundle: &Bundle, path: &Path, leaves: impl IntoIterator<Item = (&'a PathBuf, bool)>) {
    let mut whole = RootCertStore::empty();
    whole.add_parsable_certificates(pki_types_reading(path).into_iter().map(CertificateDer::from));
    let whole = WebPkiServerVerifier::builder_with_provider(Arc::new(whole), provider()).build().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    for (leaf, trusted) in leaves {
        let leaf = CertificateDer::from(pki_types_reading(leaf).remove(0));
        let verdict = |v: &WebPkiServerVerifier| v.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).err();
        let ours = bundle.verifier_for(&leaf, &[], &provider()).map(|v| verdict(&v));
        assert_eq!(ours, Ok(verdict(&whole)));
        assert_eq!(verdict(&whole).is_none(), trusted);
    }
}

/// A bundle of two CAs' certificates (`tls`'s, then `other`'s, whose texts are `cas`) and an
/// empty directory for its index, both in `tls`'s temporary directory.
struct TwoCas {
    tls: TlsFiles,
    other: TlsFiles,
    path: PathBuf,
    dir: PathBuf,
    cas: [String; 2],
}

fn two_cas() -> TwoCas {
    let (tls, other) = (make_tls_files(), make_tls_files());
    let path = tls.dir.path().join("bundle.pem");
    let cas = [&tls.ca_pem, &other.ca_pem].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&path, format!("{}{}", cas[0], cas[1])).unwrap();
    let dir = tls.dir.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    TwoCas { tls, other, path, dir, cas }
}

/// `dir` as the place where indexes are kept.
fn place(dir: &Path) -> IndexDir {
    let dir = dir.to_path_buf();
    IndexDir::new(move || std::fs::File::open(&dir).ok().map(std::os::fd::OwnedFd::from))
}

/// The index file of the bundle at `path` in `dir`, and its text.
fn index_of(dir: &Path) -> (PathBuf, String) {
    let mut files = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
    let file = files.find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("ca-index-")).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    (file, text)
}

/// The first read writes the index (0600); the next reads take what it says (here, an index
/// edited to know no subject: every certificate offered, the same verdicts); a changed bundle
/// is scanned again and its index written anew.
#[test]
fn the_index_is_read_until_the_bundle_changes() {
    let TwoCas { tls, other, path, dir, cas } = two_cas();
    let scanned = Bundle::read(&path, None).unwrap().certs;
    assert_eq!(Bundle::read(&path, Some(&place(&dir))).unwrap().certs, scanned);
    let (file, text) = index_of(&dir);
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(text.lines().count(), 3 + 2, "header, key, bundle, two certificates: {text}");

    let unknown: Vec<String> = text
        .lines()
        .map(|l| if l.ends_with(char::is_alphanumeric) && l.split(' ').count() == 3 { blank(l) } else { l.to_string() })
        .collect();
    std::fs::write(&file, unknown.join("\n") + "\n").unwrap();
    let from_index = Bundle::read(&path, Some(&place(&dir))).unwrap();
    assert!(from_index.certs.iter().all(|c| c.subject.is_none()), "{:?}", from_index.certs);
    assert_same_verdicts(&from_index, &path, [(&tls.leaf_cert_pem, true), (&other.leaf_cert_pem, true)]);

    // Another size, as the modification time may not have moved on yet.
    std::fs::write(&path, format!("# reordered\n{}{}", cas[1], cas[0])).unwrap();
    let rescanned = Bundle::read(&path, Some(&place(&dir))).unwrap();
    assert!(rescanned.certs.iter().all(|c| c.subject.is_some()), "scanned again");
    assert_ne!(index_of(&dir).1, text, "written anew");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
}

/// `START END HASH` with the hash replaced by `-`.
fn blank(line: &str) -> String {
    let (rest, _) = line.rsplit_once(' ').unwrap();
    format!("{rest} -")
}

/// An index that lies cannot make a certificate trusted that the bundle does not trust: a
/// certificate's place under another's subject, places that hold no certificate, the text of a
/// section that is not a `CERTIFICATE` (here one an administrator disabled), places beyond the
/// file or larger than memory, sections out of order. Neither does a lie crash the process.
#[test]
fn a_wrong_index_trusts_nothing_the_bundle_does_not() {
    let (tls, other) = (make_tls_files(), make_tls_files());
    let path = tls.dir.path().join("bundle.pem");
    let other_ca = std::fs::read_to_string(&other.ca_pem).unwrap();
    let disabled =
        std::fs::read_to_string(&tls.ca_pem).unwrap().replace(" CERTIFICATE-----", " DISABLED CERTIFICATE-----");
    let text = format!("{other_ca}{disabled}");
    std::fs::write(&path, &text).unwrap();
    let hidden_start = text.find("DISABLED CERTIFICATE-----\n").unwrap() + "DISABLED CERTIFICATE-----\n".len();
    let hidden_end = text.rfind("-----END DISABLED").unwrap();
    let dir = tls.dir.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    let scanned = Bundle::read(&path, Some(&place(&dir))).unwrap().certs;
    assert_eq!(scanned.len(), 1, "the disabled section is no certificate");
    let (file, index) = index_of(&dir);
    let tls_leaf = pki_types_reading(&tls.leaf_cert_pem).remove(0);
    let tls_issuer = name_hash(names(&tls_leaf).unwrap().0);
    let lines: Vec<&str> = index.lines().collect();
    let (head, entry) = (lines[..3].join("\n"), lines[3]);
    let (range, _) = entry.rsplit_once(' ').unwrap();
    let lies = [
        format!("{range} {tls_issuer:016x}"),
        format!("0 5 {tls_issuer:016x}"),
        "7 7 -".to_string(),
        format!("{hidden_start} {hidden_end} -"),
        format!("{hidden_start} {hidden_end} {tls_issuer:016x}"),
        format!("{range} -\n{hidden_start} {hidden_end} -"),
        "0 70368744177664 -".to_string(),
        format!("0 {} -", u64::MAX),
        format!("{hidden_start} {hidden_end} -\n{range} -"),
    ];
    let name = ServerName::try_from("localhost").unwrap();
    for lie in lies {
        std::fs::write(&file, format!("{head}\n{lie}\n")).unwrap();
        let bundle = Bundle::read(&path, Some(&place(&dir))).unwrap();
        let leaf = CertificateDer::from(tls_leaf.clone());
        let trusted = bundle
            .verifier_for(&leaf, &[], &provider())
            .is_ok_and(|v| v.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).is_ok());
        assert!(!trusted, "{lie}");
    }
    // The genuine index, and the disabled section enabled: trusted, so the test can fail.
    std::fs::write(&path, text.replace(" DISABLED CERTIFICATE-----", " CERTIFICATE-----")).unwrap();
    let bundle = Bundle::read(&path, Some(&place(&dir))).unwrap();
    let leaf = CertificateDer::from(tls_leaf);
    let verifier = bundle.verifier_for(&leaf, &[], &provider()).unwrap();
    assert!(verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).is_ok());
}

/// Sections out of order, or beyond the end of the file, make the index unusable: the bundle is
/// scanned again. So does something other than a file in the index's place (a FIFO, whose
/// open would otherwise wait for a writer).
#[test]
fn an_unusable_index_is_replaced_by_a_scan() {
    let TwoCas { tls: _tls, path, dir, .. } = two_cas();
    let scanned = Bundle::read(&path, Some(&place(&dir))).unwrap().certs;
    let (file, index) = index_of(&dir);
    let lines: Vec<&str> = index.lines().collect();
    let size = std::fs::metadata(&path).unwrap().len();
    let blanked: Vec<String> = lines[3..].iter().map(|l| blank(l)).collect();
    for entries in [format!("{}\n{}", blanked[1], blanked[0]), format!("{}\n0 {} -", blanked[0], size + 1)] {
        std::fs::write(&file, format!("{}\n{entries}\n", lines[..3].join("\n"))).unwrap();
        assert_eq!(Bundle::read(&path, Some(&place(&dir))).unwrap().certs, scanned, "{entries}");
    }
    std::fs::remove_file(&file).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&file).status().unwrap();
    assert!(made.success());
    assert_eq!(Bundle::read(&path, Some(&place(&dir))).unwrap().certs, scanned);
}

#[test]
fn a_bundle_without_certificates_is_refused() {
    let tls = make_tls_files();
    let empty = tls.dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    assert_eq!(Bundle::read(&empty, None).unwrap_err(), format!("no PEM certificate in {}", empty.display()));
    // A certificate whose first bytes decode but whose end does not: the same error, at the
    // handshake that reads the bundle, as when it was decoded whole there.
    let ca = std::fs::read_to_string(&tls.ca_pem).unwrap();
    let broken = tls.dir.path().join("broken.pem");
    std::fs::write(&broken, ca.replace("-----END", "*\n-----END")).unwrap();
    let leaf = CertificateDer::from(pki_types_reading(&tls.leaf_cert_pem).remove(0));
    let why = Bundle::read(&broken, None).unwrap().verifier_for(&leaf, &[], &provider()).unwrap_err();
    assert_eq!(why, format!("no PEM certificate in {}", broken.display()));
    let missing = tls.dir.path().join("missing.pem");
    assert!(
        Bundle::read(&missing, None)
            .unwrap_err()
            .starts_with(&format!("cannot read {}: I/O error: ", missing.display()))
    );
}
