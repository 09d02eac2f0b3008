//! Keys of keyed operators: extracting them from rows and routing records by key group.

use timely::dataflow::channels::pact::Exchange;
use weir_engine::data::{Row, RowBuilder};
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

/// The exchange pact that sends each record to the worker owning its key's group.
pub fn key_exchange(
    columns: Vec<usize>,
    key_groups: KeyGroups,
    peers: usize,
) -> Exchange<Event, impl FnMut(&Event) -> u64 + 'static> {
    let mut keys = KeyExtractor::new(columns);
    Exchange::new(move |event: &Event| {
        let group = key_groups.group_of(keys.key_bytes(&event.row));
        key_groups.worker_of(group, peers) as u64
    })
}
