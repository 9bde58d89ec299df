//! Where an agent pulls from: published storage (`--from file://…`) or a server
//! (`--server https://…`), behind one trait, so that what is fetched is verified and
//! applied by the same code (`commands/agent.rs`) whichever it came from.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use strata_bucket::{S3Settings, Storage, blob_key, manifest_key, timestamp_key};
use strata_server::client::{Client, parse_poll};
use strata_server::inventory::RunReport;
use strata_snapshot::{KeyId, KeyPair, MAX_METADATA, Role, RootSet};

use crate::node::Refusal;

/// What one poll learns first: the root chain, the environment's timestamp and the
/// node's assignment, all still to be verified.
#[derive(Debug, Default)]
pub struct Head {
    /// The root chain.
    pub roots: RootSet,
    /// The environment's signed timestamp, if anything is published for it.
    pub timestamp: Option<Vec<u8>>,
    /// The node's signed assignment, if the source gives one.
    pub assignment: Option<Vec<u8>>,
    /// The environment the source answered for (a server decides a node's).
    pub environment: Option<String>,
    /// The source said nothing changed since the last poll (HTTP 304).
    pub unchanged: bool,
}

/// A source of published snapshots.
pub trait Source {
    /// Where it is, for messages.
    fn describe(&self) -> String;
    /// The root chain, the timestamp of `env` and the node's assignment.
    fn head(&self, env: &str) -> Result<Head, Refusal>;
    /// A manifest of `env`.
    fn manifest(&self, env: &str, version: u64) -> Result<Option<Vec<u8>>, Refusal>;
    /// A blob, at most `size` bytes.
    fn blob(&self, hash: &str, size: u64) -> Result<Option<Vec<u8>>, Refusal>;
    /// The node's own key, which its assignment must name.
    fn node_key(&self) -> Option<KeyId> {
        None
    }
    /// Posts a run's report, where the source takes them.
    fn report(&self, _report: &RunReport) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Published storage: a directory laid out as a bucket.
#[derive(Debug)]
pub struct StorageSource {
    /// The URL it was opened from.
    pub url: String,
    /// The bucket.
    pub store: Box<dyn Storage>,
    /// The node's own key, when it enrolled: its assignment is read from the bucket.
    pub node_key: Option<KeyId>,
}

impl Source for StorageSource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn head(&self, env: &str) -> Result<Head, Refusal> {
        let mut chain = Vec::new();
        while let Some(r) = self.store.get(
            &format!("root/{}.json", chain.len() + 1),
            MAX_METADATA as u64,
        )? {
            chain.push(r);
        }
        // A classified node's assignment names its environment (checked against the
        // manifest once both are verified).
        let assignment = match &self.node_key {
            Some(k) => self.store.get(
                &crate::commands::publish_assign::assignment_key(&k.0),
                MAX_METADATA as u64,
            )?,
            None => None,
        };
        let environment = assignment.as_deref().and_then(assigned_environment);
        let env = environment.as_deref().unwrap_or(env);
        Ok(Head {
            roots: RootSet(chain),
            timestamp: self.store.get(&timestamp_key(env), MAX_METADATA as u64)?,
            assignment,
            environment,
            ..Head::default()
        })
    }

    fn node_key(&self) -> Option<KeyId> {
        self.node_key.clone()
    }

    fn manifest(&self, env: &str, version: u64) -> Result<Option<Vec<u8>>, Refusal> {
        Ok(self.store.get(
            &manifest_key(env, version),
            strata_snapshot::MAX_MANIFEST as u64,
        )?)
    }

    fn blob(&self, hash: &str, size: u64) -> Result<Option<Vec<u8>>, Refusal> {
        Ok(self.store.get(&blob_key(hash), size)?)
    }
}

/// The environment an assignment names, read before it is verified (only to know which
/// environment to fetch: the verified assignment must name the verified manifest's).
fn assigned_environment(bytes: &[u8]) -> Option<String> {
    let opened = strata_snapshot::envelope::open(
        bytes,
        "the assignment",
        strata_snapshot::ASSIGNMENT_TYPE,
        MAX_METADATA,
    )
    .ok()?;
    let a: strata_snapshot::Assignment = serde_json::from_slice(opened.payload()).ok()?;
    let e = a.environment;
    let valid = !e.is_empty()
        && e.len() <= 253
        && !e.starts_with('.')
        && e.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid.then_some(e)
}

/// What `enroll` leaves on the node for its agent: `<root>/var/lib/strata/keys/`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The server's URL.
    pub server: String,
    /// The node's name, bound on the server to its key.
    pub node: String,
    /// The site's root fingerprint to pin on first contact (none: trust on first use).
    pub root_key: Option<String>,
    /// The CA file that checks the server's certificate, if not the system's roots.
    pub ca: Option<PathBuf>,
    /// Enrolled with `--plain-http` (the netboot initrd, on a provisioning network): the
    /// agent of the machine it installs talks plain HTTP to the same server (what it
    /// fetches is signed, its requests too).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_http: bool,
}

impl Enrollment {
    /// The enrollment of the node whose keys are in `keys`.
    pub fn load(keys: &std::path::Path) -> anyhow::Result<(Enrollment, KeyPair)> {
        let path = keys.join("enrollment.json");
        if !strata_fs::exists(&path) {
            return Err(anyhow::anyhow!(
                "{} is missing: enroll this node first (strata enroll --server URL --token-file F)",
                path.display()
            ));
        }
        let bytes = strata_fs::read_sized_file(&path, MAX_METADATA)?;
        let e: Enrollment = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let key = KeyPair::load(&keys.join("node.key"), Role::Node)?;
        Ok((e, key))
    }

    /// A client of the server, signing with the node's `key`, over plain HTTP when the
    /// node enrolled so.
    pub fn client(&self, server: &str, key: KeyPair) -> anyhow::Result<Client> {
        Ok(if self.plain_http {
            Client::new_plain_http(server, key)?
        } else {
            Client::new(server, key, self.ca.as_deref())?
        })
    }
}

/// A server, as the enrolled node it polls for.
#[derive(Debug)]
pub struct ServerSource {
    /// The signing client.
    pub client: Client,
    /// The node's name.
    pub node: String,
    /// The node's key id.
    pub key_id: KeyId,
    /// Where the last poll's answer and its ETag are kept.
    pub cache: PathBuf,
}

impl ServerSource {
    fn cached(&self) -> Option<(String, Vec<u8>)> {
        let etag = strata_fs::read_sized_file(&self.cache.join("poll.etag"), 256).ok()?;
        let body = strata_fs::read_sized_file(&self.cache.join("poll.json"), 8 << 20).ok()?;
        Some((String::from_utf8(etag).ok()?, body))
    }
}

impl Source for ServerSource {
    fn describe(&self) -> String {
        self.client.base().to_string()
    }

    fn head(&self, _env: &str) -> Result<Head, Refusal> {
        let cached = self.cached();
        let etag = cached.as_ref().map(|(e, _)| e.as_str());
        let (body, unchanged) = match self.client.poll(&self.node, etag)? {
            None => (cached.map(|(_, b)| b).unwrap_or_default(), true),
            Some((body, etag)) => {
                strata_fs::create_dir_all(&self.cache)?;
                strata_fs::write_atomic(&self.cache.join("poll.json"), &body)?;
                strata_fs::write_atomic(
                    &self.cache.join("poll.etag"),
                    etag.unwrap_or_default().as_bytes(),
                )?;
                (body, false)
            }
        };
        let answer = parse_poll(&body).map_err(Refusal::new)?;
        let decode = |b: &str| {
            STANDARD
                .decode(b)
                .map_err(|e| Refusal::new(format!("the server's poll answer: {e}")))
        };
        Ok(Head {
            roots: RootSet(
                answer
                    .roots
                    .iter()
                    .map(|r| decode(r))
                    .collect::<Result<_, _>>()?,
            ),
            timestamp: answer.timestamp.as_deref().map(decode).transpose()?,
            assignment: answer.assignment.as_deref().map(decode).transpose()?,
            environment: Some(answer.environment),
            unchanged,
        })
    }

    fn manifest(&self, _env: &str, version: u64) -> Result<Option<Vec<u8>>, Refusal> {
        let path = format!("/v1/nodes/{}/manifests/{version}", self.node);
        Ok(self
            .client
            .fetch(&path, strata_snapshot::MAX_MANIFEST as u64)?)
    }

    fn blob(&self, hash: &str, size: u64) -> Result<Option<Vec<u8>>, Refusal> {
        let path = format!("/v1/nodes/{}/blobs/{hash}", self.node);
        Ok(self.client.fetch(&path, size)?)
    }

    fn node_key(&self) -> Option<KeyId> {
        Some(self.key_id.clone())
    }

    fn report(&self, report: &RunReport) -> Result<(), Refusal> {
        Ok(self.client.report(&self.node, report)?)
    }
}

/// Where `publish` writes: a server (`http(s)://`, every request signed with the
/// operator's signing key `key`) or storage.
pub fn publish_target(
    url: &str,
    key: &KeyPair,
    ca: Option<&std::path::Path>,
    s3: &S3Settings,
) -> anyhow::Result<Box<dyn Storage>> {
    if url.starts_with("https://") || url.starts_with("http://") {
        let client = Client::new(url, key.clone(), ca)?;
        return Ok(Box::new(strata_server::client::Remote(client)));
    }
    Ok(strata_bucket::open(url, s3)?)
}
