//! A small pool of blocking PostgreSQL connections (at most `pool_size`, opened on demand),
//! each with the statements it has prepared.
//!
//! Invariants: a connection is used by one caller at a time and never held while a caller's
//! callback runs (scans fetch a page, give the connection back, then visit the page), so a
//! callback that reads the store again cannot wait for its own connection. A connection the
//! server closed is dropped, not returned. The blocking client never runs on an async
//! runtime's thread: [`Pool::with`] moves off it first (see [`off_runtime`]).

use std::collections::HashMap;

use parking_lot::{Condvar, Mutex};
use postgres::{Client, Statement};

use crate::connectors::sql::config::PgTarget;
use crate::storage::{Result, StoreError};

/// One connection and its prepared statements (keyed by their text, all `'static` SQL).
pub(super) struct Conn {
    pub(super) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// The statement for `sql`, prepared once per connection (a statement run again costs
    /// one round trip, not two).
    pub(super) fn statement(
        &mut self,
        sql: &'static str,
    ) -> std::result::Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

struct Idle {
    conns: Vec<Conn>,
    /// Connections open, idle or lent.
    open: usize,
}

pub(super) struct Pool {
    target: PgTarget,
    size: usize,
    idle: Mutex<Idle>,
    returned: Condvar,
}

impl Pool {
    pub(super) fn new(target: PgTarget, size: u32) -> Pool {
        Pool {
            target,
            size: size.max(1) as usize,
            idle: Mutex::new(Idle {
                conns: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Where the pool connects (for messages; never the password).
    pub(super) fn describe(&self) -> String {
        format!(
            "{}:{}/{} as {}",
            self.target.host, self.target.port, self.target.database, self.target.user
        )
    }

    /// Runs `f` with a connection, off the async runtime.
    pub(super) fn with<T>(
        &self,
        context: &str,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        off_runtime(|| {
            let mut conn = self.take(context)?;
            let out = f(&mut conn);
            self.give_back(conn);
            out
        })
    }

    fn take(&self, context: &str) -> Result<Conn> {
        let mut idle = self.idle.lock();
        loop {
            if let Some(c) = idle.conns.pop() {
                return Ok(c);
            }
            if idle.open < self.size {
                idle.open += 1;
                drop(idle);
                return self.connect(context).inspect_err(|_| {
                    self.idle.lock().open -= 1;
                    self.returned.notify_one();
                });
            }
            self.returned.wait(&mut idle);
        }
    }

    fn connect(&self, context: &str) -> Result<Conn> {
        let client =
            crate::connectors::sql::pg::client(&self.target).map_err(|e| StoreError::Database {
                context: context.to_string(),
                message: e.message,
            })?;
        let mut conn = Conn {
            client,
            statements: HashMap::new(),
        };
        if let Some(schema) = &self.target.schema {
            // A bound value, so the schema name is never SQL text.
            conn.client
                .execute(
                    "SELECT set_config('search_path', $1, false)",
                    &[&format!("\"{}\"", schema.replace('"', "\"\""))],
                )
                .map_err(super::db_err(context))?;
        }
        Ok(conn)
    }

    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if conn.client.is_closed() {
            idle.open -= 1;
        } else {
            idle.conns.push(conn);
        }
        drop(idle);
        self.returned.notify_one();
    }
}

impl Drop for Pool {
    // Closing a client blocks on its own runtime too: never on an async runtime's thread.
    fn drop(&mut self) {
        let conns = std::mem::take(&mut self.idle.get_mut().conns);
        off_runtime(move || drop(conns));
    }
}

/// Runs blocking database work where it may block: on a multi-threaded tokio runtime's thread
/// through `block_in_place` (the runtime hands the thread's other tasks to another thread),
/// elsewhere (OS threads, `spawn_blocking`) directly. The `postgres` client would panic on a
/// runtime thread; a current-thread runtime is not used by the server (its thread would
/// still panic there, loudly).
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
