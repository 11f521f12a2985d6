-- Environment actions and preview environments.

-- A stopped environment keeps its containers and data but runs nothing and refuses
-- deployments until it is started again.
ALTER TABLE environments ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;

-- Previews enabled on an environment (the blueprint a pull request's preview is cloned from).
CREATE TABLE preview_settings (
    environment_id TEXT PRIMARY KEY NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    with_data INTEGER NOT NULL,
    max_previews INTEGER NOT NULL,
    -- Previews with no activity for longer than this are deleted.
    expire_after_seconds INTEGER NOT NULL,
    allow_forks INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per live preview environment (`pr-<number>`); it goes with its environment.
CREATE TABLE previews (
    environment_id TEXT PRIMARY KEY NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    blueprint_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    head_branch TEXT NOT NULL,
    head_commit TEXT NOT NULL,
    head_repository_url TEXT NOT NULL,
    from_fork INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    -- Unix seconds of the last pull-request event, for expiry.
    last_activity_unix INTEGER NOT NULL,
    UNIQUE (blueprint_id, number)
);

-- Pull requests that got no preview, and why (over the limit, from a fork).
CREATE TABLE preview_refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    blueprint_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    head_branch TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX preview_refusals_by_blueprint ON preview_refusals (blueprint_id, id);
