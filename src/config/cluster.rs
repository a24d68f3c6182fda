//! `[cluster]` of `recon.toml` (contract §9): the name this process goes by among the nodes
//! that share a repository.
//!
//! The node id names this process in claims (a run, a schedule's firing, a page of a clustered
//! run) and in a run's `sourceProcessedByNode`, so it must be stable across restarts and
//! distinct per node: the default is the host name, which is both on the usual one-process-per-
//! host setup. It is validated here (non-empty, `[A-Za-z0-9._-]{1,64}`), so every later use can
//! put it in a key or a JSON object as it is.

use serde::Deserialize;

/// The raw section, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterSection {
    node_id: Option<String>,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's id: `[cluster] node_id`, else the host name, else `recond`.
    pub node_id: String,
}

/// The node id used when neither the file nor the host gives a valid one.
pub const FALLBACK_NODE_ID: &str = "recond";

impl ClusterSection {
    /// Validates the section; `host` is the host name (None when the system has none).
    pub(super) fn resolve(&self, host: Option<&str>) -> Result<ClusterConfig, String> {
        let node_id = match &self.node_id {
            Some(id) => {
                check_node_id(id).map_err(|why| format!("[cluster] node_id {id:?}: {why}"))?;
                id.clone()
            }
            // A host name is usually a valid id; one that is not (too long, odd characters)
            // is not the user's mistake, so it falls back instead of stopping the server.
            None => host
                .filter(|h| check_node_id(h).is_ok())
                .unwrap_or(FALLBACK_NODE_ID)
                .to_string(),
        };
        Ok(ClusterConfig { node_id })
    }
}

/// Whether `id` is a valid node id: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_node_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("must not be empty");
    }
    if id.len() > 64 {
        return Err("must be at most 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may hold only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// The host name, when the system has a usable one.
pub(super) fn host_name() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(id: Option<&str>) -> ClusterSection {
        ClusterSection {
            node_id: id.map(str::to_string),
        }
    }

    #[test]
    fn the_configured_id_wins_and_is_validated() {
        let c = section(Some("node-1.a_b"))
            .resolve(Some("host"))
            .expect("valid");
        assert_eq!(c.node_id, "node-1.a_b");
        for (bad, why) in [
            ("", "empty"),
            ("a b", "letters"),
            ("n/1", "letters"),
            ("é", "letters"),
            (&"x".repeat(65), "64"),
        ] {
            let e = section(Some(bad))
                .resolve(Some("host"))
                .expect_err("invalid");
            assert!(
                e.contains("[cluster] node_id") && e.contains(why),
                "{bad}: {e}"
            );
        }
        assert!(section(Some(&"x".repeat(64))).resolve(None).is_ok());
    }

    #[test]
    fn the_default_is_the_host_name_or_recond() {
        assert_eq!(
            section(None).resolve(Some("box-7")).expect("ok").node_id,
            "box-7"
        );
        assert_eq!(section(None).resolve(None).expect("ok").node_id, "recond");
        // A host name that is no valid id is not the user's mistake: the fallback.
        assert_eq!(
            section(None).resolve(Some("a host")).expect("ok").node_id,
            "recond"
        );
    }

    #[test]
    fn this_hosts_name_resolves_to_a_valid_id() {
        let c = section(None)
            .resolve(host_name().as_deref())
            .expect("a default never fails");
        assert!(check_node_id(&c.node_id).is_ok(), "{}", c.node_id);
    }
}
