//! `recon.toml` → a typed [`Config`]: this file reads the whole and the mapping and schedule
//! sources; `server` holds the server-side sections, `users` the API users, `sets` the object
//! sets.
//!
//! The server part (everything except mapping bodies) is parsed with `deny_unknown_fields`, so
//! a typo is a startup error naming the file and the key. Mapping bodies are kept as JSON
//! values in IDM's sync.json shape and validated by `mapping` against the declared object
//! sets. Relative paths are resolved against the folder of the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod server;
mod sets;
mod users;

pub use server::{
    AuditLevel, AuditSection, ReconSection, ScriptSection, ServerSection, StorageSection,
};
use sets::SystemSection;
pub use sets::{ManagedSection, ObjectSetConfig, ObjectSetKind};
use users::UserSection;
pub use users::{Secret, User};

/// A configuration problem: which file, which key, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mappings_file: Option<String>,
    schedules_dir: Option<String>,
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    recon: ReconSection,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    scripts: ScriptSection,
    #[serde(default)]
    users: Vec<UserSection>,
    #[serde(default)]
    managed: BTreeMap<String, ManagedSection>,
    #[serde(default)]
    system: BTreeMap<String, BTreeMap<String, SystemSection>>,
    #[serde(default)]
    mappings: Vec<serde_json::Value>,
    #[serde(default)]
    schedules: Vec<serde_json::Value>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub base_dir: PathBuf,
    pub server: ServerSection,
    pub listen: String,
    pub data_dir: PathBuf,
    pub storage: StorageSection,
    pub recon: ReconSection,
    pub audit: AuditSection,
    pub scripts: ScriptSection,
    pub users: Vec<User>,
    pub object_sets: Vec<ObjectSetConfig>,
    /// Mapping bodies in sync.json shape, with where each came from (for error messages).
    pub mappings: Vec<(String, serde_json::Value)>,
    /// Schedules: from `[[schedules]]` and from `schedules_dir` (IDM schedule-*.json).
    pub schedules: Vec<(String, serde_json::Value)>,
}

impl Config {
    /// Reads and validates the file. `listen`/`data_dir` override the file's values.
    pub fn load(
        path: &Path,
        listen: Option<&str>,
        data_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, format!("cannot read: {e}")))?;
        Self::parse(path, &text, listen, data_dir)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        listen: Option<&str>,
        data_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::new(path, one_line(&e.to_string())))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        let resolve = |p: &str| -> PathBuf {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                base_dir.join(p)
            }
        };

        let users = users::users(path, &raw.users)?;
        let object_sets = sets::object_sets(path, &raw.managed, &raw.system, &resolve)?;

        let mut mappings = Vec::new();
        if let Some(file) = &raw.mappings_file {
            let file = resolve(file);
            let text = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::new(
                    path,
                    format!("mappings_file: cannot read {}: {e}", file.display()),
                )
            })?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ConfigError::new(&file, format!("not valid JSON: {e}")))?;
            let list = json
                .get("mappings")
                .and_then(|m| m.as_array())
                .ok_or_else(|| {
                    ConfigError::new(
                        &file,
                        "expected an object with a \"mappings\" array (IDM sync.json)",
                    )
                })?;
            for m in list {
                mappings.push((file.display().to_string(), m.clone()));
            }
        }
        for m in &raw.mappings {
            mappings.push((path.display().to_string(), m.clone()));
        }

        let mut schedules: Vec<(String, serde_json::Value)> = raw
            .schedules
            .iter()
            .map(|s| (path.display().to_string(), s.clone()))
            .collect();
        if let Some(dir) = &raw.schedules_dir {
            let dir = resolve(dir);
            let entries = std::fs::read_dir(&dir).map_err(|e| {
                ConfigError::new(
                    path,
                    format!("schedules_dir: cannot read {}: {e}", dir.display()),
                )
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("schedule-") && n.ends_with(".json"))
                })
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .map_err(|e| ConfigError::new(&f, format!("cannot read: {e}")))?;
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| ConfigError::new(&f, format!("not valid JSON: {e}")))?;
                let name = f
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix("schedule-"))
                    .unwrap_or_default()
                    .to_string();
                let mut wrapped = serde_json::Map::new();
                wrapped.insert("idmFile".into(), serde_json::Value::String(name));
                wrapped.insert("idm".into(), json);
                schedules.push((f.display().to_string(), serde_json::Value::Object(wrapped)));
            }
        }

        if raw.server.max_concurrent_runs == 0 {
            return Err(ConfigError::new(
                path,
                "[server] max_concurrent_runs must be at least 1",
            ));
        }
        if raw.server.max_connections == 0 || raw.server.body_read_timeout_secs == 0 {
            return Err(ConfigError::new(
                path,
                "[server] max_connections and body_read_timeout_secs must be at least 1",
            ));
        }
        if raw.recon.batch_size == 0 {
            return Err(ConfigError::new(
                path,
                "[recon] batch_size must be at least 1",
            ));
        }

        let listen = listen
            .map(str::to_string)
            .unwrap_or_else(|| raw.server.listen.clone());
        let data_dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| resolve(&raw.server.data_dir));
        Ok(Config {
            file: path.to_path_buf(),
            base_dir,
            server: raw.server,
            listen,
            data_dir,
            storage: raw.storage,
            recon: raw.recon,
            audit: raw.audit,
            scripts: raw.scripts,
            users,
            object_sets,
            mappings,
            schedules,
        })
    }
}

/// toml errors span several lines (with a source excerpt); keep them readable in one log line.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/nonexistent/recon.toml"), text, None, None)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("[managed.user]\nindexed = [\"userName\"]\n").expect("valid");
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("/nonexistent/data/db"));
        assert_eq!(c.object_sets[0].name, "managed/user");
        let c = Config::parse(
            Path::new("x.toml"),
            "",
            Some("127.0.0.1:0"),
            Some(Path::new("/tmp/d")),
        )
        .expect("valid");
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn secrets_never_print() {
        let c = parse(
            "[[users]]\nusername = \"u\"\npassword = \"hunter2\"\ntokens = [\"tok-secret-1\"]\n",
        )
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(shown.contains("\"u\""), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("tok-secret-1"), "{shown}");
        assert_eq!(
            format!("{:?}", Secret::Hash("$argon2id$x".into())),
            "Hash(***)"
        );
    }

    #[test]
    fn unknown_server_keys_are_errors() {
        let e = parse("[server]\nlisten = \"x\"\nlisen = 1\n").expect_err("typo");
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = parse("bogus = 1\n").expect_err("unknown top level");
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = parse("[managed.user]\nindex = []\n").expect_err("unknown managed key");
        assert!(e.to_string().contains("index"), "{e}");
    }

    #[test]
    fn csv_sets_need_their_file() {
        let e = parse(
            "[system.hr.account]\nconnector = \"csv\"\nfile = \"nope.csv\"\nid_column = \"uid\"\n",
        )
        .expect_err("missing file");
        assert!(
            e.to_string().contains("nope.csv") && e.to_string().contains("system.hr.account"),
            "{e}"
        );
        let e =
            parse("[system.hr.account]\nconnector = \"ldap\"\n").expect_err("unknown connector");
        assert!(e.to_string().contains("ldap"), "{e}");
    }

    #[test]
    fn users_need_exactly_one_secret() {
        assert!(parse("[[users]]\nusername = \"a\"\n").is_err());
        assert!(
            parse("[[users]]\nusername = \"a\"\npassword = \"x\"\npassword_hash = \"y\"\n")
                .is_err()
        );
        assert!(parse("[[users]]\nusername = \"a\"\npassword_hash = \"not-a-phc\"\n").is_err());
        let c = parse("[[users]]\nusername = \"a\"\npassword = \"x\"\ntokens = [\"0123456789\"]\n")
            .expect("valid");
        assert_eq!(c.users[0].tokens.len(), 1);
    }
}
