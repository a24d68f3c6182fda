//! Wiring and lifecycle: validate everything, open the store, recover interrupted runs,
//! start the scheduler, serve, and shut down in order.
//!
//! Startup order: config and mappings and schedules are validated before the store is
//! opened, so a bad file never touches data. Shutdown order: stop accepting and drain HTTP
//! (bounded) → stop the scheduler → cancel running reconciliations and wait (bounded) for
//! their records to say how they ended → flush the store.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;

use crate::config::StorageBackend;
use crate::config::{Config, ConfigError};
use crate::http::AppState;
use crate::objects::ObjectSets;
use crate::runner::{ReconKind, Runner, RunnerSettings, StartRequest};
use crate::scheduler::{
    self, LastFiring, LaunchOutcome, Launcher, ScheduleSpec, ScheduleState, Scheduler, Trigger,
};
use crate::storage::{Repository, Store, StoreOptions};

/// Why the process stops with an error: configuration problems exit 2, the rest 1.
#[derive(Debug)]
pub enum AppError {
    Config(ConfigError),
    Runtime(String),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Config(e) => write!(f, "{e}"),
            AppError::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AppError {}

impl From<ConfigError> for AppError {
    fn from(e: ConfigError) -> Self {
        AppError::Config(e)
    }
}

/// Everything validated and opened, ready to serve.
pub struct App {
    pub state: AppState,
    pub store: Store,
    /// Implicit synchronization; installed on the object sets, alive while the app is.
    pub sync: Arc<crate::sync::SyncService>,
}

/// Builds schedule specs from `[[schedules]]` entries and IDM schedule files.
pub fn load_schedules(
    config: &Config,
    mappings: &[String],
) -> Result<Vec<ScheduleSpec>, ConfigError> {
    let mut out: Vec<ScheduleSpec> = Vec::new();
    let script_env = Arc::new(crate::script::ScriptEnv {
        project: Arc::new(crate::mapping::project_env(config)?),
        mapping_config: None,
    });
    for (file, v) in &config.schedules {
        let path = std::path::Path::new(file);
        let raw = if let (Some(name), Some(idm)) =
            (v.get("idmFile").and_then(Value::as_str), v.get("idm"))
        {
            match scheduler::parse_idm_schedule_file(name, idm)
                .map_err(|e| ConfigError::new(path, e))?
            {
                scheduler::IdmSchedule::Reconcile(r) => *r,
                scheduler::IdmSchedule::NotRun(why) => {
                    tracing::warn!(file = %path.display(), "schedule not run: {why}");
                    continue;
                }
            }
        } else {
            scheduler::parse_table(v).map_err(|e| ConfigError::new(path, e))?
        };
        let name = raw.name.clone();
        if let Some(set) = &raw.live_sync {
            if !config.object_sets.iter().any(|s| s.name == *set) {
                return Err(ConfigError::new(
                    path,
                    format!("schedule \"{name}\": source: no object set named \"{set}\""),
                ));
            }
        } else if raw.script_context.is_none() && !mappings.contains(&raw.mapping) {
            return Err(ConfigError::new(
                path,
                format!(
                    "schedule \"{name}\": mapping: no mapping named \"{}\"",
                    raw.mapping
                ),
            ));
        }
        let disabled = raw.enabled == Some(false);
        let spec = match scheduler::build_spec_in(raw, Some(script_env.clone())) {
            Ok(spec) => spec,
            // A disabled schedule is never an error, even one recond could not run.
            Err(e) if disabled => {
                tracing::warn!(file = %path.display(), "disabled schedule not loaded: {e}");
                continue;
            }
            Err(e) => return Err(ConfigError::new(path, e)),
        };
        if out.iter().any(|s| s.name == spec.name) {
            return Err(ConfigError::new(
                path,
                format!("schedule \"{name}\": name: duplicate schedule name"),
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// The coordination with other nodes: on the shared PostgreSQL repository, its `recond_nodes`
/// and `recond_claims` tables through the repository's own pool (so every node of the
/// repository sees the same claims); on the embedded store, in-process (one node).
fn coordinator(store: &Store) -> crate::cluster::Coordinator {
    if store.is_shared() {
        crate::cluster::Coordinator::Postgres(crate::cluster::PgCoordinator::on_repository(
            store.clone(),
        ))
    } else {
        crate::cluster::Coordinator::in_process()
    }
}

/// Starts scheduled runs through the runner, runs script schedules, and starts scheduled
/// liveSyncs through the liveSync service (on a thread of their own, so the scheduler never
/// waits for one).
struct RunLauncher {
    runner: Runner,
    script_limits: crate::script::ScriptLimits,
    live: Arc<crate::sync::LiveSync>,
}

impl RunLauncher {
    fn launch_live_sync(&self, set: &str, trigger: Trigger) -> LaunchOutcome {
        if self.live.is_running(set) {
            return LaunchOutcome::Busy(format!("liveSync of {set}"));
        }
        let live = self.live.clone();
        let (set, user) = (set.to_string(), format!("scheduler ({trigger:?})"));
        let id = format!("liveSync-{}", crate::ids::new_uuid());
        let spawned = std::thread::Builder::new()
            .name("livesync".into())
            .spawn(move || match live.live_sync(&set, &user, false) {
                Ok(_) => {}
                Err(crate::sync::LiveSyncError::Busy(_)) => {
                    tracing::info!(set = %set, "scheduled liveSync skipped: one is running")
                }
                Err(e) => tracing::warn!(set = %set, error = %e, "scheduled liveSync failed"),
            });
        match spawned {
            Ok(_) => LaunchOutcome::Started(id),
            Err(e) => LaunchOutcome::Failed(format!("cannot start a liveSync thread: {e}")),
        }
    }
}

impl Launcher for RunLauncher {
    fn launch(&self, spec: &ScheduleSpec, trigger: Trigger) -> LaunchOutcome {
        if let scheduler::Invoker::Script(script) = &spec.invoker {
            let host: Arc<dyn crate::script::ScriptHost> =
                Arc::new(crate::runner::StoreHost::new(self.runner.objects().clone()));
            return scheduler::run_script(&spec.name, script, self.script_limits, &host);
        }
        if let scheduler::Invoker::LiveSync(set) = &spec.invoker {
            return self.launch_live_sync(set, trigger);
        }
        if let Some(active) = self.runner.active_run(&spec.mapping) {
            return LaunchOutcome::Busy(active.id.clone());
        }
        let req = StartRequest {
            mapping: spec.mapping.clone(),
            kind: ReconKind::Full,
            body: None,
            analyze: spec.analyze,
            persist_associations: spec.persist_associations,
            user: format!("scheduler ({trigger:?})"),
            schedule: Some(spec.name.clone()),
        };
        match self.runner.start(req) {
            Ok(run) => LaunchOutcome::Started(run.id.clone()),
            Err(crate::runner::RunError::Conflict(m)) => {
                match self.runner.active_run(&spec.mapping) {
                    Some(active) => LaunchOutcome::Busy(active.id.clone()),
                    None => LaunchOutcome::Failed(m),
                }
            }
            Err(e) => LaunchOutcome::Failed(e.to_string()),
        }
    }
}

/// Schedule state kept in the store so misfires are detected across restarts.
struct StoredScheduleState {
    store: Store,
}

/// The stored form of a [`LastFiring`]: (at, run id, status), under `schedule-last:{name}`.
/// Stores written before that key existed only have the time, under `schedule:{name}`.
type StoredFiring = (i64, Option<String>, String);

impl ScheduleState for StoredScheduleState {
    fn last_firing(&self, name: &str) -> Option<LastFiring> {
        let read = |r: Result<Option<StoredFiring>, _>| match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(schedule = name, error = %e, "unreadable schedule state");
                None
            }
        };
        if let Some((at, run_id, status)) =
            read(self.store.get_meta(&format!("schedule-last:{name}")))
        {
            return Some(LastFiring { at, run_id, status });
        }
        let at = self
            .store
            .get_meta::<i64>(&format!("schedule:{name}"))
            .ok()
            .flatten()?;
        let run_id = self
            .store
            .get_meta::<String>(&format!("schedule-run:{name}"))
            .ok()
            .flatten();
        let status = if run_id.is_some() {
            "STARTED"
        } else {
            "FAILED"
        };
        Some(LastFiring {
            at,
            run_id,
            status: status.into(),
        })
    }

    fn record_firing(&self, name: &str, firing: &LastFiring) {
        let value: StoredFiring = (firing.at, firing.run_id.clone(), firing.status.clone());
        if let Err(e) = self
            .store
            .put_meta(&format!("schedule-last:{name}"), &value)
        {
            tracing::error!(schedule = name, error = %e, "could not record a schedule firing");
        }
    }
}

/// A mapping's `sourceQuery` / `targetQuery` must be a query the object sets answer (a known
/// `_queryId`, a filter that parses) on a declared `resourceName`: caught at startup, not when
/// a run starts.
fn check_mapping_queries(
    config: &Config,
    mappings: &std::collections::BTreeMap<String, Arc<crate::mapping::Mapping>>,
) -> Result<(), AppError> {
    let declared: Vec<&str> = config.object_sets.iter().map(|s| s.name.as_str()).collect();
    for (name, m) in mappings {
        let file = config
            .mappings
            .iter()
            .find(|(_, v)| v.get("name").and_then(serde_json::Value::as_str) == Some(name))
            .map_or_else(|| config.file.clone(), |(f, _)| f.into());
        let fail = |key: &str, what: String| {
            AppError::Config(ConfigError::new(
                &file,
                format!("mapping \"{name}\": {key}: {what}"),
            ))
        };
        for (key, query) in [
            ("sourceQuery", &m.source_query),
            ("targetQuery", &m.target_query),
        ] {
            let Some(query) = query else { continue };
            if let Some(set) = query.get("resourceName") {
                let known = set
                    .as_str()
                    .is_some_and(|s| declared.contains(&s.trim_matches('/')));
                if !known {
                    return Err(fail(
                        "resourceName",
                        format!("{set} is not a declared object set"),
                    ));
                }
            }
            let names_a_query = ["_queryFilter", "_queryId", "queryFilter", "queryId"]
                .iter()
                .any(|k| query.get(k).is_some());
            if names_a_query {
                crate::objects::QueryRequest::from_json(query).map_err(|e| fail(key, e.message))?;
            }
        }
    }
    Ok(())
}

impl App {
    /// Validates the configuration and opens everything. Configuration problems come back as
    /// `AppError::Config` before any data is touched.
    pub fn build(config: Config) -> Result<App, AppError> {
        let mappings = crate::mapping::load_all(&config)?;
        check_mapping_queries(&config, &mappings)?;
        let names: Vec<String> = mappings.keys().cloned().collect();
        let schedules = load_schedules(&config, &names)?;
        crate::managed::check(&config)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            AppError::Runtime(format!(
                "cannot create the data folder {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let repository = match config.storage.backend {
            StorageBackend::Sled => Repository::Embedded,
            StorageBackend::Postgres => Repository::Postgres {
                // `Config::parse` refuses postgres without a url; this is never reached.
                url: config.storage.url.clone().ok_or_else(|| {
                    AppError::Runtime("[storage] backend = \"postgres\" without url".into())
                })?,
                pool_size: config.storage.pool_size,
            },
        };
        let options = StoreOptions {
            repository,
            cache_capacity_bytes: config.storage.cache_capacity_mb.saturating_mul(1024 * 1024),
            flush_every_ms: (config.storage.flush_every_ms > 0)
                .then_some(config.storage.flush_every_ms),
        };
        let store = open_store(&config.data_dir, options)?;
        let objects =
            ObjectSets::new(&config, &store).map_err(|e| AppError::Runtime(e.to_string()))?;
        let runner = Runner::new(
            store.clone(),
            objects.clone(),
            mappings,
            RunnerSettings::from_config(&config),
            Arc::new(coordinator(&store)),
        );
        let sync = crate::sync::SyncService::install(runner.clone());
        let live = Arc::new(crate::sync::LiveSync::new(runner.clone()));
        let recovered = runner
            .recover()
            .map_err(|e| AppError::Runtime(e.to_string()))?;
        if recovered > 0 {
            tracing::warn!(
                count = recovered,
                "runs interrupted by a crash were marked COMPLETED_FAILED"
            );
        }
        let scheduler = if schedules.is_empty() {
            None
        } else {
            Some(Arc::new(
                Scheduler::new(
                    schedules,
                    Arc::new(scheduler::SystemClock),
                    Arc::new(RunLauncher {
                        runner: runner.clone(),
                        script_limits: RunnerSettings::from_config(&config).script_limits,
                        live: live.clone(),
                    }),
                    Arc::new(StoredScheduleState {
                        store: store.clone(),
                    }),
                )
                // Each firing claimed cluster-wide first: on a shared repository, one node fires
                // each tick (in-process: always this node).
                .with_firing_claims(Arc::new(crate::cluster::FiringClaimer {
                    coordinator: runner.coordinator().clone(),
                    node: config.cluster.node_id.clone(),
                })),
            ))
        };
        let state =
            AppState::new(Arc::new(config), runner, objects, scheduler).with_live_sync(live);
        Ok(App { state, store, sync })
    }

    /// Serves until `shutdown` completes, then stops in order. Returns once the store is
    /// flushed.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AppError> {
        let App {
            state,
            store,
            sync: _sync,
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let fatal = Arc::new(tokio::sync::Notify::new());
        let exit_after = state.config.storage.unwritable_exit_secs;
        tokio::spawn(crate::http::health::watchdog(
            store.clone(),
            state.health.clone(),
            (exit_after > 0).then(|| Duration::from_secs(exit_after)),
            fatal.clone(),
            stop_rx.clone(),
        ));
        let sched_task = state
            .scheduler
            .clone()
            .map(|s| tokio::spawn(s.run_loop(stop_rx)));
        let store_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shutdown = {
            let store_failed = store_failed.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    () = fatal.notified() => store_failed.store(true, std::sync::atomic::Ordering::SeqCst),
                }
            }
        };
        crate::http::server::serve(listener, state.clone(), shutdown).await;
        if store_failed.load(std::sync::atomic::Ordering::SeqCst) {
            // Fail fast: the store refuses writes (sled keeps a flush error for good), so the
            // runs cannot record anything more and threads blocked in the store may never
            // return, which would keep the runtime from shutting down. Try one bounded flush,
            // then exit 1 for the supervisor; runs cut short are marked COMPLETED_FAILED at the
            // next start.
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(2), store.flush_async()).await;
            tracing::error!("exiting: the store could not be written");
            eprintln!("error: stopped because the store could not be written");
            std::process::exit(1);
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        if let Some(t) = sched_task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let runner = state.runner.clone();
        let grace = Duration::from_secs(state.config.server.shutdown_grace_secs.max(5) * 3);
        let _ = tokio::task::spawn_blocking(move || runner.shutdown(grace)).await;
        match store.flush_async().await {
            Ok(bytes) => tracing::info!(bytes, "store flushed"),
            Err(e) => {
                return Err(AppError::Runtime(format!(
                    "flushing the store at shutdown failed: {e}"
                )))
            }
        }
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Opens the store from a thread at the runs' scheduling priority. sled starts its background
/// threads (the log flusher, and the IO pool it warms up while opening) from the thread that
/// opens it, and a thread inherits its creator's nice value: so they run at the runs' priority
/// too, and while a run keeps both cores writing they do not delay the HTTP runtime (the
/// `GET /openidm/recon/{id}` latency of issue #19). Nothing else about them changes.
fn open_store(dir: &std::path::Path, options: StoreOptions) -> Result<Store, AppError> {
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("store-open".into())
        .spawn(move || {
            crate::runner::priority::lower_current_thread();
            Store::open(&dir, &options)
        })
        .map_err(|e| AppError::Runtime(format!("cannot start a thread to open the store: {e}")))?
        .join()
        .map_err(|p| {
            AppError::Runtime(format!(
                "opening the store panicked: {}",
                crate::runner::panic_message(p.as_ref())
            ))
        })?
        .map_err(|e| AppError::Runtime(e.to_string()))
}
