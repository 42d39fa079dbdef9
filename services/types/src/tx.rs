//! Signed transactions: the envelope every chain shares (chain id, sender, nonce, the
//! application's action bytes, a domain-separated signature; `docs/transactions.md`). Parsed once
//! from bytes into [`Transaction`], which is then known to be canonical, within size limits and
//! with a well-formed envelope; the chain's application parses the action
//! ([`crate::actions`]). The signature is checked
//! separately ([`Transaction::verify_signature`] or, for many at once,
//! [`Transaction::verify_batch`]) so admission can batch it.

use crate::actions::EncodeAction;
use crate::pb;
use prost::Message;
use trellis_consensus::crypto::{self, CryptoError};
use trellis_consensus::types::Encoder;
use trellis_consensus::{Digest, PublicKey, Signature, Signer};

/// Domain of the signed bytes: `len ‖ "trellis/tx/v2" ‖ body`. Version 2 is the envelope whose
/// action is opaque bytes read by the chain's application; a version-1 signature (beacon actions
/// inline) verifies under no version-2 body.
const SIGNING_DOMAIN: &str = "trellis/tx/v2";
/// Domain of the transaction hash.
const HASH_DOMAIN: &str = "trellis/tx-hash/v2";
/// Default admission limit for one encoded transaction.
pub const DEFAULT_MAX_TX_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TxError {
    #[error("transaction is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("transaction is not valid protobuf: {0}")]
    Malformed(String),
    #[error("transaction is not canonically encoded (re-encoding differs)")]
    NonCanonical,
    #[error("field `{field}`: {reason}")]
    Field {
        field: &'static str,
        reason: &'static str,
    },
    #[error("signature does not verify")]
    BadSignature,
}

pub(crate) fn field(field: &'static str, reason: &'static str) -> TxError {
    TxError::Field { field, reason }
}

/// A parsed, canonically encoded, signed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    chain_id: String,
    sender: PublicKey,
    nonce: u64,
    /// The action bytes are the body's last field, so they end it: `body[body.len() - action_len..]`.
    action_len: usize,
    signature: Signature,
    body: Vec<u8>,
    encoded: Vec<u8>,
    hash: Digest,
}

fn signing_bytes(body: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(SIGNING_DOMAIN);
    e.fixed(body);
    e.finish()
}

fn hash_of(body: &[u8]) -> Digest {
    // The hash covers the body only: it names the transaction whatever signature bytes carry it.
    let mut e = Encoder::new(HASH_DOMAIN);
    e.fixed(body);
    e.hash()
}

pub(crate) fn array<const N: usize>(
    bytes: &[u8],
    name: &'static str,
    reason: &'static str,
) -> Result<[u8; N], TxError> {
    bytes.try_into().map_err(|_| field(name, reason))
}

impl Transaction {
    /// Builds and signs a transaction carrying `action` (its application's encoding).
    pub fn sign(
        chain_id: &str,
        signer: &Signer,
        nonce: u64,
        action: impl EncodeAction,
    ) -> Transaction {
        let action = action.encode_action();
        let action_len = action.len();
        let body = pb::TransactionBody {
            chain_id: chain_id.to_string(),
            sender: signer.public_key().0.to_vec(),
            nonce,
            action,
        }
        .encode_to_vec();
        let signature = signer.sign(&signing_bytes(&body));
        let encoded = pb::SignedTransaction {
            body: body.clone(),
            signature: signature.0.to_vec(),
        }
        .encode_to_vec();
        Transaction {
            chain_id: chain_id.to_string(),
            sender: signer.public_key(),
            nonce,
            action_len,
            signature,
            hash: hash_of(&body),
            body,
            encoded,
        }
    }

    /// Parses wire bytes: size, protobuf, canonical encoding, field shapes. Does not check the
    /// signature.
    pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Transaction, TxError> {
        if bytes.len() > max_bytes {
            return Err(TxError::TooLarge {
                size: bytes.len(),
                max: max_bytes,
            });
        }
        let signed =
            pb::SignedTransaction::decode(bytes).map_err(|e| TxError::Malformed(e.to_string()))?;
        if signed.encode_to_vec() != bytes {
            return Err(TxError::NonCanonical);
        }
        let body = pb::TransactionBody::decode(signed.body.as_slice())
            .map_err(|e| TxError::Malformed(e.to_string()))?;
        if body.encode_to_vec() != signed.body {
            return Err(TxError::NonCanonical);
        }
        if body.chain_id.is_empty() {
            return Err(field("chain_id", "is empty"));
        }
        let sender = PublicKey(array(
            &body.sender,
            "sender",
            "is not a 32-byte ed25519 key",
        )?);
        let signature = Signature(array(&signed.signature, "signature", "is not 64 bytes")?);
        if body.action.is_empty() {
            return Err(field("action", "is missing"));
        }
        if !signed.body.ends_with(&body.action) {
            // Canonical encoding puts the last field last; anything else was refused above.
            return Err(TxError::NonCanonical);
        }
        Ok(Transaction {
            chain_id: body.chain_id,
            sender,
            nonce: body.nonce,
            action_len: body.action.len(),
            signature,
            hash: hash_of(&signed.body),
            body: signed.body,
            encoded: bytes.to_vec(),
        })
    }

    /// The hash of the transaction `bytes` would decode to, read without decoding it: the body
    /// field that a canonical encoding starts with, hashed. For finding a copy that was already
    /// decoded from the same bytes (compare [`Transaction::encoded`] before using it); `None` when
    /// the bytes do not start with a complete body field.
    pub fn peek_hash(bytes: &[u8]) -> Option<Digest> {
        // Field 1 (`body`), length-delimited: tag byte 0x0a, then the length as a varint.
        let mut rest = bytes.strip_prefix(&[0x0a])?;
        let len = prost::encoding::decode_varint(&mut rest).ok()?;
        let body = rest.get(..usize::try_from(len).ok()?)?;
        Some(hash_of(body))
    }

    pub fn verify_signature(&self) -> Result<(), TxError> {
        crypto::verify(&self.sender, &self.signature, &signing_bytes(&self.body))
            .map_err(|_| TxError::BadSignature)
    }

    /// Verifies many signatures in one batch; if the batch fails, finds the bad ones. Returns
    /// one result per transaction, in order.
    pub fn verify_batch<'a>(
        txs: impl IntoIterator<Item = &'a Transaction>,
    ) -> Vec<Result<(), TxError>> {
        let txs: Vec<&Transaction> = txs.into_iter().collect();
        let items: Vec<(PublicKey, Signature, Vec<u8>)> = txs
            .iter()
            .map(|t| (t.sender, t.signature, signing_bytes(&t.body)))
            .collect();
        match crypto::verify_batch(&items) {
            Ok(()) => vec![Ok(()); txs.len()],
            Err(CryptoError::BadKey | CryptoError::BadSignature) => {
                txs.iter().map(|t| t.verify_signature()).collect()
            }
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    pub fn sender(&self) -> PublicKey {
        self.sender
    }
    pub fn nonce(&self) -> u64 {
        self.nonce
    }
    /// The action, as its application encoded it.
    pub fn action(&self) -> &[u8] {
        &self.body[self.body.len() - self.action_len..]
    }
    /// The transaction's name: SHA-256 over its domain and body bytes.
    pub fn hash(&self) -> Digest {
        self.hash
    }
    /// The canonical wire bytes.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }
}
