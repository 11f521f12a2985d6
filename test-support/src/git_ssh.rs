//! A real Git SSH server for tests: Debian's OpenSSH `sshd` on a loopback port with a
//! generated configuration, host key and deploy key, serving the bare repositories under a
//! directory as `ssh://USER@127.0.0.1:PORT/<abs path>/<repo>`. The host key can be
//! regenerated to test that a changed host key is refused. sshd is killed (by its pid)
//! when the fixture is dropped.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// sshd serving Git over SSH on 127.0.0.1, accepting exactly one generated deploy key.
pub struct GitSshServer {
    dir: tempfile::TempDir,
    repos_root: PathBuf,
    user: String,
    port: u16,
    sshd: Option<Child>,
    private_key: String,
    public_key: String,
}

/// An OpenSSH key pair in the formats `ssh-keygen` writes.
#[derive(Debug, Clone)]
pub struct SshKeyPair {
    /// The private key (`-----BEGIN OPENSSH PRIVATE KEY-----` ...).
    pub private_key: String,
    /// The `authorized_keys` line (`ssh-ed25519 AAAA... comment`).
    pub public_key: String,
}

/// Generates a new passphrase-less ed25519 key pair (e.g. a key the server does not
/// accept).
pub fn generate_key_pair() -> SshKeyPair {
    let dir = tempfile::tempdir().expect("temporary directory for a key pair");
    let path = dir.path().join("key");
    keygen(&path, "berth-test-key");
    read_key_pair(&path)
}

impl GitSshServer {
    /// Starts sshd for the repositories under `repos_root` and waits until it answers.
    pub fn start(repos_root: &Path) -> GitSshServer {
        // sshd refuses to start without its privilege-separation directory; a fresh
        // container has no /run/sshd (nothing ran the package's init script).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd for sshd");
        let dir = tempfile::tempdir().expect("temporary directory for sshd");
        keygen(&dir.path().join("host_ed25519"), "berth-test-host");
        let deploy_key_path = dir.path().join("deploy_key");
        keygen(&deploy_key_path, "berth-test-deploy-key");
        let keys = read_key_pair(&deploy_key_path);
        // `restrict`: no forwarding, no pty: the key can only run the git command.
        std::fs::write(
            dir.path().join("authorized_keys"),
            format!("restrict {}\n", keys.public_key),
        )
        .expect("write authorized_keys");

        let mut server = GitSshServer {
            repos_root: repos_root.canonicalize().expect("repository root exists"),
            user: current_user(),
            port: 0,
            sshd: None,
            private_key: keys.private_key,
            public_key: keys.public_key,
            dir,
        };
        // The free port is found by binding and releasing it, so another process may take
        // it in between: retry with a new port when sshd cannot bind.
        let mut last_failure = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("sshd did not start: {last_failure}");
    }

    /// `ssh://USER@127.0.0.1:PORT/<repos_root>/<repo>`.
    pub fn url(&self, repo: &str) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}/{}",
            self.user,
            self.port,
            self.repos_root.display(),
            repo.trim_start_matches('/')
        )
    }

    /// The deploy key the server accepts (OpenSSH private key format).
    pub fn private_key(&self) -> String {
        self.private_key.clone()
    }

    /// The `authorized_keys` line of [`GitSshServer::private_key`].
    pub fn public_key(&self) -> String {
        self.public_key.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The SHA256 fingerprint of the current host key (`SHA256:...`).
    pub fn host_key_fingerprint(&self) -> String {
        let output = command("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.dir.path().join("host_ed25519.pub"))
            .output()
            .expect("run ssh-keygen -l");
        let text = String::from_utf8_lossy(&output.stdout);
        text.split_whitespace()
            .find(|field| field.starts_with("SHA256:"))
            .unwrap_or_else(|| panic!("no fingerprint in ssh-keygen output {text:?}"))
            .to_owned()
    }

    /// Replaces the host key with a new one and restarts sshd on the same port, as a
    /// server reinstalled (or impersonated) at the same address would look.
    pub fn regenerate_host_key(&mut self) {
        self.stop();
        for name in ["host_ed25519", "host_ed25519.pub"] {
            let _ = std::fs::remove_file(self.dir.path().join(name));
        }
        keygen(&self.dir.path().join("host_ed25519"), "berth-test-host");
        if let Err(failure) = self.launch() {
            panic!("sshd did not restart: {failure}");
        }
    }

    /// Writes the configuration for the current port, starts sshd and waits until it
    /// sends its SSH banner.
    fn launch(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let config = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {dir}/host_ed25519\n\
             PidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             StrictModes no\n\
             AllowTcpForwarding no\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             LogLevel VERBOSE\n",
            port = self.port,
            dir = dir.display(),
        );
        let config_path = dir.join("sshd_config");
        std::fs::write(&config_path, config)
            .map_err(|error| format!("write sshd_config: {error}"))?;
        let log_path = dir.join("sshd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("open sshd.log: {error}"))?;
        let child = command(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| {
                format!("cannot run {SSHD} (is openssh-server installed?): {error}")
            })?;
        self.sshd = Some(child);

        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if self.answers_ssh() {
                return Ok(());
            }
            let exited = self.sshd.as_mut().and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.sshd = None;
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("sshd exited ({status}) on port {}: {log}", self.port));
            }
            if Instant::now() > deadline {
                self.stop();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("sshd did not answer within {READY_DEADLINE:?}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ssh(&self) -> bool {
        let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port).into();
        let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut banner = [0_u8; 4];
        stream.read_exact(&mut banner).is_ok() && &banner == b"SSH-"
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            // Kills the listening sshd by its pid; per-connection children exit when their
            // connection ends.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GitSshServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn command(program: &str) -> std::process::Command {
    // Dev-only fixture code: sshd must outlive single calls and ssh-keygen is run
    // synchronously, which berth-process (async, for the product) does not aim to cover.
    #[allow(clippy::disallowed_methods)]
    let mut command = std::process::Command::new(program);
    command.stdin(Stdio::null());
    command
}

fn keygen(path: &Path, comment: &str) {
    let output = command("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (is openssh-client installed?)");
    assert!(
        output.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read_key_pair(private_path: &Path) -> SshKeyPair {
    let private_key = std::fs::read_to_string(private_path).expect("read private key");
    let public_key = std::fs::read_to_string(private_path.with_extension("pub"))
        .expect("read public key")
        .trim()
        .to_owned();
    SshKeyPair { private_key, public_key }
}

fn current_user() -> String {
    let output = command("id").arg("-un").output().expect("run id -un");
    let user = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!user.is_empty(), "id -un printed no user name");
    user
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
