//! Text shown to a person at a terminal.

use std::borrow::Cow;

/// `s` with every control character (C0, DEL and C1) shown as an escape such as `\u{1b}`, `\n`
/// or `\t`, so that text from the state database or a backend can neither move the cursor, clear
/// the screen nor start a line of its own that looks like pfxhttp's.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain ümlaut"), "plain ümlaut");
        assert_eq!(printable("a\x1b[2J\rdown: x\n"), "a\\u{1b}[2J\\rdown: x\\n");
        assert_eq!(printable("\u{9b}31m\u{7f}\t"), "\\u{9b}31m\\u{7f}\\t");
    }
}
