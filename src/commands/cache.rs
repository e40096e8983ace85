//! `pfxhttp cache stats|flush`: the response cache in the state database.

use super::admin::Setup;
use crate::cli::CacheAction;
use crate::config::{Config, Entry, Format, StateDb};
use crate::state::cache::{self, Flushed, Stats};
use crate::state::{self, now_ms};
use crate::text::printable;
use crate::{exit, template};
use std::path::PathBuf;

pub(super) fn run(path: Result<PathBuf, String>, format: Format, action: CacheAction) -> u8 {
    let setup = match Setup::load(path, format) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let db_path = match &setup.config.state_db {
        StateDb::Memory => {
            println!("server.state_db is :memory:: every process keeps a cache of its own; nothing to show");
            return exit::OK;
        }
        StateDb::File(p) if !p.exists() => {
            eprintln!("pfxhttp: no state database at {} (pfxhttp state init creates it)", p.display());
            return exit::TEMPFAIL;
        }
        StateDb::File(p) => p,
    };
    // As root, this becomes the state directory's owner first.
    let db = match state::try_open(db_path) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("pfxhttp: {}", printable(&e.to_string()));
            return exit::TEMPFAIL;
        }
    };
    let result = match action {
        CacheAction::Stats { json, name } => stats(&setup.config, &db, name.as_deref(), json),
        CacheAction::Flush { name, key } => flush(&setup.config, &db, name.as_deref(), key.as_deref()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("pfxhttp: response cache in {}: {}", db_path.display(), printable(&e.to_string()));
        exit::TEMPFAIL
    })
}

/// The row prefix of an entry: maps and policy services have names of their own.
fn row_entry(config: &Config, name: &str) -> Option<(String, &'static str)> {
    let found = |e: &Entry, kind: &'static str| (format!("{kind}:{}", e.name), kind);
    config.map(name).map(|e| found(e, "map")).or_else(|| config.policy(name).map(|e| found(e, "policy")))
}

fn stats(config: &Config, db: &rusqlite::Connection, name: Option<&str>, json: bool) -> rusqlite::Result<u8> {
    let mut rows = cache::stats(db)?;
    // Entries with a cache and no rows yet are shown too.
    let cached = config.maps.iter().map(|e| (e, "map")).chain(config.policies.iter().map(|e| (e, "policy")));
    for (entry, kind) in cached.filter(|(e, _)| e.cache.is_some()) {
        let id = format!("{kind}:{}", entry.name);
        if !rows.iter().any(|s| s.entry == id) {
            rows.push(Stats { entry: id, ..Stats::default() });
        }
    }
    if let Some(name) = name {
        let Some((id, _)) = row_entry(config, name) else {
            eprintln!("pfxhttp: no socket map or policy service called {name}");
            return Ok(exit::USAGE);
        };
        rows.retain(|s| s.entry == id);
    }
    let now = now_ms();
    for s in &rows {
        let (kind, name) = s.entry.split_once(':').unwrap_or(("", &s.entry));
        let age = |at: i64| if s.rows == 0 { 0 } else { (now - at).max(0) / 1000 };
        let (oldest, newest) = (age(s.oldest), age(s.newest));
        if json {
            let line = serde_json::json!({
                "name": name, "kind": kind, "rows": s.rows, "found": s.found, "not_found": s.not_found,
                "oldest": oldest, "newest": newest, "bytes": s.bytes,
            });
            println!("{line}");
        } else {
            println!(
                "{} rows={} found={} not_found={} oldest={oldest} newest={newest} bytes={}",
                printable(name),
                s.rows,
                s.found,
                s.not_found,
                s.bytes
            );
        }
    }
    Ok(exit::OK)
}

fn flush(config: &Config, db: &rusqlite::Connection, name: Option<&str>, key: Option<&str>) -> rusqlite::Result<u8> {
    let target = match name {
        None => None,
        Some(name) => match row_entry(config, name) {
            Some(found) => Some(found),
            None => {
                eprintln!("pfxhttp: no socket map or policy service called {name}");
                return Ok(exit::USAGE);
            }
        },
    };
    let text = match (&target, key) {
        (Some((id, "map")), Some(key)) => Some(map_key_text(config, id, key)),
        (_, key) => key.map(str::to_string),
    };
    match cache::flush(db, target.as_ref().map(|(id, _)| id.as_str()), text.as_deref())? {
        Flushed::Rows(n) => println!("removed {n} row(s)"),
        Flushed::Recreated => println!("the cache table was damaged or not pfxhttp's: made anew, empty"),
    }
    Ok(exit::OK)
}

/// A map's cache key for `key`, rendered as a request for it would render it.
fn map_key_text(config: &Config, id: &str, key: &str) -> String {
    let name = id.trim_start_matches("map:");
    let template = config.map(name).and_then(|e| e.cache.as_ref()).and_then(|c| c.key.as_ref());
    match template {
        Some(t) => t.render(&template::lookup_vars(name, key, "")).unwrap_or_else(|_| key.to_string()),
        None => key.to_string(),
    }
}
