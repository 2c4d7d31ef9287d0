-- 0021_backup_log: the change log incremental backups read.
--
-- Once a database has been backed up, triggers on every table (made by
-- mangostore.backup.changelog, so they follow the tables the database has) record
-- which block of 4 rowids, or which primary key of a table WITHOUT ROWID, each write
-- touched, tagged with the current epoch. A backup bumps the epoch in the same instant
-- its snapshot starts, so an incremental backup writes exactly the blocks and keys
-- tagged after its parent's epoch, without reading the rest of the database.
-- backup_log_counts adds up the rows inserted and deleted per table and epoch, so the
-- row counts a manifest records come without counting (uncertain: a write met a row on
-- a unique key, which OR REPLACE deletes with no trigger; that table is counted).
--
-- backup_log_state.digest covers the schema and the log's triggers as they were made:
-- when either changed (a migration, a table renamed or rebuilt, a unique index added),
-- the triggers are made again and a new log begins. backup_log_probe holds one row at a
-- high rowid: a VACUUM that renumbers the rowids of tables without an INTEGER PRIMARY
-- KEY moves it too, and the log starts again.
--
-- These tables are this copy's own bookkeeping: backups hold their schema but not their
-- rows, and a restored database starts a new log (a new log_id).

-- migrate:up
CREATE TABLE backup_log_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_id TEXT NOT NULL,
    epoch INTEGER NOT NULL CHECK (epoch >= 1),
    pruned_to INTEGER NOT NULL DEFAULT 0 CHECK (pruned_to >= 0),
    digest TEXT NOT NULL
);
CREATE TABLE backup_log_probe (placed INTEGER NOT NULL);
CREATE TABLE backup_log (
    tbl TEXT NOT NULL,
    key NOT NULL, -- no type: a block number or a key literal, stored as given
    epoch INTEGER NOT NULL,
    PRIMARY KEY (tbl, key)
) WITHOUT ROWID;
-- An entry is rewritten once per block and epoch (the upsert skips an entry already
-- tagged with the current epoch), so this index costs little, and it keeps a backup's
-- reads of the log, and its pruning, to the entries it needs.
CREATE INDEX backup_log_by_epoch ON backup_log (epoch);
CREATE TABLE backup_log_counts (
    tbl TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    added INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0,
    uncertain INTEGER NOT NULL DEFAULT 0 CHECK (uncertain IN (0, 1)),
    PRIMARY KEY (tbl, epoch)
) WITHOUT ROWID;

-- migrate:down
-- The triggers mangostore.backup.changelog made on every table write these tables.
-- migrate:drop-triggers backup_log_
DROP TABLE backup_log_counts;
DROP TABLE backup_log;
DROP TABLE backup_log_probe;
DROP TABLE backup_log_state;
