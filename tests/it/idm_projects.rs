//! IDM project folders run as they are (contract §6), through the real binary, with look-alike
//! projects written for recond (tests/fixtures/idm/...): the shape of IDM's getting-started
//! sample (a CSV provisioner to a system whose XML provisioner recon.toml replaces with a CSV
//! table, keeping its object model) and a sample1-like flow whose scripts use
//! `require('lodash')`, project modules, `identityServer.getProperty`,
//! `openidm.read('config/...')`, `mappingConfig` and a CSV provisioner with
//! headerUid/headerName, its own delimiter, quote and multi-valued delimiter; a
//! sync-with-csv-like project (a CSV provisioner with IDM's `"a", "b"` quoting into a
//! managed.json user with defaults, an encrypted password and `authzRoles` relationships made
//! by a `require('lib/lodash')` transform, correlated by `_queryId: for-userName`); and a
//! managed-to-directory project for boot.properties / environment substitution,
//! `openidm.decrypt`, `console` and `onRetrieve`.

use serde_json::json;

use crate::helpers::*;

const HR_TO_LAB: &[(&str, &str)] = &[
    (
        "project/conf/provisioner.openicf-hr.json",
        include_str!("../fixtures/idm/hr_to_eng/conf/provisioner.openicf-hr.json"),
    ),
    (
        "project/conf/provisioner.openicf-lab.json",
        include_str!("../fixtures/idm/hr_to_eng/conf/provisioner.openicf-lab.json"),
    ),
    (
        "project/conf/sync.json",
        include_str!("../fixtures/idm/hr_to_eng/conf/sync.json"),
    ),
    (
        "project/data/people.csv",
        include_str!("../fixtures/idm/hr_to_eng/data/people.csv"),
    ),
    (
        "project/data/lab.csv",
        include_str!("../fixtures/idm/hr_to_eng/data/lab.csv"),
    ),
];

const STAFF: &[(&str, &str)] = &[
    (
        "project/conf/provisioner.openicf-staff.json",
        include_str!("../fixtures/idm/staff_to_users/conf/provisioner.openicf-staff.json"),
    ),
    (
        "project/conf/sync.json",
        include_str!("../fixtures/idm/staff_to_users/conf/sync.json"),
    ),
    (
        "project/conf/staff-settings.json",
        include_str!("../fixtures/idm/staff_to_users/conf/staff-settings.json"),
    ),
    (
        "project/script/correlateByLogin.js",
        include_str!("../fixtures/idm/staff_to_users/script/correlateByLogin.js"),
    ),
    (
        "project/script/teamsToGroups.js",
        include_str!("../fixtures/idm/staff_to_users/script/teamsToGroups.js"),
    ),
    (
        "project/script/onCreateUser.js",
        include_str!("../fixtures/idm/staff_to_users/script/onCreateUser.js"),
    ),
    (
        "project/script/lib/naming.js",
        include_str!("../fixtures/idm/staff_to_users/script/lib/naming.js"),
    ),
    (
        "project/data/staff.csv",
        include_str!("../fixtures/idm/staff_to_users/data/staff.csv"),
    ),
];

const CONTRACTORS: &[(&str, &str)] = &[
    (
        "project/conf/provisioner.openicf-contractors.json",
        include_str!("../fixtures/idm/csv_to_users/conf/provisioner.openicf-contractors.json"),
    ),
    (
        "project/conf/sync.json",
        include_str!("../fixtures/idm/csv_to_users/conf/sync.json"),
    ),
    (
        "project/conf/managed.json",
        include_str!("../fixtures/idm/csv_to_users/conf/managed.json"),
    ),
    (
        "project/data/contractors.csv",
        include_str!("../fixtures/idm/csv_to_users/data/contractors.csv"),
    ),
];

fn read_file(s: &Server, rel: &str) -> String {
    std::fs::read_to_string(s.path(rel)).expect("read data file")
}

#[test]
fn getting_started_shape_csv_to_a_replaced_xml_system() {
    let config = r#"idm_conf_dir = "project/conf"

[system.lab.account]
connector = "csv"
file = "project/data/lab.csv"
id_column = "uid"
"#;
    let s = Server::start(config, HR_TO_LAB);

    // The CSV provisioner: _id from headerUid (default uid), __NAME__ as `uid` (no headerName:
    // the uid column), declared properties only.
    let hr = s.get("/openidm/system/hr/account/GHOPPER");
    assert_eq!(hr.status, 200, "{}", hr.body);
    assert_eq!(
        hr.body,
        json!({"_id": "GHOPPER", "_rev": hr.body["_rev"], "uid": "GHOPPER", "givenName": "Grace",
               "surname": "Hopper", "mail": "grace@lab.example", "badge": "400202"})
    );
    // The replaced XML system keeps its object model: arrays are arrays, the write-only
    // password and the undeclared `notes` column are not returned.
    let lab = s.get("/openidm/system/lab/account/ghopper");
    assert_eq!(
        lab.body["roles"],
        json!(["lab-admin", "lab-user"]),
        "{}",
        lab.body
    );
    assert_eq!(lab.body["email"], json!(["grace@lab.example"]));
    assert!(lab.body.get("notes").is_none(), "{}", lab.body);

    // Documented first run: the two people already in the lab are found and updated, the
    // third is created.
    let run = s.run("People_Lab", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(counts(&run), map(&[("FOUND", 2), ("ABSENT", 1)]), "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    let all = s.query("/openidm/system/lab/account", "true");
    assert_eq!(all["resultCount"], 3, "{all}");
    let alan = s.query(
        "/openidm/system/lab/account",
        "name eq \"alan@lab.example\"",
    );
    let a = &alan["result"][0];
    assert_eq!(
        (&a["lastname"], &a["roles"], &a["phone"], &a["email"]),
        (
            &json!("Turing"),
            &json!(["lab-user"]),
            &json!("none"),
            &json!(["alan@lab.example"])
        ),
        "{alan}"
    );
    let ada = s.get("/openidm/system/lab/account/alovelace").body;
    assert_eq!(ada["roles"], json!(["lab-admin", "lab-user"]), "{ada}");
    let text = read_file(&s, "project/data/lab.csv");
    assert!(
        text.starts_with("uid,name,firstname,lastname,email,phone,roles,notes\n"),
        "writes fill the configured columns, never add new ones: {text}"
    );
    assert!(
        text.contains("first in the lab") && text.contains("kept by recond"),
        "columns outside the model keep their cells: {text}"
    );

    // Second run: everything is linked and confirmed.
    let run = s.run("People_Lab", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");

    // A person leaves HR: the lab account goes too.
    let people = read_file(&s, "project/data/people.csv");
    let kept: Vec<&str> = people.lines().filter(|l| !l.contains("ATURING")).collect();
    s.write("project/data/people.csv", &(kept.join("\n") + "\n"));
    let run = s.run("People_Lab", "");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 2), ("SOURCE_MISSING", 1)]),
        "{run}"
    );
    assert_eq!(
        s.query("/openidm/system/lab/account", "true")["resultCount"],
        2
    );
}

#[test]
fn sample1_like_scripts_with_lodash_properties_config_and_modules() {
    let config = r#"idm_conf_dir = "project/conf"

[idm_properties]
"company.domain" = "example.org"

[managed.user]
indexed = ["userName"]
"#;
    let s = Server::start(config, STAFF);

    // The CSV provisioner with headerUid/headerName, ';' fields, "'" quotes and '|' lists.
    let m = s.get("/openidm/system/staff/account/s-100");
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(
        m.body,
        json!({"_id": "s-100", "_rev": m.body["_rev"], "login": "mcurie", "givenName": "Marie",
               "sn": "Curie", "teams": ["Physics", "Chemistry"], "active": true, "level": 3})
    );

    let run = s.run("staffAccounts_managedUser", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(
        counts(&run),
        map(&[("ABSENT", 3), ("SOURCE_IGNORED", 1)]),
        "{run}"
    );
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    let users = s.query("/openidm/managed/user", "userName eq \"lmeitner\"");
    let u = &users["result"][0];
    assert_eq!(
        (
            &u["mail"],
            &u["groups"],
            &u["grade"],
            &u["displayName"],
            &u["accountStatus"],
            &u["source"]
        ),
        (
            &json!("lmeitner@example.org"),
            &json!(["grp-fission", "grp-physics"]),
            &json!("G4"),
            &json!("Lise Meitner"),
            &json!("active"),
            &json!("system/staff/account")
        ),
        "{users}"
    );
    assert_eq!(
        s.query("/openidm/managed/user", "true")["resultCount"],
        3,
        "the inactive account is not synchronized"
    );

    // Second run: the script correlation and the links agree.
    let run = s.run("staffAccounts_managedUser", "");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 3), ("SOURCE_IGNORED", 1)]),
        "{run}"
    );

    // Writes through the object model keep the file's dialect and its other columns.
    let r = s.put(
        "/openidm/system/staff/account/s-200",
        &json!({"login": "pcurie", "givenName": "Pierre", "sn": "Curie",
                "teams": ["Physics", "Radio; activity"], "active": false, "level": 5,
                "nickname": "not in the model"}),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["teams"], json!(["Physics", "Radio; activity"]));
    assert_eq!(r.body["active"], json!(false));
    let text = read_file(&s, "project/data/staff.csv");
    assert!(
        text.contains("s-200;pcurie;Pierre;Curie;'Physics|Radio; activity';false;5;pw2;B12\n"),
        "{text}"
    );
    assert!(
        text.starts_with("staffId;login;givenName;familyName;teams;active;level;secret;room\n"),
        "{text}"
    );
}

/// A managed-to-directory project: `&{...}` from conf/boot/boot.properties and from the
/// environment (IDM's `OPENIDM_...` form), `openidm.decrypt` of a managed password in a
/// transform, `console.log` reaching the server log, and `onRetrieve` on queries.
const BOOT_MANAGED: &str = r#"{"objects": [
  {"name": "user",
   "onRetrieve": {"type": "text/javascript", "source": "object.retrieved = true;"},
   "schema": {"properties": {
     "userName": {"type": "string"},
     "password": {"type": "string", "encryption": {"purpose": "idm.password.encryption"},
                  "scope": "private"}}}}
]}"#;

const BOOT_SYNC: &str = r#"{"mappings": [{
  "name": "managedUser_directory",
  "source": "managed/user",
  "target": "system/directory/account",
  "enableSync": false,
  "properties": [
    {"source": "userName", "target": "uid"},
    {"source": "userName", "target": "dn", "transform": {"type": "text/javascript",
      "source": "console.log('dn for', source); 'uid=' + source + ',&{directory.base}'"}},
    {"source": "password", "target": "secret", "transform": {"type": "text/javascript",
      "source": "openidm.isEncrypted(source) ? openidm.decrypt(source) : 'was not encrypted'"}},
    {"source": "companyName", "target": "company", "default": "&{company.name}"}
  ],
  "policies": [{"situation": "ABSENT", "action": "CREATE"}]
}]}"#;

#[test]
fn boot_properties_environment_decrypt_console_and_on_retrieve() {
    let config = r#"idm_conf_dir = "project/conf"

[system.directory.account]
connector = "store"
"#;
    let s = Server::start_with_env(
        config,
        &[
            ("project/conf/managed.json", BOOT_MANAGED),
            ("project/conf/sync.json", BOOT_SYNC),
            (
                "project/conf/boot/boot.properties",
                "# boot properties of the look-alike project\ndirectory.base=ou=people,dc=example\n",
            ),
        ],
        &[("OPENIDM_COMPANY_NAME", "Acme Labs")],
    );
    let r = s.put(
        "/openidm/managed/user/u1",
        &json!({"userName": "rita", "password": "Clear-Pass-77"}),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let q = s.query("/openidm/managed/user", "true");
    assert_eq!(q["result"][0]["retrieved"], json!(true), "onRetrieve: {q}");
    let run = s.run("managedUser_directory", "");
    assert_eq!(run["state"], "SUCCESS", "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    let d = &s.query("/openidm/system/directory/account", "uid eq \"rita\"")["result"][0];
    assert_eq!(d["dn"], json!("uid=rita,ou=people,dc=example"), "{d}");
    assert_eq!(d["secret"], json!("Clear-Pass-77"), "{d}");
    assert_eq!(d["company"], json!("Acme Labs"), "{d}");
    let log = s.log();
    assert!(
        log.contains("dn for rita"),
        "console.log reaches the log:\n{log}"
    );
}

/// A `&{name}` that nothing resolves (here: no boot.properties) is a startup error naming
/// the file and the name.
#[test]
fn an_unresolved_property_is_a_startup_error_naming_file_and_key() {
    let dir = TempDir::new("idm-unresolved");
    std::fs::create_dir_all(dir.0.join("project/conf")).expect("mkdir");
    std::fs::write(dir.0.join("project/conf/sync.json"), BOOT_SYNC).expect("write");
    std::fs::write(dir.0.join("project/conf/managed.json"), BOOT_MANAGED).expect("write");
    std::fs::write(
        dir.0.join("recon.toml"),
        format!(
            "idm_conf_dir = \"project/conf\"\n\n[system.directory.account]\nconnector = \"store\"\n{USERS}"
        ),
    )
    .expect("write");
    let (code, out) = run_binary(
        &["--config", "recon.toml", "--listen", "127.0.0.1:0"],
        &dir.0,
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("sync.json") && out.contains("directory.base"),
        "{out}"
    );
}

/// The steps of IDM's sync-with-csv sample, on a look-alike project: a first reconciliation
/// creates the managed users (defaults applied, password encrypted and never returned, roles
/// as relationships), a second one changes nothing, a changed row updates its user only, and
/// a removed row deletes its user.
#[test]
fn sync_with_csv_shape_csv_into_managed_users() {
    let mut s = Server::start(r#"idm_conf_dir = "project/conf""#, CONTRACTORS);
    let mapping = "systemContractorsAccounts_managedUser";

    let first = s.run(mapping, "");
    assert_eq!(first["state"], "SUCCESS", "{first}");
    assert_eq!(counts(&first), map(&[("ABSENT", 2)]), "{first}");
    assert_eq!(first["statusSummary"]["FAILURE"], 0, "{first}");
    let users = s.query("/openidm/managed/user", "true");
    assert_eq!(users["resultCount"], 2, "{users}");
    let ada = s.get("/openidm/managed/user/ada").body;
    assert_eq!(ada["userName"], "ada@contract.example", "{ada}");
    assert_eq!(ada["givenName"], "Ada");
    assert_eq!(ada["sn"], "Byron");
    assert_eq!(ada["telephoneNumber"], "555-0101");
    assert_eq!(
        ada["accountStatus"], "active",
        "managed.json default: {ada}"
    );
    assert!(ada.get("password").is_none(), "private: {ada}");
    assert_eq!(ada["_rev"], "1");
    let roles = s.get("/openidm/managed/user/linus?_fields=authzRoles").body;
    let refs: Vec<&str> = roles["authzRoles"]
        .as_array()
        .expect("authzRoles")
        .iter()
        .filter_map(|r| r["_ref"].as_str())
        .collect();
    assert_eq!(
        refs,
        vec![
            "internal/role/openidm-admin",
            "internal/role/openidm-authorized"
        ],
        "{roles}"
    );
    // The password is stored encrypted, never in clear.
    let stored = read_dir_text(&s.path("data"));
    assert!(!stored.contains("Welcome-2026"), "clear password on disk");

    let second = s.run(mapping, "");
    assert_eq!(counts(&second), map(&[("CONFIRMED", 2)]), "{second}");
    assert_eq!(s.get("/openidm/managed/user/ada").body["_rev"], "1");

    let csv = read_file(&s, "project/data/contractors.csv").replace("555-0101", "555-0199");
    std::fs::write(s.path("project/data/contractors.csv"), &csv).expect("edit csv");
    let third = s.run(mapping, "");
    assert_eq!(counts(&third), map(&[("CONFIRMED", 2)]), "{third}");
    let ada = s.get("/openidm/managed/user/ada").body;
    assert_eq!(ada["telephoneNumber"], "555-0199", "{ada}");
    assert_eq!(ada["_rev"], "2", "{ada}");
    assert_eq!(s.get("/openidm/managed/user/linus").body["_rev"], "1");

    let csv: String = read_file(&s, "project/data/contractors.csv")
        .lines()
        .filter(|l| !l.contains("\"linus\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(s.path("project/data/contractors.csv"), &csv).expect("edit csv");
    let fourth = s.run(mapping, "");
    assert_eq!(
        counts(&fourth),
        map(&[("CONFIRMED", 1), ("SOURCE_MISSING", 1)]),
        "{fourth}"
    );
    assert_eq!(s.get("/openidm/managed/user/linus").status, 404);
    assert_eq!(s.restart(), Some(0));
    assert_eq!(s.query("/openidm/managed/user", "true")["resultCount"], 1);
}

/// Every file under `dir`, read lossily (binary store files included) and joined.
fn read_dir_text(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push_str(&String::from_utf8_lossy(&b));
            }
        }
    }
    out
}
