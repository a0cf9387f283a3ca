//! Persistence on redb: the live cycle state, receipted update bytes, closed cycles and the
//! global model of every cycle. Each write is one transaction, so `kill -9` leaves the last
//! committed state; a receipt is only answered after the transaction that holds it commits.

use crate::cycle::CycleState;
use crate::work::{ModelQuality, WorkSetup};
use bitcoin::secp256k1::PublicKey;
use primitives::Hash256;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Small named records: the work setup and the live cycle state (JSON).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Closed cycles: cycle number -> JSON [`CycleState`].
const CYCLES: TableDefinition<u64, &[u8]> = TableDefinition::new("cycles");
/// Receipted updates: cycle (u64 BE) || miner key (33) -> safetensors bytes.
const UPDATES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("updates");
/// Answers to challenges: cycle (u64 BE) || miner key (33) -> `proof::ChallengeResponse` bytes.
const ANSWERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("answers");
/// Fraud evidence: cycle (u64 BE) || miner key (33) -> JSON `proof::FraudEvidence`.
const EVIDENCE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("evidence");
/// The shard (safetensors, as served) of each piece of fraud evidence, same key: with the
/// cycle's start model it is all a third party needs to recheck the evidence.
const EVIDENCE_SHARDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("evidence_shards");
/// Evidence of a judged verifier claim: cycle (u64 BE) || miner key (33) || interval (u64 BE)
/// -> JSON [`crate::api::ClaimEvidence`]; its shard is the miner's in `EVIDENCE_SHARDS`.
const CLAIM_EVIDENCE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("claim_evidence");
/// Slashes sent: cycle (u64 BE) || miner key (33) -> JSON [`crate::api::SlashRecord`].
const SLASHES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("slashes");
/// Global models: cycle in which the model is trained -> safetensors bytes.
const MODELS: TableDefinition<u64, &[u8]> = TableDefinition::new("models");
/// Per-model facts: cycle -> JSON [`ModelInfo`].
const MODEL_INFO: TableDefinition<u64, &[u8]> = TableDefinition::new("model_info");
/// Training jobs, the coordinator's own workload included: job id (32) -> JSON
/// [`crate::jobs::StoredJob`].
const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
/// Each job's newest merged model: job id (32) -> safetensors bytes.
const JOB_MODELS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("job_models");

const META_SETUP: &str = "setup";
const META_CURRENT: &str = "current_cycle";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    #[error("stored {what} does not parse: {source}")]
    Corrupt {
        what: &'static str,
        source: serde_json::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

/// What is kept about each global model besides its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub model_hash: Hash256,
    pub quality: ModelQuality,
    /// The job the model belongs to (zero in a store from before jobs: the coordinator's own
    /// workload).
    #[serde(default)]
    pub job: Hash256,
}

pub struct Store {
    db: Database,
}

fn update_key(cycle: u64, miner: &PublicKey) -> Vec<u8> {
    [&cycle.to_be_bytes()[..], &miner.serialize()].concat()
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("coordinator records always serialise")
}

fn from_json<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt { what, source })
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(META)?;
        txn.open_table(CYCLES)?;
        txn.open_table(UPDATES)?;
        txn.open_table(ANSWERS)?;
        txn.open_table(EVIDENCE)?;
        txn.open_table(EVIDENCE_SHARDS)?;
        txn.open_table(MODELS)?;
        txn.open_table(MODEL_INFO)?;
        txn.open_table(SLASHES)?;
        txn.open_table(CLAIM_EVIDENCE)?;
        txn.open_table(JOBS)?;
        txn.open_table(JOB_MODELS)?;
        txn.commit()?;
        Ok(Store { db })
    }

    pub fn setup(&self) -> Result<Option<WorkSetup>, StoreError> {
        self.meta(META_SETUP, "work setup")
    }

    pub fn put_setup(&self, setup: &WorkSetup) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_SETUP, to_json(setup).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn current(&self) -> Result<Option<CycleState>, StoreError> {
        self.meta(META_CURRENT, "current cycle")
    }

    fn meta<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        match table.get(key)? {
            Some(v) => from_json(what, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Saves the live cycle state.
    pub fn put_current(&self, state: &CycleState) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_CURRENT, to_json(state).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Saves the live state together with a newly receipted update, atomically.
    pub fn put_submission(
        &self,
        state: &CycleState,
        miner: &PublicKey,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.put_with_state(UPDATES, state, miner, bytes)
    }

    /// `bytes` under (cycle, miner) in `table` and the live state, in one transaction.
    fn put_with_state(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        state: &CycleState,
        miner: &PublicKey,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(table)?
            .insert(update_key(state.cycle(), miner).as_slice(), bytes)?;
        txn.open_table(META)?
            .insert(META_CURRENT, to_json(state).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Saves the live state together with a miner's accepted answer, atomically.
    pub fn put_answer(
        &self,
        state: &CycleState,
        miner: &PublicKey,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.put_with_state(ANSWERS, state, miner, bytes)
    }

    pub fn answer(&self, cycle: u64, miner: &PublicKey) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ANSWERS)?;
        Ok(table
            .get(update_key(cycle, miner).as_slice())?
            .map(|v| v.value().to_vec()))
    }

    /// Keeps fraud evidence with the shard it was found on, atomically.
    pub fn put_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        evidence: &proof::FraudEvidence,
        shard: &[u8],
    ) -> Result<(), StoreError> {
        let key = update_key(cycle, miner);
        let txn = self.db.begin_write()?;
        txn.open_table(EVIDENCE)?
            .insert(key.as_slice(), to_json(evidence).as_slice())?;
        txn.open_table(EVIDENCE_SHARDS)?
            .insert(key.as_slice(), shard)?;
        txn.commit()?;
        Ok(())
    }

    /// Keeps the evidence of a judged claim on `miner`'s interval, with the miner's shard (once
    /// per miner and cycle: the shard is the same for every interval).
    pub fn put_claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        evidence: &crate::api::ClaimEvidence,
        shard: &[u8],
    ) -> Result<(), StoreError> {
        let key = update_key(cycle, miner);
        let claim_key = [&key[..], &evidence.opening.interval.to_be_bytes()].concat();
        let txn = self.db.begin_write()?;
        txn.open_table(CLAIM_EVIDENCE)?
            .insert(claim_key.as_slice(), to_json(evidence).as_slice())?;
        {
            let mut shards = txn.open_table(EVIDENCE_SHARDS)?;
            if shards.get(key.as_slice())?.is_none() {
                shards.insert(key.as_slice(), shard)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The evidence of the judged claim on `miner`'s `interval` in `cycle`.
    pub fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<Option<crate::api::ClaimEvidence>, StoreError> {
        let key = [&update_key(cycle, miner)[..], &interval.to_be_bytes()].concat();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CLAIM_EVIDENCE)?;
        table
            .get(key.as_slice())?
            .map(|v| from_json("claim evidence", v.value()))
            .transpose()
    }

    pub fn evidence_shard(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE_SHARDS)?;
        Ok(table
            .get(update_key(cycle, miner).as_slice())?
            .map(|v| v.value().to_vec()))
    }

    pub fn evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<Option<proof::FraudEvidence>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(EVIDENCE)?;
        table
            .get(update_key(cycle, miner).as_slice())?
            .map(|v| from_json("evidence", v.value()))
            .transpose()
    }

    /// Keeps the slash sent for `miner`'s fraud in `cycle`.
    pub fn put_slash(&self, cycle: u64, slash: &crate::api::SlashRecord) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(SLASHES)?.insert(
            update_key(cycle, &slash.miner).as_slice(),
            to_json(slash).as_slice(),
        )?;
        txn.commit()?;
        Ok(())
    }

    /// The slashes sent for fraud found in `cycle`, by miner key.
    pub fn slashes(&self, cycle: u64) -> Result<Vec<crate::api::SlashRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SLASHES)?;
        let from = [&cycle.to_be_bytes()[..], &[0u8; 33]].concat();
        let to = [&cycle.to_be_bytes()[..], &[0xffu8; 33]].concat();
        let mut out = Vec::new();
        for entry in table.range(from.as_slice()..=to.as_slice())? {
            let (_, v) = entry?;
            out.push(from_json("slash", v.value())?);
        }
        Ok(out)
    }

    /// Every bond this coordinator has sent a slash for, over all cycles.
    pub fn slashed_bonds(&self) -> Result<Vec<crate::api::BondOutpoint>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SLASHES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            let slash: crate::api::SlashRecord = from_json("slash", v.value())?;
            out.push(slash.bond);
        }
        Ok(out)
    }

    /// Archives a closed cycle and makes `next` the live one, atomically.
    pub fn close_and_open(&self, closed: &CycleState, next: &CycleState) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(CYCLES)?
            .insert(closed.cycle(), to_json(closed).as_slice())?;
        txn.open_table(META)?
            .insert(META_CURRENT, to_json(next).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn update(&self, cycle: u64, miner: &PublicKey) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(UPDATES)?;
        Ok(table
            .get(update_key(cycle, miner).as_slice())?
            .map(|v| v.value().to_vec()))
    }

    /// A cycle's state: the live one or an archived one.
    pub fn cycle(&self, cycle: u64) -> Result<Option<CycleState>, StoreError> {
        if let Some(current) = self.current()?.filter(|c| c.cycle() == cycle) {
            return Ok(Some(current));
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CYCLES)?;
        match table.get(cycle)? {
            Some(v) => from_json("cycle record", v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Archived cycles `from..`, at most `limit`, in order.
    /// Closed cycles `from..`: at most `limit` of them, and no more than `bytes_max` of stored
    /// JSON together (but always the first one found), so a page's memory is bounded.
    pub fn closed_cycles(
        &self,
        from: u64,
        limit: usize,
        bytes_max: usize,
    ) -> Result<Vec<CycleState>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(CYCLES)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in table.range(from..)?.take(limit) {
            let (_, v) = entry?;
            bytes = bytes.saturating_add(v.value().len());
            if bytes > bytes_max && !out.is_empty() {
                break;
            }
            out.push(from_json("cycle record", v.value())?);
        }
        Ok(out)
    }

    /// Stores the global model trained in `cycle` (idempotent: a re-run evaluation after a
    /// crash computes the same bytes).
    pub fn put_model(&self, cycle: u64, bytes: &[u8], info: &ModelInfo) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(MODELS)?.insert(cycle, bytes)?;
        txn.open_table(MODEL_INFO)?
            .insert(cycle, to_json(info).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn model(&self, cycle: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MODELS)?;
        Ok(table.get(cycle)?.map(|v| v.value().to_vec()))
    }

    /// The newest stored model: its cycle and bytes.
    pub fn latest_model(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MODELS)?;
        let last = table.last()?.map(|(k, v)| (k.value(), v.value().to_vec()));
        Ok(last)
    }

    /// The facts about the model trained in `cycle`.
    pub fn model_info(&self, cycle: u64) -> Result<Option<ModelInfo>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MODEL_INFO)?;
        match table.get(cycle)? {
            Some(v) => from_json("model info", v.value()).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_job(&self, job: &crate::jobs::StoredJob) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?
            .insert(&job.status.id.0[..], to_json(job).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    pub fn job(&self, id: &Hash256) -> Result<Option<crate::jobs::StoredJob>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        match table.get(&id.0[..])? {
            Some(v) => from_json("job", v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Every job, in the order they were posted (the coordinator's own first).
    pub fn jobs(&self) -> Result<Vec<crate::jobs::StoredJob>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut out: Vec<crate::jobs::StoredJob> = Vec::new();
        for entry in table.iter()? {
            out.push(from_json("job", entry?.1.value())?);
        }
        out.sort_by_key(|j| j.seq);
        Ok(out)
    }

    /// A job's status and its newest merged model, in one transaction.
    pub fn put_job_model(
        &self,
        job: &crate::jobs::StoredJob,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?
            .insert(&job.status.id.0[..], to_json(job).as_slice())?;
        txn.open_table(JOB_MODELS)?
            .insert(&job.status.id.0[..], bytes)?;
        txn.commit()?;
        Ok(())
    }

    pub fn job_model(&self, id: &Hash256) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOB_MODELS)?;
        Ok(table.get(&id.0[..])?.map(|v| v.value().to_vec()))
    }

    /// Facts about every stored model, oldest first.
    pub fn model_infos(&self) -> Result<Vec<(u64, ModelInfo)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MODEL_INFO)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value(), from_json("model info", v.value())?));
        }
        Ok(out)
    }
}
