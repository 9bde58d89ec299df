//! The file systems mounted inside a target: which the sandbox overlays (each with an
//! overlay of its own, so every write on it is observed), which it shows read-only, and
//! which it refuses (network and FUSE file systems, unless the site says not to observe
//! them).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_types::TargetPath;

/// A file system mounted below the target's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubMount {
    /// Where, as the node sees it.
    pub at: TargetPath,
    /// Where, on this machine.
    pub host: PathBuf,
    /// Its type (`ext4`, `tmpfs`…).
    pub fstype: String,
    /// How the sandbox shows it.
    pub how: Show,
}

/// How the sandbox shows a mounted file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Show {
    /// An overlay of its own: writable, observed, committed.
    Overlay,
    /// Read-only, as the host has it (a script's write fails as it would for real).
    ReadOnly,
    /// Read-only and not observed (`[sandbox] unobserved`).
    Unobserved,
}

/// One layer of the sandbox: where it is mounted in the node's tree, and its upper dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// `/` for the root's overlay, else the mount point.
    pub at: TargetPath,
    /// Its upper dir (host path, on the sandbox's tmpfs).
    pub upper: PathBuf,
}

/// File systems that are not part of a root's content (a target's `/proc`, `/dev`…):
/// never overlaid, never observed.
pub fn pseudo_fs(fstype: &str) -> bool {
    matches!(
        fstype,
        "proc"
            | "sysfs"
            | "devtmpfs"
            | "devpts"
            | "mqueue"
            | "cgroup"
            | "cgroup2"
            | "securityfs"
            | "debugfs"
            | "tracefs"
            | "pstore"
            | "bpf"
            | "hugetlbfs"
            | "fusectl"
            | "configfs"
            | "binfmt_misc"
            | "autofs"
            | "efivarfs"
            | "rpc_pipefs"
            | "nsfs"
    )
}

/// File systems whose contents live elsewhere or behind a user-space server: the sandbox
/// cannot promise that what it observes there is what an apply would do.
pub fn remote_fs(fstype: &str) -> bool {
    matches!(
        fstype,
        "nfs"
            | "nfs4"
            | "cifs"
            | "smb3"
            | "smbfs"
            | "ceph"
            | "glusterfs"
            | "9p"
            | "afs"
            | "lustre"
            | "davfs"
            | "fuse"
            | "fuseblk"
            | "virtiofs"
    ) || fstype.starts_with("fuse.")
}

/// Why a target cannot be sandboxed as it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The mount point (host path).
    pub mount: PathBuf,
    /// Its type.
    pub fstype: String,
}

/// The file systems mounted below `root` (canonical) in `mountinfo`, parents before
/// children, each with how the sandbox shows it. `unobserved` are the site's
/// `[sandbox] unobserved` paths; `replaced` the directories the sandbox mounts its own
/// file systems on (what the target has mounted there is never seen).
pub fn below(
    root: &Path,
    mountinfo: &str,
    unobserved: &[TargetPath],
    replaced: &[&str],
) -> Result<Vec<SubMount>, Refused> {
    let mut found: Vec<SubMount> = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(options), Some(fstype)) =
            (fields.get(4), fields.get(5), fields.get(sep + 1))
        else {
            continue;
        };
        let host = PathBuf::from(strata_fs::unescape_mountinfo(point));
        let Ok(rel) = host.strip_prefix(root) else {
            continue;
        };
        if rel.as_os_str().is_empty() || pseudo_fs(fstype) {
            continue;
        }
        let Ok(at) = TargetPath::parse(&format!("/{}", rel.to_string_lossy())) else {
            continue;
        };
        if replaced
            .iter()
            .any(|m| TargetPath::parse(m).is_ok_and(|m| at.starts_with(&m)))
        {
            continue;
        }
        let how = if unobserved.iter().any(|u| at.starts_with(u)) {
            Show::Unobserved
        } else if remote_fs(fstype) {
            return Err(Refused {
                mount: host,
                fstype: fstype.to_string(),
            });
        } else if options.split(',').any(|o| o == "ro") {
            Show::ReadOnly
        } else {
            Show::Overlay
        };
        // A later mount on the same point hides the earlier one, and what was below it.
        found.retain(|m| !m.at.starts_with(&at));
        found.push(SubMount {
            at,
            host,
            fstype: fstype.to_string(),
            how,
        });
    }
    found.sort_by_key(|m| m.at.depth());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPath {
        TargetPath::parse(s).expect("path")
    }

    const INFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 8:2 / /t/boot rw - ext2 /dev/loop0 rw
31 22 8:3 / /t/home rw - ext4 /dev/loop1 rw
32 31 8:4 / /t/home/shared\\040dir ro - xfs /dev/loop2 ro
33 22 0:40 / /t/srv/data rw - tmpfs tmpfs rw
34 22 0:41 / /t/proc rw - proc proc rw
35 22 0:42 / /t/run rw - tmpfs tmpfs rw
36 22 0:43 / /t/mnt/nfs rw - nfs4 srv:/x rw
37 22 0:44 / /t/var rw - ext4 /dev/loop3 rw
38 22 0:45 / /t/var rw - xfs /dev/loop4 rw
39 22 0:46 / /tother rw - ext4 /dev/loop5 rw
";

    #[test]
    fn every_content_file_system_below_the_root_is_found_parents_first() {
        let got = below(Path::new("/t"), INFO, &[p("/mnt/nfs")], &["/proc", "/run"])
            .expect("nothing refused");
        let summary: Vec<(String, &str, Show)> = got
            .iter()
            .map(|m| (m.at.to_string(), m.fstype.as_str(), m.how))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/boot".into(), "ext2", Show::Overlay),
                ("/home".into(), "ext4", Show::Overlay),
                ("/var".into(), "xfs", Show::Overlay),
                ("/home/shared dir".into(), "xfs", Show::ReadOnly),
                ("/srv/data".into(), "tmpfs", Show::Overlay),
                ("/mnt/nfs".into(), "nfs4", Show::Unobserved),
            ]
        );
    }

    #[test]
    fn a_network_file_system_is_refused_with_its_mount_point() {
        let refused = below(Path::new("/t"), INFO, &[], &["/proc", "/run"]).expect_err("nfs");
        assert_eq!(refused.mount, Path::new("/t/mnt/nfs"));
        assert_eq!(refused.fstype, "nfs4");
    }
}
