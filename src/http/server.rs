//! The listener and connection layer: accept loop, per-connection tasks, header-read
//! timeout, the cap on open connections, and the graceful drain at shutdown.
//!
//! Each connection's first request line passes [`preflight`] before hyper sees it (within the
//! header-read timeout). At most `[server] max_connections` connections are served at once: the loop takes a permit
//! before it accepts, so further clients wait in the kernel's listen backlog instead of taking
//! file descriptors. Accept errors (EMFILE at the descriptor limit and the like) are logged
//! once per burst and retried after a pause; they never end the server. At shutdown the
//! listener is dropped first (no new connections), then open connections get `grace` to
//! finish their in-flight requests.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::preflight::{self, Verdict};
use super::AppState;

pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()>) {
    let mut http = http1::Builder::new();
    let header_timeout = Duration::from_secs(state.config.server.header_read_timeout_secs.max(1));
    // The timer must be set for header_read_timeout to work (hyper panics without one).
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(state.config.server.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut accept_failures: u64 = 0;
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    accept_failures = 0;
                    conn
                }
                Err(error) => {
                    // At the descriptor limit every accept fails until a connection closes:
                    // log the first of a burst, then pause so the loop does not spin.
                    if accept_failures == 0 {
                        tracing::warn!(%error, "accept failed; retrying");
                    }
                    accept_failures += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
        }
        let st = state.clone();
        let ip = peer.ip();
        let svc = service_fn(move |req| {
            let st = st.clone();
            async move { Ok::<_, Infallible>(super::handle(st, ip, req).await) }
        });
        let watcher = graceful.watcher();
        let mut http = http.clone();
        let first_line_timeout = header_timeout;
        tokio::spawn(
            async move {
                let verdict =
                    tokio::time::timeout(first_line_timeout, preflight::check(stream)).await;
                let Ok(Verdict::Serve { stream, rewritten }) = verdict else {
                    drop(slot);
                    return;
                };
                if rewritten {
                    http.keep_alive(false);
                }
                let conn = http.serve_connection(TokioIo::new(stream), svc);
                if let Err(error) = watcher.watch(conn).await {
                    tracing::debug!(%error, "connection closed with an error");
                }
                drop(slot);
            }
            .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
    drop(listener);
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}
