//! The LDAP connector: `system/<name>/<type>` sets from a provisioner file whose connector is
//! `org.identityconnectors.ldap.LdapConnector`, served by a real directory over `ldap3`.
//!
//! Layers, one job per file: [`config`] resolves the provisioner's settings (IDM's defaults),
//! [`pool`] owns connections (blocking facade over one dedicated runtime, timeouts, reconnect),
//! [`filter`] translates CREST filters into LDAP filters, [`entry`] maps entries to objects
//! and values back, [`search`] streams paged searches, [`write`] adds, modifies, renames and
//! deletes (each write answering the entry it left through the post-read control), [`batch`]
//! sends a unit of work's writes concurrently over the pool, and [`set`] is the `ObjectSet`
//! the rest of recond sees.
//!
//! Opening a set only parses configuration: the directory is first contacted by the first
//! operation, so recond starts while a directory is down and a run against it fails clearly.
//! [`sync`] answers liveSync (`ObjectSet::changes_since`) by `modifyTimestamp`.

pub mod batch;
pub mod config;
pub mod entry;
pub mod filter;
pub mod pool;
pub mod search;
pub mod set;
pub mod sync;
pub mod write;

use std::sync::Arc;

use crate::idm::Provisioner;
use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet};

pub use set::LdapSet;

/// Opens `system/<name>/<object_type>` of an LDAP provisioner (no network traffic).
pub fn open(
    name: &str,
    provisioner: &Provisioner,
    object_type: &str,
) -> Result<Arc<dyn ObjectSet>, ObjectError> {
    let cfg = config::TypeConfig::from_provisioner(provisioner, object_type)
        .map_err(|e| ObjectError::new(ObjectErrorKind::BadRequest, format!("{name}: {e}")))?;
    Ok(Arc::new(LdapSet::new(name, cfg)))
}
