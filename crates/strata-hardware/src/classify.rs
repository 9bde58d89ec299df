//! Classifying a machine: the first profile its facts match, with room left, gets it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::matcher::{Bindings, Element, Outcome, match_spec};
use crate::pools::PoolEntry;
use crate::profiles::{Hardware, Profile};
use crate::store::{Allocate, Enrollment, Store, StoreError};

/// What a machine gets.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    /// The machine's identity (its `$$` variables, else its DMI serial, else its first MAC).
    pub machine: String,
    /// The profile.
    pub profile: String,
    /// The profile's role.
    pub role: Option<String>,
    /// Captured variables.
    pub vars: Bindings,
    /// Pool → the entry allocated.
    pub pools: BTreeMap<String, PoolEntry>,
}

impl Classification {
    /// The `hw.*` parameters: captured variables at `hw.<var>`, pool entries at
    /// `hw.<pool>.<key>`.
    pub fn hw_params(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut hw: serde_json::Map<String, serde_json::Value> = self
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        for (pool, entry) in &self.pools {
            hw.insert(
                pool.clone(),
                serde_json::to_value(entry).unwrap_or_default(),
            );
        }
        hw
    }
}

/// Why a profile did or did not take the machine.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The profile.
    pub profile: String,
    /// `matched`, or why not.
    pub verdict: String,
}

/// Why no profile took the machine, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// No profile matched (with room left).
    #[error("no hardware profile matches this machine:\n{}", .0.iter().map(|e| format!("  {}: {}", e.profile, e.verdict)).collect::<Vec<_>>().join("\n"))]
    NoProfile(Vec<Explanation>),
    /// The machine has no identity to allocate by.
    #[error(
        "the facts have no identity for this machine: no $$ variable, system serial or network MAC"
    )]
    NoIdentity,
    /// A classification made elsewhere (a signed assignment) does not hold on this machine.
    #[error("the assigned hardware profile does not hold here: {0}")]
    Unconfirmed(String),
    /// Allocation failed; nothing was allocated.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn verdict(p: &Profile, o: &Outcome) -> String {
    match o {
        Outcome::Matched(_) => "matched".into(),
        Outcome::NoTuple { index } => format!("entry {} {:?} matches no fact", index + 1, p.text[*index]),
        Outcome::NoConsistentChoice => "each entry matches some fact, but not all at once (variables disagree or a fact would be used twice)".into(),
        Outcome::TooComplex(n) => format!("gave up after {n} attempts: the spec is too ambiguous"),
    }
}

/// Every profile's verdict, in order (no allocation).
pub fn explain(hw: &Hardware, tuples: &[[String; 4]]) -> Vec<Explanation> {
    hw.profiles
        .iter()
        .map(|p| Explanation {
            profile: p.name.clone(),
            verdict: verdict(p, &match_spec(&p.spec, tuples)),
        })
        .collect()
}

fn identity(
    p: &Profile,
    vars: &Bindings,
    tuples: &[[String; 4]],
) -> Result<(String, Bindings), ClassifyError> {
    let ids: Bindings = p
        .spec
        .iter()
        .flatten()
        .filter_map(|e| match e {
            Element::Var {
                name,
                identity: true,
                ..
            } => vars.get(name).map(|v| (name.clone(), v.clone())),
            _ => None,
        })
        .collect();
    if !ids.is_empty() {
        return Ok((
            ids.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            ids,
        ));
    }
    let find = |c: &str, a: &str| {
        tuples
            .iter()
            .find(|t| t[0] == c && t[2] == a && !t[3].is_empty())
            .map(|t| t[3].clone())
    };
    find("system", "serial")
        .map(|s| format!("serial={s}"))
        .or_else(|| find("network", "serial").map(|m| format!("mac={m}")))
        .map(|m| (m, ids))
        .ok_or(ClassifyError::NoIdentity)
}

/// Classifies a machine and allocates its pool entries (once: a machine that holds an
/// allocation gets the same one back). With [`Allocate::DryRun`] nothing is allocated:
/// the answer is what an enrolment would give.
pub fn classify(
    hw: &Hardware,
    tuples: &[[String; 4]],
    store: &mut dyn Store,
    allocate: Allocate,
) -> Result<(Classification, Vec<Explanation>), ClassifyError> {
    let mut explained = Vec::new();
    for p in &hw.profiles {
        let outcome = match_spec(&p.spec, tuples);
        let Outcome::Matched(vars) = &outcome else {
            explained.push(Explanation {
                profile: p.name.clone(),
                verdict: verdict(p, &outcome),
            });
            continue;
        };
        let (machine, ids) = identity(p, vars, tuples)?;
        let pools: Vec<(&str, &[PoolEntry])> = p
            .pools
            .iter()
            .map(|name| (name.as_str(), hw.pools[name].as_slice()))
            .collect();
        let req = Enrollment {
            machine: &machine,
            profile: &p.name,
            max: p.max,
            identity: &ids,
            pools,
        };
        match store.enroll(&req, allocate) {
            Ok(Some(alloc)) => {
                explained.push(Explanation {
                    profile: p.name.clone(),
                    verdict: "matched".into(),
                });
                let pools = alloc
                    .entries
                    .into_iter()
                    .map(|(pool, (_, e))| (pool, e))
                    .collect();
                return Ok((
                    Classification {
                        machine,
                        profile: p.name.clone(),
                        role: p.role.clone(),
                        vars: vars.clone(),
                        pools,
                    },
                    explained,
                ));
            }
            Ok(None) => explained.push(Explanation {
                profile: p.name.clone(),
                verdict: format!(
                    "matched, but full: max {} machines hold it",
                    p.max.unwrap_or(0)
                ),
            }),
            Err(StoreError::Holds { .. }) => explained.push(Explanation {
                profile: p.name.clone(),
                verdict: "matched, but the machine holds another profile".into(),
            }),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ClassifyError::NoProfile(explained))
}

/// Checks a classification made elsewhere (the operator's, sent in a signed assignment)
/// against this machine's own facts and the site's profiles and pools: its profile is in
/// the site with the same role, its spec matches these facts, and each pool entry is one
/// of the profile's pools' entries. Nothing is allocated.
pub fn confirm(
    hw: &Hardware,
    tuples: &[[String; 4]],
    c: &Classification,
) -> Result<(), ClassifyError> {
    let wrong = |why: String| Err(ClassifyError::Unconfirmed(why));
    let Some(p) = hw.profiles.iter().find(|p| p.name == c.profile) else {
        return wrong(format!("the site has no profile {:?}", c.profile));
    };
    if p.role != c.role {
        return wrong(format!(
            "profile {:?} has role {:?} in the site, not {:?}",
            p.name, p.role, c.role
        ));
    }
    let outcome = match_spec(&p.spec, tuples);
    if !matches!(outcome, Outcome::Matched(_)) {
        return wrong(format!(
            "this machine's facts do not match profile {:?}: {}",
            p.name,
            verdict(p, &outcome)
        ));
    }
    for (pool, entry) in &c.pools {
        if !p.pools.contains(pool) {
            return wrong(format!(
                "pool {pool:?} is not one of profile {:?}'s",
                p.name
            ));
        }
        if !hw
            .pools
            .get(pool)
            .is_some_and(|entries| entries.contains(entry))
        {
            return wrong(format!(
                "the entry of pool {pool:?} is not in the site's pool"
            ));
        }
    }
    Ok(())
}
