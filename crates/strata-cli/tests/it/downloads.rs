//! Downloads from a hostile or broken server (issue 16: an endless body was buffered in
//! memory up to 4 GiB): a body without end, longer or shorter than declared, or announced
//! too large, is refused with an error naming the download and the limit; the target and
//! the cache are unchanged, and strata's memory stays flat whatever the body.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use strata_test::TestEnv;

use crate::env;

/// A loopback server answering, for a bounded number of requests: `/endless` (no length;
/// bytes until the client hangs up, 8 GiB or 5 minutes at most), `/announced` (a length of
/// 2 GiB, then the same), `/short` (10 bytes), `/closed` (10 bytes, no length: the end of
/// the connection ends the body).
fn hostile_server(requests: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = match request.split(' ').nth(1).unwrap_or("/") {
                "/endless" => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                "/announced" => {
                    "HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\nConnection: close\r\n\r\n"
                }
                "/closed" => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n0123456789",
                _ => "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
            };
            let _ = stream.write_all(head.as_bytes());
            if head.ends_with("0123456789") {
                continue;
            }
            let chunk = vec![b'x'; 1 << 16];
            let start = std::time::Instant::now();
            for _ in 0..(8u64 << 30) / chunk.len() as u64 {
                if stream.write_all(&chunk).is_err() || start.elapsed().as_secs() > 300 {
                    break;
                }
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// A node `n1` whose module `dl` downloads `url` to /opt/big (`extra`: more keys), with
/// a sha256 that nothing has.
fn declare(e: &TestEnv, url: &str, extra: &str) {
    declare_pinned(e, url, &"ab".repeat(32), extra);
}

fn declare_pinned(e: &TestEnv, url: &str, sha256: &str, extra: &str) {
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"dl\"]\n")
        .write(
            "modules/dl/module.toml",
            &format!(
                "[[download]]\nurl = \"{url}\"\nsha256 = \"{sha256}\"\npath = \"/opt/big\"\n{extra}"
            ),
        );
}

/// Runs `strata apply`, which must fail; returns its stderr and its peak resident size in
/// KiB: the highest `VmHWM` of `/proc/PID/status` read every 2 ms while it runs (its own
/// memory since `exec`). Not `wait4`'s `ru_maxrss`: Linux counts into it the memory a
/// child had before `exec`, which for a child of this test process is the test process's
/// (over 100 MiB when the whole suite runs in it).
fn failing_apply(e: &TestEnv) -> (String, i64) {
    let mut child = e
        .cmd(&["apply", "--node", "n1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run strata");
    let mut pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        pipe.read_to_string(&mut stderr).expect("stderr");
        stderr
    });
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let exit = loop {
        let hwm = (std::fs::read_to_string(&status).unwrap_or_default().lines())
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        peak = peak.max(hwm.unwrap_or(0));
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let stderr = reader.join().expect("reader");
    assert_eq!(exit.code(), Some(1), "{stderr}");
    assert!(peak > 0, "no VmHWM read from {status}");
    (stderr, peak)
}

/// Nothing of a download is left in the cache.
fn cache_is_empty(cache: &Path) {
    let dir = cache.join("downloads");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn an_endless_download_is_cut_at_its_declared_size_in_flat_memory() {
    let e = env();
    std::fs::create_dir_all(e.root().join("opt")).expect("opt");
    let cache = e.cache();
    let base = hostile_server(2);
    let original = e.tree();
    // 200 MiB declared: the old code held the body in memory until 4 GiB.
    declare(&e, &format!("{base}/endless"), "size = 209715200\n");
    let (err, peak) = failing_apply(&e);
    assert!(
        err.contains(&format!(
            "download of {base}/endless for /opt/big (modules/dl/module.toml:1) failed: \
             the body is longer than its declared size of 209715200 bytes; nothing was written"
        )),
        "{err}"
    );
    // (21 MiB, measured, while 200 MiB streamed through.)
    assert!(peak < 64 << 10, "strata's peak memory was {peak} KiB");
    assert_eq!(e.tree(), original);
    cache_is_empty(&cache);

    // A body announced larger than the default limit is refused before it is read.
    declare(&e, &format!("{base}/announced"), "");
    let (err, _) = failing_apply(&e);
    assert!(
        err.contains(
            "for /opt/big (modules/dl/module.toml:1) failed: the body is longer than 1024 MiB, \
             the most a download may be without a declared `size` (docs/resources.md)"
        ),
        "{err}"
    );
    assert_eq!(e.tree(), original);
    cache_is_empty(&cache);
}

#[test]
fn a_download_shorter_than_declared_is_refused() {
    let e = env();
    std::fs::create_dir_all(e.root().join("opt")).expect("opt");
    let cache = e.cache();
    let base = hostile_server(2);
    let original = e.tree();
    declare(&e, &format!("{base}/short"), "size = 20\n");
    let (err, _) = failing_apply(&e);
    assert!(
        err.contains(
            "/short for /opt/big (modules/dl/module.toml:1) failed: the server announces 10 \
             bytes, less than its declared size of 20 bytes; nothing was written"
        ),
        "{err}"
    );
    assert_eq!(e.tree(), original);
    cache_is_empty(&cache);
    declare(&e, &format!("{base}/closed"), "size = 20\n");
    let (err, _) = failing_apply(&e);
    assert!(
        err.contains(
            "/closed for /opt/big (modules/dl/module.toml:1) failed: the body ended after 10 \
             bytes, shorter than its declared size of 20 bytes; nothing was written"
        ),
        "{err}"
    );
    assert_eq!(e.tree(), original);
    cache_is_empty(&cache);
}

#[test]
fn a_declared_size_is_a_number_of_bytes() {
    let e = env();
    declare(&e, "https://example.org/x", "size = \"1 GiB\"\n");
    let err = e.run(&["check"]).code(1).stderr;
    assert!(
        err.contains("modules/dl/module.toml:5:8: invalid type: string \"1 GiB\", expected u64"),
        "{err}"
    );
}

#[test]
fn a_download_of_its_declared_size_is_kept_private_in_the_cache() {
    use std::os::unix::fs::PermissionsExt;
    let e = env();
    std::fs::create_dir_all(e.root().join("opt")).expect("opt");
    let cache = e.cache();
    let base = hostile_server(1);
    let sum = "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882";
    declare_pinned(&e, &format!("{base}/closed"), sum, "size = 10\n");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(
        std::fs::read(e.root().join("opt/big")).expect("applied"),
        b"0123456789"
    );
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&cache.join("downloads")), 0o700);
    assert_eq!(mode(&cache.join("downloads").join(sum)), 0o600);
    // Only the body itself: no partial file is left beside it.
    let names: Vec<_> = std::fs::read_dir(cache.join("downloads"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, [sum]);
}

#[test]
fn a_target_that_holds_the_pinned_content_needs_no_network() {
    let e = env();
    let cache = e.cache();
    let sum = "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882";
    // Nothing listens there: a fetch would fail.
    declare_pinned(&e, "http://127.0.0.1:9/gone", sum, "size = 10\n");
    e.write_root("opt/big", "0123456789", 0o644);
    let plan = e.run(&["plan", "--node", "n1"]).stdout;
    assert!(!plan.contains("fetched from"), "{plan}");
    assert!(!plan.contains("/opt/big"), "{plan}");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(
        std::fs::read(e.root().join("opt/big")).expect("kept"),
        b"0123456789"
    );
    // Read as a stream and kept in the cache, privately, for the next runs.
    use std::os::unix::fs::PermissionsExt;
    let cached = cache.join("downloads").join(sum);
    assert_eq!(std::fs::read(&cached).expect("cached"), b"0123456789");
    assert_eq!(
        std::fs::metadata(&cached)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}
