//! The benchmark's shared parts: the generated workload and its manifest (the exact bytes
//! every file must hold), read by both the harness and the floor program.
#![allow(clippy::disallowed_methods)]

pub mod hardware;
pub mod sandbox;
pub mod tools;

use std::path::Path;

/// One file of the workload: its path under the root, its content, and the content's hash.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Path relative to the root.
    pub path: String,
    /// Exact content.
    pub content: Vec<u8>,
}

fn padding(i: usize) -> String {
    let mut s = String::new();
    let mut k = 0;
    while s.len() < 880 {
        s.push_str(&format!(
            "# padding line {k:02} of file {i:05}: lorem ipsum dolor sit amet\n"
        ));
        k += 1;
    }
    s
}

const UPSTREAMS: [&str; 3] = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];

/// Writes a site with one node (`bench`) whose module declares `n` files, 50 per
/// directory: even ones static, odd ones templates with five variables (a string, an
/// integer, a string, a list looped over, a boolean). Returns the expected files.
pub fn generate(site: &Path, n: usize, host: &str) -> std::io::Result<Vec<Expected>> {
    let w = |rel: &str, text: &str| -> std::io::Result<()> {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent"))?;
        std::fs::write(p, text)
    };
    w("strata.toml", "[site]\nname = \"bench\"\n")?;
    w("nodes/bench.toml", "modules = [\"gen\"]\n")?;
    w(
        "modules/gen/module.toml",
        &format!(
            "[params]\nhost_name = \"{host}\"\nport = 8443\nlog_level = \"info\"\nupstreams = [{}]\ntls = true\n",
            UPSTREAMS
                .iter()
                .map(|u| format!("\"{u}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let rel = format!("srv/bench/d{:04}/f{i:05}", i / 50);
        let pad = padding(i);
        if i % 2 == 0 {
            let text = format!("# static file {i}\n{pad}");
            w(&format!("modules/gen/files/{rel}"), &text)?;
            out.push(Expected {
                path: rel,
                content: text.into_bytes(),
            });
        } else {
            let template = format!(
                "# templated file {i}\nserver_name {{{{ gen.host_name }}}};\nlisten {{{{ gen.port }}}};\nlog_level {{{{ gen.log_level }}}};\n{{% for u in gen.upstreams %}}\nupstream {{{{ u }}}};\n{{% endfor %}}\n{{% if gen.tls %}}\nssl on;\n{{% endif %}}\n{pad}"
            );
            let rendered = format!(
                "# templated file {i}\nserver_name {host};\nlisten 8443;\nlog_level info;\n{}ssl on;\n{pad}",
                UPSTREAMS
                    .iter()
                    .map(|u| format!("upstream {u};\n"))
                    .collect::<String>()
            );
            w(&format!("modules/gen/templates/{rel}.j2"), &template)?;
            out.push(Expected {
                path: rel,
                content: rendered.into_bytes(),
            });
        }
    }
    Ok(out)
}

/// Writes the manifest the floor reads: for each file, its path, its blake3 hash and its
/// content, length-prefixed.
pub fn write_manifest(path: &Path, files: &[Expected]) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for f in files {
        buf.extend((f.path.len() as u32).to_le_bytes());
        buf.extend(f.path.as_bytes());
        buf.extend(blake3::hash(&f.content).as_bytes());
        buf.extend((f.content.len() as u32).to_le_bytes());
        buf.extend(&f.content);
    }
    std::fs::write(path, buf)
}

/// One manifest record: path, blake3 hash, content.
pub type Record = (String, [u8; 32], Vec<u8>);

/// Reads a manifest back.
pub fn read_manifest(path: &Path) -> std::io::Result<Vec<Record>> {
    let buf = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut at = 0;
    let u32_at =
        |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
    while at < buf.len() {
        let plen = u32_at(at);
        let path = String::from_utf8_lossy(&buf[at + 4..at + 4 + plen]).into_owned();
        at += 4 + plen;
        let hash: [u8; 32] = buf[at..at + 32].try_into().expect("32 bytes");
        at += 32;
        let clen = u32_at(at);
        out.push((path, hash, buf[at + 4..at + 4 + clen].to_vec()));
        at += 4 + clen;
    }
    Ok(out)
}

/// Moves the tree `dir` out of the way (to `dir.oldK` beside it) rather than deleting it;
/// the work directory, with everything set aside, is removed when the run ends. On a file
/// system without a journal (this VM's), ext4 skips inodes freed in the last minutes when
/// it allocates new ones, one inode-table lookup each: deleting a tree of N files right
/// before a first apply makes that apply's file creations cost O(N) each, for whichever
/// program runs next. An operator's first apply meets no such tree.
pub fn set_aside(dir: &Path) -> std::io::Result<()> {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if !dir.exists() {
        return Ok(());
    }
    let k = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".old{k}"));
    std::fs::rename(dir, dir.with_file_name(name))
}

/// Flushes every file system (`sync`), so that what is timed next does not pay for
/// writing back what ran before it.
pub fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}
