//! Makes a disk (a block device or an image file) into a node: the site's layout checked
//! against the disk, the base OS unpacked into a new tree (GRUB's core image made from it
//! as unpacked), the node's catalog applied to it (by the caller, with the engine; the tree
//! is the site's from then on, and nothing is written into it through a link), `fstab` by
//! UUID and the boot loader's files, then the
//! disk written: old tables wiped, file systems made from the tree at their offsets,
//! GRUB's core, and the partition table and boot code last — so a provisioning stopped
//! halfway leaves a disk that neither boots nor shows partitions, and the next one starts
//! over. Nothing is written to the disk before the tree is complete.

mod base;
pub mod config;
mod disk;
mod error;
pub mod gpt;
mod grub;
mod nofollow;
mod run;
mod tree;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use base::{Streamed, boot_packages};
pub use config::{Boot, Layout, Settings};
pub use error::ProvisionError;

use crate::config::PartType;
use crate::disk::Disk;
use crate::tree::Volume;

/// What to provision.
#[derive(Debug)]
pub struct Job<'a> {
    /// The site.
    pub site: &'a Path,
    /// The node.
    pub node: &'a str,
    /// The disk: a block device or an image file.
    pub disk: &'a Path,
    /// strata's cache on this machine (the base tarballs are kept in `provision/base`,
    /// the tree is built in `provision/work`).
    pub cache: &'a Path,
    /// The base, fetched as it is unpacked and checked against its pinned hash (the
    /// netboot initrd's); none: the cached tarball, made when missing.
    pub base: Option<&'a Streamed<'a>>,
}

/// A file system on the provisioned disk.
#[derive(Debug, Clone)]
pub struct Made {
    /// Its mount point (`none` for swap).
    pub mount: String,
    /// Its type (`ext4`, `swap`).
    pub fs: String,
    /// Its UUID.
    pub uuid: String,
    /// Its offset on the disk, in bytes.
    pub offset: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A provisioned disk.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The generation the catalog recorded in the new root (none when it changed nothing).
    pub generation: Option<u64>,
    /// The file systems made, in disk order.
    pub made: Vec<Made>,
    /// How long each stage took.
    pub times: Vec<(&'static str, Duration)>,
}

/// Applies the node's catalog onto a tree (`--root TREE`), returning the generation it
/// recorded.
pub type ApplyCatalog<'a> = dyn FnMut(&Path) -> Result<Option<u64>, String> + 'a;

/// Provisions `job.disk` as `job.node`: see the crate's documentation for the order.
/// `progress` hears each stage as it starts.
pub fn provision(
    job: &Job<'_>,
    apply: &mut ApplyCatalog<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Provisioned, ProvisionError> {
    let mut times = Vec::new();
    let mut clock = Instant::now();
    let mut lap = |name: &'static str, times: &mut Vec<(&'static str, Duration)>| {
        times.push((name, clock.elapsed()));
        clock = Instant::now();
    };

    // Everything that can be checked is checked before the disk is opened for writing.
    let settings = Settings::read(job.site)?;
    let layout = Layout::read(job.site, &settings.layout)?;
    if layout.boot == Boot::Uefi {
        return Err(ProvisionError::Config {
            file: layout.file,
            field: "boot".into(),
            message: "\"uefi\" layouts are not provisioned yet: use \"bios\"".into(),
        });
    }
    let disk = Disk::open(job.disk)?;
    let mut guids = Vec::new();
    for _ in 0..=layout.partitions.len() {
        guids.push(gpt::random_guid(disk::random::<16>()?));
    }
    let disk_guid = guids.pop().unwrap_or_default();
    let placed = gpt::place(&layout, disk.bytes(), &mut || {
        guids.pop().unwrap_or_default()
    })
    .map_err(|m| ProvisionError::Disk {
        disk: job.disk.display().to_string(),
        message: format!("{m} ({})", layout.file),
    })?;
    let mut volumes = Vec::new();
    for p in &placed {
        let part = &layout.partitions[p.index];
        volumes.push(Volume {
            placed: p.clone(),
            kind: part.kind,
            mount: part.mount.clone(),
            fs: part.fs,
            uuid: tree::uuid_text(disk::random::<16>()?),
        });
    }
    lap("check", &mut times);

    progress(&format!(
        "base: {}:{}",
        settings.base.distribution, settings.base.suite
    ));
    let tar = match job.base {
        None => Some(base::tarball(&settings, layout.boot, job.cache, progress)?),
        Some(_) => None,
    };
    // The node's tree (its rendered files, secrets among them) is built here: nobody but
    // the owner looks in, even at what a killed provisioning left.
    let work_dir = job.cache.join("provision/work");
    strata_fs::private_dir(&work_dir)?;
    base::remove_abandoned(&work_dir, progress)?;
    let work = tempfile::Builder::new()
        .prefix("tree.")
        .tempdir_in(&work_dir)
        .map_err(|e| ProvisionError::io(&work_dir, e))?;
    // Held while the tree is in use: what a provisioning killed halfway left is unlocked.
    let _held = base::hold(work.path())?;
    let root = work.path().join("root");
    strata_fs::create_dir_all(&root)?;
    if let Some(streamed) = job.base {
        progress(&format!(
            "fetching and unpacking the base from {}",
            streamed.from
        ));
        base::unpack_streamed(streamed, &root)?;
    } else if let Some(tar) = &tar {
        base::unpack(tar, &root)?;
    }
    // GRUB's core image, boot code and modules come from the base as unpacked, before
    // the catalog can change anything in the tree: its grub-mkimage is the base's own.
    let (boot, boot_dir) = tree::boot_volume(&volumes);
    let bios_grub = volumes
        .iter()
        .find(|v| v.kind == PartType::BiosGrub)
        .expect("a checked bios layout has a bios_grub partition");
    let loader = grub::bios(
        &root,
        &boot.uuid,
        &format!("{boot_dir}/grub"),
        bios_grub.placed.first,
        bios_grub.placed.bytes(),
    )?;
    tree::write_node_files(&root, job.node, &volumes)?;
    lap("base", &mut times);

    progress(&format!("applying {}'s catalog to the new tree", job.node));
    let generation = apply(&root).map_err(ProvisionError::Catalog)?;
    lap("catalog", &mut times);

    progress("boot loader: GRUB for a BIOS machine");
    // The tree is the site's now: GRUB's directories must be real ones of the tree.
    let grub_dir = nofollow::dir(&root, "boot/grub")?;
    let modules_dir = nofollow::dir(&root, "boot/grub/i386-pc")?;
    let kernel = tree::kernel(&root)?;
    let root_uuid = volumes
        .iter()
        .find(|v| v.mount.as_deref() == Some("/"))
        .map(|v| v.uuid.clone())
        .unwrap_or_default();
    let cfg = tree::grub_cfg(
        job.node,
        &boot.uuid,
        boot_dir,
        &root_uuid,
        (&kernel.0, &kernel.1),
        settings.console.as_ref(),
    );
    grub_dir.write("grub.cfg", cfg.as_bytes(), 0o644)?;
    loader.install(&modules_dir)?;
    let staging = work.path().join("volumes");
    strata_fs::create_dir_all(&staging)?;
    let sources = tree::split(&root, &staging, &volumes)?;
    lap("boot loader", &mut times);

    // The disk, from here on: first what would make it look done goes.
    let total = disk.bytes() / gpt::SECTOR;
    disk.check_not_in_use()?;
    progress(&format!(
        "writing {}: wiping its partition tables",
        job.disk.display()
    ));
    for (at, count) in gpt::wiped(total) {
        disk.zero(at, count)?;
    }
    disk.sync()?;
    let mut made = Vec::new();
    for v in &volumes {
        let what = match (v.kind, v.fs) {
            (PartType::Swap, _) => "swap".to_string(),
            (_, Some(fs)) => fs.name().to_string(),
            _ => continue,
        };
        let mount = v.mount.clone().unwrap_or_else(|| "none".into());
        progress(&format!(
            "making {what} for {mount} ({})",
            gpt::human(v.placed.bytes())
        ));
        if v.kind == PartType::Swap {
            tree::make_swap(&disk, v)?;
        } else {
            let source: &PathBuf = sources
                .iter()
                .find(|(i, _)| *i == v.placed.index)
                .map(|(_, s)| s)
                .expect("every mounted volume has a source");
            tree::make_fs(&disk, v, source)?;
        }
        made.push(Made {
            mount,
            fs: what,
            uuid: v.uuid.clone(),
            offset: v.placed.offset(),
            bytes: v.placed.bytes(),
        });
    }
    disk.write_at(bios_grub.placed.first, &loader.core)?;
    disk.sync()?;
    lap("file systems", &mut times);

    progress("writing the partition table and the boot code");
    for (at, bytes) in gpt::table(&layout, &placed, total, disk_guid, &loader.mbr_code) {
        if at == 0 {
            // Everything before is on the disk before the MBR makes it bootable.
            disk.sync()?;
        }
        disk.write_at(at, &bytes)?;
    }
    disk.sync()?;
    let block = disk.is_block();
    let path = disk.path().to_path_buf();
    // Held until the end: another provisioning of this disk is refused meanwhile.
    let held = disk.close();
    if block {
        // The kernel learns the new partitions (/dev/sdb1…) once the disk is closed.
        if let Err(e) = run::run(
            std::process::Command::new("blockdev")
                .arg("--rereadpt")
                .arg(&path),
        ) {
            progress(&format!(
                "note: the kernel still shows {}'s old partitions until it is rebooted or \
                 `partprobe` runs ({e})",
                path.display()
            ));
        }
    }
    lap("partition table", &mut times);
    progress("removing the temporary tree");
    work.close().map_err(|e| ProvisionError::io(&work_dir, e))?;
    drop(held);
    lap("clean up", &mut times);
    Ok(Provisioned {
        generation,
        made,
        times,
    })
}

/// Reads and checks the site's `[provision]` and its layout, without touching any disk
/// (for `strata check` and for errors before anything is written).
pub fn check(site: &Path) -> Result<(Settings, Layout), ProvisionError> {
    let settings = Settings::read(site)?;
    let layout = Layout::read(site, &settings.layout)?;
    Ok((settings, layout))
}

/// Whether the first sectors of `disk` hold a partition table (a GPT header, or an MBR
/// signature): what a provisioning stopped halfway never leaves.
pub fn has_partition_table(disk: &Path) -> Result<bool, ProvisionError> {
    let d = Disk::open(disk)?;
    let head = d.read_at(0, 1024)?;
    Ok(&head[512..520] == b"EFI PART" || head[510..512] == [0x55, 0xAA])
}
