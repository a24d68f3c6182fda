//! The managed object model of an IDM project: every `managed/<type>` that managed.json
//! declares is served by a [`ManagedSet`] wrapping the [`StoreSet`] that keeps it, so REST,
//! scripts (`openidm.*`) and reconciliation all see the schema applied.
//!
//! * `schema`: managed.json's types, parsed and their scripts compiled at startup.
//! * `set`: the write and read pipelines (defaults, `required`, hooks, `$crypto`, `_fields`).
//! * `conditional`: conditional roles granted and taken away on a user's create and update.
//! * `staged`: a reconciliation's writes staged into its store batch (target + link in one
//!   atomic commit), and what follows the commit.
//! * `fields`: `returnByDefault` and `_fields`.
//! * `crypto`: `encryption` / `secureHash` values and recond's key (public: the script host's
//!   `openidm.encrypt/decrypt/isEncrypted/hash/isHashed` use it).
//! * `hooks`: the type's script hooks and the thread-local script context they run in.
//! * `bundled`: recond's own versions of the hook scripts IDM ships (stock managed.json).
//! * `on_sync`: the `onSync` hook after implicit synchronization, and recond's own role and
//!   assignment `onSync`.
//! * `relations`: relationship properties, their reverse side and their REST endpoints.
//! * `roles`: virtual properties (`effectiveRoles`, `effectiveAssignments`, `onRetrieve`).
//! * `host`: the registry of sets a managed object reaches, and `openidm.*` over it.
//!
//! Types declared only in recon.toml (`[managed.X]` without managed.json) stay plain
//! [`StoreSet`]s: no schema, nothing to apply.

mod bundled;
mod conditional;
pub mod crypto;
mod fields;
mod hooks;
mod host;
mod on_sync;
mod relations;
mod roles;
mod schema;
mod set;
mod staged;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use set::ManagedSet;
pub use staged::Staged;

use crate::config::{Config, ConfigError};
use crate::objects::{ObjectError, ObjectErrorKind, ObjectSet, StoreSet};
use crate::script::ScriptLimits;

/// Checks managed.json (every type parses, every hook compiles) and `[crypto] key_file`
/// before any data is touched, so these are configuration errors (exit 2) naming the file.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    if let Some(f) = &config.crypto_key_file {
        crypto::Key::load(f, false)
            .map_err(|e| ConfigError::new(&config.file, format!("[crypto] key_file: {e}")))?;
    }
    if let Some(p) = &config.idm_project {
        if let Some((file, managed)) = &p.managed {
            let scripts = schema::ScriptPath::new(Arc::new(crate::mapping::project_env(config)?));
            schema::parse_all(file, managed, &scripts, false)
                .map_err(|e| ConfigError::new(file, e.0))?;
        }
    }
    Ok(())
}

/// What `ObjectSets::new` needs to build the managed sets: the parsed types, the key, the
/// script runner, and the registry filled once every set exists.
pub struct Builder {
    schemas: BTreeMap<String, schema::TypeSchema>,
    key: Arc<crypto::Key>,
    runner: hooks::Runner,
    registry: Arc<host::Registry>,
    built: BTreeMap<String, Weak<ManagedSet>>,
}

fn startup(m: impl Into<String>) -> ObjectError {
    ObjectError::new(ObjectErrorKind::Internal, m)
}

impl Builder {
    /// Loads (or creates) the key, installs it for `openidm.encrypt/decrypt`, and parses
    /// managed.json when the project has one.
    pub fn new(config: &Config) -> Result<Builder, ObjectError> {
        let key = crypto::Key::for_server(config.crypto_key_file.as_deref(), &config.data_dir)
            .map_err(|e| startup(format!("[crypto]: {e}")))?;
        let key = Arc::new(key);
        crypto::install(key.clone());
        let schemas = match &config.idm_project {
            Some(p) => match &p.managed {
                Some((file, managed)) => {
                    let project =
                        crate::mapping::project_env(config).map_err(|e| startup(e.to_string()))?;
                    let scripts = schema::ScriptPath::new(Arc::new(project));
                    schema::parse_all(file, managed, &scripts, true)
                        .map_err(|e| startup(format!("{}: {}", file.display(), e.0)))?
                }
                None => BTreeMap::new(),
            },
            None => BTreeMap::new(),
        };
        let registry = Arc::new(host::Registry::default());
        let runner = hooks::Runner {
            limits: ScriptLimits {
                time: Duration::from_millis(config.scripts.time_limit_ms),
                memory_bytes: (config.scripts.memory_limit_mb as usize).saturating_mul(1024 * 1024),
            },
            host: Arc::new(host::RegistryHost::new(registry.clone())),
        };
        Ok(Builder {
            schemas,
            key,
            runner,
            registry,
            built: BTreeMap::new(),
        })
    }

    /// The set serving `name`: a [`ManagedSet`] when managed.json declares the type, else the
    /// store set itself.
    pub fn wrap(&mut self, name: &str, inner: StoreSet) -> Arc<dyn ObjectSet> {
        match self.schemas.remove(name) {
            Some(schema) => {
                let set = Arc::new(ManagedSet::new(
                    inner,
                    schema,
                    self.key.clone(),
                    self.runner.clone(),
                    self.registry.clone(),
                ));
                self.built.insert(name.to_string(), Arc::downgrade(&set));
                set
            }
            None => Arc::new(inner),
        }
    }

    /// Gives the managed sets their view of every set, once all exist.
    pub fn finish(self, sets: &BTreeMap<String, Arc<dyn ObjectSet>>) {
        let all = sets
            .iter()
            .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
            .collect();
        self.registry.fill(all, self.built);
    }
}
