//! The keys of an ordered step, interned: each key's bytes are stored once, in a slot, and
//! records and timers refer to it by a small id. A record then costs one hash lookup on
//! arrival and nothing per key afterwards (no key copy per record, no hashing or byte
//! comparison when the watermark releases it).

use std::cmp::Ordering;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use weir_engine::data::Row;
use weir_engine::keys::key_hash;

/// A key's state and its timer.
///
/// Timers are lazy: the timer set holds, per key, one entry at or before the timer the process
/// wants (`registered`); when it fires early, it is moved to the real time. Timers that move
/// later with every record (a rolling range, a rule's window) then cost a set operation only
/// when the watermark reaches them, not on every record.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct KeyEntry<S> {
    pub state: S,
    pub timer: Option<i64>,
    #[serde(skip)]
    pub registered: Option<i64>,
}

impl<S: Default> Default for KeyEntry<S> {
    fn default() -> Self {
        KeyEntry {
            state: S::default(),
            timer: None,
            registered: None,
        }
    }
}

/// One interned key.
pub(super) struct Slot<S> {
    pub key: Row,
    /// The key's [`Row::sort_prefix`].
    pub prefix: u64,
    pub entry: KeyEntry<S>,
    /// Records of this key waiting for the watermark: the slot lives while any do.
    pub pending: u32,
    /// Its state changed since the last checkpoint (when checkpoints are incremental).
    pub changed: bool,
}

impl<S> Slot<S> {
    /// Keys in value order: by prefix, then by value.
    pub fn cmp_key(&self, other: &Slot<S>) -> Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.key.cmp_values(&other.key))
    }
}

/// Interned keys: slots addressed by id, found by their bytes.
pub(super) struct KeyTable<S> {
    slots: Vec<Option<Slot<S>>>,
    free: Vec<u32>,
    index: HashTable<u32>,
}

impl<S> Default for KeyTable<S> {
    fn default() -> Self {
        KeyTable {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
        }
    }
}

impl<S: Default> KeyTable<S> {
    /// The id of the key with these encoded bytes, interning it (with default state) if new.
    pub fn intern(&mut self, key: &[u8]) -> u32 {
        let hash = key_hash(key);
        let slots = &mut self.slots;
        if let Some(&id) = self.index.find(hash, |&id| {
            slots[id as usize]
                .as_ref()
                .is_some_and(|s| s.key.as_bytes() == key)
        }) {
            return id;
        }
        let key = Row::from_bytes(key.to_vec()).expect("key bytes come from a RowBuilder");
        let slot = Slot {
            prefix: key.sort_prefix(),
            key,
            entry: KeyEntry::default(),
            pending: 0,
            changed: false,
        };
        let id = match self.free.pop() {
            Some(id) => {
                slots[id as usize] = Some(slot);
                id
            }
            None => {
                slots.push(Some(slot));
                (slots.len() - 1) as u32
            }
        };
        self.index.insert_unique(hash, id, |&id| {
            key_hash(slots[id as usize].as_ref().expect("indexed").key.as_bytes())
        });
        id
    }
}

impl<S> KeyTable<S> {
    /// The id of the live key with these encoded bytes.
    pub fn find(&self, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(key_hash(key), |&id| {
                slots[id as usize]
                    .as_ref()
                    .is_some_and(|s| s.key.as_bytes() == key)
            })
            .copied()
    }

    /// Asks for the slot of `id` to be loaded into the cache (without reading it).
    #[inline]
    pub fn prefetch(&self, id: u32) {
        if let Some(slot) = self.slots.get(id as usize) {
            weir_engine::prefetch::prefetch(slot);
        }
    }

    /// The live key with this id.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&Slot<S>> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// The live key with this id, to change.
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Slot<S>> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Forgets a key; its id may be reused.
    pub fn remove(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        let hash = key_hash(slot.key.as_bytes());
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.free.push(id);
    }

    /// Live keys with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Slot<S>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, s)| Some((id as u32, s.as_ref()?)))
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_engine::data::Value;

    fn key(s: &str) -> Row {
        Row::from_values(&[Value::Str(s.into())])
    }

    #[test]
    fn interning_finds_keys_and_reuses_freed_ids() {
        let mut t: KeyTable<u32> = KeyTable::default();
        let a = t.intern(key("a").as_bytes());
        let b = t.intern(key("b").as_bytes());
        assert_ne!(a, b);
        assert_eq!(t.intern(key("a").as_bytes()), a);
        assert_eq!(t.len(), 2);
        t.remove(a);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 1);
        let c = t.intern(key("c").as_bytes());
        assert_eq!(c, a, "a freed id is reused");
        assert_eq!(t.get(c).unwrap().key, key("c"));
        assert_eq!(t.intern(key("b").as_bytes()), b);
        assert_eq!(t.iter().count(), 2);
    }
}
