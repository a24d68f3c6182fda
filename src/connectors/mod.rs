//! Connectors: how `system/<name>/<type>` object sets reach their data. Only CSV files for
//! now (`connector = "csv"`); `connector = "store"` sets are kept in the embedded store by
//! `objects::StoreSet` and need no connector.

pub mod csv;
