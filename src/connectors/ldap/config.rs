//! The LDAP connector's settings, read once from a provisioner's `configurationProperties`
//! and object type, with IDM's LDAP connector defaults.
//!
//! Everything the connector needs is resolved here, so a bad value is an error naming the
//! provisioner file when the set opens, never a surprise in the middle of a run.

use std::time::Duration;

use crate::idm::{ObjectType, Property, Provisioner};

/// IDM's default object classes of `__ACCOUNT__` entries.
const ACCOUNT_CLASSES: [&str; 4] = ["top", "person", "organizationalPerson", "inetOrgPerson"];
/// IDM's default object classes of `__GROUP__` entries.
const GROUP_CLASSES: [&str; 2] = ["top", "groupOfUniqueNames"];
/// The virtual attribute that lists an account's groups.
pub const LDAP_GROUPS: &str = "ldapGroups";

/// How to reach the directory.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub start_tls: bool,
    pub principal: Option<String>,
    pub credentials: Option<String>,
    pub connect_timeout: Duration,
    /// Bound on each operation and on the wait for each search result.
    pub op_timeout: Duration,
    /// Pooled connections kept open.
    pub pool_size: usize,
}

/// One object type's view of the directory.
#[derive(Debug, Clone)]
pub struct TypeConfig {
    pub conn: Connection,
    pub base_contexts: Vec<String>,
    /// `baseContextsToSynchronize` (defaults to `base_contexts`); for liveSync.
    pub sync_base_contexts: Vec<String>,
    /// The attribute that is `_id` (lower-cased comparisons; sent as written).
    pub uid_attribute: String,
    /// Object classes written on create and required by every search.
    pub object_classes: Vec<String>,
    /// `accountSearchFilter` / `groupSearchFilter`, without surrounding changes.
    pub search_filter: Option<String>,
    pub group_member_attribute: String,
    pub group_classes: Vec<String>,
    pub maintain_group_membership: bool,
    /// Page size of the paged-results control; `None` sends plain searches.
    pub page_size: Option<i32>,
    pub model: ObjectType,
}

fn err(p: &Provisioner, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", p.file.display())
}

fn millis(p: &Provisioner, key: &str, default: u64) -> Result<Duration, String> {
    match p.config_str(key) {
        None => Ok(Duration::from_millis(default)),
        Some(s) => {
            let ms: u64 = s.trim().parse().map_err(|_| {
                err(
                    p,
                    format!("configurationProperties.{key}: expected milliseconds, got \"{s}\""),
                )
            })?;
            // 0 means "no limit" in IDM; recond never waits forever on a directory.
            Ok(Duration::from_millis(if ms == 0 { default } else { ms }))
        }
    }
}

fn int(p: &Provisioner, key: &str, default: i64) -> Result<i64, String> {
    match p.config_str(key) {
        None => Ok(default),
        Some(s) => s.trim().parse().map_err(|_| {
            err(
                p,
                format!("configurationProperties.{key}: expected an integer, got \"{s}\""),
            )
        }),
    }
}

impl TypeConfig {
    /// Resolves the settings of `object_type` in provisioner `p`.
    pub fn from_provisioner(p: &Provisioner, object_type: &str) -> Result<TypeConfig, String> {
        let model = p
            .object_types
            .get(object_type)
            .cloned()
            .ok_or_else(|| err(p, format!("objectTypes has no \"{object_type}\"")))?;
        let host = p
            .config_str("host")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err(p, "configurationProperties.host is required"))?;
        let ssl = p.config_bool("ssl", false)?;
        let start_tls = p.config_bool("startTLS", false)?;
        if ssl && start_tls {
            return Err(err(
                p,
                "configurationProperties: ssl and startTLS exclude each other",
            ));
        }
        let port = int(p, "port", if ssl { 636 } else { 389 })?;
        if !(1..=65535).contains(&port) {
            return Err(err(
                p,
                format!("configurationProperties.port: {port} is not a port"),
            ));
        }
        let scheme = if ssl { "ldaps" } else { "ldap" };
        let host_part = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let principal = p.config_str("principal").filter(|s| !s.is_empty());
        let credentials = p.config_str("credentials");
        if principal.is_some() && credentials.is_none() {
            return Err(err(
                p,
                "configurationProperties.credentials is required with a principal",
            ));
        }
        let pool_size = p
            .raw
            .pointer("/poolConfigOption/maxIdle")
            .and_then(|v| v.as_u64())
            .unwrap_or(4)
            .clamp(1, 32) as usize;
        let conn = Connection {
            url: format!("{scheme}://{host_part}:{port}"),
            start_tls,
            principal,
            credentials,
            connect_timeout: millis(p, "connectTimeout", 10_000)?,
            op_timeout: millis(p, "readTimeout", 60_000)?,
            pool_size,
        };
        let base_contexts = p.config_list("baseContexts");
        if base_contexts.is_empty() {
            return Err(err(p, "configurationProperties.baseContexts is required"));
        }
        let mut sync_base_contexts = p.config_list("baseContextsToSynchronize");
        if sync_base_contexts.is_empty() {
            sync_base_contexts = base_contexts.clone();
        }
        let or_default = |key: &str, default: &[&str]| {
            let v = p.config_list(key);
            if v.is_empty() {
                default.iter().map(|s| s.to_string()).collect()
            } else {
                v
            }
        };
        let group_classes = or_default("groupObjectClasses", &GROUP_CLASSES);
        let (object_classes, search_filter) = match model.native_type.as_str() {
            "__ACCOUNT__" => (
                or_default("accountObjectClasses", &ACCOUNT_CLASSES),
                p.config_str("accountSearchFilter"),
            ),
            "__GROUP__" => (group_classes.clone(), p.config_str("groupSearchFilter")),
            other => (vec![other.to_string()], None),
        };
        let search_filter = search_filter
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .map(|f| {
                if f.starts_with('(') {
                    f
                } else {
                    format!("({f})")
                }
            });
        let use_paged = p.config_bool("usePagedResultControl", true)?;
        let page_size = int(p, "pageSize", int(p, "blockSize", 1000)?)?;
        if use_paged && !(1..=i32::MAX as i64).contains(&page_size) {
            return Err(err(
                p,
                format!("configurationProperties.pageSize: {page_size} is not a page size"),
            ));
        }
        Ok(TypeConfig {
            conn,
            base_contexts,
            sync_base_contexts,
            uid_attribute: p
                .config_str("uidAttribute")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "entryUUID".into()),
            object_classes,
            search_filter,
            group_member_attribute: p
                .config_str("groupMemberAttribute")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "uniqueMember".into()),
            group_classes,
            maintain_group_membership: p.config_bool("maintainLdapGroupMembership", false)?,
            page_size: use_paged.then_some(page_size as i32),
            model,
        })
    }

    /// The property that is `ldapGroups`, when the model declares it.
    pub fn groups_property(&self) -> Option<&Property> {
        self.model.by_native(LDAP_GROUPS)
    }

    /// The filter every search of this type carries: its object classes and search filter.
    pub fn type_filter(&self) -> String {
        let mut parts: Vec<String> = self
            .object_classes
            .iter()
            .filter(|c| !c.eq_ignore_ascii_case("top"))
            .map(|c| format!("(objectClass={})", super::filter::escape(c)))
            .collect();
        if let Some(f) = &self.search_filter {
            parts.push(f.clone());
        }
        match parts.len() {
            0 => "(objectClass=*)".into(),
            1 => parts.remove(0),
            _ => format!("(&{})", parts.concat()),
        }
    }

    /// Attributes to request for objects: the readable model attributes and the uid.
    pub fn read_attributes(&self) -> Vec<String> {
        let mut attrs = vec![self.uid_attribute.clone()];
        for p in &self.model.properties {
            let native = p.native_name.as_str();
            if !p.is_returned_by_default()
                || p.is_password()
                || native == crate::idm::provisioner::NAME
                || native == crate::idm::provisioner::UID
                || native.eq_ignore_ascii_case(LDAP_GROUPS)
            {
                continue;
            }
            if !attrs.iter().any(|a| a.eq_ignore_ascii_case(native)) {
                attrs.push(native.to_string());
            }
        }
        attrs
    }
}

/// For the connector's unit tests: the `account` type of an LDAP provisioner with `conf` as its
/// configuration properties and `properties` as the account's properties.
#[cfg(test)]
pub(super) fn test_account(conf: serde_json::Value, properties: serde_json::Value) -> TypeConfig {
    let p = Provisioner::parse(
        std::path::Path::new("p.json"),
        serde_json::json!({
            "connectorRef": {"connectorName": "org.identityconnectors.ldap.LdapConnector"},
            "configurationProperties": conf,
            "objectTypes": {"account": {"nativeType": "__ACCOUNT__", "properties": properties}}
        }),
        "ldap",
    )
    .expect("parses");
    TypeConfig::from_provisioner(&p, "account").expect("config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn prov(conf: serde_json::Value) -> Provisioner {
        Provisioner::parse(
            Path::new("provisioner.openicf-ldap.json"),
            json!({
                "connectorRef": {"connectorName": "org.identityconnectors.ldap.LdapConnector"},
                "configurationProperties": conf,
                "objectTypes": {
                    "account": {"nativeType": "__ACCOUNT__", "properties": {
                        "dn": {"type": "string", "nativeName": "__NAME__"},
                        "uid": {"type": "string"},
                        "userPassword": {"type": "string", "nativeType": "JAVA_TYPE_GUARDEDSTRING",
                                         "flags": ["NOT_READABLE", "NOT_RETURNED_BY_DEFAULT"]},
                        "ldapGroups": {"type": "array", "items": {"type": "string"}}
                    }},
                    "group": {"nativeType": "__GROUP__", "properties": {}},
                    "device": {"nativeType": "device", "properties": {}}
                }
            }),
            "ldap",
        )
        .expect("parses")
    }

    #[test]
    fn defaults_follow_idm() {
        let p = prov(json!({"host": "h", "baseContexts": ["dc=example,dc=com"]}));
        let c = TypeConfig::from_provisioner(&p, "account").expect("config");
        assert_eq!(c.conn.url, "ldap://h:389");
        assert_eq!(c.uid_attribute, "entryUUID");
        assert_eq!(c.page_size, Some(1000));
        assert_eq!(
            c.type_filter(),
            "(&(objectClass=person)(objectClass=organizationalPerson)(objectClass=inetOrgPerson))"
        );
        assert_eq!(c.read_attributes(), vec!["entryUUID", "uid"]);
        assert!(c.groups_property().is_some());
        let g = TypeConfig::from_provisioner(&p, "group").expect("group");
        assert_eq!(g.type_filter(), "(objectClass=groupOfUniqueNames)");
        let d = TypeConfig::from_provisioner(&p, "device").expect("device");
        assert_eq!(d.type_filter(), "(objectClass=device)");
    }

    #[test]
    fn explicit_settings_and_errors() {
        let p = prov(json!({"host": "h", "ssl": true, "baseContexts": "o=x",
            "accountSearchFilter": "uid=*", "usePagedResultControl": false,
            "uidAttribute": "uid", "principal": "cn=a", "credentials": "s"}));
        let c = TypeConfig::from_provisioner(&p, "account").expect("config");
        assert_eq!(c.conn.url, "ldaps://h:636");
        assert_eq!(c.page_size, None);
        assert!(c.type_filter().ends_with("(uid=*))"), "{}", c.type_filter());
        let e = TypeConfig::from_provisioner(&prov(json!({"host": "h"})), "account")
            .expect_err("no base");
        assert!(e.contains("baseContexts"), "{e}");
        let e = TypeConfig::from_provisioner(
            &prov(json!({"host": "h", "baseContexts": ["o=x"], "port": "x"})),
            "account",
        )
        .expect_err("bad port");
        assert!(e.contains("port"), "{e}");
        let e = TypeConfig::from_provisioner(
            &prov(json!({"host": "h", "baseContexts": ["o=x"], "principal": "cn=x"})),
            "account",
        )
        .expect_err("no credentials");
        assert!(e.contains("credentials"), "{e}");
    }
}
