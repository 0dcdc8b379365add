//! A set of strings mapped to indicator numbers, stored in one arena: about 12 bytes of table
//! per entry plus the string's own bytes, with no allocation per entry.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;

#[derive(Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    value: u32,
}

#[derive(Default)]
pub(crate) struct StrSet {
    arena: String,
    table: HashTable<Entry>,
    hasher: DefaultHashBuilder,
}

impl StrSet {
    fn text(&self, e: &Entry) -> &str {
        &self.arena[e.start as usize..(e.start + e.len) as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        let h = self.hasher.hash_one(s);
        self.table.find(h, |e| self.text(e) == s).map(|e| e.value)
    }

    /// Inserts `s → value` unless `s` is present; returns the value already there.
    pub(crate) fn insert(&mut self, s: &str, value: u32) -> Option<u32> {
        if let Some(v) = self.get(s) {
            return Some(v);
        }
        let h = self.hasher.hash_one(s);
        let start = self.arena.len() as u32;
        self.arena.push_str(s);
        let entry = Entry { start, len: s.len() as u32, value };
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table.insert_unique(h, entry, |e| hasher.hash_one(&arena[e.start as usize..(e.start + e.len) as usize]));
        None
    }

    pub(crate) fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table.shrink_to_fit(|e| hasher.hash_one(&arena[e.start as usize..(e.start + e.len) as usize]));
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.table.capacity() * (std::mem::size_of::<Entry>() + 1)
    }
}
