//! Connectors: how `system/<name>/<type>` object sets reach their data.
//!
//! Sets come from two places: `[system.C.T]` tables in recon.toml (`connector = "csv"`, or
//! `"store"`, which `objects::StoreSet` keeps in the embedded store with no connector), and
//! provisioner files in the IDM conf folder (`config::ObjectSetKind::Connector`), which
//! [`open_set`] opens by the provisioner's connector. [`check_supported`] runs at config load
//! so a connector recond cannot run is a startup error (exit 2), never a runtime surprise.

pub mod csv;

use std::sync::Arc;

use crate::idm::{ConnectorKind, Provisioner};
use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet};

/// Whether recond can open sets of this connector from a provisioner file.
pub fn check_supported(kind: &ConnectorKind) -> Result<(), String> {
    let what = match kind {
        ConnectorKind::Csv => "the CSV file connector",
        ConnectorKind::Ldap => "the LDAP connector",
        ConnectorKind::DatabaseTable => "the database table connector",
        ConnectorKind::Other(name) => {
            return Err(format!("connector \"{name}\" is not supported by recond"))
        }
    };
    Err(format!(
        "{what} is not yet supported from a provisioner file; declare the system in recon.toml"
    ))
}

/// Opens the object set `name` for one object type of a provisioner.
pub fn open_set(
    name: &str,
    provisioner: &Arc<Provisioner>,
    object_type: &str,
) -> Result<Arc<dyn ObjectSet>, ObjectError> {
    check_supported(&provisioner.kind).map_err(|e| {
        ObjectError::new(
            ObjectErrorKind::NotSupported,
            format!(
                "{name} ({}, object type {object_type}): {e}",
                provisioner.file.display()
            ),
        )
    })?;
    Err(ObjectError::new(
        ObjectErrorKind::NotSupported,
        format!("{name}: no connector implementation"),
    ))
}
