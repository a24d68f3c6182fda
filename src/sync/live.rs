//! Live synchronization (contract §7), connector-neutral: the changes an object set reports
//! since its persisted token ([`ObjectSet::changes_since`]) each go through every mapping whose
//! source is that set (`enableSync` not false), by the engine's one-object entry point
//! (`Runner::sync_object`): a changed object is assessed and acted on as a by-id
//! reconciliation of it would be, a deleted one is SOURCE_MISSING (the mapping's policy).
//!
//! Invariants:
//! * the token is persisted (durably, see `Store::put_sync_token`) only after every change
//!   of the batch went through its mappings, and only then is the set told
//!   (`token_committed`) so it may drop state kept for older tokens: a crash before the
//!   token is written replays the batch (each object is re-assessed, so a replay changes
//!   nothing already applied); a crash after it replays nothing; nothing is ever lost;
//! * the first liveSync of a set (no stored token) records the set's current token and
//!   synchronizes nothing, as IDM does;
//! * one liveSync at a time per set: a second call for the same set waits for the first
//!   (REST) or is skipped as busy (a schedule firing);
//! * the failure of one object (a script error, a refused write) is logged at WARN by the
//!   engine (mapping, id, reason) and counted; it never stops the batch. A failure of the
//!   system itself (the source cannot be read, a target set cannot be loaded, the store
//!   refuses a write) stops the batch, leaves the token unchanged and is answered as an error.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::objects::{ObjectError, ObjectErrorKind};
use crate::runner::Runner;
use crate::storage::{StoreError, SyncTokenRecord};

/// Why a liveSync did not complete.
#[derive(Debug)]
pub enum LiveSyncError {
    /// No object set of that name.
    UnknownSet(String),
    /// Another liveSync of the set is running (only when the caller asked not to wait).
    Busy(String),
    /// The set could not report its changes (unreachable, unsupported, a missing snapshot).
    Source(ObjectError),
    /// A change could not be synchronized for a reason that is not the object's own (a target
    /// set that cannot be loaded, the store refusing a write).
    Sync {
        mapping: String,
        id: String,
        reason: String,
    },
    /// The token could not be read or written.
    Store(StoreError),
    /// The stored token is not JSON (it was written by this module, so this is corruption).
    BadStoredToken(String),
}

impl std::fmt::Display for LiveSyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveSyncError::UnknownSet(s) => write!(f, "Resource '{s}' not found"),
            LiveSyncError::Busy(s) => write!(f, "a liveSync of {s} is already running"),
            LiveSyncError::Source(e) => write!(f, "{e}"),
            LiveSyncError::Sync {
                mapping,
                id,
                reason,
            } => write!(
                f,
                "liveSync stopped at mapping {mapping}, object {id}: {reason}; the sync token was \
                 not advanced, so the next liveSync retries"
            ),
            LiveSyncError::Store(e) => write!(f, "{e}"),
            LiveSyncError::BadStoredToken(m) => write!(f, "the stored liveSync token {m}"),
        }
    }
}

impl std::error::Error for LiveSyncError {}

impl From<StoreError> for LiveSyncError {
    fn from(e: StoreError) -> Self {
        LiveSyncError::Store(e)
    }
}

/// What one liveSync did.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSyncOutcome {
    /// The object set, e.g. `system/hr/account`.
    pub set: String,
    /// The token now persisted, and its revision.
    pub token: Value,
    pub rev: u64,
    /// The first liveSync of the set: the token was recorded and nothing synchronized.
    pub first: bool,
    /// Changed objects reported by the set.
    pub changes: u64,
    /// Operations (one per mapping and link qualifier) that succeeded / failed.
    pub succeeded: u64,
    pub failed: u64,
}

impl LiveSyncOutcome {
    /// IDM's answer to `_action=liveSync`: the stored sync stage, `{_id, _rev,
    /// connectorData: {nativeType, syncToken}}`.
    pub fn to_json(&self) -> Value {
        json!({
            "_id": token_id(&self.set),
            "_rev": self.rev.to_string(),
            "connectorData": {
                "nativeType": native_type(&self.token),
                "syncToken": self.token,
            },
        })
    }
}

/// IDM's id of a set's sync stage: `system/ldap/account` → `SYSTEMLDAPACCOUNT`.
pub fn token_id(set: &str) -> String {
    set.chars()
        .filter(|c| *c != '/')
        .flat_map(char::to_uppercase)
        .collect()
}

/// The Java type IDM names for a token value.
fn native_type(token: &Value) -> &'static str {
    match token {
        Value::Number(n) if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => "integer",
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "double",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        _ => "object",
    }
}

/// The liveSync service: one per process, shared by REST and the scheduler.
pub struct LiveSync {
    runner: Runner,
    /// One lock per set, held for a whole liveSync of it.
    running: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl LiveSync {
    pub fn new(runner: Runner) -> LiveSync {
        LiveSync {
            runner,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A liveSync of `set` is running now.
    pub fn is_running(&self, set: &str) -> bool {
        self.running
            .lock()
            .get(set.trim_matches('/'))
            .is_some_and(|l| l.is_locked())
    }

    /// Runs one liveSync of `set` as `user`. With `wait` false a liveSync of the same set
    /// already running answers [`LiveSyncError::Busy`]; with `wait` true this call waits for it.
    pub fn live_sync(
        &self,
        set: &str,
        user: &str,
        wait: bool,
    ) -> Result<LiveSyncOutcome, LiveSyncError> {
        let set = set.trim_matches('/').to_string();
        let objects = self
            .runner
            .objects()
            .get(&set)
            .cloned()
            .ok_or_else(|| LiveSyncError::UnknownSet(set.clone()))?;
        let lock = self.running.lock().entry(set.clone()).or_default().clone();
        let _running = if wait {
            lock.lock()
        } else {
            lock.try_lock()
                .ok_or_else(|| LiveSyncError::Busy(set.clone()))?
        };
        let store = self.runner.store();
        let stored = store.get_sync_token(&set)?;
        let token: Option<Value> = stored
            .as_ref()
            .map(|r| {
                serde_json::from_str(&r.token).map_err(|e| {
                    LiveSyncError::BadStoredToken(format!("of {set} is not JSON: {e}"))
                })
            })
            .transpose()?;
        let batch = objects
            .changes_since(token.as_ref())
            .map_err(LiveSyncError::Source)?;
        let mut outcome = LiveSyncOutcome {
            set: set.clone(),
            token: batch.token.clone(),
            rev: stored.as_ref().map_or(0, |r| r.rev) + 1,
            first: stored.is_none(),
            changes: 0,
            succeeded: 0,
            failed: 0,
        };
        if !outcome.first {
            outcome.changes = batch.changes.len() as u64;
            for change in &batch.changes {
                self.sync_change(&set, &change.id, user, &mut outcome)?;
            }
        }
        let token_text = serde_json::to_string(&batch.token).map_err(|e| {
            LiveSyncError::Source(ObjectError::new(
                ObjectErrorKind::Internal,
                format!("{set}: the new token cannot be written as JSON: {e}"),
            ))
        })?;
        store.put_sync_token(
            &set,
            &SyncTokenRecord {
                token: token_text,
                rev: outcome.rev,
                updated_ms: crate::ids::now_millis(),
            },
        )?;
        // The token is durable: state for older tokens may go. A failure here only leaves
        // that state behind (the next commit removes it), so it is logged, not answered.
        if let Err(e) = objects.token_committed(&batch.token) {
            tracing::warn!(set = %set, error = %e, "liveSync: state of older tokens not removed");
        }
        if outcome.first {
            tracing::info!(set = %set, token = %batch.token, "liveSync: first call, token recorded, nothing synchronized");
        } else {
            tracing::info!(set = %set, token = %batch.token, changes = outcome.changes,
                succeeded = outcome.succeeded, failed = outcome.failed, "liveSync done");
        }
        Ok(outcome)
    }

    /// Synchronizes one changed object of `set` to every mapping whose source is `set`.
    fn sync_change(
        &self,
        set: &str,
        id: &str,
        user: &str,
        outcome: &mut LiveSyncOutcome,
    ) -> Result<(), LiveSyncError> {
        for mapping in self.runner.mappings().values() {
            if mapping.source.trim_matches('/') != set || !mapping.enable_sync {
                continue;
            }
            let stop = |reason: String| LiveSyncError::Sync {
                mapping: mapping.name.clone(),
                id: id.to_string(),
                reason,
            };
            match self.runner.sync_object(mapping, id, user) {
                Ok(o) => {
                    outcome.succeeded += o.succeeded;
                    outcome.failed += o.failed;
                    if let Some(reason) = o.error {
                        return Err(stop(reason));
                    }
                }
                Err(e) => return Err(stop(e.to_string())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_and_native_types_follow_idm() {
        assert_eq!(token_id("system/csv/account"), "SYSTEMCSVACCOUNT");
        assert_eq!(token_id("/system/ldap/account/"), "SYSTEMLDAPACCOUNT");
        assert_eq!(native_type(&json!(1)), "integer");
        assert_eq!(native_type(&json!(1_733_000_000_000_u64)), "long");
        assert_eq!(native_type(&json!("20240101000000Z")), "string");
        let o = LiveSyncOutcome {
            set: "system/csv/account".into(),
            token: json!(5),
            rev: 2,
            first: false,
            changes: 0,
            succeeded: 0,
            failed: 0,
        };
        assert_eq!(
            o.to_json(),
            json!({"_id": "SYSTEMCSVACCOUNT", "_rev": "2",
                   "connectorData": {"nativeType": "integer", "syncToken": 5}})
        );
    }
}
