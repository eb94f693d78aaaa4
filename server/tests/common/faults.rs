//! Disk faults for a real `isobar serve` process: `tests/faults/faultfs.c`, an `LD_PRELOAD`
//! shim between the binary (its own code and RocksDB's) and libc, compiled with the system's C
//! compiler. A control file says which calls on which files fail, with EIO or ENOSPC; tests
//! change it while the server runs.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shim for one test, and its control file.
pub(crate) struct Faults {
    library: PathBuf,
    control: PathBuf,
    log: PathBuf,
    generation: std::cell::Cell<u64>,
}

impl Faults {
    /// Compiles the shim into `dir`.
    pub(crate) fn build(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("fault dir");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/faultfs.c");
        let library = dir.join("libfaultfs.so");
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-Wall", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("run cc");
        assert!(out.status.success(), "cc faultfs.c: {}", String::from_utf8_lossy(&out.stderr));
        let faults = Self { library, control: dir.join("control"), log: dir.join("injected.log"), generation: 0.into() };
        faults.clear();
        faults
    }

    /// The environment a process needs to run under the shim.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), self.library.display().to_string()),
            ("FAULTFS_CONTROL".into(), self.control.display().to_string()),
            ("FAULTFS_LOG".into(), self.log.display().to_string()),
        ]
    }

    /// Makes `ops` (write, sync, rename, create, truncate; comma-separated) on files under
    /// `prefix` fail with `errno` (EIO or ENOSPC), `times` times (0: until cleared).
    pub(crate) fn fail(&self, errno: &str, ops: &str, prefix: &Path, times: u32) {
        self.write(&format!("{errno} {ops} {} {times}\n", prefix.display()));
    }

    /// Makes the disk under `prefix` look as if it had `bytes` free (to statvfs).
    pub(crate) fn free_space(&self, bytes: u64, prefix: &Path) {
        self.write(&format!("FREE {bytes} {}\n", prefix.display()));
    }

    /// Stops injecting.
    pub(crate) fn clear(&self) {
        self.write("");
    }

    /// The failures injected so far, one line each: errno, call, path.
    pub(crate) fn injected(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default()
    }

    fn write(&self, spec: &str) {
        // A generation line makes every change visible to the shim, which re-reads the file
        // when its size or modification time changes.
        self.generation.set(self.generation.get() + 1);
        std::fs::write(&self.control, format!("{spec}\n# {}\n", self.generation.get())).expect("write fault control");
    }
}
