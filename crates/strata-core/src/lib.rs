//! Site loading and validation, parameter layering with provenance, the module graph,
//! template rendering, and the plan (desired state against what the target holds).
//! No terminal, no environment variables, no network.

mod ansible;
mod budget;
mod builder;
pub mod capture;
mod catalog;
mod compile;
mod compiled;
mod diff;
mod download;
mod error;
mod fleet;
mod graph;
mod hooks;
pub mod import;
mod load;
mod module;
mod par;
mod params;
mod plan;
mod purge;
mod render;
mod resources;
mod revision;
pub mod scaffold;
mod secret;
mod settings;
mod site;
mod tomlfile;
mod typechange;
mod versions;
mod yamlfile;

pub use budget::{RenderAllocator, TEMPLATE_MEMORY};

/// The unit tests run with the memory backstop, as the `strata` binary does.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: RenderAllocator = RenderAllocator;
pub use catalog::{
    Catalog, DEFAULT_TIMEOUT, ModuleRun, Resource, ResourceKind, ScriptDecl, ScriptSecret,
};
pub use compile::{CompileOptions, HardwareLayer, compile};
pub use compiled::{Compiled, Lazy};
pub use diff::{DIFF_LIMIT, diff_text};
pub use error::{SiteError, SiteErrors};
pub use fleet::{FleetSettings, NodeKeys, NodeReach, SecretsSettings, SshSettings};
pub use hooks::{Hook, HookEvent, hooks};
pub use params::{ParamTree, Source};
pub use plan::{PlanError, plan};
pub use purge::Purge;
pub use render::{
    Dialect, Includes, Setup, render_template, render_template_as, render_template_with,
};
pub use resources::{Declared, Group, Line, Package, Service, User};
pub use revision::{DIRTY_SUFFIX, Revision};
pub use secret::{SecretSource, SecretValue, secret_variable, valid_secret_name};
pub use settings::{Branch, HookSettings, KeepGenerations, SandboxSettings, Size, StateSettings};
pub use site::{NodeInfo, Site};
pub use strata_fs::UserDb;
pub use typechange::{Shadows, has_below};
