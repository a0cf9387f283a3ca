//! The verifier role's rules inside the cycle machine (pure, like [`crate::cycle`]): bonded
//! enrolment during Training, the assignment of challenged intervals to verifiers with planted
//! flags and audits when the challenge window ends, and the signed claims taken during
//! Verification. What the claims are worth is decided at evaluation
//! ([`crate::verifier_service`]).
//!
//! Why it is safe to skip the coordinator's replay of a claimed interval: a verifier signs
//! the leaf its replay ends in, and its bond answers for it. A verifier that signs without
//! replaying can only echo the leaf it was shown; a flag shows a random leaf in place of the
//! miner's, so an echo of a flag is a false claim, which the coordinator's replay exposes and
//! the verifier's bond pays for. A replaying verifier answers the miner's real leaf on a flag
//! too, so flags cost honest verifiers nothing and the coordinator no replay.

use crate::api::BondOutpoint;
use crate::chain::UnspentOutput;
use crate::cycle::{CycleEnv, CycleState, Phase, Refusal};
use crate::verifier_api::{
    AssignmentRecord, Claim, ClaimVerdict, EnrolRequest, EnrolResponse, EnrolledVerifier,
    VerificationRecord,
};
use bitcoin::secp256k1::PublicKey;
pub use coordinator_api::draw::{cycle_secret, flag_leaf, redraw, FLAG_PERCENT};
use coordinator_api::draw::{draw, DrawKind};
use primitives::{tagged_hash, Hash256};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The verifier side of a cycle's state (persisted with it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationState {
    pub verifiers: BTreeMap<PublicKey, EnrolledVerifier>,
    /// Draws the assignments, flags and audits at the end of the challenge window; private
    /// until evaluation.
    #[serde(default)]
    secret: Option<Hash256>,
    #[serde(default)]
    pub assignments: Vec<AssignmentRecord>,
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// Filled in at evaluation.
    #[serde(default)]
    pub verdicts: Vec<ClaimVerdict>,
    #[serde(default)]
    pub challenged_steps: u64,
    /// q and k, recorded when the assignments are drawn (see `VerificationRecord`).
    #[serde(default)]
    pub challenges: u32,
    #[serde(default)]
    pub checkpoint_interval: u64,
    #[serde(default)]
    pub coordinator_replayed_steps: u64,
}

impl VerificationState {
    /// The secret, whatever the phase: for the coordinator's own use (flag leaves).
    pub fn secret(&self) -> Option<Hash256> {
        self.secret
    }

    /// A cycle's verification state at open, with its secret (see [`cycle_secret`]).
    pub(crate) fn with_secret(secret: Hash256) -> Self {
        VerificationState {
            secret: Some(secret),
            ..VerificationState::default()
        }
    }

    /// Fixes the assignments of `state` (at the end of the challenge window) under its secret;
    /// `fallback` only for a state persisted before the secret was fixed at open.
    pub(crate) fn start(state: &mut CycleState, env: &CycleEnv, fallback: Hash256) {
        let secret = *state.verification.secret.get_or_insert(fallback);
        state.verification.assignments = assign(state, env, &secret);
        state.verification.challenges = env.proof.challenges;
        if state.verification.checkpoint_interval == 0 {
            // A state persisted before assignments recorded it.
            state.verification.checkpoint_interval = env.proof.checkpoint_interval;
        }
    }

    /// What the cycle record shows: the enrolled verifiers, and once `revealed` (from the
    /// lottery on) the secret, the assignments with their flags, the claims and verdicts.
    pub fn record(&self, revealed: bool) -> VerificationRecord {
        let verifiers = self.verifiers.values().cloned().collect();
        if !revealed {
            return VerificationRecord {
                verifiers,
                ..VerificationRecord::default()
            };
        }
        VerificationRecord {
            verifiers,
            secret: self.secret,
            assignments: self.assignments.clone(),
            claims: self.claims.clone(),
            verdicts: self.verdicts.clone(),
            challenged_steps: self.challenged_steps,
            challenges: self.challenges,
            checkpoint_interval: self.checkpoint_interval,
            coordinator_replayed_steps: self.coordinator_replayed_steps,
        }
    }

    /// True once every assignment has its claim.
    pub fn all_claimed(&self) -> bool {
        self.assignments.iter().all(|x| {
            self.claims
                .iter()
                .any(|c| c.miner == x.miner && c.interval == x.interval)
        })
    }

    /// The bond `verifier` enrolled with.
    pub fn bond_of(&self, verifier: &PublicKey) -> Option<BondOutpoint> {
        self.verifiers.get(verifier).map(|e| e.bond)
    }

    /// The claims by miner, keyed by interval, each with its assignment.
    pub fn claims_by_miner(
        &self,
    ) -> BTreeMap<PublicKey, BTreeMap<u64, (&AssignmentRecord, &Claim)>> {
        let mut out: BTreeMap<PublicKey, BTreeMap<u64, (&AssignmentRecord, &Claim)>> =
            BTreeMap::new();
        for claim in &self.claims {
            let Some(assignment) = self
                .assignments
                .iter()
                .find(|x| x.miner == claim.miner && x.interval == claim.interval)
            else {
                continue;
            };
            out.entry(claim.miner)
                .or_default()
                .insert(claim.interval, (assignment, claim));
        }
        out
    }
}

/// Most verifiers enrolled per cycle: bounds the record and the assignment draw. With q = 2
/// challenges per submission there are rarely more intervals than this to hand out.
pub const VERIFIERS_PER_CYCLE_MAX: usize = 16;

/// Tag deriving the verification secret from the caller's entropy (states persisted before the
/// secret was fixed at open only).
const SECRET_TAG: &str = "trainchain/coordinator/verification-secret";

/// Least percent of claimed intervals the coordinator replays anyway: the check on a verifier
/// that vouches for a miner's fake leaf (it knows the real leaf only by colluding with the
/// miner, and a flag cannot catch that). The rate actually used is [`audit_ppm`], which rises
/// above this floor when the bonds at stake are too small for it.
pub const AUDIT_PERCENT: u64 = 10;

/// The audit rate of a claim on an interval of a miner bonded with `miner_bond_sats`, by a
/// verifier bonded with `verifier_bond_sats`, in ppm: at least [`AUDIT_PERCENT`], and at least
/// `R / (R + B_miner + B_verifier)` (`consensus::incentive`'s `check_ppm_needed`). A miner and
/// a verifier colluding on a fake leaf escape exactly when the claim is not audited, and lose
/// both bonds (and the reward) when it is; at this rate the pair's expected gain is never
/// positive, whoever controls both keys. With the defaults (R = 50 coins, 1-coin bonds) it is
/// about 96%: a verifier saves the coordinator replay work in proportion to the bond it puts
/// up (about 9R for the 10% floor).
pub fn audit_ppm(reward_sats: u64, miner_bond_sats: u64, verifier_bond_sats: u64) -> u64 {
    let needed = consensus::incentive::Incentives {
        reward_sats,
        bond_sats: miner_bond_sats.saturating_add(verifier_bond_sats),
        check_ppm: 0,
        challenges: 1,
    }
    .check_ppm_needed();
    needed.max(AUDIT_PERCENT * (consensus::incentive::PPM / 100))
}

/// Enrols a verifier for the live cycle. Open during Training only: the miners and their
/// bonds are fixed then, so a verifier's key and bond can be checked against them (a miner
/// cannot verify itself, and a bond backs one role per cycle).
pub fn enrol(
    state: &mut CycleState,
    env: &CycleEnv,
    request: EnrolRequest,
    found: Option<&UnspentOutput>,
) -> Result<EnrolResponse, Refusal> {
    let a = state.announcement().clone();
    if request.cycle != a.cycle {
        return Err(Refusal::WrongCycle {
            current: a.cycle,
            found: request.cycle,
        });
    }
    if state.phase != Phase::Training {
        return Err(Refusal::EnrolmentClosed {
            opens_ms: a.registration_deadline_ms,
            closes_ms: a.submission_deadline_ms,
        });
    }
    if !request.verify(&env.secp) {
        return Err(Refusal::BadSignature);
    }
    let response = EnrolResponse {
        cycle: a.cycle,
        verifier: request.verifier,
        challenge_deadline_ms: a.challenge_deadline_ms,
    };
    if let Some(existing) = state.verification.verifiers.get(&request.verifier) {
        // A verifier that restarted may enrol again with the same details.
        return if existing.bond == request.bond && existing.payout_address == request.payout_address
        {
            Ok(response)
        } else {
            Err(Refusal::EnrolledDifferently)
        };
    }
    if state.registrations.contains_key(&request.verifier) {
        return Err(Refusal::VerifierIsMiner);
    }
    crate::cycle::check_payout_address(&request.payout_address, env.network)?;
    let outpoint = request.bond;
    if state.bonds.contains_key(&outpoint) {
        return Err(Refusal::BondInUse { outpoint });
    }
    let found = found.ok_or(Refusal::BondNotFound { outpoint })?;
    let query = env.bonds.query(a.height, found.tip_height);
    consensus::bond::check_bond(&found.coin, &request.verifier, &env.bonds.terms, &query)
        .map_err(|error| Refusal::Bond { outpoint, error })?;
    if state.verification.verifiers.len() >= VERIFIERS_PER_CYCLE_MAX {
        return Err(Refusal::VerifiersFull {
            max: VERIFIERS_PER_CYCLE_MAX,
        });
    }
    state.bonds.insert(outpoint, request.verifier);
    state.verification.verifiers.insert(
        request.verifier,
        EnrolledVerifier {
            verifier: request.verifier,
            payout_address: request.payout_address,
            bond: outpoint,
            bond_sats: found.coin.output.value.to_sat(),
        },
    );
    Ok(response)
}

/// The verification secret for `entropy`: private until evaluation, then published, so
/// anyone can recompute who got which interval and which were flags and audits.
pub fn verification_secret(entropy: &[u8; 32], cycle: u64) -> Hash256 {
    tagged_hash(SECRET_TAG, &[entropy, &cycle.to_le_bytes()])
}

/// The assignments of `state` (at the end of the challenge window) under `secret`: every
/// challenged interval of every answered submission except the run's last one (which the
/// coordinator always replays), each to one enrolled verifier. Interval i is never a flag when
/// interval i + 1 of the same miner is assigned too: its start state is leaf i + 1, which would
/// give the flag away. Sorted by (miner, interval).
pub fn assign(state: &CycleState, env: &CycleEnv, secret: &Hash256) -> Vec<AssignmentRecord> {
    let verifiers: Vec<PublicKey> = state.verification.verifiers.keys().copied().collect();
    if verifiers.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (miner, submission) in &state.submissions {
        if submission.answered_at_ms.is_none() {
            continue;
        }
        let Some(challenge) = state.challenge(env, miner) else {
            continue;
        };
        let intervals = proof::leaf_count(
            submission.commitment.steps,
            state.checkpoint_interval(env, miner),
        )
        .saturating_sub(1);
        // Only intervals the answer actually opens: an assignment must be servable, or a
        // miner answering other intervals would hold the phase open to its deadline (its check
        // fails on the wrong intervals anyway).
        let challenged: BTreeSet<u64> = challenge.intervals.iter().copied().collect();
        let assigned: BTreeSet<u64> = challenged
            .iter()
            .copied()
            .filter(|&i| i + 1 < intervals && submission.opened.contains(&i))
            .collect();
        for &interval in &assigned {
            let pick = draw(secret, miner, interval, DrawKind::Verifier) % verifiers.len() as u64;
            // Interval i + 1's start state is interval i's end leaf, so i can never be a flag
            // when i + 1 is challenged too (the last interval included); and since anyone can
            // see the challenge, such an interval is always audited, or a lazy verifier could
            // echo it safely.
            let flaggable = !challenged.contains(&(interval + 1));
            let flagged =
                flaggable && draw(secret, miner, interval, DrawKind::Flag) % 100 < FLAG_PERCENT;
            let verifier = verifiers[pick as usize];
            let rate = audit_ppm(
                env.block_reward_sats,
                state.registrations[miner].bond_sats.unwrap_or(0),
                state.verification.verifiers[&verifier].bond_sats,
            );
            let audited = !flaggable
                || draw(secret, miner, interval, DrawKind::Audit) % consensus::incentive::PPM
                    < rate;
            out.push(AssignmentRecord {
                verifier,
                miner: *miner,
                interval,
                flagged,
                audited,
            });
        }
    }
    out
}

/// Takes `claim` in the Verification phase: it must answer one of the claimant's assignments,
/// once, signed by the claimant.
pub fn take_claim(state: &mut CycleState, env: &CycleEnv, claim: Claim) -> Result<(), Refusal> {
    let a = state.announcement().clone();
    if claim.cycle != a.cycle {
        return Err(Refusal::WrongCycle {
            current: a.cycle,
            found: claim.cycle,
        });
    }
    match state.phase {
        Phase::Registration | Phase::Training | Phase::Challenge => {
            return Err(Refusal::VerificationNotOpen {
                opens_ms: a.challenge_deadline_ms,
            })
        }
        Phase::Verification { .. } => {}
        _ => return Err(Refusal::VerificationClosed),
    }
    if !state.verification.verifiers.contains_key(&claim.verifier) {
        return Err(Refusal::NotEnrolled);
    }
    if !claim.verify(&env.secp) {
        return Err(Refusal::BadSignature);
    }
    let assigned = state.verification.assignments.iter().any(|x| {
        x.verifier == claim.verifier && x.miner == claim.miner && x.interval == claim.interval
    });
    if !assigned {
        return Err(Refusal::NotAssigned);
    }
    let claimed = state
        .verification
        .claims
        .iter()
        .any(|c| c.miner == claim.miner && c.interval == claim.interval);
    if claimed {
        return Err(Refusal::AlreadyClaimed);
    }
    state.verification.claims.push(claim);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::incentive::{Incentives, PPM};

    const COIN: u64 = 100_000_000;

    #[test]
    fn the_audit_rate_keeps_a_colluding_miner_and_verifier_from_gaining() {
        let reward = primitives::params::DEFAULT_INITIAL_SUBSIDY_SATS;
        let bond = primitives::params::DEFAULT_BOND_MIN_SATS;
        for verifier_bond in [0, bond, 10 * bond, 100 * bond, 1_000 * bond] {
            let rate = audit_ppm(reward, bond, verifier_bond);
            assert!(rate >= AUDIT_PERCENT * PPM / 100);
            // Collusion on the trusted intervals is a cheat checked at the audit rate that
            // loses both bonds when caught: it must never pay, for any miner and run.
            let pair = Incentives {
                reward_sats: reward,
                bond_sats: bond + verifier_bond,
                check_ppm: rate,
                challenges: 1,
            };
            for intervals in [1, 2, 8, 128] {
                for win in [0.01, 0.5, 1.0] {
                    assert_eq!(
                        pair.best_cheat(win, intervals),
                        None,
                        "verifier bond {verifier_bond}: collusion pays at {rate} ppm"
                    );
                }
            }
        }
        // Default 1-coin bonds: nearly every claim is audited (R / (R + 2 coins) = 96.2%).
        assert_eq!(audit_ppm(50 * COIN, COIN, COIN), 961_539);
        // A verifier bonded with 9R or more gets the floor.
        assert_eq!(audit_ppm(50 * COIN, COIN, 450 * COIN), 100_000);
    }
}
