//! First-start and every-start preparation: the data directory, the master key, the
//! store, and the organization with its admin token.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_engine::secrets::MasterKey;
use berth_store::{OrganizationRecord, Store};

use crate::auth;

/// Creates the data directory (mode 0700) if needed.
pub(crate) fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // An existing directory may be more open than we want: the store holds ciphertext and
    // token hashes, still nobody else's business.
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", data_dir.display()))?;
    Ok(())
}

pub(crate) fn load_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    let (key, created) = MasterKey::load_or_create(path)?;
    if created {
        tracing::info!(path = %path.display(), "created a new master key; back it up: without it stored secrets cannot be read");
    }
    Ok(key)
}

pub(crate) fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The organization, created with an admin token on first start. The token is written to
/// `<data-dir>/admin.token` (mode 0600) and only its hash is stored.
pub(crate) async fn ensure_organization(
    store: &Store,
    data_dir: &Path,
) -> anyhow::Result<OrganizationRecord> {
    if let Some(organization) = store.first_organization().await? {
        return Ok(organization);
    }
    let organization = store.create_organization("default").await?;
    let token = auth::generate_token();
    let path = admin_token_path(data_dir);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    store.create_api_token(organization.id, "admin", &auth::token_digest(&token), "admin").await?;
    Ok(organization)
}
