//! Searches: every base context in turn (or one pinned `dn`), with the paged-results control,
//! streaming entries to a callback in batches so memory is bounded by one page whatever the
//! directory's size.
//!
//! A base that does not exist (noSuchObject, result 32) yields no entries rather than an
//! error, as IDM's connector does: a correlation on a `dn` that is not there finds nothing.
//! A stale pooled connection (the directory restarted) is retried once on a fresh one, before
//! any entry was delivered; a failure after that is the search's failure.

use std::collections::HashMap;
use std::ops::ControlFlow;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry};

use super::config::TypeConfig;
use super::entry::{norm_dn, Entry};
use super::filter::escape;
use super::pool::{Failure, Pool};

/// Entries pulled from the connection per trip to the runtime.
const BATCH: usize = 256;
const NO_SUCH_OBJECT: u32 = 32;

/// Runs `filter` under `base` (scope base) or under every base context (subtree), asking for
/// `attrs`; `f` sees each entry and may stop the search.
pub fn search(
    pool: &Pool,
    cfg: &TypeConfig,
    base: Option<&str>,
    filter: &str,
    attrs: &[String],
    f: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<(), Failure> {
    let bases: Vec<(&str, Scope)> = match base {
        Some(dn) => vec![(dn, Scope::Base)],
        None => cfg
            .base_contexts
            .iter()
            .map(|b| (b.as_str(), Scope::Subtree))
            .collect(),
    };
    search_in(pool, cfg, &bases, filter, attrs, f)
}

/// Runs `filter` under each of `bases` in turn (liveSync searches `baseContextsToSynchronize`).
pub fn search_in(
    pool: &Pool,
    cfg: &TypeConfig,
    bases: &[(&str, Scope)],
    filter: &str,
    attrs: &[String],
    f: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<(), Failure> {
    for &(b, scope) in bases {
        let retry = pool.has_idle();
        let mut delivered = false;
        let first = search_one(pool, cfg, b, scope, filter, attrs, &mut |e| {
            delivered = true;
            f(e)
        });
        let flow = match first {
            Err(Failure::Unreachable(_)) if retry && !delivered => {
                search_one(pool, cfg, b, scope, filter, attrs, f)?
            }
            other => other?,
        };
        if flow.is_break() {
            break;
        }
    }
    Ok(())
}

fn search_one(
    pool: &Pool,
    cfg: &TypeConfig,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[String],
    f: &mut dyn FnMut(Entry) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, Failure> {
    let mut conn = pool.get()?;
    let mut handle = conn.handle()?;
    let mut adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> =
        vec![Box::new(EntriesOnly::new())];
    if let (Some(size), Scope::Subtree) = (cfg.page_size, scope) {
        adapters.push(Box::new(PagedResults::new(size)));
    }
    let attrs = attrs.to_vec();
    let mut stream =
        conn.drive(handle.streaming_search_with(adapters, base, scope, filter, attrs))?;
    loop {
        let batch = conn.drive(async {
            let mut out = Vec::with_capacity(BATCH);
            while out.len() < BATCH {
                match stream.next().await? {
                    Some(re) => out.push(re),
                    None => break,
                }
            }
            Ok(out)
        })?;
        let done = batch.len() < BATCH;
        for re in batch {
            if f(Entry::from_search(SearchEntry::construct(re))).is_break() {
                // Stop reading: finishing an unfinished stream tells the connection to drop
                // whatever else arrives for this search, so the connection stays usable.
                conn.drive(async { Ok(stream.finish().await) })?;
                return Ok(ControlFlow::Break(()));
            }
        }
        if done {
            break;
        }
    }
    let res = conn.drive(async { Ok(stream.finish().await) })?;
    match res.rc {
        0 => Ok(ControlFlow::Continue(())),
        NO_SUCH_OBJECT => Ok(ControlFlow::Continue(())),
        rc => Err(Failure::Directory {
            rc,
            text: format!(
                "searching {base} for {filter}{}",
                if res.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", res.text)
                }
            ),
        }),
    }
}

/// The group classes' filter, for membership searches.
fn group_filter(cfg: &TypeConfig, member: Option<&str>) -> String {
    let mut parts: Vec<String> = cfg
        .group_classes
        .iter()
        .filter(|c| !c.eq_ignore_ascii_case("top"))
        .map(|c| format!("(objectClass={})", escape(c)))
        .collect();
    parts.push(match member {
        Some(dn) => format!("({}={})", cfg.group_member_attribute, escape(dn)),
        None => format!("({}=*)", cfg.group_member_attribute),
    });
    format!("(&{})", parts.concat())
}

/// The dns of the groups `dn` is a member of.
pub fn groups_of(pool: &Pool, cfg: &TypeConfig, dn: &str) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    search(
        pool,
        cfg,
        None,
        &group_filter(cfg, Some(dn)),
        &["1.1".to_string()],
        &mut |e| {
            out.push(e.dn);
            ControlFlow::Continue(())
        },
    )?;
    Ok(out)
}

/// Every member's groups (by normalised member dn), read in one search, for scans.
pub fn all_memberships(
    pool: &Pool,
    cfg: &TypeConfig,
) -> Result<HashMap<String, Vec<String>>, Failure> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let attr = cfg.group_member_attribute.clone();
    search(
        pool,
        cfg,
        None,
        &group_filter(cfg, None),
        std::slice::from_ref(&attr),
        &mut |e| {
            for m in e.values(&attr) {
                out.entry(norm_dn(&String::from_utf8_lossy(m)))
                    .or_default()
                    .push(e.dn.clone());
            }
            ControlFlow::Continue(())
        },
    )?;
    Ok(out)
}
