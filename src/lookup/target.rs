//! A rendered target URL, checked before anything is sent to it.
//!
//! The URL parser normalises what it is given: it drops tabs and line breaks anywhere, and
//! spaces and control characters at either end; in an http(s) URL it reads `\` as `/`; and it
//! resolves `.` and `..` path segments (also written with `%2e`). A key rendered with `| raw`
//! could use any of these to reach another path on the backend, and checking the rendered text
//! for dot segments misses them. So the parsed URL is compared with the rendered text, and sent
//! only when parsing changed nothing but this, which is harmless:
//!
//! * percent-encoding of bytes that may not appear as they are (a space becomes `%20`, a
//!   non-ASCII character its UTF-8 escapes): the backend decodes them to the same bytes, and `/`
//!   is never encoded, so the segments stay the same;
//! * an empty path becoming `/`: both ask for the root;
//! * the scheme and authority (letter case, the default port, IDNA, the forms of an IP
//!   address): they name the same server. Tabs and line breaks are refused there too.

use crate::answer::Outcome;
use crate::text::percent_decoded as decoded;
use reqwest::Url;

/// The refusal when the path would differ from the rendered one.
const NOT_PATH: &str = "key not usable in a URL path";
/// The refusal when the URL does not parse, or parsing changed it elsewhere.
const NOT_URL: &str = "key not usable in a URL";

/// Parses `rendered`, refusing it when the parser changed it in any but the harmless ways.
pub(super) fn parse(rendered: &str) -> Result<Url, Outcome> {
    let url = Url::parse(rendered).map_err(|_| Outcome::permanent(NOT_URL))?;
    let (origin, tail) = split_origin(rendered);
    let end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, rest) = tail.split_at(end);
    let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    if decoded(&path) != decoded(url.path()) {
        return Err(Outcome::permanent(NOT_PATH));
    }
    let parsed_rest = format!(
        "{}{}",
        url.query().map_or(String::new(), |q| format!("?{q}")),
        url.fragment().map_or(String::new(), |f| format!("#{f}"))
    );
    let dropped = origin.contains(['\t', '\n', '\r']) || origin.starts_with(|c: char| c <= ' ');
    if dropped || decoded(rest) != decoded(&parsed_rest) {
        return Err(Outcome::permanent(NOT_URL));
    }
    Ok(url)
}

/// `rendered` split where the path begins, as the parser of an http(s) URL splits it: after the
/// scheme's `:`, any `/` and `\`, then the authority up to the first `/`, `\`, `?` or `#`.
fn split_origin(rendered: &str) -> (&str, &str) {
    let scheme_end = rendered.find(':').map_or(0, |i| i + 1);
    let after = &rendered[scheme_end..];
    let authority_start = scheme_end + (after.len() - after.trim_start_matches(['/', '\\']).len());
    let authority_end =
        rendered[authority_start..].find(['/', '\\', '?', '#']).map_or(rendered.len(), |i| authority_start + i);
    rendered.split_at(authority_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(rendered: &str) -> Option<Outcome> {
        parse(rendered).err()
    }

    #[test]
    fn dot_segments_are_refused_however_written() {
        let path = Some(Outcome::permanent(NOT_PATH));
        for url in [
            "http://h/users/..",
            "http://h/users/%2E%2e/x",
            "http://h/users/./x",
            "http://h/.%2e?x=1",
            "http://h/users/..\\admin",
            "http://h/users/.\t./admin",
            "http://h/users/%2e\n%2e/admin",
            "http://h/users/.\r./admin",
            "http://h\\users\\..\\admin",
        ] {
            assert_eq!(refusal(url), path, "{url:?}");
        }
    }

    #[test]
    fn other_changes_are_refused() {
        let url = Some(Outcome::permanent(NOT_URL));
        for rendered in ["http://h/x?k=a\tb", "http://h/x#a\nb", "http://h/x?k=a ", "http://h\t:8080/", " http://h/"] {
            assert_eq!(refusal(rendered), url, "{rendered:?}");
        }
        assert_eq!(refusal("http://h/x "), Some(Outcome::permanent(NOT_PATH)), "a trailing space is dropped");
        assert_eq!(refusal("http://[::1/x"), url, "does not parse");
    }

    #[test]
    fn harmless_normalisation_is_accepted() {
        for (rendered, sent) in [
            ("http://h/users/..x", "http://h/users/..x"),
            ("http://h/users/a?k=..", "http://h/users/a?k=.."),
            ("http://h", "http://h/"),
            ("http://h?q=1", "http://h/?q=1"),
            ("HTTP://H.Example:80/a b/ü?x=a b'#f g", "http://h.example/a%20b/%C3%BC?x=a%20b%27#f%20g"),
            ("http://h/a%2F..%2Fb", "http://h/a%2F..%2Fb"),
            ("http://h/100%/%zz", "http://h/100%/%zz"),
            ("http://h/a?b\\c", "http://h/a?b\\c"),
        ] {
            assert_eq!(parse(rendered).map(|u| u.to_string()), Ok(sent.to_string()), "{rendered:?}");
        }
    }
}
