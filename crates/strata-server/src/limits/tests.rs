//! The per-address limiter, alone and in front of a router, with addresses as
//! [`crate::listen::serve`] records them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use tower::ServiceExt;

use super::{Limiter, Rate, key, maybe_limit};
use crate::listen::Peer;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn an_address_gets_its_burst_then_its_rate_and_others_are_not_held_back() {
    let l = Limiter::new(Rate {
        rate: 2.0,
        burst: 3.0,
    });
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(l.take(ip("192.0.2.1"), t0), Ok(()));
    }
    // Over its share: told to wait a whole second (half a second to one token, rounded up).
    assert_eq!(l.take(ip("192.0.2.1"), t0), Err(1));
    // Another address still has its whole burst.
    for _ in 0..3 {
        assert_eq!(l.take(ip("192.0.2.2"), t0), Ok(()));
    }
    // Half a second refills one request at 2 a second, and no more.
    let t1 = t0 + Duration::from_millis(500);
    assert_eq!(l.take(ip("192.0.2.1"), t1), Ok(()));
    assert!(l.take(ip("192.0.2.1"), t1).is_err());
    // A long quiet spell refills the burst, never past it.
    let t2 = t0 + Duration::from_secs(3600);
    for _ in 0..3 {
        assert_eq!(l.take(ip("192.0.2.1"), t2), Ok(()));
    }
    assert!(l.take(ip("192.0.2.1"), t2).is_err());
}

#[test]
fn one_ipv6_host_is_one_address_whatever_its_interface_id() {
    let l = Limiter::new(Rate {
        rate: 1.0,
        burst: 2.0,
    });
    let t = Instant::now();
    assert_eq!(l.take(ip("2001:db8:1:2::1"), t), Ok(()));
    assert_eq!(l.take(ip("2001:db8:1:2:ffff::9"), t), Ok(()));
    // A third address of the same /64 finds the bucket empty.
    assert_eq!(l.take(ip("2001:db8:1:2:abcd::1"), t), Err(1));
    // Another /64 is another client.
    assert_eq!(l.take(ip("2001:db8:1:3::1"), t), Ok(()));
    // An IPv4-mapped address is its IPv4 address.
    assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
}

#[test]
fn many_addresses_do_not_grow_the_buckets_without_end() {
    let l = Limiter::new(Rate {
        rate: 1000.0,
        burst: 1.0,
    });
    let t = Instant::now();
    // Each address's one request, then a second later its bucket is full again: idle.
    for i in 0..30_000u32 {
        let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let now = t + Duration::from_millis(u64::from(i / 1000) * 2000);
        assert_eq!(l.take(a, now), Ok(()));
    }
    assert!(l.addresses() <= 11_000, "{} buckets kept", l.addresses());
}

async fn status(app: &Router, from: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    if let Some(f) = from {
        req.extensions_mut()
            .insert(Peer(SocketAddr::new(ip(f), 40000)));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_string());
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_router_answers_429_with_retry_after_to_the_address_over_its_share_only() {
    let limiter = Some(Arc::new(Limiter::new(Rate {
        rate: 0.5,
        burst: 2.0,
    })));
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(move |req, next| {
            maybe_limit(limiter.clone(), req, next)
        }));
    for _ in 0..2 {
        assert_eq!(status(&app, Some("198.51.100.1")).await.0, StatusCode::OK);
    }
    let (code, retry, body) = status(&app, Some("198.51.100.1")).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    // One token at half a request a second: two seconds.
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(
        body.contains("too many requests from 198.51.100.1"),
        "{body}"
    );
    // The next address is served, and the handler never saw the refused request.
    let (code, _, body) = status(&app, Some("198.51.100.2")).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "ok"));
    // Without a limiter everything passes.
    let open = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(|req, next| {
            maybe_limit(None, req, next)
        }));
    for _ in 0..10 {
        assert_eq!(status(&open, Some("198.51.100.1")).await.0, StatusCode::OK);
    }
}
