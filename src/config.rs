//! `recon.toml` → a typed [`Config`].
//!
//! The server part (everything except mapping bodies) is parsed with `deny_unknown_fields`, so
//! a typo is a startup error naming the file and the key. Mapping bodies are kept as JSON
//! values in IDM's sync.json shape and validated by `mapping` against the declared object
//! sets. Relative paths are resolved against the folder of the config file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    /// Time a client has to send the whole request body once the headers are in; a slower
    /// body is answered 408 and the connection closed.
    #[serde(default = "default_body_timeout")]
    pub body_read_timeout_secs: u64,
    /// Connections served at once; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
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
fn default_body_timeout() -> u64 {
    30
}
fn default_max_connections() -> usize {
    512
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
            body_read_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
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
    /// After the store has refused writes for this long, the server exits (code 1) so that a
    /// supervisor restarts it; 0 = never exit, only report ACTIVE_NOT_READY.
    #[serde(default = "default_unwritable_exit")]
    pub unwritable_exit_secs: u64,
}

fn default_cache_mb() -> u64 {
    128
}
fn default_flush_ms() -> u64 {
    500
}
fn default_unwritable_exit() -> u64 {
    60
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            cache_capacity_mb: default_cache_mb(),
            flush_every_ms: default_flush_ms(),
            unwritable_exit_secs: default_unwritable_exit(),
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

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSection {
    username: String,
    password: Option<String>,
    password_hash: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
}

// Secrets never print: `{:?}` of a user shows its name and how many tokens it has.
impl std::fmt::Debug for UserSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSection")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_hash", &self.password_hash.as_ref().map(|_| "***"))
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// Who may call the API.
#[derive(Clone)]
pub struct User {
    pub username: String,
    pub secret: Secret,
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .field("secret", &self.secret)
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

#[derive(Clone)]
pub enum Secret {
    Plain(String),
    /// A PHC string (argon2id, argon2i, argon2d), checked when the config loads.
    Hash(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Plain(***)",
            Secret::Hash(_) => "Hash(***)",
        })
    }
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectSetConfig {
    /// `managed/user`, `system/hr/account`.
    pub name: String,
    pub kind: ObjectSetKind,
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
                });
            }
        }

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
