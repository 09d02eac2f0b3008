//! Keys of keyed operators: extracting them from rows and routing records by key group.

use std::hash::{Hash, Hasher};

use timely::dataflow::channels::pact::Exchange;
use weir_engine::data::{bytes_eq, Row, RowBuilder};
use weir_engine::event::Event;
use weir_engine::keys::KeyGroups;

/// Builds the key of a row (the values of the key columns, as a row) without allocating.
#[derive(Clone, Debug)]
pub struct KeyExtractor {
    columns: Vec<usize>,
    builder: RowBuilder,
    buf: Vec<u8>,
}

impl KeyExtractor {
    /// Keys made of `columns` of the input rows.
    pub fn new(columns: Vec<usize>) -> Self {
        let builder = RowBuilder::new(columns.len());
        KeyExtractor {
            columns,
            builder,
            buf: Vec::with_capacity(64),
        }
    }

    /// The key columns.
    pub fn columns(&self) -> &[usize] {
        &self.columns
    }

    /// The encoded key of `row`, valid until the next call.
    #[inline]
    pub fn key_bytes(&mut self, row: &Row) -> &[u8] {
        if let [column] = self.columns[..] {
            self.buf.clear();
            row.write_column_as_row(column, &mut self.buf);
            return &self.buf;
        }
        for (i, &c) in self.columns.iter().enumerate() {
            self.builder.copy_from(i, row, c);
        }
        self.buf.clear();
        self.builder.write_into(&mut self.buf);
        &self.buf
    }
}

/// Where the records of an input go.
#[derive(Clone, Debug)]
pub enum Routing {
    /// To the worker owning the key group of these columns' values.
    Key(Vec<usize>),
    /// Every worker keeps what it receives (the stream was broadcast before).
    Local,
}

/// The exchange pact that sends each record to the worker owning its key's group (or keeps it
/// on `worker`, for broadcast inputs).
pub fn key_exchange(
    routing: Routing,
    key_groups: KeyGroups,
    worker: usize,
    peers: usize,
) -> Exchange<Event, impl FnMut(&Event) -> u64 + 'static> {
    let mut keys = match &routing {
        Routing::Key(columns) => Some(KeyExtractor::new(columns.clone())),
        Routing::Local => None,
    };
    let routes = key_groups.routes(peers);
    Exchange::new(move |event: &Event| match &mut keys {
        Some(keys) => {
            let group = key_groups.group_of(keys.key_bytes(&event.row));
            routes[group.0 as usize] as u64
        }
        None => worker as u64,
    })
}

/// Encoded key bytes looked up in a map keyed by [`Row`]: hashes like the row and compares
/// inline, without a `memcmp` call per probe.
pub struct KeyRef<'a>(pub &'a [u8]);

impl Hash for KeyRef<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // `Row` hashes as its byte slice.
        self.0.hash(state)
    }
}

impl hashbrown::Equivalent<Row> for KeyRef<'_> {
    #[inline]
    fn equivalent(&self, key: &Row) -> bool {
        bytes_eq(self.0, key.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use weir_engine::data::Value;

    use super::*;

    #[test]
    fn key_refs_find_the_rows_they_encode() {
        let mut map: hashbrown::HashMap<Row, u32> = hashbrown::HashMap::new();
        let rows: Vec<Row> = (0..100)
            .map(|i| Row::from_values(&[Value::Str(format!("user-{i}").into())]))
            .collect();
        for (i, r) in rows.iter().enumerate() {
            map.insert(r.clone(), i as u32);
        }
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(map.get(&KeyRef(r.as_bytes())), Some(&(i as u32)));
            assert_eq!(
                map.hasher().hash_one(KeyRef(r.as_bytes())),
                map.hasher().hash_one(r)
            );
        }
        assert!(map.get(&KeyRef(b"nope")).is_none());
    }
}
