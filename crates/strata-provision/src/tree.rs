//! The new tree's own boot files (`fstab` by UUID, the host name, GRUB's menu), and the
//! file systems made from it at their partitions' offsets with `mke2fs -d`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Console, Fs, PartType};
use crate::disk::Disk;
use crate::error::ProvisionError;
use crate::gpt::Placed;
use crate::nofollow::write_tree_file;
use crate::run::run;

/// A partition of the layout with what goes on it.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Where it is on the disk.
    pub placed: Placed,
    /// Its type.
    pub kind: PartType,
    /// Its mount point.
    pub mount: Option<String>,
    /// Its file system.
    pub fs: Option<Fs>,
    /// The UUID of its file system (or swap), in text form.
    pub uuid: String,
}

/// A random UUID in text form (version 4).
pub fn uuid_text(mut r: [u8; 16]) -> String {
    r[6] = (r[6] & 0x0f) | 0x40;
    r[8] = (r[8] & 0x3f) | 0x80;
    let h: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `/etc/fstab`: every file system and swap by UUID, `/` first.
pub fn fstab(volumes: &[Volume]) -> String {
    let mut out = String::from(
        "# Written by strata provision: the layout's file systems, by UUID.\n\
         # <file system>                           <mount point> <type> <options> <dump> <pass>\n",
    );
    let mut mounted: Vec<&Volume> = volumes.iter().filter(|v| v.mount.is_some()).collect();
    mounted.sort_by_key(|v| v.mount.as_deref().map(|m| m.matches('/').count() + m.len()));
    for v in mounted {
        let (Some(m), Some(fs)) = (v.mount.as_deref(), v.fs) else {
            continue;
        };
        let (opts, pass) = if m == "/" {
            ("errors=remount-ro", 1)
        } else {
            ("defaults", 2)
        };
        out.push_str(&format!(
            "UUID={} {m} {} {opts} 0 {pass}\n",
            v.uuid,
            fs.name()
        ));
    }
    for v in volumes.iter().filter(|v| v.kind == PartType::Swap) {
        out.push_str(&format!("UUID={} none swap sw 0 0\n", v.uuid));
    }
    out
}

/// The volume holding `/boot` (its own partition, else `/`), and where `/boot` is in it.
pub fn boot_volume(volumes: &[Volume]) -> (&Volume, &'static str) {
    if let Some(v) = volumes.iter().find(|v| v.mount.as_deref() == Some("/boot")) {
        return (v, "");
    }
    let root = volumes
        .iter()
        .find(|v| v.mount.as_deref() == Some("/"))
        .expect("a checked layout mounts /");
    (root, "/boot")
}

/// The kernel and initramfs the tree boots (Debian's `/vmlinuz` and `/initrd.img` links,
/// else the newest in `/boot`), as names in `/boot`.
pub fn kernel(tree: &Path) -> Result<(String, String), ProvisionError> {
    let in_boot = |link: &str| {
        strata_fs::read_link(&tree.join(link))
            .ok()
            .and_then(|t| t.rsplit('/').next().map(str::to_string))
            .filter(|n| strata_fs::exists(&tree.join("boot").join(n)))
    };
    if let (Some(k), Some(i)) = (in_boot("vmlinuz"), in_boot("initrd.img")) {
        return Ok((k, i));
    }
    let names = strata_fs::list_dir(&tree.join("boot"))?;
    let mut kernels: Vec<&String> = names.iter().filter(|n| n.starts_with("vmlinuz-")).collect();
    kernels.sort_by(|a, b| version_cmp(a, b));
    for k in kernels.iter().rev() {
        let initrd = format!("initrd.img-{}", &k["vmlinuz-".len()..]);
        if names.contains(&initrd) {
            return Ok(((*k).clone(), initrd));
        }
    }
    Err(ProvisionError::Tree(
        "the new tree has no kernel with an initramfs in /boot: the base or the node's \
         catalog must install one (linux-image-amd64)"
            .into(),
    ))
}

/// Compares version-like names number by number.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    key(a).cmp(&key(b))
}

/// GRUB's menu: the one kernel, its root by UUID, the console on the serial line.
pub fn grub_cfg(
    node: &str,
    boot_uuid: &str,
    boot_dir: &str,
    root_uuid: &str,
    (kernel, initrd): (&str, &str),
    console: Option<&Console>,
) -> String {
    let mut out = String::from("# Written by strata provision.\nset default=0\nset timeout=1\n");
    let mut args = format!("root=UUID={root_uuid} ro");
    if let Some(c) = console {
        out.push_str(&format!(
            "serial --unit={} --speed={}\nterminal_input serial console\nterminal_output serial console\n",
            c.unit, c.speed
        ));
        args.push_str(&format!(" console=tty0 console={},{}", c.device, c.speed));
    }
    // The title is GRUB script: only a plain name goes in.
    let node: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.push_str(&format!(
        "menuentry '{node}' {{\n  search --no-floppy --fs-uuid --set=root {boot_uuid}\n  \
         linux {boot_dir}/{kernel} {args}\n  initrd {boot_dir}/{initrd}\n}}\n"
    ));
    out
}

/// Writes `/etc/fstab` and `/etc/hostname` into the tree.
pub fn write_node_files(tree: &Path, node: &str, volumes: &[Volume]) -> Result<(), ProvisionError> {
    write_tree_file(tree, "etc/fstab", fstab(volumes).as_bytes(), 0o644)?;
    write_tree_file(tree, "etc/hostname", format!("{node}\n").as_bytes(), 0o644)
}

/// Moves each mounted volume's part of the tree (other than `/`) into a directory of its
/// own under `staging`, leaving its mount point empty: the directory each file system is
/// made from, by volume index.
pub fn split(
    tree: &Path,
    staging: &Path,
    volumes: &[Volume],
) -> Result<Vec<(usize, PathBuf)>, ProvisionError> {
    let mut sources = Vec::new();
    let mut order: Vec<(usize, &str)> = volumes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.mount.as_deref().map(|m| (i, m)))
        .collect();
    // The deepest first, so that /var/lib is taken out of /var before /var leaves.
    order.sort_by_key(|(_, m)| std::cmp::Reverse(m.matches('/').count()));
    for (i, m) in order {
        if m == "/" {
            sources.push((i, tree.to_path_buf()));
            continue;
        }
        let inside = tree.join(m.trim_start_matches('/'));
        no_link_on_the_way(tree, m)?;
        let dest = staging.join(format!("volume-{i}"));
        if strata_fs::is_dir(&inside) {
            strata_fs::rename(&inside, &dest)?;
        } else {
            strata_fs::create_dir_all(&dest)?;
        }
        strata_fs::create_dir_all(&inside)?;
        sources.push((i, dest));
    }
    Ok(sources)
}

/// A mount point reached through a symbolic link of the tree (`/lib` is one on Debian
/// since bookworm) would take the link's target, not the directory the layout means.
fn no_link_on_the_way(tree: &Path, mount: &str) -> Result<(), ProvisionError> {
    let mut at = tree.to_path_buf();
    for part in mount.split('/').filter(|p| !p.is_empty()) {
        at.push(part);
        if strata_fs::is_link(&at) {
            let to = strata_fs::read_link(&at).unwrap_or_default();
            return Err(ProvisionError::Tree(format!(
                "mount point {mount}: {} is a symbolic link in the new tree (to {to}); \
                 mount the directory it leads to instead",
                at.strip_prefix(tree).unwrap_or(&at).display()
            )));
        }
    }
    Ok(())
}

/// Makes the volume's file system from `source` at its partition, in place on the disk.
pub fn make_fs(disk: &Disk, v: &Volume, source: &Path) -> Result<(), ProvisionError> {
    let fs = v.fs.expect("a mounted volume has a file system");
    let label = match v.mount.as_deref() {
        Some("/") => "root".to_string(),
        Some(m) => m.trim_start_matches('/').replace('/', "-"),
        None => String::new(),
    };
    let label: String = label.chars().take(16).collect();
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", fs.name(), "-U", &v.uuid, "-L", &label])
        .arg("-E")
        .arg(format!("offset={},nodiscard", v.placed.offset()))
        .arg("-d")
        .arg(source)
        .arg(disk.path())
        .arg(format!("{}k", v.placed.bytes() / 1024)))?;
    Ok(())
}

/// A swap header (what `mkswap` writes) at the volume's partition.
pub fn make_swap(disk: &Disk, v: &Volume) -> Result<(), ProvisionError> {
    const PAGE: u64 = 4096;
    let hex: String = v.uuid.chars().filter(char::is_ascii_hexdigit).collect();
    let mut uuid = [0u8; 16];
    for (i, b) in uuid.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("0"), 16).unwrap_or(0);
    }
    let pages = v.placed.bytes() / PAGE;
    if pages < 10 {
        return Err(ProvisionError::Tree(
            "a swap partition needs at least 40 KiB".into(),
        ));
    }
    let mut header = vec![0u8; PAGE as usize];
    header[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    let last = u32::try_from(pages - 1).unwrap_or(u32::MAX);
    header[1028..1032].copy_from_slice(&last.to_le_bytes());
    header[1036..1052].copy_from_slice(&uuid);
    header[4086..4096].copy_from_slice(b"SWAPSPACE2");
    disk.write_at(v.placed.first, &header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(i: usize, mount: Option<&str>, kind: PartType) -> Volume {
        Volume {
            placed: Placed {
                index: i,
                first: 2048 * (i as u64 + 1),
                sectors: 2048,
                guid: [0; 16],
            },
            kind,
            mount: mount.map(str::to_string),
            fs: mount.map(|_| Fs::Ext4),
            uuid: format!("uuid-{i}"),
        }
    }

    #[test]
    fn fstab_names_every_file_system_by_uuid_root_first() {
        let v = [
            vol(0, None, PartType::BiosGrub),
            vol(1, Some("/var"), PartType::Linux),
            vol(2, Some("/"), PartType::Linux),
            vol(3, None, PartType::Swap),
        ];
        let f = fstab(&v);
        let lines: Vec<&str> = f.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "UUID=uuid-2 / ext4 errors=remount-ro 0 1",
                "UUID=uuid-1 /var ext4 defaults 0 2",
                "UUID=uuid-3 none swap sw 0 0",
            ]
        );
        assert_eq!(boot_volume(&v).0.uuid, "uuid-2");
        assert_eq!(boot_volume(&v).1, "/boot");
    }

    #[test]
    fn the_menu_boots_the_kernel_by_uuid_on_the_serial_console() {
        let c = Console {
            device: "ttyS0".into(),
            unit: 0,
            speed: 115_200,
        };
        let g = grub_cfg(
            "db1",
            "B",
            "/boot",
            "R",
            ("vmlinuz-6", "initrd.img-6"),
            Some(&c),
        );
        assert!(g.contains("serial --unit=0 --speed=115200"), "{g}");
        assert!(
            g.contains("linux /boot/vmlinuz-6 root=UUID=R ro console=tty0 console=ttyS0,115200"),
            "{g}"
        );
        assert!(g.contains("--set=root B"), "{g}");
        let g = grub_cfg("x'; reboot; '", "B", "", "R", ("k", "i"), None);
        assert!(g.contains("menuentry 'x___reboot___' {"), "{g}");
        assert!(g.contains("linux /k root=UUID=R ro\n"), "{g}");
    }

    #[test]
    fn a_mount_point_through_a_link_is_refused_and_the_tree_left_whole() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        strata_fs::create_dir_all(&tree).unwrap();
        write_tree_file(&tree, "usr/lib/x", b"x", 0o644).unwrap();
        write_tree_file(&tree, "var/log/y", b"y", 0o644).unwrap();
        std::os::unix::fs::symlink("usr/lib", tree.join("lib")).unwrap();
        let staging = t.path().join("staging");
        strata_fs::create_dir_all(&staging).unwrap();
        let e = split(
            &tree,
            &staging,
            &[vol(0, Some("/lib/modules"), PartType::Linux)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("lib is a symbolic link") && e.contains("usr/lib"),
            "{e}"
        );
        assert!(strata_fs::is_link(&tree.join("lib")));
        let s = split(
            &tree,
            &staging,
            &[
                vol(0, Some("/"), PartType::Linux),
                vol(1, Some("/var"), PartType::Linux),
            ],
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert!(strata_fs::exists(&staging.join("volume-1/log/y")));
        assert!(strata_fs::list_dir(&tree.join("var")).unwrap().is_empty());
    }

    #[test]
    fn uuids_are_version_4() {
        let u = uuid_text([0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }

    #[test]
    fn the_newest_kernel_with_an_initramfs_is_booted() {
        let t = tempfile::tempdir().unwrap();
        for f in [
            "boot/vmlinuz-6.1.0-9-amd64",
            "boot/initrd.img-6.1.0-9-amd64",
            "boot/vmlinuz-6.1.0-10-amd64",
            "boot/initrd.img-6.1.0-10-amd64",
            "boot/vmlinuz-6.1.0-11-amd64",
        ] {
            write_tree_file(t.path(), f, b"k", 0o644).unwrap();
        }
        assert_eq!(
            kernel(t.path()).unwrap(),
            (
                "vmlinuz-6.1.0-10-amd64".into(),
                "initrd.img-6.1.0-10-amd64".into()
            )
        );
        let e = kernel(&t.path().join("boot")).unwrap_err().to_string();
        assert!(e.contains("linux-image-amd64"), "{e}");
    }
}
