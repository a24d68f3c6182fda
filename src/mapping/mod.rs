//! Mappings: IDM's sync.json mapping objects, parsed and validated into [`Mapping`].
//!
//! `model` holds the types, `parse` turns one mapping object into a [`Mapping`], `load`
//! parses all of them and resolves what spans mappings (`links`). Scripts are compiled once,
//! at load.

mod guard;
mod load;
mod model;
mod parse;

pub use guard::{keys as guard_keys, ReconGuard};
pub use load::{load_all, project_env};
pub use model::*;
pub use parse::parse_mapping;
