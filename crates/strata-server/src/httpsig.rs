//! Request signatures: HTTP Message Signatures (RFC 9421) with ed25519, as FLEET.md asks
//! of every node request (and as strata asks of `publish`'s uploads, with the operator's
//! signing key). The signature covers the method, the authority, the path, the body's
//! `Content-Digest` (RFC 9530, SHA-256) and its own parameters: `created` (checked within
//! ± 300 s), the key's id and, for writes, a nonce the server remembers for 600 s.
//!
//! One exact form is produced and accepted (label `sig1`, these four components in this
//! order, parameters `created`, `nonce`, `keyid`, `alg`): anything else is refused rather
//! than interpreted. A request with a query string is refused by the server, since the
//! query is not covered.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::Digest;
use strata_snapshot::KeyPair;

/// How far a request's `created` may be from the server's clock, in seconds.
pub const CREATED_WINDOW: u64 = 300;
/// How long a write's nonce is remembered, in seconds (over twice the window, so a
/// nonce is remembered as long as its request could be accepted).
pub const NONCE_TTL: u64 = 600;

/// The components covered, in order.
const COMPONENTS: &str = r#"("@method" "@authority" "@path" "content-digest")"#;
/// The signature's label.
const LABEL: &str = "sig1";

/// Why a request signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// A header is missing.
    #[error("the request has no {0} header")]
    Missing(&'static str),
    /// A header is not in the one form accepted.
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    /// The body is not the one the digest names.
    #[error("the body does not match its Content-Digest")]
    Digest,
    /// `created` is outside the window.
    #[error(
        "the request was signed {} s {} the server's clock (at most 300 s either way)",
        .0.unsigned_abs(),
        if *.0 < 0 { "before" } else { "after" }
    )]
    Clock(i64),
    /// The signature does not verify with the key.
    #[error("the signature does not verify")]
    Bad,
    /// A write without a nonce.
    #[error("a write must carry a nonce")]
    NoNonce,
}

/// What covers a request: its method, authority (`host[:port]`), path (no query) and body.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// `GET`, `POST`…
    pub method: &'a str,
    /// The `Host` the client addressed.
    pub authority: &'a str,
    /// The path, without a query.
    pub path: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// The three headers a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// `Content-Digest`.
    pub content_digest: String,
    /// `Signature-Input`.
    pub signature_input: String,
    /// `Signature`.
    pub signature: String,
}

/// The parameters of a signature, read before it is verified (to find the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// When the client signed, in seconds since the epoch.
    pub created: u64,
    /// The nonce, for writes.
    pub nonce: Option<String>,
    /// The signing key's id (strata's: the blake3 of the public key, hex).
    pub key_id: String,
}

/// `sha-256=:BASE64:` of `body`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(sha2::Sha256::digest(body)))
}

/// A fresh nonce: 128 random bits, hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the system's random source");
    strata_types::hex(&b)
}

/// The `@signature-params` value: the covered components and the parameters.
fn params_value(p: &Params) -> String {
    let mut s = format!("{COMPONENTS};created={}", p.created);
    if let Some(n) = &p.nonce {
        s.push_str(&format!(";nonce=\"{n}\""));
    }
    s.push_str(&format!(";keyid=\"{}\";alg=\"ed25519\"", p.key_id));
    s
}

/// The signature base (RFC 9421 section 2.5): what is really signed.
fn base(t: &Target<'_>, digest: &str, params: &str) -> String {
    format!(
        "\"@method\": {}\n\"@authority\": {}\n\"@path\": {}\n\"content-digest\": {digest}\n\"@signature-params\": {params}",
        t.method.to_ascii_uppercase(),
        t.authority.to_ascii_lowercase(),
        t.path,
    )
}

/// Signs a request with `key` at `created`, with a nonce for writes.
pub fn sign(key: &KeyPair, t: &Target<'_>, created: u64, nonce: Option<String>) -> Headers {
    let params = params_value(&Params {
        created,
        nonce,
        key_id: key.id().0,
    });
    let content_digest = content_digest(t.body);
    let sig = key.sign(base(t, &content_digest, &params).as_bytes());
    Headers {
        content_digest,
        signature_input: format!("{LABEL}={params}"),
        signature: format!("{LABEL}=:{}:", STANDARD.encode(sig)),
    }
}

/// Reads the parameters of a `Signature-Input` header (not yet trusted).
pub fn parse(signature_input: &str) -> Result<Params, SigError> {
    let bad = || SigError::Malformed("Signature-Input");
    let rest = signature_input
        .strip_prefix(LABEL)
        .and_then(|r| r.strip_prefix('='))
        .and_then(|r| r.strip_prefix(COMPONENTS))
        .ok_or_else(bad)?;
    let mut created = None;
    let mut nonce = None;
    let mut key_id = None;
    let mut alg = None;
    for part in rest.split(';').skip(1) {
        let (k, v) = part.split_once('=').ok_or_else(bad)?;
        let quoted = || {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
                .map(str::to_string)
        };
        let slot = match k {
            "created" => {
                created = Some(v.parse::<u64>().map_err(|_| bad())?);
                continue;
            }
            "nonce" => &mut nonce,
            "keyid" => &mut key_id,
            "alg" => &mut alg,
            _ => return Err(bad()),
        };
        if slot.replace(quoted().ok_or_else(bad)?).is_some() {
            return Err(bad());
        }
    }
    if !rest.starts_with(';') || alg.as_deref() != Some("ed25519") {
        return Err(bad());
    }
    let p = Params {
        created: created.ok_or_else(bad)?,
        nonce,
        key_id: key_id.ok_or_else(bad)?,
    };
    // The one canonical form only: what is signed is exactly what was received.
    if format!("{LABEL}={}", params_value(&p)) != signature_input {
        return Err(bad());
    }
    Ok(p)
}

/// Verifies a request signed by `public`: its digest, its clock (`now` ± 300 s), and the
/// signature over the base. The nonce's freshness is the caller's (it needs a store).
pub fn verify(
    public: &VerifyingKey,
    t: &Target<'_>,
    headers: &Headers,
    now: u64,
) -> Result<Params, SigError> {
    let p = parse(&headers.signature_input)?;
    if headers.content_digest != content_digest(t.body) {
        return Err(SigError::Digest);
    }
    let skew = p.created as i64 - now as i64;
    if skew.unsigned_abs() > CREATED_WINDOW {
        return Err(SigError::Clock(skew));
    }
    let sig = headers
        .signature
        .strip_prefix(LABEL)
        .and_then(|r| r.strip_prefix("=:"))
        .and_then(|r| r.strip_suffix(':'))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or(SigError::Malformed("Signature"))?;
    let message = base(t, &headers.content_digest, &params_value(&p));
    public
        .verify_strict(message.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| SigError::Bad)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_snapshot::Role;

    fn target<'a>(path: &'a str, body: &'a [u8]) -> Target<'a> {
        Target {
            method: "POST",
            authority: "127.0.0.1:8080",
            path,
            body,
        }
    }

    #[test]
    fn a_signed_request_verifies_and_says_who_signed_it() {
        let key = KeyPair::generate(Role::Node).unwrap();
        let t = target("/v1/nodes/n1/reports", b"{}");
        let h = sign(&key, &t, 1000, Some(nonce()));
        let p = verify(&key.public(), &t, &h, 1000).unwrap();
        assert_eq!(p.key_id, key.id().0);
        assert_eq!(p.created, 1000);
        assert_eq!(p.nonce.as_ref().map(String::len), Some(32));
        // Within the window either way.
        verify(&key.public(), &t, &h, 1300).unwrap();
        verify(&key.public(), &t, &h, 700).unwrap();
        // The form is RFC 9421's.
        assert!(h.signature_input.starts_with(
            "sig1=(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=1000;nonce=\""
        ));
        assert_eq!(
            content_digest(b""),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }

    #[test]
    fn a_tampered_path_body_method_or_authority_is_refused() {
        let key = KeyPair::generate(Role::Node).unwrap();
        let t = target("/v1/nodes/n1/poll", b"");
        let h = sign(&key, &t, 1000, None);
        let other = target("/v1/nodes/n2/poll", b"");
        assert_eq!(verify(&key.public(), &other, &h, 1000), Err(SigError::Bad));
        let body = target("/v1/nodes/n1/poll", b"x");
        assert_eq!(
            verify(&key.public(), &body, &h, 1000),
            Err(SigError::Digest)
        );
        // A digest made to match the new body: the signature still covers the old one.
        let mut forged = h.clone();
        forged.content_digest = content_digest(b"x");
        assert_eq!(
            verify(&key.public(), &body, &forged, 1000),
            Err(SigError::Bad)
        );
        let get = Target { method: "GET", ..t };
        assert_eq!(verify(&key.public(), &get, &h, 1000), Err(SigError::Bad));
        let host = Target {
            authority: "evil.example:8080",
            ..t
        };
        assert_eq!(verify(&key.public(), &host, &h, 1000), Err(SigError::Bad));
        // Another key.
        let stranger = KeyPair::generate(Role::Node).unwrap();
        assert_eq!(verify(&stranger.public(), &t, &h, 1000), Err(SigError::Bad));
    }

    #[test]
    fn an_old_or_future_request_is_refused() {
        let key = KeyPair::generate(Role::Node).unwrap();
        let t = target("/v1/nodes/n1/poll", b"");
        let h = sign(&key, &t, 1000, None);
        assert_eq!(
            verify(&key.public(), &t, &h, 1301),
            Err(SigError::Clock(-301))
        );
        assert_eq!(
            verify(&key.public(), &t, &h, 699),
            Err(SigError::Clock(301))
        );
    }

    #[test]
    fn changed_parameters_or_other_forms_are_refused() {
        let key = KeyPair::generate(Role::Node).unwrap();
        let t = target("/v1/nodes/n1/reports", b"{}");
        let h = sign(&key, &t, 1000, Some("a".repeat(32)));
        // Another nonce (a replay dressed up as new): the parameters are signed.
        let mut renonced = h.clone();
        renonced.signature_input = h.signature_input.replace(&"a".repeat(32), &"b".repeat(32));
        assert_eq!(
            verify(&key.public(), &t, &renonced, 1000),
            Err(SigError::Bad)
        );
        let mut recreated = h.clone();
        recreated.signature_input = h.signature_input.replace("created=1000", "created=1001");
        assert_eq!(
            verify(&key.public(), &t, &recreated, 1000),
            Err(SigError::Bad)
        );
        for garbage in [
            "",
            "sig1=()",
            "sig2=(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=1;keyid=\"a\";alg=\"ed25519\"",
            "sig1=(\"@method\" \"@path\" \"content-digest\");created=1;keyid=\"a\";alg=\"ed25519\"",
            "sig1=(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=1;keyid=\"a\";alg=\"rsa\"",
            "sig1=(\"@method\" \"@authority\" \"@path\" \"content-digest\");keyid=\"a\";created=1;alg=\"ed25519\"",
            "sig1=(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=1;keyid=\"a\";keyid=\"b\";alg=\"ed25519\"",
            "sig1=(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=-1;keyid=\"a\";alg=\"ed25519\"",
            "sig1=(\"@method\" \"@authority\" \"@path\" \"content-digest\");created=1;keyid=\"a\\\"\";alg=\"ed25519\"",
        ] {
            assert!(parse(garbage).is_err(), "{garbage}");
        }
        let mut bad_sig = h;
        bad_sig.signature = "sig1=:AAAA:".into();
        assert_eq!(
            verify(&key.public(), &t, &bad_sig, 1000),
            Err(SigError::Malformed("Signature"))
        );
    }
}
