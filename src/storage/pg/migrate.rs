//! Versioned schema migrations: `migrations/NNNN_name.sql`, embedded in the binary, applied in
//! order at startup, each in its own transaction, and recorded in `recond_schema_version`.
//!
//! Several nodes may start at once. A migration's transaction first inserts its version row:
//! the primary key decides which node applies it (a second node's insert waits for the first
//! one's transaction and then fails with a unique violation, and that node takes the
//! migration as applied). No advisory lock and no `LOCK TABLE`, which CockroachDB and
//! YugabyteDB do not have in PostgreSQL's form. A database at a version newer than this build
//! knows is refused: an older binary must not write a schema it does not understand.
//!
//! To add a migration: a new file with the next number and a line in [`MIGRATIONS`].

use postgres::error::SqlState;
use postgres::Client;

use super::db_err;
use crate::storage::{Result, StoreError};

/// One migration: its version (the file's number), name and SQL.
pub(in crate::storage) struct Migration {
    pub(in crate::storage) version: i32,
    pub(in crate::storage) name: &'static str,
    pub(in crate::storage) sql: &'static str,
}

/// Every migration this build knows, in order (versions 1, 2, 3, ... without gaps).
pub(in crate::storage) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "repository",
        sql: include_str!("migrations/0001_repository.sql"),
    },
    Migration {
        version: 2,
        name: "cluster",
        sql: include_str!("migrations/0002_cluster.sql"),
    },
    Migration {
        version: 3,
        name: "cluster_runs",
        sql: include_str!("migrations/0003_cluster_runs.sql"),
    },
];

/// The schema version this build writes.
pub(in crate::storage) const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The repository's tables (for their size on disk).
pub(super) const TABLES: &[&str] = &[
    "recond_objects",
    "recond_index",
    "recond_links",
    "recond_runs",
    "recond_purges",
    "recond_entries",
    "recond_audit",
    "recond_meta",
    "recond_sync_tokens",
    "recond_sync_audit",
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS recond_schema_version (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// Brings the schema to [`SCHEMA_VERSION`]; returns the version found before.
pub(super) fn migrate(client: &mut Client) -> Result<i32> {
    let context = "migrating the repository's schema";
    // Two sessions creating the same table at once can fail on PostgreSQL's catalog (a unique
    // violation or "already exists") even with IF NOT EXISTS: the table is there then.
    let mut attempt = 0;
    while let Err(e) = client.batch_execute(VERSION_TABLE) {
        let raced = e.code().is_some_and(|c| {
            *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::DUPLICATE_TABLE
                || *c == SqlState::DUPLICATE_OBJECT
        });
        attempt += 1;
        if !raced || attempt == 5 {
            return Err(db_err(context)(e));
        }
    }
    let found: i32 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM recond_schema_version",
            &[],
        )
        .map_err(db_err(context))?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::Schema(format!(
            "the PostgreSQL repository's schema is at version {found}, newer than this recond \
             knows ({SCHEMA_VERSION}): run a recond at least as new as the one that migrated it"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found) {
        let mut tx = client.transaction().map_err(db_err(context))?;
        let claimed = tx.execute(
            "INSERT INTO recond_schema_version (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        );
        match claimed {
            Ok(_) => {}
            // Another node applied this version meanwhile (its transaction committed first).
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => continue,
            Err(e) => return Err(db_err(context)(e)),
        }
        tx.batch_execute(m.sql).map_err(|e| StoreError::Database {
            context: format!("applying migration {:04}_{}", m.version, m.name),
            message: crate::connectors::sql::pg::describe(&e),
        })?;
        tx.commit().map_err(db_err(context))?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "repository schema migrated"
        );
    }
    Ok(found)
}
