//! The S3-compatible backup store: a small S3 client (PUT, GET, DELETE and HEAD of objects
//! and of the bucket, path-style URLs, AWS Signature Version 4) on reqwest, implementing
//! the engine's `BackupStore` trait. Works with AWS S3 and compatible servers (MinIO,
//! Ceph, Garage, moto).
//!
//! Guarantees: uploads stream the staged file (never held in memory) and are signed with
//! the payload's SHA-256, so the server rejects a body that does not match it; downloads
//! stream into a scratch file, hashed on the way, and are handed out only when the hash
//! matches the recorded one. The secret access key is never logged nor put in an error.

mod signing;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_engine::backup_store::{BackupStore, BackupStoreError, FetchedBackup};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use signing::Credentials;

/// How long one request may take (a multi-gigabyte upload must fit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// A single PUT accepts up to 5 GiB.
const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// The most of an error answer's body that is read (for its `<Code>` and `<Message>`).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Numbers the downloads of this process, so that each has its own scratch file.
static NEXT_DOWNLOAD: AtomicU64 = AtomicU64::new(0);

/// Why the S3 settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    #[error("--s3-endpoint must be an http:// or https:// URL without a path, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000; got {0:?}")]
    Endpoint(String),
    #[error("--s3-bucket {0:?} is not a valid bucket name (3-63 lower-case letters, digits, '.' and '-')")]
    Bucket(String),
    #[error("--s3-prefix {0:?} has a '.' or '..' path segment: HTTP clients rewrite those, so the request would address another key than the one signed; use a prefix like berth/ or backups/berth/")]
    Prefix(String),
    #[error("cannot create the HTTP client: {0}")]
    Client(String),
}

/// Where and how to reach the bucket.
#[derive(Clone)]
pub struct S3Settings {
    /// `scheme://host[:port]`, no trailing slash.
    pub endpoint: String,
    pub bucket: String,
    /// Prepended to every object key (e.g. `berth/`); may be empty.
    pub prefix: String,
    pub region: String,
    pub credentials: Credentials,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The S3-compatible backup store.
#[derive(Debug, Clone)]
pub struct S3Store {
    settings: S3Settings,
    host: String,
    client: reqwest::Client,
}

impl S3Store {
    pub fn new(mut settings: S3Settings) -> Result<Self, S3ConfigError> {
        settings.endpoint = settings.endpoint.trim_end_matches('/').to_owned();
        let rest = settings
            .endpoint
            .strip_prefix("http://")
            .or_else(|| settings.endpoint.strip_prefix("https://"))
            .ok_or_else(|| S3ConfigError::Endpoint(settings.endpoint.clone()))?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(S3ConfigError::Endpoint(settings.endpoint.clone()));
        }
        let bucket_ok = (3..=63).contains(&settings.bucket.len())
            && settings
                .bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        if !bucket_ok {
            return Err(S3ConfigError::Bucket(settings.bucket.clone()));
        }
        // URL parsers resolve `.` and `..` segments (also their %2E spellings) before
        // sending, which would break the signature and could address another object.
        if settings.prefix.split('/').any(|segment| segment == "." || segment == "..") {
            return Err(S3ConfigError::Prefix(settings.prefix.clone()));
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| S3ConfigError::Client(e.to_string()))?;
        // The Host header leaves out a default port and is lower-case (the URL parser
        // normalises both); the signature must match it.
        let host = match settings.endpoint.starts_with("https://") {
            true => rest.strip_suffix(":443"),
            false => rest.strip_suffix(":80"),
        }
        .unwrap_or(rest)
        .to_ascii_lowercase();
        Ok(Self { host, settings, client })
    }

    fn object_key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.prefix)
    }

    /// The request path of an object (or of the bucket, for an empty key).
    fn path_of(&self, object_key: &str) -> String {
        if object_key.is_empty() {
            format!("/{}", signing::uri_encode(&self.settings.bucket, false))
        } else {
            format!(
                "/{}/{}",
                signing::uri_encode(&self.settings.bucket, false),
                signing::uri_encode(object_key, true)
            )
        }
    }

    fn request(
        &self,
        method: reqwest::Method,
        object_key: &str,
        payload_sha256: &str,
    ) -> reqwest::RequestBuilder {
        let path = self.path_of(object_key);
        let now = time::OffsetDateTime::now_utc();
        let signed = signing::sign(
            &signing::Request {
                method: method.as_str(),
                host: &self.host,
                path: &path,
                payload_sha256,
                region: &self.settings.region,
            },
            &self.settings.credentials,
            now,
        );
        self.client
            .request(method, format!("{}{path}", self.settings.endpoint))
            .header("x-amz-date", signed.amz_date)
            .header("x-amz-content-sha256", payload_sha256)
            .header("authorization", signed.authorization)
    }

    /// Checks that the bucket exists and the credentials may use it (at server start).
    pub async fn check_bucket(&self) -> Result<(), BackupStoreError> {
        let response = self
            .request(reqwest::Method::HEAD, "", signing::EMPTY_SHA256)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            404 => Err(BackupStoreError::Remote(format!(
                "at {} has no bucket {:?}; create it first",
                self.settings.endpoint, self.settings.bucket
            ))),
            403 => Err(BackupStoreError::Remote(format!(
                "at {} refused access to bucket {:?}: check the access key id and secret (BERTH_S3_ACCESS_KEY_ID, BERTH_S3_SECRET_ACCESS_KEY) and the region",
                self.settings.endpoint, self.settings.bucket
            ))),
            status => Err(BackupStoreError::Remote(format!(
                "at {} answered HTTP {status} for bucket {:?}",
                self.settings.endpoint, self.settings.bucket
            ))),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> BackupStoreError {
        // reqwest's message holds the URL (no credentials: they travel in headers).
        BackupStoreError::Remote(format!(
            "at {} cannot be reached: {error}",
            self.settings.endpoint
        ))
    }

    /// An error answer, with S3's `<Code>` and `<Message>` when it sent them.
    async fn failed(
        &self,
        what: &str,
        key: &str,
        mut response: reqwest::Response,
    ) -> BackupStoreError {
        let status = response.status();
        // S3's error documents are small: read no more than that from a misbehaving server.
        let mut bytes = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            bytes.extend_from_slice(&chunk);
            if bytes.len() >= MAX_ERROR_BODY_BYTES {
                break;
            }
        }
        let body = String::from_utf8_lossy(&bytes);
        let element = |name: &str| {
            let open = format!("<{name}>");
            let close = format!("</{name}>");
            let start = body.find(&open)? + open.len();
            let end = body[start..].find(&close)? + start;
            Some(body[start..end].to_owned())
        };
        let detail = match (element("Code"), element("Message")) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        };
        BackupStoreError::Remote(format!(
            "refused to {what} s3://{}/{key}: HTTP {} ({detail})",
            self.settings.bucket,
            status.as_u16()
        ))
    }
}

#[async_trait::async_trait]
impl BackupStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}", self.settings.bucket, self.object_key(key))
    }

    async fn put(
        &self,
        key: &str,
        staged: &Path,
        size: u64,
        sha256: &str,
    ) -> Result<(), BackupStoreError> {
        if size > MAX_SINGLE_PUT {
            return Err(BackupStoreError::Remote(format!(
                "cannot take a backup of {size} bytes: a single upload holds at most 5 GiB"
            )));
        }
        let object_key = self.object_key(key);
        let file = tokio::fs::File::open(staged)
            .await
            .map_err(BackupStoreError::io("cannot open", staged))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        let response = self
            .request(reqwest::Method::PUT, &object_key, sha256)
            .header("content-length", size)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !response.status().is_success() {
            return Err(self.failed("store", &object_key, response).await);
        }
        let _ = tokio::fs::remove_file(staged).await;
        tracing::debug!(key = %object_key, size, "backup uploaded");
        Ok(())
    }

    async fn get(
        &self,
        key: &str,
        sha256: &str,
        scratch_dir: &Path,
    ) -> Result<FetchedBackup, BackupStoreError> {
        let object_key = self.object_key(key);
        let mut response = self
            .request(reqwest::Method::GET, &object_key, signing::EMPTY_SHA256)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(BackupStoreError::NotFound(self.location(key)));
        }
        if !response.status().is_success() {
            return Err(self.failed("read", &object_key, response).await);
        }
        // A name of its own per download: two restores of the same backup at once must
        // not write into (and truncate) each other's verified copy.
        let download = NEXT_DOWNLOAD.fetch_add(1, Ordering::Relaxed);
        let path: PathBuf = scratch_dir.join(format!(
            ".download-{}-{}-{download}.partial",
            key.replace('/', "-"),
            std::process::id()
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(BackupStoreError::io("cannot create", &path))?;
        // From here on the handle removes the file, whatever happens.
        let fetched = FetchedBackup::temporary(path.clone());
        let mut hasher = Sha256::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                BackupStoreError::Remote(format!("download of {object_key} failed: {e}"))
            })?;
            let Some(chunk) = chunk else { break };
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(BackupStoreError::io("cannot write", &path))?;
        }
        file.flush().await.map_err(BackupStoreError::io("cannot write", &path))?;
        let actual = hex::encode(hasher.finalize());
        if actual != sha256 {
            return Err(BackupStoreError::ChecksumMismatch {
                key: self.location(key),
                expected: sha256.to_owned(),
                actual,
            });
        }
        Ok(fetched)
    }

    async fn delete(&self, key: &str) -> Result<(), BackupStoreError> {
        let object_key = self.object_key(key);
        let response = self
            .request(reqwest::Method::DELETE, &object_key, signing::EMPTY_SHA256)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        // S3 answers 204 whether or not the object existed.
        if response.status().is_success() || response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.failed("delete", &object_key, response).await)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings(endpoint: &str, bucket: &str) -> S3Settings {
        S3Settings {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            prefix: "berth/".into(),
            region: "us-east-1".into(),
            credentials: Credentials::new("AKID".into(), "secret".into()),
        }
    }

    #[test]
    fn refuses_bad_endpoints_and_buckets() {
        assert!(S3Store::new(settings("ftp://host", "bucket")).is_err());
        assert!(S3Store::new(settings("http://host/path", "bucket")).is_err());
        assert!(S3Store::new(settings("http://host:9000", "Bad_Bucket")).is_err());
        let store = S3Store::new(settings("http://127.0.0.1:9000/", "backups")).unwrap();
        assert_eq!(store.location("db/x.sql"), "s3://backups/berth/db/x.sql");
        assert_eq!(store.path_of("berth/db/a b.sql"), "/backups/berth/db/a%20b.sql");
    }

    #[test]
    fn the_url_sent_has_exactly_the_signed_path() {
        let store = S3Store::new(settings("http://S3.Example.COM:80", "backups")).unwrap();
        assert_eq!(store.host, "s3.example.com");
        for key in ["db/a b+c=d&e?f#g%h~i", "db/caf\u{e9}/x;y,z'(1)*!$@", "db//double/.hidden"] {
            let path = store.path_of(key);
            let url = reqwest::Url::parse(&format!("{}{path}", store.settings.endpoint)).unwrap();
            assert_eq!(url.path(), path, "key {key:?}");
            assert_eq!(url.host_str(), Some(store.host.as_str()));
            assert_eq!(url.port(), None);
            assert_eq!(url.query(), None, "key {key:?}");
        }
    }

    #[test]
    fn refuses_a_prefix_that_a_url_parser_would_rewrite() {
        for prefix in ["../", "a/./b/", "a/../"] {
            let mut bad = settings("http://127.0.0.1:9000", "backups");
            bad.prefix = prefix.into();
            assert!(matches!(S3Store::new(bad), Err(S3ConfigError::Prefix(_))), "{prefix}");
        }
    }

    #[test]
    fn debug_output_has_no_secret() {
        let settings = settings("http://127.0.0.1:9000", "backups");
        let store = S3Store::new(settings.clone()).unwrap();
        for text in
            [format!("{settings:?}"), format!("{store:?}"), format!("{:?}", settings.credentials)]
        {
            assert!(!text.contains("secret"), "{text}");
        }
    }
}
