//! Fraud evidence: everything a third party needs, with the task's start model and shard, to
//! recheck that a miner's signed transcript does not replay.

use bitcoin::secp256k1::{ecdsa, Message, PublicKey, Secp256k1};
use learning::{decode_update, model_hash, ExpectedSegment, Model, Samples};
use primitives::{sha256, Hash256};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::challenge::{challenge_seed, challenged_intervals};
use crate::response::ChallengeResponse;
use crate::task::{Commitment, ReplayTask};
use crate::verify::{check, CheckInputs, Failure, Verdict};

/// A failed check, self-describing: JSON with hex byte fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FraudEvidence {
    /// The model's architecture (its weights are the cycle's start model, `task.model_hash`).
    pub model: learning::ModelSpec,
    pub task: ReplayTask,
    pub commitment: Commitment,
    /// The miner's compact ECDSA signature over
    /// `commitment.signing_hash(task.cycle, task.miner)`, hex.
    pub signature: String,
    /// The cycle secret revealed at the deadline, and the digest of the cycle's commitments:
    /// they fix the challenge.
    pub revealed_secret: Hash256,
    pub commitments_digest: Hash256,
    /// Challenge count q of the cycle.
    pub challenges: u32,
    /// The miner's answer ([`ChallengeResponse::encode`]), hex.
    pub response: String,
    /// The update bytes (safetensors), hex.
    pub update: String,
    /// What the verifier found.
    pub failure: Failure,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvidenceError {
    #[error("evidence field {field}: {why}")]
    Malformed { field: &'static str, why: String },
    #[error("the commitment is not signed by the miner {0}")]
    BadSignature(PublicKey),
    #[error("the update bytes do not hash to the committed update hash")]
    UpdateHashMismatch,
    #[error("the start model given has hash {found}, the task names {expected}")]
    WrongStartModel { expected: Hash256, found: Hash256 },
    #[error("the shard given has hash {found}, the task names {expected}")]
    WrongShard { expected: Hash256, found: Hash256 },
    #[error("the update does not decode for the task's segment: {0}")]
    BadUpdate(String),
    #[error("the check passes on recheck ({0}): this is not evidence of fraud")]
    NotFraud(String),
    #[error("the evidence asks for {0} challenges, over the protocol's limit")]
    TooManyChallenges(u32),
    #[error("the recheck fails differently: {found}; the evidence says {claimed}")]
    DifferentFailure {
        claimed: Box<Failure>,
        found: Box<Failure>,
    },
}

impl FraudEvidence {
    /// The intervals the challenge asked for. Evidence comes from elsewhere: its sizes are
    /// checked first (q, the interval, the transcript's length), so a made-up one cannot make
    /// the rechecker draw or replay without end.
    pub fn asked(&self) -> Result<Vec<u64>, EvidenceError> {
        if self.challenges > crate::CHALLENGES_MAX {
            return Err(EvidenceError::TooManyChallenges(self.challenges));
        }
        // A claim that fails on its own (steps over the budget, a transcript too long, an
        // interval out of range) needs no opening: the check refuses it before any replay.
        let intervals = crate::check_claims(&self.task, &self.commitment).unwrap_or(0);
        let seed = challenge_seed(
            &self.revealed_secret,
            &self.commitments_digest,
            &self.task.miner,
        );
        Ok(challenged_intervals(&seed, intervals, self.challenges))
    }

    /// Rechecks the evidence with the task's start model and the shard's bytes as served.
    /// `Ok` is the confirmed failure.
    pub fn recheck(
        &self,
        start_model: &Model,
        shard_bytes: &[u8],
        threads: usize,
    ) -> Result<Failure, EvidenceError> {
        let malformed = |field: &'static str, why: String| EvidenceError::Malformed { field, why };
        let signature = hex::decode(&self.signature)
            .ok()
            .and_then(|b| ecdsa::Signature::from_compact(&b).ok())
            .ok_or_else(|| malformed("signature", "not a 64-byte compact signature".into()))?;
        let digest = self
            .commitment
            .signing_hash(self.task.cycle, &self.task.miner);
        Secp256k1::verification_only()
            .verify_ecdsa(
                &Message::from_digest(digest.0),
                &signature,
                &self.task.miner,
            )
            .map_err(|_| EvidenceError::BadSignature(self.task.miner))?;
        if self.commitment.task_hash != self.task.hash() {
            return Err(malformed(
                "commitment.task_hash",
                "not the hash of the task".into(),
            ));
        }
        let found = Hash256(model_hash(start_model));
        if found != self.task.model_hash {
            return Err(EvidenceError::WrongStartModel {
                expected: self.task.model_hash,
                found,
            });
        }
        let found = sha256(shard_bytes);
        if found != self.task.shard_hash {
            return Err(EvidenceError::WrongShard {
                expected: self.task.shard_hash,
                found,
            });
        }
        let update_bytes =
            hex::decode(&self.update).map_err(|e| malformed("update", e.to_string()))?;
        if sha256(&update_bytes) != self.commitment.update_hash {
            return Err(EvidenceError::UpdateHashMismatch);
        }
        let expected = ExpectedSegment::of(start_model, &self.task.segment)
            .map_err(|e| EvidenceError::BadUpdate(e.to_string()))?;
        let update = decode_update(&update_bytes, &expected)
            .map_err(|e| EvidenceError::BadUpdate(e.to_string()))?;
        let spec = start_model.spec();
        let shard = Samples::from_safetensors(shard_bytes, spec.input_features(), spec.classes())
            .map_err(|e| malformed("shard", e.to_string()))?;
        let train_samples = train_part(&shard, self.task.train_samples)
            .map_err(|why| malformed("task.train_samples", why))?;
        let response_bytes =
            hex::decode(&self.response).map_err(|e| malformed("response", e.to_string()))?;
        let asked = self.asked()?;
        let response = ChallengeResponse::decode(&response_bytes, usize::MAX, asked.len())
            .map_err(|e| malformed("response", e.to_string()))?;
        let inputs = CheckInputs {
            task: &self.task,
            start_model,
            train_samples: &train_samples,
            commitment: &self.commitment,
            update: &update,
            threads,
        };
        match check(&inputs, &asked, Some(&response)) {
            Verdict::Failed { failure } if failure == self.failure => Ok(failure),
            Verdict::Failed { failure } => Err(EvidenceError::DifferentFailure {
                claimed: Box::new(self.failure.clone()),
                found: Box::new(failure),
            }),
            other => Err(EvidenceError::NotFraud(other.name().into())),
        }
    }
}

/// The samples a task trains on: the shard's first `train_samples`.
pub fn train_part(shard: &Samples, train_samples: u64) -> Result<Samples, String> {
    let n = usize::try_from(train_samples).map_err(|e| e.to_string())?;
    if n == 0 || n > shard.len() {
        return Err(format!(
            "{n} training samples of a shard of {}",
            shard.len()
        ));
    }
    Ok(shard.select(&(0..n).collect::<Vec<_>>()))
}
