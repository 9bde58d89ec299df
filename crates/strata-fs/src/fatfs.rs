//! File systems that cannot hold owners, modes or extended attributes (vfat, msdos,
//! exfat: `/boot/efi` on almost every machine): every file and directory shows the owner
//! and mode its mount options give. A plan states what such a file system will really
//! store, so that a second plan is empty and a commit never tries a `chmod` it refuses.

use std::path::Path;

use strata_types::{Snapshot, TargetPath};

/// What a FAT-like mount shows for every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedMeta {
    /// The owner of everything (`uid=`, default root).
    pub uid: u32,
    /// The group of everything (`gid=`, default root).
    pub gid: u32,
    /// Permission bits taken from files (`fmask=`, or `umask=`).
    pub fmask: u32,
    /// Permission bits taken from directories (`dmask=`, or `umask=`).
    pub dmask: u32,
}

impl FixedMeta {
    /// `state` as this file system will store it: the mount's owner, group and mode, no
    /// extended attributes. Links and FIFOs are left for the commit to refuse.
    pub fn apply(&self, state: &mut Snapshot) {
        match state {
            Snapshot::File {
                mode,
                uid,
                gid,
                xattrs,
                ..
            } => {
                *mode = 0o777 & !self.fmask;
                (*uid, *gid) = (self.uid, self.gid);
                xattrs.clear();
            }
            Snapshot::Dir {
                mode,
                uid,
                gid,
                xattrs,
            } => {
                *mode = 0o777 & !self.dmask;
                (*uid, *gid) = (self.uid, self.gid);
                xattrs.clear();
            }
            _ => {}
        }
    }
}

/// The FAT-like file systems mounted at or below `root` (canonical) in `mountinfo`, with
/// their mount points as the node sees them, deepest first.
pub fn below(root: &Path, mountinfo: &str) -> Vec<(TargetPath, FixedMeta)> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype), Some(options)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        if !matches!(*fstype, "vfat" | "msdos" | "exfat") {
            continue;
        }
        let point = unescape_mountinfo(point);
        let Ok(rel) = Path::new(&point).strip_prefix(root) else {
            continue;
        };
        let Ok(at) = TargetPath::parse(&format!("/{}", rel.to_string_lossy())) else {
            continue;
        };
        let option = |key: &str| {
            options
                .split(',')
                .find_map(|o| o.strip_prefix(key)?.strip_prefix('='))
        };
        let id = |key: &str| option(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mask = |key: &str| option(key).and_then(|v| u32::from_str_radix(v, 8).ok());
        let umask = mask("umask").unwrap_or(0o022);
        found.retain(|(p, _): &(TargetPath, FixedMeta)| !p.starts_with(&at));
        found.push((
            at,
            FixedMeta {
                uid: id("uid"),
                gid: id("gid"),
                fmask: mask("fmask").unwrap_or(umask),
                dmask: mask("dmask").unwrap_or(umask),
            },
        ));
    }
    found.sort_by_key(|m| std::cmp::Reverse(m.0.depth()));
    found
}

/// The rules for `path`: those of the deepest FAT-like mount holding it.
pub fn for_path<'a>(
    mounts: &'a [(TargetPath, FixedMeta)],
    path: &TargetPath,
) -> Option<&'a FixedMeta> {
    mounts
        .iter()
        .find(|(at, _)| path.starts_with(at) && path != at)
        .map(|(_, m)| m)
}

/// A mount point as `/proc/self/mountinfo` writes it, with spaces and a few other bytes
/// escaped as `\ooo`, unescaped.
pub fn unescape_mountinfo(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(Ok(v)) = s.get(i + 1..i + 4).map(|o| u8::from_str_radix(o, 8))
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_types::Hash;

    const INFO: &str = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 8:2 / /t/boot/efi rw,relatime - vfat /dev/sda2 rw,fmask=0077,dmask=0027,codepage=437,iocharset=ascii,shortname=mixed,errors=remount-ro
41 22 8:3 / /t/mnt/usb rw - exfat /dev/sdb1 rw,uid=1000,gid=1000,umask=0022
42 22 8:4 / /other/efi rw - vfat /dev/sdc1 rw,fmask=0022,dmask=0022
";

    fn p(s: &str) -> TargetPath {
        TargetPath::parse(s).expect("path")
    }

    #[test]
    fn fat_mounts_under_the_root_are_found_with_their_owner_and_masks() {
        let got = below(Path::new("/t"), INFO);
        assert_eq!(
            got,
            vec![
                (
                    p("/boot/efi"),
                    FixedMeta {
                        uid: 0,
                        gid: 0,
                        fmask: 0o077,
                        dmask: 0o027
                    }
                ),
                (
                    p("/mnt/usb"),
                    FixedMeta {
                        uid: 1000,
                        gid: 1000,
                        fmask: 0o022,
                        dmask: 0o022
                    }
                ),
            ]
        );
        assert!(for_path(&got, &p("/boot/efi/EFI/debian/grubx64.efi")).is_some());
        assert!(for_path(&got, &p("/boot/grub/grub.cfg")).is_none());
        assert!(
            for_path(&got, &p("/boot/efi")).is_none(),
            "the mount point is its parent's"
        );
    }

    #[test]
    fn a_declared_file_is_planned_as_fat_will_store_it() {
        let got = below(Path::new("/t"), INFO);
        let rules = for_path(&got, &p("/boot/efi/startup.nsh")).expect("on vfat");
        let mut file = Snapshot::File {
            hash: Hash::of(b"x"),
            size: 1,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            xattrs: [("user.a".to_string(), Some("01".to_string()))]
                .into_iter()
                .collect(),
        };
        rules.apply(&mut file);
        assert_eq!(file.mode(), Some(0o700));
        assert_eq!(file.owner(), Some((0, 0)));
        assert!(file.xattrs().is_empty());
        let mut dir = Snapshot::Dir {
            mode: 0o700,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        rules.apply(&mut dir);
        assert_eq!(dir.mode(), Some(0o750));
    }
}
