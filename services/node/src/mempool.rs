//! The transaction pool: admission and block filling.
//!
//! Admission checks, in order: size and canonical encoding ([`Transaction::decode`]), chain id,
//! that the sender is a registered account with a nonce not yet used (no replay) and not too far
//! ahead, duplicates (ignored, not an error), room in the pool (count and bytes; a full pool
//! refuses rather than grows), and last the ZIP-215 signature, verified for the whole batch at
//! once. Blocks are filled per account in nonce order, accounts in turn, under count and byte
//! limits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use trellis_ledger::state::StateError;
use trellis_types::tx::DEFAULT_MAX_TX_BYTES;
use trellis_types::{Digest, PublicKey, Transaction, TxError};

/// Limits of one pool.
#[derive(Clone, Debug)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_tx_bytes: usize,
    /// How far past an account's next nonce a transaction may be queued.
    pub max_nonce_gap: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_tx_bytes: DEFAULT_MAX_TX_BYTES,
            max_nonce_gap: 1_000,
        }
    }
}

/// The chain's view of accounts, as of the last committed block.
pub trait Accounts {
    /// The next nonce `account` may use, `None` if it is not a registered account; an error
    /// when the state could not be read (never taken for "not registered").
    fn next_nonce(&self, account: &PublicKey) -> Result<Option<u64>, StateError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    Added,
    /// Already in the pool: accepted again without effect.
    Duplicate,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum Rejected {
    #[error(transparent)]
    Invalid(#[from] TxError),
    #[error("transaction is for chain `{got}`, this is `{want}`")]
    WrongChain { got: String, want: String },
    #[error("sender is not a registered account")]
    UnknownAccount,
    #[error("nonce {got} was already used; the next nonce is {next}")]
    NonceUsed { got: u64, next: u64 },
    #[error("nonce {got} is too far ahead of the next nonce {next}")]
    NonceTooFarAhead { got: u64, next: u64 },
    #[error("another transaction with nonce {0} from this account is pending")]
    NonceTaken(u64),
    #[error("the pool is full; retry later")]
    Full,
    #[error("the chain's state cannot be read; retry later")]
    Unavailable,
}

impl Rejected {
    /// A full pool or unreadable state is temporary (HTTP 503 with Retry-After); everything
    /// else is the sender's.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Rejected::Full | Rejected::Unavailable)
    }
}

/// The chain application's check of an action's bytes ([`trellis_ledger::app::Application::check_action`]).
pub type ActionCheck = Arc<dyn Fn(&[u8]) -> Result<(), TxError> + Send + Sync>;

/// Decoding, the chain check and the application's check of the action: pure, so it runs
/// outside any lock.
#[derive(Clone)]
pub struct TxDecoder {
    chain_id: String,
    max_tx_bytes: usize,
    check_action: Option<ActionCheck>,
}

impl TxDecoder {
    pub fn decode(&self, bytes: &[u8]) -> Result<Transaction, Rejected> {
        let tx = Transaction::decode(bytes, self.max_tx_bytes)?;
        if tx.chain_id() != self.chain_id {
            return Err(Rejected::WrongChain {
                got: tx.chain_id().to_string(),
                want: self.chain_id.clone(),
            });
        }
        if let Some(check) = &self.check_action {
            check(tx.action())?;
        }
        Ok(tx)
    }
}

/// Pending transactions, bounded in count and bytes. Deterministic: ordered maps only.
/// Transactions are shared (`Arc`): blocks taken from the pool and blocks received from peers
/// refer to the pool's copy instead of copying or decoding again, and the map moves pointers
/// rather than whole transactions when it rebalances.
pub struct Mempool {
    chain_id: String,
    config: MempoolConfig,
    check_action: Option<ActionCheck>,
    /// Never iterated (blocks are filled through `by_account`), so hashed: each transaction is
    /// looked up here about six times on its way. SipHash with a random key, because senders
    /// choose the transactions and so, by grinding, their hashes' low bits.
    by_hash: HashMap<Digest, Arc<Transaction>>,
    by_account: BTreeMap<PublicKey, BTreeMap<u64, Digest>>,
    bytes: usize,
}

impl Mempool {
    pub fn new(chain_id: &str, config: MempoolConfig) -> Mempool {
        Mempool {
            chain_id: chain_id.to_string(),
            config,
            check_action: None,
            by_hash: HashMap::new(),
            by_account: BTreeMap::new(),
            bytes: 0,
        }
    }

    /// Admission also checks each action with the chain's application.
    pub fn with_action_check(mut self, check: ActionCheck) -> Mempool {
        self.check_action = Some(check);
        self
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn contains(&self, hash: &Digest) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Whether the pool holds `tx` byte for byte, so its signature was verified at admission.
    /// The hash alone is not enough: it covers the body, and a proposer may pair a pooled
    /// body with other signature bytes.
    pub fn holds_verified(&self, tx: &Transaction) -> bool {
        // A block's transactions are mostly the pool's own copies (see `decode_payload`): the
        // same allocation needs no byte comparison.
        self.by_hash.get(&tx.hash()).is_some_and(|pooled| {
            std::ptr::eq(Arc::as_ptr(pooled), tx) || pooled.encoded() == tx.encoded()
        })
    }

    /// The pooled transaction named `hash` if its bytes are `encoded`.
    pub fn get_exact(&self, hash: &Digest, encoded: &[u8]) -> Option<&Arc<Transaction>> {
        self.by_hash
            .get(hash)
            .filter(|pooled| pooled.encoded() == encoded)
    }

    /// Admits a batch of encoded transactions; one result per input, in order.
    pub fn admit(
        &mut self,
        raw: &[Vec<u8>],
        accounts: &impl Accounts,
    ) -> Vec<Result<Admitted, Rejected>> {
        let mut results: Vec<Result<Admitted, Rejected>> = Vec::with_capacity(raw.len());
        let mut candidates = Vec::new();
        for bytes in raw {
            match self.precheck(bytes, accounts) {
                Ok(Some(tx)) => {
                    candidates.push((results.len(), tx));
                    results.push(Ok(Admitted::Added));
                }
                Ok(None) => results.push(Ok(Admitted::Duplicate)),
                Err(e) => results.push(Err(e)),
            }
        }
        let verdicts = Transaction::verify_batch(candidates.iter().map(|(_, t)| t));
        for ((slot, tx), verdict) in candidates.into_iter().zip(verdicts) {
            results[slot] = match verdict {
                Err(e) => Err(e.into()),
                // Earlier members of this batch may have taken the nonce or filled the pool.
                Ok(()) => self.insert(tx),
            };
        }
        results
    }

    /// What [`TxDecoder::decode`] needs, so callers decode without holding a lock on the pool.
    pub fn decoder(&self) -> TxDecoder {
        TxDecoder {
            chain_id: self.chain_id.clone(),
            max_tx_bytes: self.config.max_tx_bytes,
            check_action: self.check_action.clone(),
        }
    }

    /// Decoding and the chain check.
    pub fn decode(&self, bytes: &[u8]) -> Result<Transaction, Rejected> {
        self.decoder().decode(bytes)
    }

    /// The stateful checks of a decoded transaction (duplicate, account, nonce); `Ok(false)` for
    /// a duplicate. The caller verifies the signature (outside any lock) and then calls
    /// [`Mempool::insert_verified`].
    pub fn screen(&self, tx: &Transaction, accounts: &impl Accounts) -> Result<bool, Rejected> {
        if self.by_hash.contains_key(&tx.hash()) {
            return Ok(false);
        }
        let next = accounts
            .next_nonce(&tx.sender())
            .map_err(|_| Rejected::Unavailable)?
            .ok_or(Rejected::UnknownAccount)?;
        if tx.nonce() < next {
            return Err(Rejected::NonceUsed {
                got: tx.nonce(),
                next,
            });
        }
        if tx.nonce() - next > self.config.max_nonce_gap {
            return Err(Rejected::NonceTooFarAhead {
                got: tx.nonce(),
                next,
            });
        }
        Ok(true)
    }

    /// Adds a transaction whose signature the caller has verified.
    pub fn insert_verified(&mut self, tx: Transaction) -> Result<Admitted, Rejected> {
        self.insert(tx)
    }

    /// How many transactions of `account` the pool holds.
    pub fn pending_from(&self, account: &PublicKey) -> usize {
        self.by_account.get(account).map_or(0, BTreeMap::len)
    }

    pub fn get(&self, hash: &Digest) -> Option<&Arc<Transaction>> {
        self.by_hash.get(hash)
    }

    /// Everything but the signature; `Ok(None)` for a duplicate.
    fn precheck(
        &self,
        bytes: &[u8],
        accounts: &impl Accounts,
    ) -> Result<Option<Transaction>, Rejected> {
        let tx = self.decode(bytes)?;
        Ok(self.screen(&tx, accounts)?.then_some(tx))
    }

    fn insert(&mut self, tx: Transaction) -> Result<Admitted, Rejected> {
        if self.by_hash.contains_key(&tx.hash()) {
            return Ok(Admitted::Duplicate);
        }
        let size = tx.encoded().len();
        if self.by_hash.len() >= self.config.max_txs || self.bytes + size > self.config.max_bytes {
            return Err(Rejected::Full);
        }
        let nonces = self.by_account.entry(tx.sender()).or_default();
        if nonces.contains_key(&tx.nonce()) {
            return Err(Rejected::NonceTaken(tx.nonce()));
        }
        nonces.insert(tx.nonce(), tx.hash());
        self.bytes += size;
        self.by_hash.insert(tx.hash(), Arc::new(tx));
        Ok(Admitted::Added)
    }

    /// Transactions for the next block: each account's run of consecutive nonces from its next
    /// nonce, taken one per account in turn, within `max_txs` and `max_bytes`.
    pub fn next_block(
        &self,
        accounts: &impl Accounts,
        max_txs: usize,
        max_bytes: usize,
    ) -> Vec<Arc<Transaction>> {
        let mut queues: VecDeque<(u64, std::collections::btree_map::Range<'_, u64, Digest>)> = self
            .by_account
            .iter()
            .filter_map(|(account, nonces)| {
                // Unreadable (the caller's state records the fault) or unregistered: nothing
                // of this account goes into the block.
                let next = accounts.next_nonce(account).ok().flatten()?;
                Some((next, nonces.range(next..)))
            })
            .collect();
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max_txs {
            let Some((expected, mut range)) = queues.pop_front() else {
                break;
            };
            let Some((nonce, hash)) = range.next() else {
                continue;
            };
            if *nonce != expected {
                continue; // a gap: later nonces wait for the missing one
            }
            let Some(tx) = self.by_hash.get(hash) else {
                continue;
            };
            let size = tx.encoded().len();
            if bytes + size > max_bytes {
                continue; // this account's next is too big for the rest; others may fit
            }
            bytes += size;
            out.push(tx.clone());
            queues.push_back((expected + 1, range));
        }
        out
    }

    /// Drops transactions a committed block included, whatever their outcome: a rejected one
    /// must not be proposed again.
    pub fn remove(&mut self, hashes: impl IntoIterator<Item = Digest>) {
        for hash in hashes {
            if let Some(tx) = self.by_hash.remove(&hash) {
                self.bytes -= tx.encoded().len();
                if let Some(nonces) = self.by_account.get_mut(&tx.sender()) {
                    nonces.remove(&tx.nonce());
                    if nonces.is_empty() {
                        self.by_account.remove(&tx.sender());
                    }
                }
            }
        }
    }

    /// Drops what the last commit made obsolete: included transactions and any nonce below an
    /// account's next nonce (including accounts no longer registered).
    pub fn prune(&mut self, accounts: &impl Accounts) {
        let mut removed = Vec::new();
        self.by_account.retain(|account, nonces| {
            let keep = match accounts.next_nonce(account) {
                Ok(Some(next)) => nonces.split_off(&next),
                Ok(None) => BTreeMap::new(),
                // Unreadable: keep everything; dropping would lose transactions answered 202.
                Err(_) => return true,
            };
            removed.extend(nonces.values().copied());
            *nonces = keep;
            !nonces.is_empty()
        });
        for hash in removed {
            if let Some(tx) = self.by_hash.remove(&hash) {
                self.bytes -= tx.encoded().len();
            }
        }
    }
}
