//! Reading objects, the equality index and links. Scans page by key (`ORDER BY ... LIMIT`)
//! and visit each page with no connection held.

use std::ops::ControlFlow;

use postgres::types::ToSql;
use postgres::Row;

use super::{db_err, from_sql, PgStore, PAGE};
use crate::storage::records::{parse_body, IndexTerm, Link, StoredObject};
use crate::storage::{Result, StoreError};

const GET_OBJECT: &str = "SELECT rev, body FROM recond_objects WHERE set_name = $1 AND id = $2";
const OBJECT_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM recond_objects WHERE set_name = $1 AND id = $2)";
const OBJECTS_FIRST: &str = "SELECT id, rev, body FROM recond_objects WHERE set_name = $1 \
     ORDER BY id LIMIT $2";
const OBJECTS_AFTER: &str = "SELECT id, rev, body FROM recond_objects WHERE set_name = $1 \
     AND id > $3 ORDER BY id LIMIT $2";
const IDS_FIRST: &str = "SELECT id FROM recond_objects WHERE set_name = $1 ORDER BY id LIMIT $2";
const IDS_AFTER: &str =
    "SELECT id FROM recond_objects WHERE set_name = $1 AND id > $3 ORDER BY id LIMIT $2";
const COUNT_OBJECTS: &str = "SELECT COUNT(*) FROM recond_objects WHERE set_name = $1";
const SET_HAS_OBJECTS: &str = "SELECT EXISTS (SELECT 1 FROM recond_objects WHERE set_name = $1)";
const INDEX_LOOKUP: &str = "SELECT id FROM recond_index WHERE set_name = $1 AND attr = $2 \
     AND term = $3 ORDER BY id";
const DROP_INDEX: &str = "DELETE FROM recond_index WHERE set_name = $1";
const LINK_BY_FIRST: &str = "SELECT second_id, rev FROM recond_links \
     WHERE link_type = $1 AND qualifier = $2 AND first_id = $3";
const LINK_BY_SECOND: &str = "SELECT first_id, rev FROM recond_links \
     WHERE link_type = $1 AND qualifier = $2 AND second_id = $3";
const LINKS_ALL_FIRST: &str = "SELECT link_type, qualifier, first_id, second_id, rev \
     FROM recond_links ORDER BY link_type, qualifier, first_id LIMIT $1";
const LINKS_ALL_AFTER: &str = "SELECT link_type, qualifier, first_id, second_id, rev \
     FROM recond_links WHERE (link_type, qualifier, first_id) > ($2, $3, $4) \
     ORDER BY link_type, qualifier, first_id LIMIT $1";
const LINKS_TYPE_FIRST: &str = "SELECT link_type, qualifier, first_id, second_id, rev \
     FROM recond_links WHERE link_type = $2 ORDER BY qualifier, first_id LIMIT $1";
const LINKS_TYPE_AFTER: &str = "SELECT link_type, qualifier, first_id, second_id, rev \
     FROM recond_links WHERE link_type = $2 AND (qualifier, first_id) > ($3, $4) \
     ORDER BY qualifier, first_id LIMIT $1";
const LINKS_QUAL_FIRST: &str = "SELECT link_type, qualifier, first_id, second_id, rev \
     FROM recond_links WHERE link_type = $2 AND qualifier = $3 ORDER BY first_id LIMIT $1";
const LINKS_QUAL_AFTER: &str = "SELECT link_type, qualifier, first_id, second_id, rev \
     FROM recond_links WHERE link_type = $2 AND qualifier = $3 AND first_id > $4 \
     ORDER BY first_id LIMIT $1";
const COUNT_LINKS: &str =
    "SELECT COUNT(*) FROM recond_links WHERE link_type = $1 AND qualifier = $2";

fn object(id: String, rev: i64, body: &str) -> Result<StoredObject> {
    let body =
        parse_body(body.as_bytes()).map_err(|e| StoreError::Codec(format!("object {id}: {e}")))?;
    Ok(StoredObject {
        rev: from_sql(rev, "a revision")?,
        id,
        body,
    })
}

fn link(r: &Row) -> Result<Link> {
    Ok(Link {
        link_type: r.get(0),
        qualifier: r.get(1),
        first_id: r.get(2),
        second_id: r.get(3),
        rev: from_sql(r.get(4), "a link revision")?,
    })
}

impl PgStore {
    /// Runs one query on a pooled connection.
    pub(super) fn query(
        &self,
        context: &str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.pool.with(context, |c| {
            let st = c.statement(sql).map_err(db_err(context))?;
            c.client.query(&st, params).map_err(db_err(context))
        })
    }

    /// Runs one statement on a pooled connection; returns the rows it changed.
    pub(super) fn execute(
        &self,
        context: &str,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        self.pool.with(context, |c| {
            let st = c.statement(sql).map_err(db_err(context))?;
            c.client.execute(&st, params).map_err(db_err(context))
        })
    }

    pub fn get_object(&self, set: &str, id: &str) -> Result<Option<StoredObject>> {
        let rows = self.query("reading an object", GET_OBJECT, &[&set, &id])?;
        match rows.first() {
            Some(r) => object(id.to_string(), r.get(0), r.get(1)).map(Some),
            None => Ok(None),
        }
    }

    pub fn object_exists(&self, set: &str, id: &str) -> Result<bool> {
        let rows = self.query("reading an object", OBJECT_EXISTS, &[&set, &id])?;
        Ok(rows.first().is_some_and(|r| r.get(0)))
    }

    pub fn scan_objects(
        &self,
        set: &str,
        after: Option<&str>,
        f: &mut dyn FnMut(StoredObject) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut cursor = after.map(str::to_string);
        loop {
            let rows = match &cursor {
                None => self.query("scanning objects", OBJECTS_FIRST, &[&set, &PAGE])?,
                Some(a) => self.query("scanning objects", OBJECTS_AFTER, &[&set, &PAGE, a])?,
            };
            let full = rows.len() as i64 == PAGE;
            for r in &rows {
                let id: String = r.get(0);
                cursor = Some(id.clone());
                if f(object(id, r.get(1), r.get(2))?).is_break() {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    pub fn scan_object_ids(
        &self,
        set: &str,
        f: &mut dyn FnMut(&str) -> ControlFlow<()>,
    ) -> Result<()> {
        let mut cursor: Option<String> = None;
        loop {
            let rows = match &cursor {
                None => self.query("scanning object ids", IDS_FIRST, &[&set, &(PAGE * 5)])?,
                Some(a) => self.query("scanning object ids", IDS_AFTER, &[&set, &(PAGE * 5), a])?,
            };
            let full = rows.len() as i64 == PAGE * 5;
            for r in &rows {
                let id: &str = r.get(0);
                if f(id).is_break() {
                    return Ok(());
                }
            }
            match rows.last() {
                Some(r) if full => cursor = Some(r.get(0)),
                _ => return Ok(()),
            }
        }
    }

    /// Counts a set's objects (one `COUNT(*)`; `stop` is asked before it starts).
    pub fn count_objects_until(&self, set: &str, stop: &dyn Fn() -> bool) -> Result<Option<u64>> {
        if stop() {
            return Ok(None);
        }
        let rows = self.query("counting objects", COUNT_OBJECTS, &[&set])?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        from_sql(n, "a count").map(Some)
    }

    pub fn set_is_empty(&self, set: &str) -> Result<bool> {
        let rows = self.query("reading a set", SET_HAS_OBJECTS, &[&set])?;
        Ok(!rows.first().is_some_and(|r| r.get::<_, bool>(0)))
    }

    pub fn index_lookup(&self, set: &str, attr: &str, term: &IndexTerm) -> Result<Vec<String>> {
        let rows = self.query("reading an index", INDEX_LOOKUP, &[&set, &attr, &term.0])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub fn drop_index_entries(&self, set: &str) -> Result<()> {
        self.execute("dropping an index", DROP_INDEX, &[&set])
            .map(|_| ())
    }

    pub fn link_by_first(
        &self,
        link_type: &str,
        qualifier: &str,
        first_id: &str,
    ) -> Result<Option<Link>> {
        self.one_link(LINK_BY_FIRST, link_type, qualifier, first_id, true)
    }

    pub fn link_by_second(
        &self,
        link_type: &str,
        qualifier: &str,
        second_id: &str,
    ) -> Result<Option<Link>> {
        self.one_link(LINK_BY_SECOND, link_type, qualifier, second_id, false)
    }

    /// The link whose first (`known_is_first`) or second id is `known`: the statement answers
    /// the other id and the revision.
    fn one_link(
        &self,
        statement: &'static str,
        link_type: &str,
        qualifier: &str,
        known: &str,
        known_is_first: bool,
    ) -> Result<Option<Link>> {
        let rows = self.query(
            "reading a link",
            statement,
            &[&link_type, &qualifier, &known],
        )?;
        rows.first()
            .map(|r| {
                let other: String = r.get(0);
                let (first_id, second_id) = if known_is_first {
                    (known.to_string(), other)
                } else {
                    (other, known.to_string())
                };
                Ok(Link {
                    link_type: link_type.to_string(),
                    qualifier: qualifier.to_string(),
                    first_id,
                    second_id,
                    rev: from_sql(r.get(1), "a link revision")?,
                })
            })
            .transpose()
    }

    /// Visits links in (link type, qualifier, firstId) order.
    pub fn scan_links(
        &self,
        link_type: Option<&str>,
        qualifier: Option<&str>,
        f: &mut dyn FnMut(Link) -> ControlFlow<()>,
    ) -> Result<()> {
        let context = "scanning links";
        let mut cursor: Option<Link> = None;
        loop {
            let rows = match (link_type, qualifier, &cursor) {
                (Some(t), Some(q), None) => {
                    self.query(context, LINKS_QUAL_FIRST, &[&PAGE, &t, &q])?
                }
                (Some(t), Some(q), Some(c)) => {
                    self.query(context, LINKS_QUAL_AFTER, &[&PAGE, &t, &q, &c.first_id])?
                }
                (Some(t), None, None) => self.query(context, LINKS_TYPE_FIRST, &[&PAGE, &t])?,
                (Some(t), None, Some(c)) => self.query(
                    context,
                    LINKS_TYPE_AFTER,
                    &[&PAGE, &t, &c.qualifier, &c.first_id],
                )?,
                (None, _, None) => self.query(context, LINKS_ALL_FIRST, &[&PAGE])?,
                (None, _, Some(c)) => self.query(
                    context,
                    LINKS_ALL_AFTER,
                    &[&PAGE, &c.link_type, &c.qualifier, &c.first_id],
                )?,
            };
            let full = rows.len() as i64 == PAGE;
            for r in &rows {
                let l = link(r)?;
                cursor = Some(l.clone());
                if f(l).is_break() {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Counts one (type, qualifier)'s links (one `COUNT(*)`; `stop` is asked before it
    /// starts).
    pub fn count_links_until(
        &self,
        link_type: &str,
        qualifier: &str,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<u64>> {
        if stop() {
            return Ok(None);
        }
        let rows = self.query("counting links", COUNT_LINKS, &[&link_type, &qualifier])?;
        let n: i64 = rows.first().map(|r| r.get(0)).unwrap_or(0);
        from_sql(n, "a count").map(Some)
    }
}
