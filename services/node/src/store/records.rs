//! The layout's keys and records other than tree nodes (see "Layout" in the store's doc): the
//! `meta` keys, heights as big-endian keys, pending-block keys, the value history's keys and
//! values, and a flush's stale record.

use super::codec::encode_node_key;
use super::error::{StoreError, corrupt};
use super::memory::TreeMemory;
use fjall::Keyspace;
use jmt::storage::{Node, StaleNodeIndex};
use jmt::{KeyHash, OwnedValue, Version};

pub(super) const META_FORMAT: &[u8] = b"format";
pub(super) const META_HEAD: &[u8] = b"head";
pub(super) const META_SAFETY: &[u8] = b"safety";
pub(super) const META_LAST: &[u8] = b"last";
pub(super) const META_TREE: &[u8] = b"tree";
/// The `keep_from` of the last prune: versions below it read as gone.
pub(super) const META_PRUNED: &[u8] = b"pruned";

pub(super) fn be_u64(bytes: &[u8], what: impl FnOnce() -> String) -> Result<u64, StoreError> {
    match <[u8; 8]>::try_from(bytes) {
        Ok(b) => Ok(u64::from_be_bytes(b)),
        Err(_) => Err(corrupt(
            what(),
            format!("{} bytes, expected 8", bytes.len()),
        )),
    }
}

pub(super) fn pending_key(height: u64, id: &[u8; 32]) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&height.to_be_bytes());
    k.extend_from_slice(id);
    k
}

pub(super) fn value_key(kh: &KeyHash, version: Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&kh.0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

const STALE_INNER: u8 = 0;
const STALE_LEAF: u8 = 1;
const STALE_UNKNOWN: u8 = 2;

/// A node in a stale record: an internal (or null) node, a leaf with its key hash, or not
/// known (the prune reads it).
pub(super) enum StaleKind {
    Inner,
    Leaf(KeyHash),
    Unknown,
}

/// The entries of a version's stale record (see "Layout" in the store's doc): encoded node key
/// and kind.
pub(super) fn decode_stale_record(
    record: &[u8],
    key: &[u8],
) -> Result<Vec<(Vec<u8>, StaleKind)>, StoreError> {
    let bad = |detail: &str| corrupt(format!("stale record {}", hex::encode(key)), detail);
    let mut rest = record;
    let mut out = Vec::new();
    while let Some((&tag, tail)) = rest.split_first() {
        let (&len, tail) = tail.split_first().ok_or_else(|| bad("truncated"))?;
        let (node_key, tail) = tail
            .split_at_checked(usize::from(len))
            .ok_or_else(|| bad("truncated"))?;
        rest = tail;
        let kind = match tag {
            STALE_INNER => StaleKind::Inner,
            STALE_UNKNOWN => StaleKind::Unknown,
            STALE_LEAF => {
                let (kh, tail) = rest
                    .split_first_chunk::<32>()
                    .ok_or_else(|| bad("truncated"))?;
                rest = tail;
                StaleKind::Leaf(KeyHash(*kh))
            }
            _ => return Err(bad("unknown tag")),
        };
        out.push((node_key.to_vec(), kind));
    }
    Ok(out)
}

pub(super) fn encode_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        None => vec![0],
        Some(v) => {
            let mut out = Vec::with_capacity(1 + v.len());
            out.push(1);
            out.extend_from_slice(v);
            out
        }
    }
}

fn decode_value(bytes: &[u8], key: &[u8]) -> Result<Option<OwnedValue>, StoreError> {
    match bytes.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, v)) => Ok(Some(v.to_vec())),
        _ => Err(corrupt(
            format!("tree value {}", hex::encode(key)),
            "bad tag",
        )),
    }
}

/// The newest value of `kh` the store's history holds at or below `max_version` (`None`:
/// never written, or deleted).
pub(super) fn stored_value(
    values: &Keyspace,
    kh: &KeyHash,
    max_version: Version,
) -> Result<Option<OwnedValue>, StoreError> {
    match values
        .range(value_key(kh, 0)..=value_key(kh, max_version))
        .next_back()
    {
        None => Ok(None),
        Some(g) => {
            let (k, v) = g.into_inner()?;
            decode_value(&v, &k)
        }
    }
}

/// A flush's stale record (see "Layout" in the store's doc). Whether a node is a leaf comes
/// from memory, which holds nearly all of them (the updates just read them); the rest are
/// marked not known, for the prune to read.
pub(super) fn stale_record<'a>(
    memory: &TreeMemory,
    stale: impl Iterator<Item = &'a StaleNodeIndex>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for s in stale {
        let key = encode_node_key(&s.node_key);
        let leaf = memory.peek(&s.node_key, |node| match node {
            Node::Leaf(leaf) => Some(leaf.key_hash()),
            _ => None,
        });
        out.push(match leaf {
            Some(None) => STALE_INNER,
            Some(Some(_)) => STALE_LEAF,
            None => STALE_UNKNOWN,
        });
        // A node key is at most 8 + 1 + 32 bytes.
        out.push(key.len() as u8);
        out.extend_from_slice(&key);
        if let Some(Some(kh)) = leaf {
            out.extend_from_slice(&kh.0);
        }
    }
    out
}
