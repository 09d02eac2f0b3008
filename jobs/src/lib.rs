//! The weir job: the spec users write (YAML or JSON), its validation into a typed plan, and
//! the planner that builds the plan as a timely dataflow on every worker.

pub mod build;
mod describe;
pub mod error;
pub mod plan;
pub mod replay;
pub mod run;
pub mod spec;

pub use error::{SpecError, SpecErrors};
pub use plan::Plan;

/// Parses, overrides (`path=value`, like `--set`) and validates a spec.
pub fn load_spec(text: &str, overrides: &[String]) -> Result<Plan, SpecErrors> {
    let mut doc = spec::parse_document(text)?;
    let mut errors = Vec::new();
    for o in overrides {
        if let Err(e) = spec::apply_override(&mut doc, o) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    let spec = spec::from_document(doc)?;
    plan::plan(&spec)
}
