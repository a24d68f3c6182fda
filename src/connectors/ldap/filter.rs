//! CREST `_queryFilter` → LDAP search filter (RFC 4515), so the directory evaluates queries
//! and correlations with its own indexes; recond never filters LDAP results itself.
//!
//! * Property names become native attribute names through the object model; `_id` is the
//!   uid attribute; the `__NAME__` property (`dn`) is `entryDN` inside a filter, and a
//!   top-level `dn eq "..."` (alone or as a child of a top-level `and`) becomes the search
//!   base itself, so a correlation on a `dn` that does not exist finds nothing.
//! * `eq` `=`, `pr` `=*`, `sw` `=v*`, `co` `=*v*`, `ge` `>=`, `le` `<=`; LDAP has no strict
//!   ordering, so `gt` is `(&(a>=v)(!(a=v)))` and `lt` likewise. Matching rules (case, ordering)
//!   are the directory's, as in IDM.
//! * Every value is escaped ([`escape`]); binary attributes take base64 in the filter and are
//!   sent as escaped bytes. A filter the directory cannot express (extended operators, nested
//!   pointers, unknown properties) is a clear error, never a silently wrong search.

use base64::Engine;
use serde_json::Value;

use super::config::{TypeConfig, LDAP_GROUPS};
use super::entry::is_binary;
use crate::idm::provisioner::{NAME, UID};
use crate::query::{CmpOp, Filter, Pointer};

/// What a query asks of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The filter can match nothing (`false`): no search at all.
    Nothing,
    /// Search `base` (a pinned `dn`, scope base) or every base context (subtree).
    Search {
        base: Option<String>,
        filter: String,
    },
}

/// RFC 4515 escaping of an assertion value.
pub fn escape(value: &str) -> String {
    escape_bytes(value.as_bytes())
}

fn escape_bytes(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        match b {
            b'*' | b'(' | b')' | b'\\' | 0 => out.push_str(&format!("\\{b:02x}")),
            0x01..=0x7f => out.push(b as char),
            _ => {
                // Keep valid UTF-8 sequences as they are; escape any other byte.
                let rest = &value[i..];
                let len = utf8_len(b);
                match rest.get(..len).and_then(|s| std::str::from_utf8(s).ok()) {
                    Some(s) if len > 1 => {
                        out.push_str(s);
                        i += len;
                        continue;
                    }
                    _ => out.push_str(&format!("\\{b:02x}")),
                }
            }
        }
        i += 1;
    }
    out
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// Translates `filter` for the object type `cfg`, including the type's own filter.
pub fn plan(filter: &Filter, cfg: &TypeConfig) -> Result<Plan, String> {
    let name_prop = cfg.model.name_property().map(|p| p.name.clone());
    let pinned = |f: &Filter| -> Option<String> {
        match f {
            Filter::Cmp {
                ptr,
                op: CmpOp::Eq,
                value: Value::String(dn),
            } if name_prop.as_deref().is_some_and(|n| is_prop(ptr, n)) => Some(dn.clone()),
            _ => None,
        }
    };
    let (base, rest) = match filter {
        f if pinned(f).is_some() => (pinned(f), Filter::True),
        Filter::And(items) => match items.iter().position(|i| pinned(i).is_some()) {
            Some(ix) => {
                let mut others = items.clone();
                let dn = pinned(&others.remove(ix));
                (dn, Filter::And(others))
            }
            None => (None, filter.clone()),
        },
        _ => (None, filter.clone()),
    };
    if matches!(rest, Filter::False) {
        return Ok(Plan::Nothing);
    }
    let type_filter = cfg.type_filter();
    let filter = match rest {
        Filter::True => type_filter,
        Filter::And(ref v) if v.is_empty() => type_filter,
        other => format!("(&{type_filter}{})", translate(&other, cfg)?),
    };
    Ok(Plan::Search { base, filter })
}

fn is_prop(ptr: &Pointer, name: &str) -> bool {
    matches!(ptr.segments(), [s] if s == name)
}

/// The native attribute a pointer names, and whether it holds binary values.
fn attribute(ptr: &Pointer, cfg: &TypeConfig) -> Result<(String, bool), String> {
    let [name] = ptr.segments() else {
        return Err(format!(
            "the LDAP connector cannot filter on the nested field '{ptr}'"
        ));
    };
    if name == "_id" {
        return Ok((cfg.uid_attribute.clone(), false));
    }
    let prop = cfg
        .model
        .property(name)
        .ok_or_else(|| format!("'{name}' is not a property of {}", cfg.model.name))?;
    match prop.native_name.as_str() {
        NAME => Ok(("entryDN".into(), false)),
        UID => Ok((cfg.uid_attribute.clone(), false)),
        n if n.eq_ignore_ascii_case(LDAP_GROUPS) => Err(format!(
            "'{name}' ({LDAP_GROUPS}) is computed from the groups and cannot be filtered on"
        )),
        n => Ok((n.to_string(), is_binary(prop))),
    }
}

fn assertion(value: &Value, binary: bool) -> Result<String, String> {
    match value {
        Value::String(s) if binary => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|b| escape_bytes(&b))
            .map_err(|_| format!("'{s}' is not base64 for a binary attribute")),
        Value::String(s) => Ok(escape(s)),
        Value::Bool(true) => Ok("TRUE".into()),
        Value::Bool(false) => Ok("FALSE".into()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("the LDAP connector cannot compare with {other}")),
    }
}

fn translate(f: &Filter, cfg: &TypeConfig) -> Result<String, String> {
    Ok(match f {
        Filter::True => "(objectClass=*)".into(),
        Filter::False => "(!(objectClass=*))".into(),
        Filter::And(items) if items.is_empty() => "(objectClass=*)".into(),
        Filter::Or(items) if items.is_empty() => "(!(objectClass=*))".into(),
        Filter::And(items) => format!("(&{})", join(items, cfg)?),
        Filter::Or(items) => format!("(|{})", join(items, cfg)?),
        Filter::Not(inner) => format!("(!{})", translate(inner, cfg)?),
        Filter::Present(ptr) => format!("({}=*)", attribute(ptr, cfg)?.0),
        Filter::Cmp { ptr, op, value } => {
            let (attr, binary) = attribute(ptr, cfg)?;
            let v = assertion(value, binary)?;
            match op {
                CmpOp::Eq => format!("({attr}={v})"),
                CmpOp::Sw => format!("({attr}={v}*)"),
                CmpOp::Co => format!("({attr}=*{v}*)"),
                CmpOp::Ge => format!("({attr}>={v})"),
                CmpOp::Le => format!("({attr}<={v})"),
                CmpOp::Gt => format!("(&({attr}>={v})(!({attr}={v})))"),
                CmpOp::Lt => format!("(&({attr}<={v})(!({attr}={v})))"),
            }
        }
    })
}

fn join(items: &[Filter], cfg: &TypeConfig) -> Result<String, String> {
    items.iter().map(|i| translate(i, cfg)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> TypeConfig {
        super::super::config::test_account(
            json!({"host": "h", "baseContexts": ["dc=example,dc=com"],
                   "accountObjectClasses": ["top", "inetOrgPerson"]}),
            json!({
                "dn": {"type": "string", "nativeName": "__NAME__"},
                "userName": {"type": "string", "nativeName": "uid"},
                "sn": {"type": "string"},
                "photo": {"type": "string", "nativeName": "jpegPhoto",
                          "nativeType": "JAVA_TYPE_BYTE_ARRAY"},
                "ldapGroups": {"type": "array"}
            }),
        )
    }

    fn plan_of(text: &str) -> Result<Plan, String> {
        plan(&crate::query::parse(text).expect("filter"), &cfg())
    }

    fn search(base: Option<&str>, filter: &str) -> Plan {
        Plan::Search {
            base: base.map(str::to_string),
            filter: filter.to_string(),
        }
    }

    #[test]
    fn escapes_rfc4515_specials() {
        assert_eq!(escape(r"a*(b)\c"), r"a\2a\28b\29\5cc");
        assert_eq!(escape("nul\0é"), "nul\\00é");
        assert_eq!(escape_bytes(&[0xff, b'a']), "\\ffa");
    }

    #[test]
    fn translates_every_operator_through_the_model() {
        let t = "(objectClass=inetOrgPerson)";
        assert_eq!(plan_of("true"), Ok(search(None, t)));
        assert_eq!(plan_of("false"), Ok(Plan::Nothing));
        assert_eq!(
            plan_of(r#"userName eq "a*b""#),
            Ok(search(None, &format!("(&{t}(uid=a\\2ab))")))
        );
        assert_eq!(
            plan_of(r#"(sn sw "Sm" or sn co "it)") and !(userName pr)"#),
            Ok(search(
                None,
                &format!("(&{t}(&(|(sn=Sm*)(sn=*it\\29*))(!(uid=*))))")
            ))
        );
        assert_eq!(
            plan_of(r#"_id gt "5""#),
            Ok(search(
                None,
                &format!("(&{t}(&(entryUUID>=5)(!(entryUUID=5))))")
            ))
        );
        assert_eq!(
            plan_of(r#"sn le 3 and sn ge true"#),
            Ok(search(None, &format!("(&{t}(&(sn<=3)(sn>=TRUE)))")))
        );
        assert_eq!(
            plan_of(r#"photo eq "AP8=""#),
            Ok(search(None, &format!("(&{t}(jpegPhoto=\\00\\ff))")))
        );
    }

    #[test]
    fn a_dn_equality_pins_the_search_base() {
        let t = "(objectClass=inetOrgPerson)";
        assert_eq!(
            plan_of(r#"dn eq "uid=a,dc=example,dc=com""#),
            Ok(search(Some("uid=a,dc=example,dc=com"), t))
        );
        assert_eq!(
            plan_of(r#"sn eq "x" and dn eq "uid=a,dc=example,dc=com""#),
            Ok(search(
                Some("uid=a,dc=example,dc=com"),
                &format!("(&{t}(&(sn=x)))")
            ))
        );
        assert_eq!(
            plan_of(r#"dn sw "uid=a""#),
            Ok(search(None, &format!("(&{t}(entryDN=uid=a*))")))
        );
    }

    #[test]
    fn untranslatable_filters_are_errors() {
        for f in [
            r#"nope eq "x""#,
            r#"sn/x eq "x""#,
            r#"ldapGroups eq "x""#,
            r#"photo eq "!!""#,
        ] {
            assert!(plan_of(f).is_err(), "{f}");
        }
        // An operator outside CREST's set never reaches a connector: the parser refuses it.
        assert!(crate::query::parse(r#"sn regex "x""#).is_err());
    }
}
