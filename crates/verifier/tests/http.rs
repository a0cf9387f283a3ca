//! The verifier client against a running coordinator over HTTP on loopback, in real time: it
//! enrols during Training, fetches its assignments when the challenge closes, replays them
//! and its claims land in the record, all trusted; a second enrolment with the same bond under
//! another key is refused over the wire with its code.

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Address, CompressedPublicKey, Network, OutPoint, TxOut, Txid};
use consensus::bond::{bond_script_pubkey, BondTerms};
use coordinator::api::{
    BondOutpoint, ClaimOutcome, EnrolRequest, Hardware, PhaseName, RegisterRequest,
};
use coordinator::limits::ServerLimits;
use coordinator::server::start_with;
use coordinator::{Coordinator, CoordinatorClient, CycleTiming, MemoryChain, WorkSetup};
use learning::{model_from_safetensors, Samples};
use primitives::Coin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestChain;
use verifier::{Verifier, VerifierConfig};

fn payout(key: &SecretKey) -> String {
    let secp = Secp256k1::new();
    Address::p2wpkh(
        &CompressedPublicKey(key.public_key(&secp)),
        Network::Regtest,
    )
    .to_string()
}

fn outpoint(n: u8) -> BondOutpoint {
    BondOutpoint(OutPoint::new(Txid::from_byte_array([n; 32]), 0))
}

async fn wait_phase(client: &CoordinatorClient, phase: PhaseName) -> u64 {
    let started = Instant::now();
    loop {
        if let Ok(s) = client.status().await {
            if s.phase == phase {
                return s.announcement.announcement.cycle;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no {phase:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_enrols_replays_and_claims_over_http() {
    let secp = Secp256k1::new();
    let dir = tempfile::tempdir().unwrap();
    let test_chain = TestChain::new();
    let terms = BondTerms::from_params(&test_chain.params);
    let miner = testkit::key(700);
    let verifier_key = testkit::key(701);
    let other = testkit::key(702);
    let chain = Arc::new(MemoryChain::new(test_chain.params.genesis.block_hash()));
    // The verifier's bond is large enough for the audit floor (`verifiers::audit_ppm`).
    let rich = bitcoin::Amount::from_sat(test_chain.params.subsidy.initial_sats * 10);
    for (n, key, value) in [(1, &miner, terms.bond_min), (2, &verifier_key, rich)] {
        chain.add_coin(
            outpoint(n).0,
            Coin {
                output: TxOut {
                    value,
                    script_pubkey: bond_script_pubkey(&terms, &key.public_key(&secp)),
                },
                height: 0,
                is_coinbase: false,
            },
        );
    }
    let coordinator = Arc::new(
        Coordinator::open(
            dir.path(),
            test_chain.coordinator,
            &test_chain.params,
            WorkSetup::digits_mlp(vec![16]),
            CycleTiming {
                registration_ms: 1_500,
                training_ms: 3_000,
                challenge_ms: 3_000,
                block_window_ms: 1_000,
            },
        )
        .unwrap()
        .require_bonds(true),
    );
    let running = start_with(
        coordinator,
        chain.clone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        ServerLimits::default(),
    )
    .await
    .unwrap();
    let url = format!("http://{}", running.address);
    let client = CoordinatorClient::new(&url).unwrap();

    let cycle = wait_phase(&client, PhaseName::Registration).await;
    client
        .register(&RegisterRequest::new_signed_bonded(
            &secp,
            &miner,
            cycle,
            payout(&miner),
            Hardware {
                threads: 1,
                memory_bytes: 1 << 30,
            },
            Some(outpoint(1)),
        ))
        .await
        .unwrap();
    let verifier = Verifier::new(VerifierConfig {
        coordinator_url: url.clone(),
        key: verifier_key,
        bond: outpoint(2),
        payout_address: payout(&verifier_key),
        threads: 1,
        lazy: false,
        cycles_max: Some(1),
        report_path: None,
    })
    .unwrap();
    let verifying = tokio::spawn(async move { verifier.run().await });

    // The miner trains 128 steps (8 intervals) and submits.
    assert_eq!(wait_phase(&client, PhaseName::Training).await, cycle);
    let me = miner.public_key(&secp);
    let task = client.task(cycle, &me).await.unwrap();
    let weights = client.weights(cycle).await.unwrap();
    let shard = client.shard(cycle, &me).await.unwrap();
    let model = model_from_safetensors(task.model.clone(), &weights).unwrap();
    let samples = Samples::from_safetensors(&shard, task.feature_count, task.class_count).unwrap();
    let train = proof::evidence::train_part(&samples, task.replay.train_samples).unwrap();
    let run = proof::run_task(
        &task.replay,
        &model,
        &train,
        1,
        |s| s.step < 128,
        |s| s.len() - 1,
    )
    .unwrap();
    let update = run.update.to_safetensors().unwrap();
    let commitment = run.commitment(&task.replay, primitives::sha256(&update));
    client
        .submit(&secp, &miner, cycle, commitment, update)
        .await
        .unwrap();
    // Another key cannot enrol with the verifier's bond, whatever it signs.
    let stolen = EnrolRequest::new_signed(&secp, &other, cycle, payout(&other), outpoint(2));
    let started = Instant::now();
    let refusal = loop {
        // Until the verifier's own enrolment is in, the theft fails on the bond's script.
        let e = client.enrol_verifier(&stolen).await.unwrap_err();
        if e.code() == Some("bond_in_use") || started.elapsed() > Duration::from_secs(2) {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refusal.code(), Some("bond_in_use"), "{refusal}");

    // Assignments are served only to a signed poll of their verifier: unsigned, or signed by
    // another key, the route refuses before reading any state.
    let route = format!(
        "{url}/v1/cycles/{cycle}/verifiers/{}/assignments",
        verifier_key.public_key(&secp)
    );
    let http = reqwest::Client::new();
    let unsigned = http.get(&route).send().await.unwrap();
    assert_eq!(unsigned.status(), 400);
    let forged = coordinator_api::api::CompactSignature::sign(
        &secp,
        &other,
        &coordinator_api::api::poll_signing_hash(cycle, &verifier_key.public_key(&secp)),
    );
    let refused = http
        .get(&route)
        .header(coordinator_api::api::SIGNATURE_HEADER, forged.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("bad_signature"));

    wait_phase(&client, PhaseName::Challenge).await;
    let challenge = client.challenge(cycle, &me).await.unwrap();
    client
        .answer(
            &secp,
            &miner,
            cycle,
            run.record.respond(&challenge.intervals).encode(),
        )
        .await
        .unwrap();

    let reports = tokio::time::timeout(Duration::from_secs(60), verifying)
        .await
        .expect("the verifier finishes its cycle")
        .unwrap()
        .unwrap();
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert!(report.enrolled, "{report:?}");
    assert!(report.assignments > 0, "{report:?}");
    assert_eq!(report.claims_sent, report.assignments, "{report:?}");
    assert!(report.replayed_steps > 0);

    let started = Instant::now();
    let record = loop {
        let record = client.record(cycle).await.unwrap();
        if record
            .submissions
            .iter()
            .all(|s| s.score > 0 || !s.verification.passed())
            && !record.verification.verdicts.is_empty()
        {
            break record;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not evaluated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = &record.verification;
    assert_eq!(v.claims.len() as u64, report.claims_sent);
    assert!(v
        .verdicts
        .iter()
        .all(|x| matches!(x.outcome, ClaimOutcome::Trusted | ClaimOutcome::Confirmed)));
    assert!(record.submissions[0].verification.passed());
    // The coordinator replayed every challenged interval but the trusted ones (16 steps
    // each): what the verifier saved it.
    let trusted = v.verdicts_with(ClaimOutcome::Trusted) as u64;
    assert_eq!(
        v.coordinator_replayed_steps + 16 * trusted,
        v.challenged_steps
    );
    running.abort();
}
