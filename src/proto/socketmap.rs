//! socketmap_table(5) requests: a netstring whose payload is `<mapname> <key>`, split at the
//! first space (the key may contain spaces; the map name cannot).

use super::{Decoded, netstring};

/// One lookup request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    /// The key as sent: bytes, which need not be UTF-8.
    pub key: Vec<u8>,
}

/// Decodes one request at the start of `buf`; `max_len` caps the netstring payload.
pub fn decode(buf: &[u8], max_len: usize) -> Decoded<Request> {
    match netstring::decode(buf, max_len) {
        Decoded::Frame(range, used) => match split(&buf[range]) {
            Ok(request) => Decoded::Frame(request, used),
            Err(why) => Decoded::Invalid(why),
        },
        Decoded::Incomplete => Decoded::Incomplete,
        Decoded::Invalid(why) => Decoded::Invalid(why),
    }
}

fn split(payload: &[u8]) -> Result<Request, String> {
    let Some(space) = payload.iter().position(|&b| b == b' ') else {
        return Err("socketmap request without a space between map name and key".into());
    };
    if space == 0 {
        return Err("socketmap request with an empty map name".into());
    }
    let name = String::from_utf8_lossy(&payload[..space]).into_owned();
    Ok(Request { name, key: unquote_null_sender(&payload[space + 1..]) })
}

/// Compatibility with the Go pfxhttp: the quoted null sender `"<>"` is looked up as `<>`.
fn unquote_null_sender(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len());
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b"\"<>\"") {
            out.extend_from_slice(b"<>");
            rest = after;
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, key: &[u8]) -> Request {
        Request { name: name.into(), key: key.to_vec() }
    }

    #[test]
    fn splits_at_the_first_space() {
        assert_eq!(decode(b"7:demo ok,", 100), Decoded::Frame(req("demo", b"ok"), 10));
        assert_eq!(decode(b"14:demo two words,", 100), Decoded::Frame(req("demo", b"two words"), 18));
        assert_eq!(decode(b"5:demo ,", 100), Decoded::Frame(req("demo", b""), 8));
        assert_eq!(decode(b"7:demo \xff\xfe,", 100), Decoded::Frame(req("demo", b"\xff\xfe"), 10));
    }

    #[test]
    fn null_sender_unquoted() {
        assert_eq!(decode(b"7:m \"<>\"x,", 100), Decoded::Frame(req("m", b"<>x"), 10));
    }

    #[test]
    fn malformed() {
        assert!(matches!(decode(b"4:demo,", 100), Decoded::Invalid(_)));
        assert!(matches!(decode(b"3: ok,", 100), Decoded::Invalid(_)));
        assert_eq!(decode(b"7:demo o", 100), Decoded::Incomplete);
    }
}
