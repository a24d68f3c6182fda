//! The `pg-repo` scenario: recond's own repository on PostgreSQL (`[storage] backend =
//! "postgres"`, one node): a first load of `managed/user` from the CSV source, then a steady
//! run over the same data (every source CONFIRMED, nothing to change) in the same process,
//! against a PostgreSQL floor: the same objects, index entries and links written through
//! `Store` on PostgreSQL with no reconciliation logic. The server is started by the benchmark
//! itself (see tests/it/pg.rs), with `fsync=off` as the tests run it.

use std::time::Instant;

use recond::storage::{Repository, Store, StoreOptions};
use serde_json::{json, Value};

use super::pg::Pg;
use super::{config_text, recon_with, round3, situation, write_csv, write_targets, Bench};

pub fn run(b: &Bench, n: usize, threads: usize) -> (f64, Value) {
    let pg = Pg::start().expect("PostgreSQL (the parent checked it is installed)");
    pg.exec("CREATE DATABASE floor");
    pg.exec("CREATE DATABASE repo");
    let url = |db: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            pg.port
        )
    };
    let store = Store::open(
        &b.dir.join("unused"),
        &StoreOptions {
            repository: Repository::Postgres {
                url: url("floor"),
                pool_size: 8,
            },
            ..StoreOptions::default()
        },
    )
    .expect("open the PostgreSQL floor");
    let started = Instant::now();
    write_targets(&store, n, 0, true);
    let floor = started.elapsed().as_secs_f64();
    drop(store);

    write_csv(&b.dir.join("hr.csv"), n, None, None);
    let text = format!(
        "{}\n[storage]\nbackend = \"postgres\"\nurl = \"{}\"\n",
        config_text("pg-repo", threads, false, None),
        url("repo")
    );
    let app = b.app(&text);
    let (first, s) = recon_with(&app, false, None);
    assert_eq!(situation(&s, "ABSENT"), n as u64, "{s}");
    let (steady, s) = recon_with(&app, false, None);
    assert_eq!(situation(&s, "CONFIRMED"), n as u64, "{s}");
    (
        first,
        json!({
            "pg_floor_seconds": round3(floor),
            "x_pg_floor": round3(first / floor),
            "steady_seconds": round3(steady),
            "steady_x_pg_floor": round3(steady / floor),
        }),
    )
}
