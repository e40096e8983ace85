//! tcp_table(5): `get` requests, Postfix's `%XX` quoting both ways, and reply lines.
//!
//! The first input byte picks the request limit. The decoded key is compared with a small
//! independent model of Postfix's `hex_unquote`, which takes exactly two hex digits after `%`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfxhttp::answer::Outcome;
use pfxhttp::proto::{Decoded, tcp};
use pfxhttp::reply;

/// `%` followed by exactly two hex digits; anything else after `%` is malformed.
fn unquote_model(quoted: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < quoted.len() {
        if quoted[i] == b'%' {
            let hex = quoted.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let digit = |b: u8| (b as char).to_digit(16).unwrap() as u8;
            out.push(digit(hex[0]) * 16 + digit(hex[1]));
            i += 3;
        } else {
            out.push(quoted[i]);
            i += 1;
        }
    }
    Some(out)
}

fn check_line(line: &[u8], code: u16) {
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "not one line: {line:?}");
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(!line.contains(&b'\r'), "CR in a reply line: {line:?}");
    assert!(line.starts_with(format!("{code} ").as_bytes()), "{line:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, buf)) = data.split_first() else { return };
    let max_len = usize::from(selector) * 4;

    match tcp::decode(buf, max_len) {
        Decoded::Frame(key, used) => {
            let nl = buf.iter().position(|&b| b == b'\n').expect("a frame without a newline");
            assert_eq!(used, nl + 1);
            assert!(nl <= max_len);
            let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
            let quoted = line.strip_prefix(b"get ").expect("not a get request");
            assert_eq!(Some(key), unquote_model(quoted), "key of {line:?}");
        }
        Decoded::Incomplete => {
            assert!(!buf.contains(&b'\n') && buf.len() <= max_len, "waiting without cause: {buf:?}");
        }
        Decoded::Invalid(why) => {
            assert!(!why.is_empty());
            let nl = buf.iter().position(|&b| b == b'\n');
            let line = nl.map(|nl| buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]));
            let cause = match (nl, line) {
                (Some(nl), Some(line)) => {
                    nl > max_len || line.strip_prefix(b"get ").is_none_or(|q| unquote_model(q).is_none())
                }
                _ => buf.len() > max_len,
            };
            assert!(cause, "refused without a reason: {buf:?}");
        }
    }
    assert_eq!(tcp::hex_unquote(buf), unquote_model(buf), "hex_unquote({buf:?})");

    // Quoting: printable ASCII only, no space, `%` only in escapes, and it undoes exactly.
    let quoted = tcp::hex_quote(buf);
    let escapes = quoted.bytes().filter(|&b| b == b'%').count();
    assert_eq!(quoted.len(), buf.len() + 2 * escapes);
    assert!(quoted.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{quoted:?}");
    for (i, _) in quoted.match_indices('%') {
        let hex = &quoted.as_bytes()[i + 1..i + 3];
        assert!(hex.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "{quoted:?}");
    }
    assert_eq!(tcp::hex_unquote(quoted.as_bytes()).as_deref(), Some(buf));
    let get = format!("get {quoted}\n");
    assert_eq!(tcp::decode(get.as_bytes(), get.len()), Decoded::Frame(buf.to_vec(), get.len()));

    // `encode` frames what it is given (reply.rs passes quoted values and cleaned reasons) ...
    let text = String::from_utf8_lossy(buf);
    for code in [200, 400, 500] {
        assert_eq!(tcp::encode(code, &text), format!("{code} {text}\n").into_bytes());
    }
    // ... and a backend's value or failure reason always becomes one line.
    let line = reply::tcp(&Outcome::Found(text.to_string())).wire;
    assert!(line.len() <= tcp::MAX_REPLY_LINE, "reply of {} bytes", line.len());
    if let Some(value) = line.strip_prefix(b"200 ") {
        check_line(&line, 200);
        let value = tcp::hex_unquote(value.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(value, reply::clean(&text).into_bytes(), "value changed on the way");
    }
    let line = reply::tcp(&Outcome::temporary(text.to_string())).wire;
    check_line(&line, 400);
    assert!(line.len() <= tcp::MAX_REPLY_LINE);
});
