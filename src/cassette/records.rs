//! One cassette: the records of one name, keyed by the request key and the position among
//! identical requests (a sled tree inside the store's database).

use super::{CassetteName, META_KEY, StoreError};
use crate::interaction::{Interaction, Recorded};
use crate::key::Key;
use std::path::PathBuf;

/// One cassette: the recorded interactions of one name.
#[derive(Clone)]
pub struct Cassette {
    pub(super) tree: sled::Tree,
    pub(super) name: CassetteName,
}

pub(super) fn record_key(key: &Key, position: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&key.0);
    k[32..].copy_from_slice(&position.to_be_bytes());
    k
}

impl Cassette {
    pub fn name(&self) -> &CassetteName {
        &self.name
    }

    /// The response recorded for the `position`th request with `key` (replay's lookup).
    pub fn get_recorded(&self, key: &Key, position: u32) -> Result<Option<Recorded>, StoreError> {
        self.get_as(key, position)
    }

    /// The whole record of the `position`th request with `key` (a miss's nearest recording).
    pub fn get_interaction(
        &self,
        key: &Key,
        position: u32,
    ) -> Result<Option<Interaction>, StoreError> {
        self.get_as(key, position)
    }

    fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
        position: u32,
    ) -> Result<Option<T>, StoreError> {
        match self
            .tree
            .get(record_key(key, position))
            .map_err(|e| self.sled_err(e))?
        {
            Some(bytes) => self.decode_as(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every response recorded with `key`, by position.
    pub fn all_recorded(&self, key: &Key) -> Result<Vec<Recorded>, StoreError> {
        self.tree
            .scan_prefix(key.0)
            .map(|item| match item {
                Ok((_, bytes)) => self.decode_as(key, &bytes),
                Err(e) => Err(self.sled_err(e)),
            })
            .collect()
    }

    /// The last response recorded with `key`.
    pub fn last_recorded(&self, key: &Key) -> Result<Option<Recorded>, StoreError> {
        match self.tree.scan_prefix(key.0).next_back() {
            Some(Ok((_, bytes))) => self.decode_as(key, &bytes).map(Some),
            Some(Err(e)) => Err(self.sled_err(e)),
            None => Ok(None),
        }
    }

    /// Stores an interaction (serialized and scrubbed by the caller) at its key and position,
    /// replacing what was there. Not durable until [`Store::flush_blocking`]; record mode
    /// uses [`Store::record`] instead.
    pub fn put(&self, key: &Key, position: u32, record: Vec<u8>) -> Result<(), StoreError> {
        self.tree
            .insert(record_key(key, position), super::packing::pack(record))
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Replaces everything in the cassette — its metadata and every record — with `records`,
    /// in one atomic sled batch: after a crash the cassette is either what it was or all of
    /// `records`, never part of them (`cassette import`, `--replace` included). Not durable
    /// until [`Store::flush_blocking`](super::Store::flush_blocking).
    pub fn replace_all(
        &self,
        meta: &serde_json::Value,
        records: impl IntoIterator<Item = (Key, u32, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for old in self.tree.iter().keys() {
            batch.remove(old.map_err(|e| self.sled_err(e))?);
        }
        batch.insert(META_KEY, meta.to_string().into_bytes());
        for (key, position, record) in records {
            batch.insert(
                &record_key(&key, position)[..],
                super::packing::pack(record),
            );
        }
        self.tree.apply_batch(batch).map_err(|e| self.sled_err(e))
    }

    /// Fills an empty cassette of a scratch store (replay's private import of exports) record
    /// by record, in key order. Not atomic: a crash leaves part of it, which for a scratch copy
    /// loses nothing. sled lays records inserted one by one in key order out compactly, where
    /// one batch leaves about a third of the log as free segments (45 of 124 for 20,000
    /// seed-style records, against 5), and sled rewrites every free segment each time replay's
    /// scan reopens the copy. Not durable until [`Store::flush_blocking`](super::Store::flush_blocking).
    pub fn fill(
        &self,
        meta: &serde_json::Value,
        records: impl IntoIterator<Item = (Key, u32, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut records: Vec<([u8; 36], Vec<u8>)> = records
            .into_iter()
            .map(|(key, position, record)| (record_key(&key, position), record))
            .collect();
        records.sort_unstable_by_key(|r| r.0);
        let err = |e| self.sled_err(e);
        self.tree
            .insert(META_KEY, meta.to_string().into_bytes())
            .map_err(err)?;
        for (key, record) in records {
            self.tree
                .insert(&key[..], super::packing::pack(record))
                .map_err(err)?;
        }
        Ok(())
    }

    /// Every interaction, in key order. Unreadable records are reported, not skipped silently.
    pub fn iter(&self) -> impl Iterator<Item = Result<Interaction, StoreError>> + '_ {
        self.tree.iter().filter_map(move |item| match item {
            Ok((k, v)) if k.len() == 36 => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&k[..32]);
                Some(self.decode(&Key(key), &v))
            }
            Ok(_) => None,
            Err(e) => Some(Err(self.sled_err(e))),
        })
    }

    /// Every interaction after the record `after` (its raw 36-byte key), in key order, each
    /// with its raw key, so a long scan can stop and resume in a reopened store.
    pub fn scan_after(
        &self,
        after: Option<[u8; 36]>,
    ) -> impl Iterator<Item = Result<([u8; 36], Interaction), StoreError>> + '_ {
        let range = match after {
            Some(k) => self.tree.range::<&[u8], _>((
                std::ops::Bound::Excluded(&k[..]),
                std::ops::Bound::Unbounded,
            )),
            None => self.tree.iter(),
        };
        range.filter_map(move |item| match item {
            Ok((k, v)) if k.len() == 36 => {
                let mut raw = [0u8; 36];
                raw.copy_from_slice(&k);
                let mut key = [0u8; 32];
                key.copy_from_slice(&k[..32]);
                Some(self.decode(&Key(key), &v).map(|i| (raw, i)))
            }
            Ok(_) => None,
            Err(e) => Some(Err(self.sled_err(e))),
        })
    }

    /// Number of recorded interactions.
    pub fn len(&self) -> usize {
        self.tree
            .iter()
            .keys()
            .filter(|k| k.as_ref().is_ok_and(|k| k.len() == 36))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per-cassette metadata (the key options it was recorded with), as JSON.
    pub fn meta(&self) -> Option<serde_json::Value> {
        let bytes = self.tree.get(META_KEY).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn set_meta(&self, meta: &serde_json::Value) -> Result<(), StoreError> {
        self.tree
            .insert(META_KEY, meta.to_string().into_bytes())
            .map(|_| ())
            .map_err(|e| self.sled_err(e))
    }

    fn decode(&self, key: &Key, bytes: &[u8]) -> Result<Interaction, StoreError> {
        self.decode_as(key, bytes)
    }

    fn decode_as<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        let corrupt = |source| StoreError::Corrupt {
            cassette: self.name.to_string(),
            key: key.to_hex(),
            source,
        };
        let json = super::packing::unpack(bytes)
            .map_err(|why| corrupt(<serde_json::Error as serde::de::Error>::custom(why)))?;
        serde_json::from_slice(&json).map_err(corrupt)
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            dir: PathBuf::from(format!("cassette {}", self.name)),
            source,
        }
    }
}
