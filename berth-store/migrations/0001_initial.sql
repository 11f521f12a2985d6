-- The initial schema of the embedded store. Ids are UUID strings, times RFC 3339 UTC.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- SHA-256 of the token: the token itself is never stored.
    token_hash TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE projects (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE environments (
    id TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    branch TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE applications (
    id TEXT PRIMARY KEY NOT NULL,
    environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    -- Git token or SSH key, encrypted with the master key.
    credential_ciphertext BLOB,
    status TEXT NOT NULL,
    current_deployment_id TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (environment_id, name)
);

CREATE TABLE variables (
    id TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    environment_id TEXT REFERENCES environments(id) ON DELETE CASCADE,
    application_id TEXT REFERENCES applications(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Exactly one of the two is set: plain values in clear, secrets encrypted.
    value_plain TEXT,
    value_ciphertext BLOB,
    secret INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX variables_unique_per_scope
    ON variables (project_id, IFNULL(environment_id, ''), IFNULL(application_id, ''), name);

CREATE TABLE deployments (
    id TEXT PRIMARY KEY NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    application_id TEXT REFERENCES applications(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    failure_json TEXT
);
CREATE INDEX deployments_by_environment ON deployments (environment_id, created_at);
CREATE INDEX deployments_by_status ON deployments (status);

-- What a deployment put in place for each application it covered.
CREATE TABLE deployment_services (
    deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    application_id TEXT NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    application_name TEXT NOT NULL,
    git_commit TEXT,
    image TEXT,
    container_name TEXT,
    PRIMARY KEY (deployment_id, application_id)
);

CREATE TABLE deployment_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    application_name TEXT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_ms INTEGER,
    message TEXT
);
CREATE INDEX deployment_steps_by_deployment ON deployment_steps (deployment_id, id);

CREATE TABLE deployment_logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    application_name TEXT,
    step TEXT,
    ts TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX deployment_logs_by_deployment ON deployment_logs (deployment_id, id);
