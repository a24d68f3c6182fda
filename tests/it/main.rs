//! One integration-test binary: every suite starts the real `recond` binary on 127.0.0.1:0
//! with a fresh folder (see `helpers`).

mod helpers;
mod pg;

mod foundation;
mod history;
mod objects;
mod recon;
mod scheduler;
mod scripts;
mod sql;
