//! `peak-rss PROGRAM ARGS…`: runs PROGRAM with this process's standard input and output (its
//! standard error on /dev/null), then writes PROGRAM's peak RSS in KiB on standard error and exits
//! with its exit code.
//!
//! A process's peak RSS as wait4(2) reports it counts the memory of the process it was forked
//! or vforked from, up to its exec: a program started by the bench driver (many MiB of samples
//! and threads) reported the driver's peak, not its own. Started from this small program, what is
//! counted besides PROGRAM's own is this program's, about 1.7 MiB, below any pfxhttp process.
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: peak-rss PROGRAM [ARGS…]");
        std::process::exit(64);
    };
    let child = Command::new(program).args(rest).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
        eprintln!("peak-rss: cannot start {program}: {e}");
        std::process::exit(69);
    });
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if got != child.id() as libc::pid_t {
        eprintln!("peak-rss: wait4 failed: {}", std::io::Error::last_os_error());
        std::process::exit(70);
    }
    eprintln!("{}", usage.ru_maxrss);
    let status = std::process::ExitStatus::from_raw(status);
    std::process::exit(status.code().unwrap_or(70));
}
