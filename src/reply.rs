//! Turns an [`Outcome`] into each protocol's reply text, made safe for the wire.
//!
//! Values lose control characters (CR, LF, NUL, other C0 and DEL) before any size check, so a
//! backend value cannot inject protocol lines. Failures become replies on which Postfix defers:
//! socketmap `TEMP`/`TIMEOUT`/`PERM`, tcp `400`, the policy entry's default action.

use crate::answer::{FailureKind, Outcome};
use crate::proto::tcp;

/// Longest failure reason sent; Postfix logs at most 200 characters of it anyway.
const MAX_REASON: usize = 300;
/// Longest policy action sent.
const MAX_ACTION: usize = 2000;

/// The socketmap reply payload, e.g. `OK value` or `NOTFOUND `.
pub fn socketmap(outcome: &Outcome, max_reply: usize) -> String {
    match outcome {
        Outcome::Found(v) => {
            let v = clean(v);
            if v.is_empty() {
                "NOTFOUND ".into()
            } else if v.len() + 3 > max_reply {
                // The limit is Postfix's, on the whole reply payload: "OK " counts.
                format!("PERM value too long ({} bytes)", v.len())
            } else {
                format!("OK {v}")
            }
        }
        Outcome::NotFound => "NOTFOUND ".into(),
        Outcome::Failure(f) => {
            let word = match f.kind {
                FailureKind::Temporary => "TEMP",
                FailureKind::Timeout => "TIMEOUT",
                FailureKind::Permanent => "PERM",
            };
            format!("{word} {}", reason(&f.reason))
        }
    }
}

/// The tcp_table reply line.
pub fn tcp(outcome: &Outcome) -> Vec<u8> {
    match outcome {
        Outcome::Found(v) => {
            let v = clean(v);
            if v.is_empty() {
                return tcp::encode(500, "not found");
            }
            let quoted = tcp::hex_quote(v.as_bytes());
            if quoted.len() + 5 > tcp::MAX_REPLY_LINE {
                return tcp::encode(400, &format!("value too long ({} bytes encoded)", quoted.len()));
            }
            tcp::encode(200, &quoted)
        }
        Outcome::NotFound => tcp::encode(500, "not found"),
        Outcome::Failure(f) => tcp::encode(400, &reason(&f.reason)),
    }
}

/// The policy action: the backend's value, `DUNNO` for none, `default_action` on failure.
pub fn policy_action(outcome: &Outcome, default_action: &str) -> String {
    match outcome {
        Outcome::Found(v) => {
            let cleaned = clean(v);
            let v = truncate(cleaned.trim(), MAX_ACTION);
            if v.is_empty() { "DUNNO".into() } else { v.to_string() }
        }
        Outcome::NotFound => "DUNNO".into(),
        Outcome::Failure(_) => default_action.to_string(),
    }
}

/// Removes control characters (C0 and DEL; also C1, which are never meant in a reply).
pub fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A failure's reason, one line: a line break shows as a space, any other control character
/// (which may come from the client's own bytes, as in `unknown map de\0mo`) as `?` rather than
/// vanishing, so that the text never names something the client did not send.
fn reason(r: &str) -> String {
    let shown: String = r
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect();
    truncate(shown.trim(), MAX_REASON).to_string()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socketmap_replies() {
        assert_eq!(socketmap(&Outcome::Found("mapped-ok".into()), 100), "OK mapped-ok");
        assert_eq!(socketmap(&Outcome::NotFound, 100), "NOTFOUND ");
        assert_eq!(socketmap(&Outcome::Found("a\r\nb\0c".into()), 100), "OK abc");
        assert_eq!(socketmap(&Outcome::Found("\r\n".into()), 100), "NOTFOUND ");
        assert_eq!(socketmap(&Outcome::Found("x".repeat(98)), 100), "PERM value too long (98 bytes)");
        assert_eq!(socketmap(&Outcome::Found("x".repeat(97)), 100).len(), 100);
        assert_eq!(socketmap(&Outcome::temporary("down\nnow"), 100), "TEMP down now");
        assert_eq!(socketmap(&Outcome::permanent("unknown map de\0mo"), 100), "PERM unknown map de?mo");
        assert_eq!(socketmap(&Outcome::timeout("slow"), 100), "TIMEOUT slow");
        assert_eq!(socketmap(&Outcome::permanent("bad"), 100), "PERM bad");
    }

    #[test]
    fn tcp_replies() {
        assert_eq!(tcp(&Outcome::Found("a b%".into())), b"200 a%20b%25\n");
        assert_eq!(tcp(&Outcome::NotFound), b"500 not found\n");
        assert_eq!(tcp(&Outcome::temporary("down")), b"400 down\n");
        let long = tcp(&Outcome::Found("x".repeat(4092)));
        assert!(long.starts_with(b"400 "), "{}", String::from_utf8_lossy(&long));
        assert_eq!(tcp(&Outcome::Found("x".repeat(4091))).len(), 4096);
    }

    #[test]
    fn policy_actions() {
        assert_eq!(policy_action(&Outcome::Found("REJECT spam".into()), "D"), "REJECT spam");
        assert_eq!(policy_action(&Outcome::Found("OK\ninjected=1".into()), "D"), "OKinjected=1");
        assert_eq!(policy_action(&Outcome::Found(" \r\n ".into()), "D"), "DUNNO");
        assert_eq!(policy_action(&Outcome::NotFound, "D"), "DUNNO");
        assert_eq!(policy_action(&Outcome::temporary("x"), "DEFER_IF_PERMIT later"), "DEFER_IF_PERMIT later");
        assert_eq!(policy_action(&Outcome::Found("é".repeat(2000)), "D").len(), 2000);
    }
}
