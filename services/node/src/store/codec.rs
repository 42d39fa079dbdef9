//! Tree nodes and their keys as stored (see "Layout" in the store's doc): a node key as its
//! version and packed nibble path, a node in the [`compact`] serde encoding below, checked
//! against a mirror of its shape before jmt sees it.
//!
//! # Why not borsh
//!
//! jmt 0.12's `Node` derives `BorshSerialize`/`BorshDeserialize`, so borsh could replace the
//! [`compact`] codec (about 400 of this file's lines). Measured on 2026-12-07 (2 vCPUs shared
//! with other builds, release build; the scratch test and the borsh variant were not kept):
//!
//! - **Size: the same.** On a tree built by 100 versions of 1,000 new keys (165,012 internal
//!   nodes, 7.7 children on average, and 135,029 leaves), 383.2 bytes per internal node and
//!   65.0 per leaf in both: the layouts are field for field the same, fixed-width integers
//!   and one-byte tags; only the byte order differs (borsh is little-endian).
//! - **Speed: borsh is faster in isolation, the same on the commit path.** Decoding with the
//!   shape check (best of 7, three rounds): an internal node 1,409–1,612 ns here against
//!   636–863 ns with borsh, a leaf 326–342 against 104–139 ns; encoding 350 against 100 ns per
//!   node. `cargo bench -p trellis-node --bench commit_path`, six interleaved pairs: 41.2,
//!   42.3, 42.7, 45.2, 46.8, 45.3 µs/tx here against 39.5, 42.2, 41.0, 43.7, 45.2, 45.6 with
//!   borsh: about 1 µs/tx (2 %) less, inside the run-to-run spread of 2 to 3 µs/tx on that
//!   host (the node cache serves most reads; decoding is a small part of a commit).
//! - **Damaged bytes: borsh never panics, but it does not check either.** Of 6,392,670 damaged
//!   encodings (every truncation, and four bit flips of every byte, of every 50th internal
//!   node and every 500th leaf), borsh decoded 4,802,615 without a panic, and 659,852 of
//!   those break the invariants jmt's readers rely on (child and leaf counts, a lone leaf
//!   child): its derive fills the fields without `InternalNode::new`'s assertions. The shape
//!   check stays either way (a `BorshDeserialize` mirror does it as well as this one); with
//!   it, `corrupt_records_are_errors_not_panics` and the other store tests pass with borsh.
//!
//! Kept, because switching would not delete this codec: the byte order makes borsh a new
//! on-disk format (3), and the stores of formats 1 and 2 hold nodes in this encoding. A
//! format-1 store must open (and be marked format 2: the store test
//! `a_store_of_the_first_format_opens_with_its_tree_at_the_last_height`), so its nodes must be
//! read here or migrated by a decoder of this encoding: borsh would be a second encoding beside
//! this one, for a gain inside the noise. When stores before format 3 no longer need to open,
//! write borsh as format 3 (`borsh::to_vec`, `borsh::from_slice` behind the same shape check,
//! the mirror deriving `BorshDeserialize` and `Clone`) and delete [`compact`].

use super::error::{StoreError, corrupt};
use jmt::storage::{NibblePath, Node, NodeKey};

/// `version (8, big-endian) ‖ nibble count (1) ‖ nibbles packed two per byte, high first`.
pub(super) fn encode_node_key(key: &NodeKey) -> Vec<u8> {
    let path = key.nibble_path();
    let n = path.num_nibbles();
    let mut out = Vec::with_capacity(9 + n.div_ceil(2));
    out.extend_from_slice(&key.version().to_be_bytes());
    // A path has at most 64 nibbles (32-byte key hashes).
    out.push(n as u8);
    let mut nibbles = path.nibbles().map(u8::from);
    while let Some(hi) = nibbles.next() {
        out.push(hi << 4 | nibbles.next().unwrap_or(0));
    }
    out
}

pub(super) fn decode_node_key(bytes: &[u8]) -> Result<NodeKey, StoreError> {
    let bad = |detail: &str| corrupt(format!("tree node key {}", hex::encode(bytes)), detail);
    let (version, rest) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| bad("too short"))?;
    let (&n, packed) = rest.split_first().ok_or_else(|| bad("too short"))?;
    let n = usize::from(n);
    if n > 64 {
        return Err(bad("more than 64 nibbles"));
    }
    if packed.len() != n.div_ceil(2) {
        return Err(bad("nibble count does not match its bytes"));
    }
    if n % 2 == 1 && packed.last().is_some_and(|b| b & 0x0f != 0) {
        return Err(bad("odd path with a non-zero pad nibble"));
    }
    let path: NibblePath = packed
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0f])
        .take(n)
        .map(Into::into)
        .collect();
    Ok(NodeKey::new(u64::from_be_bytes(*version), path))
}

/// A node: jmt's serde shape of [`Node`] in the [`compact`] encoding. On read the bytes are
/// first decoded as [`shape::NodeShape`] and checked (child counts, leaf counts, a non-leaf
/// only child), so a corrupt node is an error here instead of a panic inside jmt.
pub(super) fn encode_node(node: &Node) -> Result<Vec<u8>, compact::Error> {
    compact::to_bytes(node)
}

pub(super) fn decode_node(bytes: &[u8], key: &[u8]) -> Result<Node, StoreError> {
    let bad = |detail: String| corrupt(format!("tree node {}", hex::encode(key)), detail);
    let shape: shape::NodeShape = compact::from_bytes(bytes).map_err(|e| bad(e.to_string()))?;
    shape.check().map_err(|e| bad(e.into()))?;
    compact::from_bytes(bytes).map_err(|e| bad(e.to_string()))
}

/// A mirror of jmt 0.12's serde shape of [`Node`] (same variants and fields in the same order;
/// `usize` travels as `u64`), to check a stored node before jmt sees it.
mod shape {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub enum NodeShape {
        Null,
        Internal(InternalShape),
        Leaf(#[allow(dead_code)] LeafShape),
    }

    #[derive(Deserialize)]
    pub struct InternalShape {
        children: ChildrenShape,
        leaf_count: u64,
    }

    #[derive(Deserialize)]
    pub struct ChildrenShape {
        children: Box<[Option<ChildShape>; 16]>,
        num_children: u64,
    }

    #[derive(Deserialize)]
    pub struct ChildShape {
        _hash: [u8; 32],
        _version: u64,
        node_type: NodeTypeShape,
    }

    #[derive(Deserialize)]
    pub enum NodeTypeShape {
        Leaf,
        Internal { leaf_count: u64 },
    }

    #[derive(Deserialize)]
    pub struct LeafShape {
        _key_hash: [u8; 32],
        _value_hash: [u8; 32],
    }

    impl NodeShape {
        /// The invariants jmt's constructors keep and its readers rely on.
        pub fn check(&self) -> Result<(), &'static str> {
            let NodeShape::Internal(node) = self else {
                return Ok(());
            };
            let children: Vec<&ChildShape> = node.children.children.iter().flatten().collect();
            if children.len() as u64 != node.children.num_children {
                return Err("child count does not match its children");
            }
            match children.as_slice() {
                [] => return Err("internal node without children"),
                [only] if matches!(only.node_type, NodeTypeShape::Leaf) => {
                    return Err("internal node whose only child is a leaf");
                }
                _ => {}
            }
            let mut total: u64 = 0;
            for child in children {
                let count = match child.node_type {
                    NodeTypeShape::Leaf => 1,
                    NodeTypeShape::Internal { leaf_count } if leaf_count >= 2 => leaf_count,
                    NodeTypeShape::Internal { .. } => {
                        return Err("internal child with fewer than two leaves");
                    }
                };
                total = total.checked_add(count).ok_or("leaf count overflows")?;
            }
            if total != node.leaf_count || usize::try_from(total).is_err() {
                return Err("leaf count does not match its children");
            }
            Ok(())
        }
    }
}

/// A compact, non-self-describing serde encoding (in the manner of bincode) for the tree's
/// node types: integers fixed-width big-endian, `bool`/option tags and enum variant indexes one
/// byte, sequences and byte strings prefixed by a `u64` length, structs and tuples as their
/// fields in order with no names. Decoding consumes every byte or fails.
mod compact {
    use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
    use serde::ser::{self, Serialize};

    #[derive(Debug)]
    pub struct Error(String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl ser::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    impl de::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    fn unsupported<T>(what: &str) -> Result<T, Error> {
        Err(Error(format!("{what} is not supported by the tree codec")))
    }

    pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        let mut encoder = Encoder(Vec::new());
        value.serialize(&mut encoder)?;
        Ok(encoder.0)
    }

    pub fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
        let mut decoder = Decoder(bytes);
        let value = T::deserialize(&mut decoder)?;
        if decoder.0.is_empty() {
            Ok(value)
        } else {
            Err(Error(format!("{} trailing bytes", decoder.0.len())))
        }
    }

    struct Encoder(Vec<u8>);

    impl Encoder {
        fn variant(&mut self, index: u32) -> Result<(), Error> {
            let index = u8::try_from(index).map_err(|_| Error("variant index > 255".into()))?;
            self.0.push(index);
            Ok(())
        }
    }

    impl ser::Serializer for &mut Encoder {
        type Ok = ();
        type Error = Error;
        type SerializeSeq = Self;
        type SerializeTuple = Self;
        type SerializeTupleStruct = Self;
        type SerializeTupleVariant = Self;
        type SerializeMap = ser::Impossible<(), Error>;
        type SerializeStruct = Self;
        type SerializeStructVariant = Self;

        fn serialize_bool(self, v: bool) -> Result<(), Error> {
            self.0.push(u8::from(v));
            Ok(())
        }
        fn serialize_u8(self, v: u8) -> Result<(), Error> {
            self.0.push(v);
            Ok(())
        }
        fn serialize_u16(self, v: u16) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
        fn serialize_u32(self, v: u32) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
        fn serialize_u64(self, v: u64) -> Result<(), Error> {
            self.0.extend_from_slice(&v.to_be_bytes());
            Ok(())
        }
        fn serialize_i8(self, _: i8) -> Result<(), Error> {
            unsupported("i8")
        }
        fn serialize_i16(self, _: i16) -> Result<(), Error> {
            unsupported("i16")
        }
        fn serialize_i32(self, _: i32) -> Result<(), Error> {
            unsupported("i32")
        }
        fn serialize_i64(self, _: i64) -> Result<(), Error> {
            unsupported("i64")
        }
        fn serialize_f32(self, _: f32) -> Result<(), Error> {
            unsupported("f32")
        }
        fn serialize_f64(self, _: f64) -> Result<(), Error> {
            unsupported("f64")
        }
        fn serialize_char(self, _: char) -> Result<(), Error> {
            unsupported("char")
        }
        fn serialize_str(self, _: &str) -> Result<(), Error> {
            unsupported("str")
        }
        fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
            self.serialize_u64(v.len() as u64)?;
            self.0.extend_from_slice(v);
            Ok(())
        }
        fn serialize_none(self) -> Result<(), Error> {
            self.0.push(0);
            Ok(())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
            self.0.push(1);
            value.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), Error> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
        ) -> Result<(), Error> {
            self.variant(index)
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            self.variant(index)?;
            value.serialize(self)
        }
        fn serialize_seq(self, len: Option<usize>) -> Result<Self, Error> {
            let len = len.ok_or_else(|| Error("sequence of unknown length".into()))?;
            self.serialize_u64(len as u64)?;
            Ok(self)
        }
        fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self, Error> {
            self.variant(index)?;
            Ok(self)
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
            unsupported("map")
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
            Ok(self)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            index: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self, Error> {
            self.variant(index)?;
            Ok(self)
        }
    }

    macro_rules! compound {
        ($($trait:ident :: $method:ident),*) => {$(
            impl ser::$trait for &mut Encoder {
                type Ok = ();
                type Error = Error;
                fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
                    value.serialize(&mut **self)
                }
                fn end(self) -> Result<(), Error> {
                    Ok(())
                }
            }
        )*};
    }
    compound!(
        SerializeSeq::serialize_element,
        SerializeTuple::serialize_element,
        SerializeTupleStruct::serialize_field,
        SerializeTupleVariant::serialize_field
    );

    impl ser::SerializeStruct for &mut Encoder {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            value.serialize(&mut **self)
        }
        fn end(self) -> Result<(), Error> {
            Ok(())
        }
    }

    impl ser::SerializeStructVariant for &mut Encoder {
        type Ok = ();
        type Error = Error;
        fn serialize_field<T: ?Sized + Serialize>(
            &mut self,
            _: &'static str,
            value: &T,
        ) -> Result<(), Error> {
            value.serialize(&mut **self)
        }
        fn end(self) -> Result<(), Error> {
            Ok(())
        }
    }

    struct Decoder<'de>(&'de [u8]);

    impl<'de> Decoder<'de> {
        fn take<const N: usize>(&mut self) -> Result<[u8; N], Error> {
            let (head, rest) = self
                .0
                .split_first_chunk::<N>()
                .ok_or_else(|| Error("unexpected end".into()))?;
            self.0 = rest;
            Ok(*head)
        }
        fn byte(&mut self) -> Result<u8, Error> {
            Ok(self.take::<1>()?[0])
        }
        fn len(&mut self) -> Result<usize, Error> {
            let len = u64::from_be_bytes(self.take::<8>()?);
            // Every element takes at least one byte in the node types, so a longer length is
            // corrupt (and would otherwise allocate or loop without bound).
            usize::try_from(len)
                .ok()
                .filter(|len| *len <= self.0.len())
                .ok_or_else(|| Error(format!("length {len} exceeds the input")))
        }
    }

    impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            unsupported("self-describing decoding")
        }
        fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.byte()? {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                b => Err(Error(format!("bool byte {b}"))),
            }
        }
        fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u8(self.byte()?)
        }
        fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u16(u16::from_be_bytes(self.take()?))
        }
        fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u32(u32::from_be_bytes(self.take()?))
        }
        fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_u64(u64::from_be_bytes(self.take()?))
        }
        fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            let (bytes, rest) = self.0.split_at(len);
            self.0 = rest;
            visitor.visit_borrowed_bytes(bytes)
        }
        fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_bytes(visitor)
        }
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.byte()? {
                0 => visitor.visit_none(),
                1 => visitor.visit_some(self),
                b => Err(Error(format!("option tag {b}"))),
            }
        }
        fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }
        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let len = self.len()?;
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: fields.len(),
            })
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_enum(self)
        }

        serde::forward_to_deserialize_any! {
            i8 i16 i32 i64 i128 u128 f32 f64 char str string map identifier ignored_any
        }
    }

    struct Fields<'a, 'de> {
        de: &'a mut Decoder<'de>,
        left: usize,
    }

    impl<'de> de::SeqAccess<'de> for Fields<'_, 'de> {
        type Error = Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            seed.deserialize(&mut *self.de).map(Some)
        }

        fn size_hint(&self) -> Option<usize> {
            Some(self.left)
        }
    }

    impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
        type Error = Error;
        type Variant = Self;

        fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
            let index = u32::from(self.byte()?);
            let value = seed.deserialize(index.into_deserializer())?;
            Ok((value, self))
        }
    }

    impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
        type Error = Error;

        fn unit_variant(self) -> Result<(), Error> {
            Ok(())
        }
        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
            seed.deserialize(self)
        }
        fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: len,
            })
        }
        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_seq(Fields {
                de: self,
                left: fields.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_tree::{MemoryTreeStore, StateTree};
    use sha2::Digest as _;
    use trellis_ledger::state::{StateKey, WriteSet};
    use trellis_types::Digest;

    /// Every node and node key of a small tree's history: a null root, leaves, internal nodes
    /// with one to sixteen children, odd and even paths.
    fn sample() -> Vec<(NodeKey, Node)> {
        let mut tree = StateTree::in_memory();
        let mut out = Vec::new();
        let mut step = |tree: &mut StateTree<MemoryTreeStore>, version, writes: WriteSet| {
            let (_, batch) = tree.prepare(version, &writes).expect("prepare");
            out.extend(batch.node_batch.nodes().clone());
            tree.reader_mut().apply_batch(batch);
            tree.committed(version);
        };
        step(&mut tree, 0, WriteSet::new());
        for v in 1..=3u8 {
            let writes = (0..40u8)
                .map(|i| {
                    let key = StateKey::anchor(&Digest([i; 32]));
                    let value = (i % 7 != v).then(|| vec![v, i]);
                    (key, value)
                })
                .collect();
            step(&mut tree, u64::from(v), writes);
        }
        out
    }

    #[test]
    fn tree_records_round_trip_and_their_encoding_is_pinned() {
        let mut all = sha2::Sha256::new();
        let sample = sample();
        assert!(sample.iter().any(|(_, n)| matches!(n, Node::Null)));
        assert!(
            sample
                .iter()
                .any(|(k, _)| k.nibble_path().num_nibbles() % 2 == 1)
        );
        for (key, node) in &sample {
            let k = encode_node_key(key);
            let n = encode_node(node).expect("encode");
            assert_eq!(&decode_node_key(&k).expect("key"), key);
            assert_eq!(&decode_node(&n, &k).expect("node"), node);
            all.update((k.len() as u32).to_be_bytes());
            all.update(&k);
            all.update((n.len() as u32).to_be_bytes());
            all.update(&n);
        }
        // Changing this is changing the on-disk format: bump FORMAT and migrate.
        assert_eq!(hex::encode(all.finalize()), PINNED);
    }

    const PINNED: &str = "8213abade6d33024eeb46845b69edd0b5d5f3dd7686ead0602b8ea68a8fabb68";

    #[test]
    fn damaged_tree_records_are_errors_not_panics() {
        for (key, node) in sample().iter().step_by(3) {
            for bytes in [encode_node_key(key), encode_node(node).expect("encode")] {
                for cut in 0..bytes.len() {
                    let _ = decode_node(&bytes[..cut], b"k");
                    let _ = decode_node_key(&bytes[..cut]);
                }
                for i in 0..bytes.len() {
                    for flip in [0x01, 0x10, 0x80, 0xff] {
                        let mut damaged = bytes.clone();
                        damaged[i] ^= flip;
                        let _ = decode_node(&damaged, b"k");
                        let _ = decode_node_key(&damaged);
                    }
                }
            }
        }
        assert!(decode_node(&[], b"k").is_err());
        assert!(decode_node(&[9], b"k").is_err());
        assert!(decode_node(&[0, 0], b"k").is_err(), "trailing bytes");
        assert!(decode_node_key(&[0; 9]).is_ok(), "a root key");
        assert!(decode_node_key(&[0; 10]).is_err(), "a stray path byte");
    }
}
