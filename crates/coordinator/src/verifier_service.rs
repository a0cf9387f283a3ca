//! The verifier role on the coordinator's side: enrolment, serving assignments (with the
//! flags' shown leaves), taking claims, and at evaluation judging every claim, which decides
//! the intervals the coordinator need not replay and the bonds to slash.
//!
//! Judging one claim of `miner`'s interval i, whose committed end leaf is L:
//! - claim = L and i not drawn for audit: **trusted**, the coordinator does not replay i;
//! - otherwise the coordinator replays i to R: claim = R and R = L: **confirmed** (i is then
//!   trusted, it was just replayed); claim = R and R ≠ L: **caught cheat** (the miner's bond
//!   is slashed with the finder share to this verifier); claim ≠ R: **wrong** (the verifier's
//!   bond is slashed). A flag shows a random leaf in place of L, so a verifier that echoes what
//!   it was shown is wrong on every flag.
//! - The replay is `proof::OpenedInterval::replay`, the one the audit runs on the published
//!   evidence: it first checks the opened start state's step and both paths against the
//!   miner's transcript, so a miner cannot make the coordinator replay more than one interval.
//!   An opening that does not hold is **void**: the miner's check fails on it anyway, and the
//!   claim neither earns nor costs anything.

use crate::chain::UnspentOutput;
use crate::cycle::{tick, Action, ClaimsJudged, CycleState, Event, Phase, Refusal};
use crate::error::ServiceError;
use crate::service::{lock, Coordinator};
use crate::verifier_api::{
    Claim, ClaimEvidence, ClaimOutcome, ClaimVerdict, EnrolRequest, EnrolResponse,
    ReplayAssignment, ReplayAssignments,
};
use crate::verifiers::flag_leaf;
use bitcoin::secp256k1::PublicKey;
use learning::Model;
use primitives::Hash256;
use proof::{ChallengeResponse, Commitment, ReplayTask};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// What judging one miner's claims gave.
#[derive(Debug, Default)]
pub(crate) struct MinerClaims {
    /// Intervals the check need not replay.
    pub trusted: BTreeSet<u64>,
    /// End leaves of intervals replayed here that differ from the committed ones: the check
    /// compares them without replaying again.
    pub replayed: BTreeMap<u64, Hash256>,
    pub verdicts: Vec<ClaimVerdict>,
    /// Steps replayed here (audits and disputes).
    pub replayed_steps: u64,
    /// What each claim judged `wrong` or `caught_cheat` was judged on, to publish.
    pub evidence: Vec<ClaimEvidence>,
}

/// Judges the claims on `miner`'s intervals (see the module documentation). `response` is
/// the miner's decoded answer: without one nothing can be judged or trusted.
#[allow(clippy::too_many_arguments)]
pub(crate) fn judge_claims(
    state: &CycleState,
    miner: &PublicKey,
    task: &ReplayTask,
    commitment: &Commitment,
    global: &Model,
    shard: &[u8],
    response: Option<&ChallengeResponse>,
    threads: usize,
) -> MinerClaims {
    let mut out = MinerClaims::default();
    let Some(response) = response else {
        return out;
    };
    let step = |i: u64| proof::checkpoint_step(commitment.steps, task.checkpoint_interval, i);
    let claims = state.verification.claims_by_miner();
    let Some(claims) = claims.get(miner) else {
        return out;
    };
    for (&interval, (assignment, claim)) in claims {
        let Some(opening) = response.openings.iter().find(|o| o.interval == interval) else {
            continue;
        };
        let (Some(from), Some(to)) = (step(interval), interval.checked_add(1).and_then(step))
        else {
            continue;
        };
        let committed = opening.end_leaf;
        let opened = proof::OpenedInterval::of(opening);
        let (outcome, replayed_leaf) = if claim.leaf == committed && !assignment.audited {
            out.trusted.insert(interval);
            (ClaimOutcome::Trusted, None)
        } else {
            match opened.replay(task, commitment, global, shard, threads) {
                Ok(replayed) => {
                    out.replayed_steps += to - from;
                    if replayed == committed {
                        out.trusted.insert(interval);
                    } else {
                        out.replayed.insert(interval, replayed);
                    }
                    let outcome = match (claim.leaf == replayed, replayed == committed) {
                        (true, true) => ClaimOutcome::Confirmed,
                        (true, false) => ClaimOutcome::CaughtCheat,
                        (false, _) => ClaimOutcome::Wrong,
                    };
                    (outcome, Some(replayed))
                }
                Err(why) => {
                    warn!(%miner, interval, %why, "claimed interval's opening does not hold");
                    (ClaimOutcome::Void, None)
                }
            }
        };
        if outcome == ClaimOutcome::Wrong {
            warn!(verifier = %claim.verifier, %miner, interval, flagged = assignment.flagged, "verifier claim is false");
        }
        if matches!(outcome, ClaimOutcome::Wrong | ClaimOutcome::CaughtCheat) {
            out.evidence.push(ClaimEvidence {
                claim: (*claim).clone(),
                outcome,
                task: task.clone(),
                commitment: *commitment,
                opening: opened,
            });
        }
        out.verdicts.push(ClaimVerdict {
            verifier: claim.verifier,
            miner: *miner,
            interval,
            outcome,
            replayed_leaf,
        });
    }
    out
}

/// Adds one miner's judgement to the cycle's.
pub(crate) fn add_to(judged: &mut ClaimsJudged, miner: MinerClaims) {
    judged.verdicts.extend(miner.verdicts);
    judged.coordinator_replayed_steps += miner.replayed_steps;
}

impl Coordinator {
    /// Applies `event` to the live cycle under the lock, persisting a changed state, and
    /// returns the actions, or the machine's refusal as an error (logged with `what`).
    fn apply(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        event: Event,
        what: &str,
    ) -> Result<Vec<Action>, ServiceError> {
        let mut guard = lock(&self.state);
        let current = guard.clone().ok_or(ServiceError::NotOpen)?;
        let ctx = self.context(&current.announcement().job)?;
        let (next, actions) = tick(current.clone(), &ctx.env, now_ms, entropy, event);
        if next != current {
            self.store.put_current(&next)?;
        }
        *guard = Some(next);
        if let Some(refusal) = actions.iter().find_map(|a| match a {
            Action::Refused(r) => Some(r.clone()),
            _ => None,
        }) {
            warn!(%refusal, "{what} refused");
            return Err(refusal.into());
        }
        Ok(actions)
    }

    /// Refuses a verifier (by key or bond) that held assignments in the previous cycle and
    /// claimed none: enrolling costs nothing, so an unanswered slot would otherwise be free to
    /// hold, keeping honest verifiers out and every cycle waiting to the verification deadline.
    /// Only assignments on submissions whose check passed count: a miner whose opening cannot
    /// be replayed must not get the verifier that could not replay it excluded. Reads the
    /// store, so it runs after the rate limit and the signature.
    fn no_show_check(&self, request: &EnrolRequest) -> Result<(), ServiceError> {
        let Some(previous) = request.cycle.checked_sub(1) else {
            return Ok(());
        };
        let Ok(state) = self.cycle_state(previous) else {
            return Ok(());
        };
        let v = &state.verification;
        let keys: Vec<PublicKey> = v
            .verifiers
            .values()
            .filter(|e| e.verifier == request.verifier || e.bond == request.bond)
            .map(|e| e.verifier)
            .collect();
        let passed = |miner: &PublicKey| {
            state.lottery.as_ref().is_some_and(|l| {
                l.scored
                    .iter()
                    .any(|s| &s.miner == miner && s.verification.passed())
            })
        };
        let no_show = keys.iter().any(|key| {
            v.assignments
                .iter()
                .any(|x| &x.verifier == key && passed(&x.miner))
                && !v.claims.iter().any(|c| &c.verifier == key)
        });
        if no_show {
            return Err(Refusal::VerifierNoShow { cycle: previous }.into());
        }
        Ok(())
    }

    /// The checks of an enrolment that read memory only, before any rate limit or chain
    /// read: the live cycle is `cycle`, it is in Training, and the bond backs nothing yet.
    pub fn enrolment_precheck(
        &self,
        now_ms: u64,
        request: &EnrolRequest,
    ) -> Result<(), ServiceError> {
        if self.bond_slashed(&request.bond) {
            return Err(Refusal::BondSlashed {
                outpoint: request.bond,
            }
            .into());
        }
        let guard = lock(&self.state);
        let state = guard.as_ref().ok_or(ServiceError::NotOpen)?;
        let a = state.announcement();
        if a.cycle != request.cycle {
            return Err(Refusal::WrongCycle {
                current: a.cycle,
                found: request.cycle,
            }
            .into());
        }
        let training = now_ms >= a.registration_deadline_ms && now_ms < a.submission_deadline_ms;
        if !training || !matches!(state.phase, Phase::Registration | Phase::Training) {
            return Err(Refusal::EnrolmentClosed {
                opens_ms: a.registration_deadline_ms,
                closes_ms: a.submission_deadline_ms,
            }
            .into());
        }
        if state.bonds.contains_key(&request.bond)
            && state.verification.bond_of(&request.verifier) != Some(request.bond)
        {
            return Err(Refusal::BondInUse {
                outpoint: request.bond,
            }
            .into());
        }
        Ok(())
    }

    /// Enrols a verifier for the live cycle, with what the node showed at its bond.
    pub fn enrol_verifier(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        request: EnrolRequest,
        found: Option<UnspentOutput>,
    ) -> Result<EnrolResponse, ServiceError> {
        let verifier = request.verifier;
        let bond = request.bond;
        if self.bond_slashed(&bond) {
            warn!(%verifier, %bond, "enrolment refused: bond slashed");
            return Err(Refusal::BondSlashed { outpoint: bond }.into());
        }
        if let Err(e) = self.no_show_check(&request) {
            warn!(%verifier, %bond, error = %e, "enrolment refused");
            return Err(e);
        }
        let actions = self.apply(
            now_ms,
            entropy,
            Event::Enrol { request, found },
            "enrolment",
        )?;
        actions
            .into_iter()
            .find_map(|a| match a {
                Action::Enrolled(r) => Some(r),
                _ => None,
            })
            .inspect(|r| info!(%verifier, %bond, cycle = r.cycle, "verifier enrolled"))
            .ok_or(ServiceError::NotOpen)
    }

    /// `verifier`'s assignments in `cycle`, during Verification. Advances the live cycle to
    /// `now_ms` first (with fresh `entropy`: the end of the challenge window draws the
    /// assignments), so they are there as soon as the challenge window closed.
    pub fn assignments(
        &self,
        now_ms: u64,
        entropy: [u8; 32],
        cycle: u64,
        verifier: &PublicKey,
    ) -> Result<ReplayAssignments, ServiceError> {
        // A poll before the challenge can have closed is answered from the phase alone: a
        // verifier polls often, and anyone can call this route.
        {
            let guard = lock(&self.state);
            if let Some(live) = guard.as_ref().filter(|s| s.cycle() == cycle) {
                let a = live.announcement();
                let early = matches!(live.phase, Phase::Registration | Phase::Training)
                    && now_ms < a.submission_deadline_ms;
                if early {
                    return Err(Refusal::VerificationNotOpen {
                        opens_ms: a.challenge_deadline_ms,
                    }
                    .into());
                }
            }
        }
        let live = self.state().filter(|s| s.cycle() == cycle);
        let state = match live {
            Some(_) => {
                self.apply(now_ms, entropy, Event::Tick, "tick")?;
                self.state().ok_or(ServiceError::NotOpen)?
            }
            None => self.cycle_state(cycle)?,
        };
        if !state.verification.verifiers.contains_key(verifier) {
            return Err(Refusal::NotEnrolled.into());
        }
        let a = state.announcement();
        let deadline_ms = match state.phase {
            Phase::Verification { deadline_ms } => deadline_ms,
            Phase::Registration | Phase::Training | Phase::Challenge => {
                return Err(Refusal::VerificationNotOpen {
                    opens_ms: a.challenge_deadline_ms,
                }
                .into())
            }
            _ => return Err(Refusal::VerificationClosed.into()),
        };
        let secret = state
            .verification
            .secret()
            .expect("verification has its secret");
        let mut assignments = Vec::new();
        for x in state
            .verification
            .assignments
            .iter()
            .filter(|x| &x.verifier == verifier)
        {
            let submission = &state.submissions[&x.miner];
            let bytes = self.store.answer(cycle, &x.miner)?.unwrap_or_default();
            let openings = self.env.proof.challenges as usize + 1;
            // Checked when it arrived; a stored copy that no longer decodes costs this one
            // assignment, not the verifier's others.
            let Ok(response) = ChallengeResponse::decode(&bytes, usize::MAX, openings) else {
                warn!(miner = %x.miner, cycle, "stored answer does not decode; assignment skipped");
                continue;
            };
            let Some(opening) = response.openings.iter().find(|o| o.interval == x.interval) else {
                continue;
            };
            let step = |i: u64| {
                proof::checkpoint_step(
                    submission.commitment.steps,
                    state.checkpoint_interval(&self.env, &x.miner),
                    i,
                )
            };
            let (Some(from_step), Some(to_step)) = (step(x.interval), step(x.interval + 1)) else {
                continue;
            };
            let shown_leaf = if x.flagged {
                flag_leaf(&secret, &x.miner, x.interval)
            } else {
                opening.end_leaf
            };
            assignments.push(ReplayAssignment {
                cycle,
                verifier: *verifier,
                miner: x.miner,
                interval: x.interval,
                from_step,
                to_step,
                start_state: hex::encode(opening.start.encode()),
                shown_leaf,
            });
        }
        Ok(ReplayAssignments {
            cycle,
            deadline_ms,
            assignments,
        })
    }

    /// The evidence a claim on `miner`'s `interval` in `cycle` was judged on.
    pub fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<ClaimEvidence, ServiceError> {
        self.store
            .claim_evidence(cycle, miner, interval)?
            .ok_or(ServiceError::NoEvidence)
    }

    /// Refuses a claim whose subject (task, start state, end step) is not its assignment's:
    /// a claim is judged as a statement about the miner's opening, so it must be about exactly
    /// that. Claims on no assignment pass here and are refused by the machine.
    fn check_claim_subject(&self, claim: &Claim) -> Result<(), ServiceError> {
        let Ok(state) = self.cycle_state(claim.cycle) else {
            return Ok(());
        };
        let Some(submission) = state.submissions.get(&claim.miner) else {
            return Ok(());
        };
        let Some(bytes) = self.store.answer(claim.cycle, &claim.miner)? else {
            return Ok(());
        };
        let openings = self.env.proof.challenges as usize + 1;
        let Ok(response) = ChallengeResponse::decode(&bytes, usize::MAX, openings) else {
            return Ok(());
        };
        let Some(opening) = response
            .openings
            .iter()
            .find(|o| o.interval == claim.interval)
        else {
            return Ok(());
        };
        let to_step = claim.interval.checked_add(1).and_then(|i| {
            proof::checkpoint_step(
                submission.commitment.steps,
                state.checkpoint_interval(&self.env, &claim.miner),
                i,
            )
        });
        let what = if self.replay_task(&state, &claim.miner)?.hash() != claim.task_hash {
            Some("task")
        } else if Hash256(opening.start.hash()) != claim.start_leaf {
            Some("start state")
        } else if to_step != Some(claim.to_step) {
            Some("end step")
        } else {
            None
        };
        match what {
            Some(what) => Err(Refusal::ClaimMismatch { what }.into()),
            None => Ok(()),
        }
    }

    /// Takes a verifier's signed claim.
    pub fn claim(&self, now_ms: u64, entropy: [u8; 32], claim: Claim) -> Result<(), ServiceError> {
        if let Err(e) = self.check_claim_subject(&claim) {
            warn!(verifier = %claim.verifier, miner = %claim.miner, interval = claim.interval, error = %e, "claim refused");
            return Err(e);
        }
        let (verifier, miner, interval) = (claim.verifier, claim.miner, claim.interval);
        self.apply(now_ms, entropy, Event::Claim(claim), "claim")?;
        info!(%verifier, %miner, interval, "verifier claim taken");
        Ok(())
    }
}
