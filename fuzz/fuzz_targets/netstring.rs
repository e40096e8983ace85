//! Netstring framing (socketmap_table(5)), the socketmap request split on top of it, and the
//! socketmap replies made from a backend's value.
//!
//! The first input byte picks the payload limit (and the reply limit); the rest is what the
//! client sent, and also what a backend answered. Every answer
//! of the decoder is checked against a small independent model of the format, so a wrong
//! `Incomplete` (a reader that would wait for bytes it must refuse) fails as surely as a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfxhttp::answer::Outcome;
use pfxhttp::proto::{Decoded, netstring, socketmap};
use pfxhttp::reply;

/// What the decoder must say, worked out the slow and obvious way.
#[derive(Debug, PartialEq)]
enum Expect {
    Frame(std::ops::Range<usize>, usize),
    Incomplete,
    Invalid,
}

fn model(buf: &[u8], max_len: usize) -> Expect {
    let max_digits = max_len.to_string().len();
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    // Too many digits, or a value over the limit within the digits allowed: refused at once.
    if digits > max_digits {
        return Expect::Invalid;
    }
    // u128: twenty digits may exceed usize::MAX, and the model must not overflow either.
    let value: u128 = if digits == 0 { 0 } else { std::str::from_utf8(&buf[..digits]).unwrap().parse().unwrap() };
    if value > max_len as u128 {
        return Expect::Invalid;
    }
    match buf.get(digits) {
        None => Expect::Incomplete,
        Some(b':') if digits > 0 => {
            // A payload that does not fit in the buffer (or in memory) is simply not there yet.
            let Some(end) = usize::try_from(value).ok().and_then(|v| v.checked_add(digits + 1)) else {
                return Expect::Incomplete;
            };
            match buf.get(end) {
                None => Expect::Incomplete,
                Some(b',') => Expect::Frame(digits + 1..end, end + 1),
                Some(_) => Expect::Invalid,
            }
        }
        Some(_) => Expect::Invalid,
    }
}

fn limit(selector: u8) -> usize {
    match selector % 8 {
        0 => 0,
        1 => 9,
        2 => 10,
        3 => 99,
        4 => 100_000,
        5 => usize::MAX,
        _ => usize::from(selector),
    }
}

/// Postfix's socketmap client never sends `"<>"`, but the Go pfxhttp unquoted it; so does this.
fn unquote_model(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < key.len() {
        if key[i..].starts_with(b"\"<>\"") {
            out.extend_from_slice(b"<>");
            i += 4;
        } else {
            out.push(key[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, buf)) = data.split_first() else { return };
    let max_len = limit(selector);

    let got = netstring::decode(buf, max_len);
    let want = model(buf, max_len);
    match (&got, &want) {
        (Decoded::Frame(range, used), Expect::Frame(r, u)) => {
            assert_eq!((range, used), (r, u), "frame bounds");
            assert!(range.end < *used && *used <= buf.len(), "frame outside the buffer");
            let payload = &buf[range.clone()];
            assert!(payload.len() <= max_len, "payload over the limit");
            // Postfix reads leading zeros as digits, and so does the decoder; apart from those
            // the consumed bytes are exactly what `encode` writes for the payload.
            let digits = range.start - 1;
            let zeros = buf[..digits - 1].iter().take_while(|&&b| b == b'0').count();
            assert_eq!(netstring::encode(payload), &buf[zeros..*used], "encode(payload) != consumed bytes");
            // A pipelined request behind it changes nothing.
            let mut more = buf[..*used].to_vec();
            more.extend_from_slice(b"4:ab c,");
            assert_eq!(netstring::decode(&more, max_len), got);
        }
        (Decoded::Incomplete, Expect::Incomplete) => {
            // Never wait for more than a request that could still be accepted.
            let longest = max_len.to_string().len().saturating_add(2).saturating_add(max_len);
            assert!(buf.len() < longest, "incomplete after {} bytes, limit {max_len}", buf.len());
        }
        (Decoded::Invalid(why), Expect::Invalid) => assert!(!why.is_empty()),
        _ => panic!("netstring::decode({buf:?}, {max_len}) = {got:?}, expected {want:?}"),
    }

    // encode/decode round trip for any payload that fits.
    if buf.len() <= max_len {
        let framed = netstring::encode(buf);
        assert_eq!(
            netstring::decode(&framed, max_len),
            Decoded::Frame(framed.len() - buf.len() - 1..framed.len() - 1, framed.len())
        );
    }

    // The socketmap layer: the same framing, then `<name> <key>` split at the first space.
    match (socketmap::decode(buf, max_len), &want) {
        (Decoded::Frame(req, used), Expect::Frame(range, u)) => {
            assert_eq!(used, *u);
            let payload = &buf[range.clone()];
            let space = payload.iter().position(|&b| b == b' ').expect("a request without a space");
            assert!(space > 0, "empty map name accepted");
            assert!(!req.name.is_empty() && !req.name.contains(' '));
            assert_eq!(req.name, String::from_utf8_lossy(&payload[..space]));
            assert_eq!(req.key, unquote_model(&payload[space + 1..]));
        }
        (Decoded::Invalid(_), Expect::Frame(range, _)) => {
            let payload = &buf[range.clone()];
            assert!(payload.first().is_none_or(|&b| b == b' ') || !payload.contains(&b' '), "valid request refused");
        }
        (Decoded::Incomplete, Expect::Incomplete) | (Decoded::Invalid(_), Expect::Invalid) => {}
        (other, _) => panic!("socketmap::decode({buf:?}, {max_len}) = {other:?}, expected {want:?}"),
    }

    // Replies: a backend's value becomes `OK <value>` within the reply limit, or a refusal that
    // Postfix defers on; never a control character, and the frame holds exactly the text.
    let value = String::from_utf8_lossy(buf);
    let cleaned = reply::clean(&value);
    let text = reply::socketmap(&Outcome::Found(value.to_string()), max_len).wire;
    assert!(!text.chars().any(char::is_control), "{text:?}");
    if cleaned.is_empty() {
        assert_eq!(text, "NOTFOUND ");
    } else if cleaned.len() + 3 <= max_len {
        assert_eq!(text, format!("OK {cleaned}"));
    } else {
        assert!(text.starts_with("PERM "), "{text:?}");
    }
    let framed = netstring::encode(text.as_bytes());
    assert_eq!(
        netstring::decode(&framed, usize::MAX),
        Decoded::Frame(framed.len() - text.len() - 1..framed.len() - 1, framed.len())
    );
    for failure in [
        Outcome::temporary(value.to_string()),
        Outcome::timeout(value.to_string()),
        Outcome::permanent(value.to_string()),
    ] {
        let text = reply::socketmap(&failure, max_len).wire;
        assert!(["TEMP ", "TIMEOUT ", "PERM "].iter().any(|w| text.starts_with(w)), "{text:?}");
        assert!(!text.chars().any(char::is_control) && text.len() <= 8 + 300, "{text:?}");
    }
});
