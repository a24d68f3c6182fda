//! Writes to the directory: add at the mapped `dn`, minimal modify, rename (modDN) when the
//! `dn` changes, delete, and group membership through `ldapGroups`.
//!
//! * Only attributes whose values differ from the current entry are modified (multi-valued
//!   ones compared as sets); a property absent from the body is left alone, one that is
//!   `null` or `[]` removes the attribute — the semantics of IDM's connector update.
//! * Passwords cannot be read back, so a password in the body is always written.
//! * `ldapGroups` adds/removes the entry's dn in each group's `groupMemberAttribute`; with
//!   `maintainLdapGroupMembership` a rename or delete also updates the groups that list it.
//! * Properties the model marks `NOT_CREATABLE`/`NOT_UPDATEABLE` are not sent, as IDM filters
//!   them; a property the model does not declare is an error naming it.
//! * The add, and the last operation of an update that touches the entry (its modify, else its
//!   rename), carry the post-read control (RFC 4527, non-critical) when asked: the directory
//!   answers the entry as written (server-assigned `entryUUID` included) in the same round
//!   trip. [`Written::entry`] is `None` when it did not (a directory without post-read, or an
//!   update that sent nothing), and the caller reads the entry back.

use std::collections::HashSet;

use ldap3::controls::{PostRead, RawControl};
use ldap3::{LdapResult, Mod};
use serde_json::{Map, Value};

use super::config::TypeConfig;
use super::entry::{is_plain, same_dn, same_values, split_rdns, values_of, Entry};
use super::pool::{checked, Failure, Pool, Values};

/// An entry after a write: its dn, and the entry itself when the directory answered it in a
/// post-read control.
#[derive(Debug)]
pub struct Written {
    pub dn: String,
    pub entry: Option<Entry>,
}

/// The request controls of a write: post-read of `attrs` when asked.
fn controls(post_read: Option<&[String]>) -> Vec<RawControl> {
    post_read
        .map(|attrs| PostRead::new(attrs.to_vec()))
        .into_iter()
        .collect()
}

/// The entry a successful write's result carries, if any.
fn written_entry(res: &LdapResult) -> Result<Option<Entry>, Failure> {
    Entry::from_post_read(&res.ctrls).map_err(Failure::Other)
}

/// A write that could not be made: the directory's failure or a body the model rejects.
#[derive(Debug)]
pub enum WriteError {
    Invalid(String),
    Ldap { what: String, failure: Failure },
}

fn ldap(what: impl Into<String>) -> impl FnOnce(Failure) -> WriteError {
    let what = what.into();
    move |failure| WriteError::Ldap { what, failure }
}

fn check_known(cfg: &TypeConfig, body: &Map<String, Value>) -> Result<(), WriteError> {
    for k in body.keys() {
        if k != "_id" && k != "_rev" && cfg.model.property(k).is_none() {
            return Err(WriteError::Invalid(format!(
                "'{k}' is not a property of the object type {}",
                cfg.model.name
            )));
        }
    }
    Ok(())
}

/// The `dn` a body names.
pub fn body_dn(cfg: &TypeConfig, body: &Map<String, Value>) -> Result<Option<String>, WriteError> {
    let Some(p) = cfg.model.name_property() else {
        return Ok(None);
    };
    match body.get(&p.name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(other) => Err(WriteError::Invalid(format!(
            "'{}' (the entry's dn) must be a non-empty string, not {other}",
            p.name
        ))),
    }
}

fn groups_in(
    cfg: &TypeConfig,
    body: &Map<String, Value>,
) -> Result<Option<Vec<String>>, WriteError> {
    let Some(p) = cfg.groups_property() else {
        return Ok(None);
    };
    match body.get(&p.name) {
        None => Ok(None),
        Some(v) => values_of(p, v)
            .map_err(WriteError::Invalid)?
            .into_iter()
            .map(|b| {
                String::from_utf8(b)
                    .map_err(|_| WriteError::Invalid("group dn is not UTF-8".into()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

/// Adds the entry `body` describes, asking for it back in a post-read control of
/// `post_read`'s attributes when given.
pub fn add(
    pool: &Pool,
    cfg: &TypeConfig,
    id: Option<&str>,
    body: &Map<String, Value>,
    post_read: Option<&[String]>,
) -> Result<Written, WriteError> {
    let (dn, attrs) = add_request(cfg, id, body)?;
    let groups = groups_in(cfg, body)?;
    let what = || format!("adding {dn}");
    let mut conn = pool.get_direct().map_err(ldap(what()))?;
    let (target, ctrls) = (dn.as_str(), controls(post_read));
    let entry = conn
        .run(|mut l| async move { l.with_controls(ctrls).add(target, attrs).await })
        .and_then(checked)
        .and_then(|r| written_entry(&r))
        .map_err(ldap(what()))?;
    drop(conn);
    for g in groups.iter().flatten() {
        member(pool, cfg, g, &dn, true)?;
    }
    Ok(Written { dn, entry })
}

/// An add's attributes, as ldap3 sends them.
type AddAttrs = Vec<(Vec<u8>, Values)>;

/// An add's dn and attributes, checked against the model.
fn add_request(
    cfg: &TypeConfig,
    id: Option<&str>,
    body: &Map<String, Value>,
) -> Result<(String, AddAttrs), WriteError> {
    check_known(cfg, body)?;
    let dn = body_dn(cfg, body)?.ok_or_else(|| {
        WriteError::Invalid(match cfg.model.name_property() {
            Some(p) => format!(
                "'{}' (the entry's dn) is required to create an entry",
                p.name
            ),
            None => {
                "the object type has no __NAME__ property, so entries cannot be created".to_string()
            }
        })
    })?;
    let mut attrs: AddAttrs = vec![(
        b"objectClass".to_vec(),
        cfg.object_classes
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect(),
    )];
    if let Some(id) = id {
        if cfg.uid_attribute.eq_ignore_ascii_case("entryUUID") {
            return Err(WriteError::Invalid(format!(
                "the directory assigns _id ({}); create without an id",
                cfg.uid_attribute
            )));
        }
        attrs.push((
            cfg.uid_attribute.as_bytes().to_vec(),
            [id.as_bytes().to_vec()].into_iter().collect(),
        ));
    }
    for p in cfg.model.properties.iter().filter(|p| is_plain(p)) {
        let Some(v) = body.get(&p.name) else { continue };
        if !p.is_creatable() {
            continue;
        }
        let vals = values_of(p, v).map_err(WriteError::Invalid)?;
        if vals.is_empty() {
            continue;
        }
        let key = p.native_name.as_bytes().to_vec();
        match attrs.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            Some((_, set)) => set.extend(vals),
            None => attrs.push((key, vals.into_iter().collect())),
        }
    }
    Ok((dn, attrs))
}

/// Adds (`add`) or removes `dn` in group `group`'s member attribute.
fn member(
    pool: &Pool,
    cfg: &TypeConfig,
    group: &str,
    dn: &str,
    add: bool,
) -> Result<(), WriteError> {
    let attr = cfg.group_member_attribute.as_bytes().to_vec();
    let vals: Values = [dn.as_bytes().to_vec()].into_iter().collect();
    let m = if add {
        Mod::Add(attr, vals)
    } else {
        Mod::Delete(attr, vals)
    };
    let what = format!(
        "{} {dn} {} group {group}",
        if add { "adding" } else { "removing" },
        if add { "to" } else { "from" }
    );
    let mut conn = pool.get_direct().map_err(ldap(what.clone()))?;
    match conn
        .run(|mut l| async move { l.modify(group, vec![m]).await })
        .and_then(checked)
    {
        Ok(_) => Ok(()),
        // Already a member / already gone: the membership is as asked.
        Err(Failure::Directory { rc: 20, .. }) if add => Ok(()),
        Err(Failure::Directory { rc: 16, .. }) if !add => Ok(()),
        Err(e) => Err(WriteError::Ldap { what, failure: e }),
    }
}

/// Updates the entry `current` (the object as read, with its groups) to `body`; answers the
/// entry's dn afterwards, and the entry when `post_read` asked for it and a write carried it.
pub fn update(
    pool: &Pool,
    cfg: &TypeConfig,
    current: &Map<String, Value>,
    current_dn: &str,
    body: &Map<String, Value>,
    post_read: Option<&[String]>,
) -> Result<Written, WriteError> {
    check_known(cfg, body)?;
    let new_dn = body_dn(cfg, body)?.filter(|n| !same_dn(n, current_dn));
    let mods = modifications(cfg, current, body)?;
    let mut entry = None;
    if let Some(new_dn) = &new_dn {
        // The rename answers the entry only when no modify follows it.
        let read = post_read.filter(|_| mods.is_empty());
        entry = rename(pool, cfg, current_dn, new_dn, read)?;
    }
    let dn = new_dn.unwrap_or_else(|| current_dn.to_string());
    if !mods.is_empty() {
        let what = || format!("modifying {dn}");
        let mut conn = pool.get_direct().map_err(ldap(what()))?;
        let (target, ctrls) = (dn.as_str(), controls(post_read));
        entry = conn
            .run(|mut l| async move { l.with_controls(ctrls).modify(target, mods).await })
            .and_then(checked)
            .and_then(|r| written_entry(&r))
            .map_err(ldap(what()))?;
    }
    if let Some(want) = groups_in(cfg, body)? {
        let have =
            crate::objects::strings(cfg.groups_property().and_then(|p| current.get(&p.name)));
        for g in want.iter().filter(|g| !have.iter().any(|h| same_dn(h, g))) {
            member(pool, cfg, g, &dn, true)?;
        }
        for g in have.iter().filter(|h| !want.iter().any(|g| same_dn(h, g))) {
            member(pool, cfg, g, &dn, false)?;
        }
    }
    Ok(Written { dn, entry })
}

/// The minimal modifications from `current` to `body` (see the module doc).
fn modifications(
    cfg: &TypeConfig,
    current: &Map<String, Value>,
    body: &Map<String, Value>,
) -> Result<Vec<Mod<Vec<u8>>>, WriteError> {
    let mut mods: Vec<Mod<Vec<u8>>> = Vec::new();
    for p in cfg.model.properties.iter().filter(|p| is_plain(p)) {
        let Some(v) = body.get(&p.name) else { continue };
        if !p.is_updateable() {
            continue;
        }
        let want = values_of(p, v).map_err(WriteError::Invalid)?;
        let attr = p.native_name.as_bytes().to_vec();
        if p.is_password() {
            if !want.is_empty() {
                mods.push(Mod::Replace(attr, want.into_iter().collect()));
            }
            continue;
        }
        let have = match current.get(&p.name) {
            Some(c) => values_of(p, c).map_err(WriteError::Invalid)?,
            None => Vec::new(),
        };
        if same_values(p, &have, &want) {
            continue;
        }
        mods.push(if want.is_empty() {
            Mod::Delete(attr, HashSet::new())
        } else {
            Mod::Replace(attr, want.into_iter().collect())
        });
    }
    Ok(mods)
}

/// Renames (and moves) `old` to `new`; with maintained membership, the groups follow. Answers
/// the renamed entry when `post_read` asked for it and the directory sent it.
fn rename(
    pool: &Pool,
    cfg: &TypeConfig,
    old: &str,
    new: &str,
    post_read: Option<&[String]>,
) -> Result<Option<Entry>, WriteError> {
    let (old_rdns, new_rdns) = (split_rdns(old), split_rdns(new));
    let Some(rdn) = new_rdns.first().cloned() else {
        return Err(WriteError::Invalid(format!("'{new}' is not a dn")));
    };
    let parent = |r: &[String]| r.get(1..).map(|p| p.join(",")).unwrap_or_default();
    let (old_parent, new_parent) = (parent(&old_rdns), parent(&new_rdns));
    let new_sup = (!same_dn(&old_parent, &new_parent)).then_some(new_parent);
    let groups = if cfg.maintain_group_membership {
        super::search::groups_of(pool, cfg, old).map_err(ldap(format!("renaming {old}")))?
    } else {
        Vec::new()
    };
    let what = format!("renaming {old} to {new}");
    let mut conn = pool.get_direct().map_err(ldap(what.clone()))?;
    let ctrls = controls(post_read);
    let entry = conn
        .run(|mut l| async move {
            l.with_controls(ctrls)
                .modifydn(old, &rdn, true, new_sup.as_deref())
                .await
        })
        .and_then(checked)
        .and_then(|r| written_entry(&r))
        .map_err(ldap(what))?;
    drop(conn);
    for g in &groups {
        member(pool, cfg, g, old, false)?;
        member(pool, cfg, g, new, true)?;
    }
    Ok(entry)
}

/// Deletes the entry `dn`; with maintained membership, removes it from its groups first.
pub fn delete(pool: &Pool, cfg: &TypeConfig, dn: &str) -> Result<(), WriteError> {
    let groups = if cfg.maintain_group_membership {
        super::search::groups_of(pool, cfg, dn).map_err(ldap(format!("deleting {dn}")))?
    } else {
        Vec::new()
    };
    let what = format!("deleting {dn}");
    let mut conn = pool.get_direct().map_err(ldap(what.clone()))?;
    conn.run(|mut l| async move { l.delete(dn).await })
        .and_then(checked)
        .map_err(ldap(what))?;
    drop(conn);
    for g in &groups {
        member(pool, cfg, g, dn, false)?;
    }
    Ok(())
}
