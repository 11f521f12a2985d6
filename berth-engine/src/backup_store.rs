//! The backup store: where backup files are kept, behind a small trait (put, get with the
//! checksum verified, delete of one object), with the local directory as the default
//! implementation. The S3-compatible store lives in its own crate (`berth-s3`).
//!
//! Objects are named `<database id>/<file name>`. A backup is first written in full to a
//! staging file on the server's disk (hashed on the way); `put` then moves or uploads that
//! finished file, so a store never holds a partial backup under its final name.
//!
//! Guarantees: `get` hands out a local file only after its SHA-256 matched the one recorded
//! when the backup was taken; a fetched copy (remote stores) is removed when dropped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// Why the backup store failed, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum BackupStoreError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup object {0} is not in the backup store")]
    NotFound(String),
    #[error("backup object {key} is damaged: its SHA-256 is {actual}, {expected} was recorded when it was taken")]
    ChecksumMismatch { key: String, expected: String, actual: String },
    /// A remote store answered with an error or could not be reached.
    #[error("the backup store {0}")]
    Remote(String),
}

impl BackupStoreError {
    pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::Io { what, path: path.to_owned(), source }
    }
}

/// A backup file on the server's disk whose checksum was verified; a temporary copy (from
/// a remote store) is deleted when this is dropped.
#[derive(Debug)]
pub struct FetchedBackup {
    pub path: PathBuf,
    temporary: bool,
}

impl FetchedBackup {
    /// The file in place (a local store's own file: never deleted by this handle).
    pub fn in_place(path: PathBuf) -> Self {
        Self { path, temporary: false }
    }

    /// A downloaded copy, deleted on drop.
    pub fn temporary(path: PathBuf) -> Self {
        Self { path, temporary: true }
    }
}

impl Drop for FetchedBackup {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where backup files are kept.
#[async_trait::async_trait]
pub trait BackupStore: Send + Sync {
    /// `local` or `s3`: recorded with each backup, so a record names the store it is in.
    fn kind(&self) -> &'static str;

    /// Where an object is, for people: a path or an `s3://bucket/key` URL.
    fn location(&self, key: &str) -> String;

    /// Stores the finished file `staged` (of `size` bytes, SHA-256 `sha256`) as `key`.
    /// The staged file is consumed: moved into place or deleted after the upload.
    async fn put(
        &self,
        key: &str,
        staged: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), BackupStoreError>;

    /// A local file holding the object, after verifying its SHA-256 against `sha256`.
    /// Remote stores download into `scratch_dir`.
    async fn get(
        &self,
        key: &str,
        sha256: &str,
        scratch_dir: &Path,
    ) -> Result<FetchedBackup, BackupStoreError>;

    /// Removes an object; one already gone is not an error.
    async fn delete(&self, key: &str) -> Result<(), BackupStoreError>;
}

/// The hex SHA-256 of a file, read in chunks.
pub async fn sha256_of_file(path: &Path) -> Result<String, BackupStoreError> {
    let mut file =
        tokio::fs::File::open(path).await.map_err(BackupStoreError::io("cannot open", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read =
            file.read(&mut buffer).await.map_err(BackupStoreError::io("cannot read", path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Backups as files under a directory of the server (`<data-dir>/backups` by default),
/// private to the server's user.
#[derive(Debug, Clone)]
pub struct LocalDirectoryStore {
    root: PathBuf,
}

impl LocalDirectoryStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[async_trait::async_trait]
impl BackupStore for LocalDirectoryStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn location(&self, key: &str) -> String {
        self.path_of(key).display().to_string()
    }

    async fn put(
        &self,
        key: &str,
        staged: &Path,
        _size: u64,
        _sha256: &str,
    ) -> Result<(), BackupStoreError> {
        let path = self.path_of(key);
        let directory = path.parent().unwrap_or(&self.root).to_owned();
        tokio::fs::create_dir_all(&directory)
            .await
            .map_err(BackupStoreError::io("cannot create", &directory))?;
        tokio::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o600))
            .await
            .map_err(BackupStoreError::io("cannot protect", staged))?;
        // Same file system in the default layout (the staging folder is under the root):
        // a rename is atomic. Elsewhere, copy to a hidden name, then rename.
        if tokio::fs::rename(staged, &path).await.is_err() {
            let hidden = directory.join(format!(
                ".{}.partial",
                path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ));
            tokio::fs::copy(staged, &hidden)
                .await
                .map_err(BackupStoreError::io("cannot copy to", &hidden))?;
            let file = tokio::fs::File::open(&hidden)
                .await
                .map_err(BackupStoreError::io("cannot open", &hidden))?;
            file.sync_all().await.map_err(BackupStoreError::io("cannot sync", &hidden))?;
            tokio::fs::rename(&hidden, &path)
                .await
                .map_err(BackupStoreError::io("cannot move into place", &path))?;
            let _ = tokio::fs::remove_file(staged).await;
        }
        // The rename is durable only once the directory is synced.
        if let Ok(directory) = tokio::fs::File::open(&directory).await {
            let _ = directory.sync_all().await;
        }
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        sha256: &str,
        _scratch_dir: &Path,
    ) -> Result<FetchedBackup, BackupStoreError> {
        let path = self.path_of(key);
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Err(BackupStoreError::NotFound(path.display().to_string()));
        }
        let actual = sha256_of_file(&path).await?;
        if actual != sha256 {
            return Err(BackupStoreError::ChecksumMismatch {
                key: key.to_owned(),
                expected: sha256.to_owned(),
                actual,
            });
        }
        Ok(FetchedBackup::in_place(path))
    }

    async fn delete(&self, key: &str) -> Result<(), BackupStoreError> {
        let path = self.path_of(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(BackupStoreError::Io { what: "cannot delete", path, source: error }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn local_store_moves_verifies_and_deletes() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalDirectoryStore::new(root.path().to_owned());
        let staged = root.path().join("staged");
        std::fs::write(&staged, b"dump").unwrap();
        let sha = sha256_of_file(&staged).await.unwrap();
        store.put("db/one.sql", &staged, 4, &sha).await.unwrap();
        assert!(!staged.exists());
        let fetched = store.get("db/one.sql", &sha, root.path()).await.unwrap();
        assert_eq!(std::fs::read(&fetched.path).unwrap(), b"dump");
        let mode = std::fs::metadata(&fetched.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(fetched);
        assert!(root.path().join("db/one.sql").exists(), "a local file stays after get");
        let wrong = store.get("db/one.sql", &"0".repeat(64), root.path()).await;
        assert!(matches!(wrong, Err(BackupStoreError::ChecksumMismatch { .. })));
        store.delete("db/one.sql").await.unwrap();
        store.delete("db/one.sql").await.unwrap();
        assert!(matches!(
            store.get("db/one.sql", &sha, root.path()).await,
            Err(BackupStoreError::NotFound(_))
        ));
    }
}
