//! Small validators shared by the parts of the plan.

use std::time::Duration;

use weir_engine::data::TimestampFormat;

use crate::error::SpecError;
use crate::spec::Dur;

pub(super) fn check_name(kind: &str, name: &str, errors: &mut Vec<SpecError>) {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        errors.push(SpecError::new(
            format!("{kind}.{name}"),
            "names start with a letter or `_` and contain only letters, digits, `_` and `-` (dots are reserved for `.late` and `.dead_letter`)",
        ));
    }
}

pub(super) fn positive(
    path: &str,
    d: Option<Dur>,
    errors: &mut Vec<SpecError>,
) -> Option<Duration> {
    match d {
        Some(Dur(d)) if d.is_zero() => {
            errors.push(SpecError::new(path, "must be longer than 0"));
            None
        }
        Some(Dur(d)) => Some(d),
        None => None,
    }
}

pub(super) fn fraction(path: &str, v: Option<f64>, errors: &mut Vec<SpecError>) -> f64 {
    match v {
        Some(f) if !(0.0..=1.0).contains(&f) => {
            errors.push(SpecError::new(
                path,
                format!("{f} is not a fraction between 0 and 1"),
            ));
            0.0
        }
        Some(f) => f,
        None => 0.0,
    }
}

pub(super) fn timestamp_format(
    path: &str,
    v: &Option<String>,
    errors: &mut Vec<SpecError>,
) -> TimestampFormat {
    match v.as_deref() {
        None | Some("rfc3339") => TimestampFormat::Rfc3339,
        Some("millis") => TimestampFormat::Millis,
        Some(other) => {
            errors.push(SpecError::new(
                path,
                format!("unknown timestamp format `{other}`: expected rfc3339 or millis"),
            ));
            TimestampFormat::Rfc3339
        }
    }
}

/// Compiles a boolean SQL condition against `schema`.
pub(super) fn condition(
    path: &str,
    text: &str,
    schema: &weir_engine::data::Schema,
    errors: &mut Vec<SpecError>,
) -> Option<weir_operators::expr::Expr> {
    use weir_engine::data::DataType;
    match weir_operators::expr::Expr::compile(text, schema) {
        Ok(e) if matches!(e.dtype(), Some(DataType::Bool) | None) => Some(e),
        Ok(e) => {
            errors.push(SpecError::new(
                path,
                format!(
                    "`{text}` is a {}, expected a boolean condition",
                    e.dtype().map_or("NULL".into(), |t| t.to_string())
                ),
            ));
            None
        }
        Err(e) => {
            errors.push(SpecError::new(path, e.message));
            None
        }
    }
}

/// Resolves key column names against `schema`.
pub(super) fn key_columns(
    path: &str,
    names: &[String],
    schema: &weir_engine::data::Schema,
    errors: &mut Vec<SpecError>,
) -> Option<Vec<usize>> {
    if names.is_empty() {
        errors.push(SpecError::new(path, "needs at least one key column"));
        return None;
    }
    let mut columns = Vec::new();
    for name in names {
        match schema.index_of(name) {
            Some(i) => columns.push(i),
            None => errors.push(SpecError::new(
                path,
                format!(
                    "unknown column `{name}` (columns: {})",
                    schema.column_list()
                ),
            )),
        }
    }
    (columns.len() == names.len()).then_some(columns)
}
