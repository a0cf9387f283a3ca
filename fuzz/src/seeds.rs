//! The seed corpus, built from real encodings: the testkit's valid signed chain, a signed
//! spend, real safetensors and the coordinator's signed messages. `trainchain-fuzz seeds`
//! writes it to `fuzz/corpus/<target>/`; a seed named `valid-*` must be accepted by its target
//! (checked by the tests and every smoke run, so the corpus cannot go stale unnoticed).

use bitcoin::consensus::encode::{serialize, serialize_hex};
use bitcoin::secp256k1::SecretKey;
use bitcoin::{Amount, CompressedPublicKey, Network, OutPoint, TxOut};
use coordinator::api::{
    Announcement, ApiError, CertificateHex, ChallengeInfo, CompactSignature, CycleOutcome,
    CycleRecord, CycleStatus, Hardware, Health, MinerCertificates, PhaseName, Receipt,
    RegisterRequest, RegisterResponse, SignedAnnouncement, TaskInfo, TrainHints,
};
use learning::{NamedTensor, Samples, SegmentUpdate};
use node::p2p::wire::{SyncRequest, SyncResponse};
use primitives::{BlockUndo, Coin, Hash256};
use serde::Serialize;
use std::path::Path;
use storage::{BlockStatus, EquivocationEvidence, IndexEntry};
use testkit::{key, TestChain};

/// One seed file: `fuzz/corpus/<target>/<name>`.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
struct Seeds(Vec<Seed>);

impl Seeds {
    fn add(&mut self, target: &'static str, name: &str, bytes: Vec<u8>) {
        self.0.push(Seed {
            target,
            name: name.to_owned(),
            bytes,
        });
    }
    /// A seed behind a one-byte selector.
    fn add_selected(&mut self, target: &'static str, name: &str, selector: u8, bytes: &[u8]) {
        self.add(target, name, [&[selector][..], bytes].concat());
    }
    fn add_json<T: Serialize>(&mut self, target: &'static str, name: &str, selector: u8, v: &T) {
        let text = serde_json::to_vec(v).expect("seed serialises");
        self.add_selected(target, name, selector, &text);
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u32).to_le_bytes()[..], payload].concat()
}

/// Deterministic values for tensors: a seed file must not change between runs.
fn values(n: usize, salt: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32 * 7 + salt) % 17) as f32 / 8.0 - 1.0)
        .collect()
}

fn rpc_request(id: u32, method: &str, params: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": method,
        "params": params,
    }))
    .expect("request serialises")
}

/// Every seed of every target.
pub fn generate() -> Vec<Seed> {
    let mut s = Seeds::default();
    let chain = TestChain::new();
    let secp = &chain.secp;
    let miner = key(1);
    let genesis = chain.genesis().clone();
    let blocks = chain.empty_chain(3, &miner);
    let (outpoint, prev_out) = testkit::coinbase_output(&blocks[0]);
    let spend = chain.spend(
        &[(outpoint, prev_out.clone())],
        vec![
            TxOut {
                value: Amount::from_sat(prev_out.value.to_sat() / 2),
                script_pubkey: testkit::p2wpkh(secp, &key(2)),
            },
            TxOut {
                value: Amount::from_sat(prev_out.value.to_sat() / 2 - 1_000),
                script_pubkey: testkit::p2wpkh(secp, &miner),
            },
        ],
        &miner,
    );
    let with_spend = chain.block(
        blocks[2].block_hash(),
        4,
        &miner,
        vec![spend.clone()],
        Amount::from_sat(1_000),
    );
    let mut legacy = spend.clone();
    for input in &mut legacy.input {
        input.witness.clear();
        input.script_sig = bitcoin::ScriptBuf::from_bytes(vec![0x51]);
    }
    let all_blocks: Vec<_> = std::iter::once(genesis.clone())
        .chain(blocks.iter().cloned())
        .chain([with_spend.clone()])
        .collect();

    // Blocks, headers, certificates.
    s.add("block", "valid-genesis", genesis.encode());
    s.add("block", "valid-empty-1", blocks[0].encode());
    s.add("block", "valid-with-spend", with_spend.encode());
    let mut trailing = blocks[1].encode();
    trailing.push(0);
    s.add("block", "invalid-trailing-byte", trailing);
    for (i, block) in all_blocks.iter().enumerate().take(2) {
        s.add("header", &format!("valid-{i}"), block.header.encode());
        let cert = &block.header.certificate;
        s.add("certificate", &format!("valid-{i}"), cert.encode());
    }
    s.add("header", "valid-with-spend", with_spend.header.encode());

    // Transactions.
    s.add(
        "transaction",
        "valid-coinbase",
        serialize(&blocks[0].txdata[0]),
    );
    s.add("transaction", "valid-p2wpkh-spend", serialize(&spend));
    s.add("transaction", "valid-legacy", serialize(&legacy));

    // Store records.
    let coin = Coin {
        output: prev_out.clone(),
        height: 1,
        is_coinbase: true,
    };
    s.add_selected("store_records", "valid-coin", 0, &coin.encode());
    let undo = BlockUndo {
        spent: vec![
            (outpoint, coin.clone()),
            (
                OutPoint::new(spend.compute_txid(), 1),
                Coin {
                    output: spend.output[1].clone(),
                    height: 4,
                    is_coinbase: false,
                },
            ),
        ],
    };
    s.add_selected("store_records", "valid-undo", 1, &undo.encode());
    s.add_selected(
        "store_records",
        "valid-undo-empty",
        1,
        &BlockUndo::default().encode(),
    );
    let entry = IndexEntry::for_header(&with_spend.header, BlockStatus::Connected, 9);
    s.add_selected("store_records", "valid-index-entry", 2, &entry.encode());
    let parent = blocks[0].block_hash();
    let twin = |miner: &SecretKey| {
        chain.sign_certificate(chain.certificate_body(2, parent, 0, miner.public_key(secp)))
    };
    let evidence = EquivocationEvidence::new(twin(&key(2)), twin(&key(3))).expect("a conflict");
    s.add_selected("store_records", "valid-evidence", 3, &evidence.encode());

    // Sync wire messages and frames.
    let hashes: Vec<_> = all_blocks.iter().map(|b| b.block_hash()).collect();
    let requests = [
        (
            "get-headers",
            SyncRequest::GetHeaders {
                locator: hashes.iter().rev().copied().collect(),
            },
        ),
        (
            "get-blocks",
            SyncRequest::GetBlocks {
                hashes: hashes[1..3].to_vec(),
            },
        ),
    ];
    for (name, request) in &requests {
        s.add("sync_request", &format!("valid-{name}"), request.encode());
        s.add_selected(
            "sync_codec",
            &format!("valid-request-{name}"),
            0,
            &frame(&request.encode()),
        );
    }
    let responses = [
        (
            "headers",
            SyncResponse::Headers(all_blocks.iter().map(|b| b.header.clone()).collect()),
        ),
        ("headers-empty", SyncResponse::Headers(vec![])),
        (
            "blocks",
            SyncResponse::Blocks(vec![blocks[0].clone(), with_spend.clone()]),
        ),
    ];
    for (name, response) in &responses {
        s.add("sync_response", &format!("valid-{name}"), response.encode());
        s.add_selected(
            "sync_codec",
            &format!("valid-response-{name}"),
            1,
            &frame(&response.encode()),
        );
    }

    // Gossip payloads.
    s.add_selected("gossip", "valid-block", 0, &with_spend.encode());
    s.add_selected("gossip", "valid-block-empty", 0, &blocks[1].encode());
    s.add_selected("gossip", "valid-tx", 1, &serialize(&spend));

    // Updates, shards, weights (real safetensors).
    for (selector, expected) in crate::targets::expected_segments().iter().enumerate() {
        let update = SegmentUpdate {
            segment: expected.segment.clone(),
            tensors: expected
                .tensors
                .iter()
                .enumerate()
                .map(|(i, (name, shape))| NamedTensor {
                    name: name.clone(),
                    shape: shape.clone(),
                    values: values(shape.iter().product(), i as u32),
                })
                .collect(),
        };
        let bytes = update.to_safetensors().expect("update encodes");
        let name = format!("valid-{}", expected.segment);
        s.add_selected("update", &name, selector as u8, &bytes);
    }
    for (feature_count, class_count, n) in [(3usize, 2usize, 4usize), (8, 16, 2), (1, 1, 0)] {
        let labels: Vec<u32> = (0..n).map(|i| (i % class_count) as u32).collect();
        let samples = Samples::new(values(n * feature_count, 3), labels, feature_count)
            .expect("consistent samples");
        let selector = (feature_count - 1) as u8 | (((class_count - 1) as u8) << 3);
        let bytes = samples.to_safetensors().expect("shard encodes");
        let name = format!("valid-{n}x{feature_count}-classes-{class_count}");
        s.add_selected("shard", &name, selector, &bytes);
    }
    for (selector, spec) in crate::targets::model_specs().into_iter().enumerate() {
        let model = learning::Model::new(spec, 7).expect("valid spec");
        let bytes = learning::model_to_safetensors(&model).expect("model encodes");
        s.add_selected(
            "weights",
            &format!("valid-{selector}"),
            selector as u8,
            &bytes,
        );
    }

    // Coordinator requests.
    let address = bitcoin::Address::p2wpkh(
        &CompressedPublicKey(miner.public_key(secp)),
        Network::Regtest,
    )
    .to_string();
    let hardware = Hardware {
        threads: 2,
        memory_bytes: 1 << 30,
    };
    let register = RegisterRequest::new_signed(secp, &miner, 7, address.clone(), hardware);
    s.add_json("coordinator_request", "valid-register", 0, &register);
    let update_hash = primitives::sha256(b"update");
    let submission_sig = CompactSignature::sign(secp, &miner, &update_hash);
    let headers = format!(
        "{}\n{}\n{}\n{}\n{}",
        register.miner,
        submission_sig,
        Hash256([9; 32]),
        Hash256([10; 32]),
        120
    );
    s.add_selected(
        "coordinator_request",
        "valid-headers",
        1,
        headers.as_bytes(),
    );
    s.add_selected("coordinator_request", "valid-query", 2, b"from=3&limit=10");
    let bond = coordinator::api::BondOutpoint(bitcoin::OutPoint::new(
        blocks[0].txdata[0].compute_txid(),
        0,
    ));
    let enrol = coordinator::api::EnrolRequest::new_signed(secp, &miner, 7, address.clone(), bond);
    s.add_json("coordinator_request", "valid-enrol", 3, &enrol);
    let claim_subject = coordinator::api::ClaimSubject {
        cycle: 7,
        miner: chain.coordinator.public_key(secp),
        interval: 3,
        task_hash: Hash256([20; 32]),
        start_leaf: Hash256([21; 32]),
        to_step: 64,
    };
    let claim =
        coordinator::api::Claim::new_signed(secp, &miner, &claim_subject, Hash256([11; 32]));
    s.add_json("coordinator_request", "valid-claim", 4, &claim);

    // Coordinator responses.
    let coordinator_key = &chain.coordinator;
    let coordinator = coordinator_key.public_key(secp);
    let announcement = Announcement {
        cycle: 7,
        chain_id: chain.params.chain_id,
        parent: blocks[0].block_hash(),
        height: 2,
        model_hash: Hash256([3; 32]),
        opened_at_ms: 1_000,
        registration_deadline_ms: 2_000,
        submission_deadline_ms: 3_000,
        challenge_deadline_ms: 3_500,
        block_window_ms: 4_000,
        commitment: Hash256([4; 32]),
        held_out_commitment: Hash256([13; 32]),
        prev_record_hash: Hash256([14; 32]),
        coordinator,
        job: Hash256([15; 32]),
    };
    let signed = SignedAnnouncement {
        signature: CompactSignature::sign(secp, coordinator_key, &announcement.signing_hash()),
        announcement,
    };
    let status = CycleStatus {
        announcement: signed.clone(),
        phase: PhaseName::Training,
        attempt: Some(0),
        registered: 3,
        submitted: 1,
        now_ms: 2_500,
    };
    s.add_json("coordinator_response", "valid-status", 0, &status);
    let registered = RegisterResponse {
        cycle: 7,
        miner: register.miner,
        registration_deadline_ms: 2_000,
        submission_deadline_ms: 3_000,
    };
    s.add_json("coordinator_response", "valid-register", 1, &registered);
    let expected = &crate::targets::expected_segments()[0];
    let task = TaskInfo {
        cycle: 7,
        miner: register.miner,
        model: crate::targets::model_specs()[0].clone(),
        model_hash: Hash256([3; 32]),
        segment: expected.clone(),
        segment_params: 16,
        shard_index: 1,
        shard_count: 4,
        shard_samples: 100,
        feature_count: 3,
        class_count: 2,
        submission_deadline_ms: 3_000,
        hints: TrainHints {
            lr: 0.05,
            momentum: 0.9,
            batch: 32,
        },
        replay: proof::ReplayTask {
            cycle: 7,
            miner: register.miner,
            model_hash: Hash256([3; 32]),
            segment: expected.segment.clone(),
            shard_hash: Hash256([11; 32]),
            train_samples: 90,
            lr: 0.05,
            momentum: 0.9,
            batch: 32,
            steps_max: 200,
            checkpoint_interval: 10,
            batch_seed: 12,
        },
        update_bytes_max: expected.limit_bytes(),
    };
    s.add_json("coordinator_response", "valid-task", 2, &task);
    let mut receipt = Receipt {
        cycle: 7,
        miner: register.miner,
        update_hash,
        transcript_root: Hash256([10; 32]),
        steps: 120,
        received_at_ms: 2_600,
        coordinator,
        signature: CompactSignature([0; 64]),
    };
    receipt.signature = CompactSignature::sign(secp, coordinator_key, &receipt.signing_hash());
    s.add_json("coordinator_response", "valid-receipt", 3, &receipt);
    let certificates = MinerCertificates {
        cycle: 7,
        miner: register.miner,
        contribution: None,
        block_signing: vec![CertificateHex(blocks[1].header.certificate.clone())],
    };
    s.add_json(
        "coordinator_response",
        "valid-certificates",
        4,
        &certificates,
    );
    let record = CycleRecord {
        announcement: signed.clone(),
        phase: PhaseName::Closed,
        registered: 3,
        submitted: 1,
        revealed_secret: Some(Hash256([5; 32])),
        commitments_digest: Some(Hash256([12; 32])),
        global_loss_units: Some(-12),
        // Scored submissions carry proof commitments and verdicts: left to the mutator.
        submissions: vec![],
        contributions_root: Some(Hash256([6; 32])),
        lottery_seed: Some(Hash256([7; 32])),
        draw_order: vec![register.miner],
        block_certificates: vec![CertificateHex(blocks[1].header.certificate.clone())],
        outcome: Some(CycleOutcome::Produced {
            height: 2,
            hash: blocks[1].block_hash(),
            attempt: 0,
            miner: register.miner,
        }),
        next_model_hash: Some(Hash256([8; 32])),
        merged_model_hash: None,
        held_out: Some(coordinator::api::HeldOutReveal {
            salt: Hash256([15; 32]),
            batch_hash: Hash256([16; 32]),
            samples: 54,
            pass: 0,
        }),
        record_hash: Some(Hash256([17; 32])),
        next_quality: Some(coordinator::api::QualityReport {
            held_out_loss_units: 1_500_000,
            test_accuracy_ppm: 612_000,
        }),
        slashes: Vec::new(),
        admission: None,
        verification: Default::default(),
    };
    s.add_json("coordinator_response", "valid-record", 5, &record);
    s.add_json("coordinator_response", "valid-announcement", 6, &signed);
    let api_error = ApiError {
        error: "late".into(),
        message: "the submission deadline has passed".into(),
    };
    s.add_json("coordinator_response", "valid-error", 7, &api_error);
    let health = Health {
        status: "ok".into(),
        cycle: 7,
        phase: PhaseName::Registration,
    };
    s.add_json("coordinator_response", "valid-health", 8, &health);
    let challenge = ChallengeInfo {
        cycle: 7,
        miner: register.miner,
        revealed_secret: Hash256([5; 32]),
        commitments_digest: Hash256([12; 32]),
        challenges: 2,
        intervals: vec![3, 7, 11],
        challenge_deadline_ms: 3_500,
    };
    s.add_json("coordinator_response", "valid-challenge", 9, &challenge);
    let start = learning::TrainState {
        step: 10,
        weights: vec![vec![0.25; 6], vec![-0.5; 2]],
        velocity: vec![vec![0.0; 6], vec![0.0; 2]],
    };
    let assignment = coordinator::api::ReplayAssignment {
        cycle: 7,
        verifier: coordinator,
        miner: register.miner,
        interval: 1,
        from_step: 10,
        to_step: 20,
        start_state: hex::encode(start.encode()),
        shown_leaf: Hash256([13; 32]),
    };
    let assignments = coordinator::api::ReplayAssignments {
        cycle: 7,
        deadline_ms: 4_000,
        assignments: vec![assignment],
    };
    s.add_json(
        "coordinator_response",
        "valid-assignments",
        10,
        &assignments,
    );
    let evidence = coordinator::api::ClaimEvidence {
        claim: coordinator::api::Claim::new_signed(
            secp,
            coordinator_key,
            &assignments.assignments[0]
                .subject(task.replay.hash())
                .expect("the seed's start state decodes"),
            Hash256([14; 32]),
        ),
        outcome: coordinator::api::ClaimOutcome::Wrong,
        task: task.replay.clone(),
        commitment: proof::Commitment {
            task_hash: task.replay.hash(),
            update_hash: Hash256([15; 32]),
            transcript_root: Hash256([16; 32]),
            steps: 40,
        },
        opening: proof::OpenedInterval {
            interval: 1,
            start_state: hex::encode(start.encode()),
            start_path: vec![Hash256([17; 32])],
            end_leaf: Hash256([18; 32]),
            end_path: vec![Hash256([19; 32])],
        },
    };
    s.add_json(
        "coordinator_response",
        "valid-claim-evidence",
        11,
        &evidence,
    );

    // RPC requests, one per method, with the parameters a client would send.
    let genesis_hash = genesis.block_hash().to_string();
    let coinbase_txid = genesis.txdata[0].compute_txid().to_string();
    use serde_json::json;
    let calls = [
        ("getblockchaininfo", json!([])),
        ("getblockcount", json!([])),
        ("getbestblockhash", json!([])),
        ("getblockhash", json!([0])),
        ("getblockheader", json!([genesis_hash, false])),
        ("getblock", json!([genesis_hash, 2])),
        ("getrawtransaction", json!([coinbase_txid, true])),
        ("sendrawtransaction", json!([serialize_hex(&spend)])),
        ("gettxout", json!([coinbase_txid, 0])),
        ("getmempoolinfo", json!([])),
        ("getrawmempool", json!([true])),
        ("getpeerinfo", json!([])),
        ("getnetworkinfo", json!([])),
        ("listbanned", json!([])),
        ("setnetworkactive", json!([true])),
        ("addnode", json!(["/ip4/127.0.0.1/tcp/18444", "onetry"])),
        (
            "disconnectnode",
            json!(["12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"]),
        ),
        ("uptime", json!([])),
        ("getcertificate", json!([genesis_hash])),
        ("gettemplate", json!([address])),
        ("submitblock", json!([hex::encode(blocks[0].encode())])),
        ("getequivocations", json!([])),
        (
            "scantxoutset",
            json!([
                "start",
                [
                    format!("addr({address})"),
                    format!("raw({})", hex::encode(prev_out.script_pubkey.as_bytes()))
                ]
            ]),
        ),
    ];
    // Well-formed calls that this fixture's chain answers with an error (no such peer, the
    // genesis coinbase is not indexed, the spend's input is not in this chain).
    let answered_with_error = ["disconnectnode", "getrawtransaction", "sendrawtransaction"];
    for (id, (method, params)) in calls.into_iter().enumerate() {
        let kind = if answered_with_error.contains(&method) {
            "error"
        } else {
            "valid"
        };
        let name = format!("{kind}-{method}");
        s.add("rpc", &name, rpc_request(id as u32, method, params));
    }
    s.add(
        "rpc",
        "invalid-named-params",
        rpc_request(99, "getblockhash", json!({"height": 0})),
    );

    // Answers to challenges: an honest run's record opened at two challenges, and a
    // truncated one.
    {
        let spec = learning::ModelSpec::Mlp {
            input: 4,
            hidden: vec![3],
            classes: 2,
        };
        let model = learning::Model::new(spec, 1).unwrap();
        let mut record = proof::RunRecord::new(2);
        let mut state = learning::TrainState::initial(&model, &["layer0"], 0.9).unwrap();
        record.push(state.clone());
        for step in [2u64, 4, 5] {
            state.step = step;
            state.weights[0][0] += 0.25;
            record.push(state.clone());
        }
        for (name, intervals) in [("valid-last", vec![2u64]), ("valid-three", vec![0, 1, 2])] {
            s.add("proof_answer", name, record.respond(&intervals).encode());
        }
        let mut short = record.respond(&[2]).encode();
        short.truncate(short.len() - 5);
        s.add("proof_answer", "invalid-truncated", short);
    }

    // Chain parameters.
    s.add(
        "chain_params",
        "valid-testkit",
        chain.params.to_toml().into_bytes(),
    );
    s.0
}

/// Replaces `corpus/<target>/` for every target with the generated seeds.
pub fn write(corpus: &Path) -> std::io::Result<usize> {
    let seeds = generate();
    for target in crate::TARGETS {
        let dir = corpus.join(target.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
    }
    for seed in &seeds {
        std::fs::write(corpus.join(seed.target).join(&seed.name), &seed.bytes)?;
    }
    Ok(seeds.len())
}
