//! Training jobs on the wire: what a job owner posts (`POST /v1/jobs`, signed), what anyone
//! reads back (`GET /v1/jobs`, `/v1/jobs/{id}`), and the terms a job's id commits to. The
//! announcement of every cycle names the job it trains (`Announcement::job`), so the records
//! show which cycles trained whose model, and the auditor rebuilds each job's first model from
//! its terms.

use crate::api::TrainHints;
use bitcoin::secp256k1::PublicKey;
use learning::ModelSpec;
use primitives::{sha256, tagged_hash, Hash256};
use serde::{Deserialize, Serialize};

/// Tag of a job's id: `H_job(canonical JSON of its JobTerms)`.
pub const JOB_TAG: &str = "trainchain/coordinator/job";
/// Tag of what an owner signs to post a job: `H_job-request(coordinator 33 || sha256(body))`.
pub const JOB_REQUEST_TAG: &str = "trainchain/coordinator/job-request";
/// Tag of what an owner signs to cancel its job: `H_job-cancel(coordinator 33 || id 32)`.
pub const JOB_CANCEL_TAG: &str = "trainchain/coordinator/job-cancel";

/// Largest `POST /v1/jobs` body: the three data files together, as JSON strings. 24 MiB holds
/// a corpus of about 20 million bytes of text or a CSV of 20,000 MNIST-sized rows, while a
/// queue full of such jobs ([`JOBS_QUEUED_MAX`]) stays within a gigabyte of disk.
pub const JOB_BODY_BYTES_MAX: usize = 24 * 1024 * 1024;
/// Largest model a posted job may ask for, in parameters: 64 MiB of f32 weights, which every
/// miner downloads each cycle and the coordinator holds (with its optimiser-free copies) for
/// scoring; far above the shipped models (the default language model has 137,216).
pub const JOB_PARAMS_MAX: usize = 16 * 1024 * 1024;
/// Longest job name, in characters.
pub const JOB_NAME_CHARS_MAX: usize = 64;
/// Most cycles a job may ask for: a job holds the whole chain's training while it runs, so
/// its owner cannot take it for longer than about a day of 10-second cycles.
pub const JOB_CYCLES_MAX: u64 = 10_000;
/// Most jobs waiting in the queue: each holds its data on the coordinator's disk.
pub const JOBS_QUEUED_MAX: usize = 32;
/// Most jobs one owner key may have waiting, so one owner cannot fill the queue alone (a
/// bounty per cycle is what would price a queue slot; see `docs/protocol.md`).
pub const JOBS_QUEUED_PER_OWNER_MAX: usize = 4;

/// A job's data: a dataset the coordinator ships, or the owner's own files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobData {
    /// `digits` or `wordnet`: the datasets every coordinator has (its held-out pool and test
    /// set are a secret split of it).
    Shipped { dataset: String },
    /// The owner's files, as text: training data for the miners' shards, and a held-out set
    /// and a test set that only the coordinator receives (either may be left out: then a
    /// secret split of the training file takes its place).
    Upload {
        format: JobFormat,
        train: String,
        #[serde(default)]
        held_out: Option<String>,
        #[serde(default)]
        test: Option<String>,
    },
}

/// How an uploaded file is read (as `learning::DatasetSource` reads `csv:FILE` and
/// `text:FILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobFormat {
    /// Numeric features, the last column an integer label.
    Csv,
    /// Any UTF-8 text, for a byte-level language model.
    Text,
}

impl JobFormat {
    /// The file extension the coordinator stores the format under.
    pub fn extension(self) -> &'static str {
        match self {
            JobFormat::Csv => "csv",
            JobFormat::Text => "txt",
        }
    }
}

/// When a job ends: after `cycles` cycles, or as soon as its merged model reaches a target
/// (whichever comes first).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    /// At most this many cycles (1..=[`JOB_CYCLES_MAX`]).
    pub cycles: u64,
    /// Stop once the merged model's loss on its cycle's held-out batch is at or below this (nats).
    #[serde(default)]
    pub target_held_out_loss: Option<f64>,
    /// Stop once the merged model's accuracy on the job's test set is at or above this (0..=1).
    #[serde(default)]
    pub target_accuracy: Option<f64>,
}

impl StopRule {
    /// Why the rule makes no sense, if it does not.
    pub fn problem(&self) -> Option<String> {
        if !(1..=JOB_CYCLES_MAX).contains(&self.cycles) {
            return Some(format!(
                "cycles is {}, it must be within 1..={JOB_CYCLES_MAX}",
                self.cycles
            ));
        }
        if self
            .target_held_out_loss
            .is_some_and(|l| !l.is_finite() || l < 0.0)
        {
            return Some("the target held-out loss must be a finite number >= 0".into());
        }
        if self
            .target_accuracy
            .is_some_and(|a| !a.is_finite() || !(0.0..=1.0).contains(&a))
        {
            return Some("the target accuracy must be within 0..=1".into());
        }
        None
    }

    /// Whether a job that has run `cycles_run` cycles and whose merged model has `loss` and
    /// `accuracy` is done, and why.
    pub fn reached(&self, cycles_run: u64, loss: f64, accuracy: f64) -> Option<JobEnd> {
        if self.target_held_out_loss.is_some_and(|t| loss <= t) {
            Some(JobEnd::TargetLoss)
        } else if self.target_accuracy.is_some_and(|t| accuracy >= t) {
            Some(JobEnd::TargetAccuracy)
        } else if cycles_run >= self.cycles {
            Some(JobEnd::Cycles)
        } else {
            None
        }
    }
}

/// `POST /v1/jobs`: a job as its owner posts it, with header `x-trainchain-signature` over
/// [`job_request_signing_hash`] of the exact body bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub owner: PublicKey,
    pub name: String,
    /// As on the command line: `mlp:32`, `cnn:8,16`, `lm:32,1,2`.
    pub model: String,
    pub data: JobData,
    /// Learning rate, momentum, batch; `None`: what suits the model (`TrainHints::for_model`).
    #[serde(default)]
    pub hints: Option<TrainHints>,
    /// Seeds the job's first model.
    #[serde(default = "default_model_seed")]
    pub model_seed: u64,
    pub stop: StopRule,
}

fn default_model_seed() -> u64 {
    1
}

/// `H_job-request(coordinator 33 || sha256(body))`: what a job's owner signs to post it to
/// the coordinator with that key. The body's hash, not its fields, so the signature covers
/// exactly the bytes the coordinator stores; the coordinator's key, so no other coordinator
/// can be handed the same post.
pub fn job_request_signing_hash(coordinator: &PublicKey, body: &[u8]) -> Hash256 {
    tagged_hash(
        JOB_REQUEST_TAG,
        &[&coordinator.serialize(), &sha256(body).0],
    )
}

/// `H_job-cancel(coordinator 33 || id 32)`: what a job's owner signs to cancel it at the
/// coordinator with that key (a published cancel cannot end the job elsewhere).
pub fn job_cancel_signing_hash(coordinator: &PublicKey, id: &Hash256) -> Hash256 {
    tagged_hash(JOB_CANCEL_TAG, &[&coordinator.serialize(), &id.0])
}

/// What a job's id commits to: everything that decides the models it produces. Public (the
/// data files are named by their hashes only), so anyone can check that the cycles naming
/// the job trained this model on this data, and rebuild the job's first model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTerms {
    pub name: String,
    /// `None` for the coordinator's own workload (its `--dataset` and `--model`), which runs
    /// whenever no posted job is waiting.
    pub owner: Option<PublicKey>,
    pub model: ModelSpec,
    pub model_seed: u64,
    pub hints: TrainHints,
    /// The dataset as the coordinator names it (`digits`, `wordnet`, `csv upload`, ...).
    pub dataset: String,
    /// sha256 of the uploaded training, held-out and test files (`None`: not uploaded).
    pub train_hash: Option<Hash256>,
    pub held_out_hash: Option<Hash256>,
    pub test_hash: Option<Hash256>,
    /// `None`: runs until a posted job waits (the coordinator's own workload).
    pub stop: Option<StopRule>,
}

impl JobTerms {
    /// `H_job(serde_json of the terms)`: serde writes struct fields in declaration order and
    /// floats in their shortest round-trip form, so the bytes are the same everywhere.
    pub fn id(&self) -> Hash256 {
        let json = serde_json::to_vec(self).expect("job terms serialise");
        tagged_hash(JOB_TAG, &[&json])
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for the jobs before it.
    Queued,
    /// Its model is being trained.
    Running,
    /// The coordinator's own workload while a posted job runs: it resumes from its last
    /// model when the queue is empty.
    Waiting,
    /// Ended by its stopping rule or its owner: its model is final.
    Done,
    /// Cancelled by its owner before it ran.
    Cancelled,
}

/// Why a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobEnd {
    Cycles,
    TargetLoss,
    TargetAccuracy,
    Cancelled,
    /// Its data no longer loads on the coordinator (files lost or damaged) when its turn came.
    Failed,
}

/// `GET /v1/jobs/{id}`: a job, its terms and its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: Hash256,
    pub terms: JobTerms,
    pub state: JobState,
    pub submitted_at_ms: u64,
    /// Evaluated cycles that trained the job's model (a cycle without a block is repeated and
    /// counts twice).
    pub cycles_run: u64,
    pub first_cycle: Option<u64>,
    pub last_cycle: Option<u64>,
    /// The job's newest merged model (`GET /v1/jobs/{id}/model`), after its first cycle.
    pub model_hash: Option<Hash256>,
    /// Its loss on the batch of the cycle that made it, and its test accuracy.
    pub held_out_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub ended: Option<JobEnd>,
    /// The owner asked to cancel a running job: it ends at its next evaluation.
    #[serde(default)]
    pub cancel_requested: bool,
    /// The owner's signature over [`job_cancel_signing_hash`], once cancelled: what shows an
    /// auditor that a job ended before its stopping rule because its owner asked.
    #[serde(default)]
    pub cancel_signature: Option<crate::api::CompactSignature>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> JobTerms {
        let model = ModelSpec::Mlp {
            input: 64,
            hidden: vec![8],
            classes: 10,
        };
        JobTerms {
            name: "digits".into(),
            owner: None,
            hints: TrainHints::for_model(&model),
            model,
            model_seed: 1,
            dataset: "digits".into(),
            train_hash: None,
            held_out_hash: None,
            test_hash: None,
            stop: Some(StopRule {
                cycles: 3,
                target_held_out_loss: None,
                target_accuracy: Some(0.9),
            }),
        }
    }

    #[test]
    fn a_jobs_id_changes_with_every_term_and_survives_a_json_round_trip() {
        let base = terms();
        let id = base.id();
        let back: JobTerms = serde_json::from_slice(&serde_json::to_vec(&base).unwrap()).unwrap();
        assert_eq!(back.id(), id);
        let mut other = base.clone();
        other.model_seed = 2;
        assert_ne!(other.id(), id);
        let mut other = base.clone();
        other.train_hash = Some(Hash256([1; 32]));
        assert_ne!(other.id(), id);
        let mut other = base;
        other.stop = None;
        assert_ne!(other.id(), id);
    }

    #[test]
    fn a_stop_rule_ends_at_its_first_target_and_refuses_nonsense() {
        let rule = StopRule {
            cycles: 5,
            target_held_out_loss: Some(0.5),
            target_accuracy: Some(0.9),
        };
        assert_eq!(rule.reached(1, 0.7, 0.5), None);
        assert_eq!(rule.reached(1, 0.5, 0.5), Some(JobEnd::TargetLoss));
        assert_eq!(rule.reached(1, 0.7, 0.95), Some(JobEnd::TargetAccuracy));
        assert_eq!(rule.reached(5, 0.7, 0.5), Some(JobEnd::Cycles));
        assert!(rule.problem().is_none());
        for bad in [
            StopRule { cycles: 0, ..rule },
            StopRule {
                cycles: JOB_CYCLES_MAX + 1,
                ..rule
            },
            StopRule {
                target_held_out_loss: Some(f64::NAN),
                ..rule
            },
            StopRule {
                target_accuracy: Some(1.5),
                ..rule
            },
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
        }
    }
}
