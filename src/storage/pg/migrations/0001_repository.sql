-- recond's repository, version 1: objects, their equality index, links, runs, association
-- entries, audit events, named state, liveSync tokens and the `sync` audit topic.
--
-- Identifiers are TEXT COLLATE "C": byte order, as the embedded store pages ids. Encoded
-- values (`record`, `value`) are recond's versioned codec (storage::codec), not SQL: only
-- recond reads them. Only SQL that CockroachDB and YugabyteDB also run (no advisory locks,
-- no deferred constraints, no triggers).

CREATE TABLE recond_objects (
    set_name TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    rev BIGINT NOT NULL,
    -- The JSON body as recond wrote it (TEXT, not JSONB: IDM's key order is kept).
    body TEXT NOT NULL,
    PRIMARY KEY (set_name, id)
);

CREATE TABLE recond_index (
    set_name TEXT COLLATE "C" NOT NULL,
    attr TEXT COLLATE "C" NOT NULL,
    term BYTEA NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (set_name, attr, term, id)
);

-- One link per source and one per target, per link type and qualifier: a second link for
-- either side is refused by the database itself (SQLSTATE 23505), whichever node writes it.
CREATE TABLE recond_links (
    link_type TEXT COLLATE "C" NOT NULL,
    qualifier TEXT COLLATE "C" NOT NULL,
    first_id TEXT COLLATE "C" NOT NULL,
    second_id TEXT COLLATE "C" NOT NULL,
    rev BIGINT NOT NULL,
    PRIMARY KEY (link_type, qualifier, first_id),
    CONSTRAINT recond_links_one_per_second UNIQUE (link_type, qualifier, second_id)
);

CREATE TABLE recond_runs (
    seq BIGINT PRIMARY KEY,
    run_id TEXT NOT NULL,
    mapping TEXT NOT NULL,
    completed BOOLEAN NOT NULL,
    record BYTEA NOT NULL
);

-- Runs removed whose entries and audit events are still to be reclaimed.
CREATE TABLE recond_purges (
    seq BIGINT PRIMARY KEY
);

CREATE TABLE recond_entries (
    seq BIGINT NOT NULL,
    item BIGINT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (seq, item)
);

CREATE TABLE recond_audit (
    seq BIGINT NOT NULL,
    item BIGINT NOT NULL,
    record BYTEA NOT NULL,
    PRIMARY KEY (seq, item)
);

CREATE TABLE recond_meta (
    name TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE recond_sync_tokens (
    set_name TEXT COLLATE "C" PRIMARY KEY,
    token TEXT NOT NULL,
    rev BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE recond_sync_audit (
    no BIGINT PRIMARY KEY,
    event TEXT NOT NULL
);

-- `Store::next_id`: run sequence numbers and `sync` audit event numbers.
CREATE SEQUENCE recond_ids;
