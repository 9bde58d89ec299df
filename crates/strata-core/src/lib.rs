//! Site loading and validation, parameter layering with provenance, the module graph,
//! template rendering, and the plan (desired state against what the target holds).
//! No terminal, no environment variables, no network.

mod catalog;
mod error;
mod graph;
mod module;
mod params;
mod plan;
mod render;
pub mod scaffold;
mod site;
mod tomlfile;
mod users;

pub use catalog::{
    Catalog, CompileOptions, DEFAULT_TIMEOUT, HardwareLayer, ModuleRun, Resource, ResourceKind,
    ScriptDecl, compile,
};
pub use error::{SiteError, SiteErrors};
pub use params::{ParamTree, Source};
pub use plan::{PlanError, plan};
pub use site::{NodeInfo, SandboxSettings, Site};
pub use users::UserDb;
