//! The LDAP connector's write path against a real slapd: writes answer the entry through the
//! post-read control (no read-back search), the read-back a directory without it needs, and
//! batched writes (`write_batch`), whose entries fail alone and whose parents go first.

use serde_json::{json, Value};

use crate::helpers::*;
use crate::ldap::{managed_to_ldap, provisioner_json, server_with, user, PROVISIONER};
use crate::slapd::{Slapd, SUFFIX};
use recond::connectors::ldap::config::TypeConfig;
use recond::connectors::ldap::LdapSet;
use recond::objects::{ObjectErrorKind, ObjectSet, WriteOp};

/// The accounts set of [`PROVISIONER`] with `uidAttribute` replaced, post-read on or off.
fn accounts(ldap: &Slapd, uid_attribute: &str, post_read: bool) -> LdapSet {
    let p = provisioner_json(ldap, uid_attribute);
    let p = recond::idm::Provisioner::parse(
        std::path::Path::new("provisioner.openicf-ldap.json"),
        p,
        "ldap",
    )
    .expect("provisioner");
    let cfg = TypeConfig::from_provisioner(&p, "account").expect("account config");
    LdapSet::new("system/ldap/account", cfg).with_post_read(post_read)
}

fn account(uid: &str) -> Value {
    json!({"dn": format!("uid={uid},ou=people,{SUFFIX}"), "uid": uid, "sn": "S", "cn": "C S"})
}

/// The entryUUID of `uid=<uid>` as slapd's own tools read it.
fn entry_uuid(ldap: &Slapd, uid: &str) -> String {
    let out = ldap.search(&format!("(uid={uid})"), &["entryUUID"]);
    out.lines()
        .find_map(|l| l.strip_prefix("entryUUID: "))
        .unwrap_or_else(|| panic!("no entryUUID for {uid}: {out}"))
        .to_string()
}

/// Base-scope searches of people entries in slapd's log: the read-backs.
fn read_backs(ldap: &Slapd) -> usize {
    ldap.log()
        .lines()
        .filter(|l| l.contains(" SRCH base=\"uid=") && l.contains("scope=0"))
        .count()
}

#[test]
fn writes_answer_the_entry_through_post_read_or_read_it_back() {
    let Some(ldap) = Slapd::start_logged("") else {
        return;
    };
    for post_read in [true, false] {
        let set = accounts(&ldap, "entryUUID", post_read);
        let uid = format!("pr{post_read}");
        let before = read_backs(&ldap);
        let created = set.create(None, account(&uid)).expect("create");
        // The directory's own entryUUID is the _id, with the attributes as written.
        assert_eq!(
            created["_id"],
            entry_uuid(&ldap, &uid).as_str(),
            "{created}"
        );
        assert_eq!(created["dn"], format!("uid={uid},ou=people,{SUFFIX}"));
        assert_eq!(created["cn"], "C S");
        assert_eq!(created["ldapGroups"], json!([]), "{created}");
        // A modify and a rename answer the entry after them too.
        let id = created["_id"].as_str().expect("id").to_string();
        let (updated, _) = set
            .put(&id, json!({"sn": "T"}), None, false)
            .expect("update");
        assert_eq!(updated["sn"], "T");
        let renamed_dn = format!("uid={uid}x,ou=people,{SUFFIX}");
        let (renamed, _) = set
            .put(&id, json!({"dn": renamed_dn}), None, false)
            .expect("rename");
        assert_eq!(renamed["dn"], renamed_dn.as_str());
        assert_eq!(renamed["_id"], id.as_str());
        assert_eq!(renamed["uid"], format!("{uid}x"), "the new RDN value");
        let searched = read_backs(&ldap) - before;
        if post_read {
            assert_eq!(searched, 0, "post-read: no read-back: {}", ldap.log());
        } else {
            // A directory that answers no entry: each write is read back at its dn.
            assert_eq!(searched, 3, "{}", ldap.log());
        }
    }
}

#[test]
fn managed_to_ldap_creates_link_through_post_read() {
    let Some(ldap) = Slapd::start_logged("") else {
        return;
    };
    let s = server_with(
        ldap.port,
        PROVISIONER,
        &[managed_to_ldap("managedUser_systemLdapAccounts", "")],
        &[],
    );
    for i in 1..=3 {
        user(
            &s,
            &format!("m{i}"),
            json!({"userName": format!("user{i}"), "sn": "S", "givenName": "G"}),
        );
    }
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(counts(&run), map(&[("ABSENT", 3)]), "{run}");
    assert_eq!(run["statusSummary"]["FAILURE"], 0, "{run}");
    assert_eq!(read_backs(&ldap), 0, "no read-back search: {}", ldap.log());
    // Linked to the directory's entryUUIDs: the next run confirms each pair.
    let links = s.query("/openidm/repo/link", "true");
    for i in 1..=3 {
        let uuid = entry_uuid(&ldap, &format!("user{i}"));
        assert!(links.to_string().contains(&uuid), "user{i} {uuid}: {links}");
    }
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(counts(&run), map(&[("CONFIRMED", 3)]), "{run}");
}

#[test]
fn a_batch_fails_each_refused_entry_alone_with_its_result_code() {
    let Some(ldap) = Slapd::start("") else {
        return;
    };
    let set = accounts(&ldap, "uid", true);
    assert!(set.batches_writes());
    // `uid` is written by the add, so its _id is known before: a batched create.
    assert_eq!(
        set.planned_id(None, &account("a")).as_deref(),
        Some("a"),
        "the uid the add writes"
    );
    assert_eq!(
        accounts(&ldap, "entryUUID", true).planned_id(None, &account("a")),
        None
    );
    let mut bad = account("b");
    // displayName is SINGLE-VALUE in inetOrgPerson: two values are a constraint violation.
    bad["displayName"] = json!(["One", "Two"]);
    let ops: Vec<WriteOp> = [account("a"), bad, account("c"), account("d")]
        .into_iter()
        .map(|body| WriteOp::Create { id: None, body })
        .chain([WriteOp::Create {
            id: None,
            // A parent that does not exist.
            body: json!({"dn": "uid=e,ou=nowhere,dc=example,dc=com", "uid": "e", "sn": "S",
                         "cn": "C"}),
        }])
        .collect();
    let results = set.write_batch(ops).expect("the batch itself");
    assert_eq!(results.len(), 5);
    for (i, uid) in [(0, "a"), (2, "c"), (3, "d")] {
        let o = results[i].as_ref().expect("written");
        assert_eq!(o["_id"], uid, "{o}");
    }
    let e = results[1].as_ref().expect_err("refused");
    assert_eq!(e.kind, ObjectErrorKind::BadRequest, "{e}");
    assert!(
        e.message.contains("LDAP error 19 (constraintViolation)") && e.message.contains("uid=b"),
        "{e}"
    );
    let e = results[4].as_ref().expect_err("no parent");
    assert_eq!(e.kind, ObjectErrorKind::NotFound, "{e}");
    assert!(e.message.contains("LDAP error 32 (noSuchObject)"), "{e}");
    let all = set.find(&recond::query::Filter::True).expect("scan");
    assert_eq!(all.len(), 3, "{all:?}");

    // Updates and deletes of one batch, each with its own result; a missing one is NotFound.
    let results = set
        .write_batch(vec![
            WriteOp::Update {
                id: "a".into(),
                body: json!({"sn": "A2"}),
            },
            WriteOp::Update {
                id: "c".into(),
                body: json!({"displayName": ["x", "y"]}),
            },
            WriteOp::Update {
                id: "d".into(),
                body: json!({"sn": "D2"}),
            },
        ])
        .expect("the batch itself");
    assert_eq!(results[0].as_ref().expect("a")["sn"], "A2");
    let e = results[1].as_ref().expect_err("refused");
    assert!(e.message.contains("LDAP error 19"), "{e}");
    assert_eq!(results[2].as_ref().expect("d")["sn"], "D2");
    let results = set
        .write_batch(vec![
            WriteOp::Delete { id: "a".into() },
            WriteOp::Delete { id: "zz".into() },
            WriteOp::Delete { id: "c".into() },
        ])
        .expect("the batch itself");
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_eq!(
        results[1].as_ref().expect_err("missing").kind,
        ObjectErrorKind::NotFound
    );
    assert_eq!(
        set.find(&recond::query::Filter::True).expect("scan").len(),
        1
    );
}

#[test]
fn a_batch_writes_parents_before_their_children() {
    let Some(ldap) = Slapd::start("") else {
        return;
    };
    let set = accounts(&ldap, "uid", true);
    // The child comes first in the batch; its parent is created in the same batch.
    let child = json!({"dn": format!("uid=kid,uid=mom,ou=people,{SUFFIX}"), "uid": "kid",
                       "sn": "S", "cn": "C"});
    let grandchild = json!({"dn": format!("uid=tot,uid=kid,uid=mom,ou=people,{SUFFIX}"),
                            "uid": "tot", "sn": "S", "cn": "C"});
    let ops = vec![
        WriteOp::Create {
            id: None,
            body: grandchild,
        },
        WriteOp::Create {
            id: None,
            body: child,
        },
        WriteOp::Create {
            id: None,
            body: account("mom"),
        },
        WriteOp::Create {
            id: None,
            body: account("other"),
        },
    ];
    let results = set.write_batch(ops).expect("the batch itself");
    let ids: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().expect("written")["_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec!["tot", "kid", "mom", "other"]);
    // Deleting them in one batch, parent first: the parent waits for its children.
    let results = set
        .write_batch(vec![
            WriteOp::Delete { id: "mom".into() },
            WriteOp::Delete { id: "kid".into() },
            WriteOp::Delete { id: "tot".into() },
        ])
        .expect("the batch itself");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let left = set.find(&recond::query::Filter::True).expect("scan");
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn managed_to_ldap_batched_creates_fail_alone_and_link_the_others() {
    let Some(ldap) = Slapd::start("") else {
        return;
    };
    let text = PROVISIONER.replace(
        "\"uidAttribute\": \"entryUUID\"",
        "\"uidAttribute\": \"uid\"",
    );
    let s = server_with(
        ldap.port,
        &text,
        &[managed_to_ldap("managedUser_systemLdapAccounts", "")],
        &[],
    );
    for i in 1..=4 {
        let mut p = json!({"userName": format!("user{i}"), "sn": "S", "givenName": "G"});
        if i == 2 {
            p["displayName"] = json!(["One", "Two"]);
        }
        user(&s, &format!("m{i}"), p);
    }
    crate::ldap::run_with_user2_refused(&s, 3);
    // The others were written and linked by their uid: the next run confirms them.
    let run = s.run("managedUser_systemLdapAccounts", "");
    assert_eq!(
        counts(&run),
        map(&[("CONFIRMED", 3), ("ABSENT", 1)]),
        "{run}"
    );
}
