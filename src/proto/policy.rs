//! SMTPD policy delegation: `name=value` lines ended by an empty line; reply `action=<text>\n\n`.
//!
//! Lines may end in CRLF; names and values are trimmed; a value may contain `=`. A line without
//! `=`, an empty request, too many attributes or too many bytes make the request invalid, and the
//! Postfix policy README asks a server to log and disconnect on invalid input.

use super::Decoded;

/// The attributes of one request, in the order received (duplicates are kept; the caller lets
/// the last one win).
pub type Attributes = Vec<(String, String)>;

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one request, terminating empty line included.
    pub max_bytes: usize,
    /// Attribute lines of one request.
    pub max_attributes: usize,
}

/// Decodes one policy request at the start of `buf`.
///
/// The bytes are first checked line by line without allocating (so a request that trickles in
/// costs no copies); the attributes are built once the empty line has arrived.
pub fn decode(buf: &[u8], limits: Limits) -> Decoded<Attributes> {
    let mut pos = 0;
    let mut count = 0;
    let end = loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            if buf.len() > limits.max_bytes {
                return Decoded::Invalid(format!("policy request over the limit of {} bytes", limits.max_bytes));
            }
            return Decoded::Incomplete;
        };
        let end = pos + nl + 1;
        if end > limits.max_bytes {
            return Decoded::Invalid(format!("policy request over the limit of {} bytes", limits.max_bytes));
        }
        let line = buf[pos..pos + nl].trim_ascii();
        pos = end;
        if line.is_empty() {
            break end;
        }
        if count == limits.max_attributes {
            return Decoded::Invalid(format!("policy request has more than {} attributes", limits.max_attributes));
        }
        count += 1;
        if let Err(why) = split(line) {
            return Decoded::Invalid(why);
        }
    };
    if count == 0 {
        return Decoded::Invalid("empty policy request".into());
    }
    let attrs = buf[..end]
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
        .filter_map(|line| split(line).ok())
        .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), String::from_utf8_lossy(value).into_owned()))
        .collect();
    Decoded::Frame(attrs, end)
}

/// Splits a trimmed `name=value` line.
fn split(line: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let Some(eq) = line.iter().position(|&b| b == b'=') else {
        return Err(format!("policy request line without '=': {}", preview(line)));
    };
    let name = line[..eq].trim_ascii();
    if name.is_empty() {
        return Err(format!("policy request line with an empty name: {}", preview(line)));
    }
    Ok((name, line[eq + 1..].trim_ascii()))
}

/// Frames an action as a policy reply. The action must already be one safe line.
pub fn encode(action: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(action.len() + 9);
    out.extend_from_slice(b"action=");
    out.extend_from_slice(action.as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

/// The start of a bad line, printable, for a log message.
fn preview(line: &[u8]) -> String {
    let cut = &line[..line.len().min(60)];
    cut.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 1000, max_attributes: 10 };

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn complete_request() {
        let req = b"request=smtpd_access_policy\nrecipient=a@b\n\n";
        assert_eq!(
            decode(req, LIMITS),
            Decoded::Frame(attrs(&[("request", "smtpd_access_policy"), ("recipient", "a@b")]), req.len())
        );
    }

    #[test]
    fn crlf_spaces_and_equals_in_values() {
        let req = b"request = x\r\n recipient = r \r\nfoo=a=b\r\n\r\n";
        assert_eq!(
            decode(req, LIMITS),
            Decoded::Frame(attrs(&[("request", "x"), ("recipient", "r"), ("foo", "a=b")]), req.len())
        );
    }

    #[test]
    fn duplicates_are_kept_in_order() {
        let req = b"a=1\na=2\n\n";
        assert_eq!(decode(req, LIMITS), Decoded::Frame(attrs(&[("a", "1"), ("a", "2")]), req.len()));
    }

    #[test]
    fn pipelined_requests_leave_the_rest() {
        let req = b"a=1\n\nb=2\n\n";
        assert_eq!(decode(req, LIMITS), Decoded::Frame(attrs(&[("a", "1")]), 5));
    }

    #[test]
    fn partial_is_incomplete() {
        for partial in [&b""[..], b"a=1", b"a=1\n", b"a=1\nb=2"] {
            assert_eq!(decode(partial, LIMITS), Decoded::Incomplete, "{partial:?}");
        }
    }

    #[test]
    fn malformed() {
        for bad in [&b"foo\n\n"[..], b"\n", b"=x\n\n", b"a=1\nnoequals\n"] {
            assert!(matches!(decode(bad, LIMITS), Decoded::Invalid(_)), "{bad:?}");
        }
    }

    #[test]
    fn limits_checked_without_terminator() {
        let long = vec![b'a'; 1001];
        assert!(matches!(decode(&long, LIMITS), Decoded::Invalid(_)));
        let many: Vec<u8> = (0..11).flat_map(|i| format!("a{i}=1\n").into_bytes()).collect();
        assert!(matches!(decode(&many, LIMITS), Decoded::Invalid(_)));
        let ten: Vec<u8> = (0..10).flat_map(|i| format!("a{i}=1\n").into_bytes()).chain(*b"\n").collect();
        assert!(matches!(decode(&ten, LIMITS), Decoded::Frame(..)));
    }

    #[test]
    fn invalid_utf8_and_nul_survive_lossily() {
        let req = b"a=x\xffy\0z\n\n";
        assert_eq!(decode(req, LIMITS), Decoded::Frame(attrs(&[("a", "x\u{fffd}y\0z")]), req.len()));
    }

    #[test]
    fn encode_reply() {
        assert_eq!(encode("DUNNO"), b"action=DUNNO\n\n");
    }
}
