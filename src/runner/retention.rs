//! Retention and the purge thread. Retention removes the runs a completing run pushes past its
//! mapping's limit (their records go at once). The purge thread reclaims the association entries and audit events of purged runs (their
//! markers in the `runs` tree) in small batches, and resumes after a restart, so purging never
//! stalls other work. Woken by retention and `DELETE /openidm/recon/{id}`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Inner, RunState};
use crate::storage::StoreError;

impl Inner {
    /// Retention: removes the oldest completed runs of the same mapping and kind beyond the
    /// limit (this run counts as one of those kept).
    pub(super) fn retain(&self, run: &RunState) -> Result<(), StoreError> {
        let limit = if run.options.analyze {
            run.mapping.max_analysis_runs
        } else {
            run.mapping.max_runs
        }
        .unwrap_or(self.settings.keep_runs_per_mapping)
        .max(1) as usize;
        let mut same = Vec::new();
        self.store.scan_runs(&mut |r| {
            if r.mapping == run.mapping.name
                && r.is_analysis == run.options.analyze
                && r.completed
                && r.seq != run.seq
            {
                same.push(r.seq);
            }
            std::ops::ControlFlow::Continue(())
        })?;
        let keep_others = limit - 1;
        if same.len() > keep_others {
            let remove = same.len() - keep_others;
            for seq in same.into_iter().take(remove) {
                self.store.remove_run(seq)?;
            }
            self.wake_purge();
        }
        Ok(())
    }
}

pub(super) fn purge_loop(inner: &Arc<Inner>) {
    loop {
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        match inner.store.pending_purges() {
            Ok(seqs) => {
                for seq in seqs {
                    let keep_going = || !inner.stopping.load(Ordering::SeqCst);
                    match inner.store.reclaim(seq, &keep_going) {
                        Ok(true) => tracing::debug!(seq, "reclaimed a purged run's entries"),
                        Ok(false) => return,
                        Err(e) => {
                            tracing::error!(seq, error = %e, "reclaiming a purged run failed")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "listing pending purges failed"),
        }
        let mut pending = inner.purge_lock.lock();
        if !*pending {
            inner
                .purge_wake
                .wait_for(&mut pending, Duration::from_secs(30));
        }
        *pending = false;
    }
}
