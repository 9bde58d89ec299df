//! GRUB for a BIOS machine, installed onto the disk without loop devices: the base's own
//! `grub-mkimage` makes the core image (it finds the boot file system by UUID), which goes
//! into the `bios_grub` partition; `boot.img` goes into the MBR, both patched with where
//! the core lies, as `grub-bios-setup` does. All of it is taken from the base as unpacked,
//! before the node's catalog can change the tree: the catalog is the site's, and a
//! `grub-mkimage` it ships must never run here.

use std::path::Path;
use std::process::Command;

use crate::error::ProvisionError;
use crate::nofollow::TreeDir;
use crate::run::run;

/// Where Debian's grub-pc-bin keeps the BIOS modules.
const MODULES: &str = "usr/lib/grub/i386-pc";
/// What the core image holds: enough to find the boot file system by UUID and read it;
/// the rest is loaded from `$prefix/i386-pc`.
const CORE_MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "part_msdos",
    "ext2",
    "search_fs_uuid",
];

/// boot.img: the sector the core image starts at (GRUB_BOOT_MACHINE_KERNEL_SECTOR).
const KERNEL_SECTOR: usize = 0x5c;
/// boot.img: the jump that skips the boot drive check (GRUB_BOOT_MACHINE_DRIVE_CHECK).
const DRIVE_CHECK: usize = 0x66;
/// diskboot.img (the core's first sector): the first block list's start sector.
const BLOCKLIST_START: usize = 512 - 12;

/// The boot loader, ready to write.
#[derive(Debug)]
pub struct Bios {
    /// The MBR's boot code (440 bytes).
    pub mbr_code: Vec<u8>,
    /// The core image, for the `bios_grub` partition.
    pub core: Vec<u8>,
    /// The base's modules (`.mod`, `.lst`, `.img`), for `/boot/grub/i386-pc`: the ones the
    /// core image was made with.
    modules: Vec<(String, Vec<u8>)>,
}

/// Makes the core image for a `bios_grub` partition at `first_sector` of `max_bytes`,
/// finding the file system `boot_uuid` and GRUB's files at `prefix` in it, with the
/// `grub-mkimage` of `base` (the base as unpacked, before the catalog), and takes the
/// base's modules.
pub fn bios(
    base: &Path,
    boot_uuid: &str,
    prefix: &str,
    first_sector: u64,
    max_bytes: u64,
) -> Result<Bios, ProvisionError> {
    let dir = base.join(MODULES);
    if !strata_fs::exists(&dir.join("boot.img")) {
        return Err(ProvisionError::Tree(format!(
            "the base has no /{MODULES}/boot.img (grub-pc-bin): remove the cached base \
             tarball so that it is made again"
        )));
    }
    let mut modules = Vec::new();
    for name in strata_fs::list_dir(&dir)? {
        if [".mod", ".lst", ".img"].iter().any(|s| name.ends_with(s)) {
            let content = strata_fs::read(&dir.join(&name))?;
            modules.push((name, content));
        }
    }
    let early = format!("search.fs_uuid {boot_uuid} root\nset prefix=($root){prefix}\n");
    let tag: String = crate::disk::random::<8>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (cfg, img) = (
        format!("strata-grub-early.{tag}.cfg"),
        format!("strata-grub-core.{tag}.img"),
    );
    // Both in the fresh tree's /tmp, for this one call, before the catalog runs (the
    // image to a file: grub-mkimage syncs what it writes, which a pipe refuses).
    let tmp = crate::nofollow::dir(base, "tmp")?;
    tmp.write(&cfg, early.as_bytes(), 0o600)?;
    // strata's environment (its cache, the site's variables) stays out.
    let made = run(Command::new("chroot")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C")
        .arg(base)
        .args(["/usr/bin/grub-mkimage", "-O", "i386-pc", "-d"])
        .arg(format!("/{MODULES}"))
        .arg("-c")
        .arg(format!("/tmp/{cfg}"))
        .args(["-p", prefix])
        .arg("-o")
        .arg(format!("/tmp/{img}"))
        .args(CORE_MODULES));
    let core = made.and_then(|_| tmp.read(&img));
    tmp.remove(&cfg)?;
    tmp.remove(&img)?;
    let mut core = core?;
    let boot = modules
        .iter()
        .find(|(n, _)| n == "boot.img")
        .map(|(_, c)| c.as_slice())
        .unwrap_or_default();
    if boot.len() != 512 || core.len() < 512 {
        return Err(ProvisionError::Tree(format!(
            "/{MODULES}: boot.img or the core image is not what GRUB makes"
        )));
    }
    if core.len() as u64 > max_bytes {
        return Err(ProvisionError::Tree(format!(
            "GRUB's core image ({} bytes) does not fit the bios_grub partition ({max_bytes} bytes)",
            core.len()
        )));
    }
    let mut mbr_code = boot[..440].to_vec();
    mbr_code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&first_sector.to_le_bytes());
    // A hard disk: skip the check for BIOSes that pass a wrong boot drive.
    mbr_code[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    core[BLOCKLIST_START..BLOCKLIST_START + 8].copy_from_slice(&(first_sector + 1).to_le_bytes());
    Ok(Bios {
        mbr_code,
        core,
        modules,
    })
}

impl Bios {
    /// Writes the base's modules into `/boot/grub/i386-pc` of the tree (what
    /// `grub-install` does), over what the catalog left there.
    pub fn install(&self, dest: &TreeDir) -> Result<(), ProvisionError> {
        for (name, content) in &self.modules {
            dest.write(name, content, 0o644)?;
        }
        Ok(())
    }
}
