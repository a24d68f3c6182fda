//! The registry of object sets that managed objects reach at run time (the other side of a
//! relationship, the `openidm.*` calls of their hooks), and the script host over it.
//!
//! It holds weak references, filled once every set is built: the sets own the registry, so
//! strong references would form a cycle and keep the store open past shutdown.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use super::set::ManagedSet;
use crate::objects::ObjectSet;

#[derive(Default)]
pub struct Registry {
    sets: OnceLock<BTreeMap<String, Weak<dyn ObjectSet>>>,
    managed: OnceLock<BTreeMap<String, Weak<ManagedSet>>>,
}

impl Registry {
    /// Called once, after every set is built.
    pub fn fill(
        &self,
        sets: BTreeMap<String, Weak<dyn ObjectSet>>,
        managed: BTreeMap<String, Weak<ManagedSet>>,
    ) {
        // A second fill would be a bug in `ObjectSets::new`; the first one stays.
        if self.sets.set(sets).is_err() || self.managed.set(managed).is_err() {
            tracing::error!("the managed object registry was filled twice");
        }
    }

    pub fn set(&self, name: &str) -> Result<Arc<dyn ObjectSet>, String> {
        self.sets
            .get()
            .and_then(|m| m.get(name.trim_matches('/')))
            .and_then(Weak::upgrade)
            .ok_or_else(|| format!("No object set for '{name}'"))
    }

    /// The managed set of `managed/<type>`, when that is one.
    pub fn managed(&self, name: &str) -> Option<Arc<ManagedSet>> {
        self.managed
            .get()
            .and_then(|m| m.get(name.trim_matches('/')))
            .and_then(Weak::upgrade)
    }
}

impl crate::runner::SetResolver for Arc<Registry> {
    fn resolve(&self, name: &str) -> Option<Arc<dyn ObjectSet>> {
        self.set(name).ok()
    }
}

/// `openidm.*` for managed object scripts: the same host as mapping scripts, over the
/// registry (whose sets are bound once every set is built).
pub type RegistryHost = crate::runner::SetsHost<Arc<Registry>>;
