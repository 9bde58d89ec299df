//! The client side: a small blocking HTTP client (ureq over rustls) that signs every
//! request with its key ([`crate::httpsig`]), used by `enroll` and `agent` (the node's
//! key) and by `publish --to https://…` (the operator's signing key, through
//! [`Remote`], the published layout as a [`Storage`]).
//!
//! HTTPS is verified against `--ca FILE`, else the system's roots; plain HTTP is
//! refused unless the server is on loopback. A 429 is retried twice after the server's
//! `Retry-After` plus a jitter of up to as much again, each time signed anew.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_bucket::{Storage, StorageError};
use strata_snapshot::KeyPair;

use crate::app::{EnrollAnswer, EnrollBody, ErrorBody, PollAnswer};
use crate::httpsig::{self, Target};
use crate::inventory::RunReport;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one the client uses.
    #[error("{url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The CA file cannot be used.
    #[error("{path}: {why}")]
    Ca {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The request did not complete.
    #[error("{url}: {source}")]
    Http {
        /// What was asked.
        url: String,
        /// Why it failed.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The server refused it.
    #[error("{url}: {status}: {message}")]
    Status {
        /// What was asked.
        url: String,
        /// The status.
        status: u16,
        /// The server's message.
        message: String,
    },
}

impl ClientError {
    /// The HTTP status the server answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A server's answer.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Its `ETag`.
    pub etag: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A poll's answer and its `ETag`.
pub type Polled = (Vec<u8>, Option<String>);

/// A client of one server, signing with one key.
pub struct Client {
    base: String,
    authority: String,
    agent: ureq::Agent,
    key: KeyPair,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({} as {:?})", self.base, self.key)
    }
}

/// Whether `host` (as in a URL's authority, without the port) is loopback.
fn loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The scheme and authority of `url` (`https://host[:port]`, nothing after but `/`).
fn split(url: &str, plain_anywhere: bool) -> Result<(bool, String), ClientError> {
    let bad = |why: &str| ClientError::Url {
        url: url.to_string(),
        why: why.to_string(),
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("expected https://HOST[:PORT]"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad("expected https://HOST[:PORT], with no path"));
    }
    let host = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    };
    if !tls && !plain_anywhere && !loopback(host) {
        return Err(bad(
            "plain http:// only reaches a server on loopback; use https://",
        ));
    }
    Ok((tls, authority.to_ascii_lowercase()))
}

impl Client {
    /// A client of the server at `url` signing with `key`; HTTPS checked against the
    /// certificates in `ca` (PEM), else the system's roots.
    pub fn new(url: &str, key: KeyPair, ca: Option<&Path>) -> Result<Client, ClientError> {
        Client::build(url, key, ca, false)
    }

    /// A client that may also speak plain http:// to a server off loopback: for the
    /// netboot initrd on a provisioning network, where the token and the facts cross the
    /// network in clear anyway, as the iPXE script carrying the token did (docs/netboot.md).
    pub fn new_plain_http(url: &str, key: KeyPair) -> Result<Client, ClientError> {
        Client::build(url, key, None, true)
    }

    fn build(
        url: &str,
        key: KeyPair,
        ca: Option<&Path>,
        plain_anywhere: bool,
    ) -> Result<Client, ClientError> {
        let (tls, authority) = split(url, plain_anywhere)?;
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .timeout_connect(Some(Duration::from_secs(10)))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca {
            let bad = |why: String| ClientError::Ca {
                path: ca.display().to_string(),
                why,
            };
            let pem = strata_fs::read(ca).map_err(|e| bad(e.to_string()))?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("holds no certificate".into()));
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                    .build(),
            );
        }
        Ok(Client {
            base: format!("{}://{authority}", if tls { "https" } else { "http" }),
            authority,
            agent: config.build().into(),
            key,
        })
    }

    /// The server's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a signed request (a nonce when `write`); retries a 429 twice.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        write: bool,
        extra: &[(&str, &str)],
        limit: u64,
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut tries = 0;
        loop {
            let nonce = write.then(httpsig::nonce);
            let signed = (strata_snapshot::now(), nonce);
            let answer = self.send_once(method, (path, &url), body, signed, extra, limit)?;
            if answer.0.status != 429 || tries == 2 {
                return Ok(answer.0);
            }
            tries += 1;
            let wait = answer.1.unwrap_or(1).min(60);
            let jitter = u64::from(httpsig::nonce().as_bytes()[0]) % (wait * 1000 + 1);
            std::thread::sleep(Duration::from_millis(wait * 1000 + jitter));
        }
    }

    /// Sends one request signed at `created` with `nonce`, as it is: what tests use to
    /// replay or age a request.
    pub fn send_as_of(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        (created, nonce): (u64, Option<String>),
        extra: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let signed = (created, nonce);
        Ok(self
            .send_once(method, (path, &url), body, signed, extra, 8 << 20)?
            .0)
    }

    fn send_once(
        &self,
        method: &str,
        (path, url): (&str, &str),
        body: &[u8],
        (created, nonce): (u64, Option<String>),
        extra: &[(&str, &str)],
        limit: u64,
    ) -> Result<(Answer, Option<u64>), ClientError> {
        let t = Target {
            method,
            authority: &self.authority,
            path,
            body,
        };
        let h = httpsig::sign(&self.key, &t, created, nonce);
        let http = |source: ureq::Error| ClientError::Http {
            url: url.to_string(),
            source: Box::new(source),
        };
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-digest", &h.content_digest)
            .header("signature-input", &h.signature_input)
            .header("signature", &h.signature);
        let request = extra
            .iter()
            .fold(request, |r, (k, v)| r.header(*k, *v))
            .body(body.to_vec())
            .map_err(|e| http(ureq::Error::Http(e)))?;
        let mut resp = self.agent.run(request).map_err(http)?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let retry = header("retry-after").and_then(|v| v.parse().ok());
        let status = resp.status().as_u16();
        // ureq refuses a body of exactly its limit: one more byte, checked here.
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit.saturating_add(1))
            .read_to_vec()
            .map_err(http)?;
        if body.len() as u64 > limit {
            return Err(http(ureq::Error::BodyExceedsLimit(limit)));
        }
        Ok((Answer { status, etag, body }, retry))
    }

    /// An answer that must be 2xx (or one of `also`), else the server's message.
    fn expect(&self, path: &str, a: Answer, also: &[u16]) -> Result<Answer, ClientError> {
        if (200..300).contains(&a.status) || also.contains(&a.status) {
            return Ok(a);
        }
        let message = serde_json::from_slice::<ErrorBody>(&a.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&a.body).chars().take(200).collect());
        Err(ClientError::Status {
            url: format!("{}{path}", self.base),
            status: a.status,
            message,
        })
    }

    /// Enrolls this client's key as `body.node`: accepted (200) or pending (202).
    pub fn enroll(&self, body: &EnrollBody) -> Result<EnrollAnswer, ClientError> {
        let path = "/v1/enroll";
        let bytes = serde_json::to_vec(body).expect("an enrollment serializes");
        let a = self.send("POST", path, &bytes, true, &[], 1 << 20)?;
        let a = self.expect(path, a, &[])?;
        serde_json::from_slice(&a.body).map_err(|e| ClientError::Status {
            url: format!("{}{path}", self.base),
            status: a.status,
            message: format!("an answer that is not an enrollment's: {e}"),
        })
    }

    /// Polls: `None` when nothing changed since `etag`; else the answer and its ETag.
    pub fn poll(&self, node: &str, etag: Option<&str>) -> Result<Option<Polled>, ClientError> {
        let path = format!("/v1/nodes/{node}/poll");
        let extra: Vec<(&str, &str)> = etag.map(|e| ("if-none-match", e)).into_iter().collect();
        let a = self.send("GET", &path, b"", false, &extra, 8 << 20)?;
        let a = self.expect(&path, a, &[304])?;
        if a.status == 304 {
            return Ok(None);
        }
        Ok(Some((a.body, a.etag)))
    }

    /// A GET of a node route: the body, or `None` on 404.
    pub fn fetch(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, ClientError> {
        let a = self.send("GET", path, b"", false, &[], limit)?;
        let a = self.expect(path, a, &[404])?;
        Ok((a.status != 404).then_some(a.body))
    }

    /// Posts a run's report.
    pub fn report(&self, node: &str, report: &RunReport) -> Result<(), ClientError> {
        let path = format!("/v1/nodes/{node}/reports");
        let bytes = serde_json::to_vec(report).expect("a report serializes");
        let a = self.send("POST", &path, &bytes, true, &[], 1 << 20)?;
        self.expect(&path, a, &[]).map(|_| ())
    }
}

/// Parses a poll's answer.
pub fn parse_poll(bytes: &[u8]) -> Result<PollAnswer, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("the server's poll answer: {e}"))
}

/// The published layout on a server, as `publish` writes any bucket: every request
/// signed with the operator's signing key.
#[derive(Debug)]
pub struct Remote(pub Client);

impl Remote {
    fn err(&self, key: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError::Url {
            url: format!("{}/v1/publish/{key}", self.0.base),
            why: e.to_string(),
        }
    }

    fn call(
        &self,
        method: &str,
        key: &str,
        body: &[u8],
        extra: &[(&str, &str)],
        limit: u64,
    ) -> Result<Answer, StorageError> {
        let path = format!("/v1/publish/{key}");
        let write = method == "PUT";
        let a = self
            .0
            .send(method, &path, body, write, extra, limit)
            .map_err(|e| self.err(key, e))?;
        self.0
            .expect(&path, a, &[404, 412])
            .map_err(|e| self.err(key, e))
    }
}

impl Storage for Remote {
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let a = self.call("GET", key, b"", &[], limit)?;
        Ok((a.status == 200).then_some(a.body))
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.call("HEAD", key, b"", &[], 4096)?.status == 200)
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        let a = self.call("PUT", key, bytes, &[("if-none-match", "*")], 1 << 20)?;
        match a.status {
            201 => Ok(true),
            412 => Ok(false),
            s => Err(self.err(key, format!("answered {s}"))),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let a = self.call("PUT", key, bytes, &[], 1 << 20)?;
        match a.status {
            200 | 201 => Ok(()),
            s => Err(self.err(key, format!("answered {s}"))),
        }
    }

    // A server keeps (and collects) its own releases: `publish --gc` is for storage.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Err(self.err(
            prefix,
            "a server is not listed: --gc is for s3:// and file://",
        ))
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        Err(self.err(key, "a server's releases are not deleted by publish"))
    }

    fn url(&self) -> &str {
        &self.0.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_reaches_loopback_only() {
        assert_eq!(
            split("http://127.0.0.1:8080/", false).unwrap().1,
            "127.0.0.1:8080"
        );
        assert!(split("http://[::1]:80", false).is_ok());
        assert!(split("http://localhost:1", false).is_ok());
        for bad in [
            "http://10.0.0.1:80",
            "http://example.com",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "http://127.0.0.1.evil.com",
        ] {
            assert!(split(bad, false).is_err(), "{bad}");
        }
        assert_eq!(
            split("https://Server.example:8443", false).unwrap(),
            (true, "server.example:8443".into())
        );
    }
}
