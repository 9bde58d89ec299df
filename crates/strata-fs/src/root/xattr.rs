//! Extended attributes of the target's files and directories: those strata manages (all
//! but overlayfs's own and SELinux labels), read and set through a handle, values in hex.

use rustix::fs::OFlags;
use rustix::io::Errno;
use strata_types::{Snapshot, TargetPath, Xattrs, hex};

use super::Root;
use crate::Result;

impl Root {
    /// The extended attributes of a file or directory: the `names` given (`None` for those
    /// it lacks), or every one it has. overlayfs's own and SELinux labels are never
    /// managed, so never listed.
    pub fn xattrs(&self, p: &TargetPath, names: Option<&[&String]>) -> Result<Xattrs> {
        let fd = self
            .open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK)
            .map_err(|e| self.walk_err("open", p, e))?;
        let mut out = Xattrs::new();
        let listed: Vec<String>;
        let names: Vec<&str> = match names {
            Some(n) => n.iter().map(|s| s.as_str()).collect(),
            None => {
                let size = match rustix::fs::flistxattr_query(&fd) {
                    Ok(n) => n,
                    Err(Errno::NOTSUP) => 0,
                    Err(e) => return Err(self.err("list attributes of", p, e)),
                };
                let mut buf = vec![0u8; size];
                let n = rustix::fs::flistxattr(&fd, &mut buf[..])
                    .map_err(|e| self.err("list attributes of", p, e))?;
                listed = buf[..n]
                    .split(|b| *b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .filter(|n| managed_xattr(n))
                    .collect();
                listed.iter().map(String::as_str).collect()
            }
        };
        for name in names {
            let value = match rustix::fs::fgetxattr_query(&fd, name) {
                Ok(size) => {
                    let mut buf = vec![0u8; size];
                    let n = rustix::fs::fgetxattr(&fd, name, &mut buf[..])
                        .map_err(|e| self.err("read attribute of", p, e))?;
                    Some(hex(&buf[..n]))
                }
                Err(Errno::NODATA | Errno::NOTSUP) => None,
                Err(e) => return Err(self.err("read attribute of", p, e)),
            };
            out.insert(name.to_string(), value);
        }
        Ok(out)
    }

    /// Reads into `have` (what stands at `p`) the values of the attributes `want` manages,
    /// so the two compare.
    pub fn fill_xattrs(&self, p: &TargetPath, want: &Xattrs, have: &mut Snapshot) -> Result<()> {
        if want.is_empty() {
            return Ok(());
        }
        if let Some(x) = have.xattrs_mut() {
            let names: Vec<&String> = want.keys().collect();
            *x = self.xattrs(p, Some(&names))?;
        }
        Ok(())
    }

    /// Sets each attribute to its value, and removes those whose value is `None`.
    pub fn set_xattrs(&self, p: &TargetPath, xattrs: &Xattrs) -> Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let fd = self
            .open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK)
            .map_err(|e| self.walk_err("open", p, e))?;
        for (name, value) in xattrs {
            let done = match value {
                Some(v) => rustix::fs::fsetxattr(
                    &fd,
                    name.as_str(),
                    &unhex(v),
                    rustix::fs::XattrFlags::empty(),
                ),
                None => match rustix::fs::fremovexattr(&fd, name.as_str()) {
                    Err(Errno::NODATA) => Ok(()),
                    other => other,
                },
            };
            done.map_err(|e| self.err("set attribute of", p, e))?;
        }
        Ok(())
    }
}

/// Whether strata manages an extended attribute: all but overlayfs's own
/// (`trusted.overlay.*`) and SELinux labels (the policy's).
pub fn managed_xattr(name: &str) -> bool {
    !name.starts_with("trusted.overlay.") && name != "security.selinux"
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}
