//! Turns an [`Outcome`] into each protocol's reply text, made safe for the wire.
//!
//! Values lose control characters (CR, LF, NUL, other C0 and DEL) before any size check, so a
//! backend value cannot inject protocol lines. Failures become replies on which Postfix defers:
//! socketmap `TEMP`/`TIMEOUT`/`PERM`, tcp `400`, the policy entry's default action.

use crate::answer::{FailureKind, Outcome};
use crate::proto::tcp;
use crate::text::cut;

/// Longest failure reason sent; Postfix logs at most 200 characters of it anyway.
const MAX_REASON: usize = 300;
/// Longest policy action sent.
const MAX_ACTION: usize = 2000;

/// What a reply tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Found,
    NotFound,
    /// Postfix defers the mail.
    Failed,
}

/// A socketmap or tcp reply as sent, with what the log line and `query` need to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<W> {
    /// What goes on the wire: the socketmap payload, or the tcp line with its newline.
    pub wire: W,
    pub kind: Kind,
    /// The status word as sent: `OK`, `NOTFOUND`, `TEMP`, `TIMEOUT`, `PERM`; tcp `200`, `500`, `400`.
    pub word: &'static str,
    /// A failure's reason as sent, if it gives one. Never a value: it may be as private as the key.
    pub reason: Option<String>,
}

impl<W> Reply<W> {
    /// `text` is what follows the status word on the wire.
    fn new(wire: W, kind: Kind, word: &'static str, text: String) -> Reply<W> {
        let reason = (kind == Kind::Failed && !text.is_empty()).then_some(text);
        Reply { wire, kind, word, reason }
    }
}

/// The socketmap reply, e.g. the payload `OK value` or `NOTFOUND `.
pub fn socketmap(outcome: &Outcome, max_reply: usize) -> Reply<String> {
    let (kind, word, text) = match outcome {
        Outcome::Found(v) => {
            let v = clean(v);
            if v.is_empty() {
                (Kind::NotFound, "NOTFOUND", String::new())
            } else if v.len() + 3 > max_reply {
                // The limit is Postfix's, on the whole reply payload: "OK " counts.
                (Kind::Failed, "PERM", format!("value too long ({} bytes)", v.len()))
            } else {
                (Kind::Found, "OK", v)
            }
        }
        Outcome::NotFound => (Kind::NotFound, "NOTFOUND", String::new()),
        Outcome::Failure(f) => {
            let word = match f.kind {
                FailureKind::Temporary => "TEMP",
                FailureKind::Timeout => "TIMEOUT",
                FailureKind::Permanent => "PERM",
            };
            (Kind::Failed, word, reason(&f.reason))
        }
    };
    let mut line = String::with_capacity(word.len() + 1 + text.len());
    line.push_str(word);
    line.push(' ');
    line.push_str(&text);
    Reply::new(line, kind, word, text)
}

/// The tcp_table reply line.
pub fn tcp(outcome: &Outcome) -> Reply<Vec<u8>> {
    const FOUND: (Kind, u16, &str) = (Kind::Found, 200, "200");
    const NOT_FOUND: (Kind, u16, &str) = (Kind::NotFound, 500, "500");
    const FAILED: (Kind, u16, &str) = (Kind::Failed, 400, "400");
    let ((kind, code, word), text) = match outcome {
        Outcome::Found(v) => {
            let v = clean(v);
            let quoted = tcp::hex_quote(v.as_bytes());
            if v.is_empty() {
                (NOT_FOUND, "not found".to_string())
            } else if quoted.len() + 5 > tcp::MAX_REPLY_LINE {
                (FAILED, format!("value too long ({} bytes encoded)", quoted.len()))
            } else {
                (FOUND, quoted)
            }
        }
        Outcome::NotFound => (NOT_FOUND, "not found".to_string()),
        Outcome::Failure(f) => (FAILED, reason(&f.reason)),
    };
    Reply::new(tcp::encode(code, &text), kind, word, text)
}

/// The policy action: the backend's value, `DUNNO` for none, `default_action` on failure.
pub fn policy_action(outcome: &Outcome, default_action: &str) -> String {
    match outcome {
        Outcome::Found(v) => {
            let cleaned = clean(v);
            let v = cut(cleaned.trim(), MAX_ACTION);
            if v.is_empty() { "DUNNO".into() } else { v.to_string() }
        }
        Outcome::NotFound => "DUNNO".into(),
        Outcome::Failure(_) => default_action.to_string(),
    }
}

/// Removes control characters (C0 and DEL; also C1, which are never meant in a reply).
pub fn clean(s: &str) -> String {
    // Most values hold none: copied whole, without a look at each character.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.to_string();
    }
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
    cut(shown.trim(), MAX_REASON).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Control characters go, C0, DEL and C1 alike; everything else stays.
    #[test]
    fn values_are_cleaned_of_control_characters() {
        for (value, cleaned) in [
            ("plain@example.org", "plain@example.org"),
            ("café ü", "café ü"),
            ("a\x7fb\tc\0", "abc"),
            ("a\u{85}b\u{9f}", "ab"),
            ("é\nx", "éx"),
        ] {
            assert_eq!(clean(value), cleaned, "{value:?}");
        }
    }

    #[test]
    fn socketmap_replies() {
        assert_eq!(socketmap(&Outcome::Found("mapped-ok".into()), 100).wire, "OK mapped-ok");
        assert_eq!(socketmap(&Outcome::NotFound, 100).wire, "NOTFOUND ");
        assert_eq!(socketmap(&Outcome::Found("a\r\nb\0c".into()), 100).wire, "OK abc");
        assert_eq!(socketmap(&Outcome::Found("\r\n".into()), 100).wire, "NOTFOUND ");
        assert_eq!(socketmap(&Outcome::Found("x".repeat(98)), 100).wire, "PERM value too long (98 bytes)");
        assert_eq!(socketmap(&Outcome::Found("x".repeat(97)), 100).wire.len(), 100);
        assert_eq!(socketmap(&Outcome::temporary("down\nnow"), 100).wire, "TEMP down now");
        assert_eq!(socketmap(&Outcome::permanent("unknown map de\0mo"), 100).wire, "PERM unknown map de?mo");
        assert_eq!(socketmap(&Outcome::timeout("slow"), 100).wire, "TIMEOUT slow");
        assert_eq!(socketmap(&Outcome::permanent("bad"), 100).wire, "PERM bad");
    }

    #[test]
    fn tcp_replies() {
        assert_eq!(tcp(&Outcome::Found("a b%".into())).wire, b"200 a%20b%25\n");
        assert_eq!(tcp(&Outcome::NotFound).wire, b"500 not found\n");
        assert_eq!(tcp(&Outcome::temporary("down")).wire, b"400 down\n");
        let long = tcp(&Outcome::Found("x".repeat(4092))).wire;
        assert!(long.starts_with(b"400 "), "{}", String::from_utf8_lossy(&long));
        assert_eq!(tcp(&Outcome::Found("x".repeat(4091))).wire.len(), 4096);
    }

    /// What the log line and `query` learn of a reply: its kind and word, and a failure's reason
    /// as sent, never a value.
    #[test]
    fn replies_say_their_kind() {
        let said = |r: Reply<String>| (r.kind, r.word, r.reason);
        assert_eq!(said(socketmap(&Outcome::Found("v w".into()), 100)), (Kind::Found, "OK", None));
        assert_eq!(said(socketmap(&Outcome::Found("\0".into()), 100)), (Kind::NotFound, "NOTFOUND", None));
        let long = socketmap(&Outcome::Found("x".repeat(98)), 100);
        assert_eq!(said(long), (Kind::Failed, "PERM", Some("value too long (98 bytes)".into())));
        assert_eq!(said(socketmap(&Outcome::timeout("a\nb"), 100)), (Kind::Failed, "TIMEOUT", Some("a b".into())));
        assert_eq!(said(socketmap(&Outcome::temporary(" "), 100)), (Kind::Failed, "TEMP", None));
        let said = |r: Reply<Vec<u8>>| (r.kind, r.word, r.reason);
        assert_eq!(said(tcp(&Outcome::Found("v w".into()))), (Kind::Found, "200", None));
        assert_eq!(said(tcp(&Outcome::NotFound)), (Kind::NotFound, "500", None));
        assert_eq!(said(tcp(&Outcome::permanent("no"))), (Kind::Failed, "400", Some("no".into())));
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
