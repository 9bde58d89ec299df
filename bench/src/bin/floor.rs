//! The floor: the least a program can do for the benchmark's two jobs.
//!
//! `floor write MANIFEST ROOT`: creates every file (and its directories) with its content,
//! then one `syncfs`: the same data made durable as strata's apply, with nothing else.
//! `floor check MANIFEST ROOT`: opens, stats, reads and hashes every file and compares the
//! hash with the manifest's, as a no-change run must.
// The bare program strata is measured against: std::fs directly, by design.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::print_stderr
)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(manifest), Some(root)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: floor write|check MANIFEST ROOT");
        return ExitCode::from(2);
    };
    let root = PathBuf::from(root);
    let files = strata_bench::read_manifest(manifest.as_ref()).expect("read manifest");
    match cmd.as_str() {
        "write" => {
            let mut dirs = HashSet::new();
            for (path, _, content) in &files {
                let p = root.join(path);
                let parent = p.parent().expect("parent").to_path_buf();
                if dirs.insert(parent.clone()) {
                    std::fs::create_dir_all(&parent).expect("mkdir");
                }
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p)
                    .expect("create");
                f.write_all(content).expect("write");
            }
            let d = std::fs::File::open(&root).expect("open root");
            // SAFETY: syncfs on a descriptor we own.
            assert_eq!(unsafe { libc::syncfs(d.as_raw_fd()) }, 0, "syncfs");
            ExitCode::SUCCESS
        }
        "check" => {
            let mut bad = 0;
            let mut buf = Vec::new();
            for (path, hash, _) in &files {
                let mut f = std::fs::File::open(root.join(path)).expect("open");
                let m = f.metadata().expect("fstat");
                buf.clear();
                f.read_to_end(&mut buf).expect("read");
                if blake3::hash(&buf).as_bytes() != hash
                    || m.mode() & 0o7777 != 0o644
                    || m.uid() != 0
                {
                    bad += 1;
                }
            }
            if bad > 0 {
                eprintln!("{bad} files differ");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(2),
    }
}
