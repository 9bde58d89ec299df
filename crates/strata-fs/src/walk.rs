//! Resolving a path of the target one component at a time, as systemd's `chase()` does
//! with `CHASE_SAFE` (src/basic/chase.c): every link on the way is followed inside the
//! root (an absolute one starts again at the root, `..` never climbs above it), and a step
//! from a directory or link that a user other than root owns to anything another user
//! owns is refused.
//!
//! Why: whoever owns a directory can put anything in it, a link to root's files included.
//! A path that root's directories led to is trusted because only root could have changed
//! it; once it enters a directory that alice owns, only what alice owns may follow (what
//! she could have made anyway). A step out of what root owns is always fine: root chose
//! to hand that directory over. So `/home/alice/.ssh -> /root/.ssh` is refused (alice's
//! link leads back into root's tree), and Debian's `/bin -> usr/bin` (root's link in
//! root's directory) is followed.
//!
//! Each directory is opened with `O_PATH | O_NOFOLLOW` relative to the one above it, and
//! the handle that was checked is the one used: there is no window between checking a
//! path and opening it. `..` goes back to a handle held from the way down, so the walk
//! never leaves the root, as `RESOLVE_IN_ROOT` would not.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::rc::Rc;

use rustix::fs::{FileType, Mode, OFlags, fstat, openat, readlinkat};
use rustix::io::Errno;
use strata_types::TargetPath;

use crate::UserDb;

/// How many links one walk follows before it gives up (the kernel's limit).
const MAX_LINKS: u32 = 40;

/// A directory the walk reached: a handle on it, its owner, and where it is once links
/// are resolved.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub fd: Rc<OwnedFd>,
    pub uid: u32,
    pub gid: u32,
    pub path: TargetPath,
}

/// Why a walk stopped.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// A system call failed (`ENOENT`: nothing there; `ENOTDIR`: not a directory).
    Sys(Errno),
    /// The path passes from what one user owns to what another owns.
    Unsafe(Box<Transition>),
}

impl From<Errno> for WalkError {
    fn from(e: Errno) -> WalkError {
        WalkError::Sys(e)
    }
}

impl WalkError {
    /// Whether nothing (or no directory) stands where the walk went.
    pub fn is_absent(&self) -> bool {
        matches!(self, WalkError::Sys(Errno::NOENT | Errno::NOTDIR))
    }
}

/// One end of a refused step: a directory, or a link and where it points.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub path: TargetPath,
    pub uid: u32,
    pub link: Option<String>,
}

/// A step the walk refused, and the link it was following, if any.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    pub from: Place,
    pub to: Place,
    pub via: Option<(TargetPath, String)>,
}

impl Transition {
    /// The reason, with owners named as the target's `/etc/passwd` names them.
    pub fn describe(&self, users: &UserDb) -> String {
        let user = |uid: u32| users.describe_user(uid);
        let place = |p: &Place| match &p.link {
            Some(target) => format!("{} (a link to {target}, owned by {})", p.path, user(p.uid)),
            None => format!("{} (owned by {})", p.path, user(p.uid)),
        };
        let via = match &self.via {
            Some((link, target)) if Some(link) != Some(&self.from.path) => {
                format!(", following the link {link} -> {target}")
            }
            _ => String::new(),
        };
        format!(
            "unsafe path transition from {} to {}{via}: strata does not follow a path from \
             what a user other than root owns to what another user owns",
            place(&self.from),
            place(&self.to)
        )
    }
}

/// Whether a step from what `from` owns to what `to` owns is unsafe: it leaves what a
/// user other than root owns for what someone else owns (systemd's
/// `uid_unsafe_transition`).
pub fn unsafe_transition(from: u32, to: u32) -> bool {
    from != 0 && from != to
}

/// A name as system calls take it: the bytes a [`TargetPath`] component stands for.
pub(crate) fn os(name: &str) -> Cow<'_, OsStr> {
    match TargetPath::name_bytes(name) {
        Cow::Borrowed(b) => Cow::Borrowed(OsStr::from_bytes(b)),
        Cow::Owned(v) => Cow::Owned(OsString::from_vec(v)),
    }
}

/// Resolves one more component, `name`, below `stack` (the directories from the root down
/// to where the walk is, links resolved), following links: all of them when `follow`,
/// else all but a link that `name` itself is. A directory reached is pushed on `stack`;
/// anything else is returned by its name in the directory on top. `links` counts the
/// links followed.
// One loop of about 85 lines, as systemd's `chase()` is: every check reads the state the
// loop carries (the stack of directories, the components left, the link being followed),
// and the order of the checks within one component is what makes the walk safe; split
// into parts, each would take all of that state and hide the order.
pub(crate) fn step(
    stack: &mut Vec<Node>,
    name: &str,
    follow: bool,
    links: &mut u32,
) -> Result<Option<String>, WalkError> {
    let mut todo: VecDeque<String> = VecDeque::from([name.to_string()]);
    // The link being followed, for messages.
    let mut via: Option<(TargetPath, String)> = None;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                // At the root, `..` is the root.
                if let [.., up, here] = &stack[..] {
                    if unsafe_transition(here.uid, up.uid) {
                        return Err(refuse(dir_place(here), dir_place(up), via));
                    }
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        let top = stack.last().expect("a walk starts at the root");
        let fd = openat(
            &*top.fd,
            &*os(&c),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = fstat(&fd)?;
        let path = top.path.join(&c).map_err(|_| Errno::INVAL)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let target = match kind {
            FileType::Symlink => Some(readlinkat(&fd, "", Vec::new())?.into_bytes()),
            _ => None,
        };
        let shown = target
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned());
        let here = || Place {
            path: path.clone(),
            uid: st.st_uid,
            link: shown.clone(),
        };
        if unsafe_transition(top.uid, st.st_uid) {
            return Err(refuse(dir_place(top), here(), via));
        }
        let last = todo.is_empty();
        match target {
            Some(target) if follow || !last => {
                *links += 1;
                if *links > MAX_LINKS {
                    return Err(WalkError::Sys(Errno::LOOP));
                }
                if target.is_empty() {
                    return Err(WalkError::Sys(Errno::NOENT));
                }
                if target[0] == b'/' {
                    let root = &stack[0];
                    if unsafe_transition(st.st_uid, root.uid) {
                        return Err(refuse(here(), dir_place(root), via));
                    }
                    stack.truncate(1);
                }
                for part in target.split(|b| *b == b'/').rev() {
                    if !part.is_empty() {
                        todo.push_front(TargetPath::name_from_bytes(part).into_owned());
                    }
                }
                via = Some((path, shown.unwrap_or_default()));
            }
            _ if kind == FileType::Directory => stack.push(Node {
                fd: Rc::new(fd),
                uid: st.st_uid,
                gid: st.st_gid,
                path,
            }),
            _ if last => return Ok(Some(c)),
            _ => return Err(WalkError::Sys(Errno::NOTDIR)),
        }
    }
    Ok(None)
}

fn dir_place(n: &Node) -> Place {
    Place {
        path: n.path.clone(),
        uid: n.uid,
        link: None,
    }
}

fn refuse(from: Place, to: Place, via: Option<(TargetPath, String)>) -> WalkError {
    WalkError::Unsafe(Box::new(Transition { from, to, via }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// systemd's rule: what root owns may lead anywhere; what a user owns only to what the
    /// same user owns.
    #[test]
    fn only_root_or_the_same_owner_may_lead_on() {
        assert!(!unsafe_transition(0, 0));
        assert!(!unsafe_transition(0, 1000));
        assert!(!unsafe_transition(1000, 1000));
        assert!(unsafe_transition(1000, 0));
        assert!(unsafe_transition(1000, 1001));
    }
}
