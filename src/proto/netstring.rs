//! Netstrings, as socketmap_table(5) uses them: `<length>:<payload>,`.
//!
//! The length is ASCII digits only (no sign, no spaces); nothing may stand before or after a
//! netstring. Postfix's own reader (`util/netstring.c`) is as strict.

use super::Decoded;

/// Decodes one netstring at the start of `buf`; the frame is the payload's byte range.
///
/// `max_len` caps the payload length. It is checked while the digits are read, so a length of
/// `100000000000000` is refused after a few bytes, before any allocation.
pub fn decode(buf: &[u8], max_len: usize) -> Decoded<std::ops::Range<usize>> {
    let max_digits = digits(max_len);
    let mut len: usize = 0;
    for (i, &b) in buf.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                if i >= max_digits {
                    return Decoded::Invalid(format!("netstring length has more than {max_digits} digits"));
                }
                // Checked: with a limit near usize::MAX the twentieth digit could overflow.
                len = match len.checked_mul(10).and_then(|l| l.checked_add(usize::from(b - b'0'))) {
                    Some(l) if l <= max_len => l,
                    _ => return Decoded::Invalid(format!("netstring length over the limit of {max_len} bytes")),
                };
            }
            b':' if i > 0 => {
                let start = i + 1;
                // A payload that would end past usize::MAX is never all there.
                let Some(end) = start.checked_add(len) else { return Decoded::Incomplete };
                return match buf.get(end) {
                    None => Decoded::Incomplete,
                    Some(b',') => Decoded::Frame(start..end, end + 1),
                    Some(&other) => Decoded::Invalid(format!(
                        "netstring of {len} bytes not terminated by ',' (found byte 0x{other:02x})"
                    )),
                };
            }
            other => {
                return Decoded::Invalid(format!("byte 0x{other:02x} where a netstring length digit was expected"));
            }
        }
    }
    Decoded::Incomplete
}

/// Frames `payload` as a netstring with its full length (any size).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 12);
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
    out
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(buf: &[u8]) -> Decoded<&[u8]> {
        match decode(buf, 100_000) {
            Decoded::Frame(r, used) => Decoded::Frame(&buf[r], used),
            Decoded::Incomplete => Decoded::Incomplete,
            Decoded::Invalid(e) => Decoded::Invalid(e),
        }
    }

    #[test]
    fn complete_request() {
        assert_eq!(frame(b"7:demo ok,"), Decoded::Frame(&b"demo ok"[..], 10));
    }

    #[test]
    fn leaves_pipelined_bytes() {
        assert_eq!(frame(b"7:demo ok,7:demo no,"), Decoded::Frame(&b"demo ok"[..], 10));
    }

    #[test]
    fn empty_payload() {
        assert_eq!(frame(b"0:,"), Decoded::Frame(&b""[..], 3));
    }

    #[test]
    fn partial_input_is_incomplete() {
        for partial in [&b""[..], b"7", b"7:", b"7:demo", b"7:demo ok", b"12"] {
            assert_eq!(frame(partial), Decoded::Incomplete, "{partial:?}");
        }
    }

    #[test]
    fn malformed_lengths() {
        for bad in
            [&b"-1:,"[..], b"x7:demo ok,", b"\n7:demo ok,", b" 7:demo ok,", b":,", b"7 :demo ok,", b"+7:demo ok,"]
        {
            assert!(matches!(frame(bad), Decoded::Invalid(_)), "{bad:?}");
        }
    }

    #[test]
    fn wrong_terminator() {
        assert!(matches!(frame(b"7:demo ok;"), Decoded::Invalid(_)));
        assert!(matches!(frame(b"7:demo okk"), Decoded::Invalid(_)));
    }

    #[test]
    fn huge_length_refused_before_the_body_arrives() {
        assert!(matches!(frame(b"100000000000000:"), Decoded::Invalid(_)));
        assert!(matches!(frame(b"100001:"), Decoded::Invalid(_)));
        assert!(matches!(frame(b"1000000"), Decoded::Invalid(_)), "too many digits even without ':'");
        assert_eq!(frame(b"100000:"), Decoded::Incomplete);
    }

    #[test]
    fn no_overflow_with_the_largest_limit() {
        // Found by fuzz/fuzz_targets/netstring.rs: the twentieth digit overflowed `len * 10`.
        assert!(matches!(decode(b"50000055161509551615", usize::MAX), Decoded::Invalid(_)));
        assert!(matches!(decode(b"99999999999999999999:", usize::MAX), Decoded::Invalid(_)));
        let max = usize::MAX.to_string();
        assert_eq!(decode(format!("{max}:").as_bytes(), usize::MAX), Decoded::Incomplete);
        assert_eq!(decode(format!("{}:x", usize::MAX - 2).as_bytes(), usize::MAX), Decoded::Incomplete);
    }

    #[test]
    fn leading_zeros_are_digits() {
        assert_eq!(frame(b"007:demo ok,"), Decoded::Frame(&b"demo ok"[..], 12));
    }

    #[test]
    fn encode_frames_any_length() {
        assert_eq!(encode(b"OK mapped-ok"), b"12:OK mapped-ok,");
        assert_eq!(encode(b"NOTFOUND "), b"9:NOTFOUND ,");
        let big = vec![b'a'; 70_000];
        let framed = encode(&big);
        assert!(framed.starts_with(b"70000:"));
        assert_eq!(framed.len(), 70_000 + 7);
        assert_eq!(framed.last(), Some(&b','));
    }
}
