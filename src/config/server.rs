//! The server-side sections of `recon.toml`: `[server]`, `[storage]`, `[recon]`, `[audit]` and
//! `[scripts]`, each with its defaults. Unknown keys are errors.

use serde::Deserialize;

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

/// `[storage] backend`: which repository holds objects, links, runs and state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded store (sled) in `data_dir`.
    #[default]
    Sled,
    /// A PostgreSQL database (`url`), which several nodes may share.
    Postgres,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    #[serde(default)]
    pub backend: StorageBackend,
    /// `postgres://user:password@host:port/database?sslmode=...` (required for `postgres`).
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL connections this node keeps at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// sled's page cache, in MiB (sled's own default of 1 GiB is far too much for an edge box;
    /// the process holds about 2.5-3.5 times this at peak, see `storage::DEFAULT_CACHE_MB`).
    #[serde(default = "default_cache_mb")]
    pub cache_capacity_mb: u64,
    /// How often sled flushes in the background, in ms (0 = only explicit flushes).
    #[serde(default = "default_flush_ms")]
    pub flush_every_ms: u64,
    /// After the store has refused writes for this long, the server exits (code 1) so that a
    /// supervisor restarts it; 0 = never exit, only report ACTIVE_NOT_READY.
    #[serde(default = "default_unwritable_exit")]
    pub unwritable_exit_secs: u64,
    /// A REST write (and the synchronization it caused) is answered only once the store has
    /// flushed it, so an answered write survives a crash. `false` answers first and leaves the
    /// write to the background flush (`flush_every_ms`): faster bulk loads over REST, and a
    /// crash may lose the writes of the last interval.
    #[serde(default = "default_true")]
    pub durable_writes: bool,
}

impl std::fmt::Debug for StorageSection {
    // `url` may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSection")
            .field("backend", &self.backend)
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("pool_size", &self.pool_size)
            .field("cache_capacity_mb", &self.cache_capacity_mb)
            .field("flush_every_ms", &self.flush_every_ms)
            .field("unwritable_exit_secs", &self.unwritable_exit_secs)
            .field("durable_writes", &self.durable_writes)
            .finish()
    }
}

fn default_pool_size() -> u32 {
    crate::storage::DEFAULT_POOL_SIZE
}
fn default_cache_mb() -> u64 {
    crate::storage::DEFAULT_CACHE_MB
}
fn default_flush_ms() -> u64 {
    crate::storage::DEFAULT_FLUSH_EVERY_MS
}
fn default_true() -> bool {
    true
}
fn default_unwritable_exit() -> u64 {
    60
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: StorageBackend::Sled,
            url: None,
            pool_size: default_pool_size(),
            cache_capacity_mb: default_cache_mb(),
            flush_every_ms: default_flush_ms(),
            unwritable_exit_secs: default_unwritable_exit(),
            durable_writes: true,
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
