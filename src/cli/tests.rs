use super::*;

fn os(args: &[&str]) -> Vec<OsString> {
    std::iter::once("pfxhttp").chain(args.iter().copied()).map(OsString::from).collect()
}

/// Every command line the fast path reads, clap reads the same; the ones it leaves alone
/// include each form clap refuses or reads differently.
#[test]
fn the_serving_fast_path_reads_what_clap_reads() {
    let read = [
        &["socketmap"][..],
        &["--config", "/etc/pfxhttp/pfxhttp.yml", "socketmap"],
        &["-c", "p.yml", "tcp", "virtual"],
        &["--config=p.yml", "policy"],
        &["policy", "--config", "p.yml", "greylist"],
        &["sasl", "smtp-auth", "-c", "p.yml"],
        &["sasl"],
        &["tcp", "help"],
    ];
    for args in read {
        let fast = Cli::serving(&os(args)).unwrap_or_else(|| panic!("{args:?} not read"));
        let clap = Cli::try_parse_from(os(args)).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{clap:?}"), "{args:?}");
    }
    let left = [
        &[][..],
        &["-c", "a", "-c", "b", "socketmap"],
        &["--config", "", "socketmap"],
        &["--config", "-x", "socketmap"],
        &["--config"],
        &["-cp.yml", "socketmap"],
        &["--format", "json", "socketmap"],
        &["socketmap", "extra"],
        &["tcp"],
        &["tcp", "-m"],
        &["policy", "a", "b"],
        &["--", "socketmap"],
        &["help", "socketmap"],
        &["socketmap", "--help"],
        &["--version"],
        &["query", "m", "k"],
    ];
    for args in left {
        assert!(Cli::serving(&os(args)).is_none(), "{args:?} should go to clap");
    }
    use std::os::unix::ffi::OsStringExt;
    let mut not_utf8 = os(&["-c"]);
    not_utf8.extend([OsString::from_vec(vec![0xff]), OsString::from("socketmap")]);
    assert!(Cli::serving(&not_utf8).is_none());
}
