//! The HTTP server on 127.0.0.1 with real test miners (training their shard with
//! `learning::train`) for three short cycles, against an in-memory chain that accepts the
//! winner's block. Checks every certificate against consensus and the published records.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::BlockHash;
use common::*;
use consensus::lottery;
use coordinator::api::{CycleOutcome, PhaseName};
use coordinator::client::ClientError;
use coordinator::server::{start, ADDRESS_FILE};
use coordinator::{
    ChainSource, Coordinator, CoordinatorClient, CycleTiming, MemoryChain, WorkSetup,
};
use primitives::{sha256d, CertificateKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::TestChain;

const CYCLES: u64 = 3;
/// Bound on the whole run; three cycles take about 10 s.
const RUN_LIMIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(40);

async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// One honest miner: register, fetch the task, train, submit, collect certificates, and
/// "produce" the block (push it to the chain) when it holds the block-signing certificate.
async fn miner(client: CoordinatorClient, chain: Arc<MemoryChain>, key: SecretKey) -> u64 {
    let secp = Secp256k1::new();
    let me = key.public_key(&secp);
    let mut receipts = 0;
    for cycle in 0..CYCLES {
        poll("the cycle to open", || async {
            let s = client.status().await.ok()?;
            (s.announcement.announcement.cycle == cycle).then_some(())
        })
        .await;
        match client.register(&registration(&secp, &key, cycle)).await {
            Ok(_) => {}
            Err(e) if e.code() == Some("registration_closed") => continue,
            Err(e) => panic!("register: {e}"),
        }
        let task = poll("the task", || async {
            match client.task(cycle, &me).await {
                Ok(t) => Some(t),
                Err(ClientError::Api { status: 409, .. }) => None,
                Err(e) => panic!("task: {e}"),
            }
        })
        .await;
        // Paced: 16 in a miner's first cycle, then sized to its last verified run.
        let k = task.replay.checkpoint_interval;
        let weights = client.weights(cycle).await.unwrap();
        let shard = client.shard(cycle, &me).await.unwrap();
        let work = tokio::task::spawn_blocking(move || honest_work(&task, &weights, &shard, 40))
            .await
            .unwrap();
        let receipt = client
            .submit(&secp, &key, cycle, work.commitment, work.update)
            .await
            .unwrap();
        assert!(receipt.verify(&secp));
        assert_eq!(receipt.transcript_root, work.commitment.transcript_root);
        receipts += 1;
        // After the deadline: open the challenged intervals.
        let challenge = poll("the challenge", || async {
            match client.challenge(cycle, &me).await {
                Ok(c) => Some(c),
                Err(ClientError::Api { status: 409, .. }) => None,
                Err(e) => panic!("challenge: {e}"),
            }
        })
        .await;
        assert_eq!(*challenge.intervals.last().unwrap(), {
            let leaves = proof::leaf_count(work.commitment.steps, k);
            leaves - 2
        });
        let answer = work.record.respond(&challenge.intervals).encode();
        client.answer(&secp, &key, cycle, answer).await.unwrap();
        let certs = poll("the certificates", || async {
            client.certificates(cycle, &me).await.ok()
        })
        .await;
        assert!(certs.contribution.is_some());
        if let Some(cert) = certs.block_signing.first() {
            let hash = BlockHash::from_byte_array(sha256d(&cert.0.encode()).0);
            chain.push(hash, cert.0.clone());
        }
    }
    receipts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cycles_over_http_with_two_training_miners() {
    let dir = tempfile::tempdir().unwrap();
    let test_chain = TestChain::new();
    let genesis = test_chain.params.genesis.block_hash();
    let timing = CycleTiming {
        registration_ms: 1_000,
        training_ms: 1_500,
        challenge_ms: 1_500,
        block_window_ms: 3_000,
    };
    let coordinator = Arc::new(
        Coordinator::open(
            dir.path(),
            test_chain.coordinator,
            &test_chain.params,
            WorkSetup::digits_mlp(vec![16]),
            timing,
        )
        .unwrap(),
    );
    let chain = Arc::new(MemoryChain::new(genesis));
    let running = start(
        coordinator,
        chain.clone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
    )
    .await
    .unwrap();
    let url = std::fs::read_to_string(dir.path().join(ADDRESS_FILE)).unwrap();
    assert_eq!(url.trim(), format!("http://{}", running.address));
    let client = CoordinatorClient::new(url.trim()).unwrap();
    poll("the first cycle", || async { client.health().await.ok() }).await;

    let keys = [testkit::key(11), testkit::key(12)];
    let miners: Vec<_> = keys
        .iter()
        .map(|k| tokio::spawn(miner(client.clone(), chain.clone(), *k)))
        .collect();
    for m in miners {
        assert!(m.await.unwrap() >= 2, "each miner took part in most cycles");
    }
    let records = poll("three closed cycles", || async {
        let r = client.records(0, 10).await.ok()?;
        (r.iter().filter(|r| r.phase == PhaseName::Closed).count() as u64 >= CYCLES).then_some(r)
    })
    .await;

    let secp = Secp256k1::new();
    let mut parent = genesis;
    for (cycle, record) in records.iter().take(CYCLES as usize).enumerate() {
        let a = &record.announcement.announcement;
        assert!(record.announcement.verify(&secp));
        assert_eq!(
            (a.cycle, a.parent, a.height),
            (cycle as u64, parent, cycle as u32 + 1)
        );
        // Recompute the lottery from the published record alone.
        let secret = record.revealed_secret.unwrap();
        assert!(lottery::verify_reveal(&a.commitment, &secret.0));
        let contributions: Vec<_> = record
            .submissions
            .iter()
            .map(|s| s.contribution())
            .collect();
        let root = lottery::contributions_root(&contributions);
        let seed = lottery::lottery_seed(&secret.0, &a.parent, &root);
        assert_eq!(
            (record.contributions_root, record.lottery_seed),
            (Some(root), Some(seed))
        );
        let entries: Vec<_> = record.submissions.iter().map(|s| s.entry()).collect();
        let Some(CycleOutcome::Produced {
            height,
            hash,
            attempt,
            miner,
        }) = record.outcome.clone()
        else {
            panic!("cycle {cycle} closed with {:?}", record.outcome)
        };
        assert_eq!(Some(miner), lottery::winner(&seed, &entries, attempt));
        let cert = &record.block_certificates[attempt as usize].0;
        consensus::verify_block_certificate(cert, &test_chain.params).unwrap();
        assert_eq!(
            (cert.body.height, cert.body.prev_block_hash, cert.body.miner),
            (height, parent, miner)
        );
        assert_eq!(
            (
                cert.body.contributions_root,
                cert.body.lottery_seed,
                cert.body.model_hash
            ),
            (root, seed, a.model_hash)
        );
        let (chain_hash, chain_cert) = chain.block_at(height).await.unwrap().unwrap();
        assert_eq!((chain_hash, &chain_cert), (hash, cert));
        // Every scored miner holds a contribution certificate matching the record.
        for s in &record.submissions {
            let certs = client.certificates(cycle as u64, &s.miner).await.unwrap();
            let c = certs.contribution.unwrap().0;
            consensus::verify_certificate_signature(&c, &test_chain.params).unwrap();
            assert_eq!(c.body.kind, CertificateKind::Contribution);
            assert_eq!(
                (c.body.score, c.body.params_trained, c.body.loss_reduction),
                (s.score, s.params_trained, s.loss_reduction)
            );
        }
        assert!(record.submissions.iter().any(|s| s.score > 0));
        // Honest miners are never accused: every transcript replayed.
        for s in &record.submissions {
            assert!(s.verification.passed(), "{}: {:?}", s.miner, s.verification);
        }
        parent = hash;
    }
    // The global model improved and is downloadable with its card.
    let card = client.model_card().await.unwrap();
    let weights = client.model().await.unwrap();
    let model = learning::model_from_safetensors(card.spec.clone(), &weights).unwrap();
    assert_eq!(learning::model_hash_hex(&model), card.model_hash);
    assert!(card.lineage.len() >= 2, "{:?}", card.lineage);
    let first_loss = records[0].global_loss_units.unwrap();
    let last_loss = records[CYCLES as usize - 1].global_loss_units.unwrap();
    assert!(
        last_loss < first_loss,
        "held-out loss {first_loss} -> {last_loss}"
    );
    let metrics = client.metrics().await.unwrap();
    assert!(metrics.contains("trainchain_coordinator_cycles_produced_total"));
    // Errors are JSON with a code; oversized bodies are refused (413) before they are read.
    let raw = reqwest::Client::new();
    let r = raw
        .post(format!("{}/v1/register", url.trim()))
        .body(vec![b'x'; 20_000])
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let body: coordinator::api::ApiError = r.json().await.unwrap();
    assert_eq!(body.error, "body_too_large");
    let r = raw
        .get(format!("{}/v1/cycles/999/record", url.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: coordinator::api::ApiError = r.json().await.unwrap();
    assert_eq!(body.error, "unknown_cycle");
    running.abort();
}
