//! TEMPORARY STUB (replaced by the real module).
#![allow(dead_code, unused_variables)]
use serde_json::Value;
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pointer(Vec<String>);
impl Pointer {
    pub fn parse(text: &str) -> Pointer {
        Pointer(
            text.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
    pub fn segments(&self) -> &[String] {
        &self.0
    }
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        None
    }
    pub fn set(&self, v: &mut Value, new: Value) -> Result<(), QueryError> {
        Ok(())
    }
    pub fn remove(&self, v: &mut Value) -> Option<Value> {
        None
    }
}
impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
#[derive(Debug, Clone, PartialEq)]
pub enum CmpOp {
    Eq,
    Co,
    Sw,
    Lt,
    Le,
    Gt,
    Ge,
}
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    True,
    False,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cmp {
        ptr: Pointer,
        op: CmpOp,
        value: Value,
    },
    Present(Pointer),
    Extended {
        ptr: Pointer,
        op: String,
        value: Value,
    },
}
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub text: String,
}
impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
impl std::error::Error for QueryError {}
pub fn parse(text: &str) -> Result<Filter, QueryError> {
    Ok(Filter::True)
}
impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        true
    }
    pub fn equality_terms(&self) -> Vec<(&Pointer, &Value)> {
        vec![]
    }
    pub fn eq(ptr: Pointer, value: Value) -> Filter {
        Filter::True
    }
}
impl std::fmt::Display for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Ok(())
    }
}
pub fn quote(s: &str) -> String {
    String::new()
}
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub ptr: Pointer,
    pub descending: bool,
}
pub fn parse_sort_keys(text: &str) -> Result<Vec<SortKey>, QueryError> {
    Ok(vec![])
}
pub fn sort_cmp(a: &Value, b: &Value, keys: &[SortKey]) -> std::cmp::Ordering {
    std::cmp::Ordering::Equal
}
pub fn parse_fields(text: &str) -> Vec<Pointer> {
    vec![]
}
pub fn project(obj: &Value, fields: &[Pointer]) -> Value {
    obj.clone()
}
