//! PostgreSQL through the blocking `postgres` client.
//!
//! * Every parameter is sent in PostgreSQL's text format and typed by the server from its
//!   place in the statement, so one code path binds ints, numerics, timestamps and uuids
//!   alike, and a value the column rejects comes back as the database's own error.
//! * Every selected cell is `to_json(col)::text`: the server renders each type as JSON, so
//!   no type needs a client-side decoder.
//! * Connecting has a timeout; the session has a `statement_timeout` and TCP keepalives, so
//!   a database that dies mid-run fails the run instead of hanging it.
//! * The client runs its own small runtime: call it from OS threads (the engine's workers,
//!   `spawn_blocking`), never from an async task.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::ops::ControlFlow;
use std::time::Duration;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Format, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};
use serde_json::Value;

use super::config::{PgTarget, SslMode, Tls};
use super::db::{
    quote_ident, ColKind, Column, Conn, DbError, DbErrorKind, Dialect, Param, Row, TableInfo,
};

pub struct PgConn {
    client: Client,
    /// Statements prepared on this connection, by text: a statement run again (a scan's next
    /// page, a unit's next insert) costs one round trip instead of two.
    statements: HashMap<String, Statement>,
}

/// Prepared statements kept per connection before the cache starts over.
const MAX_STATEMENTS: usize = 256;

impl PgConn {
    fn prepared(&mut self, sql: &str) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(error)?;
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// Connects, with the target's timeouts.
pub fn connect(t: &PgTarget) -> Result<Box<dyn Conn>, DbError> {
    let client = client(t)?;
    let mut conn = PgConn {
        client,
        statements: HashMap::new(),
    };
    if let Some(schema) = &t.schema {
        // search_path is set through a bound value so the schema name is never SQL text.
        conn.execute(
            "SELECT set_config('search_path', $1, false)",
            &[Param::Text(quote_ident(schema))],
        )?;
    }
    Ok(Box::new(conn))
}

/// A plain client for `t`: its timeouts, keepalives and TLS (also the PostgreSQL
/// repository's connections, `storage::pg`). `currentSchema` is left to the caller.
pub fn client(t: &PgTarget) -> Result<Client, DbError> {
    let mut cfg = postgres::Config::new();
    cfg.host(&t.host)
        .port(t.port)
        .dbname(&t.database)
        .user(&t.user)
        .application_name("recond")
        .connect_timeout(t.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .options(&format!(
            "-c statement_timeout={}",
            t.statement_timeout.as_millis()
        ));
    if let Some(p) = &t.password {
        cfg.password(p);
    }
    let cannot = |why: String| {
        DbError::new(
            DbErrorKind::Connect,
            format!(
                "cannot connect to PostgreSQL at {}:{} (database {}, user {}): {why}",
                t.host, t.port, t.database, t.user
            ),
        )
    };
    let connected = match t.tls.mode {
        SslMode::Disable => {
            cfg.ssl_mode(postgres::config::SslMode::Disable);
            cfg.connect(NoTls)
        }
        mode => {
            cfg.ssl_mode(if mode == SslMode::Prefer {
                postgres::config::SslMode::Prefer
            } else {
                postgres::config::SslMode::Require
            });
            cfg.connect(tls_connector(&t.tls).map_err(cannot)?)
        }
    };
    connected.map_err(|e| {
        DbError::new(
            DbErrorKind::Connect,
            format!(
                "cannot connect to PostgreSQL at {}:{} (database {}, user {}): {}",
                t.host,
                t.port,
                t.database,
                t.user,
                describe(&e)
            ),
        )
    })
}

/// The TLS client for `tls` (native-tls: the system's OpenSSL on Linux, as the LDAP
/// connector's). `require` and `prefer` check no certificate unless an `sslrootcert` is given
/// (libpq's rule); `verify-ca` checks the chain; `verify-full` also the host name.
fn tls_connector(tls: &Tls) -> Result<postgres_native_tls::MakeTlsConnector, String> {
    let mut b = native_tls::TlsConnector::builder();
    let check_chain = match tls.mode {
        SslMode::VerifyCa | SslMode::VerifyFull => true,
        _ => tls.root_cert.is_some(),
    };
    if let Some(path) = &tls.root_cert {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
        let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
            format!(
                "sslrootcert {} is not a PEM certificate: {e}",
                path.display()
            )
        })?;
        b.add_root_certificate(cert);
    }
    b.danger_accept_invalid_certs(!check_chain)
        .danger_accept_invalid_hostnames(tls.mode != SslMode::VerifyFull);
    let connector = b.build().map_err(|e| format!("cannot set up TLS: {e}"))?;
    Ok(postgres_native_tls::MakeTlsConnector::new(connector))
}

/// A parameter in PostgreSQL's text format, accepted for any type. Text borrows the
/// caller's value (no copy per cell).
#[derive(Debug)]
enum TextParam<'a> {
    Null,
    Borrowed(&'a str),
    Owned(String),
}

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let s = match self {
            TextParam::Null => return Ok(IsNull::Yes),
            TextParam::Borrowed(s) => *s,
            TextParam::Owned(s) => s.as_str(),
        };
        out.extend_from_slice(s.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    postgres::types::to_sql_checked!();
}

fn text_params(params: &[Param]) -> Vec<TextParam<'_>> {
    params
        .iter()
        .map(|p| match p {
            Param::Null => TextParam::Null,
            Param::Text(s) => TextParam::Borrowed(s),
            Param::Int(i) => TextParam::Owned(i.to_string()),
            Param::Float(f) => TextParam::Owned(f.to_string()),
            Param::Bool(b) => TextParam::Owned(b.to_string()),
        })
        .collect()
}

/// The server's message (with its detail) or the client's.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        }
    } else {
        let mut s = e.to_string();
        let mut src = e.source();
        while let Some(inner) = src {
            s.push_str(": ");
            s.push_str(&inner.to_string());
            src = inner.source();
        }
        s
    }
}

fn error(e: postgres::Error) -> DbError {
    let kind = match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => DbErrorKind::Duplicate,
        Some(c)
            if *c == SqlState::NOT_NULL_VIOLATION
                || *c == SqlState::CHECK_VIOLATION
                || *c == SqlState::FOREIGN_KEY_VIOLATION
                || c.code().starts_with("22") =>
        {
            DbErrorKind::Constraint
        }
        Some(c) if *c == SqlState::QUERY_CANCELED => DbErrorKind::Timeout,
        Some(c) if *c == SqlState::UNDEFINED_TABLE || *c == SqlState::UNDEFINED_COLUMN => {
            DbErrorKind::Schema
        }
        // Class 08 (connection exception), 57P01-03 (the server shuts down).
        Some(c) if c.code().starts_with("08") || c.code().starts_with("57P") => {
            DbErrorKind::Connect
        }
        Some(_) => DbErrorKind::Other,
        None if e.is_closed() => DbErrorKind::Connect,
        None => DbErrorKind::Connect,
    };
    let msg = describe(&e);
    DbError::new(
        kind,
        if kind == DbErrorKind::Connect {
            format!("lost the connection to PostgreSQL: {msg}")
        } else {
            msg
        },
    )
}

fn kind_of(typname: &str, category: &str) -> ColKind {
    match typname {
        "int2" | "int4" | "int8" => ColKind::Int,
        "float4" | "float8" | "numeric" => ColKind::Float,
        "bool" => ColKind::Bool,
        "uuid" => ColKind::Uuid,
        _ if category == "S" => ColKind::Text,
        _ => ColKind::Other,
    }
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn table_info(&mut self, table: &str) -> Result<TableInfo, DbError> {
        // The name is looked up as written (a quoted identifier), then folded to lower case
        // as PostgreSQL folds unquoted names; `schema.table` names a schema.
        let (schema, name) = match table.split_once('.') {
            Some((s, t)) => (Some(s), t),
            None => (None, table),
        };
        let qualified = |f: &dyn Fn(&str) -> String| match schema {
            Some(s) => format!("{}.{}", quote_ident(&f(s)), quote_ident(&f(name))),
            None => quote_ident(&f(name)),
        };
        let candidates = [
            qualified(&|s| s.to_string()),
            qualified(&|s| s.to_lowercase()),
        ];
        for candidate in candidates {
            let rows = self
                .client
                .query(
                    "SELECT c.oid::regclass::text, a.attname::text, \
                            format_type(a.atttypid, a.atttypmod), ty.typname::text, \
                            ty.typcategory::text \
                     FROM pg_class c \
                     JOIN pg_attribute a ON a.attrelid = c.oid \
                     JOIN pg_type ty ON ty.oid = a.atttypid \
                     WHERE c.oid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                     ORDER BY a.attnum",
                    &[&candidate],
                )
                .map_err(error)?;
            let Some(first) = rows.first() else {
                continue;
            };
            let sql_name: String = first.get(0);
            let columns = rows
                .iter()
                .map(|r| {
                    let typname: String = r.get(3);
                    let category: String = r.get(4);
                    Column {
                        name: r.get(1),
                        sql_type: r.get(2),
                        kind: kind_of(&typname, &category),
                    }
                })
                .collect();
            return Ok(TableInfo { sql_name, columns });
        }
        Err(DbError::new(
            DbErrorKind::Schema,
            format!("the table \"{table}\" does not exist in the database"),
        ))
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Param],
        f: &mut dyn FnMut(Row) -> ControlFlow<()>,
    ) -> Result<(), DbError> {
        let params = text_params(params);
        let statement = self.prepared(sql)?;
        let mut rows = self
            .client
            .query_raw(&statement, params.iter().map(|p| p as &dyn ToSql))
            .map_err(error)?;
        while let Some(row) = rows.next().map_err(error)? {
            let mut cells = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let text: Option<String> = row.try_get(i).map_err(error)?;
                let cell = match text {
                    None => None,
                    Some(t) => Some(serde_json::from_str::<Value>(&t).map_err(|e| {
                        DbError::new(
                            DbErrorKind::Other,
                            format!("PostgreSQL returned a value that is not JSON: {e}"),
                        )
                    })?),
                };
                cells.push(cell);
            }
            if f(cells).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64, DbError> {
        let params = text_params(params);
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let statement = self.prepared(sql)?;
        self.client.execute(&statement, &refs).map_err(error)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.client.batch_execute(sql).map_err(error)
    }

    fn is_broken(&self) -> bool {
        self.client.is_closed()
    }
}
