//! A real local Kinesis server on a free port: kinesalite (npm) or moto's server mode (PyPI),
//! both installed by `scripts/setup`; and the Python producer that fills its streams.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::mosquitto::{free_port, wait_for_port};

/// Which local server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Kinesalite,
    Moto,
}

/// A running local Kinesis server; killed when dropped.
pub(crate) struct LocalKinesis {
    child: Child,
    pub(crate) endpoint: String,
}

fn cache() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/isobar")
}

/// The venv's Python (`ISOBAR_PYTHON` overrides it).
pub(crate) fn python() -> String {
    std::env::var("ISOBAR_PYTHON").unwrap_or_else(|_| cache().join("venv/bin/python").display().to_string())
}

impl LocalKinesis {
    /// Starts `kind` on a free loopback port and waits until it accepts connections.
    pub(crate) fn start(kind: Kind) -> Self {
        let port = free_port().to_string();
        let mut command = match kind {
            Kind::Kinesalite => {
                let mut c = Command::new(cache().join("node/node_modules/.bin/kinesalite"));
                // Streams become active, split and merge at once, not after half a second.
                c.args(["--port", &port, "--createStreamMs", "0", "--updateStreamMs", "0", "--deleteStreamMs", "0"]);
                c
            }
            Kind::Moto => {
                let mut c = Command::new(python());
                c.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port]);
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {kind:?} (scripts/setup installs it): {e}"));
        wait_for_port(port.parse().expect("port"), &format!("{kind:?}"));
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `tests/python/kinesis_put.py ENDPOINT args...` and returns what it printed; fails
    /// with its output unless it succeeds.
    pub(crate) fn put(&self, args: &[&str]) -> String {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kinesis_put.py");
        let out = Command::new(python()).arg(script).arg(&self.endpoint).args(args).output().expect("run kinesis_put.py");
        assert!(
            out.status.success(),
            "kinesis_put.py {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for LocalKinesis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/python/kinesis_proxy.py` in front of a local server: refuses some GetRecords calls as
/// throttled or with an expired iterator, and logs every GetRecords call; killed when dropped.
pub(crate) struct FaultProxy {
    child: Child,
    pub(crate) endpoint: String,
}

impl FaultProxy {
    /// `extra`: the proxy's options after its log path (`--pages-of N`).
    pub(crate) fn start(upstream: &LocalKinesis, log: &std::path::Path, extra: &[&str]) -> Self {
        let port = free_port();
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kinesis_proxy.py");
        let child = Command::new(python())
            .arg(script)
            .args([&port.to_string(), &upstream.endpoint, &log.display().to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("start kinesis_proxy.py");
        wait_for_port(port, "the Kinesis proxy");
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
