//! The data model: schemas, compact rows, timestamps and the JSON codec.

pub mod json;
pub mod row;
pub mod schema;
pub mod time;

pub use json::{encode_row, JsonDecoder, TimestampFormat};
pub use row::{Row, RowBuilder, Value};
pub use schema::{DataType, Field, Schema, SchemaRef};
