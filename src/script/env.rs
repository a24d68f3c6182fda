//! What a script knows about the project it belongs to: the folders its `file` and
//! `require()` resolve against, IDM's properties (`identityServer.getProperty`), the conf folder
//! (`openidm.read('config/...')`), the crypto back end, and its mapping's JSON
//! (`mappingConfig`).
//!
//! Resolution follows IDM: a relative name is looked up in the project folder, then its
//! `script/` folder, then the conf folder (for recon.toml projects: the configuration file's
//! folder and its `script/` folder). A name that escapes a root with `..` is still a path
//! under the user's own configuration, so no sandboxing is attempted beyond that list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::crypto::{BuiltinCrypto, ScriptCrypto};
use crate::idm::Properties;

/// The project part of a script's environment, shared by every script of a configuration.
pub struct ProjectEnv {
    /// The project folder (IDM's `launcher.project.location`); recon.toml's folder otherwise.
    pub project_dir: PathBuf,
    /// The IDM conf folder, when `idm_conf_dir` is set.
    pub conf_dir: Option<PathBuf>,
    /// Where `file` and `require()` look, in order.
    pub roots: Vec<PathBuf>,
    pub properties: Properties,
    pub crypto: Arc<dyn ScriptCrypto>,
}

impl std::fmt::Debug for ProjectEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectEnv")
            .field("project_dir", &self.project_dir)
            .field("conf_dir", &self.conf_dir)
            .field("roots", &self.roots)
            .finish()
    }
}

impl ProjectEnv {
    /// An IDM project (`conf_dir` is its conf folder) or, without one, the folder of recon.toml.
    pub fn new(project_dir: &Path, conf_dir: Option<&Path>, properties: Properties) -> ProjectEnv {
        let mut roots = vec![project_dir.to_path_buf(), project_dir.join("script")];
        if let Some(c) = conf_dir {
            roots.push(c.to_path_buf());
        }
        ProjectEnv {
            project_dir: project_dir.to_path_buf(),
            conf_dir: conf_dir.map(Path::to_path_buf),
            roots,
            properties,
            crypto: Arc::new(BuiltinCrypto),
        }
    }

    /// The first existing file `name` resolves to under the roots (absolute names as they are).
    pub fn resolve_file(&self, name: &str) -> Option<PathBuf> {
        let p = Path::new(name);
        if p.is_absolute() {
            return p.is_file().then(|| p.to_path_buf());
        }
        self.roots.iter().map(|r| r.join(p)).find(|c| c.is_file())
    }

    /// Where a script `file` is looked for, for error messages.
    pub fn searched(&self, name: &str) -> String {
        self.roots
            .iter()
            .map(|r| r.join(name).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `openidm.read('config/<name>')`: the conf folder's `<name>.json` (a `/` in the name is
    /// IDM's `-`, as in `provisioner.openicf/hr`), substituted; `None` when there is none.
    pub fn read_config(&self, name: &str) -> Result<Option<Value>, String> {
        let Some(conf) = &self.conf_dir else {
            return Ok(None);
        };
        let name = name.trim_matches('/');
        if name.is_empty() || name.split('/').any(|s| s.is_empty() || s == "..") {
            return Ok(None);
        }
        let file = conf.join(format!("{}.json", name.replace('/', "-")));
        if !file.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let mut json: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not valid JSON: {e}", file.display()))?;
        self.properties
            .substitute(&mut json)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        if let Value::Object(m) = &mut json {
            m.entry("_id").or_insert(Value::String(name.to_string()));
        }
        Ok(Some(json))
    }
}

/// One script's environment: its project and, for a mapping's scripts, the mapping's JSON.
#[derive(Debug, Clone)]
pub struct ScriptEnv {
    pub project: Arc<ProjectEnv>,
    pub mapping_config: Option<Arc<Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn files_and_config_resolve_in_idm_order() {
        let dir = std::env::temp_dir().join(format!("recond-env-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("script")).expect("mkdir");
        std::fs::create_dir_all(dir.join("conf")).expect("mkdir");
        std::fs::write(dir.join("script/a.js"), "1").expect("w");
        std::fs::write(dir.join("b.js"), "2").expect("w");
        std::fs::write(
            dir.join("conf/provisioner.openicf-hr.json"),
            r#"{"configurationProperties": {"csvFile": "&{idm.instance.dir}/hr.csv"}}"#,
        )
        .expect("w");
        let props = Properties::new(BTreeMap::new(), &dir).expect("props");
        let env = ProjectEnv::new(&dir, Some(&dir.join("conf")), props);
        assert_eq!(env.resolve_file("a.js"), Some(dir.join("script/a.js")));
        assert_eq!(env.resolve_file("b.js"), Some(dir.join("b.js")));
        assert_eq!(env.resolve_file("c.js"), None);
        let c = env
            .read_config("provisioner.openicf/hr")
            .expect("reads")
            .expect("exists");
        assert_eq!(
            c["configurationProperties"]["csvFile"],
            format!("{}/hr.csv", dir.display())
        );
        assert_eq!(c["_id"], "provisioner.openicf/hr");
        assert_eq!(env.read_config("sync").expect("no error"), None);
        assert_eq!(env.read_config("../x").expect("no error"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
