//! Redis: the spec-level settings and key templates (always built) and, with the `redis`
//! feature, the sink (`RedisCommitter`): a two-phase sink whose writes carry a version and
//! are applied by small Lua compare-and-set scripts, so that a replay or a recovery never
//! overwrites a newer value with an older one.

#[cfg(feature = "redis")]
mod sink;

use weir_engine::data::time::format_rfc3339;
use weir_engine::data::{Row, Schema, TimestampFormat, Value};

#[cfg(feature = "redis")]
pub use sink::{RedisCommitter, RedisSinkConfig};

/// Whether this build can talk to Redis (the `redis` cargo feature).
pub const ENABLED: bool = cfg!(feature = "redis");

/// How rows become Redis data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisMode {
    /// One hash per key, a field per column (`HSET`).
    Hash,
    /// One string per key: the row as JSON or the `value` expression (`SET`, optional TTL).
    String,
    /// One sorted set per key, `member` scored by `score` (`ZADD`): leaderboards.
    SortedSet,
    /// One stream per key, an entry per row (`XADD`): alerts.
    Stream,
}

impl RedisMode {
    /// Parses `hash`, `string`, `sorted_set` or `stream`.
    pub fn parse(text: &str) -> Result<RedisMode, String> {
        Ok(match text.trim() {
            "hash" => RedisMode::Hash,
            "string" => RedisMode::String,
            "sorted_set" => RedisMode::SortedSet,
            "stream" => RedisMode::Stream,
            other => {
                return Err(format!(
                    "unknown mode `{other}`: expected hash, string, sorted_set or stream"
                ))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Column(usize),
}

/// Text with `{column}` references, filled from each row (`fraud:{user_id}`); `{{` and `}}`
/// are literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

impl std::fmt::Display for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Template {
    /// Parses `text` against the columns of `schema`.
    pub fn parse(text: &str, schema: &Schema) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let name = name.trim();
                    let column = schema.index_of(name).ok_or_else(|| {
                        let columns: Vec<&str> =
                            schema.fields().iter().map(|f| f.name.as_str()).collect();
                        format!(
                            "`{{{name}}}` in `{text}` is not a column (columns: {})",
                            columns.join(", ")
                        )
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Column(column));
                }
                '}' => {
                    return Err(format!(
                        "`{text}`: a `}}` without its `{{` (write `}}}}` for a brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        if text.matches('{').count() > text.matches('}').count() {
            return Err(format!("`{text}`: a `{{` is not closed"));
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if parts.is_empty() {
            return Err("an empty template".into());
        }
        Ok(Template {
            text: text.to_string(),
            parts,
        })
    }

    /// The template with `prefix` (literal text) in front: shadow keys of a replay.
    pub fn prefixed(&self, prefix: &str) -> Template {
        let escaped = prefix.replace('{', "{{").replace('}', "}}");
        let mut parts = vec![Part::Text(prefix.to_string())];
        parts.extend(self.parts.iter().cloned());
        Template {
            text: format!("{escaped}{}", self.text),
            parts,
        }
    }

    /// The template filled from `row`.
    pub fn render(&self, row: &Row, format: TimestampFormat) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Column(c) => render_value(&row.get(*c), format, &mut out),
            }
        }
        out
    }
}

/// A value as Redis text: strings as they are, numbers and booleans as JSON writes them,
/// timestamps as the sink's format says, null as the empty string.
pub fn render_value(value: &Value<'_>, format: TimestampFormat, out: &mut String) {
    match value {
        Value::Null => {}
        Value::Str(s) => out.push_str(s),
        Value::Ts(ms) => match format {
            TimestampFormat::Rfc3339 => out.push_str(&format_rfc3339(*ms)),
            TimestampFormat::Millis => out.push_str(&ms.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::data::{DataType, Field};

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("user_id", DataType::String),
            Field::new("n", DataType::Int),
            Field::new("at", DataType::Timestamp),
        ])
        .unwrap()
    }

    #[test]
    fn templates_fill_columns_and_name_unknown_ones() {
        let t = Template::parse("fraud:{user_id}:{ n }:{at}{{x}}", &schema()).unwrap();
        let row = Row::from_values(&[Value::Str("u1".into()), Value::Int(3), Value::Ts(1000)]);
        assert_eq!(
            t.render(&row, TimestampFormat::Rfc3339),
            "fraud:u1:3:1970-01-01T00:00:01.000Z{x}"
        );
        assert_eq!(
            t.render(&row, TimestampFormat::Millis),
            "fraud:u1:3:1000{x}"
        );
        let err = Template::parse("fraud:{user}", &schema()).unwrap_err();
        assert!(
            err.contains("`{user}`") && err.contains("user_id, n, at"),
            "{err}"
        );
        assert!(Template::parse("a{user_id", &schema()).is_err());
        assert!(Template::parse("a}b", &schema()).is_err());
        assert!(RedisMode::parse("list").unwrap_err().contains("sorted_set"));
    }
}
