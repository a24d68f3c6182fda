//! Connectors: how `system/<name>/<type>` object sets reach their data.
//!
//! Sets come from two places: `[system.C.T]` tables in recon.toml (`connector = "csv"`, or
//! `"store"`, which `objects::StoreSet` keeps in the embedded store with no connector), and
//! provisioner files in the IDM conf folder (`config::ObjectSetKind::Connector`), which
//! [`open_set`] opens by the provisioner's connector. [`check_supported`] runs at config load
//! so a connector recond cannot run is a startup error (exit 2), never a runtime surprise.

pub mod csv;
pub mod ldap;
pub mod sql;

use std::sync::Arc;

use std::path::PathBuf;

use crate::idm::{ConnectorKind, ObjectType, Provisioner};
use crate::objects::{CsvSet, ObjectError, ObjectErrorKind, ObjectSet};

use self::csv::{CsvModel, CsvTable};

/// Whether recond can open sets of this connector from a provisioner file.
pub fn check_supported(kind: &ConnectorKind) -> Result<(), String> {
    match kind {
        ConnectorKind::Csv | ConnectorKind::Ldap | ConnectorKind::DatabaseTable => Ok(()),
        ConnectorKind::Other(name) => {
            Err(format!("connector \"{name}\" is not supported by recond"))
        }
    }
}

/// Whether recond can run this provisioner: its connector is supported and, where the
/// connector checks it without IO, its configuration is usable. Runs at config load.
pub fn check_provisioner(p: &Provisioner) -> Result<(), String> {
    check_supported(&p.kind)?;
    if p.kind == ConnectorKind::DatabaseTable {
        sql::config::parse(p)?;
    }
    Ok(())
}

/// Opens the object set `name` for one object type of a provisioner.
pub fn open_set(
    name: &str,
    provisioner: &Arc<Provisioner>,
    object_type: &str,
) -> Result<Arc<dyn ObjectSet>, ObjectError> {
    let startup = |kind: ObjectErrorKind, e: String| {
        ObjectError::new(
            kind,
            format!(
                "{name} ({}, object type {object_type}): {e}",
                provisioner.file.display()
            ),
        )
    };
    match &provisioner.kind {
        ConnectorKind::Csv => {
            let model = provisioner.object_types.get(object_type).ok_or_else(|| {
                startup(
                    ObjectErrorKind::BadRequest,
                    "the provisioner declares no such object type".into(),
                )
            })?;
            let (file, dialect, model) = CsvModel::from_provisioner(provisioner, model)
                .map_err(|e| startup(ObjectErrorKind::BadRequest, e))?;
            let table = CsvTable::with_dialect(file, model.uid_column().to_string(), dialect);
            Ok(Arc::new(CsvSet::with_model(name, table, Some(model))))
        }
        ConnectorKind::Ldap => ldap::open(name, provisioner, object_type),
        ConnectorKind::DatabaseTable => sql::open(name, provisioner, object_type),
        ConnectorKind::Other(other) => Err(startup(
            ObjectErrorKind::NotSupported,
            format!("connector \"{other}\" is not supported by recond"),
        )),
    }
}

/// Opens a recon.toml `connector = "csv"` set; `model` is the object model of the provisioner
/// file it replaces, if any (contract §6: the replacement keeps the file's object model).
pub fn open_csv(
    name: &str,
    file: PathBuf,
    id_column: String,
    model: Option<&ObjectType>,
) -> Arc<dyn ObjectSet> {
    let model = model.map(|ty| CsvModel::for_replacement(ty, &id_column));
    Arc::new(CsvSet::with_model(
        name,
        CsvTable::new(file, id_column),
        model,
    ))
}
