-- Rollouts: several instances per deployment, a configuration snapshot per deployed
-- service (encrypted: it holds resolved secrets) for rollbacks, and rollback provenance.
ALTER TABLE deployment_services ADD COLUMN instances INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deployment_services ADD COLUMN config_snapshot BLOB;
ALTER TABLE deployments ADD COLUMN rollback_of TEXT;
