//! Postfix's own view of its configuration, read from postconf(1)'s output (pure: text in,
//! values out): master.cf services (`postconf -M`), parameters (`postconf -n`, `-P`, `-x`), the
//! pfxhttp command line of a spawn(8) service, and the references to lookup tables, policy
//! services and SASL sockets in parameter values. `pfxhttp check --postfix` judges them.

use crate::config::Format;
use std::time::Duration;

/// One master.cf service, as `postconf -M` prints it on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `unix`, `inet`, `fifo`, `pass`, `unix-dgram`.
    pub kind: String,
    pub unpriv: String,
    pub chroot: String,
    /// The daemon (`spawn`, `smtpd`, …) and its arguments.
    pub command: String,
    pub args: Vec<String>,
}

impl Service {
    /// The TCP port of an inet service (`127.0.0.1:10041`, `[::1]:10041` or `10041`).
    pub fn port(&self) -> Option<&str> {
        (self.kind == "inet").then(|| self.name.rsplit(':').next().unwrap_or(&self.name))
    }
}

/// The services of `postconf -M` output: `name type private unpriv chroot wakeup maxproc
/// command args…` per line.
pub fn parse_master(text: &str) -> Vec<Service> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 8 && !f[0].starts_with('#')).then(|| Service {
                name: f[0].into(),
                kind: f[1].into(),
                unpriv: f[3].into(),
                chroot: f[4].into(),
                command: f[7].into(),
                args: f[8..].iter().map(|s| s.to_string()).collect(),
            })
        })
        .collect()
}

/// `name = value` lines (`postconf -n`, `postconf -P`, `postconf NAME…`), in order. `postconf
/// -P` names are `service/type/parameter`.
pub fn parse_params(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(" = ").or_else(|| line.strip_suffix(" =").map(|n| (n, ""))))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect()
}

/// What a pfxhttp spawn service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pfxhttp {
    /// The program of `argv=`.
    pub program: String,
    /// spawn's `user=`, without a `:group`.
    pub user: Option<String>,
    /// `--config`/`-c`, when given.
    pub config: Option<String>,
    /// `--format`, when given (else YAML, as pfxhttp's own default).
    pub format: Format,
    pub command: Run,
}

/// The pfxhttp command a service runs, with its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    Socketmap,
    Policy(Option<String>),
    Tcp(Option<String>),
    Sasl(Option<String>),
    /// Anything else (not a serving command), as written.
    Other(String),
}

/// The pfxhttp command line of a spawn(8) service whose `argv=` program is named pfxhttp.
pub fn pfxhttp_of(service: &Service) -> Option<Pfxhttp> {
    if service.command != "spawn" {
        return None;
    }
    let mut user = None;
    let mut args = service.args.iter();
    let program = loop {
        let arg = args.next()?;
        if let Some(u) = arg.strip_prefix("user=") {
            user = Some(u.split(':').next().unwrap_or(u).to_string());
        } else if let Some(p) = arg.strip_prefix("argv=") {
            break p.to_string();
        }
    };
    let base = program.rsplit('/').next().unwrap_or(&program);
    if !base.contains("pfxhttp") {
        return None;
    }
    let (mut config, mut format, mut words) = (None, Format::Yaml, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => config = args.next().cloned(),
            "--format" => format = format_named(args.next().map(String::as_str)),
            a if a.starts_with("--config=") => config = Some(a["--config=".len()..].to_string()),
            a if a.starts_with("--format=") => format = format_named(Some(&a["--format=".len()..])),
            a if a.starts_with("-c") && a.len() > 2 => config = Some(a[2..].to_string()),
            a if a.starts_with('-') => {}
            a => words.push(a.to_string()),
        }
    }
    let mut words = words.into_iter();
    let command = match (words.next().unwrap_or_default().as_str(), words.next()) {
        ("socketmap", _) => Run::Socketmap,
        ("policy", arg) => Run::Policy(arg),
        ("tcp", arg) => Run::Tcp(arg),
        ("sasl", arg) => Run::Sasl(arg),
        (other, _) => Run::Other(other.to_string()),
    };
    Some(Pfxhttp { program, user, config, format, command })
}

/// The format a `--format` value names; pfxhttp itself refuses other values, so they count as
/// its default here.
fn format_named(value: Option<&str>) -> Format {
    value.and_then(|v| <Format as clap::ValueEnum>::from_str(v, false).ok()).unwrap_or(Format::Yaml)
}

/// Where a reference points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A master.cf unix service: `unix:private/NAME` (or `public/`, or a path ending so).
    Unix(String),
    /// `inet:HOST:PORT` or `tcp:HOST:PORT`: host and port.
    Inet(String, String),
}

/// What a parameter value asks of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `socketmap:ENDPOINT:MAP`.
    Socketmap(Endpoint, String),
    /// `tcp:HOST:PORT` (tcp_table).
    Tcp(Endpoint),
    /// `check_policy_service ENDPOINT`, with the `policy_context` of the `{ … }` form.
    Policy(Endpoint, Option<String>),
}

/// A unix or inet endpoint as Postfix writes it (`unix:private/x`, `inet:127.0.0.1:9`); a bare
/// `private/x` is a unix one.
fn endpoint(text: &str) -> Option<Endpoint> {
    if let Some(path) = text.strip_prefix("unix:").or(text.starts_with("private/").then_some(text)) {
        let mut parts = path.rsplit('/');
        let name = parts.next()?;
        return matches!(parts.next(), Some("private" | "public")).then(|| Endpoint::Unix(name.into()));
    }
    let rest = text.strip_prefix("inet:").or_else(|| text.strip_prefix("tcp:"))?;
    let (host, port) = rest.rsplit_once(':')?;
    Some(Endpoint::Inet(host.trim_matches(['[', ']']).into(), port.into()))
}

/// The words of a parameter value as Postfix splits them: at white space and commas, with `{`
/// and `}` words of their own.
fn words(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in value.split([' ', '\t', '\n', ',']).filter(|w| !w.is_empty()) {
        let (mut rest, mut tail) = (word, 0);
        while let Some(r) = rest.strip_prefix('{') {
            out.push("{");
            rest = r;
        }
        while let Some(r) = rest.strip_suffix('}') {
            tail += 1;
            rest = r;
        }
        if !rest.is_empty() {
            out.push(rest);
        }
        out.extend(std::iter::repeat_n("}", tail));
    }
    out
}

/// Every socketmap, tcp_table and policy service reference in a parameter value.
pub fn references(value: &str) -> Vec<Reference> {
    let words = words(value);
    let mut out = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let mut table = *word;
        while let Some(rest) = table.strip_prefix("proxy:") {
            table = rest;
        }
        if let Some(rest) = table.strip_prefix("socketmap:")
            && let Some((at, map)) = rest.rsplit_once(':')
            && let Some(e) = endpoint(at)
        {
            out.push(Reference::Socketmap(e, map.into()));
        } else if table.starts_with("tcp:")
            && let Some(e) = endpoint(table)
        {
            out.push(Reference::Tcp(e));
        } else if *word == "check_policy_service" {
            out.extend(policy(&words[i + 1..]));
        }
    }
    out
}

/// The service of `check_policy_service`, given the words after it: an endpoint, or `{
/// endpoint, name=value… }`.
fn policy(after: &[&str]) -> Option<Reference> {
    if after.first() != Some(&"{") {
        return Some(Reference::Policy(endpoint(after.first()?)?, None));
    }
    let group: Vec<&str> = after[1..].iter().take_while(|w| **w != "}").copied().collect();
    let context = group.iter().find_map(|w| w.strip_prefix("policy_context=")).map(String::from);
    Some(Reference::Policy(endpoint(group.first()?)?, context))
}

/// A Postfix time value: a number with an optional unit (`s`, `m`, `h`, `d`, `w`; seconds
/// without).
pub fn time_value(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let n: u64 = text[..digits].parse().ok()?;
    let unit = match &text[digits..] {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

#[cfg(test)]
#[path = "postfix_tests.rs"]
mod tests;
