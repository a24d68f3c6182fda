-- 0002: cluster coordination (src/cluster/pg.rs): node liveness and claimed rows with leases.
--
-- Plain rows with leases, no advisory locks: CockroachDB and YugabyteDB run these statements
-- too (INSERT ... ON CONFLICT DO UPDATE ... WHERE, SELECT ... FOR UPDATE SKIP LOCKED), while
-- advisory locks differ there. Every lease is computed from the database's clock (now()), never
-- a node's, so nodes with skewed clocks still agree on who holds what.

-- A node is live while heartbeat_until is in the future; it renews it periodically.
CREATE TABLE IF NOT EXISTS recond_nodes (
    node_id         text PRIMARY KEY,
    heartbeat_until timestamptz NOT NULL
);

-- One row per claimed key: a mapping's active run, a schedule's firing, a page of a clustered
-- run. The holder (node_id) keeps it while lease_until is in the future; once it is past, any
-- node may take it (the holder died or stalled). A done row is never taken again (a firing that
-- happened, a page that was processed).
CREATE TABLE IF NOT EXISTS recond_claims (
    key         text PRIMARY KEY,
    -- The holder; NULL for an offered page nobody has taken yet.
    node_id     text,
    lease_until timestamptz NOT NULL,
    -- What the claim carries: a run id, a page's source ids (JSON).
    payload     text NOT NULL DEFAULT '',
    -- The group a row belongs to ('pages/<run id>' for a run's pages, NULL otherwise): pages
    -- are found by equality on it, which every engine indexes whatever its text collation.
    scope       text,
    done        boolean NOT NULL DEFAULT false
);

-- Only the pages not done yet, so a claim never reads the done ones. (Taking a page still reads
-- the run's open pages and sorts them while the table's statistics are young: 3.6 ms a page
-- over 2,000 pages on the loaded build machine, of which ~1.7 ms are the claim's and the
-- completion's round trips; see BENCHMARKS.md.) Partial indexes: PostgreSQL, CockroachDB
-- (20.2+) and YugabyteDB.
CREATE INDEX IF NOT EXISTS recond_claims_open_pages ON recond_claims (scope, key) WHERE NOT done;
