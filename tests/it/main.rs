//! One integration-test binary: every suite starts the real `recond` binary on 127.0.0.1:0
//! with a fresh folder (see `helpers`).

mod helpers;

mod client;
mod cluster_nodes;
mod cluster_pg;
mod clustered;
mod diffs;
mod durable_acks;
mod foundation;
mod full_disk;
mod guard;
mod hardening;
mod history;
mod idm_projects;
mod integrity;
mod json_shape;
mod ldap;
mod ldap_sync;
mod ldap_writes;
mod livesync;
mod managed;
mod managed_recon;
mod metrics;
mod model;
mod objects;
mod perform_action;
mod pg;
mod pg_crash;
mod pg_repo_admin;
mod pg_shared;
mod pg_store;
mod recon;
mod scheduler;
mod scripts;
mod slapd;
mod sql;
mod sql_set;
mod sync;
mod target_scan;
