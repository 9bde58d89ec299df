//! The sandbox benchmark's workload: a busybox root with K small config files, and a site
//! whose one module edits them with K scripts (or, for the baseline, has no scripts).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Makes `dir` a busybox root: `/bin/busybox` and a link per applet.
pub fn busybox_root(dir: &Path) -> std::io::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" && !bin.join(applet).exists() {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    std::fs::create_dir_all(dir.join("var/lib"))
}

/// The files the scripts edit: `/etc/bench/conf<i>`.
pub fn fixture(root: &Path, k: usize) -> std::io::Result<()> {
    let dir = root.join("etc/bench");
    std::fs::create_dir_all(&dir)?;
    for i in 0..k {
        std::fs::write(dir.join(format!("conf{i}")), "listen 80\nworkers 2\n")?;
    }
    Ok(())
}

/// A site for node `bench` with one module: a declared file, and (when `scripts`) K
/// scripts that each `sed -i` one file and append to another. Returns the scripts.
pub fn site(dir: &Path, root: &Path, k: usize, scripts: bool) -> std::io::Result<Vec<PathBuf>> {
    fixture(root, k)?;
    std::fs::create_dir_all(dir.join("nodes"))?;
    std::fs::write(dir.join("strata.toml"), "[site]\nname = \"bench\"\n")?;
    std::fs::write(dir.join("nodes/bench.toml"), "modules = [\"edit\"]\n")?;
    let module = dir.join("modules/edit");
    std::fs::create_dir_all(module.join("files/etc"))?;
    std::fs::write(module.join("files/etc/motd"), "benchmark\n")?;
    let mut out = Vec::new();
    if scripts {
        std::fs::create_dir_all(module.join("scripts"))?;
        for i in 0..k {
            let path = module.join(format!("scripts/{i:02}-edit.sh"));
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\nset -e\nsed -i 's/listen .*/listen 8080/' /etc/bench/conf{i}\necho 'log_level = info' >> /etc/bench/conf{i}\n"
                ),
            )?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            out.push(path);
        }
    }
    Ok(out)
}
