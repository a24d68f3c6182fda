//! Which properties of a managed object a read returns: by default every property except those
//! managed.json marks `returnByDefault: false` (relationships unless marked `true`); `_fields`
//! names others (`*` = the default ones, `*_ref` = every relationship, as IDM).
//! `scope: private` properties are never given to clients, asked for or not.

use serde_json::Value;

use super::schema::TypeSchema;
use crate::query::{self, Pointer};

/// Who reads: `scope: private` properties are for internal readers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Scripts and the engine.
    Internal,
    /// REST clients (and every query and write response).
    Client,
}

#[derive(Debug, Clone)]
pub enum Fields {
    Default,
    Chosen {
        /// `*`: the default properties, plus the named ones.
        star: bool,
        /// `*_ref`: every relationship property.
        refs: bool,
        named: Vec<Pointer>,
    },
}

impl Fields {
    /// A `_fields` parameter as sent (empty: the default).
    pub fn parse(text: &str) -> Fields {
        let (mut star, mut refs, mut named) = (false, false, Vec::new());
        for e in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match e {
                "*" => star = true,
                "*_ref" => refs = true,
                _ => named.push(Pointer::parse(e)),
            }
        }
        if named.is_empty() && !refs {
            return Fields::Default;
        }
        Fields::Chosen { star, refs, named }
    }

    /// The parsed `_fields` of a query (`*` already folded away by the query parser).
    pub fn from_pointers(p: &[Pointer]) -> Fields {
        if p.is_empty() {
            Fields::Default
        } else {
            Fields::Chosen {
                star: false,
                refs: false,
                named: p.to_vec(),
            }
        }
    }

    pub fn select(&self, schema: &TypeSchema, mut v: Value, audience: Audience) -> Value {
        if audience == Audience::Client {
            if let Value::Object(m) = &mut v {
                for (name, p) in &schema.properties {
                    if p.private {
                        m.remove(name);
                    }
                }
            }
        }
        let default = |mut v: Value| {
            if let Value::Object(m) = &mut v {
                for (name, p) in &schema.properties {
                    if !p.return_by_default {
                        m.remove(name);
                    }
                }
            }
            v
        };
        match self {
            Fields::Default => default(v),
            Fields::Chosen { star, refs, named } => {
                let mut out = if *star {
                    default(v.clone())
                } else if named.is_empty() {
                    // `*_ref` alone: the references and the metadata, nothing else.
                    query::project(&v, &[Pointer::parse("_id")])
                } else {
                    query::project(&v, named)
                };
                if let (Value::Object(out), Value::Object(all)) = (&mut out, &v) {
                    if *star {
                        if let Value::Object(extra) = query::project(&v, named) {
                            for (k, x) in extra {
                                out.insert(k, x);
                            }
                        }
                    }
                    if *refs {
                        for (name, _) in schema.relationships() {
                            if let Some(x) = all.get(name) {
                                out.insert(name.clone(), x.clone());
                            }
                        }
                    }
                }
                out
            }
        }
    }
}
