//! `POST /openidm/sync?_action=getLinkedResources&resourceName=<set>/<id>`: the objects linked
//! to one resource across every mapping, as IDM answers it.
//!
//! The mappings considered are those that own their links (`links` not set) and whose source
//! or target is the resource's set. For each, the resource's links are point lookups in the
//! store (one per static link qualifier, either direction as the resource is the mapping's
//! source or target); a mapping whose qualifiers come from a script has its link type scanned.
//! Every linked object is read through its object set (so managed.json's read rules apply); a
//! read that fails or finds nothing still lists the link, with `content: null` and `error`.

use serde_json::{json, Value};

use crate::mapping::{Mapping, Qualifiers};
use crate::runner::{RunError, Runner};
use crate::storage::Link;

/// The linked resources of `resource_name` (`managed/user/42`): IDM's array of
/// `{resourceName, content, linkQualifier, linkType, mappings: [{name, type}]}`.
pub fn linked_resources(runner: &Runner, resource_name: &str) -> Result<Value, RunError> {
    let path = resource_name.trim_matches('/');
    let (container, id) = path
        .rsplit_once('/')
        .filter(|(c, i)| !c.is_empty() && !i.is_empty())
        .ok_or_else(|| {
            RunError::BadRequest(format!(
                "resourceName must name one object (<set>/<id>), got '{resource_name}'"
            ))
        })?;
    let mappings = runner.mappings();
    let mut out = Vec::new();
    for m in mappings.values().filter(|m| m.link_type == m.name) {
        let as_source = m.source.trim_matches('/') == container;
        let as_target = m.target.trim_matches('/') == container;
        if !as_source && !as_target {
            continue;
        }
        for (link, linked) in links_of(runner, m, id, as_source, as_target)? {
            let related: Vec<Value> = mappings
                .values()
                .filter(|r| r.name == link.link_type || r.link_type == link.link_type)
                .map(|r| {
                    // How the linked resource relates to the asked one in that mapping.
                    let kind = if r.source.trim_matches('/') == container {
                        "target"
                    } else {
                        "source"
                    };
                    json!({"name": r.name, "type": kind})
                })
                .collect();
            let (set, linked_id) = linked;
            let resource = format!("{set}/{linked_id}");
            let read = match runner.objects().get(&set) {
                None => Err(format!("Resource '{set}' not found")),
                Some(objects) => match objects.read(&linked_id) {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => Err(format!("Object {resource} not found")),
                    Err(e) => Err(e.message),
                },
            };
            out.push(match read {
                Ok(content) => json!({
                    "resourceName": resource,
                    "content": content,
                    "linkQualifier": link.qualifier,
                    "linkType": link.link_type,
                    "mappings": related,
                }),
                Err(error) => json!({
                    "resourceName": resource,
                    "content": null,
                    "error": error,
                    "linkQualifier": link.qualifier,
                    "linkType": link.link_type,
                    "mappings": related,
                }),
            });
        }
    }
    Ok(Value::Array(out))
}

/// A link and the (set, id) at its other end.
type LinkedTo = (Link, (String, String));

/// The links of mapping `m` (which owns them) that name `id` on the asked side(s), each with
/// the (set, id) at the other end.
fn links_of(
    runner: &Runner,
    m: &Mapping,
    id: &str,
    as_source: bool,
    as_target: bool,
) -> Result<Vec<LinkedTo>, RunError> {
    let store = runner.store();
    let source_id = if m.source_ids_case_sensitive {
        id.to_string()
    } else {
        id.to_lowercase()
    };
    let target_id = if m.target_ids_case_sensitive {
        id.to_string()
    } else {
        id.to_lowercase()
    };
    let other = |l: &Link, resource_is_source: bool| {
        if resource_is_source {
            (m.target.trim_matches('/').to_string(), l.second_id.clone())
        } else {
            (m.source.trim_matches('/').to_string(), l.first_id.clone())
        }
    };
    let mut out = Vec::new();
    match &m.qualifiers {
        Qualifiers::Static(qualifiers) => {
            for q in qualifiers {
                if as_source {
                    if let Some(l) = store.link_by_first(&m.link_type, q, &source_id)? {
                        let o = other(&l, true);
                        out.push((l, o));
                    }
                }
                if as_target {
                    if let Some(l) = store.link_by_second(&m.link_type, q, &target_id)? {
                        let o = other(&l, false);
                        out.push((l, o));
                    }
                }
            }
        }
        Qualifiers::Script(_) => {
            let mut found = Vec::new();
            store.scan_links(Some(&m.link_type), None, &mut |l| {
                if as_source && l.first_id == source_id {
                    let o = other(&l, true);
                    found.push((l.clone(), o));
                }
                if as_target && l.second_id == target_id {
                    let o = other(&l, false);
                    found.push((l, o));
                }
                std::ops::ControlFlow::Continue(())
            })?;
            out = found;
        }
    }
    Ok(out)
}
