//! Documents of identity providers (OpenID discovery, JSON Web Key Sets), shared by every
//! process so that one fetch serves them all. The table is made on first use: older databases
//! lack it, and it needs no schema version of its own.

use super::{Store, now_ms};
use rusqlite::{OptionalExtension as _, params};
use std::time::Duration;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS idp_documents (
    uri TEXT PRIMARY KEY NOT NULL,
    body TEXT NOT NULL,
    fetched_at INTEGER NOT NULL
)";

impl Store {
    /// The document fetched from `uri` less than `max_age` ago.
    pub fn document(&self, uri: &str, max_age: Duration) -> Option<String> {
        let since = now_ms() - max_age.as_millis() as i64;
        self.with_db(|db| {
            db.execute_batch(SCHEMA)?;
            db.query_row(
                "SELECT body FROM idp_documents WHERE uri = ?1 AND fetched_at > ?2",
                params![uri, since],
                |r| r.get::<_, String>(0),
            )
            .optional()
        })
        .flatten()
    }

    /// Remembers the document fetched from `uri`.
    pub fn put_document(&self, uri: &str, body: &str) {
        let _ = self.with_db(|db| {
            db.execute_batch(SCHEMA)?;
            db.execute(
                "INSERT INTO idp_documents (uri, body, fetched_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (uri) DO UPDATE SET body = ?2, fetched_at = ?3",
                params![uri, body, now_ms()],
            )
        });
    }
}
