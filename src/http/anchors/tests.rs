use super::*;
use pfxhttp_test_support::tls::make_tls_files;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{ServerName, UnixTime};

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
    let facts = |pems: Vec<Pem>| -> Vec<(Range<u64>, Option<Vec<u8>>)> {
        pems.into_iter().map(|p| (p.body, p.subject)).collect()
    };
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
        let bundle = Bundle::read(&path).unwrap();
        for pem in &bundle.certs {
            let mut store = RootCertStore::empty();
            store.add(CertificateDer::from(bundle.der(pem).unwrap())).unwrap();
            assert_eq!(pem.subject.as_deref(), Some(store.roots[0].subject.as_ref()));
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
    let bundle = Bundle::read(&path).unwrap();
    let mut whole = RootCertStore::empty();
    whole.add_parsable_certificates(pki_types_reading(&path).into_iter().map(CertificateDer::from));
    let whole = WebPkiServerVerifier::builder_with_provider(Arc::new(whole), provider()).build().unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    for (leaf, trusted) in [(&tls.leaf_cert_pem, true), (&other.leaf_cert_pem, false)] {
        let leaf = CertificateDer::from(pki_types_reading(leaf).remove(0));
        let ours = bundle.verifier_for(&leaf, &[], &provider()).unwrap();
        let verdict = |v: &WebPkiServerVerifier| v.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).err();
        assert_eq!(verdict(&ours), verdict(&whole));
        assert_eq!(verdict(&ours).is_none(), trusted);
    }
}

#[test]
fn a_bundle_without_certificates_is_refused() {
    let tls = make_tls_files();
    let empty = tls.dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing here\n").unwrap();
    assert_eq!(Bundle::read(&empty).unwrap_err(), format!("no PEM certificate in {}", empty.display()));
    // A certificate whose first bytes decode but whose end does not: the same error, at the
    // handshake that reads the bundle, as when it was decoded whole there.
    let ca = std::fs::read_to_string(&tls.ca_pem).unwrap();
    let broken = tls.dir.path().join("broken.pem");
    std::fs::write(&broken, ca.replace("-----END", "*\n-----END")).unwrap();
    let leaf = CertificateDer::from(pki_types_reading(&tls.leaf_cert_pem).remove(0));
    let why = Bundle::read(&broken).unwrap().verifier_for(&leaf, &[], &provider()).unwrap_err();
    assert_eq!(why, format!("no PEM certificate in {}", broken.display()));
    let missing = tls.dir.path().join("missing.pem");
    assert!(
        Bundle::read(&missing).unwrap_err().starts_with(&format!("cannot read {}: I/O error: ", missing.display()))
    );
}
