//! One builder for the `pfxhttp.yml` files the tests run against, each in a temp dir of its own
//! (removed when the [`Config`] is dropped).
//!
//! A config starts either [`Config::new`] (`target: syslog` with a socket that does not exist, so
//! a serving process logs nothing, never to stderr nor to a Postfix postlog socket on the host,
//! and a state database `state.db` in the temp dir, so host health and tokens never leak between
//! tests) or [`Config::bare`] (no `server` key unless a
//! test adds one). Entries are added with [`Config::map`], [`Config::policy`] or
//! [`Config::entry`]; [`Config::set`] and its siblings change the entry added last. A test that
//! means to write odd YAML by hand (the loader's diagnostics) uses [`Config::text`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Child, Output, assert_clean, q, run, temp_dir, write_config};

/// The payload every map gets from [`Config::map`].
const KEY_PAYLOAD: &str = r#"{"key":"{{ key }}"}"#;

/// A `pfxhttp.yml` under construction.
pub struct Config {
    dir: tempfile::TempDir,
    /// The whole file, written as it is ([`Config::text`]).
    text: Option<String>,
    /// `server.logging`, flow style.
    logging: Option<String>,
    /// `server.state_db`, unless a `server` line sets `state_db` or `jwt_db_path` itself.
    state_db: Option<String>,
    /// More `server` keys, one YAML line each.
    server: Vec<String>,
    entries: Vec<Entry>,
}

/// One entry of `socket_maps`, `policy_services` or `dovecot_sasl`: its keys in order, values as YAML.
struct Entry {
    section: &'static str,
    name: String,
    fields: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl Config {
    /// Logging to a socket that does not exist and a state database in the temp dir.
    pub fn new() -> Config {
        let config = Config::bare();
        let nolog = q(&config.dir.path().join("no-syslog").display().to_string());
        let db = config.dir.path().join("state.db").display().to_string();
        Config { logging: Some(format!("{{ target: syslog, syslog_socket: {nolog} }}")), state_db: Some(db), ..config }
    }

    /// Nothing but what the test adds.
    pub fn bare() -> Config {
        let (text, logging, state_db) = (None, None, None);
        Config { dir: temp_dir(), text, logging, state_db, server: Vec::new(), entries: Vec::new() }
    }

    /// A file holding exactly `yaml`.
    pub fn text(yaml: &str) -> Config {
        Config { text: Some(yaml.to_string()), ..Config::bare() }
    }

    /// Adds an empty entry `name` to `section` (`socket_maps` or `policy_services`).
    pub fn entry(mut self, section: &'static str, name: &str) -> Config {
        self.entries.push(Entry { section, name: name.to_string(), fields: Vec::new() });
        self
    }

    /// Adds the map `name` asking `target` with `payload: '{"key":"{{ key }}"}'` and
    /// `value_field: result`.
    pub fn map(self, name: &str, target: &str) -> Config {
        self.entry("socket_maps", name)
            .set("target", &q(target))
            .set("payload", &q(KEY_PAYLOAD))
            .set("value_field", "result")
    }

    /// Adds the policy service `name` asking `target` with `value_field: action`.
    pub fn policy(self, name: &str, target: &str) -> Config {
        self.entry("policy_services", name).set("target", &q(target)).set("value_field", "action")
    }

    /// Adds the `dovecot_sasl` service `name` asking `target`, with `failure_delay: 0s` (a test
    /// of the delay sets its own).
    pub fn sasl(self, name: &str, target: &str) -> Config {
        self.entry("dovecot_sasl", name).set("target", &q(target)).set("failure_delay", "0s")
    }

    /// Sets `key: yaml` in the last entry (in place of an earlier value).
    pub fn set(mut self, key: &str, yaml: &str) -> Config {
        let entry = self.entries.last_mut().expect("an entry to set a key in");
        set_field(&mut entry.fields, key, yaml);
        self
    }

    /// Sets `key: yaml` in every entry.
    pub fn set_all(mut self, key: &str, yaml: &str) -> Config {
        for entry in &mut self.entries {
            set_field(&mut entry.fields, key, yaml);
        }
        self
    }

    /// Sets a `key: yaml` line in the last entry, e.g. `timeout: 500ms`.
    pub fn line(self, line: &str) -> Config {
        let (key, yaml) = line.split_once(':').unwrap_or_else(|| panic!("not a `key: value` line: {line:?}"));
        self.set(key.trim(), yaml.trim())
    }

    /// Removes `key` from the last entry.
    pub fn unset(mut self, key: &str) -> Config {
        self.entries.last_mut().expect("an entry").fields.retain(|(k, _)| k != key);
        self
    }

    /// The last entry's `target`: one URL, or a list when there are several.
    pub fn targets(self, targets: &[&str]) -> Config {
        let quoted: Vec<String> = targets.iter().map(|t| q(t)).collect();
        let yaml = if let [one] = quoted.as_slice() { one.clone() } else { format!("[{}]", quoted.join(", ")) };
        self.set("target", &yaml)
    }

    /// Adds a `server` line such as `limits: { idle_timeout: 1s }`.
    pub fn server(mut self, line: &str) -> Config {
        self.server.push(line.to_string());
        self
    }

    /// Sends the logs to `sink`; `extra` adds logging keys such as `, level: debug`.
    pub fn syslog(mut self, sink: &super::SyslogSink, extra: &str) -> Config {
        self.logging =
            Some(format!("{{ target: syslog, syslog_socket: {}{extra} }}", q(&sink.path().display().to_string())));
        self
    }

    /// `server.state_db`: a path, or `:memory:`.
    pub fn state_db(mut self, value: &str) -> Config {
        self.state_db = Some(value.to_string());
        self
    }

    /// The temp dir the file is written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The state database of this config (`server.state_db`).
    pub fn db_path(&self) -> PathBuf {
        PathBuf::from(self.state_db.as_deref().expect("a config with a state database"))
    }

    /// The file's text.
    pub fn yaml(&self) -> String {
        if let Some(text) = &self.text {
            return text.clone();
        }
        let mut y = String::new();
        let own_db = self.server.iter().any(|l| l.starts_with("state_db") || l.starts_with("jwt_db_path"));
        let mut server: Vec<String> = self.logging.iter().map(|l| format!("logging: {l}")).collect();
        server.extend(self.state_db.iter().filter(|_| !own_db).map(|db| format!("state_db: {}", q(db))));
        server.extend(self.server.iter().cloned());
        if !server.is_empty() {
            y.push_str("server:\n");
            server.iter().for_each(|l| y.push_str(&format!("  {l}\n")));
        }
        for section in ["socket_maps", "policy_services", "dovecot_sasl"] {
            let entries: Vec<&Entry> = self.entries.iter().filter(|e| e.section == section).collect();
            if !entries.is_empty() {
                y.push_str(&format!("{section}:\n"));
            }
            for entry in entries {
                y.push_str(&format!("  {}:\n", entry.name));
                entry.fields.iter().for_each(|(k, v)| y.push_str(&format!("    {k}: {v}\n")));
            }
        }
        y
    }

    /// Writes the file (unless it already holds this text: processes started earlier may be
    /// reading it right now) and returns its path.
    pub fn path(&self) -> PathBuf {
        let path = self.dir.path().join("pfxhttp.yml");
        let yaml = self.yaml();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            write_config(self.dir.path(), &yaml);
        }
        path
    }

    /// [`Config::path`] as a command-line argument.
    pub fn arg(&self) -> String {
        self.path().to_str().expect("utf-8 temp path").to_string()
    }

    /// `pfxhttp --config FILE ARGS...` fed `stdin`, killed after `limit`.
    pub fn run_command(&self, args: &[&str], stdin: &[u8], limit: Duration) -> Output {
        let path = self.arg();
        let mut all = vec!["--config", path.as_str()];
        all.extend_from_slice(args);
        run(&all, stdin, limit)
    }

    /// Like [`Config::run_command`] for a serving command: checked with [`assert_clean`].
    #[track_caller]
    pub fn run_serving(&self, args: &[&str], stdin: &[u8], limit: Duration) -> Output {
        let out = self.run_command(args, stdin, limit);
        assert_clean(&out);
        out
    }

    /// An interactive `pfxhttp --config FILE ARGS...`.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let path = self.arg();
        let mut all = vec!["--config", path.as_str()];
        all.extend_from_slice(args);
        Child::spawn(&all)
    }
}

fn set_field(fields: &mut Vec<(String, String)>, key: &str, yaml: &str) {
    match fields.iter_mut().find(|(k, _)| k == key) {
        Some(field) => field.1 = yaml.to_string(),
        None => fields.push((key.to_string(), yaml.to_string())),
    }
}
