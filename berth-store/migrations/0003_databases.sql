-- Database services of an environment. Credentials (and an external server's URL) are
-- encrypted with the master key.
CREATE TABLE databases (
    id TEXT PRIMARY KEY NOT NULL,
    environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    credentials_ciphertext BLOB NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (environment_id, name)
);

-- A variable may follow a built-in one (e.g. DATABASE_URL = BERTH_DATABASE_MAIN_URL).
ALTER TABLE variables ADD COLUMN alias_of TEXT;
