//! The references of `check --postfix`: socketmap and tcp tables, policy services and the
//! Dovecot SASL socket that Postfix's settings point at, held against the services of master.cf.

use super::{Checker, Endpoint, Reference, Run, Service, postfix};

/// How a reference wants to be served, for the messages.
fn wanted(reference: &Reference) -> &'static str {
    match reference {
        Reference::Socketmap(..) => "pfxhttp socketmap",
        Reference::Tcp(_) => "pfxhttp tcp MAP",
        Reference::Policy(..) => "pfxhttp policy",
    }
}

/// Where a reference points, as Postfix writes it.
fn shown(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Unix(name) => format!("unix:private/{name}"),
        Endpoint::Inet(host, port) => format!("{host}:{port}"),
    }
}

/// Whether `host` is this machine, where a service of master.cf would have to answer.
fn loopback(host: &str) -> bool {
    matches!(host, "" | "127.0.0.1" | "localhost" | "::1")
}

impl Checker {
    /// Checks every reference of main.cf and of master.cf's `-o` settings, and the SASL sockets.
    pub(super) fn references(&mut self) {
        let mut found: Vec<(String, Reference)> = Vec::new();
        for (name, value) in &self.main {
            found.extend(postfix::references(value).into_iter().map(|r| (format!("main.cf {name}"), r)));
        }
        for (name, value) in &self.overrides {
            let (service, param) = name
                .split_once('/')
                .map_or((name.as_str(), ""), |(s, rest)| (s, rest.split_once('/').map_or(rest, |(_, p)| p)));
            let place = format!("master.cf service {service} -o {param}");
            found.extend(postfix::references(value).into_iter().map(|r| (place.clone(), r)));
        }
        for (place, reference) in found {
            self.reference(&place, &reference);
        }
        self.sasl();
    }

    /// The master.cf service at `endpoint`.
    fn target(&self, endpoint: &Endpoint) -> Option<&Service> {
        self.services.iter().find(|s| match endpoint {
            Endpoint::Unix(name) => s.name == *name && s.kind == "unix",
            Endpoint::Inet(_, port) => s.port() == Some(port),
        })
    }

    /// One reference: its service exists, runs the matching pfxhttp command, and the map or
    /// policy service it names is in that service's configuration.
    fn reference(&mut self, place: &str, reference: &Reference) {
        let (Reference::Socketmap(endpoint, _) | Reference::Tcp(endpoint) | Reference::Policy(endpoint, _)) = reference;
        let Some(service) = self.target(endpoint) else {
            if matches!(endpoint, Endpoint::Inet(host, _) if !loopback(host)) {
                return;
            }
            let what = format!("{} names no master.cf service", shown(endpoint));
            let fix = format!("add a spawn(8) service there running `{}` (master.cf.snippet)", wanted(reference));
            return self.problem(place, what, fix);
        };
        let name = service.name.clone();
        let Some(i) = self.spawned.iter().position(|s| s.service.name == name) else { return };
        let (command, config) = (self.spawned[i].run.command.clone(), self.spawned[i].config);
        let config = config.and_then(|c| Some((self.configs[c].0.display().to_string(), self.configs[c].1.as_ref()?)));
        let fits = matches!(
            (reference, &command),
            (Reference::Socketmap(..), Run::Socketmap)
                | (Reference::Tcp(_), Run::Tcp(_))
                | (Reference::Policy(..), Run::Policy(_))
        );
        if !fits {
            let what = format!("{} runs another pfxhttp command than `{}`", shown(endpoint), wanted(reference));
            return self.problem(place, what, format!("point it at a service running `{}`", wanted(reference)));
        }
        let Some((file, config)) = config else { return };
        let what = match (reference, &command) {
            (Reference::Socketmap(_, map), _) if config.map(map).is_none() => {
                format!("map {map} of {} is not in {file}: every lookup answers \"unknown map\"", shown(endpoint))
            }
            (Reference::Policy(_, context), Run::Policy(None)) => match context {
                Some(c) if config.policy(c).is_none() => {
                    format!("policy_context={c}: {file} has no policy_services entry {c}")
                }
                None if config.policies.len() != 1 => format!(
                    "{} runs `pfxhttp policy` without a service name and {file} has {} policy services: \
                     nothing says which one answers",
                    shown(endpoint),
                    config.policies.len()
                ),
                _ => return,
            },
            _ => return,
        };
        let have: Vec<&str> = match reference {
            Reference::Socketmap(..) => config.maps.iter().map(|e| e.name.as_str()).collect(),
            _ => config.policies.iter().map(|e| e.name.as_str()).collect(),
        };
        self.problem(place, what, format!("use one of: {} (or add the entry to {file})", have.join(", ")));
    }

    /// `smtpd_sasl_type = dovecot` with `smtpd_sasl_path` at a pfxhttp service, in main.cf or
    /// in an smtpd service's `-o`: that service must run `pfxhttp sasl`.
    fn sasl(&mut self) {
        let main = |name: &str| self.main.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let mut scopes = vec![("main.cf".to_string(), main("smtpd_sasl_type"), main("smtpd_sasl_path"))];
        for s in self.services.iter().filter(|s| s.command == "smtpd") {
            let own = |p: &str| {
                let key = format!("{}/{}/{p}", s.name, s.kind);
                self.overrides.iter().find(|(n, _)| *n == key).map(|(_, v)| v.clone())
            };
            let (kind, path) = (own("smtpd_sasl_type"), own("smtpd_sasl_path"));
            if kind.is_some() || path.is_some() {
                let place = format!("master.cf service {}", s.name);
                scopes.push((place, kind.or(main("smtpd_sasl_type")), path.or(main("smtpd_sasl_path"))));
            }
        }
        for (place, kind, path) in scopes {
            let (Some("dovecot"), Some(path)) = (kind.as_deref(), path) else { continue };
            let endpoint = match path.strip_prefix("inet:") {
                Some(at) => at.rsplit_once(':').map(|(h, p)| Endpoint::Inet(h.into(), p.into())),
                None => path.rsplit_once('/').map(|(_, name)| Endpoint::Unix(name.into())),
            };
            let Some(name) = endpoint.and_then(|e| self.target(&e)).map(|s| s.name.clone()) else { continue };
            let Some(spawned) = self.spawned.iter().find(|s| s.service.name == name) else { continue };
            if !matches!(spawned.run.command, Run::Sasl(_)) {
                let what = format!("smtpd_sasl_path = {path} runs another pfxhttp command than `pfxhttp sasl`");
                self.problem(&place, what, "point smtpd_sasl_path at a service running `pfxhttp sasl NAME`");
            }
        }
    }
}
