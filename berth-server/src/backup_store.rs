//! Opens the backup store the server was configured with: the local directory
//! (`<data-dir>/backups`), or an S3-compatible bucket, checked at start so that a wrong
//! endpoint, bucket or key fails the start with a clear message rather than the first
//! backup.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use berth_engine::backup_store::{BackupStore, LocalDirectoryStore};

use crate::config::{BackupStoreSettings, ServerSettings};

pub(crate) async fn backup_store(
    settings: &ServerSettings,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn BackupStore>> {
    match &settings.backup_store {
        BackupStoreSettings::Local => {
            Ok(Arc::new(LocalDirectoryStore::new(data_dir.join("backups"))))
        }
        BackupStoreSettings::S3(s3) => {
            let store = berth_s3::S3Store::new(s3.clone()).map_err(anyhow::Error::msg)?;
            store.check_bucket().await.context("the S3 backup store is not usable")?;
            tracing::info!(endpoint = %s3.endpoint, bucket = %s3.bucket, "backups go to the S3 store");
            Ok(Arc::new(store))
        }
    }
}
