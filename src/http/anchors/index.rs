//! A bundle's index kept between processes: a small text file in the state directory, named
//! after the bundle's path, holding where each certificate lies in the bundle and a hash of its
//! subject name, valid for one version of the bundle (its device, inode, size, modification and
//! change times; `update-ca-certificates` writes a new file).
//!
//! The index is a hint, never a source of trust: anchors are always decoded from the bundle
//! itself, and a certificate is used only when its decoded subject is the issuer the chain names.
//! An index that is missing, stale, unreadable or malformed is rebuilt from the bundle; one
//! written wrong by someone who can write the state directory can make verification fail, never
//! succeed. The file is opened relative to the directory opened once (as root, walked from `/`),
//! without following a link, and written to a new file renamed into place (mode 0600), so a
//! process that fails half-way leaves the old index or none.

use super::Pem;
use crate::text::{push_decimal, push_hex};
use rustix::fs::{AtFlags, Mode, OFlags, openat, renameat, unlinkat};
use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The first line of every index file, with the format's version.
const HEADER: &str = "pfxhttp CA bundle index 1";

/// More than any bundle's index holds (about 30 bytes a certificate).
const MAX_BYTES: u64 = 1 << 20;

/// Where the index of one bundle is kept, and the version of the bundle it must describe.
pub(super) struct Kept<'a> {
    dir: BorrowedFd<'a>,
    /// The file's name in `dir`.
    name: String,
    /// `key` and `bundle` lines: which file, which version of it.
    identity: String,
    /// The bundle's size: no section lies beyond it.
    size: u64,
}

impl<'a> Kept<'a> {
    /// The index in directory `dir` of `bundle`, whose open file's metadata is `m`.
    pub(super) fn new(dir: BorrowedFd<'a>, bundle: &Path, m: &Metadata) -> Kept<'a> {
        let identity = format!(
            "key {} {} {} {} {} {} {}\nbundle {}\n",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            bundle.display()
        );
        let name = format!("ca-index-{:016x}", super::name_hash(bundle.as_os_str().as_bytes()));
        Kept { dir, name, identity, size: m.size() }
    }

    /// The certificates the index lists, when it describes this version of the bundle. The
    /// index's sections must lie in the bundle, in order, apart: so that even an index written
    /// wrong makes no handshake read more than the bundle once.
    pub(super) fn read(&self) -> Option<Vec<Pem>> {
        // Not a link, and not a FIFO or a device left there (whose open or read could wait).
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = File::from(openat(self.dir, self.name.as_str(), flags, Mode::empty()).ok()?);
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        // Room for the whole file (and the read that finds its end): one read, not ten doubling.
        let mut text = String::with_capacity(meta.len().min(MAX_BYTES) as usize + 1);
        file.take(MAX_BYTES).read_to_string(&mut text).ok()?;
        let rest = text.strip_prefix(HEADER)?.strip_prefix('\n')?.strip_prefix(self.identity.as_str())?;
        let certs: Vec<Pem> = rest.lines().map(parse_line).collect::<Option<_>>()?;
        let apart = certs.windows(2).all(|w| w[0].body.end < w[1].body.start);
        let inside = certs.last().is_some_and(|last| last.body.end <= self.size);
        (apart && inside).then_some(certs)
    }

    /// Writes the index of `certs`; a failure leaves things as they were (the next process
    /// scans the bundle again).
    pub(super) fn write(&self, certs: &[Pem]) {
        let mut text = format!("{HEADER}\n{}", self.identity);
        for pem in certs {
            push_decimal(&mut text, pem.body.start);
            text.push(' ');
            push_decimal(&mut text, pem.body.end);
            text.push(' ');
            match pem.subject {
                Some(hash) => push_hex(&mut text, u128::from(hash), 16),
                None => text.push('-'),
            }
            text.push('\n');
        }
        let temp = format!("{}.{}.tmp", self.name, std::process::id());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let written = openat(self.dir, temp.as_str(), flags, Mode::from_raw_mode(0o600))
            .map(File::from)
            .map_err(std::io::Error::from)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| renameat(self.dir, temp.as_str(), self.dir, self.name.as_str()).map_err(Into::into));
        if written.is_err() {
            let _ = unlinkat(self.dir, temp.as_str(), AtFlags::empty());
        }
    }
}

/// `START END HASH` (`-` for a subject not found).
fn parse_line(line: &str) -> Option<Pem> {
    let mut words = line.split(' ');
    let (start, end, subject) = (words.next()?, words.next()?, words.next()?);
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    let subject = match subject {
        "-" => None,
        hex => Some(u64::from_str_radix(hex, 16).ok()?),
    };
    (start <= end && words.next().is_none()).then_some(Pem { body: start..end, subject })
}
