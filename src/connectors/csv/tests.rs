//! Tests of the CSV table: parsing, writing, revisions, dialects.
// Tests may unwrap: a failure there is the test's report.
#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "recond-csv-{tag}-{}-{}",
            std::process::id(),
            DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn table(&self, content: &[u8], id: &str) -> CsvTable {
        let path = self.0.join("t.csv");
        fs::write(&path, content).unwrap();
        CsvTable::new(path, id.into())
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn all(t: &CsvTable) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    t.scan(&mut |o| {
        out.push(o);
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn text(t: &CsvTable) -> String {
    String::from_utf8(fs::read(t.path()).unwrap()).unwrap()
}

#[test]
fn header_and_id_column_kept() {
    let d = TempDir::new("hdr");
    let t = d.table(b"uid,name,mail\nu1,Ann,a@x\nu2,Bob,b@x\n", "uid");
    t.check().unwrap();
    let rows = all(&t);
    assert_eq!(
        rows,
        vec![
            obj(json!({"_id":"u1","uid":"u1","name":"Ann","mail":"a@x"})),
            obj(json!({"_id":"u2","uid":"u2","name":"Bob","mail":"b@x"})),
        ]
    );
    assert!(!rows[0].contains_key("_rev"));
}

#[test]
fn check_reports_missing_id_column_and_missing_file() {
    let d = TempDir::new("chk");
    let t = d.table(b"a,b\n1,2\n", "uid");
    let e = t.check().unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::Parse);
    assert!(e.to_string().contains("uid"), "{e}");
    let missing = CsvTable::new(d.0.join("nope.csv"), "uid".into());
    assert_eq!(missing.check().unwrap_err().kind(), &CsvErrorKind::Io);
    let empty = d.table(b"", "uid");
    assert_eq!(empty.check().unwrap_err().kind(), &CsvErrorKind::Parse);
}

#[test]
fn empty_cell_is_absent_and_short_rows() {
    let d = TempDir::new("empty");
    let t = d.table(b"uid,a,b,c\nu1,,x,\nu2,y\nu3\n", "uid");
    let rows = all(&t);
    assert_eq!(rows[0], obj(json!({"_id":"u1","uid":"u1","b":"x"})));
    assert_eq!(rows[1], obj(json!({"_id":"u2","uid":"u2","a":"y"})));
    assert_eq!(rows[2], obj(json!({"_id":"u3","uid":"u3"})));
}

#[test]
fn quotes_commas_and_newlines() {
    let d = TempDir::new("quote");
    let t = d.table(
        b"uid,note,addr\nu1,\"say \"\"hi\"\"\",\"1 Main St, Apt 2\"\n\"u2\",\"line1\nline2\",x\nu3,ab\"c,\"\"\n",
        "uid",
    );
    let rows = all(&t);
    assert_eq!(rows[0]["note"], "say \"hi\"");
    assert_eq!(rows[0]["addr"], "1 Main St, Apt 2");
    assert_eq!(rows[1]["_id"], "u2");
    assert_eq!(rows[1]["note"], "line1\nline2");
    assert_eq!(rows[1]["addr"], "x");
    // A quote inside an unquoted field is literal; `""` alone is an empty (absent) cell.
    assert_eq!(rows[2], obj(json!({"_id":"u3","uid":"u3","note":"ab\"c"})));
}

#[test]
fn idm_sample_style() {
    let d = TempDir::new("idm");
    let t = d.table(
        b"\"username\", \"firstname\", \"email\" \n\"bjensen\", \"Barbara\" , \"b@x\"\n\"jdoe\", John, \"\"\n",
        "username",
    );
    let rows = all(&t);
    assert_eq!(
        rows[0],
        obj(json!({"_id":"bjensen","username":"bjensen","firstname":"Barbara","email":"b@x"}))
    );
    // Unquoted fields keep their text as-is, leading space included.
    assert_eq!(
        rows[1],
        obj(json!({"_id":"jdoe","username":"jdoe","firstname":" John"}))
    );
}

#[test]
fn crlf_bom_and_blank_lines() {
    let d = TempDir::new("crlf");
    let t = d.table(
        b"\xEF\xBB\xBFuid,name\r\n\r\nu1,Ann\r\n  \r\nu2,\"B\r\nob\"\r\nu3,Cy\r\n\r\n",
        "uid",
    );
    let rows = all(&t);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], obj(json!({"_id":"u1","uid":"u1","name":"Ann"})));
    assert_eq!(rows[1]["name"], "B\r\nob");
    assert_eq!(rows[2]["name"], "Cy");
    // A rewrite keeps the BOM, the line-end style and untouched records byte-for-byte.
    t.update("u3", obj(json!({"name":"Cyd"}))).unwrap();
    assert_eq!(
        fs::read(t.path()).unwrap(),
        b"\xEF\xBB\xBFuid,name\r\nu1,Ann\r\nu2,\"B\r\nob\"\r\nu3,Cyd\r\n".to_vec()
    );
    // No final line end at all.
    let t = d.table(b"uid,name\nu1,Ann", "uid");
    assert_eq!(all(&t)[0]["name"], "Ann");
}

#[test]
fn over_long_row_is_an_error_with_line() {
    let d = TempDir::new("long");
    let t = d.table(b"uid,a\nu1,x\n\nu2,y,z\n", "uid");
    let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::Parse);
    assert_eq!(e.line, Some(4));
    assert!(e.to_string().contains("t.csv line 4: "), "{e}");
}

#[test]
fn unterminated_quote_and_junk_after_quote() {
    let d = TempDir::new("unterm");
    let t = d.table(b"uid,a\nu1,x\nu2,\"abc\nmore\n", "uid");
    let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(e.line, Some(3));
    assert!(
        e.to_string().ends_with("line 3: unterminated quoted field"),
        "{e}"
    );
    let t = d.table(b"uid,a\nu1,\"x\"y\n", "uid");
    let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!((e.kind(), e.line), (&CsvErrorKind::Parse, Some(2)));
}

#[test]
fn record_size_is_bounded() {
    let data = format!("a\n\"{}", "x".repeat(10_000));
    let path = Path::new("mem.csv");
    let mut rr = RecordReader::new(data.as_bytes(), path, &Dialect::default());
    rr.max_record = 1000;
    assert!(rr.next_record().unwrap());
    let e = rr.next_record().unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::Parse);
    assert!(rr.raw.len() <= 1001);
}

#[test]
fn rows_without_id_are_skipped_and_counted() {
    let d = TempDir::new("skip");
    let t = d.table(b"name,uid\nAnn,u1\nBob,\nCy\n,u4\n", "uid");
    let mut n = 0;
    let stats = t
        .scan(&mut |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        stats,
        ScanStats {
            rows: 2,
            skipped: 2
        }
    );
    assert_eq!(n, 2);
}

#[test]
fn early_stop() {
    let d = TempDir::new("stop");
    let t = d.table(b"uid\na\nb\nc\nd\n", "uid");
    let mut seen = Vec::new();
    let stats = t
        .scan(&mut |o| {
            seen.push(o["_id"].clone());
            if seen.len() == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(seen, vec![json!("a"), json!("b")]);
    assert_eq!(stats.rows, 2);
}

#[test]
fn invalid_utf8_is_an_error() {
    let d = TempDir::new("utf8");
    let t = d.table(b"uid,name\nu1,ok\nu2,bad\xFF\xFE\n", "uid");
    let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!((e.kind(), e.line), (&CsvErrorKind::Parse, Some(3)));
    assert!(e.to_string().contains("column \"name\""), "{e}");
    // Invalid bytes in a quoted field (read through the decoded buffer) name their column too.
    let t = d.table(b"uid,name,mail\nu1,\"a\xFF,\",m\n", "uid");
    let e = t.scan(&mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(e.to_string().contains("column \"name\""), "{e}");
    // Multibyte text in quoted and plain fields of one record comes out whole.
    let t = d.table(
        "uid,name,mail\nu1,\"Zoë, \"\"Z\"\"\",é@x\n".as_bytes(),
        "uid",
    );
    let mut seen = Vec::new();
    t.scan(&mut |o| {
        seen.push((o["name"].clone(), o["mail"].clone()));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, vec![(json!("Zoë, \"Z\""), json!("é@x"))]);
    let t = d.table(b"uid,na\xC3\n", "uid");
    assert_eq!(t.check().unwrap_err().kind(), &CsvErrorKind::Parse);
    // Split-up multibyte sequence across a comma must not be glued back together.
    let t = d.table(b"uid,a,b\nu1,\xC3,\xA9\n", "uid");
    assert!(t.scan(&mut |_| ControlFlow::Continue(())).is_err());
}

#[test]
fn read_has_rev() {
    let d = TempDir::new("read");
    let t = d.table(b"uid,name\nu1,Ann\nu2,Bob\n", "uid");
    let o = t.read("u2").unwrap().unwrap();
    assert_eq!(o["name"], "Bob");
    assert_eq!(o["_id"], "u2");
    assert!(o["_rev"].as_str().unwrap().len() == 16);
    assert_eq!(t.read("nope").unwrap(), None);
}

#[test]
fn create_with_id_from_column_and_from_underscore_id() {
    let d = TempDir::new("create");
    let t = d.table(b"uid,name\r\nu1,Ann\r\n", "uid");
    let c = t
        .create(obj(
            json!({"uid":"u2","name":"Bob, Jr.","age":42,"ok":true,"_rev":"x"}),
        ))
        .unwrap();
    assert_eq!(c["_id"], "u2");
    assert_eq!(c["age"], "42");
    assert_eq!(c["_rev"], t.read("u2").unwrap().unwrap()["_rev"]);
    let c = t.create(obj(json!({"_id":"u3","name":"Cy"}))).unwrap();
    assert_eq!(c["uid"], "u3");
    assert_eq!(
        text(&t),
        "uid,name,age,ok\r\nu1,Ann,,\r\nu2,\"Bob, Jr.\",42,true\r\nu3,Cy,,\r\n"
    );
    assert_eq!(t.read("u3").unwrap().unwrap(), c);
    let e = t.create(obj(json!({"name":"nobody"}))).unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::BadValue);
    let e = t.create(obj(json!({"uid":"u4","tags":["a"]}))).unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::BadValue);
    assert!(e.message.contains("tags"));
}

#[test]
fn create_duplicate_is_already_exists() {
    let d = TempDir::new("dup");
    let t = d.table(b"uid,name\nu1,Ann\n", "uid");
    let e = t.create(obj(json!({"uid":"u1"}))).unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::AlreadyExists);
    assert_eq!(text(&t), "uid,name\nu1,Ann\n");
    assert_eq!(d.entries(), vec!["t.csv"]);
}

#[test]
fn update_adds_new_column_at_end() {
    let d = TempDir::new("upd");
    let t = d.table(
        b"\"uid\", \"name\", \"mail\"\n\"u1\", \"Ann\", \"a@x\"\nu2,Bob\n",
        "uid",
    );
    let u = t
        .update(
            "u2",
            obj(json!({"uid":"other","name":" Bob ","zip":"123","_id":"zz","mail":null})),
        )
        .unwrap();
    assert_eq!(u, {
        let mut m = obj(json!({"_id":"u2","uid":"u2","name":" Bob ","zip":"123"}));
        m.insert("_rev".into(), u["_rev"].clone());
        m
    });
    assert_eq!(
        text(&t),
        "\"uid\", \"name\", \"mail\",zip\n\"u1\", \"Ann\", \"a@x\",\nu2,\" Bob \",,123\n"
    );
    assert_eq!(
        all(&t)[0],
        obj(json!({"_id":"u1","uid":"u1","name":"Ann","mail":"a@x"}))
    );
    let e = t.update("nope", obj(json!({"name":"x"}))).unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::NotFound);
    assert_eq!(d.entries(), vec!["t.csv"]);
}

#[test]
fn delete_returns_object() {
    let d = TempDir::new("del");
    let t = d.table(b"uid,name\nu1,Ann\nu2,Bob\nu3,Cy", "uid");
    let before = t.read("u2").unwrap().unwrap();
    let gone = t.delete("u2").unwrap();
    assert_eq!(gone, before);
    assert_eq!(text(&t), "uid,name\nu1,Ann\nu3,Cy\n");
    assert_eq!(t.delete("u2").unwrap_err().kind(), &CsvErrorKind::NotFound);
    assert_eq!(d.entries(), vec!["t.csv"]);
}

#[test]
fn outside_edit_is_seen() {
    let d = TempDir::new("edit");
    let t = d.table(b"uid,name\nu1,Ann\n", "uid");
    assert_eq!(t.read("u1").unwrap().unwrap()["name"], "Ann");
    fs::write(t.path(), "uid,name\nu1,Anna\nu2,Bob\n").unwrap();
    assert_eq!(t.read("u1").unwrap().unwrap()["name"], "Anna");
    assert_eq!(all(&t).len(), 2);
}

#[test]
fn rev_stable_and_changes_on_update() {
    let d = TempDir::new("rev");
    let t = d.table(b"uid,name\nu1,Ann\nu2,Bob\n", "uid");
    let r1 = t.read("u1").unwrap().unwrap()["_rev"].clone();
    let r2 = t.read("u2").unwrap().unwrap()["_rev"].clone();
    assert_eq!(t.read("u1").unwrap().unwrap()["_rev"], r1);
    // Adding a column to the file (via another row) keeps u1's revision.
    let u = t.update("u2", obj(json!({"name":"Bob","x":"1"}))).unwrap();
    assert_ne!(u["_rev"], r2);
    assert_eq!(t.read("u2").unwrap().unwrap()["_rev"], u["_rev"]);
    assert_eq!(t.read("u1").unwrap().unwrap()["_rev"], r1);
    // Same content, same revision; an unchanged update keeps it.
    let again = t.update("u2", obj(json!({"name":"Bob","x":"1"}))).unwrap();
    assert_eq!(again["_rev"], u["_rev"]);
    // Moving a value to another column changes the revision.
    assert_ne!(
        rev_of([b"a".as_slice(), b"", b"b"].into_iter()),
        rev_of([b"a".as_slice(), b"b", b""].into_iter())
    );
}

#[test]
fn written_values_read_back_identically() {
    let d = TempDir::new("round");
    let t = d.table(b"uid,v\n", "uid");
    let values = [
        "plain",
        " lead",
        "trail ",
        "a,b",
        "q\"uote",
        "multi\nline",
        "cr\r\nlf",
        "\"",
        "é ünï",
        "\t",
    ];
    for (i, v) in values.iter().enumerate() {
        t.create(obj(json!({"uid": format!("u{i}"), "v": v})))
            .unwrap();
    }
    for (i, v) in values.iter().enumerate() {
        assert_eq!(t.read(&format!("u{i}")).unwrap().unwrap()["v"], *v);
    }
    assert_eq!(all(&t).len(), values.len());
}

#[test]
fn write_csv_and_scan_50k_rows() {
    let d = TempDir::new("big");
    let path = d.0.join("big.csv");
    let header: Vec<String> = (0..10).map(|c| format!("col{c}")).collect();
    let n = 50_000u64;
    let mut rows = (0..n).map(|i| {
        (0..10)
            .map(|c| {
                if c == 0 {
                    format!("id{i:06}")
                } else if c == 5 {
                    format!("{i} Main Street, Building {c}")
                } else {
                    format!("value-{i}-{c}")
                }
            })
            .collect::<Vec<String>>()
    });
    write_csv(&path, &header, &mut rows).unwrap();
    assert_eq!(d.entries(), vec!["big.csv"]);
    let t = CsvTable::new(path, "col0".into());
    let mut count = 0u64;
    let stats = t
        .scan(&mut |o| {
            if count == 12_345 {
                assert_eq!(o["_id"], "id012345");
                assert_eq!(o["col5"], "12345 Main Street, Building 5");
                assert_eq!(o.len(), 11);
            }
            count += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        stats,
        ScanStats {
            rows: n,
            skipped: 0
        }
    );
    assert_eq!(count, n);
    let mut too_wide = std::iter::once(vec!["a".to_string(); 11]);
    let e = write_csv(&d.0.join("bad.csv"), &header, &mut too_wide).unwrap_err();
    assert_eq!(e.kind(), &CsvErrorKind::BadValue);
    assert_eq!(d.entries(), vec!["big.csv"]);
}

#[test]
fn dialect_delimiter_quote_and_newline() {
    let d = TempDir::new("dialect");
    let path = d.0.join("t.csv");
    fs::write(&path, "uid;name\n1;'Ann; Lee'\n").unwrap();
    let dialect = Dialect {
        delimiter: b';',
        quote: b'\'',
        newline: Some(b"\r\n".to_vec()),
    };
    let t = CsvTable::with_dialect(path, "uid".into(), dialect);
    assert_eq!(all(&t)[0]["name"], "Ann; Lee");
    t.create(obj(json!({"uid": "2", "name": "it's; here"})))
        .unwrap();
    assert_eq!(
        text(&t),
        "uid;name\r\n1;'Ann; Lee'\r\n2;'it''s; here'\r\n",
        "fields quoted with the configured quote; every line ends with newlineString"
    );
    assert_eq!(all(&t)[1]["name"], "it's; here");
}
