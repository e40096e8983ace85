//! tcp_table(5): request `get <key>\n`, reply one line `<3 digits> <text>\n` of at most 4096 bytes.
//!
//! Keys arrive `%XX`-encoded (Postfix's `hex_quote`: `%`, white space, control and non-ASCII
//! bytes); values are sent back encoded the same way.

use super::Decoded;

/// The longest reply line Postfix accepts, newline included.
pub const MAX_REPLY_LINE: usize = 4096;

/// Decodes one `get` request at the start of `buf`; the frame is the decoded key.
pub fn decode(buf: &[u8], max_len: usize) -> Decoded<Vec<u8>> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > max_len {
            return Decoded::Invalid(format!("tcp_table request over the limit of {max_len} bytes"));
        }
        return Decoded::Incomplete;
    };
    if nl > max_len {
        return Decoded::Invalid(format!("tcp_table request over the limit of {max_len} bytes"));
    }
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let Some(quoted) = line.strip_prefix(b"get ") else {
        let shown = line[..line.len().min(40)].escape_ascii();
        return Decoded::Invalid(format!("unsupported tcp_table request: {shown}"));
    };
    match hex_unquote(quoted) {
        Some(key) => Decoded::Frame(key, nl + 1),
        None => Decoded::Invalid("bad %XX escape in tcp_table request".into()),
    }
}

/// Frames a reply line: `code`, a space, `text` (already encoded as needed) and a newline.
pub fn encode(code: u16, text: &str) -> Vec<u8> {
    format!("{code} {text}\n").into_bytes()
}

/// Encodes as Postfix's `hex_quote` does: `%`, white space, controls and bytes over 0x7e.
pub fn hex_quote(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw {
        if b == b'%' || b.is_ascii_whitespace() || b == 0x0b || !(0x21..=0x7e).contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// Decodes `%XX` escapes (either case); `None` for a malformed escape.
pub fn hex_unquote(quoted: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(quoted.len());
    let mut i = 0;
    while i < quoted.len() {
        if quoted[i] == b'%' {
            // Exactly two hex digits: `from_str_radix` alone would also take a sign (`%+F`).
            let hex = quoted.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(quoted[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_request() {
        assert_eq!(decode(b"get a%20b%25c@Ex.com\n", 100), Decoded::Frame(b"a b%c@Ex.com".to_vec(), 21));
        assert_eq!(decode(b"get x%c3%a9\r\nget y\n", 100), Decoded::Frame("xé".as_bytes().to_vec(), 13));
    }

    #[test]
    fn empty_key() {
        assert_eq!(decode(b"get \n", 100), Decoded::Frame(vec![], 5));
    }

    #[test]
    fn incomplete_and_invalid() {
        assert_eq!(decode(b"get abc", 100), Decoded::Incomplete);
        assert!(matches!(decode(b"put a b\n", 100), Decoded::Invalid(_)));
        assert!(matches!(decode(b"get a%2\n", 100), Decoded::Invalid(_)));
        assert!(matches!(decode(b"get a%zz\n", 100), Decoded::Invalid(_)));
        assert!(matches!(decode(&[b'g'; 101], 100), Decoded::Invalid(_)));
    }

    #[test]
    fn escape_takes_two_hex_digits_and_no_sign() {
        // Found by fuzz/fuzz_targets/tcp.rs: `%+0` decoded as byte 0 (from_str_radix takes '+').
        assert_eq!(hex_unquote(b"%+0"), None);
        assert_eq!(hex_unquote(b"%+F%-1"), None);
        assert!(matches!(decode(b"get %+00\n", 100), Decoded::Invalid(_)));
        assert_eq!(hex_unquote(b"%0a%Ff"), Some(vec![0x0a, 0xff]));
    }

    #[test]
    fn quoting_matches_postfix() {
        assert_eq!(hex_quote(b"a b%c@Ex.com"), "a%20b%25c@Ex.com");
        assert_eq!(hex_quote("é\t\n".as_bytes()), "%C3%A9%09%0A");
        assert_eq!(hex_unquote(hex_quote(b"x\x00\xff y").as_bytes()).unwrap(), b"x\x00\xff y");
    }

    #[test]
    fn encode_line() {
        assert_eq!(encode(200, "v%20w"), b"200 v%20w\n");
        assert_eq!(encode(500, "not found"), b"500 not found\n");
    }
}
