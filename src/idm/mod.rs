//! IDM project folders, read as they are (contract §6).
//!
//! `idm_conf_dir` names an IDM project's `conf/` folder; the project folder is its parent.
//! From it recond reads `sync.json` and `mapping-*.json` (mappings), every
//! `provisioner.openicf-*.json` (systems and their object models), `managed.json` (managed
//! object types) and every `schedule-*.json`. Every file goes through `&{...}` property
//! substitution ([`props`]) before it is interpreted, so an unresolved name is a startup
//! error naming the file and the JSON path — except in a provisioner file that recon.toml
//! replaces, which is only read for its object model.
//!
//! This module reads and parses; deciding what the files mean for the server (which object
//! sets exist, which mappings run) stays in `config`, `mapping` and `objects`.

pub mod props;
pub mod provisioner;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use props::Properties;
pub use provisioner::{ConnectorKind, ObjectType, PropType, Property, Provisioner};

/// What a conf folder holds.
#[derive(Debug, Clone, Default)]
pub struct Project {
    /// The parent of `conf/`: where IDM resolves scripts and `&{idm.instance.dir}`.
    pub project_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub provisioners: Vec<Provisioner>,
    /// Each mapping with the file it came from.
    pub mappings: Vec<(PathBuf, Value)>,
    /// Schedules in the `{"idmFile": name, "idm": body}` shape `config` uses for
    /// `schedules_dir`.
    pub schedules: Vec<(PathBuf, Value)>,
    /// `managed.json`, substituted.
    pub managed: Option<(PathBuf, Value)>,
}

/// Reads a conf folder. `replaced` names the systems recon.toml replaces.
pub fn load(
    conf_dir: &Path,
    properties: &Properties,
    replaced: &BTreeSet<String>,
) -> Result<Project, (PathBuf, String)> {
    if !conf_dir.is_dir() {
        return Err((
            conf_dir.to_path_buf(),
            "idm_conf_dir: the folder does not exist".into(),
        ));
    }
    let project_dir = conf_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut project = Project {
        project_dir,
        conf_dir: conf_dir.to_path_buf(),
        ..Project::default()
    };

    for file in files_matching(conf_dir, "provisioner.openicf-", ".json")? {
        let mut json = read_json(&file)?;
        let stem_name = stem_between(&file, "provisioner.openicf-", ".json");
        let declared = json
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(&stem_name)
            .to_string();
        if let Err(e) = properties.substitute(&mut json) {
            if !replaced.contains(&declared) {
                return Err((file, e));
            }
            // Replaced by recon.toml: only the object model is used, and it rarely holds
            // references; an unresolved one there is left as written.
        }
        let p = Provisioner::parse(&file, json, &stem_name).map_err(|e| (file.clone(), e))?;
        if let Some(other) = project.provisioners.iter().find(|o| o.name == p.name) {
            return Err((
                file.clone(),
                format!(
                    "system \"{}\" is also declared by {}",
                    p.name,
                    other.file.display()
                ),
            ));
        }
        project.provisioners.push(p);
    }

    let sync = conf_dir.join("sync.json");
    if sync.is_file() {
        let mut json = read_json(&sync)?;
        properties
            .substitute(&mut json)
            .map_err(|e| (sync.clone(), e))?;
        let list = json
            .get("mappings")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                (
                    sync.clone(),
                    "expected an object with a \"mappings\" array".to_string(),
                )
            })?;
        for m in list {
            project.mappings.push((sync.clone(), m.clone()));
        }
    }
    for file in files_matching(conf_dir, "mapping-", ".json")? {
        let mut json = read_json(&file)?;
        properties
            .substitute(&mut json)
            .map_err(|e| (file.clone(), e))?;
        let Value::Object(mut m) = json else {
            return Err((file, "a mapping file must hold a JSON object".into()));
        };
        // IDM names a mapping file's mapping after the file when the body has no name.
        if !m.contains_key("name") {
            let name = stem_between(&file, "mapping-", ".json");
            m.insert("name".into(), Value::String(name));
        }
        project.mappings.push((file, Value::Object(m)));
    }

    let managed = conf_dir.join("managed.json");
    if managed.is_file() {
        let mut json = read_json(&managed)?;
        properties
            .substitute(&mut json)
            .map_err(|e| (managed.clone(), e))?;
        project.managed = Some((managed, json));
    }

    project.schedules = read_schedules(conf_dir, Some(properties))?;
    Ok(project)
}

/// Every `schedule-*.json` in `dir`, wrapped as `{"idmFile": <name>, "idm": <body>}`.
pub fn read_schedules(
    dir: &Path,
    properties: Option<&Properties>,
) -> Result<Vec<(PathBuf, Value)>, (PathBuf, String)> {
    let mut out = Vec::new();
    for file in files_matching(dir, "schedule-", ".json")? {
        let mut json = read_json(&file)?;
        if let Some(p) = properties {
            p.substitute(&mut json).map_err(|e| (file.clone(), e))?;
        }
        let mut wrapped = serde_json::Map::new();
        wrapped.insert(
            "idmFile".into(),
            Value::String(stem_between(&file, "schedule-", ".json")),
        );
        wrapped.insert("idm".into(), json);
        out.push((file, Value::Object(wrapped)));
    }
    Ok(out)
}

fn read_json(file: &Path) -> Result<Value, (PathBuf, String)> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| (file.to_path_buf(), format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| (file.to_path_buf(), format!("not valid JSON: {e}")))
}

/// The files `<prefix>*<suffix>` in `dir`, sorted by name.
fn files_matching(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<PathBuf>, (PathBuf, String)> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| (dir.to_path_buf(), format!("cannot read the folder: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| (dir.to_path_buf(), format!("cannot read the folder: {e}")))?;
        let path = entry.path();
        let matches = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with(prefix) && n.ends_with(suffix) && n.len() > prefix.len() + suffix.len()
        });
        if matches && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn stem_between(file: &Path, prefix: &str, suffix: &str) -> String {
    file.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(prefix))
        .and_then(|n| n.strip_suffix(suffix))
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn project(files: &[(&str, &str)]) -> PathBuf {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("recond-idm-{}-{n}", std::process::id()));
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    #[test]
    fn reads_every_file_kind_with_substitution() {
        let dir = project(&[
            (
                "conf/sync.json",
                r#"{"mappings": [{"name": "a", "source": "&{src}"}]}"#,
            ),
            ("conf/mapping-b.json", r#"{"source": "system/x/y"}"#),
            (
                "conf/schedule-nightly.json",
                r#"{"enabled": false, "type": "simple"}"#,
            ),
            ("conf/managed.json", r#"{"objects": [{"name": "user"}]}"#),
            (
                "conf/provisioner.openicf-hr.json",
                r#"{"connectorRef": {"connectorName": "org.forgerock.openicf.csvfile.CSVFileConnector"},
                    "configurationProperties": {"csvFile": "&{idm.instance.dir}/data/hr.csv"},
                    "objectTypes": {"account": {"properties": {"uid": {"type": "string", "nativeName": "__UID__"}}}}}"#,
            ),
        ]);
        let mut explicit = BTreeMap::new();
        explicit.insert("src".to_string(), "managed/user".to_string());
        let props = Properties::new(explicit, &dir).expect("props");
        let p = load(&dir.join("conf"), &props, &BTreeSet::new()).expect("loads");
        assert_eq!(p.mappings.len(), 2);
        assert_eq!(p.mappings[0].1["source"], "managed/user");
        assert_eq!(p.mappings[1].1["name"], "b");
        assert_eq!(p.schedules[0].1["idmFile"], "nightly");
        assert!(p.managed.is_some());
        assert_eq!(p.provisioners[0].name, "hr");
        assert_eq!(
            p.provisioners[0].config_str("csvFile"),
            Some(format!("{}/data/hr.csv", dir.display()))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unresolved_references_fail_unless_the_system_is_replaced() {
        let dir = project(&[(
            "conf/provisioner.openicf-ldap.json",
            r#"{"name": "ldap", "connectorRef": {"connectorName": "org.identityconnectors.ldap.LdapConnector"},
                "configurationProperties": {"host": "&{ldap.host}"}}"#,
        )]);
        let props = Properties::new(BTreeMap::new(), &dir).expect("props");
        let (file, e) = load(&dir.join("conf"), &props, &BTreeSet::new()).expect_err("unresolved");
        assert!(
            file.ends_with("provisioner.openicf-ldap.json") && e.contains("ldap.host"),
            "{e}"
        );
        let replaced = BTreeSet::from(["ldap".to_string()]);
        let p = load(&dir.join("conf"), &props, &replaced).expect("replaced system");
        assert_eq!(p.provisioners[0].name, "ldap");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
