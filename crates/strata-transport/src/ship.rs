//! The strata that is shipped to a node that lacks it: the operator's own executable,
//! its debug sections stripped (`objcopy --strip-debug` when this machine has it) and
//! gzip-compressed for the wire (every Debian has `gzip`), made once per executable and
//! kept in the operator's cache. It is named on the node by the blake3 of what runs
//! there, and checked there before it is installed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// What to ship and what it needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipment {
    /// The blake3 of the executable the node runs (after stripping).
    pub hash: String,
    /// Its size.
    pub size: u64,
    /// The compressed file to send.
    pub gz: PathBuf,
    /// Its size.
    pub gz_size: u64,
    /// The CPU it runs on, as `uname -m` says it.
    pub arch: String,
    /// The newest glibc symbol version it needs, or none for a static executable.
    pub glibc: Option<(u32, u32)>,
}

impl Shipment {
    /// Where the node keeps it.
    pub fn remote_path(&self) -> String {
        format!("/var/lib/strata/bin/strata-{}", self.hash)
    }

    /// Why a node with this `uname -m` and `getconf GNU_LIBC_VERSION` output cannot run
    /// it, if it cannot.
    pub fn unfit(&self, arch: &str, libc: &str) -> Option<String> {
        let needs = match self.glibc {
            Some((a, b)) => format!("{} with glibc {a}.{b} or later", self.arch),
            None => self.arch.clone(),
        };
        if arch != self.arch {
            return Some(format!("strata here needs {needs}; the node is {arch}"));
        }
        let (a, b) = self.glibc?;
        let have = libc
            .strip_prefix("glibc ")
            .and_then(|v| parse_version(v.trim()));
        match have {
            Some(v) if v >= (a, b) => None,
            Some((x, y)) => Some(format!(
                "strata here needs {needs}; the node has glibc {x}.{y}"
            )),
            None => Some(format!(
                "strata here needs {needs}; the node has no glibc ({})",
                libc.trim()
            )),
        }
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The newest `GLIBC_x.y` version named in an executable (its symbol versions).
fn glibc_needed(bytes: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_";
    let mut best = None;
    let mut i = 0;
    while let Some(at) = find(&bytes[i..], TAG) {
        let start = i + at + TAG.len();
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(bytes.len(), |n| start + n);
        if let Some(v) = std::str::from_utf8(&bytes[start..end])
            .ok()
            .and_then(parse_version)
        {
            best = best.max(Some(v));
        }
        i = end.max(start);
    }
    best
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Makes (or finds in `cache`) the shipment of the executable `exe`.
pub fn prepare(exe: &Path, cache: &Path) -> std::io::Result<Shipment> {
    // Hashed in chunks: the release binary with its line tables is tens of MiB, and a
    // push that finds its shipment cached need not hold it.
    let id = strata_fs::hash_file(exe)
        .map_err(std::io::Error::other)?
        .to_string();
    let dir = cache.join("ship").join(&id[..32]);
    let meta = dir.join("shipment.json");
    if let Ok(text) = strata_fs::read(&meta)
        && let Ok(s) = serde_json::from_slice::<Shipment>(&text)
        && strata_fs::exists(&s.gz)
    {
        return Ok(s);
    }
    strata_fs::private_dir(&dir).map_err(std::io::Error::other)?;
    // Names of this process's own: two pushes may prepare the same shipment at once.
    let stripped_path = dir.join(format!("strata.{}", std::process::id()));
    let stripped = match strip(exe, &stripped_path) {
        Some(s) => s,
        None => strata_fs::read(exe).map_err(std::io::Error::other)?,
    };
    let gz = dir.join("strata.gz");
    let tmp = dir.join(format!("strata.gz.{}", std::process::id()));
    let _ = strata_fs::remove_file(&tmp);
    let file = strata_fs::create_private(&tmp).map_err(std::io::Error::other)?;
    let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::new(6));
    enc.write_all(&stripped)?;
    enc.finish()?.sync_all()?;
    strata_fs::rename(&tmp, &gz).map_err(std::io::Error::other)?;
    let _ = strata_fs::remove_file(&stripped_path);
    let gz_size = strata_fs::read(&gz).map_err(std::io::Error::other)?.len() as u64;
    let s = Shipment {
        hash: blake3::hash(&stripped).to_hex().to_string(),
        size: stripped.len() as u64,
        gz,
        gz_size,
        arch: std::env::consts::ARCH.to_string(),
        glibc: glibc_needed(&stripped),
    };
    strata_fs::write_atomic(
        &meta,
        &serde_json::to_vec_pretty(&s).map_err(std::io::Error::other)?,
    )
    .map_err(std::io::Error::other)?;
    Ok(s)
}

/// `objcopy --strip-debug`, when this machine has objcopy.
fn strip(exe: &Path, out: &Path) -> Option<Vec<u8>> {
    let ok = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(exe)
        .arg(out)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    strata_fs::read(out).ok()
}

/// The shell script that installs the shipment from its gzip on stdin: into a
/// temporary file in the root-only directory it will live in, checked by running it
/// (`self-check HASH`), then renamed; nothing is left behind on failure.
pub fn install_script(s: &Shipment) -> String {
    format!(
        "set -e; umask 077; d=/var/lib/strata/bin; mkdir -p \"$d\"; \
         t=$(mktemp \"$d/.strata.XXXXXX\"); trap 'rm -f \"$t\"' EXIT; \
         gzip -dc >\"$t\"; chmod 0755 \"$t\"; \"$t\" self-check {hash}; \
         mv -f \"$t\" \"$d/strata-{hash}\"; trap - EXIT",
        hash = s.hash
    )
}

/// The shell script that says what a node is: `uname -m`, its C library, whether it
/// has this strata already, and the newest version among the stratas installed there
/// (`none` when there is none).
pub fn probe_script(s: &Shipment) -> String {
    format!(
        "uname -m; getconf GNU_LIBC_VERSION 2>/dev/null || echo none; \
         if [ -x {p} ]; then echo have; else echo lack; fi; \
         v=$(for f in /var/lib/strata/bin/strata-*; do [ -x \"$f\" ] && \"$f\" --version; \
         done 2>/dev/null | sed -n 's/^strata //p' | sort -V | tail -n 1); echo \"${{v:-none}}\"",
        p = s.remote_path()
    )
}

/// This strata's version, what the node's installed ones are compared with.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why shipping this strata to a node that has `installed` (its newest, from the probe)
/// would be a downgrade, if it would.
pub fn downgrade(installed: &str) -> Option<String> {
    let parse = |v: &str| -> Option<Vec<u64>> {
        let core = v.split(['-', '+']).next()?;
        core.split('.').map(|n| n.parse().ok()).collect()
    };
    let (theirs, ours) = (parse(installed.trim())?, parse(VERSION)?);
    (theirs > ours).then(|| {
        format!(
            "the node has strata {}, newer than this one ({VERSION}); push with \
             --allow-downgrade to install {VERSION} there",
            installed.trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipment(glibc: Option<(u32, u32)>) -> Shipment {
        Shipment {
            hash: "h".into(),
            size: 1,
            gz: PathBuf::new(),
            gz_size: 1,
            arch: "x86_64".into(),
            glibc,
        }
    }

    #[test]
    fn a_node_that_cannot_run_it_is_told_what_it_needs() {
        let s = shipment(Some((2, 34)));
        assert_eq!(s.unfit("x86_64", "glibc 2.36"), None);
        let e = s.unfit("aarch64", "glibc 2.36").unwrap();
        assert!(
            e.contains("needs x86_64 with glibc 2.34 or later; the node is aarch64"),
            "{e}"
        );
        let e = s.unfit("x86_64", "glibc 2.31").unwrap();
        assert!(e.contains("the node has glibc 2.31"), "{e}");
        let e = s.unfit("x86_64", "none").unwrap();
        assert!(e.contains("no glibc"), "{e}");
        assert_eq!(shipment(None).unfit("x86_64", "none"), None);
    }

    #[test]
    fn only_a_newer_strata_on_the_node_is_a_downgrade() {
        assert!(downgrade("none").is_none());
        assert!(downgrade(VERSION).is_none());
        assert!(downgrade("0.0.1").is_none());
        assert!(downgrade("garbage; rm -rf /").is_none());
        let why = downgrade("99.0.0").unwrap();
        assert!(why.contains("strata 99.0.0, newer than this one"), "{why}");
        assert!(downgrade("99.0.0-rc1").is_some());
    }

    #[test]
    fn the_newest_glibc_version_named_is_found() {
        let bin = b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.17\0GLIBC_PRIVATE\0";
        assert_eq!(glibc_needed(bin), Some((2, 34)));
        assert_eq!(glibc_needed(b"static"), None);
    }
}
