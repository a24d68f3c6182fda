//! TEMPORARY STUB
#![allow(dead_code, unused_variables)]
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
pub struct CsvTable {
    path: PathBuf,
    id: String,
}
#[derive(Debug)]
pub struct ScanStats {
    pub rows: u64,
    pub skipped: u64,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvErrorKind {
    Io,
    Parse,
    NotFound,
    AlreadyExists,
    BadValue,
}
#[derive(Debug)]
pub struct CsvError {
    pub kind: CsvErrorKind,
    pub path: PathBuf,
    pub line: Option<u64>,
    pub message: String,
}
impl CsvError {
    pub fn kind(&self) -> &CsvErrorKind {
        &self.kind
    }
}
impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
impl CsvTable {
    pub fn new(path: PathBuf, id_column: String) -> CsvTable {
        CsvTable {
            path,
            id: id_column,
        }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn id_column(&self) -> &str {
        &self.id
    }
    pub fn check(&self) -> Result<(), CsvError> {
        Ok(())
    }
    pub fn scan(
        &self,
        f: &mut dyn FnMut(Map<String, Value>) -> std::ops::ControlFlow<()>,
    ) -> Result<ScanStats, CsvError> {
        Ok(ScanStats {
            rows: 0,
            skipped: 0,
        })
    }
    pub fn read(&self, id: &str) -> Result<Option<Map<String, Value>>, CsvError> {
        Ok(None)
    }
    pub fn create(&self, obj: Map<String, Value>) -> Result<Map<String, Value>, CsvError> {
        Ok(obj)
    }
    pub fn update(
        &self,
        id: &str,
        obj: Map<String, Value>,
    ) -> Result<Map<String, Value>, CsvError> {
        Ok(obj)
    }
    pub fn delete(&self, id: &str) -> Result<Map<String, Value>, CsvError> {
        Ok(Map::new())
    }
}
