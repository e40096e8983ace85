//! Reaching the state directory safely as root.
//!
//! The spawn service's user owns the state directory, so whatever root does there must not be
//! turned against root: every directory on the way is opened with `O_NOFOLLOW`, one component at
//! a time from `/` (or the working directory), and must be root's and writable by no one else
//! unless sticky (others cannot replace what root keeps in `/tmp`); the state directory must be
//! root's or its user's and writable by its owner only. Root then either works through the open
//! file descriptors (`state init`), or becomes the state directory's owner before SQLite opens
//! anything (`state check`, `token`), or — a serving process — leaves a directory another user
//! owns alone. See `docs/design.md#state-database`.

use super::db::DbError;
use rustix::fs::{CWD, Dir, Gid, Mode, OFlags, Uid, fchmod, fchown, fstat, mkdirat, openat};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Who is to own the state: uid, primary gid.
pub type Owner = (u32, u32);

const ANCESTOR_FIX: &str = "keep the state database under directories that only root can write (such as /var/lib)";
const STATE_DIR_FIX: &str = "the state directory must belong to root or to the --user and be writable by its owner \
                             only (chmod 0700); or choose another server.state_db";

/// Whether this process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The state directory, open; whether this call created it.
pub(super) struct StateDir {
    pub fd: OwnedFd,
    pub created: bool,
    pub shown: PathBuf,
}

/// Opens the directory that holds the database at `path` without following a symbolic link,
/// creating what is missing when `create` (0755 for parents, 0700 for the state directory,
/// exactly, whatever the umask), one `created …` line each into `done`. As root, checks every
/// directory on the way.
pub(super) fn open_state_dir(
    path: &Path,
    create: bool,
    owner: Option<Owner>,
    done: &mut Vec<String>,
) -> Result<StateDir, DbError> {
    let root = is_root();
    let parent = path.parent().unwrap_or(Path::new(""));
    let parts = components(path, parent)?;
    let mut shown = PathBuf::from(if parent.is_absolute() { "/" } else { "." });
    let mut dir = open_dir(CWD, &shown).map_err(|e| walk_error(path, &shown, e))?;
    let mut created = false;
    for (i, part) in parts.iter().enumerate() {
        if root {
            check_ancestor(&dir)
                .map_err(|why| DbError::new(path, format!("{}: {why}", shown.display()), ANCESTOR_FIX))?;
        }
        shown.push(part);
        let mode = if i + 1 == parts.len() { 0o700 } else { 0o755 };
        let next = if create {
            open_or_create_dir(&dir, part, mode)
        } else {
            open_dir(&dir, Path::new(part)).map(|fd| (fd, false))
        };
        let (next, made) = next.map_err(|e| walk_error(path, &shown, e))?;
        if made {
            done.push(format!("created {} (mode {mode:04o})", shown.display()));
        }
        (dir, created) = (next, made);
    }
    if root {
        check_state_dir(&dir, owner)
            .map_err(|why| DbError::new(path, format!("{}: {why}", shown.display()), STATE_DIR_FIX))?;
    }
    Ok(StateDir { fd: dir, created, shown })
}

impl StateDir {
    /// Whether the directory may be given to `uid`: one this command created, one already
    /// theirs, or an empty one of root's (nothing in it but the database and its companion
    /// `files`). Any other directory of root's — `/var/lib` named by mistake — is never given.
    pub(super) fn check_givable(&self, path: &Path, (uid, _): Owner, files: &[String]) -> Result<(), DbError> {
        let st = fstat(&self.fd).map_err(|e| DbError::new(path, e.to_string(), "check the path"))?;
        if !self.created && st.st_uid != uid {
            let foreign = foreign_entry(&self.fd, files).map_err(|e| {
                DbError::new(path, format!("cannot list {}: {e}", self.shown.display()), "check the path")
            })?;
            if let Some(name) = foreign {
                return Err(DbError::new(
                    path,
                    format!(
                        "{} belongs to uid {} and holds {name:?}, which is not pfxhttp's",
                        self.shown.display(),
                        st.st_uid
                    ),
                    "give server.state_db a directory of its own (pfxhttp state init creates it), or chown it yourself",
                ));
            }
        }
        Ok(())
    }

    /// Gives the directory to `uid`/`gid` (after [`StateDir::check_givable`]).
    pub(super) fn give(&self, path: &Path, uid: u32, gid: u32) -> Result<(), DbError> {
        give(&self.fd, uid, gid)
            .map_err(|e| DbError::new(path, format!("cannot chown {}: {e}", self.shown.display()), "run as root"))
    }
}

/// The first name in `dir` other than `.`, `..` and `files`.
fn foreign_entry(dir: &OwnedFd, files: &[String]) -> Result<Option<String>, Errno> {
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." && !files.contains(&name) {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Root about to open the state database for an admin command (`state check`, `token`): takes
/// the identity of the state directory's owner for good, so that nothing that owner planted can
/// make SQLite write or chown a file of root's. Nothing happens when not root, when the
/// directory is root's own, or when it does not exist (the command reports that itself).
pub fn become_owner_as_root(path: &Path) -> Result<(), DbError> {
    match existing_dir_owner(path)? {
        Some((_, uid, gid)) if uid != 0 => become_user(path, uid, gid),
        _ => Ok(()),
    }
}

/// As root, the state directory (walked and checked as root walks it) and its owner and group;
/// `None` when not root or when the directory does not exist (opening reports that, with its
/// fix).
fn existing_dir_owner(path: &Path) -> Result<Option<(StateDir, u32, u32)>, DbError> {
    if !is_root() {
        return Ok(None);
    }
    let dir = match open_state_dir(path, false, None, &mut Vec::new()) {
        Ok(dir) => dir,
        Err(_) if !path.parent().is_some_and(Path::exists) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(&dir.fd).map_err(|e| DbError::new(path, e.to_string(), "check the path"))?;
    Ok(Some((dir, st.st_uid, st.st_gid)))
}

/// For a serving process: whether it may open the database at `path`. As root, only one in a
/// directory of root's that no one else can write; a directory another user owns is left alone
/// (that user's files are not root's to open).
pub fn may_open(path: &Path) -> Result<(), DbError> {
    let Some((dir, uid, _)) = existing_dir_owner(path)? else { return Ok(()) };
    if uid != 0 {
        return Err(DbError::new(
            path,
            format!(
                "running as root, pfxhttp does not open a state database in {}, which uid {} owns",
                dir.shown.display(),
                uid
            ),
            "run pfxhttp as the user that owns it (the master.cf user=)",
        ));
    }
    Ok(())
}

/// The state directory, open, for the files a serving process keeps beside the database (the
/// CA bundle's index), which are then opened relative to it, never by name. As root, walked from
/// `/` as above and only when root owns it; otherwise opened by name (the user's own files).
pub fn files_dir(path: &Path) -> Option<OwnedFd> {
    if is_root() {
        let (dir, uid, _) = existing_dir_owner(path).ok()??;
        return (uid == 0).then_some(dir.fd);
    }
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    open_dir(CWD, parent).ok()
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

/// The state directory: root's or `owner`'s (anyone's when `None`), writable by its owner only.
fn check_state_dir(dir: &OwnedFd, owner: Option<Owner>) -> Result<(), String> {
    let st = fstat(dir).map_err(|e| e.to_string())?;
    let mode = st.st_mode & 0o7777;
    if let Some((uid, _)) = owner
        && st.st_uid != 0
        && st.st_uid != uid
    {
        return Err(format!("owned by uid {}, neither root nor the --user", st.st_uid));
    }
    if mode & 0o022 != 0 {
        return Err(format!("writable by users other than its owner (mode {mode:04o})"));
    }
    Ok(())
}

/// Changes the owner of an open file or directory, if it differs.
pub(super) fn give(fd: &OwnedFd, uid: u32, gid: u32) -> Result<(), Errno> {
    let st = fstat(fd)?;
    if st.st_uid == uid && st.st_gid == gid {
        return Ok(());
    }
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

/// Drops root's privileges for good: this command does nothing as root after this.
pub(super) fn become_user(path: &Path, uid: u32, gid: u32) -> Result<(), DbError> {
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
