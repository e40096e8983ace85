//! The peak memory of a pfxhttp run, for tests that feed it megabytes of garbage.
//!
//! The child's peak RSS is what wait4(2) reports as `ru_maxrss` when the child is reaped. It
//! cannot be taken from the test process itself: that kernel figure also counts the memory of
//! the process that forked the child (until the exec), and the test process is large and busy.
//! So a small python3 parent forks and execs pfxhttp, reaps it with `os.wait4`, writes
//! `ru_maxrss` (KiB) to a file and exits with the child's status. Its own few megabytes are a
//! floor under the figure, not added to it. python3 is needed by the tests anyway (see README).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::run::{Child, Output, bin};

/// The parent: argv is `OUT_FILE PROGRAM ARGS...`. It closes its copies of stdin and stdout so
/// that the client sees EOF and EPIPE as soon as pfxhttp is gone; stderr stays for tracebacks.
const PARENT: &str = r#"
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
os.close(0)
os.close(1)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
if os.WIFSIGNALED(status):
    os.kill(os.getpid(), os.WTERMSIG(status))
os._exit(os.WEXITSTATUS(status))
"#;

/// The python3 interpreter's real path (a pyenv shim would need `HOME`, which the children do not
/// get: they run with `PATH` only, as under spawn(8)).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed to measure peak memory");
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!path.is_empty(), "python3 did not name its executable: {out:?}");
        PathBuf::from(path)
    })
}

/// A pfxhttp run whose peak RSS is known once it has exited.
pub struct Measured {
    pub child: Child,
    dir: tempfile::TempDir,
}

impl Measured {
    /// Starts `pfxhttp ARGS...` under the measuring parent, with pipes as [`Child::spawn`] does.
    pub fn spawn(args: &[&str]) -> Measured {
        Measured::spawn_program(&bin(), args)
    }

    /// Any program (used to test the measurement itself).
    pub fn spawn_program(program: &Path, args: &[&str]) -> Measured {
        let dir = super::temp_dir();
        let file = dir.path().join("maxrss");
        let program = program.to_str().expect("utf-8 path");
        let mut all = vec!["-c", PARENT, file.to_str().expect("utf-8 temp path"), program];
        all.extend_from_slice(args);
        Measured { child: Child::spawn_program(python(), &all, &[]), dir }
    }

    /// Waits for the exit ([`Child::wait`]: stdin is not closed first) and returns the output
    /// and the peak RSS in KiB.
    pub fn wait(self, timeout: Duration) -> (Output, u64) {
        let out = self.child.wait(timeout);
        let file = self.dir.path().join("maxrss");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("no peak RSS recorded ({e}): {out:?}"));
        let kib = text.trim().parse().unwrap_or_else(|e| panic!("peak RSS {text:?}: {e}"));
        (out, kib)
    }
}
