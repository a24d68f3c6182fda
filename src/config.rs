//! `recon.toml` → a typed [`Config`].
//!
//! The server part (everything except mapping bodies) is parsed with `deny_unknown_fields`, so
//! a typo is a startup error naming the file and the key. Mapping bodies are kept as JSON
//! values in IDM's sync.json shape and validated by `mapping` against the declared object
//! sets. Relative paths are resolved against the folder of the config file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::idm::{self, ConnectorKind, ObjectType, Properties, Provisioner};

/// A configuration problem: which file, which key, and what is wrong.
#[derive(Debug)]
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

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    mappings_file: Option<String>,
    schedules_dir: Option<String>,
    /// An IDM project's conf/ folder (contract §6).
    idm_conf_dir: Option<String>,
    /// Values for `&{...}` substitution in the conf folder's files.
    #[serde(default)]
    idm_properties: BTreeMap<String, String>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Time a client has to send the request headers.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: u64,
    /// Time in-flight requests get to finish at shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Runs (of different mappings) executing at once; more wait as ACTIVE_INITIALIZED.
    #[serde(default = "default_concurrent_runs")]
    pub max_concurrent_runs: usize,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> String {
    "data/db".into()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}
fn default_header_timeout() -> u64 {
    10
}
fn default_grace() -> u64 {
    10
}
fn default_concurrent_runs() -> usize {
    10
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_body_bytes: default_max_body(),
            header_read_timeout_secs: default_header_timeout(),
            shutdown_grace_secs: default_grace(),
            max_concurrent_runs: default_concurrent_runs(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// sled's page cache, in MiB (sled's own default of 1 GiB is far too much for an edge box).
    #[serde(default = "default_cache_mb")]
    pub cache_capacity_mb: u64,
    /// How often sled flushes in the background, in ms (0 = only explicit flushes).
    #[serde(default = "default_flush_ms")]
    pub flush_every_ms: u64,
}

fn default_cache_mb() -> u64 {
    128
}
fn default_flush_ms() -> u64 {
    500
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            cache_capacity_mb: default_cache_mb(),
            flush_every_ms: default_flush_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconSection {
    /// Runs of each kind (normal / analysis) kept per mapping when the mapping's
    /// `reconAssociation` says nothing.
    #[serde(default = "default_keep_runs")]
    pub keep_runs_per_mapping: u32,
    /// Objects per store batch (and per unit of work handed to a worker thread).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
}

fn default_keep_runs() -> u32 {
    10
}
fn default_batch() -> usize {
    1000
}

impl Default for ReconSection {
    fn default() -> Self {
        ReconSection {
            keep_runs_per_mapping: default_keep_runs(),
            batch_size: default_batch(),
        }
    }
}

/// How much of the recon audit topic is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    All,
    #[default]
    Summary,
    Off,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    #[serde(default)]
    pub recon: AuditLevel,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSection {
    #[serde(default = "default_script_ms")]
    pub time_limit_ms: u64,
    #[serde(default = "default_script_mb")]
    pub memory_limit_mb: u64,
}

fn default_script_ms() -> u64 {
    1000
}
fn default_script_mb() -> u64 {
    64
}

impl Default for ScriptSection {
    fn default() -> Self {
        ScriptSection {
            time_limit_ms: default_script_ms(),
            memory_limit_mb: default_script_mb(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSection {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
}

/// Who may call the API.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub secret: Secret,
    pub tokens: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Secret {
    Plain(String),
    /// A PHC string (argon2id, argon2i, argon2d), checked when the config loads.
    Hash(String),
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ManagedSection {
    #[serde(default)]
    pub indexed: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemSection {
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
    /// The IDM project folder named by `idm_conf_dir`, as read.
    pub idm_project: Option<idm::Project>,
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

        let mut users = Vec::new();
        for (i, u) in raw.users.iter().enumerate() {
            let at = format!("users[{i}] ({})", u.username);
            let secret = match (&u.password, &u.password_hash) {
                (Some(p), None) => Secret::Plain(p.clone()),
                (None, Some(h)) => {
                    crate::http::auth::check_phc(h)
                        .map_err(|e| ConfigError::new(path, format!("{at}: password_hash: {e}")))?;
                    Secret::Hash(h.clone())
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        path,
                        format!("{at}: give either password or password_hash, not both"),
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        path,
                        format!("{at}: password or password_hash is required"),
                    ))
                }
            };
            if u.username.is_empty() {
                return Err(ConfigError::new(
                    path,
                    format!("users[{i}]: username must not be empty"),
                ));
            }
            if u.tokens.iter().any(|t| t.len() < 8) {
                return Err(ConfigError::new(
                    path,
                    format!("{at}: tokens must be at least 8 characters long"),
                ));
            }
            users.push(User {
                username: u.username.clone(),
                secret,
                tokens: u.tokens.clone(),
            });
        }

        let mut object_sets = Vec::new();
        for (name, section) in &raw.managed {
            check_segment(path, "managed", name)?;
            object_sets.push(ObjectSetConfig {
                name: format!("managed/{name}"),
                kind: ObjectSetKind::Store {
                    indexed: section.indexed.clone(),
                },
                model: None,
            });
        }
        for (conn, types) in &raw.system {
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

        let idm_project = match &raw.idm_conf_dir {
            Some(dir) => {
                let project = load_idm_project(path, &resolve(dir), &raw)?;
                merge_idm_sets(&project, &raw, &mut object_sets)?;
                Some(project)
            }
            None => None,
        };

        let mut mappings: Vec<(String, serde_json::Value)> = idm_project
            .iter()
            .flat_map(|p| &p.mappings)
            .map(|(f, m)| (f.display().to_string(), m.clone()))
            .collect();
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
            let read = idm::read_schedules(&dir, None).map_err(|(file, e)| {
                ConfigError::new(path, format!("schedules_dir: {}: {e}", file.display()))
            })?;
            schedules.extend(read.into_iter().map(|(f, v)| (f.display().to_string(), v)));
        }
        if let Some(p) = &idm_project {
            schedules.extend(
                p.schedules
                    .iter()
                    .map(|(f, v)| (f.display().to_string(), v.clone())),
            );
        }

        if raw.server.max_concurrent_runs == 0 {
            return Err(ConfigError::new(
                path,
                "[server] max_concurrent_runs must be at least 1",
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
            idm_project,
        })
    }
}

/// Reads the conf folder with `[idm_properties]`, knowing which systems recon.toml replaces.
fn load_idm_project(
    path: &Path,
    conf_dir: &Path,
    raw: &RawConfig,
) -> Result<idm::Project, ConfigError> {
    let project_dir = conf_dir.parent().unwrap_or(Path::new("."));
    let props = Properties::new(raw.idm_properties.clone(), project_dir)
        .map_err(|e| ConfigError::new(path, format!("idm_conf_dir: {e}")))?;
    let replaced: BTreeSet<String> = raw.system.keys().cloned().collect();
    idm::load(conf_dir, &props, &replaced).map_err(|(file, e)| ConfigError::new(&file, e))
}

/// Declares the conf folder's object sets: one per provisioner object type (unless recon.toml
/// replaces that system, whose sets then keep the file's object model), and managed.json's
/// types (merged with `[managed.X]`; `searchable` properties are indexed).
fn merge_idm_sets(
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
            kind => crate::connectors::check_supported(kind)
                .map_err(|e| ConfigError::new(&p.file, e))?,
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

fn check_segment(file: &Path, table: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            file,
            format!("[{table}.{name}]: invalid object set name \"{name}\""),
        ));
    }
    Ok(())
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

    fn conf_folder(files: &[(&str, &str)]) -> PathBuf {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("recond-cfg-{}-{n}", std::process::id()));
        for (rel, text) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    const XML_PROVISIONER: &str = r#"{"name": "xml",
        "connectorRef": {"connectorName": "org.forgerock.openicf.connectors.xml.XMLConnector"},
        "configurationProperties": {"xmlFilePath": "&{idm.instance.dir}/data/xmlConnectorData.xml"},
        "objectTypes": {"account": {"nativeType": "__ACCOUNT__", "properties": {
            "name": {"type": "string", "nativeName": "__NAME__"},
            "email": {"type": "array", "items": {"type": "string"}, "nativeName": "email"}}}}}"#;

    #[test]
    fn idm_conf_dir_declares_sets_and_rejects_unknown_connectors() {
        let dir = conf_folder(&[
            ("idm/conf/provisioner.openicf-xml.json", XML_PROVISIONER),
            (
                "idm/conf/managed.json",
                r#"{"objects": [{"name": "user", "schema": {"properties": {
                    "userName": {"type": "string", "searchable": true},
                    "mail": {"type": "string", "searchable": true},
                    "sn": {"type": "string"}}}}, {"name": "role"}]}"#,
            ),
            ("idm/conf/sync.json", r#"{"mappings": [{"name": "m1"}]}"#),
            (
                "data/xml.csv",
                "uid,name
",
            ),
        ]);
        let cfg = dir.join("recon.toml");
        let e = Config::parse(&cfg, "idm_conf_dir = \"idm/conf\"\n", None, None)
            .expect_err("XML connector");
        assert!(
            e.to_string().contains("provisioner.openicf-xml.json")
                && e.to_string().contains("XMLConnector"),
            "{e}"
        );
        let text = r#"idm_conf_dir = "idm/conf"
[managed.user]
indexed = ["employeeId"]
[system.xml.account]
connector = "csv"
file = "data/xml.csv"
id_column = "uid"
"#;
        let c = Config::parse(&cfg, text, None, None).expect("replaced system");
        let xml = c
            .object_sets
            .iter()
            .find(|s| s.name == "system/xml/account")
            .expect("declared by recon.toml");
        let model = xml.model.as_ref().expect("keeps the file's object model");
        assert_eq!(model.name_property().map(|p| p.name.as_str()), Some("name"));
        let user = c
            .object_sets
            .iter()
            .find(|s| s.name == "managed/user")
            .expect("managed/user");
        assert_eq!(
            user.kind,
            ObjectSetKind::Store {
                indexed: vec!["employeeId".into(), "mail".into(), "userName".into()]
            }
        );
        assert!(c.object_sets.iter().any(|s| s.name == "managed/role"));
        assert_eq!(c.mappings[0].1["name"], "m1");
        let _ = std::fs::remove_dir_all(&dir);
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
