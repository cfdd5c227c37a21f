//! A hash index over a dense vector: growing the table rehashes small (key, position)
//! pairs instead of moving large values, and iteration touches only live entries.

use std::hash::Hash;

use crate::Map;

pub(crate) struct Table<K, V> {
    index: Map<K, u32>,
    items: Vec<(K, V)>,
}

impl<K: Hash + Eq + Clone, V> Default for Table<K, V> {
    fn default() -> Self {
        Table { index: Map::default(), items: Vec::new() }
    }
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn contains(&self, k: &K) -> bool {
        self.index.contains_key(k)
    }

    /// The key at a position `position` gave, if the position is still in use.
    pub fn key_at(&self, i: usize) -> Option<&K> {
        self.items.get(i).map(|(k, _)| k)
    }

    /// The entry at `i` if it is `k`'s (a cached position), else as `get_or_insert_with`.
    pub fn at_or_insert_with(&mut self, i: usize, k: K, f: impl FnOnce() -> V) -> &mut V {
        let i = if self.items.get(i).is_some_and(|(x, _)| *x == k) { i } else { self.position_or_insert_with(k, f) };
        &mut self.items[i].1
    }

    pub fn position_or_insert_with(&mut self, k: K, f: impl FnOnce() -> V) -> usize {
        // A handful of entries (KDCs): a scan beats hashing.
        if self.items.len() <= 8 {
            if let Some(i) = self.items.iter().position(|(x, _)| *x == k) {
                return i;
            }
        }
        match self.index.get(&k) {
            Some(&i) => i as usize,
            None => {
                self.items.push((k.clone(), f()));
                let i = self.items.len() - 1;
                self.index.insert(k, i as u32);
                i
            }
        }
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = *self.index.get(k)? as usize;
        self.items.get_mut(i).map(|(_, v)| v)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.index.remove(k)? as usize;
        let (_, v) = self.items.swap_remove(i);
        if let Some((moved, _)) = self.items.get(i) {
            self.index.insert(moved.clone(), i as u32);
        }
        Some(v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_keep_the_index_right() {
        let mut t: Table<u32, u32> = Table::default();
        for k in 0..100 {
            let i = t.position_or_insert_with(k, || k * 10);
            assert_eq!(t.key_at(i), Some(&k));
        }
        assert_eq!(t.remove(&10), Some(100));
        assert_eq!(t.remove(&10), None);
        for k in 0..100 {
            assert_eq!(t.contains(&k), k != 10, "{k}");
            if k != 10 {
                let i = t.position_or_insert_with(k, || 999);
                assert_eq!(*t.at_or_insert_with(i, k, || 999), k * 10);
            }
        }
        assert_eq!(t.len(), 99);
    }
}
