//! The IDM conf folder's share of the configuration (contract §6): reading the folder with
//! `[idm_properties]`, and declaring its object sets — one per provisioner object type (unless
//! recon.toml replaces that system, whose sets then keep the file's object model) and
//! managed.json's types (merged with `[managed.X]`; `searchable` properties are indexed).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::sets::check_segment;
use super::{ConfigError, ObjectSetConfig, ObjectSetKind, RawConfig};
use crate::idm::{self, ConnectorKind, Properties};

/// Reads the conf folder with `[idm_properties]`, knowing which systems recon.toml replaces.
pub(super) fn load_idm_project(
    path: &Path,
    conf_dir: &Path,
    raw: &RawConfig,
) -> Result<idm::Project, ConfigError> {
    // Absolute, so `&{launcher.project.location}` and the paths built from it do not depend
    // on the working directory (and are not joined to the project folder twice).
    let conf_dir = &std::path::absolute(conf_dir).unwrap_or_else(|_| conf_dir.to_path_buf());
    let project_dir = conf_dir.parent().unwrap_or(Path::new("."));
    let props = Properties::new(raw.idm_properties.clone(), project_dir)
        .map_err(|e| ConfigError::new(path, format!("idm_conf_dir: {e}")))?;
    let replaced: BTreeSet<String> = raw.system.keys().cloned().collect();
    idm::load(conf_dir, &props, &replaced).map_err(|(file, e)| ConfigError::new(&file, e))
}

/// Declares the conf folder's object sets: one per provisioner object type (unless recon.toml
/// replaces that system, whose sets then keep the file's object model), and managed.json's
/// types (merged with `[managed.X]`; `searchable` properties are indexed).
pub(super) fn merge_idm_sets(
    project: &idm::Project,
    raw: &RawConfig,
    object_sets: &mut Vec<ObjectSetConfig>,
) -> Result<(), ConfigError> {
    for p in &project.provisioners {
        if raw.system.contains_key(&p.name) {
            tracing::info!(system = %p.name, file = %p.file.display(),
                "recon.toml's [system.{}] replaces the conf folder's provisioner", p.name);
            for set in object_sets.iter_mut() {
                if let Some(ty) = set.name.strip_prefix(&format!("system/{}/", p.name)) {
                    set.model = p.object_types.get(ty).cloned();
                }
            }
            continue;
        }
        match &p.kind {
            ConnectorKind::Other(name) => {
                return Err(ConfigError::new(
                    &p.file,
                    format!(
                    "connectorRef.connectorName: connector \"{name}\" is not supported by recond \
                         (supported: the CSV file, LDAP and database table connectors); replace \
                         this system with a [system.{}.<type>] table in recon.toml",
                    p.name
                ),
                ))
            }
            _ => {
                crate::connectors::check_provisioner(p).map_err(|e| ConfigError::new(&p.file, e))?
            }
        }
        let shared = Arc::new(p.clone());
        for (ty, model) in &p.object_types {
            let name = format!("system/{}/{ty}", p.name);
            if object_sets.iter().any(|s| s.name == name) {
                return Err(ConfigError::new(
                    &p.file,
                    format!("{name} is declared twice"),
                ));
            }
            object_sets.push(ObjectSetConfig {
                name,
                kind: ObjectSetKind::Connector {
                    provisioner: shared.clone(),
                    object_type: ty.clone(),
                },
                model: Some(model.clone()),
            });
        }
    }
    if let Some((file, managed)) = &project.managed {
        let objects = managed
            .get("objects")
            .and_then(|o| o.as_array())
            .ok_or_else(|| {
                ConfigError::new(file, "expected an object with an \"objects\" array")
            })?;
        for (i, obj) in objects.iter().enumerate() {
            let name = obj.get("name").and_then(|n| n.as_str()).ok_or_else(|| {
                ConfigError::new(file, format!("objects[{i}].name: a string is required"))
            })?;
            check_segment(file, "managed", name)?;
            let searchable = obj
                .pointer("/schema/properties")
                .and_then(|p| p.as_object())
                .into_iter()
                .flatten()
                .filter(|(_, def)| def.get("searchable").and_then(|s| s.as_bool()) == Some(true))
                .map(|(k, _)| k.clone());
            let full = format!("managed/{name}");
            match object_sets.iter_mut().find(|s| s.name == full) {
                Some(existing) => {
                    if let ObjectSetKind::Store { indexed } = &mut existing.kind {
                        for attr in searchable {
                            if !indexed.contains(&attr) {
                                indexed.push(attr);
                            }
                        }
                    }
                }
                None => object_sets.push(ObjectSetConfig {
                    name: full,
                    kind: ObjectSetKind::Store {
                        indexed: searchable.collect(),
                    },
                    model: None,
                }),
            }
        }
    }
    Ok(())
}
