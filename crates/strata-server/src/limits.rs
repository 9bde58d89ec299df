//! The server's limits (sizes, timeouts, requests at once), and its per-address rate
//! limits: each client address (an IPv6 address by its /64, which one
//! host usually holds whole) has a bucket of `burst` requests refilled at `rate` a
//! second; a request finding its bucket empty is answered 429 with `Retry-After` before
//! it takes one of the server's request slots, so one address cannot take the share of
//! the others. The buckets of idle addresses are dropped when there are many.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::ErrorBody;
use crate::listen::Peer;

/// The server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest body of a node's request (an enrollment's facts, a report): 1 MiB.
    pub body: usize,
    /// The largest object `publish` uploads (a manifest, a blob): 64 MiB and a margin.
    pub upload: usize,
    /// How long a node's request may take, its body included.
    pub timeout: Duration,
    /// How long an upload may take.
    pub upload_timeout: Duration,
    /// Requests handled at once; past that, 429.
    pub concurrency: usize,
    /// Seconds a client is told to wait when it got 429.
    pub retry_after: u64,
    /// What one client address may ask, if limited.
    pub per_address: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body: 1 << 20,
            upload: (64 << 20) + (1 << 20),
            timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(300),
            concurrency: 256,
            retry_after: 5,
            per_address: Some(Rate::per_second(DEFAULT_RATE)),
        }
    }
}

/// Requests a second one address may make by default (`serve --per-address-rate`).
pub const DEFAULT_RATE: u32 = 100;

/// How many requests an address may make: `rate` a second, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests a second, sustained.
    pub rate: f64,
    /// Requests at once, after a quiet spell.
    pub burst: f64,
}

impl Rate {
    /// `rate` a second with a burst of ten seconds' worth (an agent's first run fetches
    /// every blob of its snapshot in a row).
    pub fn per_second(rate: u32) -> Rate {
        Rate {
            rate: f64::from(rate),
            burst: f64::from(rate) * 10.0,
        }
    }
}

/// Buckets kept before idle ones are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every address seen.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The key of an address: IPv4 whole, IPv6 by its /64 (an IPv4-mapped one as IPv4).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl Limiter {
    /// A limiter giving each address `rate`.
    pub fn new(rate: Rate) -> Limiter {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `ip`'s bucket at `now`: `Ok`, or `Err(seconds)` to wait
    /// until it holds one again.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let Rate { rate, burst } = self.rate;
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= PRUNE_AT {
            // Full buckets are those of addresses quiet for a while: as if never seen.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key(ip)).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        // Whole seconds, at least one (`Retry-After` has no fractions).
        let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Err(wait as u64)
    }

    /// Addresses with a bucket.
    pub fn addresses(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The middleware: a request from an address over its rate gets 429; one with no known
/// peer (not from [`crate::listen::serve`]) passes.
pub async fn limit(limiter: Arc<Limiter>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<Peer>().map(|p| p.0.ip());
    if let Some(ip) = peer
        && let Err(wait) = limiter.take(ip, Instant::now())
    {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.to_string())],
            axum::Json(ErrorBody {
                error: format!(
                    "too many requests from {ip}: at most {} a second; retry later",
                    limiter.rate.rate
                ),
            }),
        )
            .into_response();
    }
    next.run(req).await
}

/// The limiter `limits.per_address` asks for, if any.
pub(crate) fn limiter(limits: &Limits) -> Option<Arc<Limiter>> {
    limits.per_address.map(|r| Arc::new(Limiter::new(r)))
}

/// [`limit`] when there is a limiter, else nothing.
pub(crate) async fn maybe_limit(
    limiter: Option<Arc<Limiter>>,
    req: Request,
    next: Next,
) -> Response {
    match limiter {
        Some(l) => limit(l, req, next).await,
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests;
