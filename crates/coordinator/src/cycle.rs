//! The training cycle as a pure state machine:
//! `tick(state, env, now, entropy, event) -> (state, actions)`.
//!
//! ```text
//! open ──> Registration ──(registration deadline: segments + shards assigned)──> Training
//!   Training ──(submission deadline: secret revealed, challenges fixed)──> Challenge
//!   Challenge ──(challenge deadline, or every submitter answered)──> Evaluation
//!   Evaluation ──(Evaluated: replay verdicts + measurements)──>
//!   lottery + certificates ──> BlockWindow{attempt 0} ──(our block at the height)──> Closed
//!   BlockWindow{k} ──(window over, draws left)──> BlockWindow{k+1}   (new certificate)
//!   BlockWindow{k} ──(window over, no draw left)──> Closed(WinnersSilent)
//!   BlockWindow ──(another block took the height)──> Closed(Superseded)
//! ```
//!
//! No clock, no randomness, no I/O: the caller passes the time and 32 fresh random bytes on
//! every call, and does what the returned [`Action`]s ask (evaluate the submissions, persist,
//! answer HTTP requests). Signing is a pure function of the key and the message, so the machine
//! signs receipts, announcements and certificates itself.
//!
//! Invariants:
//! - time transitions are applied before the event, so an event is always judged against the
//!   phase `now` falls in (a submission after the deadline is late even if no tick ran since);
//! - submissions are never revealed before the submission deadline: the state keeps only their
//!   hashes, and [`CycleState::record`] lists them (and the secret) only from Evaluation on;
//! - one registration and one submission per miner per cycle; a receipted submission is never
//!   dropped (the caller persists the state before answering with the receipt).

use crate::api::{
    AdmissionDraw, Announcement, BondOutpoint, CertificateHex, ChallengeInfo, CompactSignature,
    CycleOutcome, CycleRecord, Hardware, HeldOutReveal, PendingBond, PhaseName, QualityReport,
    Receipt, RegisterRequest, RegisterResponse, ScoredSubmission, SignedAnnouncement,
};
use crate::chain::UnspentOutput;
use crate::pace::PaceSample;
use crate::verifier_api::{Claim, ClaimVerdict, EnrolRequest, EnrolResponse};
use crate::verifiers::{self, VerificationState};
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, BlockHash, Network};
use consensus::bond::{BondError, BondQuery, BondTerms};
use consensus::lottery::{self, Contribution, Entry};
use primitives::{tagged_hash, Certificate, CertificateKind, Hash256, UnsignedCertificate};
use proof::{Commitment, Verdict};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Tag deriving certificate nonces from the caller's entropy.
const NONCE_TAG: &str = "trainchain/coordinator/certificate-nonce";

/// A miner declaring more threads than this is misconfigured (same bound the trainer uses).
pub const HARDWARE_THREADS_MAX: u32 = learning::THREADS_MAX as u32;

/// Parameters one thread trains comfortably within a cycle. A thread does roughly 1 GFLOP/s
/// of SGD on small dense layers; 4 M parameters x 6 FLOPs x a few hundred samples fits a
/// minutes-long window. Only the *ordering* of segments matters for the tiny models used here.
pub const PARAMS_PER_THREAD: u64 = 4_000_000;

/// Bytes of memory one trained parameter needs: weight, gradient, momentum and the uploaded
/// copy, 4 bytes each.
pub const BYTES_PER_TRAINED_PARAM: u64 = 16;

/// Most draws (attempt 0 and its fallbacks) made per cycle. Each attempt waits a whole block
/// window; 32 silent winners in a row means the network is down rather than unlucky, and the
/// next cycle (on the same tip) is the better fallback. It also bounds the draw, which costs
/// O(entries) per attempt.
pub const DRAW_ATTEMPTS_MAX: u32 = 32;

/// Lengths of a cycle's phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleTiming {
    pub registration_ms: u64,
    /// From the registration deadline to the submission deadline.
    pub training_ms: u64,
    /// From the submission deadline to the challenge deadline: miners open the intervals
    /// their challenge picked.
    #[serde(default = "default_challenge_ms")]
    pub challenge_ms: u64,
    /// How long each drawn winner has to get its block to the coordinator's node.
    pub block_window_ms: u64,
}

fn default_challenge_ms() -> u64 {
    CHALLENGE_MS_MIN
}

/// Shortest challenge window: one poll, a few openings of a small segment and one upload, on
/// a loaded machine.
pub const CHALLENGE_MS_MIN: u64 = 1_500;

impl CycleTiming {
    /// A cycle of `cycle_secs` (registration + training): one fifth registration, the rest
    /// training; a challenge window of a tenth (at least [`CHALLENGE_MS_MIN`]); and a block
    /// window of half a cycle (at least 2 s: a block needs a template, a signature and one
    /// gossip hop).
    pub fn from_cycle_secs(cycle_secs: u64) -> Self {
        let total_ms = cycle_secs.max(1).saturating_mul(1000);
        let registration_ms = total_ms / 5;
        CycleTiming {
            registration_ms,
            training_ms: total_ms - registration_ms,
            challenge_ms: (total_ms / 10).max(CHALLENGE_MS_MIN),
            block_window_ms: (total_ms / 2).max(2_000),
        }
    }
}

/// How training is verified: the checkpoint interval k of every task's transcript, and q,
/// the random intervals replayed per submission besides the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofParams {
    pub checkpoint_interval: u64,
    pub challenges: u32,
}

impl Default for ProofParams {
    fn default() -> Self {
        ProofParams {
            checkpoint_interval: proof::CHECKPOINT_INTERVAL_DEFAULT,
            challenges: proof::CHALLENGES_DEFAULT,
        }
    }
}

/// Confirmations a bond needs before it backs a registration: in a block of the best chain.
/// More would only delay a new miner; a bond erased by a reorg after admission still
/// leaves the registration to the end of its cycle, and the chain's reorgs are a block deep.
pub const BOND_CONFIRMATIONS_MIN: u32 = 1;

/// Blocks after the cycle's own height through which a bond backing it must stay locked: the
/// dispute window in which fraud found in the cycle can still be slashed. Half the chain's
/// `bond_lock_blocks` (72 of the default 144), and at most `lock - 2`, so that a bond
/// confirmed in the tip block always covers the next cycle. A bond then backs registrations
/// for about `lock - window` blocks after it confirmed, and must be replaced after that.
pub fn dispute_window_blocks(lock_blocks: u32) -> u32 {
    (lock_blocks / 2).min(lock_blocks.saturating_sub(2))
}

/// How registrations are admitted against bonds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondPolicy {
    /// The chain's bond terms (`BondTerms::from_params`).
    pub terms: BondTerms,
    /// Every registration must name a bond (the chain's `bonds_required`). When false a named
    /// bond is still checked and counted, and unbonded registrations are admitted too.
    pub required: bool,
    pub confirmations_min: u32,
    /// See [`dispute_window_blocks`].
    pub dispute_window_blocks: u32,
}

impl BondPolicy {
    pub fn new(terms: BondTerms, required: bool) -> Self {
        BondPolicy {
            terms,
            required,
            confirmations_min: BOND_CONFIRMATIONS_MIN,
            dispute_window_blocks: dispute_window_blocks(terms.lock_blocks),
        }
    }

    /// What `check_bond` needs for a cycle whose block is at `cycle_height`, with the coin
    /// read at `tip_height`: the bond must not be reclaimable through `cycle_height +
    /// dispute_window_blocks`.
    pub fn query(&self, cycle_height: u32, tip_height: u32) -> BondQuery {
        let needed_until = cycle_height.saturating_add(self.dispute_window_blocks);
        BondQuery {
            tip_height,
            confirmations_min: self.confirmations_min,
            locked_for_blocks: needed_until.saturating_sub(tip_height),
        }
    }
}

/// Name and size of one trainable segment of the global model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSize {
    pub name: String,
    pub params: u64,
}

/// Everything fixed for a job's cycles: identity, chain, timing, the model's layout.
#[derive(Clone)]
pub struct CycleEnv {
    pub secp: Secp256k1<All>,
    pub key: SecretKey,
    pub chain_id: u32,
    pub network: Network,
    pub timing: CycleTiming,
    /// Registration cap per cycle (already reduced to what the training set can shard).
    pub registrations_max: usize,
    /// The model's segments in model order.
    pub segments: Vec<SegmentSize>,
    pub proof: ProofParams,
    pub bonds: BondPolicy,
    /// The block reward a winner can earn (the chain's initial subsidy: an upper bound), for
    /// the audit rate of verifier claims (`verifiers::audit_ppm`).
    pub block_reward_sats: u64,
    /// The job whose model the cycles opened under this environment train (`JobTerms::id`);
    /// the layout fields above are that job's model's.
    pub job: Hash256,
}

impl CycleEnv {
    pub fn coordinator(&self) -> PublicKey {
        self.key.public_key(&self.secp)
    }
}

/// A miner's work for the cycle, fixed when registration closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub segment: String,
    pub shard_index: u32,
    pub shard_count: u32,
    /// The task's checkpoint interval `k`, paced to the miner's measured speed
    /// ([`crate::pace::checkpoint_interval`]); its step budget is
    /// `pace::TRANSCRIPT_INTERVALS * k`. (A state saved before pacing has none: 16.)
    #[serde(default = "crate::api::default_checkpoint_interval")]
    pub checkpoint_interval: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub payout_address: String,
    pub hardware: Hardware,
    pub registered_at_ms: u64,
    pub assignment: Option<Assignment>,
    /// The bond backing the registration, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<BondOutpoint>,
    /// The bond's value when it was checked: its weight if the slots are drawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_sats: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub update_hash: Hash256,
    /// The task, transcript root and steps the miner signed with the update.
    pub commitment: Commitment,
    /// The miner's signature over the commitment (kept for fraud evidence).
    pub signature: CompactSignature,
    pub received_at_ms: u64,
    pub receipt: Receipt,
    /// When the miner's answer to its challenge arrived (the caller stored its bytes).
    #[serde(default)]
    pub answered_at_ms: Option<u64>,
    /// The intervals the answer opens (ascending): only these can be handed to verifiers.
    #[serde(default)]
    pub opened: Vec<u64>,
}

/// What the coordinator measured for one submission (never what the miner claimed), and the
/// verdict of replaying its challenged intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    pub miner: PublicKey,
    pub params_trained: u64,
    pub loss_reduction: i64,
    pub verification: Verdict,
}

/// Result of evaluating every submission of the cycle (what the caller feeds back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationInput {
    pub global_loss_units: i64,
    pub measurements: Vec<Measurement>,
    /// Hash of the model that the next cycle trains: the aggregated one, or at a job's end the
    /// next job's.
    pub next_model_hash: Hash256,
    /// At a job's end, the aggregated model (the job's result); `None` within a job.
    #[serde(default)]
    pub merged_model_hash: Option<Hash256>,
    /// Opens the announcement's held-out commitment: the batch the numbers were measured on.
    pub held_out: HeldOutReveal,
    pub next_quality: QualityReport,
    /// What each verifier claim came to, and the replay work (see `crate::verifier_service`).
    #[serde(default)]
    pub claims: ClaimsJudged,
}

/// The evaluation's judgement of the cycle's verifier claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimsJudged {
    pub verdicts: Vec<ClaimVerdict>,
    pub challenged_steps: u64,
    pub coordinator_replayed_steps: u64,
}

/// The lottery of a cycle, computed once from the evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotteryRecord {
    pub global_loss_units: i64,
    /// Every receipted submission with its numbers, sorted by miner key.
    pub scored: Vec<ScoredSubmission>,
    pub contributions_root: Hash256,
    pub seed: Hash256,
    pub draw_order: Vec<PublicKey>,
    pub next_model_hash: Hash256,
    #[serde(default)]
    pub merged_model_hash: Option<Hash256>,
    pub held_out: HeldOutReveal,
    pub next_quality: QualityReport,
    /// `api::record_digest` of the record at evaluation; every certificate carries it.
    pub record_hash: Hash256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Registration,
    Training,
    Challenge,
    /// Enrolled verifiers replay their assignments and sign claims, until `deadline_ms`
    /// (one challenge window after the challenge closed) or every assignment has a claim.
    Verification {
        deadline_ms: u64,
    },
    Evaluation,
    BlockWindow {
        attempt: u32,
        deadline_ms: u64,
    },
    Closed {
        outcome: CycleOutcome,
    },
}

impl Phase {
    pub fn name(&self) -> PhaseName {
        match self {
            Phase::Registration => PhaseName::Registration,
            Phase::Training => PhaseName::Training,
            Phase::Challenge => PhaseName::Challenge,
            Phase::Verification { .. } => PhaseName::Verification,
            Phase::Evaluation => PhaseName::Evaluation,
            Phase::BlockWindow { .. } => PhaseName::BlockWindow,
            Phase::Closed { .. } => PhaseName::Closed,
        }
    }
}

/// The whole state of one cycle. Serialisable: the caller persists it after every call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleState {
    pub announcement: SignedAnnouncement,
    /// Opens the commitment; private until the submission deadline.
    secret: Hash256,
    pub phase: Phase,
    pub registrations: BTreeMap<PublicKey, Registration>,
    /// Bonds backing this cycle's registrations, each with the one miner it backs: a bond
    /// backs one registration per cycle. Persisted with the state, so a restart keeps it.
    #[serde(default)]
    pub bonds: BTreeMap<BondOutpoint, PublicKey>,
    pub submissions: BTreeMap<PublicKey, Submission>,
    /// The admission draw, when more bonded registrations arrived than the cycle has slots
    /// (made at the registration deadline; the others are no longer registered).
    #[serde(default)]
    pub admission: Option<AdmissionDraw>,
    pub lottery: Option<LotteryRecord>,
    pub contribution_certificates: BTreeMap<PublicKey, CertificateHex>,
    pub block_certificates: Vec<CertificateHex>,
    /// Enrolled verifiers, their assignments and claims.
    #[serde(default)]
    pub verification: VerificationState,
    /// Each miner's last verified run (from the previous cycle's record), which sizes its
    /// step budget when registration closes ([`crate::pace`]).
    #[serde(default)]
    pub pace_samples: BTreeMap<PublicKey, PaceSample>,
}

/// Inputs of the machine besides time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passed; nothing else happened.
    Tick,
    /// A registration the caller did not look a bond up for (an unbonded one: one that names
    /// a bond is refused `BondNotFound`, as nothing was read for it).
    Register(RegisterRequest),
    /// A registration naming a bond, with what the node showed at the bond's outpoint
    /// (`None`: no such unspent output).
    RegisterBonded {
        request: RegisterRequest,
        found: Option<UnspentOutput>,
    },
    /// An update whose bytes the caller decoded and checked (shape, finiteness, size), with
    /// the miner's signed commitment (whose `update_hash` the caller computed from the bytes).
    Submit {
        cycle: u64,
        miner: PublicKey,
        commitment: Commitment,
        signature: CompactSignature,
    },
    /// A miner's answer to its challenge, whose bytes (hashing to `answer_hash`) the caller
    /// decoded and holds, opening `opened`.
    Answer {
        cycle: u64,
        miner: PublicKey,
        answer_hash: Hash256,
        signature: CompactSignature,
        opened: Vec<u64>,
    },
    /// A verifier's enrolment, with what the node showed at its bond's outpoint.
    Enrol {
        request: EnrolRequest,
        found: Option<UnspentOutput>,
    },
    /// A verifier's signed claim about one of its assignments.
    Claim(Claim),
    Evaluated(EvaluationInput),
    /// What the coordinator's node shows: its tip height and the block at the cycle's height
    /// (boxed: a certificate is large and this event is rare).
    ChainObserved {
        tip_height: u32,
        at_target: Option<Box<(BlockHash, Certificate)>>,
    },
}

/// Why the machine refused a registration or a submission (HTTP 4xx for the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("request is for cycle {found}, the current cycle is {current}")]
    WrongCycle { current: u64, found: u64 },
    #[error("registration for cycle {cycle} closed at {deadline_ms} ms")]
    RegistrationClosed { cycle: u64, deadline_ms: u64 },
    #[error("signature does not verify under the miner's key")]
    BadSignature,
    #[error("payout address {address:?} is not a valid {network} address")]
    BadPayoutAddress { address: String, network: Network },
    #[error("hardware must declare 1..={HARDWARE_THREADS_MAX} threads and some memory")]
    BadHardware,
    #[error("cycle is full: {max} registrations")]
    CycleFull { max: usize },
    #[error("registration names no bond; this coordinator admits bonded registrations only")]
    BondRequired,
    #[error("bond {outpoint} is not a confirmed unspent output of the best chain")]
    BondNotFound { outpoint: BondOutpoint },
    #[error("bond {outpoint} already backs a registration in this cycle")]
    BondInUse { outpoint: BondOutpoint },
    #[error("bond {outpoint} was slashed by this coordinator and backs nothing any more")]
    BondSlashed { outpoint: BondOutpoint },
    #[error("bond {outpoint} refused: {error}")]
    Bond {
        outpoint: BondOutpoint,
        error: BondError,
    },
    #[error("miner already registered for this cycle with different details")]
    RegisteredDifferently,
    #[error("miner is not registered for this cycle")]
    NotRegistered,
    #[error(
        "not admitted this cycle: {pending} bonded registrations for {slots} slots, drawn by \
         bond value at the registration deadline (see the cycle record's admission); register \
         again next cycle"
    )]
    NotAdmitted { slots: u32, pending: u32 },
    #[error("training has not started: tasks are assigned when registration closes at {registration_deadline_ms} ms")]
    TrainingNotStarted { registration_deadline_ms: u64 },
    #[error("submission deadline was {deadline_ms} ms, received at {now_ms} ms")]
    Late { deadline_ms: u64, now_ms: u64 },
    #[error("miner already submitted in this cycle")]
    AlreadySubmitted,
    #[error("update is byte-identical to another miner's submission")]
    DuplicateUpdate,
    #[error("miner submitted nothing in this cycle, so it has no challenge")]
    NotSubmitted,
    #[error("challenges open at the submission deadline ({opens_ms} ms)")]
    ChallengeNotOpen { opens_ms: u64 },
    #[error("challenge deadline was {deadline_ms} ms, received at {now_ms} ms")]
    AnswerLate { deadline_ms: u64, now_ms: u64 },
    #[error("miner already answered its challenge")]
    AlreadyAnswered,
    #[error("verifiers enrol during training, from {opens_ms} ms to {closes_ms} ms")]
    EnrolmentClosed { opens_ms: u64, closes_ms: u64 },
    #[error("verifier already enrolled for this cycle with another bond or payout address")]
    EnrolledDifferently,
    #[error("a miner of this cycle cannot verify in it")]
    VerifierIsMiner,
    #[error("cycle has its {max} verifiers")]
    VerifiersFull { max: usize },
    #[error("this verifier key or bond held assignments in cycle {cycle} and claimed none of them: it sits out one cycle")]
    VerifierNoShow { cycle: u64 },
    #[error("claims open when the challenge window closes ({opens_ms} ms at the latest)")]
    VerificationNotOpen { opens_ms: u64 },
    #[error("verification is over for this cycle")]
    VerificationClosed,
    #[error("verifier is not enrolled for this cycle")]
    NotEnrolled,
    #[error("no such assignment for this verifier")]
    NotAssigned,
    #[error("this assignment already has a claim")]
    AlreadyClaimed,
    #[error("the claim is about other inputs than its assignment: its {what} differs")]
    ClaimMismatch { what: &'static str },
}

/// What the caller must do (or answer) after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Registered(RegisterResponse),
    Receipted(Receipt),
    /// The answer was accepted; the caller keeps its bytes for evaluation.
    AnswerAccepted {
        miner: PublicKey,
    },
    Enrolled(EnrolResponse),
    ClaimTaken,
    Refused(Refusal),
    /// Evaluate every receipted submission against the cycle's global model and feed back
    /// [`Event::Evaluated`]. Repeated on every tick until it is fed back (idempotent).
    Evaluate {
        cycle: u64,
    },
    /// New certificates to make available (contribution and block-signing).
    Issued(Vec<Certificate>),
    Closed(CycleOutcome),
}

impl CycleState {
    /// Opens cycle `cycle` on top of `parent` (at `parent_height`) to train the model with
    /// `model_hash`. `secret` must be fresh randomness: it is the verification secret S, kept
    /// private until evaluation; the announcement commits to the cycle secret `H(S)`
    /// ([`verifiers::cycle_secret`]), revealed at the submission deadline.
    /// `held_out_commitment` commits to the batch the cycle will be scored on;
    /// `prev_record_hash` is the previous cycle's record digest (zero for cycle 0).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        env: &CycleEnv,
        cycle: u64,
        parent: BlockHash,
        parent_height: u32,
        model_hash: Hash256,
        now_ms: u64,
        secret: [u8; 32],
        held_out_commitment: Hash256,
        prev_record_hash: Hash256,
    ) -> CycleState {
        let verification_secret = Hash256(secret);
        let secret = verifiers::cycle_secret(&verification_secret).0;
        let registration_deadline_ms = now_ms.saturating_add(env.timing.registration_ms);
        let announcement = Announcement {
            cycle,
            chain_id: env.chain_id,
            parent,
            height: parent_height.saturating_add(1),
            model_hash,
            opened_at_ms: now_ms,
            registration_deadline_ms,
            submission_deadline_ms: registration_deadline_ms.saturating_add(env.timing.training_ms),
            challenge_deadline_ms: registration_deadline_ms
                .saturating_add(env.timing.training_ms)
                .saturating_add(env.timing.challenge_ms),
            block_window_ms: env.timing.block_window_ms,
            commitment: lottery::commitment(&secret),
            held_out_commitment,
            prev_record_hash,
            coordinator: env.coordinator(),
            job: env.job,
        };
        let signature = CompactSignature::sign(&env.secp, &env.key, &announcement.signing_hash());
        CycleState {
            announcement: SignedAnnouncement {
                announcement,
                signature,
            },
            secret: Hash256(secret),
            phase: Phase::Registration,
            registrations: BTreeMap::new(),
            bonds: BTreeMap::new(),
            submissions: BTreeMap::new(),
            admission: None,
            lottery: None,
            contribution_certificates: BTreeMap::new(),
            block_certificates: Vec::new(),
            verification: VerificationState::with_secret(verification_secret),
            pace_samples: BTreeMap::new(),
        }
    }

    /// Why `miner` has no registration here: it was drawn out at admission, or never
    /// registered.
    pub fn unregistered(&self, miner: &PublicKey) -> Refusal {
        match &self.admission {
            Some(draw) if draw.pending.iter().any(|p| &p.miner == miner) => Refusal::NotAdmitted {
                slots: draw.slots,
                pending: draw.pending.len() as u32,
            },
            _ => Refusal::NotRegistered,
        }
    }

    pub fn cycle(&self) -> u64 {
        self.announcement.announcement.cycle
    }

    pub fn announcement(&self) -> &Announcement {
        &self.announcement.announcement
    }

    /// The current attempt while in the block window.
    pub fn attempt(&self) -> Option<u32> {
        match self.phase {
            Phase::BlockWindow { attempt, .. } => Some(attempt),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed { .. })
    }

    /// The secret, once the submission deadline has passed (never before).
    pub fn revealed_secret(&self) -> Option<Hash256> {
        match self.phase {
            Phase::Registration | Phase::Training => None,
            _ => Some(self.secret),
        }
    }

    /// Digest of every receipted commitment: fixed at the submission deadline, it feeds each
    /// miner's challenge seed.
    pub fn commitments_digest(&self) -> Hash256 {
        let entries: Vec<(PublicKey, Commitment)> = self
            .submissions
            .iter()
            .map(|(miner, s)| (*miner, s.commitment))
            .collect();
        proof::commitments_digest(&entries)
    }

    /// `miner`'s challenge, once the submission deadline has passed (never before).
    pub fn challenge(&self, env: &CycleEnv, miner: &PublicKey) -> Option<ChallengeInfo> {
        let secret = self.revealed_secret()?;
        let submission = self.submissions.get(miner)?;
        let digest = self.commitments_digest();
        let seed = proof::challenge_seed(&secret, &digest, miner);
        let leaves = proof::leaf_count(
            submission.commitment.steps,
            self.checkpoint_interval(env, miner),
        );
        Some(ChallengeInfo {
            cycle: self.cycle(),
            miner: *miner,
            revealed_secret: secret,
            commitments_digest: digest,
            challenges: env.proof.challenges,
            intervals: proof::challenged_intervals(&seed, leaves - 1, env.proof.challenges),
            challenge_deadline_ms: self.announcement().challenge_deadline_ms,
        })
    }

    /// The public record. Before the deadline it shows counts only, never submissions.
    pub fn record(&self) -> CycleRecord {
        let lottery = self.lottery.as_ref();
        CycleRecord {
            announcement: self.announcement.clone(),
            phase: self.phase.name(),
            registered: self.registrations.len() as u64,
            submitted: self.submissions.len() as u64,
            revealed_secret: self.revealed_secret(),
            commitments_digest: self.revealed_secret().map(|_| self.commitments_digest()),
            global_loss_units: lottery.map(|l| l.global_loss_units),
            submissions: lottery.map(|l| l.scored.clone()).unwrap_or_default(),
            contributions_root: lottery.map(|l| l.contributions_root),
            lottery_seed: lottery.map(|l| l.seed),
            draw_order: lottery.map(|l| l.draw_order.clone()).unwrap_or_default(),
            block_certificates: self.block_certificates.clone(),
            outcome: match &self.phase {
                Phase::Closed { outcome } => Some(outcome.clone()),
                _ => None,
            },
            next_model_hash: lottery.map(|l| l.next_model_hash),
            merged_model_hash: lottery.and_then(|l| l.merged_model_hash),
            held_out: lottery.map(|l| l.held_out),
            record_hash: lottery.map(|l| l.record_hash),
            next_quality: lottery.map(|l| l.next_quality),
            // The coordinator adds these from its store (`Coordinator::record`).
            slashes: Vec::new(),
            admission: self.admission.clone(),
            verification: self.verification.record(self.lottery.is_some()),
        }
    }

    /// [`crate::api::record_digest`] of this cycle's record: what the next cycle's
    /// announcement chains to, and (after evaluation) what its certificates carry.
    pub fn record_digest(&self) -> Hash256 {
        crate::api::record_digest(&self.record())
    }
}

/// Advances `state` to `now_ms`, then applies `event`. `entropy` must be fresh random bytes
/// (used only for certificate nonces).
pub fn tick(
    mut state: CycleState,
    env: &CycleEnv,
    now_ms: u64,
    entropy: [u8; 32],
    event: Event,
) -> (CycleState, Vec<Action>) {
    let mut actions = Vec::new();
    let mut nonces = Nonces { entropy, next: 0 };
    advance(&mut state, env, now_ms, &mut nonces, &mut actions);
    match event {
        Event::Tick => {}
        Event::Register(request) => {
            actions.push(match register(&mut state, env, now_ms, request, None) {
                Ok(response) => Action::Registered(response),
                Err(refusal) => Action::Refused(refusal),
            })
        }
        Event::RegisterBonded { request, found } => actions.push(
            match register(&mut state, env, now_ms, request, found.as_ref()) {
                Ok(response) => Action::Registered(response),
                Err(refusal) => Action::Refused(refusal),
            },
        ),
        Event::Submit {
            cycle,
            miner,
            commitment,
            signature,
        } => actions.push(
            match submit(&mut state, env, now_ms, cycle, miner, commitment, signature) {
                Ok(receipt) => Action::Receipted(receipt),
                Err(refusal) => Action::Refused(refusal),
            },
        ),
        Event::Answer {
            cycle,
            miner,
            answer_hash,
            signature,
            opened,
        } => actions.push(
            match answer(
                &mut state,
                env,
                now_ms,
                (cycle, miner),
                answer_hash,
                signature,
                opened,
            ) {
                Ok(()) => Action::AnswerAccepted { miner },
                Err(refusal) => Action::Refused(refusal),
            },
        ),
        Event::Enrol { request, found } => actions.push(
            match verifiers::enrol(&mut state, env, request, found.as_ref()) {
                Ok(response) => Action::Enrolled(response),
                Err(refusal) => Action::Refused(refusal),
            },
        ),
        Event::Claim(claim) => actions.push(match verifiers::take_claim(&mut state, env, claim) {
            Ok(()) => Action::ClaimTaken,
            Err(refusal) => Action::Refused(refusal),
        }),
        Event::Evaluated(input) => {
            if state.phase == Phase::Evaluation {
                run_lottery(&mut state, env, now_ms, input, &mut nonces, &mut actions);
            }
        }
        Event::ChainObserved {
            tip_height,
            at_target,
        } => observe_chain(&mut state, tip_height, at_target, &mut actions),
    }
    // A chain observation may close the window; otherwise a window that ran out moves on.
    advance(&mut state, env, now_ms, &mut nonces, &mut actions);
    (state, actions)
}

/// Applies every transition that time alone triggers.
fn advance(
    state: &mut CycleState,
    env: &CycleEnv,
    now_ms: u64,
    nonces: &mut Nonces,
    actions: &mut Vec<Action>,
) {
    loop {
        let a = state.announcement.announcement.clone();
        match state.phase.clone() {
            Phase::Registration if now_ms >= a.registration_deadline_ms => {
                draw_admission(state, env);
                assign(state, env);
                state.phase = Phase::Training;
            }
            Phase::Training if now_ms >= a.submission_deadline_ms => {
                state.phase = Phase::Challenge;
            }
            Phase::Challenge
                if now_ms >= a.challenge_deadline_ms
                    || state
                        .submissions
                        .values()
                        .all(|s| s.answered_at_ms.is_some()) =>
            {
                let secret = verifiers::verification_secret(&nonces.entropy, a.cycle);
                VerificationState::start(state, env, secret);
                state.phase = if state.verification.assignments.is_empty() {
                    Phase::Evaluation
                } else {
                    Phase::Verification {
                        deadline_ms: now_ms.saturating_add(env.timing.challenge_ms),
                    }
                };
            }
            Phase::Verification { deadline_ms }
                if now_ms >= deadline_ms || state.verification.all_claimed() =>
            {
                state.phase = Phase::Evaluation;
            }
            Phase::Evaluation => {
                if !actions.iter().any(|x| matches!(x, Action::Evaluate { .. })) {
                    actions.push(Action::Evaluate { cycle: a.cycle });
                }
                return;
            }
            Phase::BlockWindow {
                attempt,
                deadline_ms,
            } if now_ms >= deadline_ms => {
                let next = attempt.saturating_add(1);
                let drawn = state
                    .lottery
                    .as_ref()
                    .and_then(|l| l.draw_order.get(next as usize).copied());
                match drawn {
                    Some(miner) => {
                        let cert = block_certificate(state, env, now_ms, next, miner, nonces);
                        actions.push(Action::Issued(vec![cert]));
                        state.phase = Phase::BlockWindow {
                            attempt: next,
                            deadline_ms: now_ms.saturating_add(env.timing.block_window_ms),
                        };
                    }
                    None => {
                        close(
                            state,
                            CycleOutcome::WinnersSilent {
                                attempts: attempt + 1,
                            },
                            actions,
                        );
                    }
                }
            }
            _ => return,
        }
    }
}

fn close(state: &mut CycleState, outcome: CycleOutcome, actions: &mut Vec<Action>) {
    actions.push(Action::Closed(outcome.clone()));
    state.phase = Phase::Closed { outcome };
}

/// The bond checks of a registration that need no chain read: a bond is named if bonds are
/// required, and no other registration of this cycle holds it. `Ok(true)` if `request` is the
/// exact repeat of the registration its miner already holds (answered as before).
pub fn bond_precheck(
    state: &CycleState,
    env: &CycleEnv,
    request: &RegisterRequest,
) -> Result<bool, Refusal> {
    if let Some(existing) = state.registrations.get(&request.miner) {
        if existing.payout_address == request.payout_address
            && existing.hardware == request.hardware
            && existing.bond == request.bond
        {
            return Ok(true);
        }
    }
    let Some(outpoint) = request.bond else {
        return if env.bonds.required {
            Err(Refusal::BondRequired)
        } else {
            Ok(false)
        };
    };
    if state.bonds.contains_key(&outpoint) {
        return Err(Refusal::BondInUse { outpoint });
    }
    Ok(false)
}

fn register(
    state: &mut CycleState,
    env: &CycleEnv,
    now_ms: u64,
    request: RegisterRequest,
    found: Option<&UnspentOutput>,
) -> Result<RegisterResponse, Refusal> {
    let a = state.announcement();
    if request.cycle != a.cycle {
        return Err(Refusal::WrongCycle {
            current: a.cycle,
            found: request.cycle,
        });
    }
    if state.phase != Phase::Registration {
        return Err(Refusal::RegistrationClosed {
            cycle: a.cycle,
            deadline_ms: a.registration_deadline_ms,
        });
    }
    if !request.verify(&env.secp) {
        return Err(Refusal::BadSignature);
    }
    check_payout_address(&request.payout_address, env.network)?;
    let hw = request.hardware;
    if hw.threads == 0 || hw.threads > HARDWARE_THREADS_MAX || hw.memory_bytes == 0 {
        return Err(Refusal::BadHardware);
    }
    let response = RegisterResponse {
        cycle: a.cycle,
        miner: request.miner,
        registration_deadline_ms: a.registration_deadline_ms,
        submission_deadline_ms: a.submission_deadline_ms,
    };
    // A miner that restarted may register again: same details and bond, same answer.
    if bond_precheck(state, env, &request)? {
        return Ok(response);
    }
    if state.registrations.contains_key(&request.miner) {
        return Err(Refusal::RegisteredDifferently);
    }
    if let Some(outpoint) = request.bond {
        let found = found.ok_or(Refusal::BondNotFound { outpoint })?;
        let query = env.bonds.query(a.height, found.tip_height);
        consensus::bond::check_bond(&found.coin, &request.miner, &env.bonds.terms, &query)
            .map_err(|error| Refusal::Bond { outpoint, error })?;
    }
    let held_max = registrations_held_max(env);
    if state.registrations.len() >= held_max {
        return Err(Refusal::CycleFull { max: held_max });
    }
    if let Some(outpoint) = request.bond {
        state.bonds.insert(outpoint, request.miner);
    }
    let bond_sats = request
        .bond
        .and(found)
        .map(|found| found.coin.output.value.to_sat());
    state.registrations.insert(
        request.miner,
        Registration {
            payout_address: request.payout_address,
            hardware: hw,
            registered_at_ms: now_ms,
            assignment: None,
            bond: request.bond,
            bond_sats,
        },
    );
    Ok(response)
}

/// A payout address must be an address of the chain's network (a registration's or a
/// verifier's enrolment's).
pub(crate) fn check_payout_address(address: &str, network: Network) -> Result<(), Refusal> {
    let ok = Address::from_str(address)
        .ok()
        .and_then(|a| a.require_network(network).ok())
        .is_some();
    if ok {
        Ok(())
    } else {
        Err(Refusal::BadPayoutAddress {
            address: address.to_owned(),
            network,
        })
    }
}

/// With bonds required, a cycle holds up to this many registrations per slot until the
/// registration deadline and then draws its slots among them by bond value, so arriving first
/// is worth nothing. The bound keeps the held set (and its record) small; a client must hold
/// this many times the cap in bonds to fill it, and even then is drawn like any other bond.
pub const REGISTRATIONS_HELD_PER_SLOT: usize = 4;

/// How many registrations a cycle takes before refusing `cycle_full`: the cap itself when
/// bonds are optional (first come, first served), [`REGISTRATIONS_HELD_PER_SLOT`] times it
/// when every registration is bonded (the slots are then drawn at the deadline).
pub fn registrations_held_max(env: &CycleEnv) -> usize {
    if env.bonds.required {
        env.registrations_max
            .saturating_mul(REGISTRATIONS_HELD_PER_SLOT)
    } else {
        env.registrations_max
    }
}

/// At the registration deadline, if more bonded registrations are held than the cycle has
/// slots: draws `registrations_max` of them by bond value (`consensus::lottery::admitted`,
/// seeded by the committed secret) and drops the rest, freeing their bonds.
fn draw_admission(state: &mut CycleState, env: &CycleEnv) {
    if !env.bonds.required || state.registrations.len() <= env.registrations_max {
        return;
    }
    let pending: Vec<PendingBond> = state
        .registrations
        .iter()
        .filter_map(|(miner, r)| {
            Some(PendingBond {
                miner: *miner,
                bond: r.bond?,
                bond_sats: r.bond_sats?,
            })
        })
        .collect();
    let slots = u32::try_from(env.registrations_max).unwrap_or(u32::MAX);
    let mut draw = AdmissionDraw {
        slots,
        pending,
        admitted: Vec::new(),
    };
    let seed = lottery::admission_seed(&state.secret.0, state.cycle());
    draw.admitted = lottery::admitted(&seed, &draw.entries(), slots);
    state
        .registrations
        .retain(|miner, _| draw.admitted.contains(miner));
    state.bonds.retain(|_, miner| draw.admitted.contains(miner));
    state.admission = Some(draw);
}

/// Segment, shard and step budget of every registered miner, in key order: miner `i` gets
/// shard `i`, a segment sized to its hardware (among those that fit, rotated by index and cycle
/// so every segment gets trained), and a checkpoint interval paced to its last verified run.
fn assign(state: &mut CycleState, env: &CycleEnv) {
    let cycle = state.cycle();
    let count = state.registrations.len() as u32;
    // Fixed now, with the budgets: a restart before the challenge (with a fresh calibration)
    // cannot make the record say another interval than new miners got.
    state.verification.checkpoint_interval = env.proof.checkpoint_interval;
    let initial = state.verification.checkpoint_interval;
    let a = &state.announcement.announcement;
    let window_ms = a
        .submission_deadline_ms
        .saturating_sub(a.registration_deadline_ms);
    for (index, (miner, registration)) in state.registrations.iter_mut().enumerate() {
        let segment = choose_segment(&env.segments, registration.hardware, index as u64, cycle);
        let checkpoint_interval = crate::pace::checkpoint_interval(
            state.pace_samples.get(miner).copied(),
            window_ms,
            initial,
        );
        registration.assignment = Some(Assignment {
            segment,
            shard_index: index as u32,
            shard_count: count,
            checkpoint_interval,
        });
    }
}

impl CycleState {
    /// The checkpoint interval of `miner`'s task (the configured one before assignment).
    pub fn checkpoint_interval(&self, env: &CycleEnv, miner: &PublicKey) -> u64 {
        self.registrations
            .get(miner)
            .and_then(|r| r.assignment.as_ref())
            .map_or(env.proof.checkpoint_interval, |a| a.checkpoint_interval)
    }
}

/// The segment for the `index`-th miner of `cycle` with `hardware`: segments whose parameters
/// fit the hardware's capacity, rotated by `index + cycle`; the smallest one if none fits.
pub fn choose_segment(
    segments: &[SegmentSize],
    hardware: Hardware,
    index: u64,
    cycle: u64,
) -> String {
    let capacity = u64::from(hardware.threads)
        .saturating_mul(PARAMS_PER_THREAD)
        .min(hardware.memory_bytes / BYTES_PER_TRAINED_PARAM);
    let fitting: Vec<&SegmentSize> = segments.iter().filter(|s| s.params <= capacity).collect();
    if fitting.is_empty() {
        return segments
            .iter()
            .min_by_key(|s| s.params)
            .map(|s| s.name.clone())
            .unwrap_or_default();
    }
    let pick = index.wrapping_add(cycle) % fitting.len() as u64;
    fitting[pick as usize].name.clone()
}

/// The announcement, if `cycle` is this one and `signature` is `miner`'s over `digest`.
fn signed_for_this_cycle(
    state: &CycleState,
    env: &CycleEnv,
    cycle: u64,
    miner: &PublicKey,
    digest: &Hash256,
    signature: &CompactSignature,
) -> Result<Announcement, Refusal> {
    let a = state.announcement().clone();
    if cycle != a.cycle {
        return Err(Refusal::WrongCycle {
            current: a.cycle,
            found: cycle,
        });
    }
    if !signature.verify(&env.secp, miner, digest) {
        return Err(Refusal::BadSignature);
    }
    Ok(a)
}

fn submit(
    state: &mut CycleState,
    env: &CycleEnv,
    now_ms: u64,
    cycle: u64,
    miner: PublicKey,
    commitment: Commitment,
    signature: CompactSignature,
) -> Result<Receipt, Refusal> {
    let digest = commitment.signing_hash(cycle, &miner);
    let a = signed_for_this_cycle(state, env, cycle, &miner, &digest, &signature)?;
    let update_hash = commitment.update_hash;
    if !state.registrations.contains_key(&miner) {
        return Err(state.unregistered(&miner));
    }
    match state.phase {
        Phase::Registration => {
            return Err(Refusal::TrainingNotStarted {
                registration_deadline_ms: a.registration_deadline_ms,
            })
        }
        Phase::Training => {}
        _ => {
            return Err(Refusal::Late {
                deadline_ms: a.submission_deadline_ms,
                now_ms,
            })
        }
    }
    if state.submissions.contains_key(&miner) {
        return Err(Refusal::AlreadySubmitted);
    }
    if state
        .submissions
        .values()
        .any(|s| s.update_hash == update_hash)
    {
        return Err(Refusal::DuplicateUpdate);
    }
    let mut receipt = Receipt {
        cycle,
        miner,
        update_hash,
        transcript_root: commitment.transcript_root,
        steps: commitment.steps,
        received_at_ms: now_ms,
        coordinator: env.coordinator(),
        signature: CompactSignature([0; 64]),
    };
    receipt.signature = CompactSignature::sign(&env.secp, &env.key, &receipt.signing_hash());
    state.submissions.insert(
        miner,
        Submission {
            update_hash,
            commitment,
            signature,
            received_at_ms: now_ms,
            receipt: receipt.clone(),
            answered_at_ms: None,
            opened: Vec::new(),
        },
    );
    Ok(receipt)
}

fn answer(
    state: &mut CycleState,
    env: &CycleEnv,
    now_ms: u64,
    (cycle, miner): (u64, PublicKey),
    answer_hash: Hash256,
    signature: CompactSignature,
    opened: Vec<u64>,
) -> Result<(), Refusal> {
    let digest = crate::api::answer_signing_hash(cycle, &miner, &answer_hash);
    let a = signed_for_this_cycle(state, env, cycle, &miner, &digest, &signature)?;
    match state.phase {
        Phase::Registration | Phase::Training => {
            return Err(Refusal::ChallengeNotOpen {
                opens_ms: a.submission_deadline_ms,
            })
        }
        Phase::Challenge => {}
        _ => {
            return Err(Refusal::AnswerLate {
                deadline_ms: a.challenge_deadline_ms,
                now_ms,
            })
        }
    }
    let Some(submission) = state.submissions.get_mut(&miner) else {
        return Err(Refusal::NotSubmitted);
    };
    if submission.answered_at_ms.is_some() {
        return Err(Refusal::AlreadyAnswered);
    }
    submission.answered_at_ms = Some(now_ms);
    submission.opened = opened;
    Ok(())
}

/// Scores, root, seed, draw order and certificates from the measurements.
fn run_lottery(
    state: &mut CycleState,
    env: &CycleEnv,
    now_ms: u64,
    input: EvaluationInput,
    nonces: &mut Nonces,
    actions: &mut Vec<Action>,
) {
    state.verification.verdicts = input.claims.verdicts.clone();
    state.verification.challenged_steps = input.claims.challenged_steps;
    state.verification.coordinator_replayed_steps = input.claims.coordinator_replayed_steps;
    // Exactly one row per receipted submission: a submission the evaluator did not measure
    // is recorded as having trained nothing (score 0) rather than silently dropped.
    let measured_by_miner: BTreeMap<PublicKey, &Measurement> =
        input.measurements.iter().map(|m| (m.miner, m)).collect();
    let scored: Vec<ScoredSubmission> = state
        .submissions
        .iter()
        .map(|(miner, submission)| {
            let measured = measured_by_miner.get(miner);
            let (params_trained, loss_reduction) = measured
                .map(|m| (m.params_trained, m.loss_reduction))
                .unwrap_or((0, 0));
            let verification = measured
                .map(|m| m.verification.clone())
                .unwrap_or(Verdict::Unanswered);
            let registration = &state.registrations[miner];
            ScoredSubmission {
                miner: *miner,
                payout_address: registration.payout_address.clone(),
                segment: registration
                    .assignment
                    .as_ref()
                    .map(|a| a.segment.clone())
                    .unwrap_or_default(),
                update_hash: submission.update_hash,
                commitment: submission.commitment,
                received_at_ms: submission.received_at_ms,
                params_trained,
                loss_reduction,
                score: crate::api::verified_score(&verification, params_trained, loss_reduction),
                verification,
                checkpoint_interval: state.checkpoint_interval(env, miner),
            }
        })
        .collect();
    let contributions: Vec<Contribution> = scored.iter().map(|s| s.contribution()).collect();
    let entries: Vec<Entry> = scored.iter().map(|s| s.entry()).collect();
    let root = lottery::contributions_root(&contributions);
    let seed = lottery::lottery_seed(&state.secret.0, &state.announcement().parent, &root);
    let draw_order = lottery::published_draw_order(&seed, &entries, DRAW_ATTEMPTS_MAX);
    state.lottery = Some(LotteryRecord {
        global_loss_units: input.global_loss_units,
        scored,
        contributions_root: root,
        seed,
        draw_order,
        next_model_hash: input.next_model_hash,
        merged_model_hash: input.merged_model_hash,
        held_out: input.held_out,
        next_quality: input.next_quality,
        record_hash: Hash256::ZERO,
    });
    // The digest covers only fields fixed above (never `record_hash` itself), so it can be
    // taken from the record now and put in every certificate issued below.
    let digest = state.record_digest();
    if let Some(l) = state.lottery.as_mut() {
        l.record_hash = digest;
    }
    let mut issued = Vec::new();
    let scored = state
        .lottery
        .as_ref()
        .map(|l| l.scored.clone())
        .unwrap_or_default();
    for s in &scored {
        let body = certificate_body(
            state,
            env,
            now_ms,
            CertificateKind::Contribution,
            0,
            s,
            nonces,
        );
        let cert = body.sign(&env.secp, &env.key);
        state
            .contribution_certificates
            .insert(s.miner, CertificateHex(cert.clone()));
        issued.push(cert);
    }
    let first = state
        .lottery
        .as_ref()
        .and_then(|l| l.draw_order.first().copied());
    match first {
        Some(miner) => {
            issued.push(block_certificate(state, env, now_ms, 0, miner, nonces));
            actions.push(Action::Issued(issued));
            state.phase = Phase::BlockWindow {
                attempt: 0,
                deadline_ms: now_ms.saturating_add(env.timing.block_window_ms),
            };
        }
        None => {
            actions.push(Action::Issued(issued));
            close(state, CycleOutcome::NoEligibleEntries, actions);
        }
    }
}

fn block_certificate(
    state: &mut CycleState,
    env: &CycleEnv,
    now_ms: u64,
    attempt: u32,
    miner: PublicKey,
    nonces: &mut Nonces,
) -> Certificate {
    let scored = state
        .lottery
        .as_ref()
        .and_then(|l| l.scored.iter().find(|s| s.miner == miner).cloned())
        .expect("drawn miners come from the scored list");
    let body = certificate_body(
        state,
        env,
        now_ms,
        CertificateKind::BlockSigning,
        attempt,
        &scored,
        nonces,
    );
    let cert = body.sign(&env.secp, &env.key);
    state.block_certificates.push(CertificateHex(cert.clone()));
    cert
}

fn certificate_body(
    state: &CycleState,
    env: &CycleEnv,
    now_ms: u64,
    kind: CertificateKind,
    attempt: u32,
    scored: &ScoredSubmission,
    nonces: &mut Nonces,
) -> UnsignedCertificate {
    let a = state.announcement();
    let lottery = state
        .lottery
        .as_ref()
        .expect("certificates follow the lottery");
    UnsignedCertificate {
        kind,
        chain_id: env.chain_id,
        cycle: a.cycle,
        height: a.height,
        prev_block_hash: a.parent,
        attempt,
        miner: scored.miner,
        params_trained: scored.params_trained,
        loss_reduction: scored.loss_reduction,
        score: scored.score,
        contributions_root: lottery.contributions_root,
        lottery_seed: lottery.seed,
        model_hash: a.model_hash,
        next_model_hash: lottery.next_model_hash,
        record_hash: lottery.record_hash,
        issued_at: now_ms / 1000,
        // The end of this attempt's window, rounded down: the next attempt's certificate is
        // issued at or after the window's end, so an honest coordinator's windows never overlap.
        expires_at: match kind {
            CertificateKind::BlockSigning => {
                now_ms.saturating_add(env.timing.block_window_ms) / 1000
            }
            CertificateKind::Contribution => 0,
        },
        nonce: nonces.next(),
        coordinator: env.coordinator(),
    }
}

fn observe_chain(
    state: &mut CycleState,
    tip_height: u32,
    at_target: Option<Box<(BlockHash, Certificate)>>,
    actions: &mut Vec<Action>,
) {
    if !matches!(state.phase, Phase::BlockWindow { .. }) {
        return;
    }
    let height = state.announcement().height;
    match at_target.map(|b| *b) {
        Some((hash, cert)) => {
            let ours = state
                .block_certificates
                .iter()
                .any(|c| c.0.id() == cert.id());
            let outcome = if ours {
                CycleOutcome::Produced {
                    height,
                    hash,
                    attempt: cert.body.attempt,
                    miner: cert.body.miner,
                }
            } else {
                CycleOutcome::Superseded { height, hash }
            };
            close(state, outcome, actions);
        }
        None if tip_height >= height => {
            // The node claims the height but shows no block there: wait for a consistent view.
        }
        None => {}
    }
}

/// Certificate nonces: `H_nonce(entropy || counter u32 LE)[0..16]`, distinct within a call.
struct Nonces {
    entropy: [u8; 32],
    next: u32,
}

impl Nonces {
    fn next(&mut self) -> [u8; 16] {
        let h = tagged_hash(NONCE_TAG, &[&self.entropy, &self.next.to_le_bytes()]);
        self.next += 1;
        h.0[..16].try_into().expect("16 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_reveal() -> HeldOutReveal {
        HeldOutReveal {
            salt: Hash256([0x5a; 32]),
            batch_hash: Hash256([0x5b; 32]),
            samples: 54,
            pass: 0,
        }
    }

    fn test_quality() -> QualityReport {
        QualityReport {
            held_out_loss_units: 2_000_000,
            test_accuracy_ppm: 400_000,
        }
    }
    use bitcoin::hashes::Hash;
    use bitcoin::CompressedPublicKey;

    const T0: u64 = 1_000_000;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_slice(&[n; 32]).unwrap()
    }

    fn env() -> CycleEnv {
        CycleEnv {
            block_reward_sats: 50 * 100_000_000,
            job: Hash256::ZERO,
            secp: Secp256k1::new(),
            key: key(200),
            chain_id: 7,
            network: Network::Regtest,
            timing: CycleTiming {
                registration_ms: 1_000,
                training_ms: 4_000,
                // No challenge window: evaluation follows the submission deadline at once
                // (the challenge phase has tests of its own with a window).
                challenge_ms: 0,
                block_window_ms: 2_000,
            },
            registrations_max: 8,
            segments: vec![
                SegmentSize {
                    name: "layer0".into(),
                    params: 2_080,
                },
                SegmentSize {
                    name: "layer1".into(),
                    params: 330,
                },
            ],
            proof: ProofParams {
                checkpoint_interval: 4,
                challenges: 2,
            },
            bonds: BondPolicy::new(
                BondTerms {
                    slash_key: key(201).public_key(&Secp256k1::new()),
                    lock_blocks: 20,
                    bond_min: bitcoin::Amount::from_sat(1_000_000),
                    finder_share_percent: 50,
                },
                false,
            ),
        }
    }

    fn address(env: &CycleEnv, k: &SecretKey) -> String {
        let pk = CompressedPublicKey(k.public_key(&env.secp));
        Address::p2wpkh(&pk, Network::Regtest).to_string()
    }

    #[test]
    fn a_bond_backs_cycles_until_its_lock_would_end_inside_the_dispute_window() {
        let mut env = env();
        env.bonds.required = true;
        // Lock 20: the dispute window is 10 blocks after the cycle's height.
        assert_eq!(env.bonds.dispute_window_blocks, 10);
        assert_eq!(dispute_window_blocks(2), 0);
        assert_eq!(dispute_window_blocks(3), 1);
        assert_eq!(dispute_window_blocks(144), 72);
        let k = key(1);
        let miner = k.public_key(&env.secp);
        let bond = BondOutpoint(bitcoin::OutPoint::new(
            bitcoin::Txid::from_byte_array([9; 32]),
            1,
        ));
        // Confirmed at height 50: reclaimable from 70, so it backs cycles at heights 51..=59
        // (needed until 59 + 10 = 69) and not the cycle at 60.
        let coin = primitives::Coin {
            output: bitcoin::TxOut {
                value: env.bonds.terms.bond_min,
                script_pubkey: consensus::bond::bond_script_pubkey(&env.bonds.terms, &miner),
            },
            height: 50,
            is_coinbase: false,
        };
        for (parent_height, ok) in [(50, true), (58, true), (59, false)] {
            let state = CycleState::open(
                &env,
                0,
                BlockHash::all_zeros(),
                parent_height,
                Hash256::ZERO,
                T0,
                [1; 32],
                Hash256::ZERO,
                Hash256::ZERO,
            );
            let request = RegisterRequest::new_signed_bonded(
                &env.secp,
                &k,
                0,
                address(&env, &k),
                Hardware {
                    threads: 4,
                    memory_bytes: 1 << 30,
                },
                Some(bond),
            );
            let found = UnspentOutput {
                coin: coin.clone(),
                tip_height: parent_height,
            };
            let (next, actions) = tick(
                state,
                &env,
                T0 + 1,
                [2; 32],
                Event::RegisterBonded {
                    request: request.clone(),
                    found: Some(found),
                },
            );
            if ok {
                assert!(
                    matches!(actions[..], [Action::Registered(_)]),
                    "{parent_height}"
                );
                assert_eq!(next.bonds.get(&bond), Some(&miner));
                assert_eq!(next.registrations[&miner].bond, Some(bond));
            } else {
                assert_eq!(
                    actions,
                    [Action::Refused(Refusal::Bond {
                        outpoint: bond,
                        error: BondError::UnlocksTooSoon {
                            reclaimable_at: 70,
                            needed_until: 70,
                        },
                    })]
                );
                assert!(next.registrations.is_empty() && next.bonds.is_empty());
            }
            // Named but not looked up: refused, never admitted unchecked.
            let (_, actions) = tick(
                next.clone(),
                &env,
                T0 + 2,
                [2; 32],
                Event::Register(RegisterRequest::new_signed_bonded(
                    &env.secp,
                    &key(2),
                    0,
                    address(&env, &key(2)),
                    request.hardware,
                    Some(bond),
                )),
            );
            assert!(matches!(
                actions[..],
                [Action::Refused(
                    Refusal::BondInUse { .. } | Refusal::BondNotFound { .. }
                )]
            ));
        }
    }

    fn registration(env: &CycleEnv, n: u8, cycle: u64) -> Event {
        let k = key(n);
        Event::Register(RegisterRequest::new_signed(
            &env.secp,
            &k,
            cycle,
            address(env, &k),
            Hardware {
                threads: 4,
                memory_bytes: 1 << 30,
            },
        ))
    }

    fn commitment(update: &[u8]) -> Commitment {
        Commitment {
            task_hash: Hash256([3; 32]),
            update_hash: primitives::sha256(update),
            transcript_root: primitives::sha256(&[update, b"root"].concat()),
            steps: 40,
        }
    }

    fn submission(env: &CycleEnv, n: u8, cycle: u64, update: &[u8]) -> Event {
        let k = key(n);
        let miner = k.public_key(&env.secp);
        let commitment = commitment(update);
        let digest = commitment.signing_hash(cycle, &miner);
        Event::Submit {
            cycle,
            miner,
            commitment,
            signature: CompactSignature::sign(&env.secp, &k, &digest),
        }
    }

    fn answer(env: &CycleEnv, n: u8, cycle: u64, bytes: &[u8]) -> Event {
        let k = key(n);
        let miner = k.public_key(&env.secp);
        let answer_hash = primitives::sha256(bytes);
        let digest = crate::api::answer_signing_hash(cycle, &miner, &answer_hash);
        Event::Answer {
            cycle,
            miner,
            answer_hash,
            signature: CompactSignature::sign(&env.secp, &k, &digest),
            opened: Vec::new(),
        }
    }

    fn verified() -> Verdict {
        Verdict::Verified {
            intervals: vec![9],
            replayed_steps: 4,
        }
    }

    fn measured(env: &CycleEnv, n: u8, params_trained: u64, loss_reduction: i64) -> Measurement {
        Measurement {
            miner: key(n).public_key(&env.secp),
            params_trained,
            loss_reduction,
            verification: verified(),
        }
    }

    fn parent() -> BlockHash {
        BlockHash::from_byte_array([9; 32])
    }

    /// A bonded registration of key `n` for cycle 0 with a bond of `sats` (outpoint `n`).
    fn bonded_registration(env: &CycleEnv, n: u8, sats: u64) -> Event {
        let k = key(n);
        let miner = k.public_key(&env.secp);
        let bond = BondOutpoint(bitcoin::OutPoint::new(
            bitcoin::Txid::from_byte_array([n; 32]),
            0,
        ));
        let coin = primitives::Coin {
            output: bitcoin::TxOut {
                value: bitcoin::Amount::from_sat(sats),
                script_pubkey: consensus::bond::bond_script_pubkey(&env.bonds.terms, &miner),
            },
            height: 1,
            is_coinbase: false,
        };
        Event::RegisterBonded {
            request: RegisterRequest::new_signed_bonded(
                &env.secp,
                &k,
                0,
                address(env, &k),
                Hardware {
                    threads: 4,
                    memory_bytes: 1 << 30,
                },
                Some(bond),
            ),
            found: Some(UnspentOutput {
                coin,
                tip_height: 4,
            }),
        }
    }

    /// The attack: one client fires its bonds the moment a cycle opens and would take every
    /// slot first come, first served. With bonds required the cycle holds up to
    /// REGISTRATIONS_HELD_PER_SLOT registrations per slot and draws the slots by bond value at
    /// the deadline, with the committed secret: the draw is the one anyone recomputes from the
    /// record, the drawn-out miners are told why, their bonds are free again, and only the
    /// admitted get work.
    #[test]
    fn bonded_registrations_beyond_the_cap_are_admitted_by_a_draw_by_bond_value() {
        let mut env = env();
        env.bonds.required = true;
        env.registrations_max = 3;
        let bond_min = env.bonds.terms.bond_min.to_sat();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: true,
            actions: Vec::new(),
        };
        // The fast client's 6 bonds first, then 6 honest ones (the honest bonds worth 3x).
        for n in 1..=6 {
            let actions = d.at(T0 + u64::from(n), bonded_registration(&env, n, bond_min));
            assert!(
                matches!(actions[..], [Action::Registered(_)]),
                "{actions:?}"
            );
        }
        for n in 7..=12 {
            let actions = d.at(T0 + 20, bonded_registration(&env, n, 3 * bond_min));
            assert!(
                matches!(actions[..], [Action::Registered(_)]),
                "{actions:?}"
            );
        }
        assert_eq!(d.state.registrations.len(), 12, "held until the deadline");
        // The held set is bounded: 4 per slot.
        assert_eq!(
            refused(&d.at(T0 + 30, bonded_registration(&env, 13, bond_min))),
            Some(Refusal::CycleFull {
                max: 3 * REGISTRATIONS_HELD_PER_SLOT
            })
        );

        d.at(T0 + 1_000, Event::Tick);
        let draw = d.state.admission.clone().expect("a draw");
        assert_eq!(draw.slots, 3);
        assert_eq!(draw.pending.len(), 12);
        // The cycle secret the announcement commits to is H(S) of the secret opened with.
        let cycle_secret = crate::verifiers::cycle_secret(&Hash256([42; 32]));
        let seed = lottery::admission_seed(&cycle_secret.0, 0);
        assert_eq!(draw.admitted, lottery::admitted(&seed, &draw.entries(), 3));
        let admitted: Vec<PublicKey> = d.state.registrations.keys().copied().collect();
        assert_eq!(admitted.len(), 3);
        assert!(admitted.iter().all(|m| draw.admitted.contains(m)));
        assert!(admitted
            .iter()
            .all(|m| d.state.registrations[m].assignment.is_some()));
        assert_eq!(d.state.bonds.len(), 3, "drawn-out bonds are free again");
        // The record publishes the draw, and its digest covers it.
        let record = d.state.record();
        assert_eq!(record.admission.as_ref(), Some(&draw));
        let mut steered = record.clone();
        steered.admission.as_mut().unwrap().admitted.reverse();
        assert_ne!(
            crate::api::record_digest(&steered),
            crate::api::record_digest(&record)
        );
        // A drawn-out miner that submits anyway is told why.
        let n = (1..=12u8)
            .find(|n| !draw.admitted.contains(&key(*n).public_key(&env.secp)))
            .unwrap();
        assert!(matches!(
            refused(&d.at(T0 + 1_500, submission(&env, n, 0, b"u"))),
            Some(Refusal::NotAdmitted {
                slots: 3,
                pending: 12
            })
        ));
    }

    /// Without required bonds the cap stays first come, first served, and no draw is made.
    #[test]
    fn optional_bonds_keep_the_cap_first_come_first_served() {
        let mut env = env();
        env.registrations_max = 2;
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        for n in 1..=2 {
            d.at(T0 + 1, registration(&env, n, 0));
        }
        assert_eq!(
            refused(&d.at(T0 + 2, registration(&env, 3, 0))),
            Some(Refusal::CycleFull { max: 2 })
        );
        d.at(T0 + 1_000, Event::Tick);
        assert!(d.state.admission.is_none());
        assert_eq!(d.state.registrations.len(), 2);
    }

    fn open(env: &CycleEnv) -> CycleState {
        CycleState::open(
            env,
            0,
            parent(),
            4,
            Hash256([5; 32]),
            T0,
            [42; 32],
            test_reveal().commitment(),
            Hash256::ZERO,
        )
    }

    /// Applies events in order, each at its time; every state is round-tripped through JSON
    /// when `restart` is set (what a kill -9 and restart from the store does).
    struct Driver<'a> {
        env: &'a CycleEnv,
        state: CycleState,
        restart: bool,
        actions: Vec<Action>,
    }

    impl Driver<'_> {
        fn at(&mut self, now: u64, event: Event) -> Vec<Action> {
            let state = if self.restart {
                let json = serde_json::to_string(&self.state).unwrap();
                serde_json::from_str(&json).unwrap()
            } else {
                self.state.clone()
            };
            let (next, actions) = tick(state, self.env, now, [now as u8; 32], event);
            self.state = next;
            self.actions.extend(actions.clone());
            actions
        }
    }

    fn refused(actions: &[Action]) -> Option<Refusal> {
        actions.iter().find_map(|a| match a {
            Action::Refused(r) => Some(r.clone()),
            _ => None,
        })
    }

    /// A full cycle: three miners register, two submit, one submits nothing; the lottery,
    /// certificates and the winner's block close the cycle. Returns the driver at the end.
    fn full_cycle(env: &CycleEnv, restart: bool) -> Driver<'_> {
        let mut d = Driver {
            env,
            state: open(env),
            restart,
            actions: Vec::new(),
        };
        for n in 1..=3 {
            assert!(matches!(
                d.at(T0 + 10, registration(env, n, 0))[..],
                [Action::Registered(_)]
            ));
        }
        // Training starts at the registration deadline; shards and segments are assigned.
        d.at(T0 + 1_000, Event::Tick);
        assert_eq!(d.state.phase, Phase::Training);
        let assigned: Vec<u32> = d
            .state
            .registrations
            .values()
            .map(|r| r.assignment.as_ref().unwrap().shard_index)
            .collect();
        assert_eq!(assigned, vec![0, 1, 2]);
        assert!(matches!(
            d.at(T0 + 2_000, submission(env, 1, 0, b"update-1"))[..],
            [Action::Receipted(_)]
        ));
        assert!(matches!(
            d.at(T0 + 2_500, submission(env, 2, 0, b"update-2"))[..],
            [Action::Receipted(_)]
        ));
        // Miner 3 submits nothing. At the deadline the machine asks for the evaluation.
        let actions = d.at(T0 + 5_000, Event::Tick);
        assert_eq!(actions, vec![Action::Evaluate { cycle: 0 }]);
        let actions = d.at(
            T0 + 5_100,
            Event::Evaluated(EvaluationInput {
                claims: ClaimsJudged::default(),
                global_loss_units: 2_300_000,
                measurements: vec![
                    measured(env, 1, 2_000, 150_000),
                    measured(env, 2, 300, 90_000),
                ],
                next_model_hash: Hash256([6; 32]),
                merged_model_hash: None,
                held_out: test_reveal(),
                next_quality: test_quality(),
            }),
        );
        let issued: Vec<&Certificate> = actions
            .iter()
            .flat_map(|a| match a {
                Action::Issued(c) => c.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(
            issued.len(),
            3,
            "two contribution certificates and one block-signing"
        );
        let block = issued.last().unwrap();
        assert_eq!(block.body.kind, CertificateKind::BlockSigning);
        assert_eq!(
            (
                block.body.height,
                block.body.prev_block_hash,
                block.body.attempt
            ),
            (5, parent(), 0)
        );
        let hash = BlockHash::from_byte_array([10; 32]);
        let actions = d.at(
            T0 + 6_000,
            Event::ChainObserved {
                tip_height: 5,
                at_target: Some(Box::new((hash, (*block).clone()))),
            },
        );
        assert!(matches!(
            &actions[..],
            [Action::Closed(CycleOutcome::Produced { attempt: 0, .. })]
        ));
        d
    }

    #[test]
    fn full_cycle_scores_draws_certifies_and_closes_on_the_winners_block() {
        let env = env();
        let d = full_cycle(&env, false);
        let record = d.state.record();
        assert_eq!(record.submissions.len(), 2, "the silent miner has no entry");
        let scores: Vec<u64> = record.submissions.iter().map(|s| s.score).collect();
        let mut expected = vec![2_000 * 150_000, 300 * 90_000];
        // Sorted by key: compare as sets.
        expected.sort_unstable();
        let mut sorted = scores.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected);
        // Anyone can recompute root, seed and winner from the record.
        let secret = record.revealed_secret.unwrap();
        assert!(lottery::verify_reveal(
            &record.announcement.announcement.commitment,
            &secret.0
        ));
        let contributions: Vec<Contribution> = record
            .submissions
            .iter()
            .map(|s| s.contribution())
            .collect();
        let root = lottery::contributions_root(&contributions);
        assert_eq!(record.contributions_root, Some(root));
        let seed = lottery::lottery_seed(&secret.0, &parent(), &root);
        assert_eq!(record.lottery_seed, Some(seed));
        let entries: Vec<Entry> = record.submissions.iter().map(|s| s.entry()).collect();
        assert_eq!(
            record.draw_order[0],
            lottery::winner(&seed, &entries, 0).unwrap()
        );
        assert_eq!(
            record.block_certificates[0].0.body.miner,
            record.draw_order[0]
        );
        assert!(record.announcement.verify(&env.secp));
        assert_eq!(d.state.contribution_certificates.len(), 2);
    }

    #[test]
    fn restarting_from_the_serialised_state_before_every_event_changes_nothing() {
        let env = env();
        let straight = full_cycle(&env, false);
        let restarted = full_cycle(&env, true);
        assert_eq!(straight.state, restarted.state);
        assert_eq!(straight.actions, restarted.actions);
    }

    #[test]
    fn zero_scores_never_enter_the_draw_and_no_entry_closes_without_a_block() {
        let env = env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        d.at(T0, registration(&env, 1, 0));
        d.at(T0, registration(&env, 2, 0));
        d.at(T0 + 1_500, submission(&env, 1, 0, b"unchanged"));
        d.at(T0 + 1_500, submission(&env, 2, 0, b"noise"));
        d.at(T0 + 5_000, Event::Tick);
        let actions = d.at(
            T0 + 5_000,
            Event::Evaluated(EvaluationInput {
                claims: ClaimsJudged::default(),
                global_loss_units: 2_300_000,
                // Unchanged weights: nothing trained. Noise: everything changed, loss worse.
                measurements: vec![
                    measured(&env, 1, 0, 0),
                    measured(&env, 2, 2_080, -4_000_000),
                ],
                next_model_hash: Hash256([5; 32]),
                merged_model_hash: None,
                held_out: test_reveal(),
                next_quality: test_quality(),
            }),
        );
        assert!(actions.contains(&Action::Closed(CycleOutcome::NoEligibleEntries)));
        let record = d.state.record();
        assert!(record.submissions.iter().all(|s| s.score == 0));
        assert!(record.draw_order.is_empty() && record.block_certificates.is_empty());
        assert_eq!(
            d.state.contribution_certificates.len(),
            2,
            "measured work is still certified"
        );
    }

    /// Miners 1 and 2 register, submit, and are evaluated with positive scores (10 x 10 and
    /// 10 x 20): the cycle is in its block window with two draws available.
    fn two_miners_scored(d: &mut Driver<'_>, env: &CycleEnv) {
        d.at(T0, registration(env, 1, 0));
        d.at(T0, registration(env, 2, 0));
        d.at(T0 + 1_500, submission(env, 1, 0, b"a"));
        d.at(T0 + 1_500, submission(env, 2, 0, b"b"));
        d.at(T0 + 5_000, Event::Tick);
        d.at(
            T0 + 5_000,
            Event::Evaluated(EvaluationInput {
                claims: ClaimsJudged::default(),
                global_loss_units: 1,
                measurements: vec![measured(env, 1, 10, 10), measured(env, 2, 10, 20)],
                next_model_hash: Hash256([5; 32]),
                merged_model_hash: None,
                held_out: test_reveal(),
                next_quality: test_quality(),
            }),
        );
    }

    #[test]
    fn a_silent_winner_hands_over_to_the_next_draw_then_the_cycle_gives_up() {
        let env = env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: true,
            actions: Vec::new(),
        };
        two_miners_scored(&mut d, &env);
        let order = d.state.lottery.as_ref().unwrap().draw_order.clone();
        assert_eq!(order.len(), 2);
        // Window of attempt 0 runs to T0 + 7,000; the node shows nothing at height 5.
        assert!(d
            .at(
                T0 + 6_999,
                Event::ChainObserved {
                    tip_height: 4,
                    at_target: None
                }
            )
            .is_empty());
        let actions = d.at(
            T0 + 7_000,
            Event::ChainObserved {
                tip_height: 4,
                at_target: None,
            },
        );
        let [Action::Issued(certs)] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!((certs[0].body.attempt, certs[0].body.miner), (1, order[1]));
        assert_eq!(d.state.attempt(), Some(1));
        // The second winner is silent too: no third draw exists, the cycle closes.
        let actions = d.at(
            T0 + 9_000,
            Event::ChainObserved {
                tip_height: 4,
                at_target: None,
            },
        );
        assert_eq!(
            actions,
            vec![Action::Closed(CycleOutcome::WinnersSilent { attempts: 2 })]
        );
    }

    #[test]
    fn a_late_block_of_attempt_zero_still_counts_and_a_foreign_block_supersedes() {
        let env = env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        two_miners_scored(&mut d, &env);
        d.at(
            T0 + 7_000,
            Event::ChainObserved {
                tip_height: 4,
                at_target: None,
            },
        );
        let first = d.state.block_certificates[0].0.clone();
        let mut other = d.clone_state_with(&env);
        let hash = BlockHash::from_byte_array([11; 32]);
        let actions = d.at(
            T0 + 7_500,
            Event::ChainObserved {
                tip_height: 5,
                at_target: Some(Box::new((hash, first.clone()))),
            },
        );
        assert!(matches!(
            &actions[..],
            [Action::Closed(CycleOutcome::Produced { attempt: 0, .. })]
        ));
        // A block at the height with someone else's certificate: the chain moved on.
        let mut foreign = first;
        foreign.body.nonce = [0xee; 16];
        let actions = other.at(
            T0 + 7_500,
            Event::ChainObserved {
                tip_height: 5,
                at_target: Some(Box::new((hash, foreign))),
            },
        );
        assert!(matches!(
            &actions[..],
            [Action::Closed(CycleOutcome::Superseded { height: 5, .. })]
        ));
    }

    impl<'a> Driver<'a> {
        fn clone_state_with(&self, env: &'a CycleEnv) -> Driver<'a> {
            Driver {
                env,
                state: self.state.clone(),
                restart: false,
                actions: Vec::new(),
            }
        }
    }

    #[test]
    fn submissions_are_hidden_until_the_deadline_and_copies_are_refused() {
        let env = env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        d.at(T0, registration(&env, 1, 0));
        d.at(T0, registration(&env, 2, 0));
        // Before training starts there is nothing to submit against.
        assert!(matches!(
            refused(&d.at(T0 + 500, submission(&env, 1, 0, b"x"))),
            Some(Refusal::TrainingNotStarted { .. })
        ));
        d.at(T0 + 1_500, submission(&env, 1, 0, b"honest update"));
        // While training, the public record shows a count, no hashes, no secret: a copier
        // has nothing to copy (update bytes are never served at all).
        let record = d.state.record();
        assert_eq!((record.submitted, record.submissions.len()), (1, 0));
        assert_eq!(record.revealed_secret, None);
        assert!(!serde_json::to_string(&record)
            .unwrap()
            .contains(&primitives::sha256(b"honest update").to_string()));
        // Even with the bytes leaked out of band, a byte-identical copy is refused...
        assert_eq!(
            refused(&d.at(T0 + 2_000, submission(&env, 2, 0, b"honest update"))),
            Some(Refusal::DuplicateUpdate)
        );
        // ...a second upload by the same miner too...
        assert_eq!(
            refused(&d.at(T0 + 2_000, submission(&env, 1, 0, b"other"))),
            Some(Refusal::AlreadySubmitted)
        );
        // ...and once the record reveals them, the deadline has passed.
        assert!(matches!(
            refused(&d.at(T0 + 5_000, submission(&env, 2, 0, b"copied later"))),
            Some(Refusal::Late { .. })
        ));
        assert_eq!(d.state.phase, Phase::Evaluation);
        assert!(d.state.record().revealed_secret.is_some());
    }

    #[test]
    fn late_submission_is_refused_even_without_a_tick_at_the_deadline() {
        let env = env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        d.at(T0, registration(&env, 1, 0));
        let actions = d.at(T0 + 5_001, submission(&env, 1, 0, b"late"));
        assert_eq!(actions[0], Action::Evaluate { cycle: 0 });
        assert_eq!(
            refused(&actions),
            Some(Refusal::Late {
                deadline_ms: T0 + 5_000,
                now_ms: T0 + 5_001
            })
        );
        assert!(d.state.submissions.is_empty());
    }

    #[test]
    fn registration_checks_signature_cycle_address_hardware_cap_and_deadline() {
        let mut env = env();
        env.registrations_max = 2;
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        let Event::Register(good) = registration(&env, 1, 0) else {
            unreachable!()
        };
        let mut forged = good.clone();
        forged.payout_address = address(&env, &key(9));
        assert_eq!(
            refused(&d.at(T0, Event::Register(forged))),
            Some(Refusal::BadSignature)
        );
        assert!(matches!(
            refused(&d.at(T0, registration(&env, 1, 3))),
            Some(Refusal::WrongCycle {
                current: 0,
                found: 3
            })
        ));
        let k = key(3);
        let bad_address =
            RegisterRequest::new_signed(&env.secp, &k, 0, "not-an-address".into(), good.hardware);
        assert!(matches!(
            refused(&d.at(T0, Event::Register(bad_address))),
            Some(Refusal::BadPayoutAddress { .. })
        ));
        let mainnet = Address::p2wpkh(
            &CompressedPublicKey(k.public_key(&env.secp)),
            Network::Bitcoin,
        )
        .to_string();
        let wrong_net = RegisterRequest::new_signed(&env.secp, &k, 0, mainnet, good.hardware);
        assert!(matches!(
            refused(&d.at(T0, Event::Register(wrong_net))),
            Some(Refusal::BadPayoutAddress { .. })
        ));
        let no_threads = RegisterRequest::new_signed(
            &env.secp,
            &k,
            0,
            address(&env, &k),
            Hardware {
                threads: 0,
                memory_bytes: 1,
            },
        );
        assert_eq!(
            refused(&d.at(T0, Event::Register(no_threads))),
            Some(Refusal::BadHardware)
        );
        assert!(matches!(
            d.at(T0, Event::Register(good.clone()))[..],
            [Action::Registered(_)]
        ));
        assert!(
            matches!(d.at(T0, Event::Register(good))[..], [Action::Registered(_)]),
            "idempotent"
        );
        assert!(matches!(
            d.at(T0, registration(&env, 2, 0))[..],
            [Action::Registered(_)]
        ));
        assert_eq!(
            refused(&d.at(T0, registration(&env, 3, 0))),
            Some(Refusal::CycleFull { max: 2 })
        );
        assert!(matches!(
            refused(&d.at(T0 + 1_000, registration(&env, 4, 0))),
            Some(Refusal::RegistrationClosed { .. })
        ));
        assert_eq!(
            refused(&d.at(T0 + 1_500, submission(&env, 4, 0, b"u"))),
            Some(Refusal::NotRegistered)
        );
    }

    #[test]
    fn segments_follow_hardware_and_rotate_over_miners_and_cycles() {
        let segments = env().segments;
        let big = Hardware {
            threads: 8,
            memory_bytes: 1 << 30,
        };
        let tiny = Hardware {
            threads: 1,
            memory_bytes: 2_080 * BYTES_PER_TRAINED_PARAM - 1,
        };
        assert_eq!(
            choose_segment(&segments, tiny, 0, 0),
            "layer1",
            "layer0 does not fit"
        );
        assert_eq!(choose_segment(&segments, tiny, 1, 7), "layer1");
        assert_eq!(choose_segment(&segments, big, 0, 0), "layer0");
        assert_eq!(choose_segment(&segments, big, 1, 0), "layer1");
        assert_eq!(choose_segment(&segments, big, 0, 1), "layer1");
        let none_fit = Hardware {
            threads: 1,
            memory_bytes: 16,
        };
        assert_eq!(
            choose_segment(&segments, none_fit, 0, 0),
            "layer1",
            "smallest"
        );
    }

    fn challenge_env() -> CycleEnv {
        let mut env = env();
        env.timing.challenge_ms = 1_000;
        env
    }

    #[test]
    fn challenges_open_at_the_deadline_and_answers_are_taken_once_until_the_challenge_deadline() {
        let env = challenge_env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: true,
            actions: Vec::new(),
        };
        for n in 1..=3 {
            d.at(T0 + 10, registration(&env, n, 0));
        }
        d.at(T0 + 1_500, submission(&env, 1, 0, b"a"));
        d.at(T0 + 1_500, submission(&env, 2, 0, b"b"));
        let miner1 = key(1).public_key(&env.secp);
        // Nobody can know a challenge while training.
        assert_eq!(d.state.challenge(&env, &miner1), None);
        assert_eq!(
            refused(&d.at(T0 + 2_000, answer(&env, 1, 0, b"early"))),
            Some(Refusal::ChallengeNotOpen {
                opens_ms: T0 + 5_000
            })
        );
        d.at(T0 + 5_000, Event::Tick);
        assert_eq!(d.state.phase, Phase::Challenge);
        let challenge = d.state.challenge(&env, &miner1).unwrap();
        // Derived from the revealed secret and every commitment: anyone can recompute it.
        assert_eq!(
            lottery::commitment(&challenge.revealed_secret.0),
            d.state.announcement().commitment
        );
        let seed = proof::challenge_seed(
            &challenge.revealed_secret,
            &d.state.commitments_digest(),
            &miner1,
        );
        assert_eq!(
            challenge.intervals,
            proof::challenged_intervals(&seed, 10, 2)
        );
        assert_eq!(*challenge.intervals.last().unwrap(), 9);
        assert_ne!(
            d.state
                .challenge(&env, &key(2).public_key(&env.secp))
                .unwrap()
                .intervals,
            Vec::<u64>::new()
        );
        assert_eq!(d.state.challenge(&env, &key(3).public_key(&env.secp)), None);

        assert_eq!(
            refused(&d.at(T0 + 5_100, answer(&env, 3, 0, b"never submitted"))),
            Some(Refusal::NotSubmitted)
        );
        let mut forged = answer(&env, 1, 0, b"forged");
        if let Event::Answer { signature, .. } = &mut forged {
            *signature = CompactSignature([1; 64]);
        }
        assert_eq!(
            refused(&d.at(T0 + 5_100, forged)),
            Some(Refusal::BadSignature)
        );
        assert!(matches!(
            d.at(T0 + 5_200, answer(&env, 1, 0, b"opening"))[..],
            [Action::AnswerAccepted { .. }]
        ));
        assert_eq!(
            refused(&d.at(T0 + 5_300, answer(&env, 1, 0, b"again"))),
            Some(Refusal::AlreadyAnswered)
        );
        assert_eq!(d.state.phase, Phase::Challenge, "miner 2 has not answered");
        // Miner 2 stays silent: evaluation starts at the challenge deadline.
        let actions = d.at(T0 + 6_000, Event::Tick);
        assert_eq!(d.state.phase, Phase::Evaluation);
        assert!(actions.iter().any(|a| matches!(a, Action::Evaluate { .. })));
        assert_eq!(
            refused(&d.at(T0 + 6_001, answer(&env, 2, 0, b"late"))),
            Some(Refusal::AnswerLate {
                deadline_ms: T0 + 6_000,
                now_ms: T0 + 6_001
            })
        );
        assert_eq!(
            d.state.record().commitments_digest,
            Some(d.state.commitments_digest())
        );
    }

    #[test]
    fn evaluation_starts_as_soon_as_every_submitter_answered() {
        let env = challenge_env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        d.at(T0 + 10, registration(&env, 1, 0));
        d.at(T0 + 1_500, submission(&env, 1, 0, b"a"));
        d.at(T0 + 5_000, Event::Tick);
        d.at(T0 + 5_050, answer(&env, 1, 0, b"opening"));
        assert_eq!(d.state.phase, Phase::Evaluation);
    }

    #[test]
    fn a_failed_or_unanswered_check_scores_zero_whatever_the_loss_reduction() {
        let env = env();
        let mut d = Driver {
            env: &env,
            state: open(&env),
            restart: false,
            actions: Vec::new(),
        };
        for n in 1..=3 {
            d.at(T0 + 10, registration(&env, n, 0));
        }
        for (n, update) in [(1, &b"honest"[..]), (2, b"cheat"), (3, b"silent")] {
            d.at(T0 + 1_500, submission(&env, n, 0, update));
        }
        d.at(T0 + 5_000, Event::Tick);
        let mut cheat = measured(&env, 2, 2_000, 900_000);
        cheat.verification = Verdict::Failed {
            failure: proof::Failure::UpdateNotFinalState,
        };
        let mut silent = measured(&env, 3, 2_000, 900_000);
        silent.verification = Verdict::Unanswered;
        d.at(
            T0 + 5_000,
            Event::Evaluated(EvaluationInput {
                claims: ClaimsJudged::default(),
                global_loss_units: 2_000_000,
                measurements: vec![measured(&env, 1, 100, 10), cheat, silent],
                next_model_hash: Hash256([6; 32]),
                merged_model_hash: None,
                held_out: test_reveal(),
                next_quality: test_quality(),
            }),
        );
        let lottery = d.state.lottery.clone().unwrap();
        let scores: Vec<(u64, &str)> = lottery
            .scored
            .iter()
            .map(|s| (s.score, s.verification.name()))
            .collect();
        assert!(scores.contains(&(consensus::score::score(100, 10), "verified")));
        assert!(scores.contains(&(0, "failed")));
        assert!(scores.contains(&(0, "unanswered")));
        assert_eq!(lottery.draw_order, vec![key(1).public_key(&env.secp)]);
    }
}
