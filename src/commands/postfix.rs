//! `check --postfix`: Postfix's side of the setup, as postconf(1) shows it. Every master.cf
//! service that runs pfxhttp, and every socketmap, tcp_table, policy service and SASL socket that
//! main.cf (or a master.cf `-o`) points at, is held against what makes it hang, fail or answer
//! "unknown map"; each problem is printed with its fix.

use super::identity;
use crate::config::{self, Config, Format, StateDb};
use crate::exit;
use crate::postfix::{self, Endpoint, Pfxhttp, Reference, Run, Service};
use crate::text::printable;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Something wrong, where it is, and what to do about it.
struct Problem {
    place: String,
    what: String,
    fix: String,
}

/// A pfxhttp spawn service: its master.cf entry, its command line, and its configuration file
/// (an index into [`Checker::configs`]) when that loads.
struct Spawned {
    service: Service,
    run: Pfxhttp,
    config: Option<usize>,
}

/// What postconf(1) said, and what was found so far.
struct Checker {
    services: Vec<Service>,
    /// `postconf -n`: main.cf's own settings.
    main: Vec<(String, String)>,
    /// `postconf -P`: master.cf's `-o` settings, named `service/type/parameter`.
    overrides: Vec<(String, String)>,
    /// mail_owner, command_time_limit and each pfxhttp service's time limit (`postconf -x`).
    values: BTreeMap<String, String>,
    spawned: Vec<Spawned>,
    /// Each configuration file used, loaded once.
    configs: Vec<(PathBuf, Option<Config>)>,
    problems: Vec<Problem>,
    /// What was left unchecked, and why.
    notes: Vec<String>,
}

pub(super) fn check(dir: Option<&Path>) -> u8 {
    let mut checker = match Checker::read(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pfxhttp: {}", printable(&e));
            return exit::CONFIG;
        }
    };
    for i in 0..checker.spawned.len() {
        checker.service(i);
    }
    checker.references();
    if checker.spawned.is_empty() {
        checker.problem(
            "master.cf",
            "no spawn(8) service runs pfxhttp",
            "add the services of master.cf.snippet (README, Installation)",
        );
    }
    let names: Vec<&str> = checker.spawned.iter().map(|s| s.service.name.as_str()).collect();
    for note in &checker.notes {
        eprintln!("{}", printable(note));
    }
    for p in &checker.problems {
        eprintln!("error: {}: {}\n  fix: {}", printable(&p.place), printable(&p.what), printable(&p.fix));
    }
    let at = dir.map_or("postconf".into(), |d| format!("postconf -c {}", d.display()));
    match checker.problems.len() {
        0 => {
            println!("Postfix ({at}): OK ({} pfxhttp service(s): {})", names.len(), names.join(", "));
            exit::OK
        }
        n => {
            eprintln!("Postfix ({at}): {n} problem(s)");
            exit::CONFIG
        }
    }
}

/// What `postconf [-c DIR] ARGS` prints; its complaint when it fails.
fn postconf(dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    // /usr/sbin is often not in a user's PATH.
    let run = |program: &str| {
        let mut cmd = Command::new(program);
        if let Some(d) = dir {
            cmd.arg("-c").arg(d);
        }
        cmd.args(args).stdin(Stdio::null()).output()
    };
    let out = run("postconf")
        .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { run("/usr/sbin/postconf") } else { Err(e) })
        .map_err(|e| format!("cannot run postconf (is Postfix installed?): {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(format!("postconf {} failed: {}", args.join(" "), said.trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Checker {
    fn read(dir: Option<&Path>) -> Result<Checker, String> {
        let services = postfix::parse_master(&postconf(dir, &["-M"])?);
        // Unexpanded: a `$name` is checked where main.cf sets `name`, and only there.
        let main = postfix::parse_params(&postconf(dir, &["-n"])?);
        let overrides = postfix::parse_params(&postconf(dir, &["-P"])?);
        let spawned: Vec<Spawned> = services
            .iter()
            .filter_map(|s| Some(Spawned { service: s.clone(), run: postfix::pfxhttp_of(s)?, config: None }))
            .collect();
        let limits: Vec<String> = spawned.iter().map(|s| format!("{}_time_limit", s.service.name)).collect();
        let mut names = vec!["mail_owner", "command_time_limit"];
        names.extend(limits.iter().map(String::as_str));
        let mut args = vec!["-x"];
        args.extend(names);
        let values = postfix::parse_params(&postconf(dir, &args)?).into_iter().collect();
        Ok(Checker {
            services,
            main,
            overrides,
            values,
            spawned,
            configs: Vec::new(),
            problems: Vec::new(),
            notes: Vec::new(),
        })
    }

    fn problem(&mut self, place: &str, what: impl Into<String>, fix: impl Into<String>) {
        self.problems.push(Problem { place: place.into(), what: what.into(), fix: fix.into() });
    }

    /// Every check of pfxhttp service `i` on its own.
    fn service(&mut self, i: usize) {
        let (service, run) = (self.spawned[i].service.clone(), self.spawned[i].run.clone());
        let place = format!("master.cf service {}", service.name);
        self.columns(&place, &service);
        if !executable(Path::new(&run.program)) {
            let what = format!("argv={} is not an executable file", run.program);
            self.problem(&place, what, "install pfxhttp there, or give argv= the path it has");
        }
        let user = self.user(&place, run.user.as_deref());
        let config = match &run.config {
            Some(c) => Ok(PathBuf::from(c)),
            None => config::find(None, run.format),
        };
        let config = match config {
            Ok(path) if path.is_file() => path,
            Ok(path) => {
                let what = format!("the configuration {} does not exist", path.display());
                return self.problem(&place, what, "write it, or give --config the path it has");
            }
            Err(e) => return self.problem(&place, e, "give pfxhttp --config FILE in argv="),
        };
        self.spawned[i].config = self.load(&place, &config, run.format);
        if let Some(user) = user {
            let db = self.spawned[i].config.and_then(|c| match &self.configs[c].1.as_ref()?.state_db {
                StateDb::File(db) if db.exists() => Some(db.clone()),
                _ => None,
            });
            self.readable(&place, &user, &config, run.format, db.as_deref());
        }
        if let Some(c) = self.spawned[i].config {
            self.time_limit(&place, &service, c);
            self.command(&place, &run, c);
        }
    }

    /// The unpriv and chroot columns.
    fn columns(&mut self, place: &str, service: &Service) {
        if service.unpriv != "n" {
            let what = format!(
                "the unpriv column is {:?}: spawn(8) then runs without root, cannot become user=, and every \
                 lookup waits (about 100 s) for a process that never answers",
                service.unpriv
            );
            self.problem(place, what, "write n in the unpriv column (the 4th)");
        }
        if service.chroot != "n" {
            let what = format!(
                "the chroot column is {:?}: chrooted into the queue directory, pfxhttp would not find its \
                 configuration, state database, CA certificates or /dev/log",
                service.chroot
            );
            self.problem(place, what, "write n in the chroot column (the 5th)");
        }
    }

    /// The configuration at `path`, loaded once; its errors are a problem.
    fn load(&mut self, place: &str, path: &Path, format: Format) -> Option<usize> {
        if let Some(i) = self.configs.iter().position(|(p, _)| p == path) {
            return self.configs[i].1.as_ref().map(|_| i);
        }
        let loaded = config::load(path, format).config;
        if let Err(errors) = &loaded {
            let first = errors.first().cloned().unwrap_or_default();
            let what = format!("{} has {} error(s), the first: {first}", path.display(), errors.len());
            self.problem(place, what, format!("see `pfxhttp --config {} check`", path.display()));
        }
        self.configs.push((path.to_path_buf(), loaded.ok()));
        self.configs.last().and_then(|(_, c)| c.as_ref()).map(|_| self.configs.len() - 1)
    }

    /// spawn's `user=`: present, neither root nor the mail owner, and a real user; returns it
    /// then.
    fn user(&mut self, place: &str, user: Option<&str>) -> Option<String> {
        let owner = self.values.get("mail_owner").cloned().unwrap_or_else(|| "postfix".into());
        let fix = "give the service a user of its own, e.g. user=pfxhttp (useradd --system pfxhttp)";
        let Some(user) = user else {
            self.problem(place, "no user= attribute: spawn(8) refuses to run the command", fix);
            return None;
        };
        if user == "root" || user == owner {
            let what = format!("user={user}: spawn(8) refuses root and the mail owner ({owner}), so the service fails");
            self.problem(place, what, fix);
            return None;
        }
        if let Err(e) = identity::lookup_user(user) {
            self.problem(place, format!("user={user}: {e}"), fix);
            return None;
        }
        Some(user.to_string())
    }

    /// Whether `user` can read the configuration and use the state database, as `pfxhttp check
    /// --user` finds out (as root; a user cannot take another's identity).
    fn readable(&mut self, place: &str, user: &str, config: &Path, format: Format, db: Option<&Path>) {
        if !rustix::process::geteuid().is_root() {
            let note = format!("note: {place}: not run as root, so what {user} can read was not checked");
            if !self.notes.contains(&note) {
                self.notes.push(note);
            }
            return;
        }
        if let Err(why) = readable_as(user, config, format, db) {
            let what = format!("user {user} cannot use what pfxhttp needs: {why}");
            let fix = format!(
                "let {user} read the configuration and its secret files, and create the state database with \
                 `pfxhttp --config {} state init --user {user}`",
                config.display()
            );
            self.problem(place, what, fix);
        }
    }

    /// `NAME_time_limit` (a `-o` of the service, else main.cf's, else command_time_limit) must
    /// let a process live its `max_lifetime`: spawn(8) kills it when the limit is up.
    fn time_limit(&mut self, place: &str, service: &Service, config: usize) {
        let param = format!("{}_time_limit", service.name);
        let own = format!("{}/{}/{param}", service.name, service.kind);
        let own = self.overrides.iter().find(|(n, _)| *n == own).map(|(_, v)| v.clone());
        let set = own.is_some() || self.main.iter().any(|(n, _)| *n == param);
        let value = own.or_else(|| self.values.get(&param).cloned()).unwrap_or_default();
        let Some(max) = self.configs[config].1.as_ref().map(|c| c.limits.max_lifetime) else { return };
        let limit = postfix::time_value(&value);
        if limit.is_some_and(|l| l >= max) {
            return;
        }
        let what = match set {
            false => format!(
                "{param} is not set, so spawn(8) kills a pfxhttp process after command_time_limit ({value}), \
                 before its max_lifetime ({}s) is up",
                max.as_secs()
            ),
            true => format!("{param} = {value} is below max_lifetime ({}s)", max.as_secs()),
        };
        let fix = format!("postconf -e '{param} = {}s' (or -o {param}={}s in master.cf)", max.as_secs(), max.as_secs());
        self.problem(place, what, fix);
    }

    /// The pfxhttp command and its argument against the configuration.
    fn command(&mut self, place: &str, run: &Pfxhttp, config: usize) {
        let Some(c) = self.configs[config].1.as_ref() else { return };
        let file = self.configs[config].0.display().to_string();
        let missing = match &run.command {
            Run::Socketmap | Run::Policy(None) => None,
            Run::Tcp(None) => Some("`pfxhttp tcp` needs the map name".to_string()),
            Run::Tcp(Some(m)) => c.map(m).is_none().then(|| format!("{file} has no socket_maps entry {m}")),
            Run::Policy(Some(p)) => c.policy(p).is_none().then(|| format!("{file} has no policy_services entry {p}")),
            Run::Sasl(n) => c.sasl(n.as_deref()).err().map(|e| format!("{file}: {e}")),
            Run::Other(o) => Some(format!("`pfxhttp {o}` does not serve a connection")),
        };
        if let Some(what) = missing {
            self.problem(place, what, "name an entry the configuration has (pfxhttp check lists them)");
        }
    }
}

/// Whether `path` is a file someone may execute.
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `pfxhttp check --user USER` on `config` (this very program) and gives what it found
/// wrong for that user: an error, or a state database the user cannot use or, when it exists
/// (`db`, as root sees it), cannot even find.
fn readable_as(user: &str, config: &Path, format: Format, db: Option<&Path>) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--config").arg(config);
    let name = clap::ValueEnum::to_possible_value(&format).map(|v| v.get_name().to_string());
    cmd.args(["--format", name.as_deref().unwrap_or("yaml")]);
    let out = cmd.args(["check", "--user", user]).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    let said = String::from_utf8_lossy(&out.stderr);
    let cannot = format!("{user} cannot use");
    let hidden = db.map(|db| (format!("server.state_db: {} does not exist", db.display()), db));
    let complaints: Vec<String> = said
        .lines()
        .filter_map(|l| match &hidden {
            Some((unseen, db)) if l.contains(unseen.as_str()) => Some(format!(
                "the state database {} exists, but {user} cannot reach it (a directory on its path is \
                 closed to {user})",
                db.display()
            )),
            _ if l.starts_with("error:") || l.starts_with("pfxhttp:") || l.contains(&cannot) => {
                Some(l.trim_start_matches("error: ").to_string())
            }
            _ => None,
        })
        .collect();
    match (out.status.success(), complaints.is_empty()) {
        (true, true) => Ok(()),
        (_, false) => Err(complaints.join("; ")),
        (false, true) => Err(format!("`pfxhttp check --user {user}` failed: {}", said.trim())),
    }
}

#[path = "postfix_refs.rs"]
mod refs;
