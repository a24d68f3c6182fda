//! Object sets: `[managed.X]` (in the embedded store) and `[system.C.T]` (a CSV file or the
//! embedded store).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::ConfigError;
use crate::idm::{ObjectType, Provisioner};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ManagedSection {
    #[serde(default)]
    pub indexed: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SystemSection {
    connector: String,
    file: Option<String>,
    id_column: Option<String>,
    #[serde(default)]
    indexed: Vec<String>,
}

/// How an object set is kept.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectSetKind {
    /// In the embedded store (`managed/*`, or `connector = "store"`).
    Store { indexed: Vec<String> },
    /// A CSV file.
    Csv { file: PathBuf, id_column: String },
    /// An object type of a provisioner file in the IDM conf folder; `connectors` opens it
    /// according to the provisioner's connector.
    Connector {
        provisioner: Arc<Provisioner>,
        object_type: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSetConfig {
    /// `managed/user`, `system/hr/account`.
    pub name: String,
    pub kind: ObjectSetKind,
    /// The provisioner file's object model of this set, when one declares it (also for a
    /// system that recon.toml replaces: the replacement keeps the file's model).
    pub model: Option<ObjectType>,
}

/// Validates the declared object sets of the file at `path`; `resolve` makes a relative path
/// absolute against the file's folder.
pub(super) fn object_sets(
    path: &Path,
    managed: &BTreeMap<String, ManagedSection>,
    system: &BTreeMap<String, BTreeMap<String, SystemSection>>,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Vec<ObjectSetConfig>, ConfigError> {
    let mut object_sets = Vec::new();
    for (name, section) in managed {
        check_segment(path, "managed", name)?;
        object_sets.push(ObjectSetConfig {
            name: format!("managed/{name}"),
            kind: ObjectSetKind::Store {
                indexed: section.indexed.clone(),
            },
            model: None,
        });
    }
    for (conn, types) in system {
        check_segment(path, "system", conn)?;
        for (ty, section) in types {
            check_segment(path, &format!("system.{conn}"), ty)?;
            let key = format!("[system.{conn}.{ty}]");
            let kind = match section.connector.as_str() {
                "csv" => {
                    let file = section
                        .file
                        .as_deref()
                        .ok_or_else(|| ConfigError::new(path, format!("{key}: file is required for connector = \"csv\"")))?;
                    let id_column = section.id_column.clone().ok_or_else(|| {
                        ConfigError::new(path, format!("{key}: id_column is required for connector = \"csv\""))
                    })?;
                    let file = resolve(file);
                    if !file.is_file() {
                        return Err(ConfigError::new(
                            path,
                            format!("{key}: file: CSV file {} does not exist", file.display()),
                        ));
                    }
                    ObjectSetKind::Csv { file, id_column }
                }
                "store" => {
                    if section.file.is_some() || section.id_column.is_some() {
                        return Err(ConfigError::new(
                            path,
                            format!("{key}: file and id_column only apply to connector = \"csv\""),
                        ));
                    }
                    ObjectSetKind::Store { indexed: section.indexed.clone() }
                }
                other => {
                    return Err(ConfigError::new(
                        path,
                        format!("{key}: connector: unknown connector \"{other}\" (expected \"csv\" or \"store\")"),
                    ))
                }
            };
            object_sets.push(ObjectSetConfig {
                name: format!("system/{conn}/{ty}"),
                kind,
                model: None,
            });
        }
    }
    Ok(object_sets)
}

pub(super) fn check_segment(file: &Path, table: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            file,
            format!("[{table}.{name}]: invalid object set name \"{name}\""),
        ));
    }
    Ok(())
}
