//! Persisting the applied route table so that a restarted proxy serves its last table at
//! once, before the control plane is back to send it again. Writes are atomic (a temporary
//! file in the same directory, fsynced, then renamed over the old one): a crash leaves
//! either the old table or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_domain::routes::RouteTable;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StateError {
    #[error("cannot read the saved route table {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the saved route table {path} is not a valid route table \
         (it is ignored and will be overwritten by the next update)"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot save the route table to {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `Ok(None)` when no table was ever saved.
pub(crate) fn load_route_table(path: &Path) -> Result<Option<RouteTable>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StateError::Read { path: path.to_owned(), source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Parse { path: path.to_owned(), source })
}

/// Blocking: call it from `spawn_blocking`.
pub(crate) fn save_route_table(path: &Path, table: &RouteTable) -> Result<(), StateError> {
    let write_error = |source| StateError::Write { path: path.to_owned(), source };
    let bytes = serde_json::to_vec_pretty(table).map_err(|error| write_error(error.into()))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&directory).map_err(write_error)?;
    let temporary = temporary_path_beside(path);
    let result = write_and_rename(&temporary, path, &directory, &bytes);
    if result.is_err() {
        // Best effort: a leftover temporary file is harmless but untidy.
        let _ = fs::remove_file(&temporary);
    }
    result.map_err(write_error)
}

fn write_and_rename(
    temporary: &Path,
    path: &Path,
    directory: &Path,
    bytes: &[u8],
) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temporary, path)?;
    // The rename is only durable once the directory entry is on disk.
    File::open(directory)?.sync_all()
}

/// Unique per process and call, so that two writers never share a temporary file.
fn temporary_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let file_name = path
        .file_name()
        .map_or_else(|| "route-table".to_owned(), |name| name.to_string_lossy().into_owned());
    path.with_file_name(format!(".{file_name}.{}.{sequence}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_domain::routes::Route;

    #[test]
    fn a_saved_table_loads_back_and_leaves_no_temporary_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("nested").join("routes.json");
        assert!(load_route_table(&path).unwrap().is_none());

        let table = RouteTable {
            generation: 7,
            routes: vec![Route {
                host: "web.test".to_owned(),
                upstreams: vec!["127.0.0.1:4000".parse().unwrap()],
            }],
        };
        save_route_table(&path, &table).unwrap();
        save_route_table(&path, &table).unwrap();
        assert_eq!(load_route_table(&path).unwrap(), Some(table));
        let entries: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "only the table itself remains: {entries:?}");
    }

    #[test]
    fn a_corrupt_table_is_reported_with_its_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("routes.json");
        fs::write(&path, b"{ not json").unwrap();
        let error = load_route_table(&path).unwrap_err();
        assert!(matches!(error, StateError::Parse { .. }));
        assert!(error.to_string().contains(&path.display().to_string()));
    }
}
