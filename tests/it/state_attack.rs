//! `pfxhttp state init --user nobody` run as root, against what `nobody` (the spawn service's
//! user, which owns the state directory) could have planted there: symbolic links and hard
//! links named like the database or its `-wal`/`-shm`/`-journal` files, a FIFO, a symbolic link
//! for the directory itself, and links planted again and again while `init` runs. A root-owned
//! file is the target each time; it must come out with the same bytes, owner and mode. Also the
//! directories `init` creates under umask 000, and serving processes given a symlinked path.
//!
//! The root-only tests are `#[ignore = "needs root"]`: they run when asked for (`--include-ignored`).

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::failover::RUN;
use crate::state::assert_root;
use crate::support::*;

const NOBODY: u32 = 65534;
const SECRET: &[u8] = b"root's own file\n";

/// A temp dir (0755, root's) with a config whose state database is `state/pfxhttp.db`, a
/// state directory owned by nobody (as a first `init` leaves it), and a root-owned target file.
struct Scene {
    conf: Config,
}

impl Scene {
    fn new() -> Scene {
        Scene::with_db("state/pfxhttp.db")
    }

    fn with_db(db: &str) -> Scene {
        Scene::build(db, |conf| conf)
    }

    /// The scene with the database at `db` (inside the temp dir) and the config as `more` makes it.
    fn build(db: &str, more: impl FnOnce(Config) -> Config) -> Scene {
        let conf = Config::new();
        std::fs::set_permissions(conf.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = conf.dir().join(db);
        let conf = conf.state_db(&db.display().to_string()).entry("socket_maps", "demo");
        let conf = more(conf.set("target", "http://127.0.0.1:9/x").set("value_field", "v"));
        conf.path();
        let target = conf.dir().join("target");
        std::fs::write(&target, SECRET).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        Scene { conf }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.conf.dir().join(rel)
    }

    fn target(&self) -> PathBuf {
        self.path("target")
    }

    /// The state directory as a first `init` leaves it: nobody's, 0700.
    fn nobody_state_dir(&self) -> PathBuf {
        let state = self.path("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&state, Some(NOBODY), Some(NOBODY)).unwrap();
        state
    }

    fn init(&self) -> Output {
        self.conf.run_command(&["state", "init", "--user", "nobody"], b"", RUN)
    }

    /// The target is untouched: same bytes, root's, 0600.
    #[track_caller]
    fn assert_target_untouched(&self) {
        let target = self.target();
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), SECRET, "the target's bytes changed");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (0, 0, 0o600), "the target's owner or mode changed");
    }
}

/// `init` refused, with `what` in its message, and left the target alone.
#[track_caller]
fn assert_refused(s: &Scene, out: &Output, what: &str) {
    assert_ne!(out.code(), Some(0), "init must refuse: {out:?}");
    assert!(out.stderr_str().contains(what), "the error says {what:?}: {out:?}");
    s.assert_target_untouched();
}

#[test]
#[ignore = "needs root"]
fn a_planted_symlink_for_the_database_is_refused() {
    assert_root();
    let s = Scene::new();
    let state = s.nobody_state_dir();
    symlink(s.target(), state.join("pfxhttp.db")).unwrap();
    assert_refused(&s, &s.init(), "pfxhttp.db: it is a symbolic link");
}

#[test]
#[ignore = "needs root"]
fn planted_symlinks_for_the_companion_files_are_refused() {
    assert_root();
    for suffix in ["-wal", "-shm", "-journal"] {
        let s = Scene::new();
        let state = s.nobody_state_dir();
        symlink(s.target(), state.join(format!("pfxhttp.db{suffix}"))).unwrap();
        assert_refused(&s, &s.init(), &format!("pfxhttp.db{suffix}: it is a symbolic link"));
        // With an existing database beside it, too.
        let first = Scene::new();
        first.nobody_state_dir();
        assert_eq!(first.init().code(), Some(0));
        symlink(first.target(), first.path(&format!("state/pfxhttp.db{suffix}"))).unwrap();
        assert_refused(&first, &first.init(), "it is a symbolic link");
    }
}

#[test]
#[ignore = "needs root"]
fn a_hard_link_or_a_fifo_for_the_database_is_refused() {
    assert_root();
    let s = Scene::new();
    let state = s.nobody_state_dir();
    std::fs::hard_link(s.target(), state.join("pfxhttp.db")).unwrap();
    assert_refused(&s, &s.init(), "it has 2 hard links");

    let s = Scene::new();
    s.nobody_state_dir();
    let made = std::process::Command::new("mkfifo").arg(s.path("state/pfxhttp.db-wal")).status().unwrap();
    assert!(made.success());
    assert_refused(&s, &s.init(), "it is not a regular file");
}

#[test]
#[ignore = "needs root"]
fn a_symlinked_state_directory_is_refused() {
    assert_root();
    let s = Scene::new();
    let elsewhere = s.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    symlink(s.target(), elsewhere.join("pfxhttp.db")).unwrap();
    symlink(&elsewhere, s.path("state")).unwrap();
    let out = s.init();
    assert_refused(&s, &out, "state is a symbolic link or not a directory");
    assert!(!elsewhere.join("pfxhttp.db-wal").exists());
}

#[test]
#[ignore = "needs root"]
fn a_directory_others_can_write_is_refused() {
    assert_root();
    // A parent owned by nobody: it could swap the state directory for something else.
    let s = Scene::with_db("nobodys/state/pfxhttp.db");
    let parent = s.path("nobodys");
    std::fs::create_dir(&parent).unwrap();
    std::os::unix::fs::chown(&parent, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = s.init();
    assert_refused(&s, &out, "nobodys: owned by uid 65534, not root");
    assert!(!parent.join("state").exists(), "nothing created under it");

    // A world-writable state directory, root's.
    let s = Scene::new();
    let state = s.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_refused(&s, &s.init(), "writable by users other than its owner (mode 0777)");
    assert!(!state.join("pfxhttp.db").exists());

    // A state directory of a third user's.
    let s = Scene::new();
    let state = s.path("state");
    std::fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(4242), Some(4242)).unwrap();
    assert_refused(&s, &s.init(), "owned by uid 4242, neither root nor the --user");
}

/// nobody plants `-wal`, `-shm` and `-journal` symlinks and takes them away again, at random
/// moments, while root runs `init` a hundred times: the target is never written or given away
/// (before, a link planted after SQLite's work and before the chown by name won 3 runs in 6).
#[test]
#[ignore = "needs root"]
fn symlinks_planted_during_init_never_reach_the_target() {
    assert_root();
    let s = Scene::new();
    s.nobody_state_dir();
    assert_eq!(s.init().code(), Some(0), "a first init");
    let stop = Arc::new(AtomicBool::new(false));
    let planter = {
        let (stop, target, db) = (stop.clone(), s.target(), s.path("state/pfxhttp.db"));
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                for suffix in ["-wal", "-shm", "-journal"] {
                    let _ = symlink(&target, with_suffix(&db, suffix));
                }
                std::thread::sleep(Duration::from_micros(fastrand_micros()));
                for suffix in ["-wal", "-shm", "-journal"] {
                    let link = with_suffix(&db, suffix);
                    if link.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
                        let _ = std::fs::remove_file(link);
                    }
                }
                std::thread::sleep(Duration::from_micros(fastrand_micros()));
            }
        })
    };
    for _ in 0..100 {
        let _ = s.init();
        s.assert_target_untouched();
    }
    stop.store(true, Ordering::Relaxed);
    planter.join().unwrap();
    s.assert_target_untouched();
}

/// A pause of 0 to 3 ms, from the clock's low bits (no random crate in the tests).
fn fastrand_micros() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos / 7 % 3000)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// Under umask 000 the directories `init` creates are 0755 (parents) and 0700 (the state
/// directory), never wider, and the database 0600.
#[test]
#[ignore = "needs root"]
fn init_under_umask_000_creates_nothing_wider() {
    assert_root();
    let s = Scene::with_db("var/lib/pfxhttp/pfxhttp.db");
    let script =
        format!("umask 000; exec {} --config {} state init --user nobody", bin().display(), s.conf.path().display());
    let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mode = |rel: &str| std::fs::metadata(s.path(rel)).unwrap().mode() & 0o7777;
    assert_eq!(mode("var"), 0o755);
    assert_eq!(mode("var/lib"), 0o755);
    assert_eq!(mode("var/lib/pfxhttp"), 0o700);
    assert_eq!(mode("var/lib/pfxhttp/pfxhttp.db"), 0o600);
    for suffix in ["-wal", "-shm"] {
        let p = s.path(&format!("var/lib/pfxhttp/pfxhttp.db{suffix}"));
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!((m.uid(), m.mode() & 0o077), (NOBODY, 0), "{} must be nobody's and private", p.display());
        }
    }
}

/// A serving process given a state database path that is a symbolic link does not use it: the
/// lookup is still answered (a temporary failure here, the backend being closed), one error line
/// names the link, and the linked file is not written.
#[test]
fn a_serving_process_refuses_a_symlinked_database() {
    let sink = SyslogSink::new();
    let s = Scene::build("state/pfxhttp.db", |conf| {
        conf.syslog(&sink, "").targets(&["http://127.0.0.1:9/x", "http://127.0.0.1:9/y"])
    });
    let real = s.path("real.db");
    std::fs::write(&real, b"").unwrap();
    std::fs::create_dir(s.path("state")).unwrap();
    symlink(&real, s.path("state/pfxhttp.db")).unwrap();
    let out = s.conf.run_serving(&["socketmap"], &netstring(b"demo k"), RUN);
    assert!(out.stdout_str().contains("TEMP "), "{out:?}");
    assert_eq!(std::fs::read(&real).unwrap(), b"", "the linked file is not written");
    sink.wait_for("symbolic link", Duration::from_secs(5)).expect("an error line about the link");
    let lines = sink.settle(Duration::from_millis(300));
    let errors: Vec<&String> = lines.iter().filter(|l| l.contains("symbolic link")).collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert!(errors[0].contains(&s.path("state/pfxhttp.db").display().to_string()), "{lines:?}");
}

/// Root's `state check` on a directory nobody owns, where a hard link to a file of root's sits
/// as `-shm` or `-wal` (a link nobody can make itself only where `fs.protected_hardlinks` is 0):
/// `check` runs as the directory's owner, so SQLite cannot write or chown the target.
#[test]
#[ignore = "needs root"]
fn root_state_check_cannot_be_made_to_touch_roots_files() {
    assert_root();
    for suffix in ["-shm", "-wal"] {
        let s = Scene::new();
        s.nobody_state_dir();
        assert_eq!(s.init().code(), Some(0), "a first init");
        std::fs::hard_link(s.target(), s.path(&format!("state/pfxhttp.db{suffix}"))).unwrap();
        let out = s.conf.run_command(&["state", "check"], b"", RUN);
        assert!(out.stdout_str().contains("owner nobody (uid 65534)"), "{out:?}");
        s.assert_target_untouched();
    }
}

/// `state init --user nobody` never gives away a directory of root's that holds anything but
/// pfxhttp's files: `state_db` naming a file straight in such a directory, or naming an existing
/// directory (whose parent would then be the state directory), is refused and nothing changes.
#[test]
#[ignore = "needs root"]
fn init_never_gives_away_a_directory_of_roots() {
    assert_root();
    let s = Scene::with_db("shared/pfxhttp.db");
    let shared = s.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("other.conf"), b"root's").unwrap();
    assert_refused(&s, &s.init(), "holds \"other.conf\", which is not pfxhttp's");
    assert_eq!(std::fs::metadata(&shared).unwrap().uid(), 0, "still root's");
    assert!(!shared.join("pfxhttp.db").exists(), "nothing created in it");

    let s = Scene::with_db("shared/sub");
    std::fs::create_dir_all(s.path("shared/sub")).unwrap();
    assert_refused(&s, &s.init(), "sub: it is not a regular file");
    assert_eq!(std::fs::metadata(s.path("shared")).unwrap().uid(), 0, "still root's");

    // An empty directory of root's (made by a package, say) is given to the user.
    let s = Scene::new();
    std::fs::create_dir(s.path("state")).unwrap();
    assert_eq!(s.init().code(), Some(0));
    assert_eq!(std::fs::metadata(s.path("state")).unwrap().uid(), NOBODY);
}

/// A serving process run by root (an administrator trying a lookup by hand) does not open a
/// state database in a directory another user owns: it carries on with state of its own, and
/// the database is not touched.
#[test]
#[ignore = "needs root"]
fn a_serving_process_run_by_root_leaves_another_users_database_alone() {
    assert_root();
    let sink = SyslogSink::new();
    let s = Scene::build("state/pfxhttp.db", |c| {
        c.syslog(&sink, "").set("target", "[http://127.0.0.1:9/x, http://127.0.0.1:9/y]")
    });
    s.nobody_state_dir();
    assert_eq!(s.init().code(), Some(0), "a first init");
    let db = s.path("state/pfxhttp.db");
    let before = std::fs::read(&db).unwrap();
    let out = s.conf.run_serving(&["socketmap"], &netstring(b"demo k"), RUN);
    assert!(out.stdout_str().contains("TEMP "), "{out:?}");
    let line = sink.wait_for("does not open a state database", Duration::from_secs(5));
    assert!(line.is_some_and(|l| l.contains("which uid 65534 owns")), "{:?}", sink.lines());
    assert_eq!(std::fs::read(&db).unwrap(), before, "not written");
    assert!(!s.path("state/pfxhttp.db-wal").exists(), "not opened");
}
