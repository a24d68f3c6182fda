//! The database table connector's `configurationProperties`, read from a provisioner file
//! into a checked [`DbConfig`] (no IO: opening a set never touches the database).
//!
//! The database comes from `url` when it is set, else from `jdbcUrlTemplate` with `%h`, `%p`
//! and `%d` replaced by `host`, `port` and `database`, as IDM's connector builds it. Two JDBC
//! URL forms are understood: `jdbc:postgresql://host[:port]/database[?params]` (params
//! `user`, `password`, `sslmode`, `ssl`, `sslfactory`, `sslrootcert`, `connectTimeout`,
//! `socketTimeout`, `currentSchema`)
//! and `jdbc:sqlite:<path>`. Anything else is a configuration error naming the URL, so a
//! provisioner for a database recond cannot reach fails at startup, never mid-run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::idm::Provisioner;

/// How long a connection attempt may take before the run fails (JDBC `connectTimeout`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one statement may run before the server cancels it (JDBC `socketTimeout`
/// plays this role for IDM); a lost connection is also detected by TCP keepalives.
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTarget {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    /// The schema searched for an unqualified table (`currentSchema`), else the server's path.
    pub schema: Option<String>,
    pub connect_timeout: Duration,
    pub statement_timeout: Duration,
    pub tls: Tls,
}

/// Whether and how the connection is encrypted, from the URL's `sslmode` / `ssl` /
/// `sslfactory` / `sslrootcert`, with pgjdbc's meanings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// PEM file of the certificate authority to trust (`sslrootcert`), besides the system's.
    pub root_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// `disable`, `allow`: plain TCP.
    Disable,
    /// `prefer` (pgjdbc's default): TLS when the server offers it, certificate not checked.
    Prefer,
    /// `require`: TLS or no connection; the certificate is checked only against a given
    /// `sslrootcert` (libpq's rule), never its host name.
    Require,
    /// `verify-ca`: TLS with a certificate signed by a trusted authority.
    VerifyCa,
    /// `verify-full` (and `ssl=true` without `sslmode`): also for this host name.
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Postgres(PgTarget),
    Sqlite(PathBuf),
}

/// The table a provisioner serves and how its columns are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    pub backend: Backend,
    /// `[schema.]table` as written (an unquoted name, resolved against the catalog at connect).
    pub table: String,
    pub key_column: String,
    pub password_column: Option<String>,
    pub change_log_column: Option<String>,
    /// `enableEmptyString`: write `""` as an empty string rather than NULL (IDM's default is
    /// NULL).
    pub enable_empty_string: bool,
}

impl DbConfig {
    /// A short description for messages (`PostgreSQL at h:p/db`), never with the password.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Postgres(t) => format!(
                "PostgreSQL at {}:{}/{} (table {})",
                t.host, t.port, t.database, self.table
            ),
            Backend::Sqlite(p) => format!("SQLite file {} (table {})", p.display(), self.table),
        }
    }
}

/// Reads the provisioner's configuration. Errors name the property (callers add the file).
pub fn parse(p: &Provisioner) -> Result<DbConfig, String> {
    let bad = |key: &str, why: String| format!("configurationProperties.{key}: {why}");
    let nonempty = |key: &str| p.config_str(key).filter(|s| !s.trim().is_empty());
    if nonempty("datasource").is_some() {
        return Err(bad(
            "datasource",
            "JNDI data sources are not supported by recond; give a JDBC url".into(),
        ));
    }
    let url = match nonempty("url") {
        Some(u) => u,
        None => {
            let template = nonempty("jdbcUrlTemplate").ok_or_else(|| {
                bad(
                    "url",
                    "neither url nor jdbcUrlTemplate is set; recond needs a jdbc:postgresql: or \
                     jdbc:sqlite: URL"
                        .into(),
                )
            })?;
            let mut out = String::new();
            let mut chars = template.chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    out.push(c);
                    continue;
                }
                let (key, next) = match chars.next() {
                    Some('h') => ("host", 'h'),
                    Some('p') => ("port", 'p'),
                    Some('d') => ("database", 'd'),
                    Some(other) => {
                        out.push('%');
                        out.push(other);
                        continue;
                    }
                    None => {
                        out.push('%');
                        break;
                    }
                };
                let value = nonempty(key).ok_or_else(|| {
                    bad(
                        key,
                        format!("jdbcUrlTemplate uses %{next} but {key} is not set"),
                    )
                })?;
                out.push_str(&value);
            }
            out
        }
    };
    let user = nonempty("user");
    let password = p.config_str("password").filter(|s| !s.is_empty());
    let backend = parse_url(&url, user, password, &p.file).map_err(|e| bad("url", e))?;
    let table = nonempty("table").ok_or_else(|| bad("table", "is required".into()))?;
    let key_column = nonempty("keyColumn").ok_or_else(|| bad("keyColumn", "is required".into()))?;
    Ok(DbConfig {
        backend,
        table: table.trim().to_string(),
        key_column: key_column.trim().to_string(),
        password_column: nonempty("passwordColumn").map(|s| s.trim().to_string()),
        change_log_column: nonempty("changeLogColumn").map(|s| s.trim().to_string()),
        enable_empty_string: p.config_bool("enableEmptyString", false)?,
    })
}

fn parse_url(
    url: &str,
    user: Option<String>,
    password: Option<String>,
    provisioner_file: &Path,
) -> Result<Backend, String> {
    if let Some(rest) = url.strip_prefix("jdbc:sqlite:") {
        let path = rest.strip_prefix("file:").unwrap_or(rest);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            return Err(format!(
                "\"{url}\": an in-memory SQLite database holds no identities; name a file"
            ));
        }
        let path = PathBuf::from(path);
        // A relative path is relative to the project folder (the parent of conf/), like the
        // other files a provisioner names.
        let path = if path.is_relative() {
            provisioner_file
                .parent()
                .and_then(Path::parent)
                .map(|project| project.join(&path))
                .unwrap_or(path)
        } else {
            path
        };
        return Ok(Backend::Sqlite(path));
    }
    let rest = url.strip_prefix("jdbc:postgresql:").ok_or_else(|| {
        format!(
            "\"{url}\": recond's database table connector reaches PostgreSQL \
                 (jdbc:postgresql://host:port/database) and SQLite (jdbc:sqlite:<path>) only"
        )
    })?;
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, q),
        None => (rest, ""),
    };
    let (host, port, database) = match location.strip_prefix("//") {
        Some(hp_db) => {
            let (hp, db) = hp_db.split_once('/').unwrap_or((hp_db, ""));
            let (host, port) = split_host_port(hp)?;
            (host, port, db.to_string())
        }
        // jdbc:postgresql:database means localhost:5432.
        None => ("localhost".to_string(), 5432, location.to_string()),
    };
    if host.contains(',') {
        return Err(format!(
            "\"{url}\": several hosts (failover) are not supported"
        ));
    }
    let mut t = PgTarget {
        host,
        port,
        database: percent_decode(&database)?,
        user: user.unwrap_or_default(),
        password,
        schema: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        tls: Tls {
            mode: SslMode::Prefer,
            root_cert: None,
        },
    };
    let (mut sslmode, mut ssl, mut non_validating) = (None, false, false);
    let seconds = |k: &str, v: &str| -> Result<Duration, String> {
        v.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("\"{url}\": {k} must be a number of seconds, got \"{v}\""))
    };
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "user" => t.user = v,
            "password" => t.password = Some(v),
            "currentSchema" => t.schema = Some(v),
            "connectTimeout" if v != "0" => t.connect_timeout = seconds(k, &v)?,
            "socketTimeout" if v != "0" => t.statement_timeout = seconds(k, &v)?,
            "sslmode" => {
                sslmode = Some(match v.as_str() {
                    "disable" | "allow" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "\"{url}\": sslmode={other} is not one of disable, allow, prefer, \
                             require, verify-ca, verify-full"
                        ))
                    }
                })
            }
            "ssl" => ssl = v.is_empty() || v == "true",
            "sslfactory" => non_validating = v.ends_with(".NonValidatingFactory"),
            "sslrootcert" if !v.is_empty() => t.tls.root_cert = Some(PathBuf::from(v)),
            // Driver tuning (prepareThreshold, ApplicationName, loginTimeout, ...) has no
            // effect on what recond does.
            _ => {}
        }
    }
    // pgjdbc: `ssl=true` alone means verify-full; the non-validating factory checks nothing.
    t.tls.mode = match (sslmode, ssl) {
        (Some(m), _) => m,
        (None, true) => SslMode::VerifyFull,
        (None, false) => SslMode::Prefer,
    };
    if non_validating && t.tls.mode != SslMode::Disable {
        t.tls.mode = SslMode::Require;
    }
    if t.database.is_empty() {
        return Err(format!("\"{url}\": no database name"));
    }
    if t.user.is_empty() {
        return Err(format!(
            "\"{url}\": no user (set configurationProperties.user or ?user= in the URL)"
        ));
    }
    Ok(Backend::Postgres(t))
}

/// A libpq connection URI, `postgres[ql]://[user[:password]@]host[:port]/database[?params]`
/// (the PostgreSQL repository's `[storage] url`), read with the JDBC URL's rules: the same
/// `sslmode`, `sslrootcert`, `connectTimeout`, `socketTimeout` (the statement timeout) and
/// `currentSchema` parameters. User and password are percent-decoded; messages never show
/// the password.
pub fn parse_postgres_uri(url: &str) -> Result<PgTarget, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| {
            "must start with postgres:// (postgres://user:password@host:port/database)".to_string()
        })?;
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = location.split_once('/').unwrap_or((location, ""));
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((name, pass)) => (Some(percent_decode(name)?), Some(percent_decode(pass)?)),
            None => (Some(percent_decode(u)?), None),
        },
        None => (None, None),
    };
    let shown = format!(
        "postgres://{}{host_port}/{path}",
        if userinfo.is_some() { "***@" } else { "" }
    );
    let jdbc = match query {
        Some(q) => format!("jdbc:postgresql://{host_port}/{path}?{q}"),
        None => format!("jdbc:postgresql://{host_port}/{path}"),
    };
    let password = password.filter(|p| !p.is_empty());
    match parse_url(
        &jdbc,
        user.filter(|u| !u.is_empty()),
        password,
        Path::new(""),
    ) {
        Ok(Backend::Postgres(t)) => Ok(t),
        Ok(Backend::Sqlite(_)) => Err(format!("\"{shown}\" is not a PostgreSQL URL")),
        Err(e) => Err(e.replace(&jdbc, &shown)),
    }
}

fn split_host_port(hp: &str) -> Result<(String, u16), String> {
    if hp.is_empty() {
        return Ok(("localhost".into(), 5432));
    }
    // [v6]:port
    if let Some(rest) = hp.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad host \"{hp}\""))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None => 5432,
        };
        return Ok((h.to_string(), port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => Ok((h.to_string(), parse_port(p)?)),
        None => Ok((hp.to_string(), 5432)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse()
        .map_err(|_| format!("port must be a number from 1 to 65535, got \"{p}\""))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in \"{s}\""))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("\"{s}\" does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prov(props: serde_json::Value) -> Provisioner {
        Provisioner::parse(
            Path::new("/p/conf/provisioner.openicf-hr.json"),
            json!({
                "connectorRef": {"connectorName":
                    "org.identityconnectors.databasetable.DatabaseTableConnector"},
                "configurationProperties": props,
            }),
            "hr",
        )
        .expect("parses")
    }

    #[test]
    fn postgres_uris_are_read_like_jdbc_urls() {
        let t =
            parse_postgres_uri("postgres://rec%40d:p%3Ass@db.example:6543/recon?sslmode=require")
                .expect("valid");
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.database.as_str(),
                t.user.as_str()
            ),
            ("db.example", 6543, "recon", "rec@d")
        );
        assert_eq!(t.password.as_deref(), Some("p:ss"));
        assert_eq!(t.tls.mode, SslMode::Require);
        let t = parse_postgres_uri("postgresql://u@127.0.0.1/db").expect("valid");
        assert_eq!((t.port, t.password), (5432, None));
        for bad in [
            "jdbc:postgresql://h/db?user=u",
            "postgres://h/db",
            "postgres://u:secret@h:99999/db",
            "postgres://u:secret@h/db?sslmode=sometimes",
        ] {
            let e = parse_postgres_uri(bad).expect_err(bad);
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn postgres_url_with_params() {
        let c = parse(&prov(json!({
            "url": "jdbc:postgresql://db.example:6543/hr?currentSchema=people&connectTimeout=3",
            "user": "idm", "password": "s3cret", "table": "users", "keyColumn": "uid",
            "passwordColumn": "pw", "enableEmptyString": true,
        })))
        .expect("valid");
        let Backend::Postgres(t) = &c.backend else {
            panic!("not postgres: {c:?}")
        };
        assert_eq!(
            (t.host.as_str(), t.port, t.database.as_str()),
            ("db.example", 6543, "hr")
        );
        assert_eq!(t.schema.as_deref(), Some("people"));
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(c.password_column.as_deref(), Some("pw"));
        assert!(c.enable_empty_string);
        assert!(!c.describe().contains("s3cret"));
    }

    #[test]
    fn template_with_host_port_database() {
        let c = parse(&prov(json!({
            "jdbcUrlTemplate": "jdbc:postgresql://%h:%p/%d", "host": "127.0.0.1", "port": 5433,
            "database": "hr", "user": "idm", "table": "t", "keyColumn": "id",
        })))
        .expect("valid");
        let Backend::Postgres(t) = &c.backend else {
            panic!("not postgres")
        };
        assert_eq!(
            (t.host.as_str(), t.port, t.database.as_str()),
            ("127.0.0.1", 5433, "hr")
        );
        let e = parse(&prov(json!({
            "jdbcUrlTemplate": "jdbc:postgresql://%h:%p/%d", "host": "h",
            "user": "idm", "table": "t", "keyColumn": "id",
        })))
        .expect_err("no port");
        assert!(e.contains("%p") && e.contains("port"), "{e}");
    }

    #[test]
    fn tls_follows_pgjdbc() {
        let mode = |q: &str| {
            let c = parse(&prov(json!({
                "url": format!("jdbc:postgresql://h/db{q}"), "user": "u", "table": "t",
                "keyColumn": "k",
            })))
            .expect("valid");
            let Backend::Postgres(t) = c.backend else {
                panic!("not postgres")
            };
            t.tls
        };
        assert_eq!(mode("").mode, SslMode::Prefer);
        assert_eq!(mode("?ssl=true").mode, SslMode::VerifyFull);
        assert_eq!(mode("?ssl=false").mode, SslMode::Prefer);
        assert_eq!(mode("?sslmode=require").mode, SslMode::Require);
        assert_eq!(mode("?ssl=true&sslmode=verify-ca").mode, SslMode::VerifyCa);
        assert_eq!(mode("?sslmode=disable").mode, SslMode::Disable);
        assert_eq!(
            mode("?ssl=true&sslfactory=org.postgresql.ssl.NonValidatingFactory").mode,
            SslMode::Require
        );
        assert_eq!(
            mode("?sslmode=verify-full&sslrootcert=/etc/ca.pem").root_cert,
            Some(PathBuf::from("/etc/ca.pem"))
        );
    }

    #[test]
    fn sqlite_relative_to_the_project() {
        let c = parse(&prov(json!({
            "url": "jdbc:sqlite:data/app.db", "table": "t", "keyColumn": "id",
        })))
        .expect("valid");
        assert_eq!(c.backend, Backend::Sqlite(PathBuf::from("/p/data/app.db")));
    }

    #[test]
    fn unsupported_things_are_named() {
        for (props, needle) in [
            (
                json!({"url": "jdbc:mysql://h/db", "user": "u", "table": "t", "keyColumn": "k"}),
                "jdbc:mysql",
            ),
            (
                json!({"url": "jdbc:postgresql://h/db?sslmode=sometimes", "user": "u", "table": "t", "keyColumn": "k"}),
                "sslmode=sometimes",
            ),
            (
                json!({"url": "jdbc:postgresql://h/db", "user": "u", "keyColumn": "k"}),
                "table",
            ),
            (
                json!({"url": "jdbc:postgresql://h/db", "user": "u", "table": "t"}),
                "keyColumn",
            ),
            (
                json!({"url": "jdbc:postgresql://h/db", "table": "t", "keyColumn": "k"}),
                "no user",
            ),
            (json!({"table": "t", "keyColumn": "k"}), "jdbcUrlTemplate"),
        ] {
            let e = parse(&prov(props)).expect_err("invalid");
            assert!(e.contains(needle), "{needle}: {e}");
            assert!(e.starts_with("configurationProperties."), "{e}");
        }
    }
}
