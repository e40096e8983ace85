//! Text helpers: text shown to a person at a terminal, text cut to a length, names that
//! suggest a secret, and numbers written out without `format!` (for what every request does).

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

/// Parts of names (separated by spaces) that suggest a secret value: of a URL's query parameter,
/// a form field or a JSON member. Names are compared lowercased, so `apiKey`, `API_KEY` and
/// `x-api-key` all hold `key`. The parts are short on purpose: masking a harmless value
/// (`mapping` holds `pin`) costs a look at the config, while a secret shown on a terminal cannot
/// be taken back. A name of one letter (`k`, `s`) gives no hint either way and stays shown; the
/// admin can check the config.
const SECRET_NAME_HINTS: &str = "key token secret pass pw pin phrase sig auth cred session access jwt bearer \
    private otp code cookie hmac nonce hash assertion ticket saml";

/// Whether `name` (or any text) holds a part that suggests a secret value.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_lowercase();
    SECRET_NAME_HINTS.split_whitespace().any(|hint| name.contains(hint))
}

/// Whether a query or form parameter's name as written (`+` for a space, `%XX` escapes)
/// suggests a secret value.
pub fn is_secret_parameter(name: &str) -> bool {
    is_secret_name(&String::from_utf8_lossy(&percent_decoded(&name.replace('+', " "))))
}

/// The bytes `text` stands for, `%XX` escapes decoded (a `%` without two hex digits stays).
pub fn percent_decoded(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.filter(|_| bytes[i] == b'%').and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// Appends `n` in decimal, as `write!(out, "{n}")` would, without the formatting machinery.
pub fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Appends the low `width` hex digits of `n` (lower case, zero-padded), as `{:0width$x}` would.
pub fn push_hex(out: &mut String, n: u128, width: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend((0..width).rev().map(|i| char::from(DIGITS[((n >> (4 * i)) & 0xf) as usize])));
}

#[cfg(test)]
mod tests {
    use super::{cut, is_secret_name, is_secret_parameter, printable, push_decimal, push_hex};

    /// The digits are `format!`'s, at the edges of each width.
    #[test]
    fn numbers_are_written_as_format_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 65535, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut decimal = String::from("x");
            push_decimal(&mut decimal, n);
            assert_eq!(decimal, format!("x{n}"));
            let mut hex = String::new();
            push_hex(&mut hex, u128::from(n), 16);
            assert_eq!(hex, format!("{n:016x}"));
        }
        for n in [1, 0xabc, u128::MAX, u128::MAX >> 1, 1 << 127] {
            let mut hex = String::new();
            push_hex(&mut hex, n, 32);
            assert_eq!(hex, format!("{n:032x}"));
        }
    }

    #[test]
    fn names_that_suggest_a_secret() {
        let secret = [
            "pw",
            "passwd",
            "apikey",
            "hash",
            "pin",
            "assertion",
            "client_assertion",
            "ticket",
            "id_token",
            "SAMLResponse",
            "passphrase",
            "phrase",
            "X-Amz-Signature",
            "Access_Token",
        ];
        for name in secret {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["k", "a", "id", "user", "format", "q"] {
            assert!(!is_secret_name(name), "{name}");
        }
        assert!(is_secret_parameter("p%57") && is_secret_parameter("Client%5Fassertion"));
        assert!(is_secret_parameter("my+pin") && !is_secret_parameter("p%2577"));
    }

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
