//! Shared pieces of the Docker engine tests: unique names per test (tests run
//! concurrently), a busybox base image, a log sink that records lines, waiting on a
//! condition with a deadline, and a cleanup guard that removes by name everything a test
//! registered, even when the test panics.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_docker::DockerEngine;
use berth_engine::adapters::LogSink;
use bollard::container::RemoveContainerOptions;
use bollard::image::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use bollard::volume::RemoveVolumeOptions;
use bollard::Docker;
use futures_util::StreamExt;

/// The offline base image made by scripts/build-base-images.sh.
pub(crate) const PROJECT_BASE_IMAGE: &str = "berth/busybox:1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (in this or another process) uses: `berth-test-<pid>-<n>-<what>`.
pub(crate) fn unique(what: &str) -> String {
    format!("berth-test-{}-{}-{what}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Everything one test needs; dropping it removes what the test registered.
pub(crate) struct Fixture {
    pub(crate) engine: DockerEngine,
    /// Direct engine access for set-up and checks the traits do not offer.
    pub(crate) docker: Docker,
    pub(crate) cleanup: Cleanup,
}

impl Fixture {
    pub(crate) async fn new() -> Fixture {
        let engine = DockerEngine::connect(None).await.expect("the Docker engine answers");
        let docker = Docker::connect_with_local_defaults()
            .expect("the Docker socket exists")
            .negotiate_version()
            .await
            .expect("the Docker engine answers");
        Fixture { engine, docker, cleanup: Cleanup::default() }
    }

    /// `berth/busybox:1` when the base-images script made it, else a busybox image
    /// imported for this test (and removed after it). `BERTH_TEST_OWN_BASE=1` forces the
    /// import.
    pub(crate) async fn base_image(&self) -> String {
        let forced = std::env::var("BERTH_TEST_OWN_BASE").is_ok_and(|v| v == "1");
        if !forced && self.docker.inspect_image(PROJECT_BASE_IMAGE).await.is_ok() {
            return PROJECT_BASE_IMAGE.to_owned();
        }
        let repository = format!("{}/busybox", unique("base"));
        let reference = format!("{repository}:1");
        let options = CreateImageOptions {
            from_src: "-".to_owned(),
            repo: repository,
            tag: "1".to_owned(),
            ..Default::default()
        };
        self.cleanup.image(&reference);
        let mut stream =
            self.docker.create_image(Some(options), Some(busybox_rootfs().into()), None);
        while let Some(item) = stream.next().await {
            item.expect("import the busybox base image");
        }
        // Failed builds leave their cached intermediate images (untagged children of
        // this base): remove the whole tree after the test.
        let id = self.docker.inspect_image(&reference).await.unwrap().id.unwrap();
        self.cleanup.image_tree(&id);
        reference
    }
}

/// A root filesystem with static busybox, the applets the tests use, `/etc/passwd` and
/// `/tmp` (what `docker import` of scripts/build-base-images.sh's tree would give).
fn busybox_rootfs() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (Debian's busybox-static, installed by scripts/setup-host.sh)");
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, kind: tar::EntryType, data: &[u8], link: Option<&str>| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        match link {
            Some(target) => builder.append_link(&mut header, path, target).unwrap(),
            None => builder.append_data(&mut header, path, data).unwrap(),
        }
    };
    for dir in ["bin/", "etc/", "root/"] {
        add(dir, 0o755, tar::EntryType::Directory, &[], None);
    }
    add("tmp/", 0o1777, tar::EntryType::Directory, &[], None);
    add("bin/busybox", 0o755, tar::EntryType::Regular, &busybox, None);
    for applet in
        ["sh", "echo", "httpd", "dd", "cat", "mkdir", "sleep", "false", "test", "wget", "ls"]
    {
        add(&format!("bin/{applet}"), 0o777, tar::EntryType::Symlink, &[], Some("busybox"));
    }
    let passwd =
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    add("etc/passwd", 0o644, tar::EntryType::Regular, passwd, None);
    builder.into_inner().unwrap()
}

/// Names of what a test created, removed on drop in dependency order: containers,
/// networks, volumes, then images newest first (an image built FROM another goes first).
#[derive(Default)]
pub(crate) struct Cleanup {
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
    image_trees: Mutex<Vec<String>>,
}

impl Cleanup {
    pub(crate) fn container(&self, name: &str) {
        self.containers.lock().unwrap().push(name.to_owned());
    }
    pub(crate) fn network(&self, name: &str) {
        self.networks.lock().unwrap().push(name.to_owned());
    }
    pub(crate) fn volume(&self, name: &str) {
        self.volumes.lock().unwrap().push(name.to_owned());
    }
    pub(crate) fn image(&self, reference: &str) {
        self.images.lock().unwrap().push(reference.to_owned());
    }
    /// An image created for this test only, with every image built on it.
    pub(crate) fn image_tree(&self, id: &str) {
        self.image_trees.lock().unwrap().push(id.to_owned());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let take = |list: &Mutex<Vec<String>>| std::mem::take(&mut *list.lock().unwrap());
        let (containers, networks, volumes, mut images, trees) = (
            take(&self.containers),
            take(&self.networks),
            take(&self.volumes),
            take(&self.images),
            take(&self.image_trees),
        );
        images.reverse();
        // Drop runs inside (or after) the test's runtime, possibly while unwinding: use a
        // fresh thread with its own runtime and connection.
        let cleaner = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let Ok(docker) = Docker::connect_with_local_defaults() else { return };
                let Ok(docker) = docker.negotiate_version().await else { return };
                for name in containers {
                    let options = RemoveContainerOptions { force: true, v: true, link: false };
                    report(&name, docker.remove_container(&name, Some(options)).await);
                }
                for name in networks {
                    report(&name, docker.remove_network(&name).await);
                }
                for name in volumes {
                    report(&name, docker.remove_volume(&name, None::<RemoveVolumeOptions>).await);
                }
                for name in images {
                    let options = RemoveImageOptions { force: false, noprune: false };
                    report(&name, docker.remove_image(&name, Some(options), None).await.map(drop));
                }
                for root in trees {
                    for id in descendants_first(&docker, &root).await {
                        let options = RemoveImageOptions { force: false, noprune: false };
                        report(&id, docker.remove_image(&id, Some(options), None).await.map(drop));
                    }
                }
            });
        });
        let _ = cleaner.join();
    }
}

/// `root` and every image whose parent chain leads to it, children before parents.
async fn descendants_first(docker: &Docker, root: &str) -> Vec<String> {
    let options = ListImagesOptions::<String> { all: true, ..Default::default() };
    let Ok(images) = docker.list_images(Some(options)).await else { return Vec::new() };
    let mut order = Vec::new();
    let mut pending = vec![(root.to_owned(), false)];
    while let Some((id, children_done)) = pending.pop() {
        if children_done {
            order.push(id);
            continue;
        }
        pending.push((id.clone(), true));
        for child in images.iter().filter(|image| image.parent_id == id) {
            pending.push((child.id.clone(), false));
        }
    }
    order
}

fn report(name: &str, result: Result<(), bollard::errors::Error>) {
    match result {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(error) => eprintln!("cleanup of {name} failed: {error}"),
    }
}

/// A `LogSink` that keeps every line.
#[derive(Default)]
pub(crate) struct RecordedLog(Mutex<Vec<String>>);

impl RecordedLog {
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub(crate) fn contains(&self, text: &str) -> bool {
        self.0.lock().unwrap().iter().any(|line| line.contains(text))
    }
}

impl LogSink for RecordedLog {
    fn line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

/// Polls `check` until it yields a value or `deadline` passes (then panics with `what`).
pub(crate) async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Writes `files` (path → content) into a new checkout directory.
pub(crate) fn checkout(files: &[(&str, &str)]) -> tempfile::TempDir {
    let directory = tempfile::Builder::new().prefix("berth-docker-test-").tempdir().unwrap();
    for (path, content) in files {
        let path = directory.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    directory
}

/// Labels as Berth gives them to an image of a (made-up) project.
pub(crate) fn image_labels(test: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("berth.managed-by".to_owned(), "berth".to_owned()),
        ("berth.project".to_owned(), test.to_owned()),
    ])
}

/// One HTTP/1.0 GET to 127.0.0.1; the whole response, or `None` if nothing answers yet.
pub(crate) async fn http_get(address: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    (!response.is_empty()).then_some(response)
}
