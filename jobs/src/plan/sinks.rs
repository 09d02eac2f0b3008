//! Sinks: where rows go.

use std::path::PathBuf;

use super::check::timestamp_format;
use super::{SinkOp, SinkPlan};
use crate::error::SpecError;
use crate::spec::SinkSpec;

pub(super) fn plan_sink(
    name: &str,
    s: &SinkSpec,
    columns: Vec<String>,
    errors: &mut Vec<SpecError>,
) -> Option<SinkPlan> {
    let path = format!("sinks.{name}");
    let before = errors.len();
    let format = timestamp_format(
        &format!("{path}.timestamp_format"),
        &s.timestamp_format,
        errors,
    );
    let op = match s.kind.as_str() {
        "file" => match &s.path {
            Some(p) => SinkOp::File {
                path: PathBuf::from(p),
                format,
            },
            None => {
                errors.push(SpecError::new(
                    format!("{path}.path"),
                    "required for file sinks",
                ));
                return None;
            }
        },
        "stdout" | "blackhole" => {
            if s.path.is_some() {
                errors.push(SpecError::new(
                    format!("{path}.path"),
                    format!("not a field of a `{}` sink", s.kind),
                ));
            }
            if s.kind == "stdout" {
                SinkOp::Stdout { format }
            } else {
                SinkOp::Null
            }
        }
        other => {
            errors.push(SpecError::new(
                format!("{path}.kind"),
                format!("unknown sink kind `{other}`: expected file, stdout or blackhole"),
            ));
            return None;
        }
    };
    (errors.len() == before).then(|| SinkPlan {
        name: name.to_string(),
        input: s.from.clone(),
        columns,
        op,
    })
}
