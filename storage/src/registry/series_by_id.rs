//! Series by id, for the registry: a vector indexed by id, since ids are handed out in
//! sequence.

use crate::catalog::SeriesEntry;
use crate::fxhash::FxHashMap;
use crate::model::SeriesId;

/// Series by id. Ids are handed out in sequence, so a vector indexed by id holds them and
/// reading series in id order (as scans output them) walks memory in order; an id far past
/// the others (a catalog from elsewhere) goes to a map instead of growing the vector.
#[derive(Debug, Default)]
pub(super) struct SeriesById {
    dense: Vec<Option<SeriesEntry>>,
    sparse: FxHashMap<SeriesId, SeriesEntry>,
}

impl SeriesById {
    /// How far past the vector's end an id may be and still grow it.
    const GAP_MAX: usize = 1 << 16;

    pub(super) fn get(&self, id: &SeriesId) -> Option<&SeriesEntry> {
        let dense = usize::try_from(id.0).ok().and_then(|i| self.dense.get(i)?.as_ref());
        // The vector may have grown past an id put in the map before.
        dense.or_else(|| if self.sparse.is_empty() { None } else { self.sparse.get(id) })
    }

    pub(super) fn insert(&mut self, entry: SeriesEntry) {
        match usize::try_from(entry.id.0) {
            _ if self.sparse.contains_key(&entry.id) => drop(self.sparse.insert(entry.id, entry)),
            Ok(i) if i <= self.dense.len().saturating_mul(2).saturating_add(Self::GAP_MAX) => {
                if i >= self.dense.len() {
                    self.dense.resize_with(i + 1, || None);
                }
                self.dense[i] = Some(entry);
            }
            _ => drop(self.sparse.insert(entry.id, entry)),
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &SeriesEntry> {
        self.dense.iter().flatten().chain(self.sparse.values())
    }

    pub(super) fn remove(&mut self, id: SeriesId) -> Option<SeriesEntry> {
        let dense = usize::try_from(id.0).ok().and_then(|i| self.dense.get_mut(i)?.take());
        dense.or_else(|| self.sparse.remove(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ColumnId, TableId};

    #[test]
    fn series_by_id_finds_ids_near_and_far() {
        let entry = |id: u64| SeriesEntry { id: SeriesId(id), table: TableId(1), tags: vec![(ColumnId(1), id.to_string())] };
        let mut series = SeriesById::default();
        // A far id goes to the map; the vector then grows past it with ids in sequence.
        let ids: Vec<u64> = [3, 200_000, u64::MAX].into_iter().chain(0..300_000).collect();
        for &id in &ids {
            series.insert(entry(id));
        }
        series.insert(SeriesEntry { tags: Vec::new(), ..entry(200_000) });
        assert!(series.dense.len() > 200_000 && series.sparse.len() == 2, "{} {}", series.dense.len(), series.sparse.len());
        for id in [0, 3, 199_999, 200_001, 299_999, u64::MAX] {
            assert_eq!(series.get(&SeriesId(id)).map(|s| s.tags[0].1.clone()), Some(id.to_string()));
        }
        assert!(series.get(&SeriesId(200_000)).is_some_and(|s| s.tags.is_empty()), "the later entry of an id replaces it");
        assert!(series.get(&SeriesId(300_000)).is_none());
        assert_eq!(series.values().count(), 300_001);
    }
}
