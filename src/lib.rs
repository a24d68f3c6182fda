//! recond: a single-binary reconciliation server speaking PingIDM's `/openidm/recon` REST API.
//!
//! Layers (see ARCHITECTURE.md): `http` (hyper, routing, CREST errors) → `runner` (runs,
//! threads, history) → `engine` (situations, actions, property mapping; no IO) and
//! `objects` (object sets, links) → `storage` (the only user of sled and bincode).

pub mod app;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod engine;
pub mod http;
pub mod idm;
pub mod ids;
pub mod managed;
pub mod mapping;
pub mod metrics;
pub mod objects;
pub mod query;
pub mod runner;
pub mod scheduler;
pub mod script;
pub mod storage;
pub mod sync;

/// jemalloc instead of glibc malloc: sled churns through node versions, and with glibc a
/// million-object load ran about 1.7 times slower (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
