//! Errors of the coordinator service; each maps to one HTTP status and error code.

use crate::chain::ChainError;
use crate::cycle::Refusal;
use crate::store::StoreError;
use consensus::bond::BondError;
use learning::{LearningError, UpdateError};

/// Why a job was not taken, cancelled or served.
#[derive(Debug, thiserror::Error)]
pub enum JobRefusal {
    #[error("the signature is not the owner's over this request")]
    BadSignature,
    #[error("this coordinator takes no jobs")]
    Closed,
    #[error("this coordinator takes no jobs from {0} (its operator admits job owners with --job-owner or --open-jobs)")]
    OwnerNotAdmitted(bitcoin::secp256k1::PublicKey),
    #[error("bad job: {0}")]
    Invalid(String),
    #[error("the job's data does not load or does not fit its model: {0}")]
    BadData(String),
    #[error("job {0} was posted already")]
    Duplicate(primitives::Hash256),
    #[error("{queued} jobs are waiting, at most {max}; retry when one has run")]
    QueueFull { queued: usize, max: usize },
    #[error("this owner has {queued} jobs waiting, at most {max}")]
    OwnerQueueFull { queued: usize, max: usize },
    #[error("no job {0}")]
    Unknown(primitives::Hash256),
    #[error("job {0} has ended: only a queued or running job can be cancelled")]
    Ended(primitives::Hash256),
    #[error("the coordinator's own workload has no owner and cannot be cancelled")]
    NotCancellable,
    #[error("job {0} has no model yet: it has not run a cycle")]
    NoModel(primitives::Hash256),
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Job(#[from] JobRefusal),
    /// The cycle state machine refused the request.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The uploaded update failed its checks (size, format, shape, dtype, finiteness).
    #[error("bad update: {0}")]
    BadUpdate(#[from] UpdateError),
    #[error("unknown cycle {0}")]
    UnknownCycle(u64),
    #[error("no cycle is open yet")]
    NotOpen,
    #[error("too many registrations; retry in a second")]
    RateLimited,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A request body (other than an update) is over its route's limit.
    #[error("request body is over the {limit_bytes}-byte limit of this route")]
    BodyTooLarge { limit_bytes: usize },
    /// The client did not send the whole body in time.
    #[error("request body not received within {secs} s")]
    BodyTimeout { secs: u64 },
    /// This miner already has an upload in flight.
    #[error("an upload from this miner is already in progress")]
    UploadInProgress,
    /// Every upload slot or the whole upload buffer is taken; retry shortly.
    #[error("too many uploads in flight; retry shortly")]
    Busy,
    #[error("no certificate for this miner in this cycle")]
    NoCertificate,
    /// The commitment names another task than the one issued to the miner.
    #[error("the commitment is for task {found}, the miner's task is {expected}")]
    WrongTask {
        expected: primitives::Hash256,
        found: primitives::Hash256,
    },
    /// An answer to a challenge that does not decode.
    #[error("bad answer: {0}")]
    BadAnswer(#[from] proof::ResponseDecodeError),
    #[error("no fraud evidence for this miner in this cycle")]
    NoEvidence,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("learning: {0}")]
    Learning(#[from] LearningError),
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error("the stored work setup differs from the one given: {0}")]
    SetupChanged(String),
    #[error("model of cycle {0} is missing from the store")]
    MissingModel(u64),
    /// The tip's certificate names a next model this coordinator never produced (another
    /// coordinator's chain, or a store that lost its models): it cannot train on that tip.
    #[error("the chain's tip asks for model {0}, which this coordinator's store does not have")]
    UnknownTipModel(primitives::Hash256),
    #[error("corrupt file: {0}")]
    Corrupt(String),
    /// Update bytes and the held-out batch are published only once the record reveals them.
    #[error("not published yet: {0}")]
    NotRevealed(&'static str),
    #[error("no update with hash {0} in this cycle")]
    UnknownUpdate(primitives::Hash256),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl ServiceError {
    /// Stable machine-readable code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Refused(r) => match r {
                Refusal::WrongCycle { .. } => "wrong_cycle",
                Refusal::RegistrationClosed { .. } => "registration_closed",
                Refusal::BadSignature => "bad_signature",
                Refusal::BadPayoutAddress { .. } => "bad_payout_address",
                Refusal::BadHardware => "bad_hardware",
                Refusal::CycleFull { .. } => "cycle_full",
                Refusal::BondRequired => "bond_required",
                Refusal::BondNotFound { .. } => "bond_not_found",
                Refusal::BondInUse { .. } => "bond_in_use",
                Refusal::BondSlashed { .. } => "bond_slashed",
                Refusal::Bond { error, .. } => match error {
                    BondError::WrongScript => "bond_wrong_key",
                    BondError::TooSmall { .. } => "bond_too_small",
                    BondError::Unconfirmed { .. } => "bond_immature",
                    BondError::Coinbase => "bond_coinbase",
                    BondError::UnlocksTooSoon { .. } => "bond_unlocks_too_soon",
                    // The chain's terms themselves are out of range (parsing bounds them).
                    _ => "bond_invalid",
                },
                Refusal::RegisteredDifferently => "registered_differently",
                Refusal::NotRegistered => "not_registered",
                Refusal::NotAdmitted { .. } => "not_admitted",
                Refusal::TrainingNotStarted { .. } => "training_not_started",
                Refusal::Late { .. } => "late",
                Refusal::AlreadySubmitted => "already_submitted",
                Refusal::DuplicateUpdate => "duplicate_update",
                Refusal::NotSubmitted => "not_submitted",
                Refusal::ChallengeNotOpen { .. } => "challenge_not_open",
                Refusal::AnswerLate { .. } => "answer_late",
                Refusal::AlreadyAnswered => "already_answered",
                Refusal::EnrolmentClosed { .. } => "enrolment_closed",
                Refusal::EnrolledDifferently => "enrolled_differently",
                Refusal::VerifierIsMiner => "verifier_is_miner",
                Refusal::VerifiersFull { .. } => "verifiers_full",
                Refusal::VerifierNoShow { .. } => "verifier_no_show",
                Refusal::VerificationNotOpen { .. } => "verification_not_open",
                Refusal::VerificationClosed => "verification_closed",
                Refusal::NotEnrolled => "not_enrolled",
                Refusal::NotAssigned => "not_assigned",
                Refusal::AlreadyClaimed => "already_claimed",
                Refusal::ClaimMismatch { .. } => "claim_mismatch",
            },
            ServiceError::Job(j) => match j {
                JobRefusal::BadSignature => "job_bad_signature",
                JobRefusal::Closed => "jobs_closed",
                JobRefusal::OwnerNotAdmitted(_) => "job_owner_not_admitted",
                JobRefusal::Invalid(_) => "job_invalid",
                JobRefusal::BadData(_) => "job_bad_data",
                JobRefusal::Duplicate(_) => "job_duplicate",
                JobRefusal::QueueFull { .. } => "jobs_full",
                JobRefusal::OwnerQueueFull { .. } => "owner_jobs_full",
                JobRefusal::Unknown(_) => "unknown_job",
                JobRefusal::Ended(_) => "job_ended",
                JobRefusal::NotCancellable => "job_not_cancellable",
                JobRefusal::NoModel(_) => "job_no_model",
            },
            ServiceError::BadUpdate(u) => match u {
                UpdateError::Oversize { .. } => "update_oversize",
                UpdateError::Malformed(_) => "update_malformed",
                UpdateError::UnknownTensor(_) => "update_unknown_tensor",
                UpdateError::MissingTensor(_) => "update_missing_tensor",
                UpdateError::WrongDtype { .. } => "update_wrong_dtype",
                UpdateError::WrongShape { .. } => "update_wrong_shape",
                UpdateError::NonFinite { .. } => "update_non_finite",
            },
            ServiceError::UnknownCycle(_) => "unknown_cycle",
            ServiceError::NotOpen => "not_open",
            ServiceError::RateLimited => "rate_limited",
            ServiceError::BadRequest(_) => "bad_request",
            ServiceError::BodyTooLarge { .. } => "body_too_large",
            ServiceError::BodyTimeout { .. } => "body_timeout",
            ServiceError::UploadInProgress => "upload_in_progress",
            ServiceError::Busy => "busy",
            ServiceError::NoCertificate => "no_certificate",
            ServiceError::WrongTask { .. } => "wrong_task",
            ServiceError::BadAnswer(proof::ResponseDecodeError::Oversize { .. }) => {
                "answer_oversize"
            }
            ServiceError::BadAnswer(_) => "answer_malformed",
            ServiceError::NoEvidence => "no_evidence",
            ServiceError::NotRevealed(_) => "not_revealed",
            ServiceError::UnknownUpdate(_) => "unknown_update",
            ServiceError::Store(_)
            | ServiceError::Learning(_)
            | ServiceError::Chain(_)
            | ServiceError::SetupChanged(_)
            | ServiceError::MissingModel(_)
            | ServiceError::UnknownTipModel(_)
            | ServiceError::Corrupt(_)
            | ServiceError::Io { .. } => "internal",
        }
    }

    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Refused(r) => match r {
                Refusal::BadSignature
                | Refusal::NotRegistered
                | Refusal::NotAdmitted { .. }
                | Refusal::NotEnrolled
                | Refusal::NotAssigned
                | Refusal::VerifierIsMiner => 403,
                // No bond, or one that cannot back this registration: the miner must fix
                // its bond (not retry), so 403 rather than a retryable status.
                Refusal::BondRequired | Refusal::Bond { .. } | Refusal::BondSlashed { .. } => 403,
                Refusal::BondNotFound { .. } => 404,
                Refusal::BadPayoutAddress { .. } | Refusal::BadHardware => 400,
                Refusal::CycleFull { .. } | Refusal::VerifiersFull { .. } => 429,
                // Wrong cycle, closed, late, duplicate, not started: the request conflicts
                // with the cycle's current state.
                _ => 409,
            },
            ServiceError::Job(j) => match j {
                JobRefusal::BadSignature
                | JobRefusal::Closed
                | JobRefusal::NotCancellable
                | JobRefusal::OwnerNotAdmitted(_) => 403,
                JobRefusal::Invalid(_) => 400,
                JobRefusal::BadData(_) => 422,
                JobRefusal::Duplicate(_) | JobRefusal::Ended(_) => 409,
                JobRefusal::QueueFull { .. } | JobRefusal::OwnerQueueFull { .. } => 429,
                JobRefusal::Unknown(_) | JobRefusal::NoModel(_) => 404,
            },
            ServiceError::BadUpdate(UpdateError::Oversize { .. }) => 413,
            ServiceError::BadUpdate(_) => 422,
            ServiceError::UnknownCycle(_)
            | ServiceError::NoCertificate
            | ServiceError::NoEvidence
            | ServiceError::UnknownUpdate(_) => 404,
            ServiceError::NotRevealed(_) => 409,
            ServiceError::WrongTask { .. } => 409,
            ServiceError::BadAnswer(proof::ResponseDecodeError::Oversize { .. }) => 413,
            ServiceError::BadAnswer(_) => 422,
            ServiceError::NotOpen => 503,
            ServiceError::RateLimited => 429,
            ServiceError::BadRequest(_) => 400,
            ServiceError::BodyTooLarge { .. } => 413,
            ServiceError::BodyTimeout { .. } => 408,
            ServiceError::UploadInProgress => 409,
            ServiceError::Busy => 503,
            _ => 500,
        }
    }
}
