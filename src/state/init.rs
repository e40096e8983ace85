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
use rustix::fs::{CWD, FileType, Gid, Mode, OFlags, Uid, fchmod, fchown, fstat, mkdirat, openat};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The files SQLite keeps beside the database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

const ANCESTOR_FIX: &str = "keep the state database under directories that only root can write (such as /var/lib)";
const STATE_DIR_FIX: &str = "the state directory must belong to root or to the --user and be writable by its owner \
                             only (chmod 0700); or choose another server.state_db";
const FILE_FIX: &str = "remove it (pfxhttp never follows a symbolic link or a second hard link for its state) and \
                        run `pfxhttp state init --user USER` again";

/// Who is to own the state: uid, primary gid.
pub type Owner = (u32, u32);

/// Creates or checks the directory (0700) and the database (0600, schema), owned by `owner` when
/// given. Returns what it did, one line each.
pub fn init(path: &Path, owner: Option<Owner>) -> Result<Vec<String>, DbError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| DbError::new(path, "it names no file in UTF-8", "give server.state_db a file name"))?;
    let root = rustix::process::geteuid().is_root();
    let mut done = Vec::new();
    let dir = open_state_dir(path, root, owner, &mut done)?;
    let existed = settle_files(path, &dir, name, root, owner)?;
    drop(dir);
    if let Some((uid, gid)) = owner.filter(|&(uid, _)| root && uid != 0) {
        become_user(path, uid, gid)?;
    }
    let conn = db::open(path)?;
    conn.execute_batch(db::CACHE_SCHEMA).map_err(|e| DbError::from_sqlite(path, &e))?;
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

/// Opens the directory that holds the database, creating what is missing, one component at a
/// time without following a symbolic link, and gives it to `owner`.
fn open_state_dir(path: &Path, root: bool, owner: Option<Owner>, done: &mut Vec<String>) -> Result<OwnedFd, DbError> {
    let parent = path.parent().unwrap_or(Path::new(""));
    let parts = components(path, parent)?;
    let mut shown = PathBuf::from(if parent.is_absolute() { "/" } else { "." });
    let mut dir = open_dir(CWD, &shown).map_err(|e| walk_error(path, &shown, e))?;
    for (i, part) in parts.iter().enumerate() {
        if root {
            check_ancestor(&dir)
                .map_err(|why| DbError::new(path, format!("{}: {why}", shown.display()), ANCESTOR_FIX))?;
        }
        shown.push(part);
        let mode = if i + 1 == parts.len() { 0o700 } else { 0o755 };
        let (next, created) = open_or_create_dir(&dir, part, mode).map_err(|e| walk_error(path, &shown, e))?;
        if created {
            done.push(format!("created {} (mode {mode:04o})", shown.display()));
        }
        dir = next;
    }
    if root {
        check_state_dir(&dir, owner)
            .map_err(|why| DbError::new(path, format!("{}: {why}", shown.display()), STATE_DIR_FIX))?;
    }
    if let Some((uid, gid)) = owner {
        give(&dir, uid, gid)
            .map_err(|e| DbError::new(path, format!("cannot chown {}: {e}", shown.display()), "run as root"))?;
    }
    Ok(dir)
}

/// The directory names from `/` (or the working directory) down to the state directory.
fn components<'a>(path: &Path, parent: &'a Path) -> Result<Vec<&'a str>, DbError> {
    parent
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_str()),
            Component::ParentDir => Some(Some("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| DbError::new(path, "its directory name is not UTF-8", "rename it"))
}

fn walk_error(path: &Path, at: &Path, e: Errno) -> DbError {
    let what = match e {
        Errno::LOOP | Errno::NOTDIR => format!("{} is a symbolic link or not a directory", at.display()),
        e => format!("{}: {e}", at.display()),
    };
    DbError::new(path, what, "pfxhttp never follows a symbolic link for its state; name the real directory")
}

fn open_dir(at: impl AsFd, name: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat(at, name, flags, Mode::empty())
}

/// Opens directory `name` in `dir`, creating it with `mode` (exactly, whatever the umask) first
/// if it does not exist. Says whether it was created.
fn open_or_create_dir(dir: &OwnedFd, name: &str, mode: u32) -> Result<(OwnedFd, bool), Errno> {
    let created = match mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(e),
    };
    let fd = open_dir(dir, Path::new(name))?;
    if created {
        // The umask can only have narrowed the mode; the service user needs it exactly.
        fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    Ok((fd, created))
}

/// A directory above the state directory: root's, and writable by no one else unless sticky.
fn check_ancestor(dir: &OwnedFd) -> Result<(), String> {
    let st = fstat(dir).map_err(|e| e.to_string())?;
    let mode = st.st_mode & 0o7777;
    if st.st_uid != 0 {
        return Err(format!("owned by uid {}, not root: its owner could swap the state directory", st.st_uid));
    }
    let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && st.st_gid != 0);
    if others_write && mode & 0o1000 == 0 {
        return Err(format!("writable by users other than root (mode {mode:04o})"));
    }
    Ok(())
}

/// The state directory: root's or the owner's, writable by its owner only.
fn check_state_dir(dir: &OwnedFd, owner: Option<Owner>) -> Result<(), String> {
    let st = fstat(dir).map_err(|e| e.to_string())?;
    let mode = st.st_mode & 0o7777;
    if st.st_uid != 0 && Some(st.st_uid) != owner.map(|o| o.0) {
        return Err(format!("owned by uid {}, neither root nor the --user", st.st_uid));
    }
    if mode & 0o022 != 0 {
        return Err(format!("writable by users other than its owner (mode {mode:04o})"));
    }
    Ok(())
}

/// Checks the database and its companion files, creating the database (0600) if missing, and
/// gives them to `owner`. Says whether the database existed.
fn settle_files(path: &Path, dir: &OwnedFd, name: &str, root: bool, owner: Option<Owner>) -> Result<bool, DbError> {
    let mut existed = true;
    for suffix in std::iter::once("").chain(COMPANIONS) {
        let file = format!("{name}{suffix}");
        let shown = path.with_file_name(&file);
        let fail = |what: String| DbError::new(path, format!("{}: {what}", shown.display()), FILE_FIX);
        let fd = match open_file(dir, &file) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if suffix.is_empty() => {
                existed = false;
                create_file(dir, &file).map_err(|e| fail(format!("cannot create it: {e}")))?
            }
            Err(Errno::NOENT) => continue,
            Err(Errno::LOOP) => return Err(fail("it is a symbolic link".into())),
            Err(e) => return Err(fail(e.to_string())),
        };
        check_file(&fd, root, owner).map_err(fail)?;
        if let Some((uid, gid)) = owner {
            give(&fd, uid, gid).map_err(|e| fail(format!("cannot chown it: {e}")))?;
        }
    }
    Ok(existed)
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

/// Changes the owner of an open file or directory, if it differs.
fn give(fd: &OwnedFd, uid: u32, gid: u32) -> Result<(), Errno> {
    let st = fstat(fd)?;
    if st.st_uid == uid && st.st_gid == gid {
        return Ok(());
    }
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

/// Drops root's privileges for good: this command does nothing as root after this.
fn become_user(path: &Path, uid: u32, gid: u32) -> Result<(), DbError> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    rustix::thread::set_thread_groups(&[g])
        .and_then(|()| rustix::thread::set_thread_res_gid(g, g, g))
        .and_then(|()| rustix::thread::set_thread_res_uid(u, u, u))
        .map_err(|e| DbError::new(path, format!("cannot take the identity of uid {uid}: {e}"), "run as root"))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::read_dir(dir).map(drop).map_err(|e| {
        DbError::new(
            path,
            format!("uid {uid} cannot reach {}: {e}", dir.display()),
            "every directory above it must be searchable by the spawn service's user (mode 0755)",
        )
    })
}
