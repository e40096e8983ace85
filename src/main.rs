//! `pfxhttp`: see the library crate for what it does.
#![deny(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

fn main() {
    pfxhttp::log::install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let code = pfxhttp::commands::main(&args, systemd_connection);
    // Every reply is written and every log line sent by now. Exiting here skips the HTTP client's
    // teardown, which would wait for a name lookup still running in its thread pool.
    std::process::exit(i32::from(code))
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
