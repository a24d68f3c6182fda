//! Loading every mapping of the configuration and resolving what spans mappings.
//!
//! Invariant: a mapping's `links` is resolved (link type, direction, inherited id
//! case-sensitivity) *before* it is wrapped in `Arc`, so there is no later mutation step that
//! could be skipped. A `links` naming no mapping, a mapping over other object sets, or a
//! mapping that itself borrows links is a startup error naming the file and the mapping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::Mapping;
use super::parse::parse_mapping;
use crate::config::{Config, ConfigError};
use crate::script::ProjectEnv;

/// The scripts' project: the IDM project folder when `idm_conf_dir` is set, else the folder of
/// the configuration file; recon.toml's folder is always searched last for script files.
pub fn project_env(config: &Config) -> Result<ProjectEnv, ConfigError> {
    let mut env = match &config.idm_project {
        Some(p) => ProjectEnv::new(&p.project_dir, Some(&p.conf_dir), p.properties.clone()),
        None => {
            let props = crate::idm::Properties::new(Default::default(), &config.base_dir)
                .map_err(|e| ConfigError::new(&config.base_dir, e))?;
            ProjectEnv::new(&config.base_dir, None, props)
        }
    };
    if !env.roots.contains(&config.base_dir) {
        env.roots.push(config.base_dir.clone());
    }
    // Scripts encrypt and hash with the server's key, as managed objects do.
    env.crypto = Arc::new(crate::managed::crypto::ServerCrypto);
    Ok(env)
}

/// Parses and validates every mapping of the configuration.
pub fn load_all(config: &Config) -> Result<BTreeMap<String, Arc<Mapping>>, ConfigError> {
    let sets: Vec<String> = config.object_sets.iter().map(|s| s.name.clone()).collect();
    let mut parsed: Vec<(PathBuf, Mapping)> = Vec::new();
    let project = Arc::new(project_env(config)?);
    for (file, v) in &config.mappings {
        let file = Path::new(file);
        let m = parse_mapping(file, &project, v, &sets)?;
        if parsed.iter().any(|(_, p)| p.name == m.name) {
            return Err(ConfigError::new(
                file,
                format!("mapping \"{}\": name: duplicate mapping name", m.name),
            ));
        }
        parsed.push((file.to_path_buf(), m));
    }
    let resolved = resolve_links(parsed)?;
    Ok(resolved
        .into_iter()
        .map(|m| (m.name.clone(), Arc::new(m)))
        .collect())
}

/// What a mapping's `links` resolves to, computed from the other (unresolved) mappings.
struct LinkResolution {
    reversed: bool,
    source_ids_case_sensitive: bool,
    target_ids_case_sensitive: bool,
}

/// Resolves every `links` against the parsed mappings, then applies the results (two passes,
/// so a mapping's resolution reads only the owners' parsed values).
fn resolve_links(parsed: Vec<(PathBuf, Mapping)>) -> Result<Vec<Mapping>, ConfigError> {
    let mut resolutions = Vec::with_capacity(parsed.len());
    for (file, m) in &parsed {
        if m.link_type == m.name {
            resolutions.push(None);
            continue;
        }
        let owner = parsed
            .iter()
            .map(|(_, o)| o)
            .find(|o| o.name == m.link_type)
            .ok_or_else(|| {
                ConfigError::new(
                    file,
                    format!(
                        "mapping \"{}\": links: no mapping named \"{}\"",
                        m.name, m.link_type
                    ),
                )
            })?;
        if owner.link_type != owner.name {
            return Err(ConfigError::new(
                file,
                format!(
                    "mapping \"{}\": links: mapping \"{}\" itself uses the links of \"{}\"; name that mapping instead",
                    m.name, owner.name, owner.link_type
                ),
            ));
        }
        resolutions.push(Some(resolve_one(file, m, owner)?));
    }
    Ok(parsed
        .into_iter()
        .zip(resolutions)
        .map(|((_, mut m), r)| {
            if let Some(r) = r {
                m.links_reversed = r.reversed;
                m.source_ids_case_sensitive = r.source_ids_case_sensitive;
                m.target_ids_case_sensitive = r.target_ids_case_sensitive;
            }
            m
        })
        .collect())
}

/// `links` must name a mapping with the same or the exact reverse direction; the borrowing
/// mapping inherits the owner's id case-sensitivity (swapped when reversed), because the link
/// rows are normalised by the owner's rules.
fn resolve_one(file: &Path, m: &Mapping, owner: &Mapping) -> Result<LinkResolution, ConfigError> {
    if owner.source == m.source && owner.target == m.target {
        Ok(LinkResolution {
            reversed: false,
            source_ids_case_sensitive: owner.source_ids_case_sensitive,
            target_ids_case_sensitive: owner.target_ids_case_sensitive,
        })
    } else if owner.source == m.target && owner.target == m.source {
        Ok(LinkResolution {
            reversed: true,
            source_ids_case_sensitive: owner.target_ids_case_sensitive,
            target_ids_case_sensitive: owner.source_ids_case_sensitive,
        })
    } else {
        Err(ConfigError::new(
            file,
            format!(
                "mapping \"{}\": links: mapping \"{}\" connects other object sets",
                m.name, owner.name
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::parse::test_project;
    use serde_json::{json, Value};

    fn mapping(v: Value) -> (PathBuf, Mapping) {
        let sets = vec![
            "system/ldap/account".to_string(),
            "managed/user".to_string(),
        ];
        let m = parse_mapping(Path::new("sync.json"), &test_project(), &v, &sets)
            .expect("valid mapping");
        (PathBuf::from("sync.json"), m)
    }

    fn pair(links: &str) -> Vec<(PathBuf, Mapping)> {
        vec![
            mapping(json!({"name": "systemLdapAccounts_managedUser",
                "source": "system/ldap/account", "target": "managed/user",
                "sourceIdsCaseSensitive": false})),
            mapping(json!({"name": "managedUser_systemLdapAccounts",
                "source": "managed/user", "target": "system/ldap/account",
                "links": links})),
        ]
    }

    /// Regression: `links` used to be resolved through `Arc::get_mut` on a shared map, which is
    /// always `None`, so a reverse mapping was never marked reversed.
    #[test]
    fn reverse_links_are_resolved_with_inherited_case_sensitivity() {
        let out = resolve_links(pair("systemLdapAccounts_managedUser")).expect("resolves");
        let rev = &out[1];
        assert_eq!(rev.link_type, "systemLdapAccounts_managedUser");
        assert!(
            rev.links_reversed,
            "the reverse mapping must be marked reversed"
        );
        assert!(rev.source_ids_case_sensitive);
        assert!(
            !rev.target_ids_case_sensitive,
            "target ids inherit the owner's source-id rule"
        );
        assert!(!out[0].links_reversed);
    }

    #[test]
    fn unknown_or_chained_links_are_startup_errors() {
        let e = resolve_links(pair("nope")).expect_err("unknown");
        assert!(e.to_string().contains("no mapping named \"nope\""), "{e}");
        let mut chained = pair("systemLdapAccounts_managedUser");
        chained.push(mapping(json!({"name": "third",
            "source": "system/ldap/account", "target": "managed/user",
            "links": "managedUser_systemLdapAccounts"})));
        let e = resolve_links(chained).expect_err("chained");
        assert!(e.to_string().contains("itself uses the links"), "{e}");
    }

    #[test]
    fn links_must_be_a_string() {
        let sets = vec![
            "system/ldap/account".to_string(),
            "managed/user".to_string(),
        ];
        let e = parse_mapping(
            Path::new("sync.json"),
            &test_project(),
            &json!({"name": "m", "source": "managed/user", "target": "system/ldap/account",
                "links": 3}),
            &sets,
        )
        .expect_err("ill-typed links");
        assert!(e.to_string().contains("links"), "{e}");
    }
}
