//! Secrets at rest: a [`Keyring`] of AES-256-GCM keys that seals values before they are
//! stored (e.g. JWT signing keys, personal data) and opens them again.
//!
//! A sealed value is `kid_len (1 byte) ‖ kid ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag`.
//! The key id travels with the value, so after a rotation old values still open with the key
//! that sealed them while new values use the current one. The associated data (`aad`) binds a
//! value to where it belongs (a row id, a column name): a value copied elsewhere fails to open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. Carries no key material and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealed value names a key this keyring does not hold.
    #[error("sealed with unknown key `{0}`")]
    UnknownKey(String),
    /// The sealed value is too short or its header is inconsistent.
    #[error("sealed value is malformed")]
    Malformed,
    /// Authentication failed: wrong key, wrong associated data, or tampered bytes.
    #[error("sealed value does not authenticate (tampered, or wrong associated data)")]
    Tampered,
    /// A key id is empty, longer than 255 bytes, or not printable ASCII.
    #[error("invalid key id `{0}`: 1 to 255 printable ASCII characters")]
    InvalidKeyId(String),
    /// A key is not 32 bytes of hex.
    #[error("key `{0}` is not 32 bytes of hex")]
    InvalidKey(String),
    /// The current key id is not among the keys.
    #[error("current key `{0}` is not in the keyring")]
    NoCurrentKey(String),
    /// The key file is not valid JSON of the expected shape.
    #[error("key file: {0}")]
    KeyFile(String),
    /// The system random generator or the cipher failed.
    #[error("crypto failure")]
    Crypto,
}

struct KeyEntry {
    raw: [u8; KEY_LEN],
    key: LessSafeKey,
}

struct Inner {
    current: String,
    keys: BTreeMap<String, KeyEntry>,
}

/// AES-256-GCM keys by key id, one of them current. Cheap to clone; `Debug` shows key ids only.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

/// The key file: `{"current":"k1","keys":{"k1":"<64 hex>"}}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    current: String,
    keys: BTreeMap<String, String>,
}

impl Keyring {
    /// A keyring from hex keys; `current_kid` seals, all of them open.
    pub fn from_hex_keys(current_kid: &str, keys: &[(&str, &str)]) -> Result<Keyring, SealError> {
        let mut map = BTreeMap::new();
        for (kid, hex_key) in keys {
            check_kid(kid)?;
            let raw: [u8; KEY_LEN] = hex::decode(hex_key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| SealError::InvalidKey(kid.to_string()))?;
            map.insert(kid.to_string(), entry(raw)?);
        }
        Keyring::build(current_kid, map)
    }

    /// A keyring with one fresh random key.
    pub fn generate(kid: &str) -> Result<Keyring, SealError> {
        check_kid(kid)?;
        let mut map = BTreeMap::new();
        map.insert(kid.to_string(), entry(random_key()?)?);
        Keyring::build(kid, map)
    }

    /// This keyring plus a fresh random key `new_kid`, which becomes current. Old keys stay so
    /// values they sealed still open.
    pub fn rotate(&self, new_kid: &str) -> Result<Keyring, SealError> {
        check_kid(new_kid)?;
        let mut map: BTreeMap<String, KeyEntry> = self
            .inner
            .keys
            .iter()
            .map(|(k, e)| Ok((k.clone(), entry(e.raw)?)))
            .collect::<Result<_, SealError>>()?;
        map.insert(new_kid.to_string(), entry(random_key()?)?);
        Keyring::build(new_kid, map)
    }

    /// Reads a key file `{"current":"k1","keys":{"k1":"<64 hex>"}}`.
    pub fn from_json(json: &str) -> Result<Keyring, SealError> {
        // serde's message names the field at fault and never includes the key values.
        let file: KeyFile =
            serde_json::from_str(json).map_err(|e| SealError::KeyFile(e.to_string()))?;
        let keys: Vec<(&str, &str)> = file
            .keys
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Keyring::from_hex_keys(&file.current, &keys)
    }

    /// The key file of this keyring. It holds the keys: write it only where secrets belong.
    pub fn to_json(&self) -> String {
        let file = KeyFile {
            current: self.inner.current.clone(),
            keys: self
                .inner
                .keys
                .iter()
                .map(|(k, e)| (k.clone(), hex::encode(e.raw)))
                .collect(),
        };
        // A struct of strings always serializes.
        serde_json::to_string(&file).unwrap_or_default()
    }

    /// The id of the key that seals.
    pub fn current_kid(&self) -> &str {
        &self.inner.current
    }

    /// The ids of all keys, in order.
    pub fn kids(&self) -> Vec<&str> {
        self.inner.keys.keys().map(String::as_str).collect()
    }

    /// Seals `plaintext` with the current key, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let kid = self.inner.current.as_bytes();
        let entry = self
            .inner
            .keys
            .get(&self.inner.current)
            .ok_or_else(|| SealError::NoCurrentKey(self.inner.current.clone()))?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Crypto)?;
        let mut in_out = plaintext.to_vec();
        entry
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| SealError::Crypto)?;
        let mut out = Vec::with_capacity(1 + kid.len() + NONCE_LEN + in_out.len());
        // check_kid keeps ids within 255 bytes.
        out.push(kid.len() as u8);
        out.extend_from_slice(kid);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// Opens a value sealed by this keyring (with any of its keys) under the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&kid_len, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
        let kid_len = usize::from(kid_len);
        if kid_len == 0 || rest.len() < kid_len + NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (kid, rest) = rest.split_at(kid_len);
        let kid = std::str::from_utf8(kid).map_err(|_| SealError::Malformed)?;
        let entry = self
            .inner
            .keys
            .get(kid)
            .ok_or_else(|| SealError::UnknownKey(printable(kid)))?;
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
        let mut in_out = ciphertext.to_vec();
        let plain = entry
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| SealError::Tampered)?;
        Ok(plain.to_vec())
    }

    fn build(current: &str, keys: BTreeMap<String, KeyEntry>) -> Result<Keyring, SealError> {
        if !keys.contains_key(current) {
            return Err(SealError::NoCurrentKey(current.to_string()));
        }
        Ok(Keyring {
            inner: Arc::new(Inner {
                current: current.to_string(),
                keys,
            }),
        })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.inner.current)
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

fn check_kid(kid: &str) -> Result<(), SealError> {
    if kid.is_empty() || kid.len() > 255 || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SealError::InvalidKeyId(printable(kid)));
    }
    Ok(())
}

/// A key id fit for an error message: control characters escaped, length bounded.
fn printable(kid: &str) -> String {
    kid.chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect()
}

fn entry(raw: [u8; KEY_LEN]) -> Result<KeyEntry, SealError> {
    let unbound = UnboundKey::new(&AES_256_GCM, &raw).map_err(|_| SealError::Crypto)?;
    Ok(KeyEntry {
        raw,
        key: LessSafeKey::new(unbound),
    })
}

fn random_key() -> Result<[u8; KEY_LEN], SealError> {
    let mut raw = [0u8; KEY_LEN];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| SealError::Crypto)?;
    Ok(raw)
}
