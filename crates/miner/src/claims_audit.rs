//! The audit of a cycle's verifier claims: every published claim is signed by an enrolled
//! verifier for one of its assignments, every claim that slashed or paid someone is replayed
//! from its published evidence and must come out as the record says, and every verifier slash
//! and finder share in the record follows from such a verdict. A coordinator that slashed an
//! honest verifier, or paid a finder share nobody earned, fails here.

use crate::audit::AuditError;
use crate::published::{judged_claims, PublishedSource};
use bitcoin::secp256k1::{PublicKey, Secp256k1};
use coordinator::api::{ClaimOutcome, CycleRecord, SlashRole};

/// Checks `record`'s verification section; returns how many claims were replayed. The
/// cycle's model is decoded with the newest model card's spec: [`audit_claims_with_spec`]
/// takes the cycle's job's.
pub async fn audit_claims(
    source: &impl PublishedSource,
    record: &CycleRecord,
) -> Result<usize, AuditError> {
    audit_claims_with_spec(source, record, None).await
}

/// [`audit_claims`] with the spec of the model `record`'s cycle trained (`None`: the model
/// card's).
pub async fn audit_claims_with_spec(
    source: &impl PublishedSource,
    record: &CycleRecord,
    cycle_spec: Option<&learning::ModelSpec>,
) -> Result<usize, AuditError> {
    let a = &record.announcement.announcement;
    let cycle = a.cycle;
    let v = &record.verification;
    let fail = |verifier: PublicKey, miner: PublicKey, interval: u64, why: String| {
        AuditError::ClaimDoesNotHold {
            cycle,
            verifier,
            miner,
            interval,
            why,
        }
    };
    // The verification secret is the preimage of the cycle secret the announcement committed
    // to, and every assignment's verifier and flag are its draws: the coordinator could not
    // choose either after the cycle opened.
    if let Some(secret) = v.secret {
        let cycle_secret = coordinator::verifiers::cycle_secret(&secret);
        if record.revealed_secret != Some(cycle_secret) {
            return Err(AuditError::VerificationDraw {
                cycle,
                why: "the verification secret does not hash to the cycle's revealed secret".into(),
            });
        }
        // q and k come from the record: bounded before anything is drawn or allocated by them.
        let k = v.checkpoint_interval;
        if v.challenges > proof::CHALLENGES_MAX
            || k == 0
            || k > proof::task::CHECKPOINT_INTERVAL_MAX
        {
            return Err(AuditError::VerificationDraw {
                cycle,
                why: format!(
                    "challenge count {} or checkpoint interval {k} out of range",
                    v.challenges
                ),
            });
        }
        let keys: Vec<PublicKey> = v.verifiers.iter().map(|e| e.verifier).collect();
        // The draw indexes the keys in ascending order: a reordered list would steer it.
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(AuditError::VerificationDraw {
                cycle,
                why: "the enrolled verifiers are not listed in ascending key order, once each"
                    .into(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for x in &v.assignments {
            // The miner's challenge, recomputed from the record: an assignment must be one of
            // its challenged intervals but the last; it can be a flag only if the next interval
            // is not challenged, and then it must be one exactly when the draw says so;
            // otherwise it must be audited.
            let challenge = record
                .submissions
                .iter()
                .find(|s| s.miner == x.miner)
                .zip(record.revealed_secret.zip(record.commitments_digest))
                // Each miner's own k (its paced budget), bounded before anything is drawn.
                .filter(|(s, _)| {
                    (1..=proof::task::CHECKPOINT_INTERVAL_MAX).contains(&s.checkpoint_interval)
                        && proof::leaf_count(s.commitment.steps, s.checkpoint_interval)
                            <= proof::LEAVES_MAX
                })
                .map(|(s, (revealed, digest))| {
                    let seed = proof::challenge_seed(&revealed, &digest, &x.miner);
                    let intervals = proof::leaf_count(s.commitment.steps, s.checkpoint_interval)
                        .saturating_sub(1);
                    (
                        intervals,
                        proof::challenged_intervals(&seed, intervals, v.challenges),
                    )
                });
            let Some((intervals, challenged)) = challenge else {
                return Err(AuditError::VerificationDraw {
                    cycle,
                    why: format!(
                        "an assignment on miner {}, who has no (boundable) challenge",
                        x.miner
                    ),
                });
            };
            let (_, flag) = coordinator::draw::redraw(&secret, &x.miner, x.interval, keys.len());
            let flaggable = !challenged.contains(&x.interval.saturating_add(1));
            let why =
                if !challenged.contains(&x.interval) || x.interval.saturating_add(1) >= intervals {
                    Some("is not a challenged interval before the run's last")
                } else if x.flagged != (flaggable && flag) {
                    Some("is flagged otherwise than the secret draws it")
                } else if !flaggable && !x.audited {
                    Some("cannot be a flag, so must be audited, and is not")
                } else {
                    None
                };
            if let Some(why) = why {
                return Err(AuditError::VerificationDraw {
                    cycle,
                    why: format!("miner {}'s interval {} {why}", x.miner, x.interval),
                });
            }
            if !seen.insert((x.miner, x.interval)) {
                return Err(AuditError::VerificationDraw {
                    cycle,
                    why: format!(
                        "miner {}'s interval {} is assigned twice",
                        x.miner, x.interval
                    ),
                });
            }
            let (pick, flag) =
                coordinator::verifiers::redraw(&secret, &x.miner, x.interval, keys.len());
            if keys.get(pick) != Some(&x.verifier) || (x.flagged && !flag) {
                return Err(AuditError::VerificationDraw {
                    cycle,
                    why: format!(
                        "miner {}'s interval {} is not assigned as the secret draws it",
                        x.miner, x.interval
                    ),
                });
            }
        }
    } else if !v.assignments.is_empty() {
        return Err(AuditError::VerificationDraw {
            cycle,
            why: "assignments without the secret that drew them".into(),
        });
    }
    // One claim and one verdict per assignment at most: bounds the replays below by the
    // assignments, however large a published record is.
    let mut claimed = std::collections::BTreeSet::new();
    let mut judged = std::collections::BTreeSet::new();
    for (miner, interval) in v.claims.iter().map(|c| (c.miner, c.interval)) {
        if !claimed.insert((miner, interval)) {
            return Err(AuditError::VerificationDraw {
                cycle,
                why: format!("two claims on miner {miner}'s interval {interval}"),
            });
        }
    }
    for (miner, interval) in v.verdicts.iter().map(|x| (x.miner, x.interval)) {
        if !judged.insert((miner, interval)) {
            return Err(AuditError::VerificationDraw {
                cycle,
                why: format!("two verdicts on miner {miner}'s interval {interval}"),
            });
        }
    }
    let secp = Secp256k1::verification_only();
    for claim in &v.claims {
        let why = if claim.cycle != cycle {
            Some(format!("it is for cycle {}", claim.cycle))
        } else if !claim.verify(&secp) {
            Some("its signature does not verify".to_owned())
        } else if !v.verifiers.iter().any(|e| e.verifier == claim.verifier) {
            Some("its verifier is not enrolled".to_owned())
        } else if !v.assignments.iter().any(|x| {
            x.verifier == claim.verifier && x.miner == claim.miner && x.interval == claim.interval
        }) {
            Some("it answers no assignment of its verifier".to_owned())
        } else {
            None
        };
        if let Some(why) = why {
            return Err(fail(claim.verifier, claim.miner, claim.interval, why));
        }
    }
    for verdict in &v.verdicts {
        let claimed = v.claims.iter().any(|c| {
            c.verifier == verdict.verifier
                && c.miner == verdict.miner
                && c.interval == verdict.interval
        });
        if !claimed {
            return Err(fail(
                verdict.verifier,
                verdict.miner,
                verdict.interval,
                "a verdict on a claim the record does not hold".into(),
            ));
        }
    }
    let (weights, spec) = if judged_claims(record).next().is_some() {
        (
            source.weights(cycle).await?,
            Some(match cycle_spec {
                Some(spec) => spec.clone(),
                None => source.model_card().await?.spec,
            }),
        )
    } else {
        (Vec::new(), None)
    };
    let mut shards: std::collections::BTreeMap<PublicKey, Vec<u8>> = Default::default();
    let mut replayed = 0;
    for verdict in judged_claims(record) {
        let (verifier, miner, interval) = (verdict.verifier, verdict.miner, verdict.interval);
        let fail = |why: String| fail(verifier, miner, interval, why);
        let evidence = source.claim_evidence(cycle, &miner, interval).await?;
        let listed = v
            .claims
            .iter()
            .find(|c| c.verifier == verifier && c.miner == miner && c.interval == interval);
        let submission = record.submissions.iter().find(|s| s.miner == miner);
        if Some(&evidence.claim) != listed
            || evidence.outcome != verdict.outcome
            || evidence.opening.interval != interval
            || Some(evidence.commitment) != submission.map(|s| s.commitment)
            || evidence.task.cycle != cycle
            || evidence.task.miner != miner
            || evidence.task.model_hash != a.model_hash
            || submission.map(paced_budget) != Some(task_budget(&evidence.task))
        {
            return Err(fail(
                "the evidence is not about this claim, commitment, model or step budget".into(),
            ));
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = shards.entry(miner) {
            slot.insert(source.evidence_shard(cycle, &miner).await?);
        }
        let shard = shards[&miner].clone();
        let weights = weights.clone();
        let spec = spec.clone().expect("read with the weights");
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let opening = evidence.opening.clone();
        let (task, commitment) = (evidence.task.clone(), evidence.commitment);
        let truth = tokio::task::spawn_blocking(move || {
            let model =
                learning::model_from_safetensors(spec, &weights).map_err(|e| e.to_string())?;
            opening
                .replay(&task, &commitment, &model, &shard, threads)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(fail)?;
        replayed += 1;
        let claim = &evidence.claim;
        // The claim must be about exactly the opening it is judged on: the task, the start
        // state and the end step it signed. (A coordinator serving a verifier other inputs
        // makes it sign other ones, and this is where that shows.)
        let start_leaf = hex::decode(&evidence.opening.start_state)
            .ok()
            .and_then(|b| learning::TrainState::decode(&b).ok())
            .map(|s| primitives::Hash256(s.hash()));
        let to_step = interval.checked_add(1).and_then(|i| {
            proof::checkpoint_step(commitment.steps, evidence.task.checkpoint_interval, i)
        });
        if claim.task_hash != evidence.task.hash()
            || Some(claim.start_leaf) != start_leaf
            || Some(claim.to_step) != to_step
        {
            return Err(fail(
                "the claim signs other inputs (task, start state or end step) than the evidence"
                    .into(),
            ));
        }
        let holds = match verdict.outcome {
            ClaimOutcome::Wrong => claim.leaf != truth,
            ClaimOutcome::CaughtCheat => {
                claim.leaf == truth
                    && truth != evidence.opening.end_leaf
                    && submission.is_some_and(|s| !s.verification.passed())
            }
            _ => true,
        };
        if !holds || verdict.replayed_leaf != Some(truth) {
            return Err(fail(format!(
                "judged {:?}, but the replay ends in {truth} (claimed {}, committed {})",
                verdict.outcome, claim.leaf, evidence.opening.end_leaf
            )));
        }
    }
    for slash in &record.slashes {
        let earned = |verifier: &PublicKey, miner: &PublicKey, outcome: ClaimOutcome| {
            v.verdicts
                .iter()
                .any(|x| &x.verifier == verifier && &x.miner == miner && x.outcome == outcome)
        };
        let why = match slash.role {
            SlashRole::Verifier => {
                let enrolled = v.verifiers.iter().find(|e| e.verifier == slash.miner);
                let wrong = v
                    .verdicts
                    .iter()
                    .any(|x| x.verifier == slash.miner && x.outcome == ClaimOutcome::Wrong);
                match enrolled {
                    Some(e) if e.bond == slash.bond && wrong => None,
                    _ => Some("a verifier slashed without a wrong claim of that bond".to_owned()),
                }
            }
            SlashRole::Miner => {
                // A miner is slashed only over a failed check of its own submission.
                let failed = record.submissions.iter().any(|s| {
                    s.miner == slash.miner
                        && matches!(s.verification, proof::Verdict::Failed { .. })
                });
                let is_verifier = v.verifiers.iter().any(|e| e.verifier == slash.miner);
                if !failed || is_verifier {
                    Some("a miner slashed without a failed check of its submission".to_owned())
                } else {
                    slash.finder.as_ref().and_then(|f| {
                        let enrolled = v.verifiers.iter().any(|e| {
                            e.verifier == f.verifier && e.payout_address == f.payout_address
                        });
                        (!enrolled || !earned(&f.verifier, &slash.miner, ClaimOutcome::CaughtCheat))
                            .then(|| "a finder share no claim earned".to_owned())
                    })
                }
            }
        };
        if let Some(why) = why {
            let verifier = slash.finder.as_ref().map_or(slash.miner, |f| f.verifier);
            return Err(fail(verifier, slash.miner, 0, why));
        }
    }
    Ok(replayed)
}

/// The checkpoint interval and step budget a record entry says the miner's task had.
pub(crate) fn paced_budget(s: &coordinator::api::ScoredSubmission) -> (u64, u64) {
    (
        s.checkpoint_interval,
        coordinator::pace::TRANSCRIPT_INTERVALS.saturating_mul(s.checkpoint_interval),
    )
}

/// The checkpoint interval and step budget of a task as served (its hash is the commitment's).
pub(crate) fn task_budget(task: &proof::ReplayTask) -> (u64, u64) {
    (task.checkpoint_interval, task.steps_max)
}
