use super::*;

fn id(n: u32) -> Id {
    Id::new(n).unwrap()
}

fn frame(line: &[u8]) -> Request {
    match decode(line) {
        Decoded::Frame(request, used) => {
            assert_eq!(used, line.len(), "{}", line.escape_ascii());
            request
        }
        other => panic!("{}: {other:?}", line.escape_ascii()),
    }
}

fn invalid(buf: &[u8]) -> String {
    match decode(buf) {
        Decoded::Invalid(why) => why,
        other => panic!("{}: expected Invalid, got {other:?}", buf.escape_ascii()),
    }
}

#[test]
fn handshake_bytes() {
    let cookie: [u8; 16] =
        [0x00, 0x01, 0xab, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0];
    assert_eq!(
        handshake(Mechanism::offered(false), 4242, 1, &cookie),
        b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t4242\nCUID\t1\n\
          COOKIE\t0001abff102030405060708090a0b0c0\nDONE\n"
    );
    assert_eq!(
        handshake(Mechanism::offered(true), 7, 3, &[0xee; 16]),
        b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nMECH\tXOAUTH2\tplaintext\n\
          MECH\tOAUTHBEARER\tplaintext\nSPID\t7\nCUID\t3\nCOOKIE\teeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\nDONE\n"
    );
}

#[test]
fn mechanism_names_are_case_insensitive() {
    assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
    assert_eq!(Mechanism::parse("Login"), Some(Mechanism::Login));
    assert_eq!(Mechanism::parse("xoauth2"), Some(Mechanism::XOAuth2));
    assert_eq!(Mechanism::parse("OAuthBearer"), Some(Mechanism::OAuthBearer));
    for unknown in ["", "CRAM-MD5", "PLAIN ", "PLAINX", "ANONYMOUS"] {
        assert_eq!(Mechanism::parse(unknown), None, "{unknown:?}");
    }
}

#[test]
fn client_greeting_as_postfix_sends_it() {
    let buf = b"VERSION\t1\t0\nCPID\t12345\n";
    assert_eq!(decode(buf), Decoded::Frame(Request::Version { minor: 0 }, 12));
    assert_eq!(frame(&buf[12..]), Request::Cpid(12345));
}

#[test]
fn other_major_versions_and_bad_greetings_are_invalid() {
    for bad in [
        &b"VERSION\t2\t0\n"[..],
        b"VERSION\t1\n",
        b"VERSION\t01x\t0\n",
        b"VERSION\t1\t-1\n",
        b"CPID\n",
        b"CPID\tabc\n",
        b"CPID\t1\t2\n",
    ] {
        invalid(bad);
    }
}

#[test]
fn auth_as_postfix_sends_it() {
    let line = b"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=192.0.2.1\trip=198.51.100.7\tsecured\tresp=AHVAeABw\n";
    assert_eq!(
        frame(line),
        Request::Auth(Auth {
            id: id(1),
            mechanism: "PLAIN".into(),
            params: Params {
                service: Some("smtp".into()),
                local_ip: Some("192.0.2.1".into()),
                remote_ip: Some("198.51.100.7".into()),
                secured: true,
            },
            resp: Some("AHVAeABw".into()),
        })
    );
}

#[test]
fn auth_without_tls_or_initial_response() {
    let Request::Auth(auth) = frame(b"AUTH\t4294967295\tlogin\tservice=submission\tnologin\tlip=::1\trip=::1\n") else {
        panic!("not an AUTH");
    };
    assert_eq!(auth.id, id(u32::MAX));
    assert_eq!(auth.mechanism, "login");
    assert_eq!(auth.params.service.as_deref(), Some("submission"));
    assert!(!auth.params.secured);
    assert_eq!(auth.resp, None);
}

#[test]
fn empty_initial_response_is_kept_apart_from_none() {
    // `AUTH PLAIN =` reaches us as `resp==`; a bare `resp=` is empty too.
    let Request::Auth(auth) = frame(b"AUTH\t2\tPLAIN\tservice=smtp\tresp==\n") else { panic!() };
    assert_eq!(auth.resp.as_deref(), Some("="));
    let Request::Auth(auth) = frame(b"AUTH\t2\tPLAIN\tresp=\n") else { panic!() };
    assert_eq!(auth.resp.as_deref(), Some(""));
}

#[test]
fn unknown_auth_parameters_are_ignored() {
    let Request::Auth(auth) = frame(b"AUTH\t9\tPLAIN\t\tlport=25\tfoo\tsecuredx\tservice=smtp\n") else { panic!() };
    assert_eq!(auth.params, Params { service: Some("smtp".into()), ..Params::default() });
}

#[test]
fn bad_ids_are_invalid() {
    for bad in [
        &b"AUTH\t0\tPLAIN\tservice=smtp\n"[..],
        b"AUTH\t01\tPLAIN\n",
        b"AUTH\t+1\tPLAIN\n",
        b"AUTH\t-1\tPLAIN\n",
        b"AUTH\t 1\tPLAIN\n",
        b"AUTH\tx\tPLAIN\n",
        b"AUTH\t\tPLAIN\n",
        b"AUTH\t4294967296\tPLAIN\n",
        b"CONT\t0\tAA==\n",
        b"CONT\tabc\tAA==\n",
    ] {
        invalid(bad);
    }
}

#[test]
fn malformed_auth_and_cont_are_invalid() {
    for bad in [
        &b"AUTH\n"[..],
        b"AUTH\t1\n",
        b"AUTH\t1\tPLAIN\tresp=AA==\tservice=smtp\n",
        b"CONT\t1\n",
        b"CONT\t1\tAA==\textra\n",
        b"CANCEL\t1\n",
        b"auth\t1\tPLAIN\n",
        b"\n",
    ] {
        invalid(bad);
    }
}

#[test]
fn cont_lines() {
    assert_eq!(frame(b"CONT\t5\tdXNlcg==\n"), Request::Cont { id: id(5), data: "dXNlcg==".into() });
    // An empty SMTP answer comes back as an empty data field.
    assert_eq!(frame(b"CONT\t5\t\n"), Request::Cont { id: id(5), data: String::new() });
}

#[test]
fn split_reads_are_incomplete_then_pipelined_lines_one_at_a_time() {
    let line = b"AUTH\t3\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=127.0.0.1\tresp=AHVAeABw\n";
    for cut in 0..line.len() {
        assert_eq!(decode(&line[..cut]), Decoded::Incomplete, "cut at {cut}");
    }
    let mut two = line.to_vec();
    two.extend_from_slice(b"CONT\t3\tAA==\n");
    assert!(matches!(decode(&two), Decoded::Frame(Request::Auth(_), n) if n == line.len()));
}

#[test]
fn line_cap_is_16_kib_with_its_lf() {
    let head = b"AUTH\t7\tPLAIN\tservice=smtp\tresp=";
    let longest = [&head[..], &vec![b'A'; MAX_LINE - 1 - head.len()], b"\n"].concat();
    assert_eq!(longest.len(), MAX_LINE);
    assert!(matches!(decode(&longest), Decoded::Frame(Request::Auth(_), MAX_LINE)));

    let over = [&head[..], &vec![b'A'; MAX_LINE - head.len()], b"\n"].concat();
    invalid(&over);
    // Refused as soon as the cap is reached, before the LF arrives.
    invalid(&over[..MAX_LINE]);
    assert_eq!(decode(&over[..MAX_LINE - 1]), Decoded::Incomplete);
    // The server can still answer with the request's own id before it closes.
    assert_eq!(line_id(&over), Some(id(7)));
}

#[test]
fn line_id_reads_only_auth_and_cont_ids() {
    assert_eq!(line_id(b"AUTH\t12\tPLAIN"), Some(id(12)));
    assert_eq!(line_id(b"CONT\t4294967295\t"), Some(id(u32::MAX)));
    for none in [&b"AUTH\t12"[..], b"AUTH\t0\tX", b"AUTH\t012\tX", b"AUTH\t42949672950\tX", b"VERSION\t1\t0", b""] {
        assert_eq!(line_id(none), None, "{}", none.escape_ascii());
    }
}

#[test]
fn control_bytes_and_bad_utf8_are_invalid() {
    for bad in [
        &b"AUTH\t1\tPLAIN\tservice=smtp\r\n"[..],
        b"AUTH\t1\tPLAIN\tservice=sm\x00tp\n",
        b"AUTH\t1\tPLAIN\tservice=a\x01tb\n",
        b"AUTH\t1\tPL\x7fAIN\n",
        b"CONT\t1\tAA\x1b\n",
        b"AUTH\t1\tPLAIN\tservice=\xff\n",
    ] {
        invalid(bad);
    }
}

#[test]
fn invalid_messages_never_quote_the_secret() {
    // The over-long resp, the payload after resp and a CONT with a control byte are all secret.
    let secret = "c2VjcmV0LXBhc3N3b3Jk";
    let long = format!("AUTH\t1\tPLAIN\tresp={}\n", secret.repeat(1000));
    let after = format!("AUTH\t1\tPLAIN\tresp={secret}\tx\n");
    let control = format!("CONT\t1\t{secret}\x01\n");
    for bad in [long, after, control] {
        let why = invalid(bad.as_bytes());
        assert!(!why.contains("c2Vj"), "{why}");
    }
}

#[test]
fn replies_carry_the_request_id() {
    assert_eq!(cont(id(7), b""), b"CONT\t7\t\n");
    assert_eq!(cont(id(7), b"Username:"), b"CONT\t7\tVXNlcm5hbWU6\n");
    assert_eq!(cont(id(8), b"Password:"), b"CONT\t8\tUGFzc3dvcmQ6\n");
    assert_eq!(ok(id(21), "user@example.org").unwrap(), b"OK\t21\tuser=user@example.org\n");
    assert_eq!(ok(id(1), "jürgen").unwrap(), "OK\t1\tuser=jürgen\n".as_bytes());
    assert_eq!(fail(id(23), FailReason::InvalidLogin), b"FAIL\t23\treason=Invalid login or password\n");
    assert_eq!(fail(id(2), FailReason::InvalidRequest), b"FAIL\t2\treason=invalid request\n");
    assert_eq!(fail(id(3), FailReason::UnsupportedMechanism), b"FAIL\t3\treason=unsupported mechanism\n");
}

#[test]
fn ok_refuses_names_that_would_break_the_stream() {
    // A name that would end the line and forge an OK for the next request, padded as in the
    // attack on smtpd's 4096-byte buffer.
    let forged = format!("{}\nOK\t22\tuser=victim@example.org", "a".repeat(4080));
    assert_eq!(ok(id(21), &forged), Err(UnsafeUser::Control('\n')));
    for (name, c) in [
        ("a\tb", '\t'),
        ("a\rb", '\r'),
        ("a\0b", '\0'),
        ("a\x01tb", '\x01'),
        ("a\x7f", '\x7f'),
        ("a\u{85}b", '\u{85}'),
        ("x\u{9b}31m", '\u{9b}'),
    ] {
        assert_eq!(ok(id(1), name), Err(UnsafeUser::Control(c)), "{name:?}");
    }
    assert_eq!(ok(id(1), ""), Err(UnsafeUser::Empty));
    assert_eq!(UnsafeUser::Control('\n').to_string(), "the user name holds the control character '\\n'");
}
