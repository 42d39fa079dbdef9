//! Signed transactions: parsed once from bytes into [`Transaction`], which is then known to be
//! canonical, within size limits and with well-formed fields. The signature is checked
//! separately ([`Transaction::verify_signature`] or, for many at once,
//! [`Transaction::verify_batch`]) so admission can batch it.

use crate::pb;
use prost::Message;
use trellis_consensus::crypto::{self, CryptoError};
use trellis_consensus::types::Encoder;
use trellis_consensus::{Digest, PublicKey, Signature, Signer};

/// Domain of the signed bytes: `len ‖ "trellis/tx/v1" ‖ body`.
const SIGNING_DOMAIN: &str = "trellis/tx/v1";
/// Domain of the transaction hash.
const HASH_DOMAIN: &str = "trellis/tx-hash/v1";
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

fn field(field: &'static str, reason: &'static str) -> TxError {
    TxError::Field { field, reason }
}

/// An anchor tag: at most 64 bytes of UTF-8 without control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Tag(String);

impl Tag {
    pub const MAX_BYTES: usize = 64;

    pub fn parse(s: &str) -> Result<Tag, TxError> {
        if s.len() > Self::MAX_BYTES {
            return Err(field("anchor.tag", "longer than 64 bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err(field("anchor.tag", "contains control characters"));
        }
        Ok(Tag(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Record a 32-byte evidence digest with a short tag.
    Anchor { digest: Digest, tag: Tag },
}

/// A parsed, canonically encoded, signed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    chain_id: String,
    sender: PublicKey,
    nonce: u64,
    action: Action,
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

fn array<const N: usize>(
    bytes: &[u8],
    name: &'static str,
    reason: &'static str,
) -> Result<[u8; N], TxError> {
    bytes.try_into().map_err(|_| field(name, reason))
}

impl Transaction {
    /// Builds and signs a transaction.
    pub fn sign(chain_id: &str, signer: &Signer, nonce: u64, action: Action) -> Transaction {
        let pb_action = match &action {
            Action::Anchor { digest, tag } => pb::transaction_body::Action::Anchor(pb::Anchor {
                digest: digest.0.to_vec(),
                tag: tag.as_str().to_string(),
            }),
        };
        let body = pb::TransactionBody {
            chain_id: chain_id.to_string(),
            sender: signer.public_key().0.to_vec(),
            nonce,
            action: Some(pb_action),
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
            action,
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
        let action = match body.action {
            None => return Err(field("action", "is missing")),
            Some(pb::transaction_body::Action::Anchor(a)) => Action::Anchor {
                digest: Digest(array(&a.digest, "anchor.digest", "is not 32 bytes")?),
                tag: Tag::parse(&a.tag)?,
            },
        };
        Ok(Transaction {
            chain_id: body.chain_id,
            sender,
            nonce: body.nonce,
            action,
            signature,
            hash: hash_of(&signed.body),
            body: signed.body,
            encoded: bytes.to_vec(),
        })
    }

    pub fn verify_signature(&self) -> Result<(), TxError> {
        crypto::verify(&self.sender, &self.signature, &signing_bytes(&self.body))
            .map_err(|_| TxError::BadSignature)
    }

    /// Verifies many signatures in one batch; if the batch fails, finds the bad ones. Returns
    /// one result per transaction, in order.
    pub fn verify_batch(txs: &[Transaction]) -> Vec<Result<(), TxError>> {
        let items: Vec<(PublicKey, Signature, Vec<u8>)> = txs
            .iter()
            .map(|t| (t.sender, t.signature, signing_bytes(&t.body)))
            .collect();
        match crypto::verify_batch(&items) {
            Ok(()) => vec![Ok(()); txs.len()],
            Err(CryptoError::BadKey | CryptoError::BadSignature) => {
                txs.iter().map(Transaction::verify_signature).collect()
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
    pub fn action(&self) -> &Action {
        &self.action
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
