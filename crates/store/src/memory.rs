//! An in-memory engine for fast unit tests; same contract as sled, no disk.

use std::{collections::BTreeMap, sync::RwLock};

use super::{Batch, Kv, Pair, StoreError};

/// A `BTreeMap` behind a lock.
#[derive(Default)]
pub struct MemoryKv {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned() -> StoreError {
    StoreError::Engine("memory store lock poisoned".to_owned())
}

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.read().map_err(|_| poisoned())?.get(key).cloned())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Pair>, StoreError> {
        use std::ops::Bound;
        let map = self.map.read().map_err(|_| poisoned())?;
        let start = match after {
            Some(after) => Bound::Excluded(after.to_vec()),
            None => Bound::Included(prefix.to_vec()),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        for (key, value) in &batch {
            super::check_value_size(key, value.as_deref())?;
        }
        let mut map = self.map.write().map_err(|_| poisoned())?;
        for (key, value) in batch {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
