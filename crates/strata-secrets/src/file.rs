//! The two files of a secret in the site: `secrets/NAME.age` (the ciphertext) and
//! `secrets/NAME.toml` (who it is encrypted to), read, written, encrypted and decrypted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::x25519::{Identity, Recipient};
use serde::{Deserialize, Serialize};
use strata_core::SecretValue;

use crate::SecretError;

/// The largest secret: 1 MiB (a password, a key, a certificate bundle).
const SECRET_LIMIT: u64 = 1 << 20;

/// Checks that `name` can name a secret.
pub fn secret_name(name: &str) -> Result<(), SecretError> {
    match strata_core::valid_secret_name(name) {
        true => Ok(()),
        false => Err(SecretError::BadName(name.to_string())),
    }
}

/// `secrets/NAME.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMeta {
    /// The selectors given to `secret set` (`web1`, `group:db`, `role:r`, `env:e`).
    pub to: Vec<String>,
    /// The fingerprints of the admins' keys it is encrypted to.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Each recipient node and the fingerprint of its key.
    #[serde(default)]
    pub recipients: BTreeMap<String, String>,
}

/// The site's `secrets/` directory.
#[derive(Debug, Clone)]
pub struct SecretFiles {
    /// `SITE/secrets`.
    pub dir: PathBuf,
}

impl SecretFiles {
    /// The secrets of the site at `site`.
    pub fn of(site: &Path) -> SecretFiles {
        SecretFiles {
            dir: site.join("secrets"),
        }
    }

    /// `secrets/NAME.EXT`, as messages name it.
    pub fn rel(name: &str, ext: &str) -> String {
        format!("secrets/{name}.{ext}")
    }

    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}.{ext}"))
    }

    /// Whether the secret has either of its files.
    pub fn exists(&self, name: &str) -> bool {
        strata_fs::exists(&self.path(name, "age")) || strata_fs::exists(&self.path(name, "toml"))
    }

    /// The names of the site's secrets, sorted.
    pub fn list(&self) -> Result<Vec<String>, SecretError> {
        if !strata_fs::is_dir(&self.dir) {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = strata_fs::list_dir(&self.dir)?
            .into_iter()
            .filter_map(|f| {
                let (stem, ext) = f.rsplit_once('.')?;
                (matches!(ext, "age" | "toml") && strata_core::valid_secret_name(stem))
                    .then(|| stem.to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Reads `secrets/NAME.toml`.
    pub fn meta(&self, name: &str) -> Result<SecretMeta, SecretError> {
        let file = Self::rel(name, "toml");
        let path = self.path(name, "toml");
        if !strata_fs::exists(&path) {
            return Err(SecretError::Missing {
                name: name.to_string(),
                file,
            });
        }
        let text = strata_fs::read_to_string(&path)?;
        toml::from_str(&text).map_err(|e| SecretError::Meta {
            file,
            reason: e.message().to_string(),
        })
    }

    /// Writes both files of a secret: the ciphertext first, then who it is for.
    pub fn write(
        &self,
        name: &str,
        ciphertext: &[u8],
        meta: &SecretMeta,
    ) -> Result<(), SecretError> {
        let header = format!(
            "# Who secrets/{name}.age is encrypted to: written by `strata secret set` and \
             `strata secret rekey`.\n"
        );
        let body = toml::to_string(meta).map_err(|e| SecretError::Meta {
            file: Self::rel(name, "toml"),
            reason: e.to_string(),
        })?;
        strata_fs::write_atomic(&self.path(name, "age"), ciphertext)?;
        strata_fs::write_atomic(
            &self.path(name, "toml"),
            format!("{header}{body}").as_bytes(),
        )?;
        Ok(())
    }

    /// Encrypts `plaintext` to `recipients` (age's binary format).
    pub fn encrypt(
        name: &str,
        plaintext: &[u8],
        recipients: &[Recipient],
    ) -> Result<Vec<u8>, SecretError> {
        let fail = |reason: String| SecretError::Encrypt {
            name: name.to_string(),
            reason,
        };
        if recipients.is_empty() {
            return Err(SecretError::NoRecipients(name.to_string()));
        }
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| fail(e.to_string()))?;
        let mut out = Vec::with_capacity(plaintext.len() + 512);
        let mut writer = encryptor
            .wrap_output(&mut out)
            .map_err(|e| fail(e.to_string()))?;
        writer
            .write_all(plaintext)
            .and_then(|()| writer.finish().map(|_| ()))
            .map_err(|e| fail(e.to_string()))?;
        Ok(out)
    }

    /// Decrypts secret `name` with `identity`; `key` says which key that is, for errors.
    pub fn decrypt(
        &self,
        name: &str,
        identity: &Identity,
        key: &str,
    ) -> Result<SecretValue, SecretError> {
        let file = Self::rel(name, "age");
        let path = self.path(name, "age");
        if !strata_fs::exists(&path) {
            return Err(SecretError::Missing {
                name: name.to_string(),
                file,
            });
        }
        let (bytes, _) = strata_fs::read_with_mode(&path, SECRET_LIMIT + 64 * 1024)?;
        let corrupt = |reason: String| SecretError::Corrupt {
            file: file.clone(),
            reason,
        };
        let decryptor = age::Decryptor::new(&bytes[..]).map_err(|e| corrupt(e.to_string()))?;
        let mut reader = match decryptor.decrypt(std::iter::once(identity as &dyn age::Identity)) {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) => {
                return Err(SecretError::WrongKey {
                    file,
                    key: key.to_string(),
                    why: format!(
                        "it is not encrypted to that key (run `strata secret rekey {name}` \
                         after a node's key changed)"
                    ),
                });
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let mut plain = Vec::new();
        (&mut reader)
            .take(SECRET_LIMIT + 1)
            .read_to_end(&mut plain)
            .map_err(|e| corrupt(e.to_string()))?;
        if plain.len() as u64 > SECRET_LIMIT {
            return Err(corrupt("larger than 1 MiB".into()));
        }
        String::from_utf8(plain)
            .map(SecretValue::new)
            .map_err(|_| SecretError::NotText(name.to_string()))
    }
}
