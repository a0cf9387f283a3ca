//! Wire types of the coordinator's HTTP API, shared by the server, the typed client and the
//! miner, and the signed messages with their exact byte layouts.
//!
//! Every signed message is an ECDSA (secp256k1, RFC 6979, low-S, 64-byte compact) signature
//! over a tagged SHA-256 hash ([`primitives::tagged_hash`]) with one tag per message kind, so a
//! signature made for one purpose can never be replayed as another.

pub use crate::jobs_api::*;
pub use crate::verifier_api::*;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{ecdsa, Message, PublicKey, Secp256k1, SecretKey, Signing, Verification};
use bitcoin::BlockHash;
use primitives::{tagged_hash, Certificate, Hash256};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most cycle records served by one `GET /v1/cycles` call: a record is a few KiB, so a page
/// stays well under a megabyte; clients page with `from`.
pub const CYCLE_RECORDS_PER_PAGE_MAX: u64 = 100;

/// Tag of a miner's registration signature.
pub const REGISTRATION_TAG: &str = "trainchain/coordinator/registration";
/// Tag of a miner's submission signature.
pub const SUBMISSION_TAG: &str = "trainchain/coordinator/submission";
/// Tag of the coordinator's receipt signature.
pub const RECEIPT_TAG: &str = "trainchain/coordinator/receipt";
/// Tag of the coordinator's cycle announcement signature.
pub const ANNOUNCEMENT_TAG: &str = "trainchain/coordinator/announcement";
/// Tag of a miner's signature over its answer to its challenge.
pub const ANSWER_TAG: &str = "trainchain/coordinator/answer";
/// Tag of the per-cycle shard seed derived from the commitment.
pub const SHARD_SEED_TAG: &str = "trainchain/coordinator/shard-seed";
/// Tag of the commitment to a cycle's held-out batch.
pub const HELD_OUT_COMMITMENT_TAG: &str = "trainchain/coordinator/held-out";
/// Tag of a cycle record's digest (what certificates anchor on chain).
pub const RECORD_TAG: &str = "trainchain/coordinator/record";
/// Tag of the digest over a record's submissions, inside the record digest.
pub const SUBMISSIONS_TAG: &str = "trainchain/coordinator/record/submissions";
/// Tag of a record's admission digest (present only in cycles that drew their slots).
pub const ADMISSION_TAG: &str = "trainchain/coordinator/record/admission";

/// HTTP header carrying the submitting miner's public key (hex, 33 bytes compressed).
pub const MINER_HEADER: &str = "x-trainchain-miner";
/// HTTP header carrying the miner's submission signature (hex, 64 bytes compact).
pub const SIGNATURE_HEADER: &str = "x-trainchain-signature";
/// HTTP header carrying the hash of the task the miner ran (hex, 32 bytes).
pub const TASK_HASH_HEADER: &str = "x-trainchain-task-hash";
/// HTTP header carrying the miner's transcript root (hex, 32 bytes).
pub const TRANSCRIPT_ROOT_HEADER: &str = "x-trainchain-transcript-root";
/// HTTP header carrying the steps the miner's run took (decimal).
pub const STEPS_HEADER: &str = "x-trainchain-steps";

/// A 64-byte compact ECDSA signature, hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CompactSignature(pub [u8; 64]);

impl CompactSignature {
    pub fn sign<C: Signing>(secp: &Secp256k1<C>, key: &SecretKey, digest: &Hash256) -> Self {
        let sig = secp.sign_ecdsa(&Message::from_digest(digest.0), key);
        CompactSignature(sig.serialize_compact())
    }

    /// True if this is a valid low-S signature of `digest` by `key`.
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        key: &PublicKey,
        digest: &Hash256,
    ) -> bool {
        match ecdsa::Signature::from_compact(&self.0) {
            Ok(sig) => secp
                .verify_ecdsa(&Message::from_digest(digest.0), &sig, key)
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Display for CompactSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CompactSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactSignature({self})")
    }
}

impl FromStr for CompactSignature {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 64];
        hex::decode_to_slice(s, &mut out)?;
        Ok(CompactSignature(out))
    }
}

impl Serialize for CompactSignature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CompactSignature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A certificate on the wire: hex of its fixed 328-byte encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateHex(pub Certificate);

impl Serialize for CertificateHex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0.encode()))
    }
}

impl<'de> Deserialize<'de> for CertificateHex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        Certificate::decode(&bytes)
            .map(CertificateHex)
            .map_err(serde::de::Error::custom)
    }
}

/// What a miner declares about its machine; the coordinator sizes its segment to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    pub threads: u32,
    pub memory_bytes: u64,
}

/// A bond named by its outpoint, `TXID:VOUT` on the wire (the txid in the usual reversed hex,
/// as `gettxout` takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BondOutpoint(pub bitcoin::OutPoint);

impl fmt::Display for BondOutpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.txid, self.0.vout)
    }
}

impl FromStr for BondOutpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (txid, vout) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not TXID:VOUT"))?;
        let txid = bitcoin::Txid::from_str(txid)
            .map_err(|e| format!("{txid:?} is not a transaction id: {e}"))?;
        let vout = vout
            .parse::<u32>()
            .map_err(|e| format!("{vout:?} is not an output index: {e}"))?;
        Ok(BondOutpoint(bitcoin::OutPoint::new(txid, vout)))
    }
}

impl Serialize for BondOutpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BondOutpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `POST /v1/register` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The cycle registered for (binds the signature to it: no replay into later cycles).
    pub cycle: u64,
    pub miner: PublicKey,
    /// Where the block subsidy goes if this miner wins (an address of the chain's network).
    pub payout_address: String,
    pub hardware: Hardware,
    /// The bond backing this registration (a `consensus::bond` output for `miner`), if any;
    /// required when the coordinator admits bonded registrations only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond: Option<BondOutpoint>,
    /// Signature by `miner` over [`RegisterRequest::signing_hash`].
    pub signature: CompactSignature,
}

impl RegisterRequest {
    /// `H_registration(cycle u64 LE || miner 33 || len(payout_address) u32 LE || payout_address
    /// UTF-8 || threads u32 LE || memory_bytes u64 LE || opt(bond: txid 32 (internal byte order)
    /// || vout u32 LE))`, where `opt(x)` is `0x00` when absent and `0x01 || x` when present.
    pub fn signing_hash(
        cycle: u64,
        miner: &PublicKey,
        payout_address: &str,
        hardware: Hardware,
        bond: Option<&BondOutpoint>,
    ) -> Hash256 {
        let address_len = u32::try_from(payout_address.len()).unwrap_or(u32::MAX);
        let mut bond_bytes = Vec::with_capacity(37);
        match bond {
            None => bond_bytes.push(0),
            Some(b) => {
                bond_bytes.push(1);
                bond_bytes.extend_from_slice(b.0.txid.as_byte_array());
                bond_bytes.extend_from_slice(&b.0.vout.to_le_bytes());
            }
        }
        tagged_hash(
            REGISTRATION_TAG,
            &[
                &cycle.to_le_bytes(),
                &miner.serialize(),
                &address_len.to_le_bytes(),
                payout_address.as_bytes(),
                &hardware.threads.to_le_bytes(),
                &hardware.memory_bytes.to_le_bytes(),
                &bond_bytes,
            ],
        )
    }

    /// An unbonded registration signed with the miner's key.
    pub fn new_signed<C: Signing>(
        secp: &Secp256k1<C>,
        key: &SecretKey,
        cycle: u64,
        payout_address: String,
        hardware: Hardware,
    ) -> Self {
        Self::new_signed_bonded(secp, key, cycle, payout_address, hardware, None)
    }

    /// A registration naming `bond` (or none), signed with the miner's key.
    pub fn new_signed_bonded<C: Signing>(
        secp: &Secp256k1<C>,
        key: &SecretKey,
        cycle: u64,
        payout_address: String,
        hardware: Hardware,
        bond: Option<BondOutpoint>,
    ) -> Self {
        let miner = key.public_key(secp);
        let digest = Self::signing_hash(cycle, &miner, &payout_address, hardware, bond.as_ref());
        RegisterRequest {
            cycle,
            miner,
            payout_address,
            hardware,
            bond,
            signature: CompactSignature::sign(secp, key, &digest),
        }
    }

    pub fn verify<C: Verification>(&self, secp: &Secp256k1<C>) -> bool {
        let digest = Self::signing_hash(
            self.cycle,
            &self.miner,
            &self.payout_address,
            self.hardware,
            self.bond.as_ref(),
        );
        self.signature.verify(secp, &self.miner, &digest)
    }
}

/// `H_answer(cycle u64 LE || miner 33 || SHA-256(answer bytes) 32)`: what a miner signs when it
/// uploads its answer to its challenge.
pub fn answer_signing_hash(cycle: u64, miner: &PublicKey, answer_hash: &Hash256) -> Hash256 {
    tagged_hash(
        ANSWER_TAG,
        &[&cycle.to_le_bytes(), &miner.serialize(), &answer_hash.0],
    )
}

/// The lottery weight of a submission: `consensus::score::score` of what was measured, or 0
/// unless its replay check passed. The coordinator and the auditor both use this.
pub fn verified_score(
    verification: &proof::Verdict,
    params_trained: u64,
    loss_reduction: i64,
) -> u64 {
    if verification.passed() {
        consensus::score::score(params_trained, loss_reduction)
    } else {
        0
    }
}

/// The coordinator's signed acknowledgement that it stored a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub cycle: u64,
    pub miner: PublicKey,
    /// SHA-256 of the uploaded safetensors bytes.
    pub update_hash: Hash256,
    /// The transcript root and step count the miner signed with the update.
    pub transcript_root: Hash256,
    pub steps: u64,
    pub received_at_ms: u64,
    pub coordinator: PublicKey,
    pub signature: CompactSignature,
}

impl Receipt {
    /// `H_receipt(cycle u64 LE || miner 33 || update_hash 32 || transcript_root 32 || steps u64
    /// LE || received_at_ms u64 LE || coordinator 33)`.
    pub fn signing_hash(&self) -> Hash256 {
        tagged_hash(
            RECEIPT_TAG,
            &[
                &self.cycle.to_le_bytes(),
                &self.miner.serialize(),
                &self.update_hash.0,
                &self.transcript_root.0,
                &self.steps.to_le_bytes(),
                &self.received_at_ms.to_le_bytes(),
                &self.coordinator.serialize(),
            ],
        )
    }

    pub fn verify<C: Verification>(&self, secp: &Secp256k1<C>) -> bool {
        self.signature
            .verify(secp, &self.coordinator, &self.signing_hash())
    }
}

/// A cycle's public opening: what it builds on, what it trains, when it ends, and the
/// commitment to the secret that seeds its lottery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub cycle: u64,
    pub chain_id: u32,
    /// The chain tip the cycle builds on; the winner's block has it as parent.
    pub parent: BlockHash,
    /// Height of the block the winner may produce (parent height + 1).
    pub height: u32,
    /// Hash of the global model miners train (`learning::model_hash`).
    pub model_hash: Hash256,
    pub opened_at_ms: u64,
    pub registration_deadline_ms: u64,
    pub submission_deadline_ms: u64,
    /// Last moment a miner's answer to its challenge is accepted.
    pub challenge_deadline_ms: u64,
    /// How long a drawn winner has to get its block to the coordinator's node.
    pub block_window_ms: u64,
    /// `consensus::lottery::commitment(secret)`.
    pub commitment: Hash256,
    /// [`HeldOutReveal::commitment`] of the batch this cycle is scored on; the record reveals
    /// the batch after evaluation.
    pub held_out_commitment: Hash256,
    /// [`record_digest`] of the previous cycle's record (zero for cycle 0): the records form a
    /// hash chain, so anchoring one on chain anchors every one before it.
    pub prev_record_hash: Hash256,
    pub coordinator: PublicKey,
    /// [`JobTerms::id`] of the job whose model the cycle trains (`GET /v1/jobs/{id}`).
    #[serde(default)]
    pub job: Hash256,
}

impl Announcement {
    /// `H_announcement(cycle u64 LE || chain_id u32 LE || parent 32 (internal byte order) ||
    /// height u32 LE || model_hash 32 || opened_at_ms u64 LE || registration_deadline_ms u64 LE
    /// || submission_deadline_ms u64 LE || challenge_deadline_ms u64 LE || block_window_ms u64 LE
    /// || commitment 32 || held_out_commitment 32 || prev_record_hash 32 || coordinator 33
    /// [|| job 32, when not zero])`: an announcement from before jobs (job zero) keeps its
    /// hash, so its signature and the record digests that chain from it still verify.
    pub fn signing_hash(&self) -> Hash256 {
        let job: &[u8] = if self.job == Hash256::ZERO {
            &[]
        } else {
            &self.job.0
        };
        tagged_hash(
            ANNOUNCEMENT_TAG,
            &[
                &self.cycle.to_le_bytes(),
                &self.chain_id.to_le_bytes(),
                self.parent.as_byte_array(),
                &self.height.to_le_bytes(),
                &self.model_hash.0,
                &self.opened_at_ms.to_le_bytes(),
                &self.registration_deadline_ms.to_le_bytes(),
                &self.submission_deadline_ms.to_le_bytes(),
                &self.challenge_deadline_ms.to_le_bytes(),
                &self.block_window_ms.to_le_bytes(),
                &self.commitment.0,
                &self.held_out_commitment.0,
                &self.prev_record_hash.0,
                &self.coordinator.serialize(),
                job,
            ],
        )
    }

    /// The deterministic seed of the cycle's shard assignment: the first 8 bytes (LE) of
    /// `H_shard-seed(commitment 32 || cycle u64 LE)`. Fixed at announcement, before anyone
    /// registers, so the coordinator cannot pick shards per miner afterwards.
    pub fn shard_seed(&self) -> u64 {
        let h = tagged_hash(
            SHARD_SEED_TAG,
            &[&self.commitment.0, &self.cycle.to_le_bytes()],
        );
        u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
    }
}

/// An announcement with the coordinator's signature over [`Announcement::signing_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnnouncement {
    pub announcement: Announcement,
    pub signature: CompactSignature,
}

impl SignedAnnouncement {
    pub fn verify<C: Verification>(&self, secp: &Secp256k1<C>) -> bool {
        self.signature.verify(
            secp,
            &self.announcement.coordinator,
            &self.announcement.signing_hash(),
        )
    }
}

/// Where a cycle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    Registration,
    Training,
    Challenge,
    Verification,
    Evaluation,
    BlockWindow,
    Closed,
}

/// `GET /v1/cycle`: the current cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleStatus {
    pub announcement: SignedAnnouncement,
    pub phase: PhaseName,
    /// Current attempt while in the block window.
    pub attempt: Option<u32>,
    pub registered: u64,
    pub submitted: u64,
    /// Coordinator clock, so miners can correct for skew.
    pub now_ms: u64,
}

/// `POST /v1/register` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub cycle: u64,
    pub miner: PublicKey,
    pub registration_deadline_ms: u64,
    pub submission_deadline_ms: u64,
}

/// Hyper-parameters the coordinator suggests for the cycle's training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainHints {
    pub lr: f32,
    pub momentum: f32,
    pub batch: usize,
}

impl TrainHints {
    /// The rate, momentum and batch a model trains well with under plain SGD: 0.05 for the
    /// MLP and CNN; 0.3 for the transformer, whose small init and layer norms need a larger
    /// step (0.6 diverged within 30 steps on the WordNet corpus, 0.3 with momentum 0.9 is
    /// stable; `cargo run --release -p learning --bin lm-bench`). The coordinator anneals the
    /// rate across cycles from here.
    pub fn for_model(model: &learning::ModelSpec) -> Self {
        let lr = match model {
            learning::ModelSpec::Transformer { .. } => 0.3,
            _ => 0.05,
        };
        TrainHints {
            lr,
            momentum: 0.9,
            batch: 32,
        }
    }
}

/// `GET /v1/cycles/{cycle}/task/{miner}`: a registered miner's work for the cycle. The
/// weights and the shard are separate binary downloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub cycle: u64,
    pub miner: PublicKey,
    pub model: learning::ModelSpec,
    pub model_hash: Hash256,
    /// The segment to train (all other parameters are frozen), and the exact tensors an
    /// update must contain.
    pub segment: learning::ExpectedSegment,
    pub segment_params: u64,
    pub shard_index: u32,
    pub shard_count: u32,
    pub shard_samples: u64,
    pub feature_count: usize,
    pub class_count: usize,
    pub submission_deadline_ms: u64,
    pub hints: TrainHints,
    /// Everything a replay of the run needs; the miner must train exactly this (the hints'
    /// rate, momentum and batch are the task's).
    pub replay: proof::ReplayTask,
    /// Largest update accepted for this segment, in bytes.
    pub update_bytes_max: usize,
}

/// `GET /v1/cycles/{cycle}/challenge/{miner}`: the intervals a miner must open, from the
/// secret revealed at the submission deadline and the digest of every commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeInfo {
    pub cycle: u64,
    pub miner: PublicKey,
    /// Opens the announcement's commitment (`consensus::lottery::commitment`).
    pub revealed_secret: Hash256,
    pub commitments_digest: Hash256,
    /// q: random intervals besides the last one.
    pub challenges: u32,
    /// `proof::challenged_intervals(proof::challenge_seed(secret, digest, miner), ...)`.
    pub intervals: Vec<u64>,
    pub challenge_deadline_ms: u64,
}

/// `GET /v1/cycles/{cycle}/certificates/{miner}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinerCertificates {
    pub cycle: u64,
    pub miner: PublicKey,
    pub contribution: Option<CertificateHex>,
    /// Block-signing certificates issued to this miner in the cycle (one per attempt it won).
    pub block_signing: Vec<CertificateHex>,
}

/// A receipted submission with what the coordinator measured, as published after evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoredSubmission {
    pub miner: PublicKey,
    pub payout_address: String,
    pub segment: String,
    pub update_hash: Hash256,
    /// What the miner signed with its update.
    pub commitment: proof::Commitment,
    pub received_at_ms: u64,
    pub params_trained: u64,
    /// Held-out loss reduction in 10^-6 nat (`primitives::certificate::LOSS_UNITS_PER_NAT`).
    pub loss_reduction: i64,
    /// [`verified_score`]: zero unless the replay check passed.
    pub score: u64,
    /// The replay check of the miner's challenged intervals.
    pub verification: proof::Verdict,
    /// The checkpoint interval `k` of the miner's task ([`crate::pace`]): its budget was
    /// `pace::TRANSCRIPT_INTERVALS * k` steps, and its challenge was drawn over its intervals.
    /// (A record written before pacing has none: it had the default 16.)
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
}

/// The checkpoint interval of every task before budgets were paced.
pub fn default_checkpoint_interval() -> u64 {
    proof::CHECKPOINT_INTERVAL_DEFAULT
}

impl ScoredSubmission {
    pub fn contribution(&self) -> consensus::lottery::Contribution {
        consensus::lottery::Contribution {
            miner: self.miner,
            params_trained: self.params_trained,
            loss_reduction: self.loss_reduction,
            score: self.score,
            update_hash: self.update_hash,
        }
    }

    pub fn entry(&self) -> consensus::lottery::Entry {
        consensus::lottery::Entry {
            miner: self.miner,
            score: self.score,
        }
    }
}

/// How a cycle ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CycleOutcome {
    /// The block of the `attempt`-th draw reached the coordinator's node.
    Produced {
        height: u32,
        hash: BlockHash,
        attempt: u32,
        miner: PublicKey,
    },
    /// No submission scored above zero: no block-signing certificate.
    NoEligibleEntries,
    /// Every drawn winner stayed silent through its block window.
    WinnersSilent { attempts: u32 },
    /// Another block took the height (the chain moved under the cycle).
    Superseded { height: u32, hash: BlockHash },
}

/// `GET /v1/cycles/{cycle}/record`: everything needed to recompute the cycle's lottery.
/// Submissions, the secret, root, seed and draw appear only after the submission deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    pub announcement: SignedAnnouncement,
    pub phase: PhaseName,
    pub registered: u64,
    /// Receipted submissions not yet revealed (count only, before the deadline).
    pub submitted: u64,
    pub revealed_secret: Option<Hash256>,
    /// `proof::commitments_digest` of every receipted commitment, from the submission deadline.
    pub commitments_digest: Option<Hash256>,
    /// Held-out loss of the cycle's global model, in 10^-6 nat.
    pub global_loss_units: Option<i64>,
    /// Every receipted submission with its measured numbers, sorted by miner key.
    pub submissions: Vec<ScoredSubmission>,
    pub contributions_root: Option<Hash256>,
    pub lottery_seed: Option<Hash256>,
    /// The draw order (attempt k = element k), the first `cycle::DRAW_ATTEMPTS_MAX` draws.
    pub draw_order: Vec<PublicKey>,
    /// Block-signing certificates issued so far, attempt 0 first.
    pub block_certificates: Vec<CertificateHex>,
    pub outcome: Option<CycleOutcome>,
    /// Hash of the global model after this cycle's aggregation. The next cycle trains it if
    /// this cycle's block is the tip it opens on; otherwise the model this cycle trained.
    pub next_model_hash: Option<Hash256>,
    /// At the last cycle of a job: the merge of this cycle (the job's model from here on),
    /// when `next_model_hash` is the next job's model instead. `None` within a job, where the
    /// merge is `next_model_hash` itself.
    #[serde(default)]
    pub merged_model_hash: Option<Hash256>,
    /// Opens `announcement.held_out_commitment`, after evaluation.
    #[serde(default)]
    pub held_out: Option<HeldOutReveal>,
    /// [`record_digest`] as the coordinator computed it at evaluation (every certificate of the
    /// cycle carries it); the auditor recomputes it rather than trusting this copy.
    #[serde(default)]
    pub record_hash: Option<Hash256>,
    /// Loss of the next model on this cycle's batch and its test accuracy (the test set stays
    /// secret: the accuracy is the coordinator's report, not recomputable).
    #[serde(default)]
    pub next_quality: Option<QualityReport>,
    /// Bonds the coordinator slashed over fraud found in this cycle, each with the slash
    /// transaction it sent to its node. Filled in after the evaluation (the transactions are
    /// sent after the record digest is fixed), so it is not part of [`record_digest`]: the
    /// chain itself is the proof that a bond was slashed.
    #[serde(default)]
    pub slashes: Vec<SlashRecord>,
    /// The admission draw, in a cycle whose bonded registrations outnumbered its slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission: Option<AdmissionDraw>,
    /// Enrolled verifiers; from evaluation on their assignments (with flags), signed claims
    /// and verdicts. Not part of [`record_digest`]: the claims are signed by their verifiers,
    /// and each verdict can be rechecked by replaying the interval.
    #[serde(default)]
    pub verification: VerificationRecord,
}

/// A bonded registration that took part in an admission draw, with its bond's value then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingBond {
    pub miner: PublicKey,
    pub bond: BondOutpoint,
    pub bond_sats: u64,
}

/// How a cycle whose bonded registrations outnumbered its slots chose them at the registration
/// deadline: `consensus::lottery::admitted(admission_seed(secret, cycle), pending weighted by
/// bond_sats, slots)`. Anyone recomputes `admitted` once the secret is revealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionDraw {
    pub slots: u32,
    /// Every bonded registration held until the deadline, sorted by miner key.
    pub pending: Vec<PendingBond>,
    /// The admitted miners, in draw order.
    pub admitted: Vec<PublicKey>,
}

impl AdmissionDraw {
    /// The draw's entries: each pending miner weighted by its bond's value.
    pub fn entries(&self) -> Vec<consensus::lottery::Entry> {
        self.pending
            .iter()
            .map(|p| consensus::lottery::Entry {
                miner: p.miner,
                score: p.bond_sats,
            })
            .collect()
    }

    /// `H_admission(slots u32 LE || count u32 LE || (miner 33 || txid 32 || vout u32 LE ||
    /// bond_sats u64 LE) per pending || count u32 LE || miner 33 per admitted)`.
    pub fn digest(&self) -> Hash256 {
        let mut out = Vec::with_capacity(8 + self.pending.len() * 77 + self.admitted.len() * 33);
        out.extend_from_slice(&self.slots.to_le_bytes());
        out.extend_from_slice(&(self.pending.len() as u32).to_le_bytes());
        for p in &self.pending {
            out.extend_from_slice(&p.miner.serialize());
            out.extend_from_slice(bitcoin::hashes::Hash::as_byte_array(&p.bond.0.txid));
            out.extend_from_slice(&p.bond.0.vout.to_le_bytes());
            out.extend_from_slice(&p.bond_sats.to_le_bytes());
        }
        out.extend_from_slice(&(self.admitted.len() as u32).to_le_bytes());
        for m in &self.admitted {
            out.extend_from_slice(&m.serialize());
        }
        tagged_hash(ADMISSION_TAG, &[&out])
    }
}

/// One slashed bond: the miner whose replay check failed, its bond, and the slash
/// transaction's txid (`gettxout` on the bond shows it spent once the slash is in a block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashRecord {
    /// The key whose bond was slashed: a miner's, or a verifier's (see `role`).
    pub miner: PublicKey,
    pub bond: BondOutpoint,
    pub txid: bitcoin::Txid,
    #[serde(default)]
    pub role: SlashRole,
    /// The verifier whose claim exposed the fraud, paid the chain's finder share at this
    /// payout address; absent when the coordinator found it itself (everything is burned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finder: Option<Finder>,
}

/// Whose bond a slash took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlashRole {
    /// A miner whose replay check failed.
    #[default]
    Miner,
    /// A verifier whose signed claim the coordinator's replay showed false.
    Verifier,
}

/// Who is paid a slash's finder share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finder {
    pub verifier: PublicKey,
    pub payout_address: String,
}

/// A model's quality in integers, as records publish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityReport {
    /// Loss on the cycle's held-out batch, in 10^-6 nat (recomputable from the revealed batch).
    pub held_out_loss_units: i64,
    /// Accuracy on the secret test set, in millionths (the coordinator's report).
    pub test_accuracy_ppm: u32,
}

/// Opens a cycle's held-out commitment: the batch's bytes (`learning::Samples::to_safetensors`,
/// normalised features and labels, served at `/v1/cycles/{cycle}/held-out`) hash to
/// `batch_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOutReveal {
    pub salt: Hash256,
    /// SHA-256 of the batch's bytes.
    pub batch_hash: Hash256,
    pub samples: u64,
    /// Which pass over the held-out pool the batch comes from (see `held_out`).
    pub pass: u64,
}

impl HeldOutReveal {
    /// `H_held-out(salt 32 || batch_hash 32)`: what the announcement commits to. The salt keeps
    /// a guessed batch from being confirmed against the commitment before the reveal.
    pub fn commitment(&self) -> Hash256 {
        tagged_hash(HELD_OUT_COMMITMENT_TAG, &[&self.salt.0, &self.batch_hash.0])
    }
}

/// The digest certificates anchor on chain: every number of the record fixed at evaluation.
///
/// `H_record(announcement_hash 32 || opt(revealed_secret) || opt(commitments_digest) ||
/// opt(held_out: salt 32 || batch_hash 32 || samples u64 LE || pass u64 LE) ||
/// opt(global_loss_units i64 LE) || submissions_digest 32 || opt(contributions_root) ||
/// opt(lottery_seed) || opt(next_model_hash))`, where `opt(x)` is `0x00` when absent and
/// `0x01 || x` when present, and `submissions_digest` = `H_submissions(count u32 LE || for each
/// submission in key order: miner 33 || update_hash 32 || task_hash 32 || transcript_root 32 ||
/// steps u64 LE || params_trained u64 LE || loss_reduction i64 LE || score u64 LE ||
/// verdict u8 || received_at_ms u64 LE || checkpoint_interval u64 LE; then new miners'
/// checkpoint_interval u64 LE)` with verdict 0 verified, 1 failed, 2 unanswered: every input
/// of the next cycle's paced budgets ([`crate::pace`]) is anchored.
///
/// The draw order, block certificates and outcome are left out: they follow from these fields
/// (the draw) or come after the certificates that carry the digest.
pub fn record_digest(record: &CycleRecord) -> Hash256 {
    fn opt(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            None => out.push(0),
            Some(bytes) => {
                out.push(1);
                out.extend_from_slice(bytes);
            }
        }
    }
    let mut subs = Vec::with_capacity(12 + record.submissions.len() * 178);
    subs.extend_from_slice(
        &u32::try_from(record.submissions.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for s in &record.submissions {
        subs.extend_from_slice(&s.miner.serialize());
        subs.extend_from_slice(&s.update_hash.0);
        subs.extend_from_slice(&s.commitment.task_hash.0);
        subs.extend_from_slice(&s.commitment.transcript_root.0);
        subs.extend_from_slice(&s.commitment.steps.to_le_bytes());
        subs.extend_from_slice(&s.params_trained.to_le_bytes());
        subs.extend_from_slice(&s.loss_reduction.to_le_bytes());
        subs.extend_from_slice(&s.score.to_le_bytes());
        subs.push(match s.verification {
            proof::Verdict::Verified { .. } => 0,
            proof::Verdict::Failed { .. } => 1,
            proof::Verdict::Unanswered => 2,
        });
        // What the next cycle's budget is paced from (`pace`): anchored, so a coordinator
        // cannot rewrite a past run's time or interval to justify a budget it chose.
        subs.extend_from_slice(&s.received_at_ms.to_le_bytes());
        subs.extend_from_slice(&s.checkpoint_interval.to_le_bytes());
    }
    // New miners' interval: the other input of the pacing rule.
    subs.extend_from_slice(&record.verification.checkpoint_interval.to_le_bytes());
    let submissions_digest = tagged_hash(SUBMISSIONS_TAG, &[&subs]);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&record.announcement.announcement.signing_hash().0);
    opt(&mut out, record.revealed_secret.as_ref().map(|h| &h.0[..]));
    opt(
        &mut out,
        record.commitments_digest.as_ref().map(|h| &h.0[..]),
    );
    let held_out = record.held_out.map(|h| {
        let mut b = Vec::with_capacity(80);
        b.extend_from_slice(&h.salt.0);
        b.extend_from_slice(&h.batch_hash.0);
        b.extend_from_slice(&h.samples.to_le_bytes());
        b.extend_from_slice(&h.pass.to_le_bytes());
        b
    });
    opt(&mut out, held_out.as_deref());
    opt(
        &mut out,
        record
            .global_loss_units
            .map(i64::to_le_bytes)
            .as_ref()
            .map(|b| &b[..]),
    );
    out.extend_from_slice(&submissions_digest.0);
    opt(
        &mut out,
        record.contributions_root.as_ref().map(|h| &h.0[..]),
    );
    opt(&mut out, record.lottery_seed.as_ref().map(|h| &h.0[..]));
    opt(&mut out, record.next_model_hash.as_ref().map(|h| &h.0[..]));
    // Appended only when there was a draw, so the digests of other records are unchanged.
    if let Some(admission) = &record.admission {
        opt(&mut out, Some(&admission.digest().0));
    }
    // Appended only at a job's end, marked 2 so it cannot read as an admission digest (1).
    if let Some(merged) = &record.merged_model_hash {
        out.push(2);
        out.extend_from_slice(&merged.0);
    }
    tagged_hash(RECORD_TAG, &[&out])
}

/// `GET /v1/cycles` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRange {
    pub from: u64,
    pub limit: u64,
}

/// Every error answer of the API: a stable machine-readable `error` code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub message: String,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub cycle: u64,
    pub phase: PhaseName,
}
