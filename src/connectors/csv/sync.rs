//! Change detection for liveSync (contract §7): snapshots of the file and their diff by id,
//! in the manner of IDM's CSV connector, which keeps sync files next to the CSV file.
//!
//! Layout: the folder `<file>.sync/` beside the CSV file holds one snapshot per token,
//! `<token>.csv`, a byte-for-byte copy of the file as it was when that token was issued. A
//! token is a decimal number of milliseconds since the epoch, strictly greater than every
//! token whose snapshot exists (so tokens only ever grow, even when the clock steps back).
//!
//! Invariants:
//! * a snapshot is written atomically (temporary file in the same folder, fsync, rename), so a
//!   snapshot that exists is complete;
//! * the changes since token T are the diff, by id, of snapshot T against a new snapshot N
//!   (rows created, changed — their content hash differs — or deleted); the diff reads the
//!   two snapshots only, so it is consistent whatever other programs do to the file meanwhile;
//! * a snapshot is only removed once a newer token was committed ([`CsvTable::drop_snapshots_before`]),
//!   so a caller that crashed before committing N asks again from T and gets the same changes
//!   (and more);
//! * a missing snapshot for the token asked about is an error naming it, never a silent full
//!   resynchronization.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::writer::atomic_write;
use super::{write_err, CsvError, CsvErrorKind, CsvTable};

/// One row changed between two snapshots: `row` is the row now, `None` when it was deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub id: String,
    pub row: Option<Map<String, Value>>,
}

const SNAPSHOT_EXT: &str = ".csv";

impl CsvTable {
    /// `<file>.sync`: where the snapshots live.
    pub fn sync_dir(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".sync");
        PathBuf::from(name)
    }

    /// The snapshot of `token`.
    pub fn snapshot_path(&self, token: u64) -> PathBuf {
        self.sync_dir().join(format!("{token}{SNAPSHOT_EXT}"))
    }

    /// The tokens whose snapshots exist, ascending. Other files (temporary files of a write
    /// cut short) are ignored.
    pub fn snapshot_tokens(&self) -> Result<Vec<u64>, CsvError> {
        let dir = self.sync_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CsvError::io(&dir, None, "cannot list the sync folder", e)),
        };
        let mut tokens = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| CsvError::io(&dir, None, "cannot list the sync folder", e))?;
            let name = entry.file_name();
            let Some(t) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SNAPSHOT_EXT))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            tokens.push(t);
        }
        tokens.sort_unstable();
        Ok(tokens)
    }

    /// Copies the file as it is now into a new snapshot and returns its token: the current
    /// time in milliseconds, or one more than the newest existing token (or `after`) if that
    /// is later.
    pub fn take_snapshot(&self, after: Option<u64>, now_ms: u64) -> Result<u64, CsvError> {
        let dir = self.sync_dir();
        fs::create_dir_all(&dir)
            .map_err(|e| CsvError::io(&dir, None, "cannot create the sync folder", e))?;
        let newest = self.snapshot_tokens()?.last().copied();
        let floor = newest.max(after).map_or(0, |t| t.saturating_add(1));
        let token = now_ms.max(floor);
        // The open handle keeps reading the version it opened, even if the file is replaced
        // (recond's own writes rename a new file over it) while it is copied.
        let mut source =
            File::open(&self.path).map_err(|e| CsvError::io(&self.path, None, "cannot open", e))?;
        let target = self.snapshot_path(token);
        atomic_write(&target, |w| {
            io::copy(&mut source, w).map_err(|e| write_err(&target, e))?;
            Ok(())
        })?;
        Ok(token)
    }

    /// An error naming the snapshot of `old` when it does not exist.
    pub fn check_snapshot(&self, old: u64) -> Result<(), CsvError> {
        let old_path = self.snapshot_path(old);
        if !old_path.exists() {
            return Err(CsvError::new(
                CsvErrorKind::Io,
                &old_path,
                None,
                format!(
                    "the liveSync snapshot of token {old} is missing, so the changes since then \
                     cannot be computed (was the sync folder {} removed?)",
                    self.sync_dir().display()
                ),
            ));
        }
        Ok(())
    }

    /// The rows created, changed or deleted from snapshot `old` to snapshot `new`: created and
    /// changed rows in the new snapshot's row order, then deleted rows in the old one's.
    pub fn diff_snapshots(&self, old: u64, new: u64) -> Result<Vec<RowChange>, CsvError> {
        self.check_snapshot(old)?;
        let old_table = self.at(self.snapshot_path(old));
        let mut before: HashMap<String, (usize, String)> = HashMap::new();
        let mut order = 0usize;
        old_table.scan_revs(&mut |id, rev, _| {
            before.entry(id).or_insert_with(|| {
                order += 1;
                (order, rev)
            });
        })?;
        let mut changes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.at(self.snapshot_path(new))
            .scan_revs(&mut |id, rev, row| {
                if !seen.insert(id.clone()) {
                    return; // A repeated id: the first row is the object (as `read` does).
                }
                match before.remove(&id) {
                    Some((_, old_rev)) if old_rev == rev => {}
                    _ => changes.push(RowChange { id, row: Some(row) }),
                }
            })?;
        let mut deleted: Vec<(usize, String)> =
            before.into_iter().map(|(id, (n, _))| (n, id)).collect();
        deleted.sort_unstable();
        changes.extend(
            deleted
                .into_iter()
                .map(|(_, id)| RowChange { id, row: None }),
        );
        Ok(changes)
    }

    /// Removes every snapshot older than `token` (the one just committed).
    pub fn drop_snapshots_before(&self, token: u64) -> Result<(), CsvError> {
        for t in self.snapshot_tokens()? {
            if t < token {
                let p = self.snapshot_path(t);
                fs::remove_file(&p)
                    .map_err(|e| CsvError::io(&p, None, "cannot remove an old snapshot", e))?;
            }
        }
        Ok(())
    }

    /// This table's layout over another file (a snapshot).
    fn at(&self, path: PathBuf) -> CsvTable {
        CsvTable::with_dialect(path, self.id_column.clone(), self.dialect.clone())
    }

    /// Streams every row with an id as (id, content hash, row).
    fn scan_revs(
        &self,
        f: &mut dyn FnMut(String, String, Map<String, Value>),
    ) -> Result<(), CsvError> {
        let mut rr = self.open()?;
        let header = rr.read_header(&self.id_column)?;
        while rr.next_record()? {
            rr.check_width(&header)?;
            if rr.field(header.id_idx).is_empty() {
                continue;
            }
            let row = rr.to_object(&header)?;
            let id = row
                .get("_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            f(id, rr.rev(&header), row);
        }
        Ok(())
    }
}

#[cfg(test)]
// Tests may unwrap: a failure there is the test's report.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};

    static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

    /// A unique temporary folder with a table `t.csv`, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let dir = std::env::temp_dir().join(format!(
                "recond-csv-sync-{}-{}",
                std::process::id(),
                DIR_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }
        fn table(&self) -> CsvTable {
            CsvTable::new(self.0.join("t.csv"), "id".into())
        }
        fn write(&self, text: &str) {
            fs::write(self.0.join("t.csv"), text).unwrap();
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn summary(changes: &[RowChange]) -> Vec<(String, Option<String>)> {
        changes
            .iter()
            .map(|c| {
                let name = c.row.as_ref().map(|r| {
                    r.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                });
                (c.id.clone(), name)
            })
            .collect()
    }

    #[test]
    fn the_diff_finds_created_changed_and_deleted_rows_once() {
        let d = Dir::new();
        let t = d.table();
        d.write("id,name\n1,ann\n2,bob\n3,cy\n");
        let t0 = t.take_snapshot(None, 1000).unwrap();
        assert_eq!(t0, 1000);
        d.write("id,name\n1,ann\n2,bobby\n4,dee\n");
        let t1 = t.take_snapshot(Some(t0), 1000).unwrap();
        assert!(t1 > t0, "tokens grow even when the clock does not");
        assert_eq!(
            summary(&t.diff_snapshots(t0, t1).unwrap()),
            vec![
                ("2".into(), Some("bobby".into())),
                ("4".into(), Some("dee".into())),
                ("3".into(), None),
            ]
        );
        // Nothing changed since t1: nothing reported.
        let t2 = t.take_snapshot(Some(t1), 5).unwrap();
        assert!(
            t2 > t1,
            "a clock that stepped back still gives a later token"
        );
        assert!(t.diff_snapshots(t1, t2).unwrap().is_empty());
        // Asking again from an older token (a replay after a crash) gives the same changes.
        assert_eq!(t.diff_snapshots(t0, t2).unwrap().len(), 3);
    }

    #[test]
    fn a_snapshot_keeps_the_file_as_it_was() {
        let d = Dir::new();
        let t = d.table();
        d.write("id,name\n1,ann\n");
        let t0 = t.take_snapshot(None, 10).unwrap();
        d.write("id,name\n1,zed\n");
        assert_eq!(
            fs::read_to_string(t.snapshot_path(t0)).unwrap(),
            "id,name\n1,ann\n"
        );
        assert_eq!(t.snapshot_path(t0), d.0.join("t.csv.sync").join("10.csv"));
    }

    #[test]
    fn committing_drops_older_snapshots_and_a_missing_one_is_an_error() {
        let d = Dir::new();
        let t = d.table();
        d.write("id,name\n1,ann\n");
        let t0 = t.take_snapshot(None, 10).unwrap();
        let t1 = t.take_snapshot(Some(t0), 10).unwrap();
        let t2 = t.take_snapshot(Some(t1), 10).unwrap();
        // Stray files (a temporary file of a copy cut short) are not snapshots.
        fs::write(t.sync_dir().join(".x.tmp"), "junk").unwrap();
        t.drop_snapshots_before(t2).unwrap();
        assert_eq!(t.snapshot_tokens().unwrap(), vec![t2]);
        let e = t.diff_snapshots(t0, t2).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("snapshot of token {t0} is missing")),
            "{e}"
        );
    }

    #[test]
    fn repeated_ids_and_rows_without_id_follow_read() {
        let d = Dir::new();
        let t = d.table();
        d.write("id,name\n1,ann\n1,other\n,noid\n");
        let t0 = t.take_snapshot(None, 10).unwrap();
        d.write("id,name\n1,ann\n1,changed\n,noid2\n");
        let t1 = t.take_snapshot(Some(t0), 10).unwrap();
        assert!(t.diff_snapshots(t0, t1).unwrap().is_empty());
    }

    fn csv_of(rows: &BTreeMap<u8, u8>) -> String {
        let mut s = String::from("id,name\n");
        for (id, v) in rows {
            s.push_str(&format!("{id},v{v}\n"));
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// The diff reports exactly the ids whose row was added, changed or removed.
        #[test]
        fn the_diff_is_exactly_the_changed_ids(
            before in prop::collection::btree_map(0u8..40, 0u8..3, 0..30),
            after in prop::collection::btree_map(0u8..40, 0u8..3, 0..30),
        ) {
            let d = Dir::new();
            let t = d.table();
            d.write(&csv_of(&before));
            let t0 = t.take_snapshot(None, 1).unwrap();
            d.write(&csv_of(&after));
            let t1 = t.take_snapshot(Some(t0), 1).unwrap();
            let mut got: Vec<(String, bool)> = t
                .diff_snapshots(t0, t1)
                .unwrap()
                .into_iter()
                .map(|c| (c.id, c.row.is_some()))
                .collect();
            got.sort();
            let mut want: Vec<(String, bool)> = Vec::new();
            for id in before.keys().chain(after.keys()).collect::<std::collections::BTreeSet<_>>() {
                match (before.get(id), after.get(id)) {
                    (Some(a), Some(b)) if a == b => {}
                    (_, Some(_)) => want.push((id.to_string(), true)),
                    (Some(_), None) => want.push((id.to_string(), false)),
                    (None, None) => {}
                }
            }
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
