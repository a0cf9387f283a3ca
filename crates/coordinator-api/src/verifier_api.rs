//! Wire types of the verifier role: enrolment against a bond, replay assignments, signed
//! claims, and what the cycle record publishes about them after evaluation. Byte formats of
//! the signed messages are in `docs/protocol.md` ("Verifiers").

use crate::api::{BondOutpoint, CompactSignature};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, Signing, Verification};
use primitives::{tagged_hash, Hash256};
use serde::{Deserialize, Serialize};

/// Tag of a verifier's enrolment signature.
pub const VERIFIER_ENROL_TAG: &str = "trainchain/coordinator/verifier-enrol";
/// Tag of a verifier's claim signature.
pub const VERIFIER_CLAIM_TAG: &str = "trainchain/coordinator/verifier-claim";
/// Tag of a verifier's signature on its assignments poll.
pub const VERIFIER_POLL_TAG: &str = "trainchain/coordinator/verifier-poll";

/// `H_verifier-poll(cycle u64 LE || verifier 33)`: what a verifier signs (header
/// `x-trainchain-signature`) to fetch its assignments, so only it reads the start states it
/// is served.
pub fn poll_signing_hash(cycle: u64, verifier: &PublicKey) -> Hash256 {
    tagged_hash(
        VERIFIER_POLL_TAG,
        &[&cycle.to_le_bytes(), &verifier.serialize()],
    )
}

/// `POST /v1/verifiers/enrol`: a bonded verifier asks for replay assignments in `cycle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    pub cycle: u64,
    pub verifier: PublicKey,
    /// Where the verifier's finder shares go (an address of the chain's network).
    pub payout_address: String,
    /// A `consensus::bond` output for `verifier`'s key, locked like a miner's.
    pub bond: BondOutpoint,
    /// Signature by `verifier` over [`EnrolRequest::signing_hash`].
    pub signature: CompactSignature,
}

impl EnrolRequest {
    /// `H_verifier-enrol(cycle u64 LE || verifier 33 || len(payout_address) u32 LE ||
    /// payout_address UTF-8 || bond txid 32 (internal byte order) || bond vout u32 LE)`.
    pub fn signing_hash(
        cycle: u64,
        verifier: &PublicKey,
        payout_address: &str,
        bond: &BondOutpoint,
    ) -> Hash256 {
        use bitcoin::hashes::Hash;
        let address_len = u32::try_from(payout_address.len()).unwrap_or(u32::MAX);
        tagged_hash(
            VERIFIER_ENROL_TAG,
            &[
                &cycle.to_le_bytes(),
                &verifier.serialize(),
                &address_len.to_le_bytes(),
                payout_address.as_bytes(),
                bond.0.txid.as_byte_array(),
                &bond.0.vout.to_le_bytes(),
            ],
        )
    }

    pub fn new_signed<C: Signing>(
        secp: &Secp256k1<C>,
        key: &SecretKey,
        cycle: u64,
        payout_address: String,
        bond: BondOutpoint,
    ) -> Self {
        let verifier = key.public_key(secp);
        let digest = Self::signing_hash(cycle, &verifier, &payout_address, &bond);
        EnrolRequest {
            cycle,
            verifier,
            payout_address,
            bond,
            signature: CompactSignature::sign(secp, key, &digest),
        }
    }

    pub fn verify<C: Verification>(&self, secp: &Secp256k1<C>) -> bool {
        let digest =
            Self::signing_hash(self.cycle, &self.verifier, &self.payout_address, &self.bond);
        self.signature.verify(secp, &self.verifier, &digest)
    }
}

/// Answer to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolResponse {
    pub cycle: u64,
    pub verifier: PublicKey,
    /// Assignments are served from the end of the challenge window on; they are fixed then.
    pub challenge_deadline_ms: u64,
}

/// One replay job: replay `miner`'s task from the opened state at `from_step` to `to_step`
/// and report the leaf (`TrainState::hash`) it ends in. The task, the cycle's weights and the
/// miner's shard are the public downloads (`/v1/cycles/{cycle}/task|weights|shard`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayAssignment {
    pub cycle: u64,
    pub verifier: PublicKey,
    pub miner: PublicKey,
    pub interval: u64,
    pub from_step: u64,
    pub to_step: u64,
    /// `learning::TrainState::encode` of the state at `from_step`, hex.
    pub start_state: String,
    /// The end leaf the miner committed to, or a flag: a random leaf in its place. A verifier
    /// cannot tell which without replaying.
    pub shown_leaf: Hash256,
}

/// `GET /v1/cycles/{cycle}/verifiers/{verifier}/assignments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayAssignments {
    pub cycle: u64,
    /// Claims are taken until then (or until every assignment has one).
    pub deadline_ms: u64,
    pub assignments: Vec<ReplayAssignment>,
}

/// What a claim is about: one assignment's inputs exactly as the verifier replayed them. The
/// claim signs them, so a coordinator that served a verifier other inputs than the miner's
/// opening (another start state, end step or task) cannot pass the resulting leaf off as a
/// false claim about the real ones: the audit compares them with the published evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSubject {
    pub cycle: u64,
    pub miner: PublicKey,
    pub interval: u64,
    /// `ReplayTask::hash` of the task replayed.
    pub task_hash: Hash256,
    /// The leaf (`TrainState::hash`) of the start state replayed from.
    pub start_leaf: Hash256,
    /// The step the replay ran to.
    pub to_step: u64,
}

impl ReplayAssignment {
    /// The subject of a claim on this assignment, replayed under the task hashing to
    /// `task_hash`: its start state must decode.
    pub fn subject(&self, task_hash: Hash256) -> Result<ClaimSubject, String> {
        let bytes = hex::decode(&self.start_state).map_err(|e| e.to_string())?;
        let start = learning::TrainState::decode(&bytes).map_err(|e| e.to_string())?;
        Ok(ClaimSubject {
            cycle: self.cycle,
            miner: self.miner,
            interval: self.interval,
            task_hash,
            start_leaf: Hash256(start.hash()),
            to_step: self.to_step,
        })
    }
}

/// `POST /v1/cycles/{cycle}/claims`: "replaying `miner`'s `interval` (task `task_hash`, from
/// the state with leaf `start_leaf` to step `to_step`) ends in `leaf`", signed. The signature
/// is the verifier's liability: a claim the coordinator's replay shows false forfeits its bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub cycle: u64,
    pub verifier: PublicKey,
    pub miner: PublicKey,
    pub interval: u64,
    pub task_hash: Hash256,
    pub start_leaf: Hash256,
    pub to_step: u64,
    pub leaf: Hash256,
    pub signature: CompactSignature,
}

impl Claim {
    /// `H_verifier-claim(cycle u64 LE || verifier 33 || miner 33 || interval u64 LE ||
    /// task_hash 32 || start_leaf 32 || to_step u64 LE || leaf 32)`.
    pub fn signing_hash(verifier: &PublicKey, subject: &ClaimSubject, leaf: &Hash256) -> Hash256 {
        tagged_hash(
            VERIFIER_CLAIM_TAG,
            &[
                &subject.cycle.to_le_bytes(),
                &verifier.serialize(),
                &subject.miner.serialize(),
                &subject.interval.to_le_bytes(),
                &subject.task_hash.0,
                &subject.start_leaf.0,
                &subject.to_step.to_le_bytes(),
                &leaf.0,
            ],
        )
    }

    pub fn new_signed<C: Signing>(
        secp: &Secp256k1<C>,
        key: &SecretKey,
        subject: &ClaimSubject,
        leaf: Hash256,
    ) -> Self {
        let verifier = key.public_key(secp);
        let digest = Self::signing_hash(&verifier, subject, &leaf);
        Claim {
            cycle: subject.cycle,
            verifier,
            miner: subject.miner,
            interval: subject.interval,
            task_hash: subject.task_hash,
            start_leaf: subject.start_leaf,
            to_step: subject.to_step,
            leaf,
            signature: CompactSignature::sign(secp, key, &digest),
        }
    }

    /// What the claim is about.
    pub fn subject(&self) -> ClaimSubject {
        ClaimSubject {
            cycle: self.cycle,
            miner: self.miner,
            interval: self.interval,
            task_hash: self.task_hash,
            start_leaf: self.start_leaf,
            to_step: self.to_step,
        }
    }

    pub fn verify<C: Verification>(&self, secp: &Secp256k1<C>) -> bool {
        let digest = Self::signing_hash(&self.verifier, &self.subject(), &self.leaf);
        self.signature.verify(secp, &self.verifier, &digest)
    }
}

/// `GET /v1/cycles/{cycle}/claims/{miner}/{interval}/evidence`: what a replayed claim was
/// judged on (kept for every claim judged `wrong` or `caught_cheat`). With the cycle's weights
/// and the miner's shard (`/v1/cycles/{cycle}/evidence/{miner}/shard`) anyone can replay the
/// interval (`proof::OpenedInterval::replay`) and check the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimEvidence {
    pub claim: Claim,
    pub outcome: ClaimOutcome,
    pub task: proof::ReplayTask,
    /// The miner's signed commitment (also in the record's submission row).
    pub commitment: proof::Commitment,
    pub opening: proof::OpenedInterval,
}

/// An enrolled verifier as the record shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledVerifier {
    pub verifier: PublicKey,
    pub payout_address: String,
    pub bond: BondOutpoint,
    pub bond_sats: u64,
}

/// Who was given which interval, and whether it was a flag (published after evaluation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    pub verifier: PublicKey,
    pub miner: PublicKey,
    pub interval: u64,
    pub flagged: bool,
    /// Drawn for the coordinator's own replay whatever the claim says (catches a verifier
    /// that vouches for a miner's fake leaf).
    pub audited: bool,
}

/// What the coordinator made of one claim at evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// The claim equals the miner's committed leaf and was not audited: the coordinator did
    /// not replay the interval.
    Trusted,
    /// Replayed by the coordinator, and the claim is what the replay gives.
    Confirmed,
    /// Replayed by the coordinator: the miner's leaf is false and the claim is the true one.
    /// The miner's bond is slashed with the finder share to this verifier.
    CaughtCheat,
    /// Replayed by the coordinator, and the claim is not what the replay gives (a flag passed
    /// without replaying, a false accusation, or a vouched-for fake): the verifier's bond is
    /// slashed.
    Wrong,
    /// The miner's opening of the interval does not hold (a start state at the wrong step, a
    /// leaf not in its transcript, a state that does not replay): the miner's check fails on
    /// it whatever was claimed, so the claim earns nothing and costs nothing.
    Void,
}

/// One claim's outcome, with the leaf the coordinator's replay gave where it replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimVerdict {
    pub verifier: PublicKey,
    pub miner: PublicKey,
    pub interval: u64,
    pub outcome: ClaimOutcome,
    pub replayed_leaf: Option<Hash256>,
}

/// The cycle record's `verification`: enrolled verifiers, and from evaluation on the
/// assignments (with flags), the signed claims, their outcomes, the secret that drew the
/// assignments, and the replay work saved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationRecord {
    pub verifiers: Vec<EnrolledVerifier>,
    #[serde(default)]
    pub secret: Option<Hash256>,
    #[serde(default)]
    pub assignments: Vec<AssignmentRecord>,
    #[serde(default)]
    pub claims: Vec<Claim>,
    #[serde(default)]
    pub verdicts: Vec<ClaimVerdict>,
    /// Steps of every challenged interval of the answered submissions: what the coordinator
    /// replays with no verifier.
    #[serde(default)]
    pub challenged_steps: u64,
    /// The cycle's challenge count q and configured checkpoint interval k (every new miner's;
    /// the others are paced, [`crate::pace`]): with q, each submission's own k and
    /// the record's secret and commitments anyone recomputes every challenge, and so which
    /// assignments could be flags and which had to be audited.
    #[serde(default)]
    pub challenges: u32,
    #[serde(default)]
    pub checkpoint_interval: u64,
    /// Steps the coordinator replayed itself (checks, audits and disputes).
    #[serde(default)]
    pub coordinator_replayed_steps: u64,
}

impl VerificationRecord {
    /// How many claims were judged `outcome`.
    pub fn verdicts_with(&self, outcome: ClaimOutcome) -> usize {
        self.verdicts
            .iter()
            .filter(|x| x.outcome == outcome)
            .count()
    }
}
