//! `pfxhttp state init`: the state directory and database, made safe to run as root.
//!
//! The spawn service's user owns the state directory, so it can plant anything there: a symbolic
//! link named like the database or its `-wal`/`-shm`/`-journal` files, pointing at a file of
//! root's. Run as root, `state init` must never be made to write or chown such a target. So:
//!
//! - every directory on the way is opened with `O_NOFOLLOW`, one component at a time from `/`,
//!   and must be root's and writable by nobody else (a sticky directory such as `/tmp` is
//!   accepted: others cannot replace what root keeps there);
//! - directories it creates get their mode in the `mkdir` call itself (0755 for parents, 0700
//!   for the state directory), whatever the umask;
//! - the state directory must be root's or the user's, and writable by no one else;
//! - the database and its companion files are opened with `O_NOFOLLOW` and must be regular
//!   files with one link, owned by root or the user; ownership is changed through the open file
//!   descriptor (`fchown`), never by name;
//! - the SQLite work (schema, WAL) is then done with root's privileges dropped to the user's, so
//!   whatever the user swaps in meanwhile can touch no file but the user's own.

use super::db::{self, DbError, SCHEMA_VERSION};
use super::walk::{self, Owner, become_user, give, open_state_dir};
use rustix::fs::{FileType, Mode, OFlags, fchmod, fstat, openat};
use rustix::io::Errno;
use std::os::fd::OwnedFd;
use std::path::Path;

/// The files SQLite keeps beside the database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

const FILE_FIX: &str = "remove it (pfxhttp never follows a symbolic link or a second hard link for its state) and \
                        run `pfxhttp state init --user USER` again";

/// Creates or checks the directory (0700) and the database (0600, schema), owned by `owner` when
/// given. Returns what it did, one line each.
pub fn init(path: &Path, owner: Option<Owner>) -> Result<Vec<String>, DbError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| DbError::new(path, "it names no file in UTF-8", "give server.state_db a file name"))?;
    let root = walk::is_root();
    let mut done = Vec::new();
    let dir = open_state_dir(path, true, owner, &mut done)?;
    let files: Vec<String> = std::iter::once("").chain(COMPANIONS).map(|s| format!("{name}{s}")).collect();
    if let Some(owner) = owner {
        // Before anything is created in it.
        dir.check_givable(path, owner, &files)?;
    }
    let (existed, opened) = settle_files(path, &dir.fd, &files, root, owner)?;
    // Nothing is given away before everything has been checked.
    if let Some((uid, gid)) = owner {
        dir.give(path, uid, gid)?;
        for (file, fd) in &opened {
            give(fd, uid, gid).map_err(|e| DbError::new(path, format!("cannot chown {file}: {e}"), "run as root"))?;
        }
    }
    drop((dir, opened));
    if let Some((uid, gid)) = owner.filter(|&(uid, _)| root && uid != 0) {
        become_user(path, uid, gid)?;
    }
    let conn = db::open(path)?;
    conn.execute_batch(db::CACHE_SCHEMA).map_err(|e| DbError::from_sqlite(path, &e))?;
    conn.execute_batch(db::METRICS_SCHEMA).map_err(|e| DbError::from_sqlite(path, &e))?;
    drop(conn);
    done.push(if existed {
        format!("{} exists and is usable", path.display())
    } else {
        format!("created {} (mode 0600, schema version {SCHEMA_VERSION})", path.display())
    });
    if let Some((uid, gid)) = owner {
        done.push(format!("owner set to uid {uid}, gid {gid}"));
    }
    Ok(done)
}

/// Checks the database and its companion files, creating the database (0600) if missing. Says
/// whether the database existed, and hands back the files, open.
fn settle_files(
    path: &Path,
    dir: &OwnedFd,
    files: &[String],
    root: bool,
    owner: Option<Owner>,
) -> Result<(bool, Vec<(String, OwnedFd)>), DbError> {
    let mut existed = true;
    let mut opened = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let shown = path.with_file_name(file);
        let fail = |what: String| DbError::new(path, format!("{}: {what}", shown.display()), FILE_FIX);
        let fd = match open_file(dir, file) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if i == 0 => {
                existed = false;
                create_file(dir, file).map_err(|e| fail(format!("cannot create it: {e}")))?
            }
            Err(Errno::NOENT) => continue,
            Err(Errno::LOOP) => return Err(fail("it is a symbolic link".into())),
            Err(e) => return Err(fail(e.to_string())),
        };
        check_file(&fd, root, owner).map_err(fail)?;
        opened.push((file.clone(), fd));
    }
    Ok((existed, opened))
}

fn open_file(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    // NONBLOCK: a planted FIFO must not hang the command; it is refused below.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    openat(dir, name, flags, Mode::empty())
}

fn create_file(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat(dir, name, flags, Mode::from_raw_mode(0o600))?;
    fchmod(&fd, Mode::from_raw_mode(0o600))?;
    Ok(fd)
}

/// A regular file with one link; as root, owned by root or `owner`.
fn check_file(fd: &OwnedFd, root: bool, owner: Option<Owner>) -> Result<(), String> {
    let st = fstat(fd).map_err(|e| e.to_string())?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err("it is not a regular file".into());
    }
    if st.st_nlink != 1 {
        return Err(format!("it has {} hard links", st.st_nlink));
    }
    if root && st.st_uid != 0 && Some(st.st_uid) != owner.map(|o| o.0) {
        return Err(format!("it is owned by uid {}, neither root nor the --user", st.st_uid));
    }
    Ok(())
}
