//! IDM's database table connector (`org.identityconnectors.databasetable.DatabaseTableConnector`):
//! one table per provisioner object type, in PostgreSQL or a SQLite file.
//!
//! * `config`: the provisioner's `configurationProperties` → a checked [`config::DbConfig`].
//! * `db`: what the set needs from a database ([`db::Conn`]), a lazy connection pool.
//! * `pg` / `sqlite`: the two databases behind [`db::Conn`].
//! * `model`: rows ↔ objects (attribute ↔ column, value conversion, `_rev`).
//! * `filter`: CREST filters → SQL with bound parameters.
//! * `rows`: the single-row statements (read, insert, update, delete by key).
//! * `batch`: a unit of work's writes in one transaction.
//! * `set`: [`set::SqlSet`], the `ObjectSet`.
//!
//! * `changes`: liveSync by `changeLogColumn` (`ObjectSet::changes_since`).

mod batch;
mod changes;
pub mod config;
mod db;
mod filter;
mod model;
pub(crate) mod pg;
mod rows;
pub mod set;
mod sqlite;

use std::sync::Arc;

use crate::idm::Provisioner;
use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet};

/// Opens `system/<name>/<object_type>` on the provisioner's table. Checks the configuration
/// only; the database is first contacted when the set is used.
pub fn open(
    name: &str,
    provisioner: &Provisioner,
    object_type: &str,
) -> Result<Arc<dyn ObjectSet>, ObjectError> {
    let cfg =
        config::parse(provisioner).map_err(|e| ObjectError::new(ObjectErrorKind::BadRequest, e))?;
    let ot = provisioner.object_types.get(object_type).cloned();
    Ok(Arc::new(set::SqlSet::new(name, cfg, ot)))
}
