//! Proof of training against the cheats a rational miner would try. Each cheat builds the best
//! transcript it can for what it really did, and the check names its own reason; an honest
//! run is never accused, whoever replays it with however many threads.

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use learning::{model_hash, Model, ModelSpec, Samples, SegmentUpdate, TrainState, Trainer};
use primitives::Hash256;
use proof::{
    challenge_seed, challenged_intervals, check, escape_probability, leaf_count, CheckInputs,
    Commitment, Failure, ReplayTask, RunRecord, Verdict,
};

const SEGMENT: &str = "layer0";
const Q: u32 = 2;

fn miner() -> PublicKey {
    SecretKey::from_slice(&[7; 32])
        .unwrap()
        .public_key(&Secp256k1::new())
}

fn spec() -> ModelSpec {
    ModelSpec::Mlp {
        input: 6,
        hidden: vec![10],
        classes: 3,
    }
}

fn samples(n: usize, salt: usize) -> Samples {
    let features: Vec<f32> = (0..n * 6)
        .map(|i| (((i + salt) * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| ((i + salt) * 7 % 3) as u32).collect();
    Samples::new(features, labels, 6).unwrap()
}

struct Setup {
    model: Model,
    shard: Samples,
    task: ReplayTask,
}

fn setup() -> Setup {
    let model = Model::new(spec(), 11).unwrap();
    let shard = samples(48, 0);
    let task = ReplayTask {
        cycle: 3,
        miner: miner(),
        model_hash: Hash256(model_hash(&model)),
        segment: SEGMENT.into(),
        shard_hash: Hash256([5; 32]),
        train_samples: shard.len() as u64,
        lr: 0.05,
        momentum: 0.9,
        batch: 8,
        steps_max: 40,
        checkpoint_interval: 4,
        batch_seed: 99,
    };
    Setup { model, shard, task }
}

/// A submission as a miner makes it: the record of its run, the update, the commitment.
struct Claim {
    record: RunRecord,
    update: SegmentUpdate,
    commitment: Commitment,
}

impl Setup {
    /// An honest run of `steps` steps of the task (optionally with its inputs changed by a
    /// cheat), recording every checkpoint.
    fn run(
        &self,
        steps: u64,
        edit: impl Fn(&mut ReplayTask, &mut Model, &mut Samples),
    ) -> RunRecord {
        let mut task = self.task.clone();
        let mut model = self.model.clone();
        let mut shard = self.shard.clone();
        edit(&mut task, &mut model, &mut shard);
        let config = task.train_config(steps, 1);
        let mut record = RunRecord::new(self.task.checkpoint_interval);
        let mut trainer = Trainer::start(&model, &[SEGMENT], &shard, &config).unwrap();
        record.push(trainer.state().unwrap());
        while trainer.steps_taken() < steps {
            trainer.run(1).unwrap();
            let step = trainer.steps_taken();
            if record.is_checkpoint(step) || step == steps {
                record.push(trainer.state().unwrap());
            }
        }
        record
    }

    fn claim(&self, record: RunRecord, update: SegmentUpdate) -> Claim {
        let commitment = Commitment {
            task_hash: self.task.hash(),
            update_hash: Hash256([1; 32]),
            transcript_root: record.transcript().root(),
            steps: record.last().unwrap().step,
        };
        Claim {
            record,
            update,
            commitment,
        }
    }

    fn honest(&self, steps: u64) -> Claim {
        let record = self.run(steps, |_, _, _| {});
        let update = record
            .last()
            .unwrap()
            .to_update(&self.model, SEGMENT)
            .unwrap();
        self.claim(record, update)
    }

    /// Checks `claim` under challenge seed `seed`, the miner answering from its record.
    fn verdict(&self, claim: &Claim, seed: u8, threads: usize) -> Verdict {
        let intervals = leaf_count(claim.commitment.steps, self.task.checkpoint_interval) - 1;
        let seed = challenge_seed(&Hash256([seed; 32]), &Hash256([2; 32]), &self.task.miner);
        let asked = challenged_intervals(&seed, intervals, Q);
        let response = claim.record.respond(&asked);
        self.verdict_of(claim, &asked, Some(&response), threads)
    }

    fn verdict_of(
        &self,
        claim: &Claim,
        asked: &[u64],
        response: Option<&proof::ChallengeResponse>,
        threads: usize,
    ) -> Verdict {
        let inputs = CheckInputs {
            task: &self.task,
            start_model: &self.model,
            train_samples: &self.shard,
            commitment: &claim.commitment,
            update: &claim.update,
            threads,
        };
        check(&inputs, asked, response)
    }

    /// The reason `claim` fails under every one of a few challenge seeds.
    fn failure(&self, claim: &Claim) -> Failure {
        let mut found = None;
        for seed in 0..6 {
            match self.verdict(claim, seed, 1) {
                Verdict::Failed { failure } => {
                    let kind = std::mem::discriminant(&failure);
                    if let Some(prev) = &found {
                        assert_eq!(std::mem::discriminant(prev), kind, "{failure}");
                    }
                    found = Some(failure);
                }
                other => panic!("a cheat passed under seed {seed}: {other:?}"),
            }
        }
        found.unwrap()
    }
}

/// A record whose states after step 0 are `states` (labelled with the checkpoint steps): what
/// a miner that did not train writes down to end at the update it wants.
fn fabricated(setup: &Setup, final_weights: &[Vec<f32>], steps: u64) -> RunRecord {
    let k = setup.task.checkpoint_interval;
    let mut record = RunRecord::new(k);
    let initial = TrainState::initial(&setup.model, &[SEGMENT], setup.task.momentum).unwrap();
    record.push(initial.clone());
    for step in proof::checkpoint_steps(steps, k).into_iter().skip(1) {
        record.push(TrainState {
            step,
            weights: final_weights.to_vec(),
            velocity: initial.velocity.clone(),
        });
    }
    record
}

fn weights_of(update: &SegmentUpdate) -> Vec<Vec<f32>> {
    update.tensors.iter().map(|t| t.values.clone()).collect()
}

#[test]
fn honest_runs_are_verified_under_every_challenge_and_thread_count() {
    let s = setup();
    for steps in [0, 3, 4, 17, 40] {
        let claim = s.honest(steps);
        for seed in 0..8 {
            for threads in [1, 2] {
                let verdict = s.verdict(&claim, seed, threads);
                assert!(verdict.passed(), "steps {steps}, seed {seed}: {verdict:?}");
            }
        }
    }
}

#[test]
fn training_on_data_outside_the_shard_fails_the_replay() {
    let s = setup();
    let record = s.run(40, |_, _, shard| *shard = samples(48, 1_000));
    let update = record.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
    let failure = s.failure(&s.claim(record, update));
    assert!(
        matches!(failure, Failure::ReplayMismatch { .. }),
        "{failure}"
    );
}

#[test]
fn a_segment_trained_elsewhere_does_not_start_from_the_task_model() {
    let s = setup();
    // Start from another model's segment and train honestly from there.
    let record = s.run(40, |_, model, _| *model = Model::new(spec(), 12).unwrap());
    let update = record.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
    assert_eq!(
        s.failure(&s.claim(record, update)),
        Failure::StartNotTaskModel
    );
}

#[test]
fn no_training_at_all_fails_the_last_interval() {
    let s = setup();
    // A rescaled segment (a temperature found by search), with a transcript that ends there.
    let mut update = SegmentUpdate::from_model(&s.model, SEGMENT).unwrap();
    for t in &mut update.tensors {
        t.values.iter_mut().for_each(|v| *v *= 1.37);
    }
    let record = fabricated(&s, &weights_of(&update), 40);
    let failure = s.failure(&s.claim(record, update));
    assert!(
        matches!(failure, Failure::ReplayMismatch { .. }),
        "{failure}"
    );
}

#[test]
fn a_copy_changed_by_one_ulp_fails_the_last_interval() {
    let s = setup();
    // Another miner's honest update (same task but its own batch order), every value one ulp off.
    let other = s.run(40, |task, _, _| task.batch_seed = 7);
    let mut update = other.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
    for t in &mut update.tensors {
        t.values
            .iter_mut()
            .for_each(|v| *v = f32::from_bits(v.to_bits() + 1));
    }
    let record = fabricated(&s, &weights_of(&update), 40);
    let failure = s.failure(&s.claim(record, update));
    assert!(
        matches!(failure, Failure::ReplayMismatch { .. }),
        "{failure}"
    );
}

#[test]
fn a_perturbation_on_top_of_an_honest_transcript_is_not_the_final_state() {
    let s = setup();
    let record = s.run(40, |_, _, _| {});
    let mut update = record.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
    update.tensors[0].values[3] += 1e-3;
    assert_eq!(
        s.failure(&s.claim(record, update)),
        Failure::UpdateNotFinalState
    );
}

#[test]
fn skipped_steps_a_wrong_batch_order_a_wrong_rate_and_a_trained_frozen_segment_fail_the_replay() {
    let s = setup();
    let cheats: Vec<(&str, RunRecord)> = vec![
        ("skipped steps", {
            // Two real steps per interval, each checkpoint labelled as if all four ran.
            let config = s.task.train_config(20, 1);
            let mut trainer = Trainer::start(&s.model, &[SEGMENT], &s.shard, &config).unwrap();
            let relabel = |mut state: TrainState| {
                state.step *= 2;
                state
            };
            let mut record = RunRecord::new(4);
            record.push(relabel(trainer.state().unwrap()));
            for _ in 0..10 {
                trainer.run(2).unwrap();
                record.push(relabel(trainer.state().unwrap()));
            }
            record
        }),
        ("batch order", s.run(40, |task, _, _| task.batch_seed += 1)),
        ("learning rate", s.run(40, |task, _, _| task.lr *= 2.0)),
        ("frozen segment trained", {
            let mut record = RunRecord::new(4);
            let config = s.task.train_config(40, 1);
            let mut trainer =
                Trainer::start(&s.model, &[SEGMENT, "layer1"], &s.shard, &config).unwrap();
            let keep = |state: TrainState| TrainState {
                step: state.step,
                weights: state.weights[..2].to_vec(),
                velocity: state.velocity[..2].to_vec(),
            };
            record.push(keep(trainer.state().unwrap()));
            for _ in 0..10 {
                trainer.run(4).unwrap();
                record.push(keep(trainer.state().unwrap()));
            }
            record
        }),
    ];
    for (name, record) in cheats {
        let update = record.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
        let failure = s.failure(&s.claim(record, update));
        assert!(
            matches!(failure, Failure::ReplayMismatch { .. }),
            "{name}: {failure}"
        );
    }
}

#[test]
fn unanswered_over_budget_wrong_intervals_and_foreign_states_are_refused() {
    let s = setup();
    let claim = s.honest(40);
    let intervals = leaf_count(40, 4) - 1;
    let asked = challenged_intervals(&Hash256([1; 32]), intervals, Q);
    assert_eq!(s.verdict_of(&claim, &asked, None, 1), Verdict::Unanswered);

    let mut over = s.honest(40);
    over.commitment.steps = 41;
    assert!(matches!(
        s.verdict_of(&over, &asked, None, 1),
        Verdict::Failed {
            failure: Failure::StepsOverBudget { steps: 41, max: 40 }
        }
    ));

    let mut wrong = claim.record.respond(&asked);
    wrong.openings.pop();
    assert!(matches!(
        s.verdict_of(&claim, &asked, Some(&wrong), 1),
        Verdict::Failed {
            failure: Failure::WrongIntervals { .. }
        }
    ));

    let mut foreign = claim.record.respond(&asked);
    foreign.openings[0].start.weights[0][0] += 1.0;
    assert!(matches!(
        s.verdict_of(&claim, &asked, Some(&foreign), 1),
        Verdict::Failed {
            failure: Failure::StartNotInTranscript { .. }
        }
    ));
}

/// A miner that fakes `faked` of its intervals (not the last: that one always fails) by
/// skipping their steps: caught in the share of challenges that hit one of them.
#[test]
fn detection_rate_of_partial_fakes_matches_the_formula() {
    let s = setup();
    let honest = s.run(40, |_, _, _| {});
    let intervals = leaf_count(40, 4) - 1;
    for faked in [1u64, 3, 5] {
        // States 1..=faked are made up (the run "skipped" to them).
        let fake_states: Vec<TrainState> = honest
            .ending_with(honest.last().unwrap().clone())
            .states()
            .iter()
            .enumerate()
            .map(|(i, state)| {
                let mut state = state.clone();
                if i >= 1 && (i as u64) <= faked {
                    state.weights[0][0] += 0.5; // not what SGD gives
                }
                state
            })
            .collect();
        let mut record = RunRecord::new(4);
        fake_states.into_iter().for_each(|st| record.push(st));
        let update = record.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
        let claim = s.claim(record, update);
        let trials = 200u32;
        let caught = (0..trials)
            .filter(|&t| {
                let seed = challenge_seed(
                    &Hash256([(t % 251) as u8; 32]),
                    &Hash256([(t / 251) as u8; 32]),
                    &s.task.miner,
                );
                let asked = challenged_intervals(&seed, intervals, Q);
                let response = claim.record.respond(&asked);
                !s.verdict_of(&claim, &asked, Some(&response), 1).passed()
            })
            .count();
        // Leaves 1..=faked hold states SGD did not produce, so intervals 0..=faked (each
        // starting or ending at one of them) fail their replay; the last interval is honest.
        let expected = 1.0 - escape_probability(intervals, faked + 1, Q);
        let measured = f64::from(caught as u32) / f64::from(trials);
        assert!(
            (measured - expected).abs() < 0.12,
            "faked {faked}: caught {measured:.3}, formula {expected:.3}"
        );
    }
}

/// The miner and the verifier run on different CPUs: a run made at any SIMD level this machine
/// offers (and at either thread count) is verified by a replay at the verifier's own level.
#[test]
fn a_run_made_at_any_simd_level_verifies_at_the_verifiers_level() {
    let s = setup();
    for simd in learning::Simd::available() {
        for miner_threads in [1, 2] {
            let config = s.task.train_config(40, miner_threads);
            let mut trainer = Trainer::start_with_kernel(
                &s.model,
                &[SEGMENT],
                &s.shard,
                &config,
                learning::Kernel::Reproducible(simd),
            )
            .unwrap();
            let mut record = RunRecord::new(4);
            record.push(trainer.state().unwrap());
            for _ in 0..10 {
                trainer.run(4).unwrap();
                record.push(trainer.state().unwrap());
            }
            let update = record.last().unwrap().to_update(&s.model, SEGMENT).unwrap();
            let claim = s.claim(record, update);
            for seed in 0..4 {
                for threads in [1, 2] {
                    let verdict = s.verdict(&claim, seed, threads);
                    assert!(
                        verdict.passed(),
                        "{simd:?}, {miner_threads} threads: {verdict:?}"
                    );
                }
            }
        }
    }
}

/// Tasks and evidence from elsewhere are bounded before anything is drawn or replayed.
#[test]
fn a_made_up_interval_or_challenge_count_is_refused_before_any_replay() {
    let s = setup();
    let claim = s.honest(40);
    let mut task = s.task.clone();
    task.checkpoint_interval = u64::MAX;
    assert!(matches!(
        proof::check_claims(&task, &claim.commitment),
        Err(Failure::IntervalOutOfRange { .. })
    ));
    task.checkpoint_interval = 0;
    assert!(matches!(
        proof::check_claims(&task, &claim.commitment),
        Err(Failure::IntervalOutOfRange { .. })
    ));
    let evidence = proof::FraudEvidence {
        model: spec(),
        task: s.task.clone(),
        commitment: claim.commitment,
        signature: String::new(),
        revealed_secret: Hash256::ZERO,
        commitments_digest: Hash256::ZERO,
        challenges: u32::MAX,
        response: String::new(),
        update: String::new(),
        failure: Failure::UpdateNotFinalState,
    };
    assert!(matches!(
        evidence.asked(),
        Err(proof::EvidenceError::TooManyChallenges(u32::MAX))
    ));
}

/// A verifier replaying an opened interval from its start state alone reaches the leaf the
/// honest transcript commits to, and a trusted interval is not replayed by the checker, while
/// the run's last interval always is: trust saves replay but never skips the tie to the update.
#[test]
fn replay_leaf_matches_the_transcript_and_trusted_intervals_skip_only_their_replay() {
    let s = setup();
    let claim = s.honest(40);
    let intervals = leaf_count(claim.commitment.steps, s.task.checkpoint_interval) - 1;
    let asked: Vec<u64> = (0..intervals).collect();
    let response = claim.record.respond(&asked);
    for opening in &response.openings {
        let to = (opening.start.step + s.task.checkpoint_interval).min(claim.commitment.steps);
        let leaf = proof::replay_leaf(&s.task, &s.model, &s.shard, &opening.start, to, 1).unwrap();
        assert_eq!(leaf, opening.end_leaf, "interval {}", opening.interval);
    }
    let inputs = CheckInputs {
        task: &s.task,
        start_model: &s.model,
        train_samples: &s.shard,
        commitment: &claim.commitment,
        update: &claim.update,
        threads: 1,
    };
    let all = proof::check_trusting(&inputs, &asked, Some(&response), &Default::default());
    let trusted: std::collections::BTreeSet<u64> = asked.iter().copied().collect();
    let most = proof::check_trusting(&inputs, &asked, Some(&response), &trusted);
    match (all, most) {
        (
            Verdict::Verified {
                replayed_steps: all,
                ..
            },
            Verdict::Verified {
                replayed_steps: last_only,
                ..
            },
        ) => {
            assert_eq!(all, 40);
            assert_eq!(
                last_only, s.task.checkpoint_interval,
                "only the last interval"
            );
        }
        other => panic!("{other:?}"),
    }

    // Trust skips the replay, never the paths: a trusted opening at the wrong step or with a
    // broken end path is refused as without trust.
    let mut wrong_step = response.clone();
    wrong_step.openings[0].start.step += 1;
    let verdict = proof::check_trusting(&inputs, &asked, Some(&wrong_step), &trusted);
    assert!(
        matches!(
            verdict,
            Verdict::Failed {
                failure: Failure::StateDoesNotFit { .. }
            }
        ),
        "{verdict:?}"
    );
    let mut broken_path = response.clone();
    broken_path.openings[0].end_path[0] = Hash256([9; 32]);
    let verdict = proof::check_trusting(&inputs, &asked, Some(&broken_path), &trusted);
    assert!(
        matches!(
            verdict,
            Verdict::Failed {
                failure: Failure::EndNotInTranscript { interval: 0 }
            }
        ),
        "{verdict:?}"
    );
    // A replay request backwards or longer than one interval is refused, not run.
    let start = &response.openings[1].start;
    for to in [
        start.step - 1,
        start.step + proof::task::CHECKPOINT_INTERVAL_MAX + 1,
    ] {
        let refused = proof::replay_leaf(&s.task, &s.model, &s.shard, start, to, 1);
        assert!(refused.is_err(), "to {to}");
    }

    // A fake in an untrusted middle interval is still caught; trusted, only the verifier
    // that vouched for it can be blamed (the coordinator's verifiers module).
    let mut faked = RunRecord::new(s.task.checkpoint_interval);
    for (i, state) in claim.record.states().iter().enumerate() {
        let mut state = state.clone();
        if i == 5 {
            state.weights[0][0] += 1e-3;
        }
        faked.push(state);
    }
    let fake = s.claim(faked, claim.update.clone());
    let response = fake.record.respond(&asked);
    let inputs = CheckInputs {
        commitment: &fake.commitment,
        ..inputs
    };
    let verdict = proof::check_trusting(&inputs, &asked, Some(&response), &Default::default());
    assert!(matches!(verdict, Verdict::Failed { .. }), "{verdict:?}");
}

/// An interval the caller already replayed (a verifier's claim the coordinator judged) is
/// compared by its known end leaf, not replayed again: a known mismatch fails the check with the
/// known leaf and costs no step, a known match passes, the paths are still checked, and the
/// run's last interval is replayed whatever is known about it.
#[test]
fn known_replays_are_compared_not_replayed_again_and_never_skip_the_paths_or_the_last_interval() {
    let s = setup();
    let claim = s.honest(40);
    let intervals = leaf_count(claim.commitment.steps, s.task.checkpoint_interval) - 1;
    let asked: Vec<u64> = (0..intervals).collect();
    let response = claim.record.respond(&asked);
    let inputs = CheckInputs {
        task: &s.task,
        start_model: &s.model,
        train_samples: &s.shard,
        commitment: &claim.commitment,
        update: &claim.update,
        threads: 1,
    };
    let none = Default::default();
    let truth: std::collections::BTreeMap<u64, Hash256> = response
        .openings
        .iter()
        .map(|o| (o.interval, o.end_leaf))
        .collect();
    match proof::check_with_replays(&inputs, &asked, Some(&response), &none, &truth) {
        Verdict::Verified { replayed_steps, .. } => {
            assert_eq!(
                replayed_steps, s.task.checkpoint_interval,
                "the last interval only"
            )
        }
        other => panic!("{other:?}"),
    }
    let mut wrong = truth.clone();
    wrong.insert(1, Hash256([7; 32]));
    let verdict = proof::check_with_replays(&inputs, &asked, Some(&response), &none, &wrong);
    assert!(
        matches!(
            &verdict,
            Verdict::Failed {
                failure: Failure::ReplayMismatch { interval: 1, replayed, .. }
            } if *replayed == Hash256([7; 32])
        ),
        "{verdict:?}"
    );
    // Known, the last interval is still replayed: a made-up leaf for it changes nothing.
    let mut last = std::collections::BTreeMap::new();
    last.insert(intervals - 1, Hash256([7; 32]));
    assert!(proof::check_with_replays(&inputs, &asked, Some(&response), &none, &last).passed());
    // And the paths are checked for a known interval too.
    let mut broken_path = response.clone();
    broken_path.openings[1].end_path[0] = Hash256([9; 32]);
    let verdict = proof::check_with_replays(&inputs, &asked, Some(&broken_path), &none, &truth);
    assert!(
        matches!(
            verdict,
            Verdict::Failed {
                failure: Failure::EndNotInTranscript { interval: 1 }
            }
        ),
        "{verdict:?}"
    );
}

#[test]
fn a_run_cut_by_its_deadline_ends_mid_interval_and_verifies() {
    let mut s = setup();
    // A budget far beyond what a few milliseconds hold, in intervals of 1,000 steps.
    s.task.steps_max = 1 << 40;
    s.task.checkpoint_interval = 1_000;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(30);
    let run = proof::run_task_until(
        &s.task,
        &s.model,
        &s.shard,
        1,
        Some(deadline),
        |_| true,
        |states| states.len() - 1,
    )
    .unwrap();
    // It stopped at the deadline, not at the next checkpoint a million steps away...
    assert!(std::time::Instant::now() < deadline + std::time::Duration::from_secs(2));
    let steps = run.record.last().unwrap().step;
    assert!(steps > 0 && steps < 1 << 40, "{steps}");
    // ...and its transcript still proves the run: the last (partial) interval replays.
    let claim = s.claim(run.record, run.update);
    for seed in 0..4 {
        let verdict = s.verdict(&claim, seed, 1);
        assert!(verdict.passed(), "steps {steps}, seed {seed}: {verdict:?}");
    }
    // Out of time before the first step: the run is its start state alone.
    let late = proof::run_task_until(
        &s.task,
        &s.model,
        &s.shard,
        1,
        Some(std::time::Instant::now()),
        |_| true,
        |states| states.len() - 1,
    )
    .unwrap();
    assert_eq!(late.record.last().unwrap().step, 0);
}
