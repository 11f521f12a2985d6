//! Connecting: the version is negotiated down to what the engine speaks, and a daemon that
//! does not answer gives an error that says what to do.

use berth_docker::{DockerEngine, DockerError};

#[tokio::test]
async fn the_api_version_is_negotiated_with_the_engine() {
    let engine = DockerEngine::connect(None).await.unwrap();
    // Debian's docker.io 20.10 speaks 1.41; bollard 0.18 defaults to 1.47.
    let version: Vec<u32> =
        engine.api_version().split('.').map(|part| part.parse().unwrap()).collect();
    assert!(version <= vec![1, 47] && version >= vec![1, 41], "{version:?}");
}

#[tokio::test]
async fn a_missing_or_silent_daemon_is_reported_with_the_fix() {
    let missing = DockerEngine::connect(Some("/nonexistent/docker.sock")).await.unwrap_err();
    assert!(matches!(missing, DockerError::Socket { .. }), "{missing:?}");
    assert!(missing.to_string().contains("start it with scripts/setup-host.sh"), "{missing}");

    // A socket file nobody listens on any more.
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let silent = DockerEngine::connect(Some(path.to_str().unwrap())).await.unwrap_err();
    assert!(matches!(silent, DockerError::Unreachable { .. }), "{silent:?}");
    assert!(silent.to_string().contains("is dockerd running?"), "{silent}");
}
