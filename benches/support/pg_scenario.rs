//! The `pg-first-load` scenario: `managed/user` → a PostgreSQL table through the database
//! table connector, on an empty table, against its own floor: the same rows written by the
//! benchmark with multi-row INSERTs of the engine's batch size (1,000) over one connection.
//! The server is started by the benchmark itself (see tests/it/pg.rs).

use std::time::Instant;

use serde_json::{json, Value};

use super::pg::Pg;
use super::{recon, row, write_targets, Bench, COLUMNS};

const BATCH: usize = 1000;

fn create_table(pg: &Pg) {
    let cols: Vec<String> = COLUMNS
        .iter()
        .skip(1)
        .map(|c| {
            if *c == "userName" {
                format!("\"{c}\" text PRIMARY KEY")
            } else {
                format!("\"{c}\" text")
            }
        })
        .collect();
    pg.exec(&format!(
        "DROP TABLE IF EXISTS people; CREATE TABLE people ({});",
        cols.join(", ")
    ));
}

/// The floor: `n` rows in multi-row INSERTs of [`BATCH`] rows, one connection, autocommit.
fn floor(pg: &Pg, n: usize) -> f64 {
    let cols: Vec<&str> = COLUMNS.iter().skip(1).copied().collect();
    let names: Vec<String> = cols.iter().map(|c| format!("\"{c}\"")).collect();
    let mut client = pg.client();
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let rows: Vec<Vec<String>> = (i..end).map(|k| row(k, 0)[1..].to_vec()).collect();
        let mut placeholders = Vec::with_capacity(rows.len());
        for r in 0..rows.len() {
            let p: Vec<String> = (0..cols.len())
                .map(|c| format!("${}", r * cols.len() + c + 1))
                .collect();
            placeholders.push(format!("({})", p.join(", ")));
        }
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = rows
            .iter()
            .flat_map(|r| r.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)))
            .collect();
        client
            .execute(
                &format!(
                    "INSERT INTO people ({}) VALUES {}",
                    names.join(", "),
                    placeholders.join(", ")
                ),
                &params,
            )
            .expect("a floor batch");
        i = end;
    }
    started.elapsed().as_secs_f64()
}

fn config(threads: usize) -> String {
    let props: String = COLUMNS
        .iter()
        .skip(1)
        .map(|c| format!("  {{ source = \"{c}\", target = \"{c}\" }},\n"))
        .collect();
    format!(
        r#"
idm_conf_dir = "conf"

[server]
listen = "127.0.0.1:0"
data_dir = "db"

[managed.user]
indexed = ["userName"]

[[users]]
username = "bench"
password = "bench"

[[mappings]]
name = "bench"
source = "managed/user"
target = "system/pgbench/account"
taskThreads = {threads}
properties = [
{props}]
policies = [ {{ situation = "ABSENT", action = "CREATE" }} ]
"#
    )
}

fn provisioner(pg: &Pg) -> String {
    json!({
        "name": "pgbench",
        "connectorRef": {"connectorName":
            "org.identityconnectors.databasetable.DatabaseTableConnector"},
        "configurationProperties": {"url": pg.url(), "user": "postgres", "table": "people",
                                    "keyColumn": "userName"},
        "objectTypes": {"account": {"nativeType": "__ACCOUNT__"}}
    })
    .to_string()
}

pub fn first_load(b: &Bench, n: usize, threads: usize) -> (f64, Value) {
    let pg = Pg::start().expect("PostgreSQL is installed (the parent checked)");
    create_table(&pg);
    let floor_secs = floor(&pg, n);
    create_table(&pg);
    std::fs::create_dir_all(b.dir.join("conf")).expect("conf folder");
    std::fs::write(
        b.dir.join("conf/provisioner.openicf-pgbench.json"),
        provisioner(&pg),
    )
    .expect("write the provisioner");
    let app = b.app(&config(threads));
    write_targets(&app.store, n, 0, false);
    let (secs, s) = recon(&app, false);
    let rows: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM people", &[])
        .expect("count the rows")
        .get(0);
    assert_eq!(rows, n as i64, "every source made a row: {s}");
    (
        secs,
        json!({
            "pg_floor_seconds": super::round3(floor_secs),
            "x_pg_floor": super::round3(secs / floor_secs.max(1e-9)),
            "created": s["progress"]["target"]["created"],
        }),
    )
}
