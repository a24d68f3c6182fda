-- 0003: what a clustered run keeps beside its open pages (src/cluster/pg.rs): its spec (scope
-- 'specs', one row per run in progress, listed by every node about once a second), each node's
-- report and the results of its completed pages (done rows of the run's scope 'pages/<run id>').
-- 0002's index covers open pages only; this one finds a scope's rows whatever their state.
CREATE INDEX IF NOT EXISTS recond_claims_scoped ON recond_claims (scope, key) WHERE scope IS NOT NULL;
