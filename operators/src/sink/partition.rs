//! Partition fields of table sinks (`partition_by:`), checked when a job is planned.

use weir_engine::data::{DataType, Schema};

/// How a partition value is derived from its column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionTransform {
    /// The value itself.
    Identity,
    /// Year of a timestamp.
    Year,
    /// Month of a timestamp.
    Month,
    /// Day of a timestamp.
    Day,
    /// Hour of a timestamp.
    Hour,
    /// Hash bucket out of N.
    Bucket(u32),
    /// Truncated to a width.
    Truncate(u32),
}

/// One partition field: a transform of a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionField {
    /// The transform.
    pub transform: PartitionTransform,
    /// The source column.
    pub column: String,
}

impl PartitionField {
    /// Parses `day(col)`, `hour(col)`, `month(col)`, `year(col)`, `bucket(N, col)`,
    /// `truncate(W, col)`, `identity(col)` or `col`, checked against the stream's `schema`.
    pub fn parse(text: &str, schema: &Schema) -> Result<PartitionField, String> {
        let text = text.trim();
        let expected = "expected day(col), hour(col), month(col), year(col), bucket(N, col), \
                        truncate(W, col), identity(col) or a column";
        let (transform, column) = match text.strip_suffix(')').and_then(|t| t.split_once('(')) {
            None => (PartitionTransform::Identity, text),
            Some((name, args)) => {
                let args: Vec<&str> = args.split(',').map(str::trim).collect();
                let number = |n: &str, what: &str| {
                    n.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("`{text}`: {what} `{n}` is not a positive number"))
                };
                match (name.trim(), args.as_slice()) {
                    ("identity", [c]) => (PartitionTransform::Identity, *c),
                    ("year", [c]) => (PartitionTransform::Year, *c),
                    ("month", [c]) => (PartitionTransform::Month, *c),
                    ("day", [c]) => (PartitionTransform::Day, *c),
                    ("hour", [c]) => (PartitionTransform::Hour, *c),
                    ("bucket", [n, c]) => {
                        (PartitionTransform::Bucket(number(n, "bucket count")?), *c)
                    }
                    ("truncate", [w, c]) => (
                        PartitionTransform::Truncate(number(w, "truncate width")?),
                        *c,
                    ),
                    _ => return Err(format!("`{text}`: {expected}")),
                }
            }
        };
        let Some(index) = schema.index_of(column) else {
            return Err(format!("`{text}`: the stream has no column `{column}`"));
        };
        let dtype = schema.fields()[index].dtype;
        let fits = match transform {
            PartitionTransform::Year
            | PartitionTransform::Month
            | PartitionTransform::Day
            | PartitionTransform::Hour => dtype == DataType::Timestamp,
            PartitionTransform::Truncate(_) => {
                matches!(dtype, DataType::String | DataType::Int)
            }
            PartitionTransform::Bucket(_) => dtype != DataType::Float && dtype != DataType::Bool,
            PartitionTransform::Identity => dtype != DataType::Float,
        };
        if !fits {
            return Err(format!(
                "`{text}`: column `{column}` is {dtype}, which this transform does not take"
            ));
        }
        Ok(PartitionField {
            transform,
            column: column.to_string(),
        })
    }

    /// The partition field's name in the table (`window_end_day`, `user_id_bucket`).
    pub fn name(&self) -> String {
        let c = &self.column;
        match self.transform {
            PartitionTransform::Identity => c.clone(),
            PartitionTransform::Year => format!("{c}_year"),
            PartitionTransform::Month => format!("{c}_month"),
            PartitionTransform::Day => format!("{c}_day"),
            PartitionTransform::Hour => format!("{c}_hour"),
            PartitionTransform::Bucket(_) => format!("{c}_bucket"),
            PartitionTransform::Truncate(_) => format!("{c}_trunc"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::data::Field;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("user_id", DataType::String),
            Field::new("amount", DataType::Float),
            Field::new("window_end", DataType::Timestamp),
        ])
        .unwrap()
    }

    #[test]
    fn fields_parse_and_are_checked_against_the_schema() {
        let s = schema();
        let day = PartitionField::parse("day(window_end)", &s).unwrap();
        assert_eq!(day.transform, PartitionTransform::Day);
        assert_eq!(day.name(), "window_end_day");
        let bucket = PartitionField::parse("bucket(16, user_id)", &s).unwrap();
        assert_eq!(bucket.transform, PartitionTransform::Bucket(16));
        assert_eq!(
            PartitionField::parse("user_id", &s).unwrap().transform,
            PartitionTransform::Identity
        );
        for (text, message) in [
            ("weekly(window_end)", "expected day(col)"),
            ("bucket(x, user_id)", "`x` is not a positive number"),
            ("day(nope)", "no column `nope`"),
            ("day(user_id)", "column `user_id` is string"),
            ("amount", "column `amount` is float"),
        ] {
            let e = PartitionField::parse(text, &s).unwrap_err();
            assert!(e.contains(message), "{text}: {e}");
        }
    }
}
