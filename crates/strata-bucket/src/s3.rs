//! `s3://BUCKET/PREFIX`: S3-compatible object storage through object_store. Create-only
//! writes are `If-None-Match: *` (object_store's `PutMode::Create`): the server, not a
//! check before the write, refuses a second writer. Gets are refused before their body is
//! read when the response's length is over the limit, and cut at the limit anyway.
//!
//! object_store is async; each call runs on a current-thread runtime this store owns, so
//! the [`Storage`] trait and the CLI stay blocking. Credentials come from the `AWS_*`
//! variables the CLI hands over ([`S3Settings`]) and never appear in a message.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig,
};

use crate::{Storage, StorageError, valid_key};

/// How to reach object storage: what the CLI read from its environment and flags.
#[derive(Default, Clone)]
pub struct S3Settings {
    /// The `AWS_*` variables (name, value), as `AmazonS3Builder::from_env` would read
    /// them: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, the container and web
    /// identity credentials… `AWS_ALLOW_HTTP` and `AWS_CONDITIONAL_PUT` are not taken:
    /// plain HTTP follows from the endpoint, and create-only writes are not optional.
    pub env: Vec<(String, String)>,
    /// An S3-compatible server's URL (`--s3-endpoint`), over `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values hold credentials.
        let names: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("S3Settings")
            .field("env", &names)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// A bucket (and a prefix in it) in S3-compatible object storage.
pub struct S3Storage {
    /// `s3://bucket/prefix`, as given (without a trailing `/`).
    url: String,
    /// The prefix, `""` or `a/b`.
    prefix: String,
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    /// Values never to print (access keys, secrets, tokens).
    secrets: Vec<String>,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage").field("url", &self.url).finish()
    }
}

/// Each request's bounds: an unreachable endpoint fails in seconds, not object_store's
/// default three minutes of retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
const RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

impl S3Storage {
    /// Opens `s3://BUCKET[/PREFIX]`. Nothing is sent yet: a wrong credential or an
    /// unreachable endpoint shows at the first request, naming the object.
    pub fn open(url: &str, settings: &S3Settings) -> Result<S3Storage, StorageError> {
        let bad = |why: String| StorageError::Url {
            url: url.to_string(),
            why,
        };
        let (bucket, prefix) = parse_url(url).map_err(|why| bad(why.to_string()))?;
        let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
        let mut secrets = Vec::new();
        for (name, value) in &settings.env {
            let lower = name.to_ascii_lowercase();
            let Some(key) = lower
                .starts_with("aws_")
                .then(|| lower.parse::<AmazonS3ConfigKey>().ok())
                .flatten()
            else {
                continue;
            };
            if ["KEY", "SECRET", "TOKEN"]
                .iter()
                .any(|w| name.to_ascii_uppercase().contains(w))
                && value.len() >= 4
            {
                secrets.push(value.clone());
            }
            if matches!(
                key,
                AmazonS3ConfigKey::Bucket
                    | AmazonS3ConfigKey::ConditionalPut
                    | AmazonS3ConfigKey::Client(_)
            ) {
                continue;
            }
            builder = builder.with_config(key, value);
        }
        if let Some(e) = &settings.endpoint {
            builder = builder.with_endpoint(e);
        }
        let mut allow_http = false;
        for key in [AmazonS3ConfigKey::Endpoint, AmazonS3ConfigKey::S3Endpoint] {
            if let Some(endpoint) = builder.get_config_value(&key) {
                allow_http |= plain_http(&endpoint).map_err(|why| {
                    bad(format!(
                        "the endpoint {}: {why}",
                        scrub(&endpoint, &secrets)
                    ))
                })?;
            }
        }
        let store = builder
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(allow_http)
                    .with_connect_timeout(CONNECT_TIMEOUT)
                    .with_timeout(REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                max_retries: RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| bad(scrub(&e.to_string(), &secrets)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its client: {e}")))?;
        Ok(S3Storage {
            url: url.trim_end_matches('/').to_string(),
            prefix: prefix.to_string(),
            store,
            runtime,
            secrets,
        })
    }

    fn path(&self, key: &str) -> Path {
        debug_assert!(valid_key(key), "{key}");
        if self.prefix.is_empty() {
            Path::from_iter(key.split('/'))
        } else {
            Path::from_iter(self.prefix.split('/').chain(key.split('/')))
        }
    }

    /// An error of object storage, naming the object by URL, without secrets.
    fn remote(&self, key: &str, e: &object_store::Error) -> StorageError {
        let hint = match e {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                "refused: check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) \
                 and the bucket's policy: "
            }
            _ => "",
        };
        let mut why = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            let text = s.to_string();
            if !why.contains(&text) {
                why = format!("{why}: {text}");
            }
            source = s.source();
        }
        StorageError::Remote {
            url: format!("{}/{key}", self.url),
            why: scrub(&format!("{hint}{why}"), &self.secrets),
        }
    }
}

impl Storage for S3Storage {
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let too_large = || StorageError::TooLarge {
            key: format!("{}/{key}", self.url),
            limit,
        };
        self.runtime.block_on(async {
            let got = match self
                .store
                .get_opts(&self.path(key), GetOptions::default())
                .await
            {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(self.remote(key, &e)),
            };
            // The length the server announced, before any of the body is read.
            if got.meta.size > limit {
                return Err(too_large());
            }
            let mut out = Vec::with_capacity(got.meta.size as usize);
            let mut body = got.into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| self.remote(key, &e))?;
                if (out.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                out.extend_from_slice(&chunk);
            }
            Ok(Some(out))
        })
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.runtime.block_on(self.store.head(&self.path(key))) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.remote(key, &e)),
        }
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match self
            .runtime
            .block_on(self.store.put_opts(&self.path(key), payload, opts))
        {
            Ok(_) => Ok(true),
            // 412 (the object exists), or 409 (another conditional write of it in flight).
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.remote(key, &e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let payload = PutPayload::from(bytes.to_vec());
        self.runtime
            .block_on(self.store.put(&self.path(key), payload))
            .map(|_| ())
            .map_err(|e| self.remote(key, &e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = prefix.trim_end_matches('/');
        let under = self.path(prefix);
        let strip = match self.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.prefix),
        };
        let mut keys = self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut listing = self.store.list(Some(&under));
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(|e| self.remote(prefix, &e))?;
                let full = meta.location.to_string();
                if let Some(k) = full.strip_prefix(&strip).filter(|k| valid_key(k)) {
                    keys.push(k.to_string());
                }
            }
            Ok::<_, StorageError>(keys)
        })?;
        keys.sort();
        Ok(keys)
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.runtime.block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.remote(key, &e)),
        }
    }

    fn url(&self) -> &str {
        &self.url
    }
}

/// `s3://BUCKET[/PREFIX]` as (bucket, prefix without its trailing `/`).
fn parse_url(url: &str) -> Result<(&str, &str), &'static str> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("expected s3://BUCKET/PREFIX")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if !bucket_ok {
        return Err(
            "expected a bucket name (3 to 63 lowercase letters, digits, `-` or `.`) after s3://",
        );
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    if !prefix.is_empty() && !valid_key(prefix) {
        return Err("the prefix has an empty, `.` or `..` component");
    }
    Ok((bucket, prefix))
}

/// Whether `endpoint` is plain HTTP, which only a loopback address may use: credentials
/// and snapshots do not cross a network in the clear.
fn plain_http(endpoint: &str) -> Result<bool, &'static str> {
    let (http, rest) = if let Some(r) = endpoint.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = endpoint.strip_prefix("https://") {
        (false, r)
    } else {
        return Err("expected an http:// or https:// URL");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "credentials do not belong in the URL: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        );
    }
    if !http {
        return Ok(false);
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(
            "plain http:// only to a loopback address (127.0.0.1, ::1, localhost): use https://",
        );
    }
    Ok(true)
}

/// `text` with every secret replaced.
fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s.as_str(), "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls_parse() {
        assert_eq!(parse_url("s3://bucket").unwrap(), ("bucket", ""));
        assert_eq!(parse_url("s3://b-1.x/a/b/").unwrap(), ("b-1.x", "a/b"));
        for bad in [
            "s3://",
            "s3://ab",
            "s3://UP",
            "s3://-b",
            "s3://b_c",
            "s3://bkt/a//b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:5055",
            "http://127.1.2.3",
            "http://localhost:9000/",
            "http://[::1]:9000",
        ] {
            assert_eq!(plain_http(ok), Ok(true), "{ok}");
        }
        assert_eq!(plain_http("https://s3.example.com"), Ok(false));
        for bad in [
            "http://10.0.0.1:9000",
            "http://s3.example.com",
            "http://127.0.0.1.example.com",
            "ftp://x",
            "https://user:pw@host",
        ] {
            assert!(plain_http(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_never_reach_a_message() {
        let settings = S3Settings {
            env: vec![
                ("AWS_ACCESS_KEY_ID".into(), "AKIDSECRETVALUE".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "wJalrXUtnFEMI".into()),
            ],
            endpoint: Some("http://example.com/AKIDSECRETVALUE".into()),
        };
        let e = S3Storage::open("s3://bucket", &settings)
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
        assert!(!e.contains("AKIDSECRETVALUE"), "{e}");
        let s = S3Storage::open(
            "s3://bucket/p",
            &S3Settings {
                endpoint: None,
                ..settings
            },
        )
        .unwrap();
        let debug = format!("{s:?} {:?}", S3Settings::default());
        assert!(!debug.contains("wJalrXUtnFEMI"), "{debug}");
    }
}
