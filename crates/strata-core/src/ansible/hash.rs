//! Ansible's `hash` filter: the hex digest of a value's UTF-8 text, as Python's
//! `hashlib.new(name, text).hexdigest()` (supervisord's `{SHA}` passwords, checksums in
//! configuration files).

use md5::Md5;
use minijinja::{Error, Value};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::fail;

/// The algorithms `hash` knows, by hashlib's names.
const KNOWN: &str = "md5, sha1, sha224, sha256, sha384, sha512";

/// `value | hash(hashtype='sha1')`. The value is hashed as Python's `str` writes it
/// (`True`, `None`, `['a']`), as Ansible's `to_bytes` does.
pub(super) fn hash(value: Value, hashtype: Option<String>) -> Result<String, Error> {
    let text = super::pystr::python_str(&value);
    let name = hashtype.unwrap_or_else(|| "sha1".into());
    // hashlib accepts its names in any case.
    Ok(match name.to_ascii_lowercase().as_str() {
        "md5" => hex(Md5::digest(&text)),
        "sha1" => hex(Sha1::digest(&text)),
        "sha224" => hex(Sha224::digest(&text)),
        "sha256" => hex(Sha256::digest(&text)),
        "sha384" => hex(Sha384::digest(&text)),
        "sha512" => hex(Sha512::digest(&text)),
        _ => {
            return Err(fail(format!(
                "hash: unsupported hash type `{name}` ({KNOWN})"
            )));
        }
    })
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    use std::fmt::Write;
    bytes.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, render, try_render};
    use serde_json::json;

    /// Digests as Python's hashlib gives them (`hashlib.sha1(b'my_secret_password')`…).
    #[test]
    fn hash_gives_hashlib_hex_digests() {
        assert_eq!(
            r("{{ 'my_secret_password' | hash('sha1') }}"),
            "33a5c3270038edc370f609b9917575b9342e3286"
        );
        // sha1 when no type is given.
        assert_eq!(
            r("{{ 'test2' | hash }}"),
            "109f4b3c50d7b0df729d299bc6f8e9ef9066971f"
        );
        assert_eq!(
            r("{{ 'test2' | ansible.builtin.hash('md5') }}"),
            "ad0234829205b9033196ba818f7a872b"
        );
        assert_eq!(
            r("{{ '' | hash('sha256') }}"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            r("{{ 'abc' | hash('SHA224') }}"),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
        assert_eq!(
            r("{{ 'abc' | hash('sha384') }}"),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
        assert_eq!(
            r("{{ 'abc' | hash('sha512') }}"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        // The UTF-8 bytes of the text.
        assert_eq!(
            r("{{ 'é' | hash('md5') }}"),
            "66ddcd97cfdeabb2f6fb8a999b4bc76f"
        );
    }

    #[test]
    fn hash_hashes_what_python_str_writes_and_names_an_unknown_type() {
        // `str(True)` and `str(42)`: Python's text, not minijinja's `true`.
        assert_eq!(
            render("{{ v | hash('md5') }}", json!({"v": true})),
            "f827cf462f62848df37c5e1e94a4da74"
        );
        assert_eq!(
            render("{{ v | hash }}", json!({"v": 42})),
            "92cfceb39d57d914ed8b14d0e37643de0797ae56"
        );
        let err = try_render("{{ 'x' | hash('crc32') }}", json!({})).unwrap_err();
        assert!(err.contains("unsupported hash type `crc32`"), "{err}");
    }
}
