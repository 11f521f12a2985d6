-- Backup records outlive their database: the table is recreated without the cascading
-- foreign key, and each record keeps what is needed to list and restore it after the
-- database is gone (its environment, name and engine, and the store that holds its file).
CREATE TABLE backups_v5 (
    id TEXT PRIMARY KEY NOT NULL,
    -- The database the backup was taken of; it may no longer exist.
    database_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    database_name TEXT NOT NULL,
    -- `postgresql`, `mariadb`, `redis`: a backup restores only into the same engine.
    engine TEXT NOT NULL,
    file_name TEXT NOT NULL,
    -- `local` or `s3`: the backup store the file was written to.
    store TEXT NOT NULL DEFAULT 'local',
    size_bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    -- `manual`, `scheduled` or `final`.
    reason TEXT NOT NULL,
    -- Scheduled backups: the schedule's slot (RFC 3339) this backup was taken for.
    scheduled_slot TEXT,
    created_at TEXT NOT NULL
);
INSERT INTO backups_v5 (id, database_id, environment_id, database_name, engine, file_name, store, size_bytes, sha256, reason, scheduled_slot, created_at)
    SELECT b.id, b.database_id, d.environment_id, d.name, json_extract(d.spec_json, '$.engine'),
           b.file_name, 'local', b.size_bytes, b.sha256, b.reason, NULL, b.created_at
    FROM backups b JOIN databases d ON d.id = b.database_id
    ORDER BY b.rowid;
DROP TABLE backups;
ALTER TABLE backups_v5 RENAME TO backups;
CREATE INDEX backups_by_database ON backups (database_id, created_at);
CREATE INDEX backups_by_name ON backups (environment_id, database_name, created_at);
-- A schedule slot is backed up at most once, even across crashes and restarts.
CREATE UNIQUE INDEX backups_one_per_slot ON backups (database_id, scheduled_slot)
    WHERE scheduled_slot IS NOT NULL;

-- The backup schedule and retention of a database (one row per database that has one).
CREATE TABLE backup_schedules (
    database_id TEXT PRIMARY KEY NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    -- A cron expression (5 fields, or 6 with seconds first); NULL: no scheduled backups.
    cron TEXT,
    -- How many scheduled backups are kept (the newest ones).
    retention INTEGER NOT NULL,
    -- The last slot handled (backed up, or the time the schedule was set): the next run is
    -- the first slot after it. Stored, so a restart neither repeats nor forgets a slot.
    last_slot TEXT NOT NULL,
    -- Why the last attempt failed, and when (retried a minute later); NULL after success.
    last_error TEXT,
    last_attempt_at TEXT,
    updated_at TEXT NOT NULL
);
