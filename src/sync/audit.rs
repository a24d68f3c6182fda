//! IDM's `sync` audit topic (`/openidm/audit/sync`): the events implicit and live
//! synchronization write (one per operation: mapping, link qualifier, situation, action,
//! source and target ids, status), queried like the recon topic. The engine writes them
//! (`runner::worker`), the store keeps the newest `SYNC_AUDIT_KEEP`; this reads them.

use std::ops::ControlFlow;

use serde_json::Value;

use crate::objects::{paging_run, ObjectError, QueryRequest, QueryResult};
use crate::storage::Store;

/// `GET /openidm/audit/sync?_queryFilter=...`: oldest first; the paging cookie is the event
/// number after which the next page starts.
pub fn query(store: &Store, q: &QueryRequest) -> Result<QueryResult, ObjectError> {
    let scan = |after: Option<&str>,
                f: &mut dyn FnMut(&str, Value) -> ControlFlow<()>|
     -> Result<(), ObjectError> {
        let after = match after {
            None => None,
            Some(a) => Some(a.parse::<u64>().map_err(|_| {
                ObjectError::bad_request(format!("Invalid paged results cookie {a:?}"))
            })?),
        };
        store.scan_sync_audit(after, &mut |no, ev| f(&format!("{no:020}"), ev))?;
        Ok(())
    };
    paging_run(q, &scan)
}

/// `GET /openidm/audit/sync/<id>`.
pub fn read(store: &Store, id: &str) -> Result<Option<Value>, ObjectError> {
    let mut found = None;
    store.scan_sync_audit(None, &mut |_, ev| {
        if ev.get("_id").and_then(Value::as_str) == Some(id) {
            found = Some(ev);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    Ok(found)
}
