//! The disk being provisioned, a block device or an image file: its size, and writes at
//! sector offsets, each flushed before the next stage relies on it.
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a raw disk is read and written at offsets, which strata-fs does not do"
)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::ProvisionError;
use crate::gpt::SECTOR;

/// A disk open for writing.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    file: File,
    bytes: u64,
    block: bool,
    /// The disk's lock, held until the provisioning ends (see [`lock`]).
    lock: Held,
}

/// A disk's exclusive lock (`flock`), held for as long as this lives.
#[derive(Debug)]
pub struct Held(#[allow(dead_code, reason = "held for its lock")] std::os::fd::OwnedFd);

impl Disk {
    /// Opens a block device or an existing image file (made beforehand with its size, as
    /// `truncate -s 4G disk.img`).
    pub fn open(path: &Path) -> Result<Disk, ProvisionError> {
        let fail = |m: String| ProvisionError::Disk {
            disk: path.display().to_string(),
            message: m,
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                "no such disk; for an image file, make it first with its size \
                 (truncate -s 4G FILE)"
                    .into()
            } else {
                e.to_string()
            })
        })?;
        use std::os::unix::fs::FileTypeExt;
        if !(meta.is_file() || meta.file_type().is_block_device()) {
            return Err(fail("neither a block device nor an image file".into()));
        }
        let block = meta.file_type().is_block_device();
        let lock = lock(path, block)?;
        if block {
            check_not_in_use(path)?;
        } else {
            check_no_loop(path)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| ProvisionError::io(path, e))?;
        if block {
            let sector = rustix::fs::ioctl_blksszget(&file)
                .map_err(|e| ProvisionError::io(path, e.into()))?;
            if u64::from(sector) != SECTOR {
                return Err(fail(format!(
                    "its logical sectors are {sector} bytes: strata provisions 512-byte \
                     sector disks only (for now)"
                )));
            }
        }
        let bytes = file
            .seek(SeekFrom::End(0))
            .map_err(|e| ProvisionError::io(path, e))?;
        if bytes == 0 {
            return Err(fail(
                "the disk is empty; give an image file its size first (truncate -s 4G FILE)".into(),
            ));
        }
        if bytes % SECTOR != 0 {
            return Err(fail(format!(
                "{bytes} bytes is not a whole number of 512-byte sectors"
            )));
        }
        Ok(Disk {
            path: path.to_path_buf(),
            file,
            bytes,
            block,
            lock,
        })
    }

    /// Closes the disk (the kernel sees a block device's new partitions once its writer
    /// is gone), keeping its lock for the rest of the provisioning.
    pub fn close(self) -> Held {
        self.lock
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Refuses a block device in use, or an image file attached to a loop device (again:
    /// the first check may be minutes old).
    pub fn check_not_in_use(&self) -> Result<(), ProvisionError> {
        if self.block {
            check_not_in_use(&self.path)
        } else {
            check_no_loop(&self.path)
        }
    }

    /// Whether it is a block device (not an image file).
    pub fn is_block(&self) -> bool {
        self.block
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` at `sector`.
    pub fn write_at(&self, sector: u64, data: &[u8]) -> Result<(), ProvisionError> {
        self.file
            .write_all_at(data, sector * SECTOR)
            .map_err(|e| ProvisionError::io(&self.path, e))
    }

    /// Zeroes `count` sectors from `sector`.
    pub fn zero(&self, sector: u64, count: u64) -> Result<(), ProvisionError> {
        let zeros = vec![0u8; usize::try_from(count * SECTOR).unwrap_or(0)];
        self.write_at(sector, &zeros)
    }

    /// Reads `len` bytes at `sector`.
    pub fn read_at(&self, sector: u64, len: usize) -> Result<Vec<u8>, ProvisionError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, sector * SECTOR)
            .map_err(|e| ProvisionError::io(&self.path, e))?;
        Ok(buf)
    }

    /// Flushes everything written so far to the device.
    pub fn sync(&self) -> Result<(), ProvisionError> {
        self.file
            .sync_all()
            .map_err(|e| ProvisionError::io(&self.path, e))
    }
}

/// Takes the disk's exclusive lock (`flock`, on a descriptor of its own) at once, or
/// refuses it: two provisionings of one disk must never write it together. A block device
/// may be locked (shared) for a moment by udev while it probes the disk: that is waited
/// out for a second. Holding the lock also keeps udev from probing the disk halfway
/// written (systemd's "locking block device access").
fn lock(path: &Path, block: bool) -> Result<Held, ProvisionError> {
    use rustix::fs::{FlockOperation, Mode, OFlags, flock, open};
    let fd = open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ProvisionError::io(path, e.into()))?;
    let mut tries = if block { 20 } else { 1 };
    loop {
        match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Held(fd)),
            Err(rustix::io::Errno::WOULDBLOCK) if tries > 1 => {
                tries -= 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(ProvisionError::Disk {
                    disk: path.display().to_string(),
                    message: "the disk is in use by another provisioning (or another program \
                              holds its lock): strata provision never writes a disk in use"
                        .into(),
                });
            }
            Err(e) => return Err(ProvisionError::io(path, e.into())),
        }
    }
}

/// Opens a block device exclusively and closes it: the kernel refuses (EBUSY) while it or
/// one of its partitions is mounted, swapped on or held by another exclusive opener. (The
/// writes go through a plain descriptor: `mke2fs` claims the device for itself.)
fn check_not_in_use(path: &Path) -> Result<(), ProvisionError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::EXCL.bits().cast_signed())
        .open(path)
        .map(drop)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) {
                ProvisionError::Disk {
                    disk: path.display().to_string(),
                    message: "the disk is in use (mounted, swapped on, or held by another \
                              program): strata provision never writes a disk in use"
                        .into(),
                }
            } else {
                ProvisionError::io(path, e)
            }
        })
}

/// Refuses an image file attached to a loop device (`losetup`, `mount -o loop`): writing
/// it would change a device, and maybe a mounted file system, behind the kernel's back.
/// Every attached loop device is asked for its backing file's device and inode
/// (`LOOP_GET_STATUS64`, which holds whatever the file is called now), else its
/// `backing_file` in sysfs is looked up by name.
fn check_no_loop(path: &Path) -> Result<(), ProvisionError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| ProvisionError::io(path, e))?;
    let me = (meta.dev(), meta.ino());
    let sys = Path::new("/sys/block");
    for name in strata_fs::list_dir(sys).unwrap_or_default() {
        if !name.starts_with("loop") {
            continue;
        }
        // Absent (or empty) while the device is not attached.
        let Ok(shown) = strata_fs::read_to_string(&sys.join(&name).join("loop/backing_file"))
        else {
            continue;
        };
        let dev = Path::new("/dev").join(&name);
        let attached = loop_backing(&dev).map_or_else(
            || {
                let shown = shown.trim_end_matches('\n').trim_end_matches(" (deleted)");
                !shown.is_empty()
                    && std::fs::metadata(shown).is_ok_and(|m| (m.dev(), m.ino()) == me)
            },
            |backing| backing == me,
        );
        if attached {
            return Err(ProvisionError::Disk {
                disk: path.display().to_string(),
                message: format!(
                    "the image file is attached to {dev} (a loop device, maybe mounted): \
                     strata provision never writes a disk in use; unmount it and detach it \
                     first (losetup -d {dev})",
                    dev = dev.display()
                ),
            });
        }
    }
    Ok(())
}

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// The device and inode of the file behind the loop device `dev`, when it can be asked.
fn loop_backing(dev: &Path) -> Option<(u64, u64)> {
    use std::os::fd::AsRawFd;
    const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
    let fd = rustix::fs::open(
        dev,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    // SAFETY: all-zero bytes are a valid LoopInfo64 (integers and byte arrays).
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: LOOP_GET_STATUS64 writes one struct loop_info64 to the pointer given, which
    // points to one, alive for the call; the descriptor is open.
    let done = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            LOOP_GET_STATUS64 as _,
            std::ptr::from_mut(&mut info),
        )
    };
    (done == 0).then_some((info.lo_device, info.lo_inode))
}

/// `n` random bytes from the kernel.
pub fn random<const N: usize>() -> Result<[u8; N], ProvisionError> {
    let path = Path::new("/dev/urandom");
    let mut buf = [0u8; N];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ProvisionError::io(path, e))?;
    Ok(buf)
}
