//! LDAP scenarios of the benchmark (contract §5), each against its own slapd started by the
//! tests' helper (`tests/it/slapd.rs`):
//!
//! * `ldap-source`: LDAP → managed first load of N entries. The same child first times the
//!   floor of reading the same entries with a paged search alone (one connection, the
//!   connector's attributes); the figure is `max(read floor, store floor) / run`.
//! * `ldap-target`: managed → LDAP first load of N users. The same child first times the
//!   directory's own add rate (the same entries added over one connection with nothing else,
//!   into a fresh slapd); the figure is `add floor / run`.
//!
//! Outside CI a machine without slapd skips them with a message (the helper says so).

use std::collections::HashSet;
use std::time::Instant;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, Scope};
use serde_json::{json, Map, Value};

#[path = "../../tests/it/slapd.rs"]
#[allow(dead_code)]
mod slapd;

use slapd::{Slapd, ROOT_DN, ROOT_PW, SUFFIX};

use super::{app_in, recon, round3, row, situation, Bench};

pub const SCENARIOS: &[&str] = &["ldap-source", "ldap-target"];

const PAGE: i32 = 1000;
const ATTRS: &[&str] = &[
    "entryUUID",
    "uid",
    "givenName",
    "sn",
    "cn",
    "mail",
    "telephoneNumber",
    "street",
    "l",
    "postalCode",
    "departmentNumber",
    "title",
];

/// The attributes of entry `i`, from the benchmark's usual row.
fn attrs(i: usize) -> Vec<(&'static str, String)> {
    let r = row(i, 0);
    vec![
        ("uid", r[0].clone()),
        ("givenName", r[2].clone()),
        ("sn", r[3].clone()),
        ("cn", format!("{} {}", r[2], r[3])),
        ("mail", r[4].clone()),
        ("telephoneNumber", r[5].clone()),
        ("street", r[6].clone()),
        ("l", r[7].clone()),
        ("postalCode", r[8].clone()),
        ("departmentNumber", r[9].clone()),
        ("title", r[10].clone()),
    ]
}

fn dn(i: usize) -> String {
    format!("uid={},ou=people,{SUFFIX}", row(i, 0)[0])
}

fn ldif(n: usize) -> String {
    let mut out = String::with_capacity(n * 400);
    for i in 0..n {
        out.push_str(&format!(
            "dn: {}\nobjectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
             objectClass: inetOrgPerson\n",
            dn(i)
        ));
        for (k, v) in attrs(i) {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
    }
    out
}

fn provisioner(port: u16) -> String {
    let props: Map<String, Value> = ATTRS
        .iter()
        .skip(1)
        .map(|a| (a.to_string(), json!({"type": "string", "nativeName": a})))
        .chain([(
            "dn".to_string(),
            json!({"type": "string", "nativeName": "__NAME__"}),
        )])
        .collect();
    json!({
        "name": "ldap",
        "connectorRef": {"connectorName": "org.identityconnectors.ldap.LdapConnector"},
        "configurationProperties": {
            "host": "127.0.0.1", "port": port, "principal": ROOT_DN, "credentials": ROOT_PW,
            "baseContexts": [SUFFIX], "pageSize": PAGE
        },
        "objectTypes": {"account": {"nativeType": "__ACCOUNT__", "properties": props}}
    })
    .to_string()
}

fn config(threads: usize, source_is_ldap: bool) -> String {
    let (source, target) = if source_is_ldap {
        ("system/ldap/account", "managed/user")
    } else {
        ("managed/user", "system/ldap/account")
    };
    let mut props: String = ATTRS
        .iter()
        .skip(1)
        .map(|a| format!("  {{ source = \"{a}\", target = \"{a}\" }},\n"))
        .collect();
    if source_is_ldap {
        props.push_str("  { source = \"uid\", target = \"_id\" },\n");
    } else {
        props.push_str("  { source = \"dn\", target = \"dn\" },\n");
    }
    format!(
        r#"
idm_conf_dir = "conf"

[server]
listen = "127.0.0.1:0"
data_dir = "db"

[storage]
cache_capacity_mb = 256
flush_every_ms = 1000

[managed.user]
indexed = ["uid"]

[[users]]
username = "bench"
password = "bench"

[[mappings]]
name = "bench"
source = "{source}"
target = "{target}"
taskThreads = {threads}
properties = [
{props}]
policies = [ {{ situation = "ABSENT", action = "CREATE" }} ]
"#
    )
}

/// A current-thread runtime for the floors' direct ldap3 calls.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the floor")
}

/// Seconds to read every entry with one paged search.
fn read_floor(url: &str, n: usize) -> f64 {
    rt().block_on(async {
        let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
        ldap3::drive!(conn);
        ldap.simple_bind(ROOT_DN, ROOT_PW)
            .await
            .and_then(|r| r.success())
            .expect("bind");
        let started = Instant::now();
        let adapters: Vec<Box<dyn Adapter<'_, &str, Vec<&str>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE)),
        ];
        let mut s = ldap
            .streaming_search_with(
                adapters,
                SUFFIX,
                Scope::Subtree,
                "(objectClass=inetOrgPerson)",
                ATTRS.to_vec(),
            )
            .await
            .expect("search");
        let mut count = 0;
        while let Some(e) = s.next().await.expect("an entry") {
            let e = ldap3::SearchEntry::construct(e);
            count += usize::from(!e.dn.is_empty());
        }
        s.finish().await.success().expect("search result");
        assert_eq!(count, n, "the floor reads every entry");
        started.elapsed().as_secs_f64()
    })
}

/// Seconds to add `n` entries over one connection, one after another.
fn add_floor(url: &str, n: usize) -> f64 {
    rt().block_on(async {
        let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
        ldap3::drive!(conn);
        ldap.simple_bind(ROOT_DN, ROOT_PW)
            .await
            .and_then(|r| r.success())
            .expect("bind");
        let started = Instant::now();
        for i in 0..n {
            let mut a: Vec<(String, HashSet<String>)> = vec![(
                "objectClass".into(),
                ["top", "person", "organizationalPerson", "inetOrgPerson"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            )];
            a.extend(
                attrs(i)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), [v].into_iter().collect())),
            );
            ldap.add(&dn(i), a)
                .await
                .and_then(|r| r.success())
                .expect("add");
        }
        started.elapsed().as_secs_f64()
    })
}

/// Runs an LDAP scenario; None when slapd is absent (outside CI).
pub fn run(name: &str, n: usize, threads: usize, store_floor: Option<f64>) -> Option<(f64, Value)> {
    let b = Bench::new(name);
    match name {
        "ldap-source" => {
            let ldap = Slapd::start(&ldif(n))?;
            let floor = read_floor(&ldap.url(), n);
            write_conf(&b, ldap.port);
            let app = app_in(&b.dir, &config(threads, true));
            let (secs, s) = recon(&app, false);
            assert_eq!(situation(&s, "ABSENT"), n as u64, "{s}");
            let slower = store_floor.map_or(floor, |f| f.max(floor));
            Some((
                secs,
                json!({"ldap_read_floor_seconds": round3(floor),
                       "vs_slower_floor": round3(slower / secs)}),
            ))
        }
        "ldap-target" => {
            let floor = {
                let fresh = Slapd::start("")?;
                add_floor(&fresh.url(), n)
            };
            let ldap = Slapd::start("")?;
            write_conf(&b, ldap.port);
            let app = app_in(&b.dir, &config(threads, false));
            write_users(&app.store, n);
            let (secs, s) = recon(&app, false);
            assert_eq!(situation(&s, "ABSENT"), n as u64, "{s}");
            Some((
                secs,
                json!({"ldap_add_floor_seconds": round3(floor),
                       "vs_add_floor": round3(floor / secs)}),
            ))
        }
        other => panic!("unknown LDAP scenario {other}"),
    }
}

fn write_conf(b: &Bench, port: u16) {
    let conf = b.dir.join("conf");
    std::fs::create_dir_all(&conf).expect("mkdir conf");
    std::fs::write(
        conf.join("provisioner.openicf-ldap.json"),
        provisioner(port),
    )
    .expect("write the provisioner");
}

/// `n` managed users carrying their target dn, written through the storage layer.
fn write_users(store: &recond::storage::Store, n: usize) {
    let mut batch = recond::storage::DataBatch::new();
    for i in 0..n {
        let mut body: Map<String, Value> = attrs(i)
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        body.insert("dn".into(), Value::String(dn(i)));
        let id = format!("m{i:08}");
        batch
            .put_object("managed/user", &id, 1, &body, &[], &[])
            .expect("stage a user");
        if batch.len() >= 1000 {
            store
                .apply(std::mem::take(&mut batch))
                .expect("write a batch");
        }
    }
    store.apply(batch).expect("write a batch");
}
