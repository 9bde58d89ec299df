//! `strata.toml`: the site's settings. `[site]` (its name and default environment),
//! `[sandbox]` (what scripts' sandbox intercepts, ignores and may use), `[state]` (how
//! much history a node keeps); `[fleet]` and `[secrets]` are in fleet.rs.

use serde::Deserialize;

/// `strata.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteToml {
    pub site: SiteSection,
    #[serde(default)]
    pub sandbox: SandboxSettings,
    #[serde(default)]
    pub state: StateSettings,
    #[serde(default)]
    pub fleet: crate::fleet::FleetSettings,
    #[serde(default)]
    pub secrets: crate::fleet::SecretsSettings,
    #[serde(default)]
    pub hooks: HookSettings,
    /// `[environments]`: the git branch each environment is published from.
    #[serde(default)]
    pub environments: std::collections::BTreeMap<String, Branch>,
    /// `[provision]`: read and checked by strata-provision (docs/provision.md).
    #[serde(default)]
    #[allow(dead_code, reason = "only accepted here; strata-provision reads it")]
    pub provision: Option<toml::Table>,
}

/// A git branch an environment is published from (`[environments] production =
/// "main"`): a name git would take for a branch, never an option or a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch(pub String);

impl<'de> Deserialize<'de> for Branch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let bad = name.is_empty()
            || name.starts_with(['-', '/', '.'])
            || name.ends_with(['/', '.'])
            || name.ends_with(".lock")
            || name.contains("..")
            || name.contains("//")
            || name.contains("@{")
            || name
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
        if bad {
            return Err(serde::de::Error::custom(format!(
                "{name:?} is not a git branch name"
            )));
        }
        Ok(Branch(name))
    }
}

/// `[hooks]` in `strata.toml`: how the site's hooks run (docs/drift.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSettings {
    /// How long each hook may run before it is killed with its process group (a number
    /// of seconds or a duration such as `"90s"`; unset: [`HookSettings::DEFAULT_TIMEOUT`]).
    #[serde(default)]
    pub timeout: Option<Timeout>,
}

impl HookSettings {
    /// A hook's time limit when `[hooks] timeout` does not set one.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

    /// Each hook's time limit.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout.map_or(Self::DEFAULT_TIMEOUT, |t| t.0)
    }
}

/// A time limit: a positive number of seconds, or a duration such as `"90s"` or `"5m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub std::time::Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(i64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "timeout must be a number of seconds or a duration such as \"90s\" or \"5m\"",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Seconds(n) if n > 0 => Ok(Timeout(std::time::Duration::from_secs(n as u64))),
            Raw::Text(t) => match humantime::parse_duration(&t) {
                Ok(d) if !d.is_zero() => Ok(Timeout(d)),
                _ => Err(bad()),
            },
            Raw::Seconds(_) => Err(bad()),
        }
    }
}

/// `[state]` in `strata.toml`: what a node keeps of its history.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// How many generations to keep: after each apply, older ones are pruned with the
    /// store objects only they use (unset: strata's default, see docs/state.md).
    #[serde(default)]
    pub keep_generations: Option<KeepGenerations>,
}

/// A number of generations to keep: at least 1, the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepGenerations(pub u64);

impl<'de> Deserialize<'de> for KeepGenerations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i64::deserialize(d)? {
            n if n >= 1 => Ok(KeepGenerations(n as u64)),
            n => Err(serde::de::Error::custom(format!(
                "keep_generations = {n}: keep at least 1 generation (the current one)"
            ))),
        }
    }
}

/// `[sandbox]` in `strata.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    /// Commands intercepted beyond the built-in list (names or absolute paths).
    #[serde(default)]
    pub intercept: Vec<String>,
    /// Globs of paths whose changes by scripts are not reported or committed, beyond the
    /// built-in list.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Processes the scripts of one run may have at once.
    #[serde(default)]
    pub max_processes: Option<u64>,
    /// Memory the scripts of one run may use together (`max_memory = "2G"`).
    #[serde(default)]
    pub max_memory: Option<Size>,
    /// Network or FUSE file systems mounted in the target that scripts see read-only
    /// and whose changes are not observed (else such a mount is refused).
    #[serde(default)]
    pub unobserved: Vec<String>,
}

/// A size in bytes, written as a number of bytes or with a unit: `512M`, `2G`, `2GiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!(
                "`{s}` is not a size: write bytes (1048576) or a number with K, M, G or T (512M, 2G)"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Bytes(b) => Ok(Size(b)),
            Raw::Text(t) => {
                let s = t.trim();
                let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                let (num, unit) = s.split_at(digits);
                let num: u64 = num.parse().map_err(|_| bad(&t))?;
                let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
                    "" => 0,
                    "K" | "k" => 10,
                    "M" | "m" => 20,
                    "G" | "g" => 30,
                    "T" | "t" => 40,
                    _ => return Err(bad(&t)),
                };
                num.checked_mul(1 << shift).map(Size).ok_or_else(|| bad(&t))
            }
        }
    }
}

/// `[site]` in `strata.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SiteSection {
    pub name: String,
    #[serde(default = "production")]
    pub default_environment: String,
}

fn production() -> String {
    "production".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tomlfile;

    #[test]
    fn keep_generations_is_a_number_of_at_least_one() {
        let parse = |keep: &str| {
            let text = format!("[site]\nname = \"s\"\n[state]\nkeep_generations = {keep}\n");
            tomlfile::parse::<SiteToml>("strata.toml", text)
        };
        let kept = parse("20").expect("20 generations").value.state;
        assert_eq!(kept.keep_generations, Some(KeepGenerations(20)));
        for bad in ["0", "-3"] {
            let err = parse(bad).expect_err(bad).to_string();
            assert!(err.starts_with("strata.toml:4:"), "{err}");
            assert!(err.contains("keep at least 1 generation"), "{err}");
        }
        let err = parse("\"all\"").expect_err("a string").to_string();
        assert!(err.starts_with("strata.toml:4:"), "{err}");
    }
}
