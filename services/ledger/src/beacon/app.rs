//! The beacon as an [`Application`]: its genesis from the genesis file, execution, the
//! committee it decides, and its public read routes.

use super::{
    BeaconGenesis, GenesisAccount, GenesisNode, GenesisShardSpec, Governance, Rejection,
    execute_block_checked,
};
use crate::app::{
    self, Application, BlockInput, ChainGenesis, ExecutedBlock, GenesisError, ReadArgs, ReadError,
    ReadRoute, Refusal, TxReceipt,
};
use crate::state::{StateError, StateKey, StateView, decode_at};
use trellis_consensus::{Committee, EpochState};
use trellis_types::genesis::Genesis;
use trellis_types::{BeaconAction, Digest, PublicKey, TxError, pb};

/// The beacon application of the chain a genesis file describes.
pub struct BeaconApp {
    genesis: Genesis,
}

impl BeaconApp {
    /// The file is valid ([`Genesis::from_json`] checked it).
    pub fn new(genesis: Genesis) -> BeaconApp {
        BeaconApp { genesis }
    }

    /// The beacon's genesis as the application sees it.
    pub fn beacon_genesis(genesis: &Genesis) -> Result<BeaconGenesis, GenesisError> {
        let bad = |e: trellis_types::GenesisError| GenesisError(e.to_string());
        let accounts = genesis
            .parse_accounts()
            .map_err(bad)?
            .into_iter()
            .map(|(key, org, role)| GenesisAccount { key, org, role })
            .collect();
        let p = &genesis.params;
        let mut nodes = Vec::new();
        let committee = genesis.committee().map_err(bad)?;
        for (v, key) in genesis.validators.iter().zip(committee.members()) {
            if let Some(org) = &v.org {
                nodes.push(GenesisNode {
                    key: *key,
                    org: org.clone(),
                    name: v.name.clone(),
                });
            }
        }
        let mut shards = Vec::new();
        for (shard, committee) in genesis
            .shards
            .iter()
            .zip(genesis.shard_committees().map_err(bad)?)
        {
            for (v, key) in shard.validators.iter().zip(committee.members()) {
                nodes.push(GenesisNode {
                    key: *key,
                    org: v.org.clone().unwrap_or_default(),
                    name: v.name.clone(),
                });
            }
            shards.push(GenesisShardSpec {
                shard_id: shard.shard_id.clone(),
                members: shard.members.clone(),
                committee: committee.members().to_vec(),
            });
        }
        Ok(BeaconGenesis {
            chain_id: genesis.chain_id.clone(),
            committee: committee.members().to_vec(),
            accounts,
            nodes,
            shards,
            governance: Governance {
                approval_num: p.approval_num,
                approval_den: p.approval_den,
                proposal_ttl_blocks: p.proposal_ttl_blocks,
            },
        })
    }
}

impl From<&Rejection> for Refusal {
    fn from(r: &Rejection) -> Refusal {
        Refusal {
            code: r.code(),
            reason: r.to_string(),
        }
    }
}

/// The committee the beacon decided for `chain_id`.
pub fn read_committee(
    view: &(impl StateView + ?Sized),
    chain_id: &str,
) -> Result<Option<Committee>, StateError> {
    let key = StateKey::committee(chain_id);
    let Some(record) = decode_at::<pb::ChainCommittee>(view, &key)? else {
        return Ok(None);
    };
    let mut members = Vec::with_capacity(record.members.len());
    for m in &record.members {
        let k =
            <[u8; 32]>::try_from(m.as_slice()).map_err(|_| StateError::Corrupt(key.to_string()))?;
        members.push(PublicKey(k));
    }
    Committee::new(members)
        .map(Some)
        .map_err(|_| StateError::Corrupt(key.to_string()))
}

/// The beacon's record of a shard.
pub fn read_shard(
    view: &(impl StateView + ?Sized),
    shard_id: &str,
) -> Result<Option<pb::ShardRecord>, StateError> {
    decode_at(view, &StateKey::shard(shard_id))
}

impl Application for BeaconApp {
    fn kind(&self) -> &'static str {
        "beacon"
    }

    fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    fn genesis(&self) -> Result<ChainGenesis, GenesisError> {
        let bad = |e: trellis_types::GenesisError| GenesisError(e.to_string());
        let writes = Self::beacon_genesis(&self.genesis)?
            .write_set()
            .map_err(|e| GenesisError(e.to_string()))?;
        Ok(ChainGenesis {
            chain_id: self.genesis.chain_id.clone(),
            committee: self.genesis.committee().map_err(bad)?,
            genesis_time_ms: self.genesis.genesis_time_ms,
            params: self.genesis.params.clone(),
            digest: self.genesis.digest().map_err(bad)?,
            writes,
        })
    }

    /// The consortium registry is public: org ids, keys, hashes and salted commitments only.
    fn public(&self) -> bool {
        true
    }

    fn check_action(&self, action: &[u8]) -> Result<(), TxError> {
        BeaconAction::decode(action).map(|_| ())
    }

    fn execute(
        &self,
        block: BlockInput<'_>,
        view: &dyn StateView,
    ) -> Result<ExecutedBlock, StateError> {
        let outcome =
            execute_block_checked(&self.genesis.chain_id, block.height, view, block.txs, |i| {
                block.verified.get(i).copied().unwrap_or(false)
            })?;
        Ok(ExecutedBlock {
            writes: outcome.writes,
            receipts: outcome
                .receipts
                .into_iter()
                .map(|r| TxReceipt {
                    tx_hash: r.tx_hash,
                    outcome: match &r.outcome {
                        Ok(a) => Ok(app::Applied {
                            facts: a
                                .proposal_id
                                .map(|id| ("proposal_id", id))
                                .into_iter()
                                .collect(),
                        }),
                        Err(rejection) => Err(rejection.into()),
                    },
                })
                .collect(),
        })
    }

    fn next_committee(
        &self,
        view: &dyn StateView,
        _ending: &EpochState,
    ) -> Result<Option<Committee>, StateError> {
        // Written at genesis and never deleted: its absence is damage, not "undecided".
        read_committee(view, &self.genesis.chain_id)?
            .map(Some)
            .ok_or_else(|| {
                StateError::Corrupt(StateKey::committee(&self.genesis.chain_id).to_string())
            })
    }

    fn routes(&self) -> &'static [ReadRoute] {
        super::reads::ROUTES
    }

    fn read(
        &self,
        route: &str,
        args: &ReadArgs,
        view: &dyn StateView,
    ) -> Result<serde_json::Value, ReadError> {
        super::reads::read(route, args, view)
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        super::reads::openapi()
    }

    fn proof_key(&self, namespace: &str, id: &str) -> Result<StateKey, ReadError> {
        match namespace {
            "anchor" => Ok(StateKey::anchor(&Digest(app::hex32(id, "id")?))),
            "account" => Ok(StateKey::account(&PublicKey(app::hex32(id, "id")?))),
            "attestation" => Ok(StateKey::attestation(&PublicKey(app::hex32(id, "id")?))),
            "member" => {
                trellis_types::OrgId::parse(id, "id").map_err(|e| ReadError::BadParam {
                    field: "id",
                    reason: e.to_string(),
                })?;
                Ok(StateKey::member(id))
            }
            "committee" => Ok(StateKey::committee(id)),
            "proposal" => {
                id.parse::<u64>()
                    .map(StateKey::proposal)
                    .map_err(|_| ReadError::BadParam {
                        field: "id",
                        reason: "must be a proposal number".into(),
                    })
            }
            _ => Err(ReadError::BadParam {
                field: "namespace",
                reason: "must be one of anchor, account, attestation, member, committee, proposal"
                    .into(),
            }),
        }
    }
}
