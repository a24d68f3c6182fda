//! TEMPORARY STUB
#![allow(dead_code, unused_variables)]
use serde_json::Value;
use std::sync::Arc;
pub struct ScriptSpec {
    pub name: String,
    pub source: String,
    pub globals: serde_json::Map<String, Value>,
}
#[derive(Clone, Copy, Debug)]
pub struct ScriptLimits {
    pub time: std::time::Duration,
    pub memory_bytes: usize,
}
#[derive(Clone, Debug)]
pub struct CompiledScript {
    name: String,
}
impl CompiledScript {
    pub fn name(&self) -> &str {
        &self.name
    }
}
pub fn compile(spec: ScriptSpec) -> Result<CompiledScript, ScriptError> {
    Ok(CompiledScript { name: spec.name })
}
pub fn is_supported_type(t: &str) -> bool {
    t == "text/javascript"
}
pub struct ScriptContext;
impl ScriptContext {
    pub fn new(
        limits: ScriptLimits,
        host: Arc<dyn ScriptHost>,
    ) -> Result<ScriptContext, ScriptError> {
        Ok(ScriptContext)
    }
    pub fn eval(
        &mut self,
        script: &CompiledScript,
        scope: &[(&str, &Value)],
    ) -> Result<Value, ScriptError> {
        Ok(Value::Null)
    }
}
#[derive(Debug)]
pub enum ScriptErrorKind {
    Syntax,
    Thrown,
    Timeout,
    OutOfMemory,
    Conversion,
    Internal,
}
#[derive(Debug)]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    pub script: String,
    pub message: String,
}
impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
pub trait ScriptHost: Send + Sync {
    fn read(&self, id: &str) -> Result<Option<Value>, String>;
    fn query(&self, resource: &str, params: &Value) -> Result<Value, String>;
    fn create(
        &self,
        resource: &str,
        new_id: Option<&str>,
        content: &Value,
    ) -> Result<Value, String>;
    fn update(&self, id: &str, rev: Option<&str>, content: &Value) -> Result<Value, String>;
    fn patch(&self, id: &str, rev: Option<&str>, ops: &Value) -> Result<Value, String>;
    fn delete(&self, id: &str, rev: Option<&str>) -> Result<Value, String>;
    fn action(
        &self,
        resource: &str,
        action: &str,
        content: &Value,
        params: &Value,
    ) -> Result<Value, String>;
}
