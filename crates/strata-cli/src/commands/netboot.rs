//! `strata netboot build`: the provisioning kernel and initrd a machine netboots
//! (served by `strata serve --netboot DIR` at `/boot/*`): the base's Debian kernel, and
//! an initrd of busybox, the strata binary (with the libraries it links) and an init
//! script that brings the network up, gathers the facts and enrolls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::cli::absolute;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Make what a machine netboots.
#[derive(Debug, Subcommand)]
pub enum NetbootCommand {
    /// Write DIR/vmlinuz, DIR/initrd.img and DIR/base.tar (for `strata serve --netboot
    /// DIR`).
    Build(BuildArgs),
    /// Install this enrolled machine onto its disk (what the initrd runs).
    Provision(crate::commands::netboot_install::ProvisionArgs),
}

/// `netboot build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Where to write vmlinuz and initrd.img.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The base tarball the kernel comes from [default: the provision cache's
    /// debian-bookworm-bios.tar, made by `strata provision`].
    #[arg(long, value_name = "TAR")]
    pub base: Option<PathBuf>,
}

/// `serve`'s netboot options.
#[derive(Debug, Args)]
pub struct ServeNetbootArgs {
    /// Serve `/boot/ipxe`, `/boot/vmlinuz` and `/boot/initrd.img` from DIR (`strata
    /// netboot build --out DIR`).
    #[arg(long, value_name = "DIR")]
    pub netboot: Option<PathBuf>,
    /// The file holding the provisioning token the iPXE script hands every machine
    /// (`strata nodes token --out FILE`), read at each request: anyone reaching
    /// /boot/ipxe reads it, so limit it in time and uses.
    #[arg(long, value_name = "FILE", requires = "netboot")]
    pub netboot_token_file: Option<PathBuf>,
    /// The URL machines reach this server at [default: http:// and the request's Host].
    #[arg(long, value_name = "URL", requires = "netboot")]
    pub netboot_url: Option<String>,
}

impl ServeNetbootArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Option<strata_server::boot::Netboot>> {
        let Some(dir) = &self.netboot else {
            return Ok(None);
        };
        if let Some(u) = &self.netboot_url
            && (!u.starts_with("http") || u.contains(char::is_whitespace))
        {
            anyhow::bail!("--netboot-url {u:?}: expected http(s)://HOST[:PORT]");
        }
        Ok(Some(strata_server::boot::Netboot {
            dir: absolute(dir)?,
            url: self.netboot_url.clone(),
            token_file: self
                .netboot_token_file
                .as_deref()
                .map(absolute)
                .transpose()?,
            console: "console=tty0 console=ttyS0,115200 quiet".into(),
        }))
    }
}

const INIT: &str = include_str!("netboot/init.sh");
const UDHCPC: &str = include_str!("netboot/udhcpc.script");
/// The programs provisioning runs that busybox lacks, and where the initrd has them.
const TOOLS: &[(&str, &str)] = &[("tar", "usr/bin/tar"), ("mke2fs", "usr/sbin/mke2fs")];

/// The drivers the init loads (with what they need): common NICs and disk controllers,
/// and overlayfs.
const MODULES: &[&str] = &[
    "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
    "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/ata/ata_piix.ko",
    "kernel/drivers/ata/ahci.ko",
    "kernel/drivers/scsi/sd_mod.ko",
    "kernel/drivers/block/virtio_blk.ko",
    // The sandbox applying the catalog to the new tree mounts an overlay.
    "kernel/fs/overlayfs/overlay.ko",
];

pub fn run(cmd: &NetbootCommand, printer: &Printer) -> CommandResult {
    let args = match cmd {
        NetbootCommand::Build(args) => args,
        NetbootCommand::Provision(args) => {
            return crate::commands::netboot_install::run(args, printer);
        }
    };
    let out = absolute(&args.out)?;
    let base = match &args.base {
        Some(b) => absolute(b)?,
        None => crate::cli::cache_dir().join("provision/base/debian-bookworm-bios.tar"),
    };
    if !strata_fs::exists(&base) {
        return Err(anyhow::anyhow!(
            "{}: no base tarball to take the kernel from; `strata provision` makes it once \
             (or give --base)",
            base.display()
        )
        .into());
    }
    let tmp = tempfile::tempdir()?;
    let k = tmp.path().join("k");
    strata_fs::create_dir_all(&k)?;
    untar(
        &base,
        &k,
        &["./boot/vmlinuz-*", "./usr/lib/modules/*/modules.dep"],
    )?;
    let vmlinuz = newest(&k.join("boot"), "vmlinuz-")?;
    let version = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .context("kernel name")?
        .to_string();
    let moddir = format!("usr/lib/modules/{version}");
    let dep = strata_fs::read_to_string(&k.join(&moddir).join("modules.dep"))
        .with_context(|| format!("{}: no modules.dep for {version}", base.display()))?;
    let modules = closure(&dep, MODULES);
    let patterns: Vec<String> = modules.iter().map(|m| format!("./{moddir}/{m}")).collect();
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    untar(&base, &k, &patterns)?;

    let mut cpio = Cpio::default();
    for d in [
        "bin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib64", "usr", "var",
    ] {
        cpio.dir(d);
    }
    cpio.char_dev("dev/console", 5, 1);
    cpio.file("init", INIT.as_bytes(), 0o755);
    cpio.file("etc/udhcpc.script", UDHCPC.as_bytes(), 0o755);
    cpio.file("bin/busybox", &read_static_busybox()?, 0o755);
    // What provisioning runs besides busybox: GNU tar (xattrs, numeric owners) and
    // mke2fs (`-d`), this machine's, with their libraries; found first on the init's PATH.
    for (tool, at) in TOOLS {
        let path = which(tool)?;
        cpio.parents(at);
        cpio.file(at, &strata_fs::read(&path)?, 0o755);
        for lib in libraries(&path)? {
            let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
            if !cpio.has(&rel) {
                cpio.parents(&rel);
                cpio.file(&rel, &strata_fs::read(&lib)?, 0o755);
            }
        }
    }
    if let Ok(conf) = strata_fs::read(Path::new("/etc/mke2fs.conf")) {
        cpio.file("etc/mke2fs.conf", &conf, 0o644);
    }
    let strata = std::env::current_exe()?;
    cpio.file("bin/strata", &stripped(&strata, tmp.path())?, 0o755);
    for lib in libraries(&strata)? {
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        if !cpio.has(&rel) {
            cpio.parents(&rel);
            cpio.file(&rel, &strata_fs::read(&lib)?, 0o755);
        }
    }
    // The base the machine is installed with, served beside the kernel, and its hash
    // pinned in the initrd (checked as it is unpacked).
    let served = out.join("base.tar");
    strata_fs::create_dir_all(&out)?;
    let hash = copy_hashing(&base, &served)?;
    let pin = crate::commands::netboot_install::BASE_HASH.trim_start_matches('/');
    cpio.parents(pin);
    cpio.file(pin, format!("{hash}\n").as_bytes(), 0o644);
    let modroot = format!("lib/modules/{version}");
    cpio.parents(&format!("{modroot}/modules.dep"));
    cpio.file(&format!("{modroot}/modules.dep"), dep.as_bytes(), 0o644);
    for m in &modules {
        let rel = format!("{modroot}/{m}");
        cpio.parents(&rel);
        cpio.file(&rel, &strata_fs::read(&k.join(&moddir).join(m))?, 0o644);
    }
    strata_fs::create_dir_all(&out)?;
    strata_fs::write_atomic(&out.join("vmlinuz"), &strata_fs::read(&vmlinuz)?)?;
    let initrd = cpio.finish();
    strata_fs::write_atomic(&out.join("initrd.img"), &initrd)?;
    printer.out(&format!(
        "Wrote {0}/vmlinuz (Linux {version}), {0}/initrd.img ({1} MiB, {2} modules) and \
         {0}/base.tar (blake3 {hash}, pinned in the initrd)\n",
        out.display(),
        initrd.len() >> 20,
        modules.len()
    ))?;
    Ok(())
}

/// Fails unless the server gives `node` an assignment, which it does only to a node a
/// hardware profile took (`enroll --require-profile`, for the netboot initrd).
pub(crate) fn require_profile(
    client: &strata_server::client::Client,
    node: &str,
) -> anyhow::Result<()> {
    let (body, _) = client
        .poll(node, None)?
        .context("the server answered 304 to a poll without an ETag")?;
    let answer: strata_server::app::PollAnswer = serde_json::from_slice(&body)?;
    if answer.assignment.is_none() {
        anyhow::bail!(
            "{node} was accepted, but no hardware profile of the site matches this machine \
             (on the server, `strata classify --facts FILE --explain` with its facts says why)"
        );
    }
    Ok(())
}

/// Where `tool` is on this machine.
fn which(tool: &str) -> anyhow::Result<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| strata_fs::exists(p))
        .with_context(|| format!("no {tool} on this machine to put in the initrd"))
}

/// Copies `from` to `to` (beside it, then renamed) and returns its blake3 in hex, read
/// once, in pieces.
fn copy_hashing(from: &Path, to: &Path) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let part = to.with_extension("tar.part");
    let mut input = strata_fs::open_read(from)?;
    strata_fs::remove_file(&part)?;
    let mut output = strata_fs::create_private(&part)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
    }
    output.sync_all()?;
    // Served to any machine that netboots: nothing secret in it.
    strata_fs::set_mode(&part, 0o644)?;
    strata_fs::rename(&part, to)?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn untar(tar: &Path, into: &Path, patterns: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("tar")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(into)
        .arg("--wildcards")
        .args(patterns)
        .output()
        .context("running tar")?;
    if !out.status.success() {
        anyhow::bail!(
            "tar -xf {}: {}",
            tar.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The newest file in `dir` whose name starts with `prefix`.
fn newest(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let mut names: Vec<String> = strata_fs::list_dir(dir)?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
        .pop()
        .map(|n| dir.join(n))
        .with_context(|| format!("no {prefix}* in the base's /boot"))
}

/// `wanted` and everything they depend on, per modules.dep (those it lists).
fn closure(dep: &str, wanted: &[&str]) -> BTreeSet<String> {
    let deps: BTreeMap<&str, Vec<&str>> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m, d.split_whitespace().collect()))
        .collect();
    let mut out = BTreeSet::new();
    for w in wanted {
        if let Some(d) = deps.get(w) {
            out.insert((*w).to_string());
            out.extend(d.iter().map(|s| (*s).to_string()));
        }
    }
    out
}

fn read_static_busybox() -> anyhow::Result<Vec<u8>> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = Path::new(p);
        if strata_fs::exists(p) && libraries(p)?.is_empty() {
            return Ok(strata_fs::read(p)?);
        }
    }
    anyhow::bail!("no static busybox (/bin/busybox): install busybox-static")
}

/// A copy of `exe` without its debug symbols (the initrd lives in the machine's memory).
fn stripped(exe: &Path, tmp: &Path) -> anyhow::Result<Vec<u8>> {
    let out = tmp.join("strata.stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(exe)
        .status()
        .is_ok_and(|s| s.success());
    Ok(strata_fs::read(if ok { out.as_path() } else { exe })?)
}

/// The shared libraries `exe` loads (its interpreter included), by `ldd`; none when it
/// is static.
fn libraries(exe: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// An uncompressed cpio archive in the kernel's `newc` format.
#[derive(Default)]
struct Cpio {
    bytes: Vec<u8>,
    dirs: BTreeSet<String>,
    files: BTreeSet<String>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry_dev(name, mode, data, (0, 0));
    }

    fn entry_dev(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() + 1,
            0
        );
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Whether a file or directory of that name is in the archive already.
    fn has(&self, name: &str) -> bool {
        self.dirs.contains(name) || self.files.contains(name)
    }

    fn dir(&mut self, name: &str) {
        if self.dirs.insert(name.to_string()) {
            self.entry(name, 0o040_755, &[]);
        }
    }

    /// The directories above `rel`.
    fn parents(&mut self, rel: &str) {
        let mut at = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(p);
            let d = at.clone();
            self.dir(&d);
        }
    }

    /// A character device node (the console the kernel opens before /init runs).
    fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry_dev(name, 0o020_600, &[], (major, minor));
    }

    fn file(&mut self, name: &str, data: &[u8], perm: u32) {
        self.files.insert(name.to_string());
        self.entry(name, 0o100_000 | perm, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modules_closure_takes_the_dependencies_and_skips_the_unknown() {
        let dep = "kernel/a.ko: kernel/b.ko kernel/c.ko\nkernel/b.ko:\nkernel/c.ko:\n";
        let c = closure(dep, &["kernel/a.ko", "kernel/missing.ko"]);
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            ["kernel/a.ko", "kernel/b.ko", "kernel/c.ko"]
        );
    }

    #[test]
    fn a_cpio_entry_is_newc_and_four_byte_aligned() {
        let mut c = Cpio::default();
        c.file("init", b"abc", 0o755);
        let b = c.finish();
        assert!(b.starts_with(b"070701"));
        assert_eq!(&b[110..115], b"init\0");
        // 110 + 5 padded to 116, then the data.
        assert_eq!(&b[116..119], b"abc");
        assert_eq!(b.len() % 4, 0);
        assert!(b.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
