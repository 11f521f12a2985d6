-- Git webhooks and auto-deploy: a webhook secret and automation settings per project, the
-- deliveries received (verdicts only, never payloads), the branch heads the polling
-- fallback last saw, and the environments created automatically for pushed branches.
CREATE TABLE project_git_settings (
    project_id TEXT PRIMARY KEY NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    -- The webhook secret, encrypted with the master key.
    webhook_secret_ciphertext BLOB,
    -- Seconds between polls of the followed branches; NULL: no polling.
    poll_interval_seconds INTEGER,
    -- Branch glob whose pushes create environments; NULL: off.
    branch_environments_glob TEXT,
    -- Name of the environment those are cloned from.
    branch_blueprint TEXT,
    branch_environments_with_data INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL when the delivery named no known project.
    project_id TEXT REFERENCES projects(id) ON DELETE CASCADE,
    project_name TEXT NOT NULL,
    provider TEXT NOT NULL,
    event TEXT NOT NULL,
    -- `accepted`, `ignored` or `refused`.
    verdict TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- What it caused: deployments queued, environments created or deleted.
    triggered TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL
);
CREATE INDEX webhook_deliveries_by_project ON webhook_deliveries (project_name, id);

CREATE TABLE polled_heads (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    -- The normalised repository URL.
    repository_key TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (project_id, repository_key, branch)
);

CREATE TABLE branch_environments (
    environment_id TEXT PRIMARY KEY NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    branch TEXT NOT NULL,
    created_at TEXT NOT NULL
);
