//! Searches: every base context in turn (or one pinned `dn`), with the paged-results control,
//! streaming entries to a callback in batches so memory is bounded by two pages whatever the
//! directory's size. The search itself runs as a task on the connector's runtime that reads
//! ahead by up to two pages, so the next page is asked for while the caller's thread still
//! maps the previous one (the directory and recond work at the same time).
//!
//! A base that does not exist (noSuchObject, result 32) yields no entries rather than an
//! error, as IDM's connector does: a correlation on a `dn` that is not there finds nothing.
//! A stale pooled connection (the directory restarted) is retried once on a fresh one, before
//! any entry was delivered; a failure after that is the search's failure.

use std::collections::HashMap;
use std::ops::ControlFlow;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapError, LdapResult, ResultEntry, Scope};
use tokio::sync::mpsc;

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

/// What the reading task hands to the caller's thread.
enum Msg {
    Entries(Vec<ResultEntry>),
    Done(LdapResult),
    Failed(LdapError),
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
    let handle = conn.handle()?;
    let page = match (cfg.page_size, scope) {
        (Some(size), Scope::Subtree) => Some(size),
        _ => None,
    };
    // Room for two pages: the task asks for the next page while this thread still maps the
    // previous one, so the directory never waits for recond between pages.
    let pages = page.map_or(1, |p| p.max(1) as usize);
    let (tx, mut rx) = mpsc::channel::<Msg>((2 * pages).div_ceil(BATCH).max(2));
    let task = conn.spawn(read_all(
        handle,
        page,
        base.to_string(),
        scope,
        filter.to_string(),
        attrs.to_vec(),
        tx,
    ))?;
    let what = |res: LdapResult| -> Result<ControlFlow<()>, Failure> {
        match res.rc {
            0 | NO_SUCH_OBJECT => Ok(ControlFlow::Continue(())),
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
    };
    loop {
        let msg = conn.drive(async { Ok(rx.recv().await) });
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // Timed out: stop the task (it ends when its channel is closed).
                drop(rx);
                task.abort();
                return Err(e);
            }
        };
        match msg {
            Some(Msg::Entries(batch)) => {
                for re in batch {
                    let e = Entry::decode(re).map_err(Failure::Other)?;
                    if f(e).is_break() {
                        // The task sees the closed channel, finishes the stream and ends; wait
                        // for it so the connection goes back to the pool idle.
                        drop(rx);
                        conn.drive(async { Ok(task.await) }).ok();
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
            Some(Msg::Done(res)) => return what(res),
            Some(Msg::Failed(e)) => return Err(conn.fail(e)),
            None => {
                return Err(Failure::Other(format!(
                    "the search of {base} for {filter} ended without a result"
                )))
            }
        }
    }
}

/// Runs the search on the connector's runtime and hands its entries over in batches; ends with
/// the search's result or its error. Reading ahead into the bounded channel is what lets the
/// paged-results adapter ask for the next page while the caller is still busy.
async fn read_all(
    mut handle: Ldap,
    page: Option<i32>,
    base: String,
    scope: Scope,
    filter: String,
    attrs: Vec<String>,
    tx: mpsc::Sender<Msg>,
) {
    let mut adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> =
        vec![Box::new(EntriesOnly::new())];
    if let Some(size) = page {
        adapters.push(Box::new(PagedResults::new(size)));
    }
    let mut stream = match handle
        .streaming_search_with(adapters, &base, scope, &filter, attrs)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Msg::Failed(e)).await;
            return;
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        match stream.next().await {
            Ok(Some(re)) => {
                batch.push(re);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if tx.send(Msg::Entries(full)).await.is_err() {
                        // The caller stopped reading: drop whatever else arrives for this
                        // search, so the connection stays usable.
                        let _ = stream.finish().await;
                        return;
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Msg::Failed(e)).await;
                return;
            }
        }
    }
    if !batch.is_empty() && tx.send(Msg::Entries(batch)).await.is_err() {
        let _ = stream.finish().await;
        return;
    }
    let res = stream.finish().await;
    let _ = tx.send(Msg::Done(res)).await;
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
