//! Text helpers: text shown to a person at a terminal, and text cut to a length.

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

/// The longest start of `s` that has at most `max` bytes and ends on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
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
    use super::{cut, printable};

    #[test]
    fn cut_ends_on_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("aé", 2), "a", "é takes two bytes");
        assert_eq!(cut("aé", 3), "aé");
        assert_eq!(cut("€", 0), "");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain ümlaut"), "plain ümlaut");
        assert_eq!(printable("a\x1b[2J\rdown: x\n"), "a\\u{1b}[2J\\rdown: x\\n");
        assert_eq!(printable("\u{9b}31m\u{7f}\t"), "\\u{9b}31m\\u{7f}\\t");
    }
}
