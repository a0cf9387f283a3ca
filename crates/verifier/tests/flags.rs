//! Verifiers against the coordinator, in-process (virtual time): a lazy verifier that signs
//! what it is shown is caught by a flag and loses its bond; an honest one is never slashed over
//! many cycles, saves the coordinator most of its replay work, and earns the finder share of a
//! cheat's bond when its claim exposes a faked transcript. Enrolment and claims are refused
//! with their reasons.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Address, Amount, CompressedPublicKey, Network, OutPoint, Transaction, TxOut, Txid};
use consensus::bond::{bond_script_pubkey, BondTerms};
use coordinator::api::{
    BondOutpoint, Claim, ClaimOutcome, CompactSignature, EnrolRequest, Hardware, RegisterRequest,
    SlashRole, TaskInfo,
};
use coordinator::{ChainView, Coordinator, CycleTiming, MemoryChain, UnspentOutput, WorkSetup};
use learning::{model_from_safetensors, Samples};
use primitives::Coin;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use testkit::TestChain;

const T0: u64 = 1_700_000_000_000;
/// Steps each test miner trains: 8 checkpoint intervals of 16, so a challenge of q = 2 random
/// intervals plus the last leaves two to hand out per miner.
const STEPS: u64 = 128;

fn secp() -> Secp256k1<All> {
    Secp256k1::new()
}

fn payout(key: &SecretKey) -> String {
    Address::p2wpkh(
        &CompressedPublicKey(key.public_key(&secp())),
        Network::Regtest,
    )
    .to_string()
}

fn outpoint(n: u32) -> BondOutpoint {
    let mut txid = [0u8; 32];
    txid[..4].copy_from_slice(&n.to_le_bytes());
    txid[31] = 0xb1;
    BondOutpoint(OutPoint::new(Txid::from_byte_array(txid), 0))
}

fn bond_coin(terms: &BondTerms, key: &PublicKey, value: Amount) -> Coin {
    Coin {
        output: TxOut {
            value,
            script_pubkey: bond_script_pubkey(terms, key),
        },
        height: 0,
        is_coinbase: false,
    }
}

fn hardware() -> Hardware {
    Hardware {
        threads: 2,
        memory_bytes: 1 << 30,
    }
}

/// A coordinator admitting bonded miners only, its chain double, and the bond of each key.
struct Net {
    dir: tempfile::TempDir,
    test_chain: TestChain,
    /// `None` only while [`Net::restart`] swaps it (redb holds one opener per file).
    c: Option<Arc<Coordinator>>,
    chain: MemoryChain,
    terms: BondTerms,
    view: ChainView,
    bonds: BTreeMap<PublicKey, (BondOutpoint, Coin)>,
    now: u64,
}

/// A verifier bond large enough for the audit floor (`coordinator::verifiers::audit_ppm`):
/// 9 times the test chain's reward, and then some.
fn rich_bond(params: &primitives::ChainParams) -> Amount {
    Amount::from_sat(params.subsidy.initial_sats * 10)
}

impl Net {
    /// Bonds every key with the chain's `bond_min`, except the `rich` ones (verifiers whose
    /// claims are audited at the floor rate) with [`rich_bond`].
    fn new(keys: &[&SecretKey], rich: &[&SecretKey]) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let test_chain = TestChain::new();
        let terms = BondTerms::from_params(&test_chain.params);
        let genesis = test_chain.params.genesis.block_hash();
        let c = Arc::new(open(dir.path(), &test_chain));
        let chain = MemoryChain::new(genesis);
        let mut bonds = BTreeMap::new();
        for (n, key) in keys.iter().chain(rich).enumerate() {
            let public = key.public_key(&secp());
            let value = if n < keys.len() {
                terms.bond_min
            } else {
                rich_bond(&test_chain.params)
            };
            let coin = bond_coin(&terms, &public, value);
            chain.add_coin(outpoint(n as u32).0, coin.clone());
            bonds.insert(public, (outpoint(n as u32), coin));
        }
        let view = ChainView {
            tip: genesis,
            tip_height: 0,
            at_target: None,
            tip_next_model: None,
        };
        c.step(T0, [7; 32], Some(&view)).unwrap();
        Net {
            dir,
            test_chain,
            c: Some(c),
            chain,
            terms,
            view,
            bonds,
            now: T0,
        }
    }

    fn c(&self) -> &Coordinator {
        self.c.as_deref().expect("coordinator open")
    }

    fn arc(&self) -> &Arc<Coordinator> {
        self.c.as_ref().expect("coordinator open")
    }

    /// Stops the coordinator (as a crash would: nothing is flushed beyond what each call
    /// committed) and opens it again from its data directory.
    fn restart(&mut self) {
        drop(self.c.take());
        self.c = Some(Arc::new(open(self.dir.path(), &self.test_chain)));
    }

    fn found(&self, key: &SecretKey) -> (BondOutpoint, Option<UnspentOutput>) {
        let (outpoint, coin) = self.bonds[&key.public_key(&secp())].clone();
        (
            outpoint,
            Some(UnspentOutput {
                coin,
                tip_height: 0,
            }),
        )
    }

    fn cycle(&self) -> u64 {
        self.c().state().unwrap().cycle()
    }

    fn register(&self, key: &SecretKey) {
        let (bond, found) = self.found(key);
        let request = RegisterRequest::new_signed_bonded(
            &secp(),
            key,
            self.cycle(),
            payout(key),
            hardware(),
            Some(bond),
        );
        self.c()
            .register_bonded(self.now + 10, [2; 32], request, found)
            .unwrap();
    }

    fn enrol(&self, key: &SecretKey) -> Result<(), coordinator::ServiceError> {
        let (bond, found) = self.found(key);
        let request = EnrolRequest::new_signed(&secp(), key, self.cycle(), payout(key), bond);
        self.c()
            .enrol_verifier(self.now, [3; 32], request, found)
            .map(drop)
    }

    /// Moves the clock to `at` with one driver step.
    fn step_to(&mut self, at: u64, entropy: u8) {
        self.now = at;
        self.c()
            .step(self.now, [entropy; 32], Some(&self.view))
            .unwrap();
    }

    /// Steps until the cycle closed and the next one opened.
    fn next_cycle(&mut self) {
        let cycle = self.cycle();
        let mut n = 0u8;
        while self.cycle() == cycle {
            assert!(n < 250, "cycle {cycle} did not close");
            n += 1;
            let at = self.now + 500;
            self.step_to(at, n);
        }
    }
}

fn open(dir: &Path, chain: &TestChain) -> Coordinator {
    Coordinator::open(
        dir,
        chain.coordinator,
        &chain.params,
        WorkSetup::digits_mlp(vec![16]),
        CycleTiming {
            registration_ms: 1_000,
            training_ms: 4_000,
            challenge_ms: 1_000,
            block_window_ms: 1_000,
        },
    )
    .unwrap()
    .require_bonds(true)
}

/// How a test miner trains.
#[derive(Clone, Copy, PartialEq)]
enum Work {
    Honest,
    /// Trains honestly but commits to made-up states at every checkpoint between the first
    /// and the last: the skipped work a transcript must expose.
    FakeCheckpoints,
    /// Like [`Work::FakeCheckpoints`], but the last interval (which the coordinator always
    /// replays) is left consistent: only a replay of a middle interval can expose it.
    FakeMiddle,
}

/// How a test verifier answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Honest,
    /// Signs the shown leaf without replaying.
    Lazy,
    /// Colludes with the miners: signs the leaf each miner committed to (which it was told).
    Vouch,
    /// Enrols and never claims.
    Absent,
}

/// When the test miners submit: an eighth of the window after training starts, so that their
/// [`STEPS`] steps pace the next cycle's checkpoint interval at ⌈2 · 128 · 8 / 128⌉ = 16 (with
/// the pace's headroom of 2), the configured interval the step counts here assume
/// (`coordinator::pace`).
fn paced_submission_time(net: &Net) -> u64 {
    let a = net.c().state().unwrap().announcement().clone();
    let window = a.submission_deadline_ms - a.registration_deadline_ms;
    a.registration_deadline_ms + window.div_ceil(16 / coordinator::pace::PACE_HEADROOM)
}

/// Trains `key`'s task and returns its record (to answer the challenge), after submitting.
fn train_and_submit(net: &Net, key: &SecretKey, work: Work) -> proof::RunRecord {
    let secp = secp();
    let miner = key.public_key(&secp);
    let cycle = net.cycle();
    let task = net.c().task(net.now, cycle, &miner).unwrap();
    let weights = net.c().weights(cycle).unwrap();
    let shard = net.c().shard(net.now, cycle, &miner).unwrap();
    let model = model_from_safetensors(task.model.clone(), &weights).unwrap();
    let shard = Samples::from_safetensors(&shard, task.feature_count, task.class_count).unwrap();
    let train = proof::evidence::train_part(&shard, task.replay.train_samples).unwrap();
    let run = proof::run_task(
        &task.replay,
        &model,
        &train,
        1,
        |state| state.step < STEPS,
        |states| states.len() - 1,
    )
    .unwrap();
    let record = match work {
        Work::Honest => run.record.clone(),
        Work::FakeCheckpoints | Work::FakeMiddle => {
            let states = run.record.states();
            let mut fake = proof::RunRecord::new(task.replay.checkpoint_interval);
            for (i, state) in states.iter().enumerate() {
                let mut state = state.clone();
                let kept = if work == Work::FakeMiddle { 2 } else { 1 };
                if i != 0 && i + kept < states.len() {
                    // Every value: a weight on an always-zero input (a digits corner pixel)
                    // has no gradient, so moving it alone replays consistently.
                    for v in state.weights.iter_mut().flatten() {
                        *v *= 1.01;
                    }
                }
                fake.push(state);
            }
            fake
        }
    };
    let update = run.update.to_safetensors().unwrap();
    let commitment = proof::Commitment {
        task_hash: task.replay.hash(),
        update_hash: primitives::sha256(&update),
        transcript_root: record.transcript().root(),
        steps: STEPS,
    };
    let sig = CompactSignature::sign(&secp, key, &commitment.signing_hash(cycle, &miner));
    let claim = coordinator::SubmissionClaim {
        task_hash: commitment.task_hash,
        transcript_root: commitment.transcript_root,
        steps: commitment.steps,
    };
    net.c()
        .submit(
            paced_submission_time(net),
            [1; 32],
            cycle,
            miner,
            sig,
            claim,
            &update,
        )
        .unwrap();
    record
}

fn answer(net: &Net, key: &SecretKey, record: &proof::RunRecord) {
    let secp = secp();
    let miner = key.public_key(&secp);
    let cycle = net.cycle();
    let challenge = net.c().challenge(net.now, cycle, &miner).unwrap();
    let bytes = record.respond(&challenge.intervals).encode();
    let sig = CompactSignature::sign(
        &secp,
        key,
        &coordinator::api::answer_signing_hash(cycle, &miner, &primitives::sha256(&bytes)),
    );
    net.c()
        .answer(net.now, [1; 32], cycle, miner, sig, &bytes)
        .unwrap();
}

/// What a verifier does with its assignments: replays each (honest), signs the shown leaf
/// (lazy) or the leaf the miner committed to (vouching, from the miners' `records`).
fn verify(
    net: &Net,
    key: &SecretKey,
    mode: Mode,
    records: &BTreeMap<PublicKey, proof::RunRecord>,
) -> usize {
    let cycle = net.cycle();
    let verifier = key.public_key(&secp());
    let assignments = match net.c().assignments(net.now, [5; 32], cycle, &verifier) {
        Ok(a) => a,
        // Every assignment was claimed already, none of them this verifier's.
        Err(e) if e.code() == "verification_closed" => return 0,
        Err(e) => panic!("{e}"),
    };
    let weights = net.c().weights(cycle).unwrap();
    for a in &assignments.assignments {
        let leaf = match mode {
            Mode::Absent => return 0,
            Mode::Lazy => a.shown_leaf,
            Mode::Vouch => records[&a.miner]
                .transcript()
                .leaf(a.interval as usize + 1)
                .unwrap(),
            Mode::Honest => {
                let task: TaskInfo = net.c().task(net.now, cycle, &a.miner).unwrap();
                let shard = net.c().shard(net.now, cycle, &a.miner).unwrap();
                verifier::replay_assignment(a, &task, &weights, &shard, 1).unwrap()
            }
        };
        let task_hash = net
            .c()
            .task(net.now, cycle, &a.miner)
            .unwrap()
            .replay
            .hash();
        let claim = Claim::new_signed(&secp(), key, &a.subject(task_hash).unwrap(), leaf);
        net.c().claim(net.now, [6; 32], claim).unwrap();
    }
    assignments.assignments.len()
}

/// Runs one cycle: miners register, verifiers enrol, miners train, submit and answer,
/// verifiers claim; returns once the cycle is evaluated (its slashes sent).
async fn run_cycle(
    net: &mut Net,
    miners: &[(&SecretKey, Work)],
    verifiers: &[(&SecretKey, Mode)],
    entropy: u8,
) {
    for (key, _) in miners {
        net.register(key);
    }
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, entropy);
    for (key, _) in verifiers {
        net.enrol(key).unwrap();
    }
    let records: BTreeMap<PublicKey, proof::RunRecord> = miners
        .iter()
        .map(|(key, work)| (key.public_key(&secp()), train_and_submit(net, key, *work)))
        .collect();
    net.step_to(a.submission_deadline_ms + 1, entropy);
    for (key, _) in miners {
        answer(net, key, &records[&key.public_key(&secp())]);
    }
    // Every submitter answered: the challenge closes and the assignments are drawn.
    net.step_to(net.now + 1, entropy.wrapping_add(100));
    for (key, mode) in verifiers {
        verify(net, key, *mode, &records);
    }
    net.step_to(net.now + 1, entropy);
    if net.c().state().unwrap().lottery.is_none() {
        // A claim is missing: the verification window (one challenge window) runs out.
        net.step_to(net.now + 1_001, entropy);
    }
    assert!(
        net.c().state().unwrap().lottery.is_some(),
        "cycle evaluated once every claim is in, or at the verification deadline"
    );
    coordinator::slash::send_pending(net.arc(), &net.chain).await;
}

fn slash_of(sent: &[Transaction], bond: &BondOutpoint) -> Option<Transaction> {
    sent.iter()
        .find(|tx| tx.input[0].previous_output == bond.0)
        .cloned()
}

#[tokio::test]
async fn a_lazy_verifier_is_caught_by_a_flag_and_an_honest_one_never_slashed() {
    let miners: Vec<SecretKey> = (0..3).map(|n| testkit::key(600 + n)).collect();
    let honest = testkit::key(610);
    let lazy = testkit::key(611);
    let keys: Vec<&SecretKey> = miners.iter().collect();
    let mut net = Net::new(&keys, &[&honest, &lazy]);
    let (lazy_bond, _) = net.found(&lazy);
    let (honest_bond, _) = net.found(&honest);
    let work: Vec<(&SecretKey, Work)> = miners.iter().map(|k| (k, Work::Honest)).collect();

    let mut caught_in = None;
    let mut honest_claims = 0;
    let (mut replayed, mut challenged) = (0, 0);
    // The shards (and so the transcripts and challenges) come from each coordinator's random
    // held-out secret, so which intervals are flaggable varies from run to run: run at least 8
    // cycles, and on until the lazy verifier is caught (each cycle catches it with a chance
    // well over a third; 48 cycles leave about 1e-9 to chance).
    for round in 0..48u8 {
        let verifiers: Vec<(&SecretKey, Mode)> = if caught_in.is_some() {
            vec![(&honest, Mode::Honest)]
        } else {
            vec![(&honest, Mode::Honest), (&lazy, Mode::Lazy)]
        };
        run_cycle(&mut net, &work, &verifiers, 40 + round).await;
        let record = net.c().record(net.cycle()).unwrap();
        let v = &record.verification;
        assert!(v.secret.is_some(), "the draw's secret is published");
        // The flag rule: interval i is never a flag when interval i + 1 is challenged too
        // (anyone can see that), and such an interval is always audited instead.
        for x in &v.assignments {
            let challenge = net.c().challenge(net.now, net.cycle(), &x.miner).unwrap();
            if challenge.intervals.contains(&(x.interval + 1)) {
                assert!(
                    !x.flagged,
                    "flag at {} before a challenged interval",
                    x.interval
                );
                assert!(x.audited, "unflaggable interval {} not audited", x.interval);
            }
        }
        for verdict in &v.verdicts {
            if verdict.verifier == honest.public_key(&secp()) {
                honest_claims += 1;
                assert!(
                    matches!(
                        verdict.outcome,
                        ClaimOutcome::Trusted | ClaimOutcome::Confirmed
                    ),
                    "honest verifier judged {:?}",
                    verdict.outcome
                );
            }
        }
        let lazy_wrong = v
            .verdicts
            .iter()
            .any(|x| x.verifier == lazy.public_key(&secp()) && x.outcome == ClaimOutcome::Wrong);
        if lazy_wrong {
            // Only a flag can make an echo wrong here: every miner is honest.
            assert!(v
                .assignments
                .iter()
                .any(|x| x.flagged && x.verifier == lazy.public_key(&secp())));
            caught_in.get_or_insert(round);
            assert_eq!(record.slashes.len(), 1, "{:?}", record.slashes);
            assert_eq!(record.slashes[0].role, SlashRole::Verifier);
            assert_eq!(record.slashes[0].bond, lazy_bond);
        }
        // Every miner is honest, so every submission still verifies, claims or not.
        assert!(record.submissions.iter().all(|s| s.verification.passed()));
        // The coordinator replays every challenged interval but the trusted ones (16 steps
        // each, honest miners only here).
        let trusted = v.verdicts_with(ClaimOutcome::Trusted) as u64;
        assert_eq!(
            v.coordinator_replayed_steps + 16 * trusted,
            v.challenged_steps
        );
        replayed += v.coordinator_replayed_steps;
        challenged += v.challenged_steps;
        net.next_cycle();
        if round >= 7 && caught_in.is_some() {
            break;
        }
    }
    let caught_in = caught_in.expect("a lazy verifier is caught within 48 cycles");
    // With verifiers bonded for the audit floor the coordinator replays well under all of it
    // (the floor is the always-replayed last intervals, a third with q = 2; about half was
    // measured over 8 cycles).
    assert!(
        replayed * 10 < challenged * 8,
        "replayed {replayed} of {challenged} challenged steps"
    );
    assert!(
        honest_claims >= 8,
        "the honest verifier claimed {honest_claims}"
    );
    let sent = net.chain.sent();
    let slash = slash_of(&sent, &lazy_bond).expect("the lazy verifier's bond is slashed");
    assert_eq!(
        slash.output.len(),
        1,
        "all burned: nobody found a lazy verifier"
    );
    assert_eq!(slash.output[0].script_pubkey, consensus::tx::burn_script());
    assert!(
        slash_of(&sent, &honest_bond).is_none(),
        "honest verifier slashed"
    );
    assert_eq!(
        sent.len(),
        1,
        "one slash in all: {sent:?}, caught in {caught_in}"
    );
    // The slashed bond backs nothing any more, even while its slash is unconfirmed (the
    // chain double still serves the coin, as a node's confirmed-only `gettxout` would).
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, 1);
    let e = net.enrol(&lazy).unwrap_err();
    assert_eq!(e.code(), "bond_slashed", "{e}");
    net.enrol(&honest).unwrap();
}

#[tokio::test]
async fn an_honest_verifier_exposes_a_faked_transcript_and_earns_the_finder_share() {
    let honest_miner = testkit::key(620);
    let cheat = testkit::key(621);
    let verifier = testkit::key(622);
    let mut net = Net::new(&[&honest_miner, &cheat], &[&verifier]);
    let (cheat_bond, _) = net.found(&cheat);
    run_cycle(
        &mut net,
        &[
            (&honest_miner, Work::Honest),
            (&cheat, Work::FakeCheckpoints),
        ],
        &[(&verifier, Mode::Honest)],
        9,
    )
    .await;
    let record = net.c().record(net.cycle()).unwrap();
    let cheat_key = cheat.public_key(&secp());
    let row = record
        .submissions
        .iter()
        .find(|s| s.miner == cheat_key)
        .unwrap();
    assert!(
        matches!(row.verification, proof::Verdict::Failed { .. }),
        "{:?}",
        row.verification
    );
    let caught: Vec<_> = record
        .verification
        .verdicts
        .iter()
        .filter(|x| x.miner == cheat_key)
        .collect();
    assert!(!caught.is_empty(), "the cheat's intervals were assigned");
    assert!(
        caught
            .iter()
            .all(|x| x.outcome == ClaimOutcome::CaughtCheat),
        "{caught:?} {:?}",
        record.verification.assignments
    );
    let slash = slash_of(&net.chain.sent(), &cheat_bond).expect("cheat slashed");
    let finder_script = payout(&verifier)
        .parse::<Address<_>>()
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let share = (net.terms.bond_min - coordinator::slash::SLASH_FEE).to_sat()
        * u64::from(net.terms.finder_share_percent)
        / 100;
    assert!(share > 0);
    assert_eq!(slash.output.len(), 2, "{slash:?}");
    assert_eq!(slash.output[0].script_pubkey, finder_script);
    assert_eq!(slash.output[0].value.to_sat(), share);
    assert_eq!(slash.output[1].script_pubkey, consensus::tx::burn_script());
    let rec = record
        .slashes
        .iter()
        .find(|s| s.miner == cheat_key)
        .unwrap();
    assert_eq!(rec.role, SlashRole::Miner);
    assert_eq!(
        rec.finder.as_ref().map(|f| f.verifier),
        Some(verifier.public_key(&secp()))
    );
    assert_eq!(
        record.slashes.len(),
        1,
        "only the cheat: {:?}",
        record.slashes
    );
}

#[test]
fn enrolment_and_claims_are_refused_with_their_reasons() {
    let miner = testkit::key(630);
    let verifier = testkit::key(631);
    let stranger = testkit::key(632);
    let mut net = Net::new(&[&miner, &verifier, &stranger], &[]);
    let code = |r: Result<(), coordinator::ServiceError>| r.unwrap_err().code().to_owned();
    net.register(&miner);
    assert_eq!(
        code(net.enrol(&verifier)),
        "enrolment_closed",
        "before training"
    );
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, 1);
    assert_eq!(code(net.enrol(&miner)), "verifier_is_miner");
    // A miner's bond cannot back a verifier too.
    let (miner_bond, miner_found) = net.found(&miner);
    let forged = EnrolRequest::new_signed(
        &secp(),
        &verifier,
        net.cycle(),
        payout(&verifier),
        miner_bond,
    );
    assert_eq!(
        code(
            net.c()
                .enrol_verifier(net.now, [0; 32], forged, miner_found)
                .map(drop)
        ),
        "bond_in_use"
    );
    // A bond for another key does not back this one.
    let (stranger_bond, stranger_found) = net.found(&stranger);
    let wrong_key = EnrolRequest::new_signed(
        &secp(),
        &verifier,
        net.cycle(),
        payout(&verifier),
        stranger_bond,
    );
    assert_eq!(
        code(
            net.c()
                .enrol_verifier(net.now, [0; 32], wrong_key, stranger_found)
                .map(drop)
        ),
        "bond_wrong_key"
    );
    let (bond, _) = net.found(&verifier);
    let missing =
        EnrolRequest::new_signed(&secp(), &verifier, net.cycle(), payout(&verifier), bond);
    assert_eq!(
        code(
            net.c()
                .enrol_verifier(net.now, [0; 32], missing, None)
                .map(drop)
        ),
        "bond_not_found"
    );
    let mut bad =
        EnrolRequest::new_signed(&secp(), &verifier, net.cycle(), payout(&verifier), bond);
    bad.signature = CompactSignature([1; 64]);
    assert_eq!(
        code(
            net.c()
                .enrol_verifier(net.now, [0; 32], bad, net.found(&verifier).1)
                .map(drop)
        ),
        "bad_signature"
    );
    net.enrol(&verifier).unwrap();
    net.enrol(&verifier).unwrap(); // the same enrolment again is answered as before

    let record = train_and_submit(&net, &miner, Work::Honest);
    let miner_key = miner.public_key(&secp());
    let early = Claim::new_signed(
        &secp(),
        &verifier,
        &subject_of(&net, &miner_key, 0),
        primitives::Hash256([0; 32]),
    );
    assert_eq!(
        code(net.c().claim(net.now, [0; 32], early)),
        "verification_not_open"
    );
    net.step_to(a.submission_deadline_ms + 1, 2);
    answer(&net, &miner, &record);
    net.step_to(net.now + 1, 3);
    let assigned = net
        .c()
        .assignments(net.now, [0; 32], net.cycle(), &verifier.public_key(&secp()))
        .unwrap();
    let first = assigned.assignments.first().expect("an assignment").clone();
    // The verifier replays only on the inputs its task names: another shard, or other weights,
    // are refused before any replay (its claim signs the task, so it must not mix inputs).
    let task = net.c().task(net.now, net.cycle(), &miner_key).unwrap();
    let weights = net.c().weights(net.cycle()).unwrap();
    let shard = net.c().shard(net.now, net.cycle(), &miner_key).unwrap();
    assert!(verifier::replay_assignment(&first, &task, &weights, &shard, 1).is_ok());
    let mut other_shard = shard.to_vec();
    let last = other_shard.len() - 1;
    other_shard[last] ^= 1;
    let e = verifier::replay_assignment(&first, &task, &weights, &other_shard, 1).unwrap_err();
    assert!(
        e.to_string().contains("shard served is not the task's"),
        "{e}"
    );
    let mut other_task = task.clone();
    other_task.replay.model_hash = primitives::Hash256([1; 32]);
    let e = verifier::replay_assignment(&first, &other_task, &weights, &shard, 1).unwrap_err();
    assert!(
        e.to_string().contains("model served is not the task's"),
        "{e}"
    );
    let unassigned = (0..STEPS / 16)
        .find(|i| assigned.assignments.iter().all(|x| x.interval != *i))
        .unwrap();
    let stray = Claim::new_signed(
        &secp(),
        &verifier,
        &subject_of(&net, &miner_key, unassigned),
        first.shown_leaf,
    );
    assert_eq!(code(net.c().claim(net.now, [0; 32], stray)), "not_assigned");
    let mut forged = Claim::new_signed(
        &secp(),
        &verifier,
        &subject_of(&net, &miner_key, first.interval),
        first.shown_leaf,
    );
    forged.signature = Claim::new_signed(
        &secp(),
        &stranger,
        &subject_of(&net, &miner_key, first.interval),
        first.shown_leaf,
    )
    .signature;
    assert_eq!(
        code(net.c().claim(net.now, [0; 32], forged)),
        "bad_signature"
    );
    let outsider = Claim::new_signed(
        &secp(),
        &stranger,
        &subject_of(&net, &miner_key, first.interval),
        first.shown_leaf,
    );
    assert_eq!(
        code(net.c().claim(net.now, [0; 32], outsider)),
        "not_enrolled"
    );
    assert_eq!(
        code(
            net.c()
                .assignments(net.now, [0; 32], net.cycle(), &stranger.public_key(&secp()))
                .map(drop)
        ),
        "not_enrolled"
    );
    assert!(
        assigned.assignments.len() > 1,
        "two random intervals per miner"
    );
    // A claim about other inputs than the assignment's (here another start state) is refused:
    // it would be judged as a statement about the miner's opening.
    let mut other_start = subject_of(&net, &miner_key, first.interval);
    other_start.start_leaf = primitives::Hash256([5; 32]);
    let mismatched = Claim::new_signed(&secp(), &verifier, &other_start, first.shown_leaf);
    assert_eq!(
        code(net.c().claim(net.now, [0; 32], mismatched)),
        "claim_mismatch"
    );
    let claim = Claim::new_signed(
        &secp(),
        &verifier,
        &subject_of(&net, &miner_key, first.interval),
        first.shown_leaf,
    );
    net.c().claim(net.now, [0; 32], claim.clone()).unwrap();
    assert_eq!(
        code(net.c().claim(net.now, [0; 32], claim)),
        "already_claimed"
    );
}

/// A verifier colluding with a cheat signs the cheat's fake leaves; with the last interval
/// kept consistent, only the coordinator's audit draw can expose the pair. When it does, both
/// bonds are slashed (all burned); until then the cheat's rows pass, which is why the audit
/// rate is part of the incentive inequality (`docs/protocol.md`).
#[tokio::test]
async fn an_audit_exposes_a_verifier_vouching_for_a_fake_and_slashes_both() {
    let cheat = testkit::key(640);
    let colluder = testkit::key(641);
    let mut net = Net::new(&[&cheat], &[&colluder]);
    let (cheat_bond, _) = net.found(&cheat);
    let (colluder_bond, _) = net.found(&colluder);
    // At least a 19% chance of an audit per cycle: 64 cycles leave about 1e-6 to chance.
    for round in 0..64u8 {
        run_cycle(
            &mut net,
            &[(&cheat, Work::FakeMiddle)],
            &[(&colluder, Mode::Vouch)],
            80 + round,
        )
        .await;
        let record = net.c().record(net.cycle()).unwrap();
        let v = &record.verification;
        let audited = v.assignments.iter().any(|x| x.audited);
        let passed = record.submissions[0].verification.passed();
        if !audited {
            assert!(
                passed,
                "round {round}: no audit, so every vouched interval is trusted"
            );
            net.next_cycle();
            continue;
        }
        assert!(!passed, "round {round}: the audit replays a fake interval");
        assert!(v.verdicts.iter().any(|x| x.outcome == ClaimOutcome::Wrong));
        let sent = net.chain.sent();
        assert!(slash_of(&sent, &cheat_bond).is_some(), "cheat slashed");
        assert!(
            slash_of(&sent, &colluder_bond).is_some(),
            "colluder slashed"
        );
        assert!(
            record.slashes.iter().all(|s| s.finder.is_none()),
            "nobody honest found it"
        );
        assert_eq!(record.slashes.len(), 2);
        return;
    }
    panic!(
        "no audit in 64 cycles at {}%",
        coordinator::verifiers::AUDIT_PERCENT
    );
}

/// The coordinator's published data as the audit reads it, straight from the in-process
/// coordinator, with one claim's evidence replaceable (a coordinator publishing made-up
/// evidence).
struct Published<'a> {
    c: &'a Coordinator,
    forged: Option<coordinator::api::ClaimEvidence>,
}

fn archive_error(e: impl std::fmt::Display) -> miner::audit::AuditError {
    miner::audit::AuditError::Archive {
        path: "in-process coordinator".into(),
        why: e.to_string(),
    }
}

impl miner::published::PublishedSource for Published<'_> {
    async fn job(
        &self,
        id: &primitives::Hash256,
    ) -> Result<coordinator::api::JobStatus, miner::audit::AuditError> {
        self.c.job(id).map_err(archive_error)
    }
    async fn records(
        &self,
    ) -> Result<Vec<coordinator::api::CycleRecord>, miner::audit::AuditError> {
        Err(archive_error("not used"))
    }
    async fn model_card(&self) -> Result<learning::ModelCard, miner::audit::AuditError> {
        self.c
            .latest_model()
            .map(|(_, card)| card)
            .map_err(archive_error)
    }
    async fn weights(&self, cycle: u64) -> Result<Vec<u8>, miner::audit::AuditError> {
        self.c
            .weights(cycle)
            .map(|b| b.to_vec())
            .map_err(archive_error)
    }
    async fn held_out(&self, _: u64) -> Result<Vec<u8>, miner::audit::AuditError> {
        Err(archive_error("not used"))
    }
    async fn update(
        &self,
        _: u64,
        _: &primitives::Hash256,
    ) -> Result<Vec<u8>, miner::audit::AuditError> {
        Err(archive_error("not used"))
    }
    async fn evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<proof::FraudEvidence, miner::audit::AuditError> {
        self.c.evidence(cycle, miner).map_err(archive_error)
    }
    async fn evidence_shard(
        &self,
        cycle: u64,
        miner: &PublicKey,
    ) -> Result<Vec<u8>, miner::audit::AuditError> {
        self.c.evidence_shard(cycle, miner).map_err(archive_error)
    }
    async fn claim_evidence(
        &self,
        cycle: u64,
        miner: &PublicKey,
        interval: u64,
    ) -> Result<coordinator::api::ClaimEvidence, miner::audit::AuditError> {
        match &self.forged {
            Some(e) if &e.claim.miner == miner && e.claim.interval == interval => Ok(e.clone()),
            _ => self
                .c
                .claim_evidence(cycle, miner, interval)
                .map_err(archive_error),
        }
    }
}

/// A coordinator that misreports claims: the audit replays every claim that slashed or paid
/// someone from its published evidence, so relabelling an honest claim `wrong` (with made-up
/// evidence or none), slashing a verifier without a wrong claim, or paying a finder share no
/// claim earned all fail the audit, while the honest record passes.
#[tokio::test]
async fn the_audit_replays_judged_claims_and_catches_a_coordinator_that_misreports_them() {
    use miner::claims_audit::audit_claims;
    let honest_miner = testkit::key(650);
    let cheat = testkit::key(651);
    let finder = testkit::key(652);
    let lazy = testkit::key(653);
    // A fresh network per draw until one cycle has both a caught cheat and a caught lazy
    // verifier (both are slashed in it, so a later cycle of the same network cannot).
    let mut found = None;
    for draw in 0..64u8 {
        let mut net = Net::new(&[&honest_miner, &cheat], &[&finder, &lazy]);
        run_cycle(
            &mut net,
            &[
                (&honest_miner, Work::Honest),
                (&cheat, Work::FakeCheckpoints),
            ],
            &[(&finder, Mode::Honest), (&lazy, Mode::Lazy)],
            120 + draw,
        )
        .await;
        let r = net.c().record(net.cycle()).unwrap();
        let v = &r.verification;
        let has = |o: ClaimOutcome| v.verdicts.iter().any(|x| x.outcome == o);
        if has(ClaimOutcome::CaughtCheat) && has(ClaimOutcome::Wrong) {
            found = Some((net, r));
            break;
        }
    }
    let (net, record) = found.expect("a cycle with a caught cheat and a caught lazy verifier");
    let source = Published {
        c: net.c(),
        forged: None,
    };
    let replayed = audit_claims(&source, &record).await.unwrap();
    assert!(replayed >= 2, "{replayed}");
    let code = |e: miner::audit::AuditError| {
        assert!(
            matches!(e, miner::audit::AuditError::ClaimDoesNotHold { .. }),
            "{e}"
        );
    };

    // The honest finder's claim relabelled wrong, with its real evidence relabelled too: the
    // replay shows the claim was true.
    let caught = record
        .verification
        .verdicts
        .iter()
        .position(|x| x.outcome == ClaimOutcome::CaughtCheat)
        .unwrap();
    let mut relabelled = record.clone();
    relabelled.verification.verdicts[caught].outcome = ClaimOutcome::Wrong;
    let x = &relabelled.verification.verdicts[caught];
    let mut evidence = net
        .c()
        .claim_evidence(net.cycle(), &x.miner, x.interval)
        .unwrap();
    evidence.outcome = ClaimOutcome::Wrong;
    let forging = Published {
        c: net.c(),
        forged: Some(evidence.clone()),
    };
    code(audit_claims(&forging, &relabelled).await.unwrap_err());
    // Made-up evidence: another start state cannot pass the transcript's paths.
    evidence.opening.start_state = evidence.opening.start_state.replace('a', "b");
    let forging = Published {
        c: net.c(),
        forged: Some(evidence),
    };
    assert!(audit_claims(&forging, &relabelled).await.is_err());

    // An assignment the secret does not draw that way, and a secret that is not the
    // preimage of the cycle's revealed secret.
    let mut swapped = record.clone();
    let other = if swapped.verification.assignments[0].verifier == finder.public_key(&secp()) {
        lazy.public_key(&secp())
    } else {
        finder.public_key(&secp())
    };
    swapped.verification.assignments[0].verifier = other;
    let e = audit_claims(&source, &swapped).await.unwrap_err();
    assert!(
        matches!(e, miner::audit::AuditError::VerificationDraw { .. }),
        "{e}"
    );
    let mut resecreted = record.clone();
    resecreted.verification.secret = Some(primitives::Hash256([7; 32]));
    let e = audit_claims(&source, &resecreted).await.unwrap_err();
    assert!(
        matches!(e, miner::audit::AuditError::VerificationDraw { .. }),
        "{e}"
    );

    // A coordinator that served the honest finder another start state got a claim about that
    // state; publishing the real opening as its evidence shows the claim signs other inputs.
    let mut served_other = record.clone();
    let x = served_other.verification.verdicts[caught].clone();
    let mut evidence = net
        .c()
        .claim_evidence(net.cycle(), &x.miner, x.interval)
        .unwrap();
    let mut subject = evidence.claim.subject();
    subject.start_leaf = primitives::Hash256([3; 32]);
    let other_claim = Claim::new_signed(&secp(), &finder, &subject, primitives::Hash256([4; 32]));
    evidence.claim = other_claim.clone();
    evidence.outcome = ClaimOutcome::Wrong;
    served_other.verification.verdicts[caught].outcome = ClaimOutcome::Wrong;
    for c in served_other.verification.claims.iter_mut() {
        if c.miner == x.miner && c.interval == x.interval {
            *c = other_claim.clone();
        }
    }
    let forging = Published {
        c: net.c(),
        forged: Some(evidence),
    };
    let e = audit_claims(&forging, &served_other).await.unwrap_err();
    assert!(e.to_string().contains("signs other inputs"), "{e}");

    // A flag dropped (or made up): the record's secret and challenges say otherwise.
    let mut reflagged = record.clone();
    reflagged.verification.assignments[0].flagged ^= true;
    let e = audit_claims(&source, &reflagged).await.unwrap_err();
    assert!(
        matches!(e, miner::audit::AuditError::VerificationDraw { .. }),
        "{e}"
    );

    // The verifiers listed out of key order (which would steer the draw).
    let mut reordered = record.clone();
    reordered.verification.verifiers.reverse();
    let e = audit_claims(&source, &reordered).await.unwrap_err();
    assert!(
        matches!(e, miner::audit::AuditError::VerificationDraw { .. }),
        "{e}"
    );

    // The honest finder's bond slashed under the miner role, as if it had failed a check.
    let mut as_miner = record.clone();
    as_miner.slashes.push(coordinator::api::SlashRecord {
        miner: finder.public_key(&secp()),
        bond: net.found(&finder).0,
        txid: bitcoin::Txid::all_zeros(),
        role: SlashRole::Miner,
        finder: None,
    });
    code(audit_claims(&source, &as_miner).await.unwrap_err());

    // A slash of the honest finder's bond that no wrong claim backs.
    let mut slashed = record.clone();
    slashed.slashes.push(coordinator::api::SlashRecord {
        miner: finder.public_key(&secp()),
        bond: net.found(&finder).0,
        txid: bitcoin::Txid::all_zeros(),
        role: SlashRole::Verifier,
        finder: None,
    });
    code(audit_claims(&source, &slashed).await.unwrap_err());

    // The cheat's finder share paid to the lazy verifier, which earned nothing.
    let mut misdirected = record.clone();
    let share = misdirected
        .slashes
        .iter_mut()
        .find(|s| s.finder.is_some())
        .expect("the cheat's slash pays its finder");
    share.finder = Some(coordinator::api::Finder {
        verifier: lazy.public_key(&secp()),
        payout_address: payout(&lazy),
    });
    code(audit_claims(&source, &misdirected).await.unwrap_err());
}

/// A verifier that enrols and never claims holds a slot for nothing and keeps the cycle waiting
/// to its verification deadline: the next cycle refuses it (by key and by bond), and it may
/// enrol again the cycle after.
#[tokio::test]
async fn a_verifier_that_claims_nothing_sits_out_the_next_cycle() {
    let miner = testkit::key(660);
    let absent = testkit::key(661);
    let mut net = Net::new(&[&miner], &[&absent]);
    run_cycle(
        &mut net,
        &[(&miner, Work::Honest)],
        &[(&absent, Mode::Absent)],
        3,
    )
    .await;
    let record = net.c().record(net.cycle()).unwrap();
    assert!(
        record
            .verification
            .assignments
            .iter()
            .any(|x| x.verifier == absent.public_key(&secp())),
        "it held assignments"
    );
    assert!(record.verification.claims.is_empty());
    assert!(
        record.submissions[0].verification.passed(),
        "the coordinator replayed it all"
    );
    net.next_cycle();
    net.register(&miner);
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, 4);
    let e = net.enrol(&absent).unwrap_err();
    assert_eq!(e.code(), "verifier_no_show", "{e}");
    // Another key with the same bond is refused too.
    let (bond, found) = net.found(&absent);
    let other = testkit::key(662);
    let request = EnrolRequest::new_signed(&secp(), &other, net.cycle(), payout(&other), bond);
    let e = net
        .c()
        .enrol_verifier(net.now, [0; 32], request, found)
        .unwrap_err();
    assert_eq!(e.code(), "verifier_no_show", "{e}");
    // Having sat out a cycle it may enrol again.
    net.next_cycle();
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, 5);
    net.enrol(&absent).unwrap();
}

/// A coordinator that crashes during Verification comes back with the same secret,
/// assignments and claims (all persisted with the cycle state): claims made before and after
/// the restart are judged as if nothing happened.
#[tokio::test]
async fn a_restart_during_verification_keeps_the_secret_assignments_and_claims() {
    let miners = [testkit::key(670), testkit::key(671)];
    let verifier = testkit::key(672);
    let mut net = Net::new(&[&miners[0], &miners[1]], &[&verifier]);
    for key in &miners {
        net.register(key);
    }
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, 1);
    net.enrol(&verifier).unwrap();
    let records: BTreeMap<PublicKey, proof::RunRecord> = miners
        .iter()
        .map(|k| {
            (
                k.public_key(&secp()),
                train_and_submit(&net, k, Work::Honest),
            )
        })
        .collect();
    net.step_to(a.submission_deadline_ms + 1, 2);
    for key in &miners {
        answer(&net, key, &records[&key.public_key(&secp())]);
    }
    net.step_to(net.now + 1, 3);
    let before = net.c().state().unwrap().verification;
    assert!(!before.assignments.is_empty());
    assert!(before.secret().is_some());

    net.restart();
    assert_eq!(
        net.c().state().unwrap().verification,
        before,
        "kept across a restart"
    );
    let claimed = verify(&net, &verifier, Mode::Honest, &records);
    assert_eq!(claimed, before.assignments.len());
    net.restart();
    net.step_to(net.now + 1, 4);
    let record = net.c().record(net.cycle()).unwrap();
    let v = &record.verification;
    assert_eq!(v.verdicts.len(), claimed);
    assert!(v
        .verdicts
        .iter()
        .all(|x| matches!(x.outcome, ClaimOutcome::Trusted | ClaimOutcome::Confirmed)));
    assert!(record.submissions.iter().all(|s| s.verification.passed()));
}

/// The subject of a claim on `miner`'s `interval` of the live cycle as its assignment would
/// give it: the miner's task, its opened start state and the interval's end step (zeros where
/// the interval is not opened, for claims that must be refused anyway).
fn subject_of(net: &Net, miner: &PublicKey, interval: u64) -> coordinator::api::ClaimSubject {
    let cycle = net.cycle();
    let task = net.c().task(net.now, cycle, miner).unwrap();
    let assignment = net
        .c()
        .state()
        .unwrap()
        .verification
        .assignments
        .iter()
        .find(|x| &x.miner == miner && x.interval == interval)
        .map(|x| x.verifier);
    let served = assignment.and_then(|verifier| {
        net.c()
            .assignments(net.now, [0; 32], cycle, &verifier)
            .ok()?
            .assignments
            .into_iter()
            .find(|a| &a.miner == miner && a.interval == interval)
    });
    match served {
        Some(a) => a.subject(task.replay.hash()).unwrap(),
        None => coordinator::api::ClaimSubject {
            cycle,
            miner: *miner,
            interval,
            task_hash: task.replay.hash(),
            start_leaf: primitives::Hash256([0; 32]),
            to_step: 0,
        },
    }
}

/// A miner that commits to an absurd step count (here `u64::MAX`) and answers its challenge
/// with openings at those far intervals gets them assigned like any other; serving them,
/// judging the claims and measuring the replay work must not build a list of every checkpoint
/// step (about 10^18 entries), and the miner simply fails its check.
#[tokio::test]
async fn a_huge_claimed_step_count_is_judged_without_allocating_its_checkpoints() {
    let miner = testkit::key(680);
    let verifier = testkit::key(681);
    let mut net = Net::new(&[&miner], &[&verifier]);
    net.register(&miner);
    let a = net.c().state().unwrap().announcement().clone();
    net.step_to(a.registration_deadline_ms + 1, 1);
    net.enrol(&verifier).unwrap();
    let honest = train_and_submit_commitment(&net, &miner, u64::MAX);
    net.step_to(a.submission_deadline_ms + 1, 2);
    let miner_key = miner.public_key(&secp());
    let challenge = net.c().challenge(net.now, net.cycle(), &miner_key).unwrap();
    // Openings at the far intervals asked for, each with a real (if misplaced) state.
    let start = honest.states()[0].clone();
    let response = proof::ChallengeResponse {
        first_path: Vec::new(),
        openings: challenge
            .intervals
            .iter()
            .map(|&interval| proof::Opening {
                interval,
                start: start.clone(),
                start_path: Vec::new(),
                end_leaf: primitives::Hash256([9; 32]),
                end_path: Vec::new(),
            })
            .collect(),
    };
    let bytes = response.encode();
    let sig = CompactSignature::sign(
        &secp(),
        &miner,
        &coordinator::api::answer_signing_hash(
            net.cycle(),
            &miner_key,
            &primitives::sha256(&bytes),
        ),
    );
    net.c()
        .answer(net.now, [1; 32], net.cycle(), miner_key, sig, &bytes)
        .unwrap();
    net.step_to(net.now + 1, 3);
    let served = net
        .c()
        .assignments(net.now, [0; 32], net.cycle(), &verifier.public_key(&secp()))
        .unwrap();
    assert!(
        !served.assignments.is_empty(),
        "the far intervals are assigned"
    );
    for x in &served.assignments {
        let task_hash = net
            .c()
            .task(net.now, net.cycle(), &miner_key)
            .unwrap()
            .replay
            .hash();
        let claim = Claim::new_signed(
            &secp(),
            &verifier,
            &x.subject(task_hash).unwrap(),
            x.shown_leaf,
        );
        net.c().claim(net.now, [6; 32], claim).unwrap();
    }
    net.step_to(net.now + 1, 4);
    let record = net.c().record(net.cycle()).unwrap();
    assert!(
        matches!(
            record.submissions[0].verification,
            proof::Verdict::Failed {
                failure: proof::Failure::StepsOverBudget { .. }
            }
        ),
        "{:?}",
        record.submissions[0].verification
    );
    // Judged without replaying: the opening does not hold for the task.
    assert!(record
        .verification
        .verdicts
        .iter()
        .all(|x| matches!(x.outcome, ClaimOutcome::Void | ClaimOutcome::Trusted)));
}

/// Trains `key`'s task honestly for [`STEPS`] but submits a commitment claiming `steps`.
fn train_and_submit_commitment(net: &Net, key: &SecretKey, steps: u64) -> proof::RunRecord {
    let secp = secp();
    let miner = key.public_key(&secp);
    let cycle = net.cycle();
    let task = net.c().task(net.now, cycle, &miner).unwrap();
    let weights = net.c().weights(cycle).unwrap();
    let shard = net.c().shard(net.now, cycle, &miner).unwrap();
    let model = model_from_safetensors(task.model.clone(), &weights).unwrap();
    let shard = Samples::from_safetensors(&shard, task.feature_count, task.class_count).unwrap();
    let train = proof::evidence::train_part(&shard, task.replay.train_samples).unwrap();
    let run = proof::run_task(
        &task.replay,
        &model,
        &train,
        1,
        |s| s.step < STEPS,
        |s| s.len() - 1,
    )
    .unwrap();
    let update = run.update.to_safetensors().unwrap();
    let commitment = proof::Commitment {
        steps,
        ..run.commitment(&task.replay, primitives::sha256(&update))
    };
    let sig = CompactSignature::sign(&secp, key, &commitment.signing_hash(cycle, &miner));
    let claim = coordinator::SubmissionClaim {
        task_hash: commitment.task_hash,
        transcript_root: commitment.transcript_root,
        steps: commitment.steps,
    };
    net.c()
        .submit(
            paced_submission_time(net),
            [1; 32],
            cycle,
            miner,
            sig,
            claim,
            &update,
        )
        .unwrap();
    run.record
}
