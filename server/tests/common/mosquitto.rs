//! A real mosquitto broker on a free port (the Debian package `scripts/setup` installs).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mosquitto; killed when dropped.
pub(crate) struct Mosquitto {
    child: Child,
    pub(crate) port: u16,
}

impl Mosquitto {
    /// Starts mosquitto on a free loopback port and waits until it accepts connections.
    pub(crate) fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let binary = ["/usr/sbin/mosquitto", "mosquitto"].into_iter().find(|b| !b.starts_with('/') || std::path::Path::new(b).exists()).expect("mosquitto");
        let child = Command::new(binary)
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (scripts/setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto listens on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
