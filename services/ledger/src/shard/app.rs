//! The shard as an [`Application`]: its genesis from its spec, execution, the next committee
//! the beacon decided for it (carried in by certified updates), and its members-only read
//! routes.

use super::{ShardSpec, execute_block, read_next_committee};
use crate::app::{
    self, Application, BeaconFollow, BlockInput, ChainGenesis, ExecutedBlock, GenesisError,
    ReadArgs, ReadError, ReadRoute,
};
use crate::state::{StateError, StateKey, StateView, decode_at};
use trellis_consensus::{Committee, EpochState};
use trellis_types::{Digest, EncodeAction, PublicKey, ShardAction, TxError, pb};

/// The shard application of the chain a [`ShardSpec`] describes.
pub struct ShardApp {
    spec: ShardSpec,
}

impl ShardApp {
    /// The spec is checked when the genesis is built ([`Application::genesis`]).
    pub fn new(spec: ShardSpec) -> ShardApp {
        ShardApp { spec }
    }

    pub fn spec(&self) -> &ShardSpec {
        &self.spec
    }
}

impl Application for ShardApp {
    fn kind(&self) -> &'static str {
        "shard"
    }

    fn chain_id(&self) -> &str {
        &self.spec.shard_id
    }

    fn genesis(&self) -> Result<ChainGenesis, GenesisError> {
        let bad = |e: super::SpecError| GenesisError(e.to_string());
        let writes = self.spec.write_set().map_err(bad)?;
        Ok(ChainGenesis {
            chain_id: self.spec.shard_id.clone(),
            committee: self.spec.first_committee().map_err(bad)?,
            genesis_time_ms: self.spec.genesis_time_ms,
            params: self.spec.params.clone(),
            digest: self.spec.origin,
            writes,
        })
    }

    fn beacon_follow(
        &self,
        own: &dyn StateView,
        beacon: &dyn StateView,
    ) -> Result<Option<BeaconFollow>, StateError> {
        let trust_key = StateKey::beacon_trust();
        let trust: pb::BeaconTrust = decode_at(own, &trust_key)?
            .ok_or_else(|| StateError::Corrupt(trust_key.to_string()))?;
        let id = &self.spec.shard_id;
        let mut keys = vec![StateKey::shard(id), StateKey::committee(id)];
        // The member records of the orgs the beacon names now (an org added there comes with
        // its keys; one removed there is left out by the shard record itself).
        if let Some(record) = crate::beacon::read_shard(beacon, id)? {
            keys.extend(record.members.iter().map(|org| StateKey::member(org)));
        }
        keys.sort();
        Ok(Some(BeaconFollow {
            beacon_chain_id: trust.beacon_chain_id,
            trusted_epoch: trust.epoch,
            applied_state_height: trust.applied_state_height,
            keys,
        }))
    }

    fn certified_update_action(
        &self,
        headers: Vec<trellis_consensus::BlockHeader>,
        commit_qc: trellis_consensus::QuorumCert,
        epoch_changes: Vec<trellis_consensus::EpochChangeProof>,
        values: Vec<trellis_types::ProvenValue>,
    ) -> Option<Vec<u8>> {
        Some(
            ShardAction::CertifiedUpdate {
                headers,
                commit_qc,
                epoch_changes,
                values,
            }
            .encode_action(),
        )
    }

    fn check_action(&self, action: &[u8]) -> Result<(), TxError> {
        ShardAction::decode(action).map(|_| ())
    }

    fn execute(
        &self,
        block: BlockInput<'_>,
        view: &dyn StateView,
    ) -> Result<ExecutedBlock, StateError> {
        execute_block(&self.spec.shard_id, block, view)
    }

    fn next_committee(
        &self,
        view: &dyn StateView,
        _ending: &EpochState,
    ) -> Result<Option<Committee>, StateError> {
        // Written at genesis and never deleted: its absence is damage, not "undecided".
        read_next_committee(view)?
            .map(Some)
            .ok_or_else(|| StateError::Corrupt(StateKey::next_committee().to_string()))
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
        super::reads::read(&self.spec.shard_id, route, args, view)
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        super::reads::openapi()
    }

    fn proof_key(&self, namespace: &str, id: &str) -> Result<StateKey, ReadError> {
        match namespace {
            "record" => {
                // A collection holds no `/`; the record key may.
                let (collection, key) = id.split_once('/').ok_or(ReadError::BadParam {
                    field: "id",
                    reason: "must be collection/key".into(),
                })?;
                let (collection, key) = super::reads::record_path(collection, key, Some("id"))?;
                Ok(StateKey::record(collection.as_str(), key.as_str()))
            }
            "anchor" => Ok(StateKey::anchor(&Digest(app::hex32(id, "id")?))),
            "account" => Ok(StateKey::account(&PublicKey(app::hex32(id, "id")?))),
            _ => Err(ReadError::BadParam {
                field: "namespace",
                reason: "must be one of record, anchor, account".into(),
            }),
        }
    }
}
