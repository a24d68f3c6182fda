//! IDM's `&{name}` / `&{name|default}` property substitution in configuration files.
//!
//! Lookup order (contract §6): recon.toml's `[idm_properties]`, then the environment (IDM's
//! `OPENIDM_NAME_WITH_UNDERSCORES` form, then the plain name), then `resolver/boot.properties`
//! or `conf/boot/boot.properties` of the project folder. `idm.instance.dir`, `idm.install.dir`,
//! `launcher.project.location` and `launcher.install.location` are the project folder.
//! An unresolved name without a default is an error naming the JSON path where it stands;
//! substitution never silently leaves `&{...}` behind.
//!
//! IDM's typed coercions are honoured too: `{"$int": "&{x}"}`, `{"$number": ...}`,
//! `{"$bool": ...}` and `{"$list": "a,b"}` (a comma-separated string) become typed values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where property values come from.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    explicit: BTreeMap<String, String>,
    boot: BTreeMap<String, String>,
    project_dir: PathBuf,
}

impl Properties {
    /// `explicit` is `[idm_properties]`; boot.properties is read from `project_dir`.
    pub fn new(
        explicit: BTreeMap<String, String>,
        project_dir: &Path,
    ) -> Result<Properties, String> {
        let mut boot = BTreeMap::new();
        for rel in ["resolver/boot.properties", "conf/boot/boot.properties"] {
            let file = project_dir.join(rel);
            if file.is_file() {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                for (k, v) in parse_properties(&text) {
                    boot.entry(k).or_insert(v);
                }
            }
        }
        Ok(Properties {
            explicit,
            boot,
            project_dir: project_dir.to_path_buf(),
        })
    }

    /// The value of one property, or None.
    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.explicit.get(name) {
            return Some(v.clone());
        }
        let env_name = format!("OPENIDM_{}", name.replace(['.', '-'], "_").to_uppercase());
        if let Ok(v) = std::env::var(&env_name) {
            return Some(v);
        }
        if let Ok(v) = std::env::var(name) {
            return Some(v);
        }
        if let Some(v) = self.boot.get(name) {
            return Some(v.clone());
        }
        match name {
            "idm.instance.dir"
            | "idm.install.dir"
            | "launcher.project.location"
            | "launcher.install.location"
            | "openidm.instance.dir"
            | "openidm.install.dir" => Some(self.project_dir.display().to_string()),
            _ => None,
        }
    }

    /// Substitutes every `&{...}` in `value` (strings anywhere in the tree, and typed
    /// coercion objects). Errors name the JSON path.
    pub fn substitute(&self, value: &mut Value) -> Result<(), String> {
        self.walk(value, &mut String::new())
    }

    fn walk(&self, value: &mut Value, path: &mut String) -> Result<(), String> {
        match value {
            Value::String(s) if s.contains("&{") => {
                *s = self.expand(s).map_err(|e| at(path, e))?;
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    self.walk(item, path)?;
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                if map.len() == 1 {
                    if let Some((kind, inner)) = map.iter().next() {
                        if let Some(coerced) = self.coerce(kind, inner).map_err(|e| at(path, e))? {
                            *value = coerced;
                            return Ok(());
                        }
                    }
                }
                for (k, v) in map.iter_mut() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(k);
                    self.walk(v, path)?;
                    path.truncate(len);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `{"$int": "..."}` and friends; None when the object is not a coercion.
    fn coerce(&self, kind: &str, inner: &Value) -> Result<Option<Value>, String> {
        if !matches!(kind, "$int" | "$number" | "$bool" | "$list") {
            return Ok(None);
        }
        let text = match inner {
            Value::String(s) => self.expand(s)?,
            other => other.to_string(),
        };
        let text = text.trim();
        let bad = || format!("{kind}: \"{text}\" is not a valid value");
        let v = match kind {
            "$int" => Value::from(text.parse::<i64>().map_err(|_| bad())?),
            "$number" => {
                let n: f64 = text.parse().map_err(|_| bad())?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(bad)?
            }
            "$bool" => Value::Bool(match text.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(bad()),
            }),
            _ => Value::Array(
                text.split(',')
                    .map(|s| Value::String(s.trim().to_string()))
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                    .collect(),
            ),
        };
        Ok(Some(v))
    }

    /// Expands every `&{name}` / `&{name|default}` in one string.
    pub fn expand(&self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("&{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unterminated property reference in \"{s}\""))?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once('|') {
                Some((n, d)) => (n.trim(), Some(d)),
                None => (inner.trim(), None),
            };
            match self.get(name).or_else(|| default.map(str::to_string)) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                    "property &{{{name}}} is not set (add it to [idm_properties] in recon.toml, \
                         the environment, or boot.properties)"
                ))
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn at(path: &str, e: String) -> String {
    if path.is_empty() {
        e
    } else {
        format!("{path}: {e}")
    }
}

/// Java `.properties` lines: `key=value` or `key: value`, `#`/`!` comments.
fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let i = l.find(['=', ':'])?;
            Some((l[..i].trim().to_string(), l[i + 1..].trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props() -> Properties {
        let mut explicit = BTreeMap::new();
        explicit.insert("openidm.port.http".to_string(), "8080".to_string());
        explicit.insert("ldap.host".to_string(), "localhost".to_string());
        Properties::new(explicit, Path::new("/srv/idm")).expect("no boot file")
    }

    #[test]
    fn substitutes_strings_defaults_and_project_dir() {
        let p = props();
        let mut v = json!({
            "url": "ldap://&{ldap.host}:&{ldap.port|1389}",
            "file": "&{idm.instance.dir}/data/hr.csv",
            "list": ["&{launcher.project.location}"],
        });
        p.substitute(&mut v).expect("resolves");
        assert_eq!(v["url"], "ldap://localhost:1389");
        assert_eq!(v["file"], "/srv/idm/data/hr.csv");
        assert_eq!(v["list"][0], "/srv/idm");
    }

    #[test]
    fn coerces_typed_values() {
        let p = props();
        let mut v = json!({"port": {"$int": "&{openidm.port.http}"}, "ssl": {"$bool": "false"},
                           "bases": {"$list": "a, b"}});
        p.substitute(&mut v).expect("resolves");
        assert_eq!(v, json!({"port": 8080, "ssl": false, "bases": ["a", "b"]}));
        let mut bad = json!({"x": {"$int": "eight"}});
        assert!(p
            .substitute(&mut bad)
            .expect_err("not an int")
            .contains("/x"));
    }

    #[test]
    fn unresolved_names_are_errors_with_their_path() {
        let p = props();
        let mut v = json!({"configurationProperties": {"host": "&{no.such.prop}"}});
        let e = p.substitute(&mut v).expect_err("unresolved");
        assert!(
            e.contains("/configurationProperties/host") && e.contains("no.such.prop"),
            "{e}"
        );
    }

    #[test]
    fn environment_in_idm_form() {
        std::env::set_var("OPENIDM_RECOND_TEST_ENV_PROP", "from-env");
        let p = props();
        assert_eq!(
            p.expand("&{recond.test.env.prop}").expect("env"),
            "from-env"
        );
    }

    #[test]
    fn boot_properties_are_read() {
        let dir = std::env::temp_dir().join(format!("recond-props-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf/boot")).expect("mkdir");
        std::fs::write(dir.join("conf/boot/boot.properties"), "# c\nboot.x = 7\n").expect("w");
        let p = Properties::new(BTreeMap::new(), &dir).expect("reads");
        assert_eq!(p.expand("&{boot.x}").expect("boot"), "7");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
