//! Who a command run by hand acts as: the users and groups of /etc/passwd and /etc/group, and
//! taking a user's identity to see files as a spawn service running as that user would.

use rustix::process::{Gid, Uid};

/// The uid and primary gid of user `name`, from /etc/passwd.
pub(super) fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| format!("no user {name} in /etc/passwd"))
}

/// The groups of /etc/group that list `name` as a member, as spawn(8) gives them to the user
/// with initgroups(3), besides the primary group.
fn member_of(name: &str) -> Vec<u32> {
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    group
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
        .filter_map(|f| f[2].parse().ok())
        .collect()
}

/// Takes the identity of user `name` (uid, primary group and the groups that list it) for the
/// rest of the command, as spawn(8) does before it runs pfxhttp; needs root.
pub(super) fn become_user(name: &str) -> Result<(), String> {
    let (uid, gid) = lookup_user(name)?;
    if rustix::process::geteuid().as_raw() == uid {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        return Err(format!("--user {name} needs root (to take that user's identity)"));
    }
    let mut groups: Vec<Gid> = vec![Gid::from_raw(gid)];
    groups.extend(member_of(name).into_iter().map(Gid::from_raw));
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    rustix::thread::set_thread_groups(&groups)
        .and_then(|()| rustix::thread::set_thread_res_gid(g, g, g))
        .and_then(|()| rustix::thread::set_thread_res_uid(u, u, u))
        .map_err(|e| format!("cannot take the identity of {name} (uid {uid}): {e}"))
}
