//! `pfxhttp`: see the library crate for what it does.
//!
//! Every Postfix connection starts a process, so the binary defines the C `main` itself
//! (`no_main`) and skips std's runtime set-up, which costs each start about a tenth of an empty
//! program's whole run (it reads `/proc/self/maps` to find the main thread's stack guard and
//! maps an alternate signal stack, for the "stack overflow" message it would write on stderr:
//! the client's socket under spawn(8)). What of that set-up matters here is done in
//! [`runtime_setup`]. std reads the arguments through `.init_array` on glibc, so `args_os`
//! works as before. docs/design.md#start-up
#![deny(unsafe_code)]
#![no_main]

use std::os::fd::{FromRawFd, OwnedFd};

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: std::ffi::c_int, _argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    runtime_setup();
    pfxhttp::log::install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = pfxhttp::commands::main(&args, systemd_connection);
    // Every reply is written and every log line sent by now. Exiting here skips the HTTP client's
    // teardown, which would wait for a name lookup still running in its thread pool.
    std::process::exit(i32::from(code))
}

/// What std's runtime would have done before `main` and pfxhttp relies on: standard descriptors
/// 0–2 that are closed are opened on `/dev/null` (so that no file or socket opened later takes
/// their number and receives what is meant for stdout or stderr), and SIGPIPE is ignored (a
/// write to a connection the peer closed fails with EPIPE instead of killing the process).
#[allow(unsafe_code)]
fn runtime_setup() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: `fds` is a valid array of three pollfd for the duration of the call.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } != -1;
    // When poll itself fails (it may, with a descriptor limit below 3), each is asked in turn.
    // SAFETY: F_GETFD on any descriptor number only reads its flags.
    let closed = |p: &libc::pollfd| {
        if polled { p.revents & libc::POLLNVAL != 0 } else { (unsafe { libc::fcntl(p.fd, libc::F_GETFD) }) == -1 }
    };
    for pfd in fds.iter().filter(|p| closed(p)) {
        // SAFETY: a NUL-terminated path; the lowest free descriptor is the closed one, as the
        // ones below it are open. When it is not, std's set-up would abort, and so does this.
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd != pfd.fd {
            std::process::abort();
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// The connection systemd passed as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID` = our pid), if any.
#[allow(unsafe_code)]
fn systemd_connection() -> Option<OwnedFd> {
    let ours = std::env::var("LISTEN_PID").ok()?.parse::<u32>().ok()? == std::process::id();
    if !ours || std::env::var("LISTEN_FDS").ok()? != "1" {
        return None;
    }
    if std::path::Path::new("/proc/self/fd").is_dir() && !std::path::Path::new("/proc/self/fd/3").exists() {
        return None;
    }
    // SAFETY: systemd passes the connection as fd 3 (SD_LISTEN_FDS_START) to the process named by
    // LISTEN_PID, which is this one; nothing else in this process owns or closes fd 3, and this
    // function is called once.
    Some(unsafe { OwnedFd::from_raw_fd(3) })
}
