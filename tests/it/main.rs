//! One integration-test binary: every suite starts the real `recond` binary on 127.0.0.1:0
//! with a fresh folder (see `helpers`).

mod helpers;

mod diffs;
mod foundation;
mod guard;
mod history;
mod integrity;
mod model;
mod objects;
mod recon;
mod scheduler;
mod scripts;
