//! A real mosquitto broker on a free port (the Debian package `scripts/setup` installs).

use std::net::TcpStream;
use std::path::Path;
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
        let port = free_port();
        Self::spawn(port, &["-p".to_owned(), port.to_string()])
    }

    /// Starts mosquitto on `port`, keeping its sessions and queued messages in `dir` across
    /// restarts (persistence on, saved when it stops).
    pub(crate) fn start_persistent(dir: &Path, port: u16) -> Self {
        let settings = format!("persistence true\npersistence_location {}/\nautosave_interval 1\n", dir.display());
        Self::start_configured(dir, port, &settings)
    }

    /// Starts mosquitto with a listener on loopback `port` and `settings` for it, its
    /// configuration file in `dir`.
    pub(crate) fn start_configured(dir: &Path, port: u16, settings: &str) -> Self {
        let config = dir.join("mosquitto.conf");
        // Started as root, mosquitto would switch to its own user, which cannot read `dir`.
        let me = Command::new("id").arg("-un").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
        let anonymous = if settings.contains("allow_anonymous") { "" } else { "allow_anonymous true\n" };
        let text = format!("listener {port} 127.0.0.1\n{anonymous}user {me}\n{settings}");
        std::fs::write(&config, text).expect("write mosquitto.conf");
        Self::spawn(port, &["-c".to_owned(), config.display().to_string()])
    }

    /// Stops mosquitto as a service manager would (SIGTERM: it saves its state) and waits.
    pub(crate) fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    fn spawn(port: u16, args: &[String]) -> Self {
        let binary = if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" };
        let child = Command::new(binary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (scripts/setup installs it)");
        wait_for_port(port, "mosquitto");
        Self { child, port }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
/// Waits until `what` accepts connections on loopback `port` (at most 30 s).
pub(crate) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// `mosquitto_sub` run until it holds its subscriptions: it runs with `-d`, and [`Self::start`]
/// returns once it printed the broker's SUBACK, so what is published after that reaches it.
pub(crate) struct Subscriber {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Subscriber {
    /// Runs `mosquitto_sub -d` with `args` (which should include `-v` and an end such as `-C`).
    pub(crate) fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        // Line-buffered, or its lines would wait in stdio's buffer while it runs.
        let mut child =
            Command::new("stdbuf").args(["-oL", "mosquitto_sub", "-d"]).args(args).stdout(Stdio::piped()).spawn().expect("mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let subscriber = Self { child, lines };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // On a timeout `subscriber` drops, which reaps the process.
            let line = subscriber.lines.recv_timeout(left).expect("mosquitto_sub subscribes");
            if line.contains("received SUBACK") {
                return subscriber;
            }
        }
    }

    /// Waits for it to end and returns the messages it printed (its debug lines left out).
    pub(crate) fn messages(mut self) -> Vec<String> {
        let _ = self.child.wait();
        self.lines.iter().filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed (mid")).collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
