//! Whole test hosts on loopback for the tests that cross SSH: each its own ext4 disk
//! with Debian and openssh-server, its own mount, PID and UTS namespaces, sshd as its
//! PID 1 on `127.0.0.1:PORT` (scripts/test-host). Needs root.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Hosts started for one test, and the SSH client settings that reach them.
#[derive(Debug)]
pub struct TestHosts {
    dir: tempfile::TempDir,
    /// The hosts, in the order asked for.
    pub hosts: Vec<TestHost>,
}

/// One running host.
#[derive(Debug)]
pub struct TestHost {
    /// Its node name (and host name).
    pub name: String,
    /// Its sshd's port on 127.0.0.1.
    pub port: u16,
    unshare: Option<Child>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-host")
}

/// A port free on loopback now (the kernel's pick).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local address").port()
}

impl TestHosts {
    /// Starts one host per name (about 0.5 s each), with a client key they all accept.
    pub fn start(names: &[&str]) -> TestHosts {
        let dir = tempfile::Builder::new()
            .prefix("strata-hosts")
            .tempdir()
            .expect("temp dir");
        let key = dir.path().join("id");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "strata-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen")
            .success();
        assert!(ok, "ssh-keygen failed");
        let mut hosts = Vec::new();
        let mut known = String::new();
        for name in names {
            let hdir = dir.path().join(name);
            std::fs::create_dir_all(&hdir).expect("host dir");
            let port = free_port();
            let child = Command::new(script())
                .arg("start")
                .arg(&hdir)
                .arg(name)
                .arg(port.to_string())
                .arg(key.with_extension("pub"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("scripts/test-host");
            let mut host = TestHost {
                name: name.to_string(),
                port,
                unshare: Some(child),
            };
            host.wait_ready(&hdir);
            let public = std::fs::read_to_string(hdir.join("host_key.pub")).expect("host key");
            let public: Vec<&str> = public.split_whitespace().take(2).collect();
            known.push_str(&format!("[127.0.0.1]:{port} {}\n", public.join(" ")));
            hosts.push(host);
        }
        std::fs::write(dir.path().join("known_hosts"), known).expect("known_hosts");
        std::fs::write(
            dir.path().join("ssh_config"),
            format!(
                "Host *\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {known}\n  ConnectTimeout 5\n",
                key = key.display(),
                known = dir.path().join("known_hosts").display()
            ),
        )
        .expect("ssh_config");
        TestHosts { dir, hosts }
    }

    /// The `ssh -F` file that reaches every host (its key, its known_hosts).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The `[ssh]` table of a node file for host `i`.
    pub fn node_ssh(&self, i: usize) -> String {
        format!(
            "[ssh]\nhost = \"127.0.0.1\"\nport = {}\n",
            self.hosts[i].port
        )
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .expect("a started host")
    }

    /// The host named `name`, to stop it.
    pub fn host_mut(&mut self, name: &str) -> &mut TestHost {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .expect("a started host")
    }
}

impl TestHost {
    fn wait_ready(&mut self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            let exited = self
                .unshare
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                panic!("test host {} did not start: {exited:?}\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host's `/`, as the test sees it from outside: `/proc/<its PID 1>/root`.
    pub fn root(&self) -> PathBuf {
        let pid = self.unshare.as_ref().expect("a running host").id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .expect("the host's PID 1");
        let init = children
            .split_whitespace()
            .next()
            .expect("the host's PID 1");
        PathBuf::from(format!("/proc/{init}/root"))
    }

    /// Reads a file of the host.
    pub fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.root().join(path.trim_start_matches('/'))).ok()
    }

    /// Stops the host at once, as a power cut would: every process of it is killed and
    /// its disk unmounted.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.unshare.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.stop();
    }
}
