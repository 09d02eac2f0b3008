//! Schemas: the named, typed columns of a stream, known when a job is planned.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int,
    /// 64-bit IEEE float.
    Float,
    /// true / false.
    Bool,
    /// Milliseconds since the Unix epoch (UTC).
    Timestamp,
}

impl DataType {
    /// The spelling used in job specs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Int => "int",
            DataType::Float => "float",
            DataType::Bool => "bool",
            DataType::Timestamp => "timestamp",
        }
    }

    /// Parses a spec spelling (`string`, `int`, `float`, `bool`, `timestamp` and common aliases).
    pub fn parse(text: &str) -> Option<DataType> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "text" | "varchar" => DataType::String,
            "int" | "integer" | "long" | "bigint" | "i64" => DataType::Int,
            "float" | "double" | "real" | "f64" => DataType::Float,
            "bool" | "boolean" => DataType::Bool,
            "timestamp" | "ts" | "datetime" => DataType::Timestamp,
            _ => return None,
        })
    }

    /// True for int and float.
    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Int | DataType::Float)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Column name, unique within its schema.
    pub name: String,
    /// Column type.
    pub dtype: DataType,
    /// Whether the column may be null (missing in the input).
    pub nullable: bool,
}

impl Field {
    /// A nullable column.
    pub fn new(name: impl Into<String>, dtype: DataType) -> Self {
        Field {
            name: name.into(),
            dtype,
            nullable: true,
        }
    }

    /// A column that must always have a value.
    pub fn required(name: impl Into<String>, dtype: DataType) -> Self {
        Field {
            name: name.into(),
            dtype,
            nullable: false,
        }
    }
}

/// An ordered list of uniquely named columns.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    fields: Vec<Field>,
    index: HashMap<String, usize>,
}

/// Schemas are shared between operators and threads.
pub type SchemaRef = Arc<Schema>;

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.fields == other.fields
    }
}

impl Schema {
    /// Builds a schema; fails on a repeated column name.
    pub fn new(fields: Vec<Field>) -> Result<Schema, String> {
        let mut index = HashMap::with_capacity(fields.len());
        for (i, field) in fields.iter().enumerate() {
            if index.insert(field.name.clone(), i).is_some() {
                return Err(format!("column `{}` appears twice", field.name));
            }
        }
        if fields.len() > u16::MAX as usize {
            return Err(format!(
                "{} columns; at most {} are supported",
                fields.len(),
                u16::MAX
            ));
        }
        Ok(Schema { fields, index })
    }

    /// The columns, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no columns.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Position of a column by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// A column by position.
    pub fn field(&self, i: usize) -> &Field {
        &self.fields[i]
    }

    /// Column names joined for error messages: `a, b, c`.
    pub fn column_list(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", field.name, field.dtype)?;
            if !field.nullable {
                f.write_str(" not null")?;
            }
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_columns() {
        let err = Schema::new(vec![
            Field::new("a", DataType::Int),
            Field::new("a", DataType::String),
        ])
        .unwrap_err();
        assert!(err.contains("`a`"), "{err}");
    }

    #[test]
    fn parses_type_aliases() {
        assert_eq!(DataType::parse("BIGINT"), Some(DataType::Int));
        assert_eq!(DataType::parse("double"), Some(DataType::Float));
        assert_eq!(DataType::parse("map"), None);
    }
}
