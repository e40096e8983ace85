//! TOML (and file names that say the format): the same tree, so the same model and the same
//! diagnostics as YAML.

use super::source::find_in;
use super::*;

const YAML: &str = r#"
server:
  http_client: { timeout: 5 }
  limits: { idle_timeout: soon }
socket_maps:
  a:
    targett: http://x/
    value_field: r
  b:
    target: ftp://x/
    value_field: r
    status_code: 999
    response: xml
policy_services:
  p:
    target: http://x/
    value_field: action
    payload: '{{ printf "%q" .Key }}'
"#;

const TOML: &str = r#"
[server]
http_client = { timeout = 5 }
limits = { idle_timeout = "soon" }

[socket_maps.a]
targett = "http://x/"
value_field = "r"

[socket_maps.b]
target = "ftp://x/"
value_field = "r"
status_code = 999
response = "xml"

[policy_services.p]
target = "http://x/"
value_field = "action"
payload = '{{ printf "%q" .Key }}'
"#;

#[test]
fn toml_gives_the_errors_yaml_gives_with_their_paths() {
    let from_yaml = load_str(YAML, Format::Yaml, "t").config.unwrap_err();
    let from_toml = load_str(TOML, Format::Toml, "t").config.unwrap_err();
    assert_eq!(from_toml, from_yaml);
    assert!(from_toml.iter().any(|e| e.starts_with("socket_maps.a: target is required")), "{from_toml:?}");
}

#[test]
fn toml_loads_the_model_in_the_file_order() {
    let text = "[socket_maps.zeta]\ntarget = [\"http://a/\", \"http://b/\"]\nvalue_field = \"r\"\n\
                status_code = [200, 201]\n\n[socket_maps.alpha]\ntarget = \"http://c/\"\nvalue_field = \"r\"\n\
                deadline = \"3s\"\n";
    let config = load_str(text, Format::Toml, "t.toml").config.unwrap();
    let names: Vec<&str> = config.maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    assert_eq!((config.maps[0].targets.len(), config.maps[0].answer.status_codes.as_slice()), (2, &[200, 201][..]));
    assert_eq!(config.maps[1].retry.deadline, Duration::from_secs(3));
}

/// A syntax error names the file, line and column, never the text there (it may be a secret).
#[test]
fn a_toml_syntax_error_names_the_line_not_the_text() {
    let text = "[socket_maps.a]\ntarget = \"http://x/\"\nhttp_auth_basic = \"user:S3cretPw\n";
    let errs = load_str(text, Format::Toml, "c.toml").config.unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("c.toml: not valid TOML at line 3 column "), "{errs:?}");
    assert!(!errs[0].contains("S3cretPw"), "{errs:?}");
}

#[test]
fn toml_nesting_is_bounded_before_parsing() {
    let deep = format!("x = {}{}\n", "[".repeat(200), "]".repeat(200));
    let errs = load_str(&deep, Format::Toml, "t").config.unwrap_err();
    assert!(errs[0].contains("nested more than 64 deep at line 1"), "{errs:?}");
}

#[test]
fn the_file_name_says_the_format_whatever_format_says() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[socket_maps.m]\ntarget = \"http://x/\"\nvalue_field = \"r\"\n";
    let json = r#"{"socket_maps": {"m": {"target": "http://x/", "value_field": "r"}}}"#;
    for (name, text) in [
        ("c.toml", toml),
        ("c.TOML", toml),
        ("c.json", json),
        ("c.yml", "socket_maps: {m: {target: 'http://x/', value_field: r}}\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        for format in [Format::Yaml, Format::Json, Format::Toml] {
            assert!(load(&path, format).config.is_ok(), "{name} with {format:?}");
        }
    }
    let other = dir.path().join("c.conf");
    std::fs::write(&other, toml).unwrap();
    assert!(load(&other, Format::Toml).config.is_ok());
    assert!(load(&other, Format::Yaml).config.is_err());
}

/// Each directory is searched for the format's own name first, then `pfxhttp.yml`.
#[test]
fn the_search_finds_the_formats_own_file_name_first() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = || [first.path().to_path_buf(), second.path().to_path_buf()].into_iter();
    std::fs::write(second.path().join("pfxhttp.toml"), "").unwrap();
    std::fs::write(second.path().join("pfxhttp.yml"), "").unwrap();
    assert_eq!(find_in(dirs(), Format::Toml), Ok(second.path().join("pfxhttp.toml")));
    assert_eq!(find_in(dirs(), Format::Yaml), Ok(second.path().join("pfxhttp.yml")));
    assert_eq!(find_in(dirs(), Format::Json), Ok(second.path().join("pfxhttp.yml")));
    std::fs::write(first.path().join("pfxhttp.yml"), "").unwrap();
    assert_eq!(find_in(dirs(), Format::Toml), Ok(first.path().join("pfxhttp.yml")), "directories in order");
    std::fs::write(first.path().join("pfxhttp.json"), "").unwrap();
    assert_eq!(find_in(dirs(), Format::Json), Ok(first.path().join("pfxhttp.json")));
    let none = find_in([second.path().join("nothing")].into_iter(), Format::Toml).unwrap_err();
    assert!(none.contains("nothing/pfxhttp.toml, ") && none.ends_with("nothing/pfxhttp.yml"), "{none}");
}
