//! The scheduling priority of a reconciliation's threads.
//!
//! A run keeps every core busy (its workers, its producer, sled's flusher), while the HTTP
//! runtime must still answer `GET /openidm/recon/{id}` in a couple of milliseconds. Linux's
//! scheduler shares the cores by weight, and a thread's weight follows its nice value: a run
//! thread at nice +10 weighs about a tenth of a runtime thread at 0, so a request that
//! becomes runnable gets a core almost at once, while the run loses nothing when the server
//! is otherwise idle (an idle runtime takes no share). Threads inherit their creator's nice
//! value, so lowering the run's own thread once covers every thread it starts.
//!
//! Raising one's own nice value needs no privilege. Where the system refuses it anyway (a
//! sandbox), the run goes on at the normal priority and the refusal is logged once.
//! `RECOND_RUN_NICE` (0–19) sets another value; 0 keeps runs at the server's priority.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The default nice value of a reconciliation's threads (0 is the default, 19 the lowest).
pub const RUN_NICE: i32 = 10;

/// The nice value runs use: `RECOND_RUN_NICE` when it is a number from 0 to 19, else
/// [`RUN_NICE`] (a bad value is logged once).
fn run_nice() -> i32 {
    static NICE: OnceLock<i32> = OnceLock::new();
    *NICE.get_or_init(|| match std::env::var("RECOND_RUN_NICE") {
        Err(_) => RUN_NICE,
        Ok(v) => match v.trim().parse::<i32>() {
            Ok(n) if (0..=19).contains(&n) => n,
            _ => {
                tracing::warn!(
                    "RECOND_RUN_NICE={v:?} is not a number from 0 to 19; using {RUN_NICE}"
                );
                RUN_NICE
            }
        },
    })
}

/// Lowers the calling thread (and the threads it starts later) to the runs' nice value, or
/// leaves it where it is when the server already runs at a lower priority than that.
pub fn lower_current_thread() {
    let tid = rustix::thread::gettid();
    let nice = run_nice();
    let target = current_nice().map_or(nice, |n| n.max(nice));
    if let Err(e) = rustix::process::setpriority_process(Some(tid), target) {
        static LOGGED: AtomicBool = AtomicBool::new(false);
        if !LOGGED.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot lower the priority of reconciliation threads: {e}");
        }
    }
}

/// Lowers the calling thread to the lowest priority (nice 19): for work that only fills
/// otherwise idle time (a run's background progress counts).
pub fn idle_current_thread() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
        tracing::debug!("cannot lower a background thread to nice 19: {e}");
    }
}

/// The calling thread's nice value.
pub fn current_nice() -> std::io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_and_the_threads_it_starts_run_at_run_nice() {
        let before = current_nice().expect("test thread");
        let (own, child) = std::thread::spawn(|| {
            lower_current_thread();
            let child = std::thread::spawn(current_nice)
                .join()
                .expect("child thread");
            (
                current_nice().expect("own nice"),
                child.expect("child nice"),
            )
        })
        .join()
        .expect("run thread");
        assert_eq!(own, before.max(run_nice()));
        assert_eq!(own, child, "threads inherit their creator's nice value");
        // The calling (test) thread is untouched: the nice value is per thread.
        assert_eq!(current_nice().expect("test thread"), before);
    }
}
