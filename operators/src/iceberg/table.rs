//! The Iceberg table a sink writes: catalog connection, table creation from the step's
//! schema (with an optional partition spec), and rows turned into Arrow batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType as ArrowType, SchemaRef as ArrowSchemaRef, TimeUnit};
use iceberg::spec::{
    NestedField, PrimitiveType, Schema as IcebergSchema, Transform, Type, UnboundPartitionSpec,
};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, TableCreation, TableIdent};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use weir_engine::data::{DataType, Row, Schema, Value};
use weir_engine::io::block_on_for;

use super::storage::StoreStorageFactory;
use crate::sink::{PartitionField, PartitionTransform};

/// Where a sink's table lives and how it is made.
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// `sqlite:///abs/catalog.db` (SQL catalog on a SQLite file) or `http(s)://host/…` (REST).
    pub catalog: String,
    /// The catalog's name: readers (PyIceberg's `SqlCatalog`) must use the same one.
    pub catalog_name: String,
    /// Where new tables go: `file:///abs/warehouse` or `hdfs://namenode:port/path`.
    pub warehouse: Option<String>,
    /// `namespace.table` (namespaces may nest: `a.b.table`).
    pub table: String,
    /// Partition fields of a table the sink creates.
    pub partition_by: Vec<PartitionField>,
    /// Columns of the rows written.
    pub schema: Schema,
    /// Bound on one catalog or storage call.
    pub timeout: Duration,
}

/// Iceberg's form of a partition transform.
fn transform(t: PartitionTransform) -> Transform {
    match t {
        PartitionTransform::Identity => Transform::Identity,
        PartitionTransform::Year => Transform::Year,
        PartitionTransform::Month => Transform::Month,
        PartitionTransform::Day => Transform::Day,
        PartitionTransform::Hour => Transform::Hour,
        PartitionTransform::Bucket(n) => Transform::Bucket(n),
        PartitionTransform::Truncate(w) => Transform::Truncate(w),
    }
}

/// The Iceberg type of a weir column.
fn iceberg_type(t: DataType) -> PrimitiveType {
    match t {
        DataType::String => PrimitiveType::String,
        DataType::Int => PrimitiveType::Long,
        DataType::Float => PrimitiveType::Double,
        DataType::Bool => PrimitiveType::Boolean,
        DataType::Timestamp => PrimitiveType::Timestamptz,
    }
}

/// The Iceberg schema of weir rows (field ids from 1, in column order).
pub fn table_schema(schema: &Schema) -> Result<IcebergSchema, String> {
    let fields = schema.fields().iter().enumerate().map(|(i, f)| {
        let t = Type::Primitive(iceberg_type(f.dtype));
        let id = i as i32 + 1;
        Arc::new(if !f.nullable {
            NestedField::required(id, &f.name, t)
        } else {
            NestedField::optional(id, &f.name, t)
        })
    });
    IcebergSchema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| e.to_string())
}

/// Runs catalog work on the I/O runtime, bounded in time.
pub fn call<T>(
    timeout: Duration,
    what: &str,
    future: impl std::future::Future<Output = iceberg::Result<T>>,
) -> Result<T, String> {
    match block_on_for(timeout, future) {
        Some(result) => result.map_err(|e| format!("{what}: {e}")),
        None => Err(format!("{what}: no answer within {timeout:?}")),
    }
}

/// A connected catalog and the identity of the sink's table in it.
#[derive(Clone)]
pub struct TableHandle {
    /// The catalog.
    pub catalog: Arc<dyn Catalog>,
    /// The table.
    pub ident: TableIdent,
    /// Bound on one call.
    pub timeout: Duration,
}

impl TableHandle {
    /// Connects to the catalog and creates the table (and namespace) when missing. Several
    /// workers may do this at once: losing the race to create is fine.
    pub fn open(config: &TableConfig) -> Result<TableHandle, String> {
        let catalog = connect(config)?;
        let parts: Vec<&str> = config.table.split('.').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(format!(
                "table `{}`: expected namespace.table",
                config.table
            ));
        }
        let ident = TableIdent::from_strs(parts.iter().copied()).map_err(|e| e.to_string())?;
        let handle = TableHandle {
            catalog,
            ident,
            timeout: config.timeout,
        };
        let namespace = handle.ident.namespace().clone();
        let c = &handle.catalog;
        let exists = call(config.timeout, "catalog", c.table_exists(&handle.ident))?;
        if !exists {
            if !call(config.timeout, "catalog", c.namespace_exists(&namespace))? {
                let created = call(
                    config.timeout,
                    "create namespace",
                    c.create_namespace(&namespace, HashMap::new()),
                );
                if created.is_err()
                    && !call(config.timeout, "catalog", c.namespace_exists(&namespace))?
                {
                    created?;
                }
            }
            let creation = creation(config, &parts)?;
            let created = call(
                config.timeout,
                "create table",
                c.create_table(&namespace, creation),
            );
            if created.is_err() && !call(config.timeout, "catalog", c.table_exists(&handle.ident))?
            {
                created?;
            }
        }
        let table = handle.load()?;
        check_columns(&table, &config.schema)?;
        Ok(handle)
    }

    /// The table's current state.
    pub fn load(&self) -> Result<Table, String> {
        call(
            self.timeout,
            &format!("load table {}", self.ident),
            self.catalog.load_table(&self.ident),
        )
    }
}

fn connect(config: &TableConfig) -> Result<Arc<dyn Catalog>, String> {
    let url = config.catalog.trim();
    let factory = Arc::new(StoreStorageFactory);
    let mut props = HashMap::new();
    if let Some(w) = &config.warehouse {
        props.insert("warehouse".to_string(), w.clone());
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if !path.starts_with('/') {
            return Err(format!(
                "catalog `{url}`: expected sqlite:///absolute/path.db"
            ));
        }
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("catalog `{url}`: cannot create {}: {e}", dir.display()))?;
        }
        props.insert("uri".to_string(), format!("sqlite:{path}?mode=rwc"));
        let builder = SqlCatalogBuilder::default()
            .sql_bind_style(SqlBindStyle::QMark)
            .with_storage_factory(factory);
        let catalog = call(config.timeout, &format!("catalog `{url}`"), async move {
            builder.load(&config.catalog_name, props).await
        })?;
        Ok(Arc::new(catalog))
    } else if url.starts_with("http://") || url.starts_with("https://") {
        props.insert("uri".to_string(), url.to_string());
        let builder = RestCatalogBuilder::default().with_storage_factory(factory);
        let catalog = call(config.timeout, &format!("catalog `{url}`"), async move {
            builder.load(&config.catalog_name, props).await
        })?;
        Ok(Arc::new(catalog))
    } else {
        Err(format!(
            "catalog `{url}`: expected sqlite:///path.db (SQL catalog) or http(s)://host (REST catalog)"
        ))
    }
}

fn creation(config: &TableConfig, parts: &[&str]) -> Result<TableCreation, String> {
    let schema = table_schema(&config.schema)?;
    let mut spec = UnboundPartitionSpec::builder();
    for field in &config.partition_by {
        let source = schema
            .field_by_name(&field.column)
            .ok_or_else(|| format!("partition by `{}`: no such column", field.column))?;
        spec = spec
            .add_partition_field(source.id, field.name(), transform(field.transform))
            .map_err(|e| format!("partition by `{}`: {e}", field.name()))?;
    }
    Ok(TableCreation::builder()
        .name(parts.last().expect("two parts").to_string())
        .schema(schema)
        .partition_spec(spec.build())
        .build())
}

/// Every column written must be in the table with a matching type.
fn check_columns(table: &Table, schema: &Schema) -> Result<(), String> {
    let current = table.metadata().current_schema();
    for f in schema.fields() {
        let want = iceberg_type(f.dtype);
        match current.field_by_name(&f.name) {
            None => {
                return Err(format!(
                    "table {} has no column `{}` (the stream has it)",
                    table.identifier(),
                    f.name
                ))
            }
            Some(field) if *field.field_type != Type::Primitive(want.clone()) => {
                return Err(format!(
                    "table {} column `{}` is {}, the stream's is {} ({want})",
                    table.identifier(),
                    f.name,
                    field.field_type,
                    f.dtype
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Builds Arrow batches in the table's schema from weir rows.
pub struct BatchBuilder {
    arrow: ArrowSchemaRef,
    /// For each table column, the row column it comes from (none: null).
    sources: Vec<Option<usize>>,
}

impl BatchBuilder {
    /// A builder for `table`'s current schema, fed rows of `schema`.
    pub fn new(table: &Table, schema: &Schema) -> Result<BatchBuilder, String> {
        let current = table.metadata().current_schema();
        let arrow = iceberg::arrow::schema_to_arrow_schema(current).map_err(|e| e.to_string())?;
        let sources = arrow
            .fields()
            .iter()
            .map(|f| schema.index_of(f.name()))
            .collect();
        Ok(BatchBuilder {
            arrow: Arc::new(arrow),
            sources,
        })
    }

    /// One batch of `rows`.
    pub fn build<'r>(&self, rows: &'r [Row]) -> Result<RecordBatch, String> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.sources.len());
        for (field, source) in self.arrow.fields().iter().zip(&self.sources) {
            let value = |row: &'r Row| source.map_or(Value::Null, move |i| row.get(i));
            let array: ArrayRef = match field.data_type() {
                ArrowType::Int64 => {
                    let mut b = Int64Builder::with_capacity(rows.len());
                    rows.iter().for_each(|r| match value(r) {
                        Value::Int(v) | Value::Ts(v) => b.append_value(v),
                        _ => b.append_null(),
                    });
                    finish(b)
                }
                ArrowType::Float64 => {
                    let mut b = Float64Builder::with_capacity(rows.len());
                    rows.iter().for_each(|r| b.append_option(value(r).as_f64()));
                    finish(b)
                }
                ArrowType::Boolean => {
                    let mut b = BooleanBuilder::with_capacity(rows.len());
                    rows.iter().for_each(|r| match value(r) {
                        Value::Bool(v) => b.append_value(v),
                        _ => b.append_null(),
                    });
                    finish(b)
                }
                ArrowType::Utf8 => {
                    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                    rows.iter().for_each(|r| match value(r) {
                        Value::Str(s) => b.append_value(&*s),
                        _ => b.append_null(),
                    });
                    finish(b)
                }
                ArrowType::Timestamp(TimeUnit::Microsecond, zone) => {
                    let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len())
                        .with_timezone_opt(zone.clone());
                    rows.iter().for_each(|r| match value(r) {
                        Value::Ts(ms) | Value::Int(ms) => b.append_value(ms.saturating_mul(1000)),
                        _ => b.append_null(),
                    });
                    finish(b)
                }
                other => {
                    return Err(format!(
                        "column `{}`: weir cannot write Iceberg type {other}",
                        field.name()
                    ))
                }
            };
            columns.push(array);
        }
        RecordBatch::try_new(self.arrow.clone(), columns).map_err(|e| e.to_string())
    }
}

fn finish(mut builder: impl ArrayBuilder) -> ArrayRef {
    builder.finish()
}
