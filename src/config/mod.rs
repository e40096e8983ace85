//! `pfxhttp.yml`: loaded once per process, validated into typed settings with compiled templates.
//!
//! Loading never stops at the first problem: every error is collected with its YAML path
//! ([`tree::Diagnostics`]). Files written for the Go pfxhttp load unchanged: daemon-only keys are
//! accepted with a warning, `defaults` sections are merged into their entries, `{{ .Key }}`
//! payloads are rewritten, and names match case-insensitively.
//!
//! Reading runs one way, top down: `build` reads the file and its `server` section, `entry` reads
//! each `socket_maps` or `policy_services` entry from its parts (`request`, `answer`, `retry`, and
//! `auth` for the token blocks), `sasl` reads a `dovecot_sasl` service from the same parts,
//! `http_client` reads the HTTP client and TLS settings an entry
//! inherits from `server`, `templates` compiles and tries templates, and `tree` walks the YAML and
//! collects the [`Diagnostics`].

mod answer;
mod auth;
mod build;
mod cache;
pub mod duration;
mod entry;
mod http_client;
mod request;
mod retry;
mod sasl;
mod source;
mod templates;
mod tree;

use crate::template::Template;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use answer::Answer;
pub use auth::ACCOUNT_FIELDS;
pub use cache::{CacheSettings, DEFAULT_MAX_ENTRIES};
pub use request::Request;
pub use retry::Retry;
pub use source::{SEARCH_PATH, find};
pub use tree::{Diagnostics, scalar_text};

/// The default policy action when no good answer can be had.
pub const DEFAULT_POLICY_ACTION: &str = "DEFER_IF_PERMIT Service temporarily unavailable";

/// The format of the config file (`--format`). YAML also reads JSON. A file name ending in
/// `.toml`, `.json`, `.yml` or `.yaml` says the format itself (see [`Format::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
    Toml,
}

impl Format {
    /// The format of the file at `path`: the one its name's ending says, else `self`.
    pub fn of(self, path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            Some("yml" | "yaml") => Format::Yaml,
            _ => self,
        }
    }

    /// The file name searched for first in each directory of [`SEARCH_PATH`].
    pub(super) fn file_name(self) -> &'static str {
        match self {
            Format::Yaml => "pfxhttp.yml",
            Format::Json => "pfxhttp.json",
            Format::Toml => "pfxhttp.toml",
        }
    }
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub logging: LogSettings,
    pub limits: Limits,
    /// Longest socketmap value sent; Postfix before 3.10 refuses replies over 100000 bytes.
    pub socketmap_max_reply_size: usize,
    /// The shared state database (token cache, host health).
    pub state_db: StateDb,
    /// `server.metrics`: serving processes count requests into the state database.
    pub metrics: bool,
    /// `socket_maps` entries.
    pub maps: Vec<Entry>,
    /// `policy_services` entries.
    pub policies: Vec<Entry>,
    /// `dovecot_sasl` services.
    pub sasl: Vec<SaslService>,
    /// Distinct HTTP client settings; entries refer to them by index.
    pub clients: Vec<ClientSpec>,
}

impl Config {
    /// The socketmap entry called `name` (ASCII case-insensitive).
    pub fn map(&self, name: &str) -> Option<&Entry> {
        self.maps.iter().find(|e| e.name.eq_ignore_ascii_case(name))
    }

    /// The policy service called `name` (ASCII case-insensitive).
    pub fn policy(&self, name: &str) -> Option<&Entry> {
        self.policies.iter().find(|e| e.name.eq_ignore_ascii_case(name))
    }

    /// The `dovecot_sasl` service called `name` (ASCII case-insensitive), or the only one when
    /// no name is given; the error says why there is none.
    pub fn sasl(&self, name: Option<&str>) -> Result<&SaslService, String> {
        match (name, self.sasl.as_slice()) {
            (Some(name), all) => all
                .iter()
                .find(|s| s.entry.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| format!("dovecot_sasl service {name} is not configured")),
            (None, [only]) => Ok(only),
            (None, []) => Err("no dovecot_sasl service is configured".into()),
            (None, _) => Err("several dovecot_sasl services are configured; name one (pfxhttp sasl NAME)".into()),
        }
    }
}

/// What loading produced: the valid config or every error, and what is known in any case.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration, or every error that makes it unusable, each with its YAML path.
    pub config: Result<Config, Vec<String>>,
    /// Things that load but do not do what the file may expect, each with its path; a valid
    /// configuration may have some too.
    pub warnings: Vec<String>,
    /// Logging settings as far as the file could be read (defaults otherwise), so that even a
    /// broken configuration can be reported to the right syslog socket.
    pub logging: LogSettings,
    /// Request limits as far as known.
    pub limits: Limits,
    /// Paths of secrets written in the file itself, for the warning about a file that other
    /// users can read.
    inline_secrets: Vec<String>,
}

impl Loaded {
    /// The result of loading: `config` counts only when `found` has no error.
    fn new(config: Option<Config>, logging: LogSettings, limits: Limits, found: Diagnostics) -> Loaded {
        let Diagnostics { errors, warnings, inline_secrets } = found;
        let config = match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(errors),
        };
        Loaded { config, warnings, logging, limits, inline_secrets }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    None,
}

/// Where log lines go (`server.logging.target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    /// The syslog socket when it exists, else Postfix's postlog socket when that exists; decided
    /// again whenever a line finds no connection.
    Auto,
    /// The syslog socket (`syslog_socket`) only.
    Syslog,
    /// Postfix's postlogd(8) socket (`postlog_socket`) only, for `maillog_file`.
    Postlog,
    /// Standard error, for commands run by hand only: a serving command's stderr may be the
    /// client's socket, so serving commands use [`LogTarget::Auto`] instead.
    Stderr,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: Level,
    pub json: bool,
    pub facility: syslog::Facility,
    pub target: LogTarget,
    pub syslog_socket: PathBuf,
    /// postlogd(8)'s socket: `public/postlog` in Postfix's queue directory.
    pub postlog_socket: PathBuf,
    /// `false` hides lookup keys and policy attribute values.
    pub log_keys: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: Level::Info,
            json: false,
            facility: syslog::Facility::LOG_MAIL,
            target: LogTarget::Auto,
            syslog_socket: PathBuf::from("/dev/log"),
            postlog_socket: PathBuf::from("/var/spool/postfix/public/postlog"),
            log_keys: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one request (netstring payload, policy request, tcp line).
    pub max_request_bytes: usize,
    pub max_policy_attributes: usize,
    /// Exit after this long without a request.
    pub idle_timeout: Duration,
    /// Exit between requests once the process is this old.
    pub max_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 100_000,
            max_policy_attributes: 1000,
            idle_timeout: Duration::from_secs(300),
            max_lifetime: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDb {
    File(PathBuf),
    /// `:memory:`: state kept per process.
    Memory,
}

/// Settings that need a separate HTTP client (TLS, proxy, connect timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub connect_timeout: Duration,
    pub proxy: Option<String>,
    pub tls: TlsSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// Trust anchors: the system bundle unless `root_ca` replaces it.
    pub root_ca: Option<PathBuf>,
    /// Client certificate and key (PEM).
    pub identity: Option<(PathBuf, PathBuf)>,
    pub skip_verify: bool,
    /// Refuse TLS 1.2 (`min_version: "1.3"`).
    pub tls13_only: bool,
}

/// Which protocol an entry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Map,
    Policy,
    /// A `dovecot_sasl` service.
    Sasl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    Failover,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Json,
    Text,
    Header,
}

/// A value that must never be printed (passwords, secrets, tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Backend authentication, parsed now; the flows live in their own module.
#[derive(Debug, Clone)]
pub enum Auth {
    Jwt(JwtAuth),
    Oidc(OidcAuth),
}

impl Auth {
    /// The HTTP client of token and discovery requests. It is never the entry's: an entry's
    /// `tls` and `proxy` are for its backend, and a `skip_verify` there must not send a password
    /// or client secret to an endpoint whose certificate nobody checked. It is built from the
    /// server-level settings, or from the auth block's own `tls`.
    pub fn client(&self) -> usize {
        match self {
            Auth::Jwt(j) => j.client,
            Auth::Oidc(o) => o.client,
        }
    }

    /// The config file (its canonical path) and the entry (`socket_maps/NAME` or
    /// `policy_services/NAME`) this block belongs to: part of the token cache key, so that two
    /// configurations sharing a state database never share a token by accident.
    pub fn owner(&self) -> &str {
        match self {
            Auth::Jwt(j) => &j.owner,
            Auth::Oidc(o) => &o.owner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct JwtAuth {
    /// Whose token this is: the config file and the entry (see [`Auth::owner`]).
    pub owner: String,
    /// Index into [`Config::clients`] for token requests (see [`Auth::client`]).
    pub client: usize,
    pub token_endpoint: String,
    pub refresh_endpoint: Option<String>,
    pub credentials: Vec<(String, Secret)>,
    pub credentials_file: Option<PathBuf>,
    /// Send the credentials as JSON (else form-encoded).
    pub json: bool,
}

#[derive(Debug, Clone)]
pub struct OidcAuth {
    /// Whose token this is: the config file and the entry (see [`Auth::owner`]).
    pub owner: String,
    /// Index into [`Config::clients`] for token and discovery requests (see [`Auth::client`]).
    pub client: usize,
    pub configuration_uri: Option<String>,
    pub token_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Vec<String>,
    pub method: OidcMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OidcMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

/// One `target` URL.
#[derive(Debug)]
pub struct Target {
    pub template: Template,
    /// The URL, parsed once, when the template has no variables (the common case): a lookup
    /// then neither renders nor parses it.
    pub fixed: Option<reqwest::Url>,
}

/// One `socket_maps` or `policy_services` entry.
#[derive(Debug)]
pub struct Entry {
    /// The name as written in the file.
    pub name: String,
    /// URL templates, tried in turn.
    pub targets: Vec<Target>,
    /// Index into [`Config::clients`].
    pub client: usize,
    pub request: Request,
    pub answer: Answer,
    pub retry: Retry,
    /// `jwt_auth` or `backend_oidc_auth`: a bearer token for every request.
    pub auth: Option<Auth>,
    /// The response cache, when the entry has one.
    pub cache: Option<CacheSettings>,
}

/// One `dovecot_sasl` service: an entry for the backend call (targets, request, retry, auth;
/// its answer part holds `status_code` only), and what the SASL answer needs besides.
#[derive(Debug)]
pub struct SaslService {
    /// The backend call; its payload is always set (the default is the Nauthilus JSON body).
    pub entry: Entry,
    /// Sent as `local_port` (smtpd never tells the port the SMTP client connected to).
    pub default_local_port: String,
    /// How long to wait before answering `FAIL`, as Dovecot does against password guessing.
    pub failure_delay: Duration,
    /// `sasl_oidc_auth`: XOAUTH2 and OAUTHBEARER are offered only with it.
    pub oidc: Option<SaslOidc>,
}

/// `sasl_oidc_auth`: how bearer tokens of XOAUTH2 and OAUTHBEARER are checked.
#[derive(Debug, Clone)]
pub struct SaslOidc {
    /// Index into [`Config::clients`] for discovery, JWKS and introspection requests: the
    /// server's connect timeout, proxy and TLS (or the block's own `tls`), never the backend's.
    pub client: usize,
    pub configuration_uri: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub validation: Validation,
    /// What a JWT's `aud` must contain (default: `client_id`).
    pub audience: String,
    /// The claim that names the user, in a JWT or in the introspection answer.
    pub account_claim: String,
}

/// How a bearer token is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// RFC 7662: the IdP's introspection endpoint says whether it is active.
    Introspection,
    /// A JWT verified against the IdP's published keys.
    Jwks,
    /// JWKS for a token that looks like a JWT, introspection for any other.
    Auto,
}

/// Reads and validates the file at `path`, in the format its name says, else in `format`.
pub fn load(path: &Path, format: Format) -> Loaded {
    let format = format.of(path);
    let origin = path.display().to_string();
    match source::read(path) {
        Ok((text, mode)) => {
            // The file's identity in token cache keys. Its canonical path rather than a random
            // value kept in the state database: it needs no write (a read-only or unusable
            // database, or `:memory:`, gives the same key), it is the same for every process
            // and for `pfxhttp token` however the file is named (relative path, symlink), and a
            // random value would add no secrecy (it would sit in the same file as the keys).
            // A key built from public facts is enough: it only has to keep apart what must not
            // share a token, and it takes no secret that a reader of the database could guess.
            let identity = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let mut loaded = load_text(&text, format, &origin, &identity.display().to_string());
            let mut readable =
                Diagnostics { inline_secrets: std::mem::take(&mut loaded.inline_secrets), ..Default::default() };
            source::warn_readable_secrets(&origin, mode, &mut readable);
            loaded.warnings.append(&mut readable.warnings);
            loaded
        }
        Err(e) => refused(&origin, e),
    }
}

/// Validates config text; `origin` names it in messages and in token cache keys.
pub fn load_str(text: &str, format: Format, origin: &str) -> Loaded {
    load_text(text, format, origin, origin)
}

/// Validates config text; `origin` names it in messages, `identity` in token cache keys.
fn load_text(text: &str, format: Format, origin: &str, identity: &str) -> Loaded {
    if text.len() > source::MAX_FILE_BYTES {
        return refused(origin, source::too_large(text.len() as u64));
    }
    match parse(text, format) {
        Ok(root) => build::config(&root, identity, Diagnostics::default()),
        Err(e) => refused(origin, e),
    }
}

/// The tree every format is read into before it is validated, or why the text is refused.
pub fn parse(text: &str, format: Format) -> Result<serde_yaml::Value, String> {
    match format {
        Format::Yaml => source::parse_yaml(text),
        Format::Json => serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| e.to_string())
            .and_then(|j| serde_yaml::to_value(j).map_err(|e| e.to_string()))
            .map_err(|e| format!("not valid JSON: {e}")),
        Format::Toml => source::parse_toml(text),
    }
}

/// The result for text that cannot be read at all.
fn refused(origin: &str, why: String) -> Loaded {
    let mut diagnostics = Diagnostics::default();
    diagnostics.error(origin, why);
    Loaded::new(None, LogSettings::default(), Limits::default(), diagnostics)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod safety_tests;

#[cfg(test)]
mod toml_tests;
