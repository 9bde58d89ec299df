//! The first stage: the site loaded, the node's facts read and classified against the
//! site's hardware profiles, and the node's catalog compiled (with the cache of what the
//! last compile learnt of the site's files). Also the two commands that stop here:
//! `check` and `params`.

use std::path::{Path, PathBuf};

use strata_core::{
    Catalog, CompileOptions, Compiled, HardwareLayer, ParamTree, Site, SiteError, SiteErrors,
};
use strata_fs::Meter;
use strata_hardware::{Allocate, ClassifyError, Hardware};
use strata_types::{Hash, NodeName, Step};

use crate::{Classify, EngineError, Request};

/// Loads the site and compiles the request's node, classifying its hardware first (with
/// [`Allocate::Commit`], keeping what that allocates). Each part is a step. Also the
/// version of each secret the compile read (see `Generation::secrets`).
pub(crate) fn compile(
    req: &Request,
    allocate: Allocate,
    steps: &mut Vec<Step>,
) -> Result<(Site, Catalog, Versions), EngineError> {
    // Before anything is classified or allocated for it.
    let node = NodeName::parse(&req.node).map_err(SiteErrors::from)?;
    let meter = Meter::start();
    let site = Site::open(&req.site)?;
    steps.push(meter.finish("load"));
    let meter = Meter::start();
    let facts = node_facts(req)?;
    let tuples = facts.as_ref().map(|(_, t)| t.as_slice());
    let hardware = hardware_layer(&site, req, tuples, allocate)?;
    if hardware.is_some() {
        steps.push(meter.finish("classify"));
    }
    let meter = Meter::start();
    let compiled = compiled_path(&req.cache, &site.dir, &req.node);
    let secrets = std::sync::Arc::new(strata_secrets::NodeSource::new(
        &site.dir, &req.root, &req.node,
    ));
    let opts = CompileOptions {
        sets: req.sets.clone(),
        facts: match facts {
            Some((serde_json::Value::Object(map), _)) => map,
            _ => Default::default(),
        },
        hardware,
        known: Some(match req.checksum {
            true => Compiled::default(),
            false => Compiled::parse(&strata_fs::read(&compiled).unwrap_or_default()),
        }),
        // The node decrypts its own secrets, with its own key.
        secrets: Some(secrets.clone()),
    };
    let mut catalog = strata_core::compile(&site, &node, &opts)?;
    // A cache: when it cannot be saved, the next compile reads every file again.
    if let Some(c) = catalog.compiled.take() {
        let _ = strata_fs::write_atomic(&compiled, &c.write());
    }
    steps.push(meter.finish_with("compile", std::mem::take(&mut catalog.steps)));
    Ok((site, catalog, secrets.versions()))
}

/// Secrets' versions by name.
pub(crate) type Versions = std::collections::BTreeMap<String, String>;

/// Where what compiles of `node` learnt of the site's files is kept (see
/// [`strata_core::Compiled`]): in the cache directory, one file per site and node.
fn compiled_path(cache: &Path, site: &Path, node: &str) -> PathBuf {
    let mut key = site.as_os_str().as_encoded_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(node.as_bytes());
    let name = Hash::of(&key).to_string();
    cache.join("compiled").join(&name[..32])
}

/// The node's facts, when known: `--facts`, or live facts when the node is this machine;
/// as templates see them and as tuples.
type NodeFacts = (serde_json::Value, Vec<strata_facts::Tuple>);

fn node_facts(req: &Request) -> Result<Option<NodeFacts>, EngineError> {
    match &req.facts {
        Some(f) => Ok(Some(strata_facts::read_file_with_view(f)?)),
        None if req.local => {
            let (facts, _) = strata_facts::gather(Path::new("/"));
            let tuples = strata_facts::to_tuples(&facts);
            Ok(Some((
                serde_json::to_value(facts).unwrap_or_default(),
                tuples,
            )))
        }
        None => Ok(None),
    }
}

/// The site's `hardware/` profiles and pools.
fn hardware(site: &Site) -> Result<Hardware, EngineError> {
    Hardware::load(&site.dir)
        .map_err(|errs| SiteErrors(errs.into_iter().map(SiteError::new).collect()).into())
}

/// Classifies the node against the site's hardware profiles, when the site has some and
/// the node's facts are known, or confirms the classification it was assigned. A plan
/// ([`Allocate::DryRun`]) allocates nothing.
fn hardware_layer(
    site: &Site,
    req: &Request,
    tuples: Option<&[strata_facts::Tuple]>,
    allocate: Allocate,
) -> Result<Option<HardwareLayer>, EngineError> {
    let hw = hardware(site)?;
    let Some(tuples) = tuples.filter(|_| !hw.profiles.is_empty()) else {
        return Ok(None);
    };
    let known = || NodeName::parse(&req.node).is_ok_and(|n| site.knows_node(&n));
    let classified = match &req.classify {
        Classify::Here => {
            let default = site.dir.join(".strata/state.db");
            let db = req
                .db
                .clone()
                .unwrap_or_else(|| default.display().to_string());
            let mut store =
                strata_hardware::open_for(&db, allocate).map_err(ClassifyError::from)?;
            match strata_hardware::classify(&hw, tuples, store.as_mut(), allocate) {
                Ok((c, _)) => c,
                // A node the site describes itself needs no profile.
                Err(ClassifyError::NoProfile(_)) if known() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Classify::Assigned(Some(c)) => {
            strata_hardware::confirm(&hw, tuples, c)?;
            c.clone()
        }
        Classify::Assigned(None) if known() => return Ok(None),
        Classify::Assigned(None) => return Err(EngineError::Unassigned),
    };
    Ok(Some(HardwareLayer {
        params: classified.hw_params(),
        profile: classified.profile,
        role: classified.role,
    }))
}

/// One node's result in `check`.
#[derive(Debug)]
pub struct NodeCheck {
    /// The node.
    pub node: String,
    /// How many paths it declares, or what is wrong.
    pub result: Result<usize, SiteErrors>,
}

/// Validates the whole site: opens it, then compiles every node, collecting every error.
pub fn check(site: &Path) -> Result<Vec<NodeCheck>, EngineError> {
    let site = Site::open(site)?;
    let missing: Vec<SiteError> = hardware(&site)?
        .profiles
        .iter()
        .filter_map(|p| {
            let role = p.role.as_ref()?;
            let err = site.check_role(role).err()?;
            Some(SiteError::in_file(
                "hardware/profiles.toml",
                format!("profile `{}`: {err}", p.name),
            ))
        })
        .collect();
    if !missing.is_empty() {
        return Err(SiteErrors(missing).into());
    }
    let stale = stale_secrets(&site);
    if !stale.is_empty() {
        return Err(SiteErrors(stale).into());
    }
    let mut out = Vec::new();
    for node in site.nodes()? {
        let opts = CompileOptions {
            secrets: Some(std::sync::Arc::new(strata_secrets::CheckSource::new(
                &site.dir,
                node.as_str(),
            ))),
            ..Default::default()
        };
        let result = strata_core::compile(&site, &node, &opts).map(|c| c.resources.len());
        out.push(NodeCheck {
            node: node.into(),
            result,
        });
    }
    if out.is_empty() {
        return Err(SiteErrors::from(SiteError::new(
            "the site has no nodes (nodes/*.toml or groups/*.toml)",
        ))
        .into());
    }
    Ok(out)
}

/// The site's secrets whose recipients are no longer who their selectors name (a node
/// joined or left, a key or `[secrets] admins` changed), or that cannot be resolved:
/// `check`, `push` and `publish` refuse to go on while there is one.
pub fn stale_secrets(site: &Site) -> Vec<SiteError> {
    let files = strata_secrets::SecretFiles::of(&site.dir);
    let names = match files.list() {
        Ok(n) => n,
        Err(e) => return vec![SiteError::new(e.to_string())],
    };
    let mut errors = Vec::new();
    for name in names {
        let toml = strata_secrets::SecretFiles::rel(&name, "toml");
        let diff = files.meta(&name).and_then(|meta| {
            let now = strata_secrets::resolve(site, &meta.to)?;
            Ok(strata_secrets::stale(&meta, &now))
        });
        match diff {
            Ok(d) if d.is_empty() => {}
            Ok(d) => errors.push(
                SiteError::in_file(toml, format!("secret `{name}` has stale recipients: {d}"))
                    .hint(format!("run `strata secret rekey {name}`")),
            ),
            Err(e) => errors.push(SiteError::in_file(toml, format!("secret `{name}`: {e}"))),
        }
    }
    errors
}

/// A node's resolved parameters with their sources.
pub fn params(
    site: &Path,
    node: &str,
    sets: &[(String, String)],
) -> Result<ParamTree, EngineError> {
    let site = Site::open(site)?;
    let opts = CompileOptions {
        sets: sets.to_vec(),
        ..Default::default()
    };
    let node = NodeName::parse(node).map_err(SiteErrors::from)?;
    Ok(strata_core::compile(&site, &node, &opts)?.params)
}
