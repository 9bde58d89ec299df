//! Create-only writes, bounded reads, listing and deleting on the S3 test server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use strata_bucket::{S3Settings, Storage, StorageError};

/// A fresh prefix of the test bucket.
fn bucket() -> (Box<dyn Storage>, String, S3Settings) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name}: needs the S3-compatible server scripts/test starts (scripts/s3.sh)")
        })
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    let url = format!(
        "s3://{}/unit{}-{}",
        var("STRATA_TEST_S3_BUCKET"),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let settings = S3Settings {
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), var("STRATA_TEST_S3_KEY")),
            ("AWS_SECRET_ACCESS_KEY".into(), var("STRATA_TEST_S3_SECRET")),
        ],
        endpoint: Some(var("STRATA_TEST_S3")),
    };
    (strata_bucket::open(&url, &settings).unwrap(), url, settings)
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn objects_are_created_once_read_within_bounds_listed_and_deleted() {
    let (s, url, _) = bucket();
    assert_eq!(s.get("env/a/1.json", 10).unwrap(), None);
    assert!(!s.exists("env/a/1.json").unwrap());
    assert!(s.put_new("env/a/1.json", b"one").unwrap());
    // The server refuses the second create (If-None-Match: *): the first stays.
    assert!(!s.put_new("env/a/1.json", b"two").unwrap());
    assert_eq!(s.get("env/a/1.json", 3).unwrap().unwrap(), b"one");
    let e = s.get("env/a/1.json", 2).unwrap_err();
    assert!(matches!(e, StorageError::TooLarge { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("{url}/env/a/1.json")),
        "{e}"
    );
    s.put("env/a/timestamp.json", b"t1").unwrap();
    s.put("env/a/timestamp.json", b"t2").unwrap();
    assert_eq!(s.get("env/a/timestamp.json", 10).unwrap().unwrap(), b"t2");
    s.put("blobs/ab/abc", b"b").unwrap();
    assert_eq!(
        s.list("env/").unwrap(),
        ["env/a/1.json", "env/a/timestamp.json"]
    );
    assert_eq!(s.list("blobs").unwrap(), ["blobs/ab/abc"]);
    s.delete("env/a/1.json").unwrap();
    s.delete("env/a/1.json").unwrap();
    assert!(!s.exists("env/a/1.json").unwrap());
    assert!(s.put_new("env/a/1.json", b"three").unwrap());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn of_writers_racing_to_create_one_object_one_wins() {
    let (_, url, settings) = bucket();
    for round in 0..10 {
        let key = format!("env/a/{round}.json");
        let start = Arc::new(Barrier::new(4));
        let wins: usize = (0..4)
            .map(|i| {
                let (url, settings, key, start) =
                    (url.clone(), settings.clone(), key.clone(), start.clone());
                std::thread::spawn(move || {
                    let s = strata_bucket::open(&url, &settings).unwrap();
                    start.wait();
                    s.put_new(&key, format!("writer {i}").as_bytes()).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap()))
            .sum();
        assert_eq!(wins, 1, "round {round}");
    }
}
