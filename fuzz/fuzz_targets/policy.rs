//! SMTPD policy delegation: request decoding under small limits, and reply framing.
//!
//! The first two input bytes pick the limits, the rest is what the client sent. The same rest is
//! also used as a backend's answer, which must come out as exactly one `action=...` block
//! whatever it contains: a newline in it would let a backend answer a second, injected reply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pfxhttp::answer::Outcome;
use pfxhttp::proto::Decoded;
use pfxhttp::proto::policy::{self, Limits};
use pfxhttp::reply;

/// The lines of `buf` that are complete (newline-terminated), trimmed as the decoder trims them.
fn complete_lines(buf: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
    lines.pop();
    lines.into_iter().map(<[u8]>::trim_ascii).collect()
}

fn valid_line(line: &[u8]) -> bool {
    line.iter().position(|&b| b == b'=').is_some_and(|eq| !line[..eq].trim_ascii().is_empty())
}

fn check_action(out: &[u8], action: &str) {
    let body = out.strip_prefix(b"action=").expect("reply starts with action=");
    let line = body.strip_suffix(b"\n\n").expect("reply ends with an empty line");
    assert!(!line.contains(&b'\n') && !line.contains(&b'\r'), "line break inside the action: {out:?}");
    if !action.chars().any(char::is_control) {
        assert_eq!(line, action.as_bytes(), "a clean action is sent unchanged");
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, buf @ ..] = data else { return };
    let limits = Limits { max_bytes: 1 + usize::from(*a) * 2, max_attributes: 1 + usize::from(*b % 16) };

    match policy::decode(buf, limits) {
        Decoded::Frame(attrs, used) => {
            assert!(used <= buf.len() && used <= limits.max_bytes, "used {used} of {}", buf.len());
            let request = &buf[..used];
            assert_eq!(request.last(), Some(&b'\n'), "request not ended by a newline");
            let lines = complete_lines(request);
            let (last, attr_lines) = lines.split_last().unwrap();
            assert!(last.is_empty(), "request not ended by an empty line: {request:?}");
            assert!(attr_lines.iter().all(|l| !l.is_empty()), "request ended early");
            assert!(!attrs.is_empty() && attrs.len() <= limits.max_attributes, "{} attributes", attrs.len());
            assert_eq!(attrs.len(), attr_lines.len());
            for ((name, value), line) in attrs.iter().zip(attr_lines) {
                let eq = line.iter().position(|&b| b == b'=').unwrap();
                assert_eq!(*name, String::from_utf8_lossy(line[..eq].trim_ascii()));
                assert_eq!(*value, String::from_utf8_lossy(line[eq + 1..].trim_ascii()));
                assert!(!name.is_empty() && !name.contains('=') && !name.contains('\n') && !value.contains('\n'));
            }
            // The request stands on its own: bytes after it change nothing, and one byte less
            // is not a request yet.
            assert_eq!(policy::decode(request, limits), Decoded::Frame(attrs, used));
            assert_eq!(policy::decode(&request[..used - 1], limits), Decoded::Incomplete);
        }
        Decoded::Incomplete => {
            // Waiting is only right while the bytes so far could still become a request.
            assert!(buf.len() <= limits.max_bytes, "waiting after {} bytes", buf.len());
            let lines = complete_lines(buf);
            assert!(lines.len() <= limits.max_attributes, "waiting after {} lines", lines.len());
            assert!(lines.iter().all(|l| valid_line(l)), "waiting after a bad line: {buf:?}");
        }
        Decoded::Invalid(why) => {
            assert!(!why.is_empty());
            let lines = complete_lines(buf);
            let attr_lines = lines.iter().take_while(|l| !l.is_empty()).count();
            let cause = buf.len() > limits.max_bytes
                || lines.first().is_some_and(|l| l.is_empty())
                || attr_lines > limits.max_attributes
                || lines[..attr_lines].iter().any(|l| !valid_line(l));
            assert!(cause, "refused without a reason: {buf:?} ({why})");
        }
    }

    // `encode` frames what it is given (its callers pass one safe line) ...
    let action = String::from_utf8_lossy(buf);
    assert_eq!(policy::encode(&action), [b"action=", action.as_bytes(), b"\n\n"].concat());
    // ... and what the serving loop gives it for a backend value is one clean line, DUNNO when
    // empty, whatever the backend sent.
    let chosen = reply::policy_action(&Outcome::Found(action.to_string()), "DEFER_IF_PERMIT x");
    assert!(!chosen.is_empty() && !chosen.chars().any(char::is_control));
    check_action(&policy::encode(&chosen), &chosen);
});
