//! `strata serve --per-address-rate`: one client address over its share is answered 429
//! with `Retry-After`, through the real server on a loopback port, and served again
//! once it waited.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::serve::served;

#[test]
fn one_address_over_its_rate_gets_429_and_is_served_again_after_waiting() {
    // 1 request a second, a burst of 10.
    let s = served(&["--per-address-rate", "1"]);
    let host = s.authority();
    let ask = || {
        let mut raw = TcpStream::connect(&host).unwrap();
        raw.write_all(
            format!("GET /v1/nodes/n1/poll HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        let _ = raw.read_to_string(&mut answer);
        answer
    };
    // Unsigned: refused by the route (401) while within the burst, then by the limiter.
    let mut passed = 0;
    let limited = loop {
        let answer = ask();
        if !answer.starts_with("HTTP/1.1 401") {
            break answer;
        }
        passed += 1;
        assert!(passed < 40, "no 429 after {passed} requests in a row");
    };
    assert!(
        passed >= 10,
        "limited after {passed} requests: the burst is 10"
    );
    assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
    assert!(
        limited.to_ascii_lowercase().contains("retry-after: 1"),
        "{limited}"
    );
    assert!(
        limited.contains("too many requests from 127.0.0.1"),
        "{limited}"
    );
    // After the wait it was told, the address is served again.
    std::thread::sleep(Duration::from_millis(1100));
    let answer = ask();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // The 429 is in the request log like any other answer.
    let log = std::fs::read_to_string(s.env.path().join("serve.log")).unwrap();
    assert!(log.contains("GET /v1/nodes/n1/poll 429"), "{log}");
}
