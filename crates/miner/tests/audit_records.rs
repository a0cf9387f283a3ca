//! The auditor refuses a cycle record that anything was changed in, each with its own reason,
//! and accepts the honest one.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::BlockHash;
use consensus::lottery;
use coordinator::api::{
    Announcement, CertificateHex, CompactSignature, CycleRecord, PhaseName, ScoredSubmission,
    SignedAnnouncement,
};
use miner::audit::{check_record, AuditError};
use primitives::Hash256;
use testkit::{key, TestChain};

const SECRET: [u8; 32] = [7; 32];

/// An honest record of `miners` submissions; the first scores zero (its update made things
/// worse), the others above zero.
fn honest_record(chain: &TestChain, miners: u32) -> CycleRecord {
    let secp = &chain.secp;
    let announcement = Announcement {
        cycle: 4,
        chain_id: chain.params.chain_id,
        parent: BlockHash::from_byte_array([3; 32]),
        height: 5,
        model_hash: Hash256([4; 32]),
        opened_at_ms: 1_000,
        registration_deadline_ms: 2_000,
        submission_deadline_ms: 5_000,
        challenge_deadline_ms: 6_000,
        block_window_ms: 3_000,
        commitment: lottery::commitment(&SECRET),
        held_out_commitment: Hash256([9; 32]),
        prev_record_hash: Hash256::ZERO,
        coordinator: chain.coordinator.public_key(secp),
        job: Hash256::ZERO,
    };
    let mut submissions: Vec<ScoredSubmission> = (0..miners)
        .map(|i| {
            let params_trained = 100 + u64::from(i);
            let loss_reduction = (i64::from(i) - 1) * 1_000 + 7;
            ScoredSubmission {
                miner: key(i).public_key(secp),
                payout_address: String::new(),
                segment: "layer0".into(),
                update_hash: Hash256([i as u8; 32]),
                commitment: proof::Commitment {
                    task_hash: Hash256([0xa0; 32]),
                    update_hash: Hash256([i as u8; 32]),
                    transcript_root: Hash256([0xb0 + i as u8; 32]),
                    steps: 64,
                },
                received_at_ms: 4_000,
                params_trained,
                loss_reduction,
                score: consensus::score::score(params_trained, loss_reduction),
                verification: proof::Verdict::Verified {
                    intervals: vec![1, 3],
                    replayed_steps: 32,
                },
                checkpoint_interval: 16,
            }
        })
        .collect();
    submissions.sort_by_key(|s| s.miner.serialize());
    let commitments: Vec<_> = submissions
        .iter()
        .map(|s| (s.miner, s.commitment))
        .collect();
    let commitments_digest = proof::commitments_digest(&commitments);
    let contributions: Vec<_> = submissions.iter().map(|s| s.contribution()).collect();
    let root = lottery::contributions_root(&contributions);
    let seed = lottery::lottery_seed(&SECRET, &announcement.parent, &root);
    let entries: Vec<_> = submissions.iter().map(|s| s.entry()).collect();
    let draws = (miners - 1).min(coordinator::cycle::DRAW_ATTEMPTS_MAX);
    let draw_order = lottery::draw_order(&seed, &entries, draws - 1);
    let certificate = chain.sign_certificate(chain.certificate_body(
        announcement.height,
        announcement.parent,
        0,
        draw_order[0],
    ));
    CycleRecord {
        announcement: SignedAnnouncement {
            signature: CompactSignature::sign(
                secp,
                &chain.coordinator,
                &announcement.signing_hash(),
            ),
            announcement,
        },
        phase: PhaseName::BlockWindow,
        registered: u64::from(miners),
        submitted: u64::from(miners),
        revealed_secret: Some(Hash256(SECRET)),
        commitments_digest: Some(commitments_digest),
        global_loss_units: Some(2_000_000),
        submissions,
        contributions_root: Some(root),
        lottery_seed: Some(seed),
        draw_order,
        block_certificates: vec![CertificateHex(certificate)],
        outcome: None,
        next_model_hash: None,
        merged_model_hash: None,
        held_out: None,
        record_hash: None,
        next_quality: None,
        slashes: Vec::new(),
        admission: None,
        verification: Default::default(),
    }
}

fn miner_of(record: &CycleRecord, index: usize) -> PublicKey {
    record.submissions[index].miner
}

#[test]
fn honest_record_passes_and_recomputes_the_published_draw() {
    let chain = TestChain::new();
    let record = honest_record(&chain, 4);
    let lottery = check_record(&record, &chain.params).unwrap().unwrap();
    assert_eq!(lottery.draw_order, record.draw_order);
    assert_eq!(lottery.draw_order.len(), 3, "the zero score is not drawn");
}

#[test]
fn more_eligible_miners_than_draw_attempts_is_still_an_honest_record() {
    let chain = TestChain::new();
    let record = honest_record(&chain, 40);
    assert_eq!(record.draw_order.len(), 32);
    assert!(check_record(&record, &chain.params).is_ok());
}

#[test]
fn every_tampering_is_refused_with_its_reason() {
    let chain = TestChain::new();
    let honest = honest_record(&chain, 4);
    let cycle = honest.announcement.announcement.cycle;
    type Edit = Box<dyn Fn(&mut CycleRecord)>;
    type Expected = fn(&AuditError) -> bool;
    let cases: Vec<(&str, Edit, Expected)> = vec![
        (
            "a score raised above what its numbers give",
            Box::new(|r| r.submissions[1].score += 1),
            |e| matches!(e, AuditError::ScoreMismatch { .. }),
        ),
        (
            "measured numbers changed, score kept consistent",
            Box::new(|r| {
                let s = &mut r.submissions[1];
                s.loss_reduction += 1;
                s.score = consensus::score::score(s.params_trained, s.loss_reduction);
            }),
            |e| matches!(e, AuditError::RootMismatch { .. }),
        ),
        (
            "a submission hidden from the record",
            Box::new(|r| {
                r.submissions.remove(0);
            }),
            |e| matches!(e, AuditError::CommitmentsDigestMismatch { .. }),
        ),
        (
            "a transcript root changed after the challenges were fixed",
            Box::new(|r| r.submissions[2].commitment.transcript_root = Hash256([1; 32])),
            |e| matches!(e, AuditError::CommitmentsDigestMismatch { .. }),
        ),
        (
            "a failed replay check that still scores",
            Box::new(|r| {
                r.submissions[1].verification = proof::Verdict::Failed {
                    failure: proof::Failure::UpdateNotFinalState,
                }
            }),
            |e| matches!(e, AuditError::ScoreMismatch { .. }),
        ),
        (
            "a different seed",
            Box::new(|r| r.lottery_seed = Some(Hash256([9; 32]))),
            |e| matches!(e, AuditError::SeedMismatch { .. }),
        ),
        (
            "draw order swapped",
            Box::new(|r| r.draw_order.swap(0, 1)),
            |e| matches!(e, AuditError::DrawMismatch { .. }),
        ),
        (
            "a secret that does not open the commitment",
            Box::new(|r| r.revealed_secret = Some(Hash256([8; 32]))),
            |e| matches!(e, AuditError::SecretDoesNotOpen { .. }),
        ),
        (
            "lottery published without the secret",
            Box::new(|r| r.revealed_secret = None),
            |e| matches!(e, AuditError::MissingSecret { .. }),
        ),
        (
            "announcement edited after signing",
            Box::new(|r| r.announcement.announcement.height += 1),
            |e| matches!(e, AuditError::AnnouncementSignature { .. }),
        ),
        (
            "block-signing certificate for someone the draw did not pick",
            Box::new(|r| {
                let chain = TestChain::new();
                let a = &r.announcement.announcement;
                let not_drawn = miner_of(r, 0);
                r.block_certificates = vec![CertificateHex(
                    chain
                        .sign_certificate(chain.certificate_body(a.height, a.parent, 0, not_drawn)),
                )];
            }),
            |e| matches!(e, AuditError::RecordCertificateWinner { .. }),
        ),
    ];
    for (name, edit, expected) in cases {
        let mut record = honest.clone();
        edit(&mut record);
        let error = check_record(&record, &chain.params).expect_err(name);
        assert!(expected(&error), "{name}: {error}");
        assert!(
            error.to_string().contains(&format!("cycle {cycle}")),
            "{name}: {error}"
        );
    }

    // A record announced by a key outside the chain parameters.
    let mut other = TestChain::new();
    other.coordinator = key(77);
    let foreign = honest_record(&other, 4);
    assert!(matches!(
        check_record(&foreign, &chain.params),
        Err(AuditError::UnknownCoordinator { .. })
    ));
}

/// An admission draw over the bonds of keys `keys` (values differ), `slots` slots.
fn admission(chain: &TestChain, keys: &[u32], slots: u32) -> coordinator::api::AdmissionDraw {
    let mut pending: Vec<coordinator::api::PendingBond> = keys
        .iter()
        .map(|&i| coordinator::api::PendingBond {
            miner: key(i).public_key(&chain.secp),
            bond: coordinator::api::BondOutpoint(bitcoin::OutPoint::new(
                bitcoin::Txid::from_byte_array([i as u8 + 1; 32]),
                0,
            )),
            bond_sats: 1_000_000 * u64::from(i + 1),
        })
        .collect();
    pending.sort_by_key(|p| p.miner.serialize());
    let mut draw = coordinator::api::AdmissionDraw {
        slots,
        pending,
        admitted: Vec::new(),
    };
    let seed = lottery::admission_seed(&SECRET, 4);
    draw.admitted = lottery::admitted(&seed, &draw.entries(), slots);
    draw
}

/// A record whose slots were drawn: the honest draw passes; a coordinator that admits others
/// than the draw picked (steering admission), or scores a miner the draw did not admit, is
/// caught.
#[test]
fn a_steered_admission_draw_is_refused() {
    let chain = TestChain::new();
    // The 4 submitters (keys 0..4) and 4 others held; 8 slots admit them all.
    let mut record = honest_record(&chain, 4);
    record.admission = Some(admission(&chain, &[0, 1, 2, 3, 10, 11, 12, 13], 8));
    assert!(check_record(&record, &chain.params).is_ok());

    let mut steered = record.clone();
    steered.admission.as_mut().unwrap().admitted[0] = key(20).public_key(&chain.secp);
    assert!(matches!(
        check_record(&steered, &chain.params),
        Err(AuditError::AdmissionMismatch { cycle: 4 })
    ));
    let mut reordered = record.clone();
    reordered.admission.as_mut().unwrap().admitted.reverse();
    assert!(matches!(
        check_record(&reordered, &chain.params),
        Err(AuditError::AdmissionMismatch { cycle: 4 })
    ));

    // Key 0 submitted but was never in the draw.
    let mut outsider = record.clone();
    outsider.admission = Some(admission(&chain, &[1, 2, 3, 10, 11, 12, 13], 8));
    assert!(matches!(
        check_record(&outsider, &chain.params),
        Err(AuditError::SubmissionNotAdmitted { cycle: 4, miner }) if miner == key(0).public_key(&chain.secp)
    ));
}

/// The auditor reads each weighed bond back from the chain: a coordinator that inflated a
/// bond's value (or weighed an output that is not the miner's bond) is caught while the bond
/// is unspent; a spent one (slashed, reclaimed) cannot be read back and is counted as such.
#[test]
fn an_inflated_bond_in_the_admission_draw_is_caught_against_the_chain() {
    use miner::audit::admission_bond_matches;
    let chain = TestChain::new();
    let terms = consensus::bond::BondTerms::from_params(&chain.params);
    let draw = admission(&chain, &[0, 1], 1);
    let pending = draw.pending[0];
    let script = consensus::bond::bond_script_pubkey(&terms, &pending.miner).to_hex_string();
    let coin = |sats: u64, script: &str| {
        serde_json::json!({
            "value": bitcoin::Amount::from_sat(sats).to_btc(),
            "scriptPubKey": {"hex": script},
            "confirmations": 3,
        })
    };
    assert_eq!(
        admission_bond_matches(&pending, &coin(pending.bond_sats, &script), &terms),
        Some(Ok(()))
    );
    let inflated = admission_bond_matches(&pending, &coin(pending.bond_sats / 10, &script), &terms);
    assert!(
        matches!(inflated, Some(Err(ref why)) if why.contains("sat")),
        "{inflated:?}"
    );
    let other = consensus::bond::bond_script_pubkey(&terms, &key(99).public_key(&chain.secp))
        .to_hex_string();
    let foreign = admission_bond_matches(&pending, &coin(pending.bond_sats, &other), &terms);
    assert!(
        matches!(foreign, Some(Err(ref why)) if why.contains("another script")),
        "{foreign:?}"
    );
    assert_eq!(
        admission_bond_matches(&pending, &serde_json::Value::Null, &terms),
        None
    );
}
