//! The targets. Where one function covers several message kinds, the first input byte selects
//! the kind (`selector`), so one corpus and one AFL instance cover them all.

use crate::Outcome;
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::secp256k1::{PublicKey, Secp256k1};
use bitcoin::Transaction;
use coordinator::api::{
    ApiError, ChallengeInfo, CompactSignature, CycleRange, CycleRecord, CycleStatus, Health,
    MinerCertificates, Receipt, RegisterRequest, RegisterResponse, SignedAnnouncement, TaskInfo,
};
use learning::{ExpectedSegment, ModelSpec, Samples};
use node::p2p::wire::{self, SyncCodec, SyncRequest, SyncResponse};
use primitives::{Block, BlockHeader, BlockUndo, Certificate, ChainParams, Coin, Hash256};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::str::FromStr;
use std::sync::OnceLock;
use storage::{EquivocationEvidence, IndexEntry};

/// The testkit chain's parameters: what decoded blocks are checked against.
pub fn params() -> &'static ChainParams {
    static PARAMS: OnceLock<ChainParams> = OnceLock::new();
    PARAMS.get_or_init(|| testkit::TestChain::new().params)
}

/// First byte as a selector, the rest as the payload (an empty input selects 0 with no payload).
fn split(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, &[]),
    }
}

pub fn block(data: &[u8]) -> Outcome {
    let decoded = Block::decode(data);
    if let Ok(block) = &decoded {
        assert_eq!(
            block.encode(),
            data,
            "Block::decode accepted a non-canonical encoding"
        );
        assert_eq!(block.encoded_len(), data.len());
        let _ = block.compute_merkle_root();
    }
    Outcome::of(&decoded)
}

pub fn header(data: &[u8]) -> Outcome {
    let decoded = BlockHeader::decode(data);
    if let Ok(header) = &decoded {
        assert_eq!(header.encode(), data, "header decode is not canonical");
        assert_eq!(data.len(), primitives::header::HEADER_BYTES);
        let _ = header.block_hash();
    }
    Outcome::of(&decoded)
}

pub fn certificate(data: &[u8]) -> Outcome {
    let decoded = Certificate::decode(data);
    if let Ok(cert) = &decoded {
        assert_eq!(cert.encode(), data, "certificate decode is not canonical");
        let _ = (cert.id(), consensus::equivocation::certificate_slot(cert));
    }
    Outcome::of(&decoded)
}

/// Context-free transaction checks the node runs on anything it decodes from a peer.
fn check_decoded_tx(tx: &Transaction) {
    let _ = (
        tx.compute_txid(),
        tx.compute_wtxid(),
        tx.weight(),
        tx.vsize(),
    );
    let _ = consensus::tx::check_transaction(tx, node::mempool::DEFAULT_TX_BYTES_MAX);
}

pub fn transaction(data: &[u8]) -> Outcome {
    let decoded = deserialize::<Transaction>(data);
    if let Ok(tx) = &decoded {
        assert_eq!(serialize(tx), data, "transaction decode is not canonical");
        check_decoded_tx(tx);
    }
    Outcome::of(&decoded)
}

pub fn store_records(data: &[u8]) -> Outcome {
    let (selector, bytes) = split(data);
    match selector % 4 {
        0 => {
            let decoded = Coin::decode(bytes);
            if let Ok(coin) = &decoded {
                assert_eq!(coin.encode(), bytes, "coin decode is not canonical");
            }
            Outcome::of(&decoded)
        }
        1 => {
            let decoded = BlockUndo::decode(bytes);
            if let Ok(undo) = &decoded {
                assert_eq!(undo.encode(), bytes, "undo decode is not canonical");
            }
            Outcome::of(&decoded)
        }
        2 => {
            let decoded = IndexEntry::decode(bytes);
            if let Ok(entry) = &decoded {
                assert_eq!(entry.encode(), bytes, "index entry decode is not canonical");
            }
            Outcome::of(&decoded)
        }
        _ => {
            let decoded = EquivocationEvidence::decode(bytes);
            if let Ok(evidence) = &decoded {
                assert_eq!(evidence.encode(), bytes, "evidence decode is not canonical");
                let (first, second) = evidence.certificates();
                assert_ne!(first, second);
            }
            Outcome::of(&decoded)
        }
    }
}

pub fn sync_request(data: &[u8]) -> Outcome {
    let decoded = SyncRequest::decode(data);
    if let Ok(request) = &decoded {
        assert_eq!(
            request.encode(),
            data,
            "sync request decode is not canonical"
        );
        assert!(data.len() <= wire::REQUEST_BYTES_MAX);
    }
    Outcome::of(&decoded)
}

pub fn sync_response(data: &[u8]) -> Outcome {
    let decoded = SyncResponse::decode(data);
    if let Ok(response) = &decoded {
        assert_eq!(
            response.encode(),
            data,
            "sync response decode is not canonical"
        );
    }
    Outcome::of(&decoded)
}

/// Selector bit 0: read a request (as a responder) or a response (as a requester) from `data`
/// as the stream's bytes, through the libp2p codec itself.
pub fn sync_codec(data: &[u8]) -> Outcome {
    use libp2p::request_response::Codec;
    let (selector, stream) = split(data);
    let protocol = libp2p::StreamProtocol::new(wire::SYNC_PROTOCOL);
    let mut io = futures::io::Cursor::new(stream);
    let mut codec = SyncCodec;
    // What a frame holding `payload` looks like on the stream.
    let framed = |payload: Vec<u8>| {
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    };
    if selector & 1 == 0 {
        let read = futures::executor::block_on(codec.read_request(&protocol, &mut io));
        match read {
            Ok(Ok(request)) => {
                let frame = framed(request.encode());
                assert!(
                    stream.starts_with(&frame),
                    "request frame does not round-trip"
                );
                Outcome::Accepted
            }
            Ok(Err(_)) | Err(_) => Outcome::Rejected,
        }
    } else {
        let read = futures::executor::block_on(codec.read_response(&protocol, &mut io));
        match read {
            Ok(response) => {
                let frame = framed(response.encode());
                assert!(
                    stream.starts_with(&frame),
                    "response frame does not round-trip"
                );
                Outcome::Accepted
            }
            Err(_) => Outcome::Rejected,
        }
    }
}

/// Selector bit 0: block topic or transaction topic. Mirrors `on_gossip_block` and
/// `on_gossip_tx` up to the chain state: size limit, decode, context-free checks.
pub fn gossip(data: &[u8]) -> Outcome {
    let (selector, payload) = split(data);
    if selector & 1 == 0 {
        if payload.len() > node::p2p::BLOCK_GOSSIP_BYTES_MAX {
            return Outcome::Rejected;
        }
        let outcome = block(payload);
        if let Ok(block) = Block::decode(payload) {
            let _ = consensus::block::check_block(&block, params());
        }
        outcome
    } else {
        if payload.len() > node::p2p::TX_GOSSIP_BYTES_MAX {
            return Outcome::Rejected;
        }
        transaction(payload)
    }
}

/// The segments updates are checked against: an MLP layer and a CNN convolution.
pub fn expected_segments() -> &'static [ExpectedSegment] {
    static SEGMENTS: OnceLock<Vec<ExpectedSegment>> = OnceLock::new();
    SEGMENTS.get_or_init(|| {
        vec![
            ExpectedSegment {
                segment: "layer0".into(),
                tensors: vec![
                    ("layer0.weight".into(), vec![4, 3]),
                    ("layer0.bias".into(), vec![4]),
                ],
            },
            ExpectedSegment {
                segment: "conv0".into(),
                tensors: vec![
                    ("conv0.weight".into(), vec![2, 1, 3, 3]),
                    ("conv0.bias".into(), vec![2]),
                ],
            },
        ]
    })
}

/// Selector picks the expected segment.
pub fn update(data: &[u8]) -> Outcome {
    let (selector, bytes) = split(data);
    let segments = expected_segments();
    let expected = &segments[usize::from(selector) % segments.len()];
    let decoded = learning::decode_update(bytes, expected);
    if let Ok(update) = &decoded {
        assert_eq!(update.segment, expected.segment);
        assert_eq!(update.tensors.len(), expected.tensors.len());
        for (tensor, (name, shape)) in update.tensors.iter().zip(&expected.tensors) {
            assert_eq!((&tensor.name, &tensor.shape), (name, shape));
            assert_eq!(tensor.values.len(), shape.iter().product::<usize>());
            assert!(tensor.values.iter().all(|v| v.is_finite()));
        }
        let again = update
            .to_safetensors()
            .expect("a decoded update re-encodes");
        assert_eq!(
            learning::decode_update(&again, expected).as_ref(),
            Ok(update),
            "update does not round-trip"
        );
    }
    Outcome::of(&decoded)
}

/// Selector: low 3 bits feature count - 1, next 4 bits class count - 1.
pub fn shard(data: &[u8]) -> Outcome {
    let (selector, bytes) = split(data);
    let feature_count = 1 + usize::from(selector & 7);
    let class_count = 1 + usize::from((selector >> 3) & 15);
    let decoded = Samples::from_safetensors(bytes, feature_count, class_count);
    if let Ok(samples) = &decoded {
        assert_eq!(samples.feature_count(), feature_count);
        assert_eq!(samples.features().len(), samples.len() * feature_count);
        assert!(samples.labels().iter().all(|&l| (l as usize) < class_count));
        assert!(samples.features().iter().all(|v| v.is_finite()));
        let again = samples
            .to_safetensors()
            .expect("a decoded shard re-encodes");
        let back = Samples::from_safetensors(&again, feature_count, class_count)
            .expect("a re-encoded shard decodes");
        assert_eq!(&back, samples, "shard does not round-trip");
    }
    Outcome::of(&decoded)
}

/// The model specs weights are read for: a small MLP and a small CNN.
pub fn model_specs() -> [ModelSpec; 2] {
    [
        ModelSpec::Mlp {
            input: 3,
            hidden: vec![4],
            classes: 2,
        },
        ModelSpec::Cnn {
            height: 4,
            width: 4,
            channels: [1, 2],
            kernel: 3,
            classes: 2,
        },
    ]
}

/// Selector picks the spec.
pub fn weights(data: &[u8]) -> Outcome {
    let (selector, bytes) = split(data);
    let specs = model_specs();
    let spec = specs[usize::from(selector) % specs.len()].clone();
    let decoded = learning::model_from_safetensors(spec.clone(), bytes);
    if let Ok(model) = &decoded {
        let again = learning::model_to_safetensors(model).expect("a decoded model re-encodes");
        let back = learning::model_from_safetensors(spec, &again).expect("re-encoded decodes");
        // Bit for bit: the decoder accepts NaN weights (the model hash covers them), and
        // NaN != NaN.
        let bits = |m: &learning::Model| -> Vec<(String, Vec<usize>, Vec<u32>)> {
            m.params()
                .iter()
                .map(|p| {
                    let values = p.values.iter().map(|v| v.to_bits()).collect();
                    (p.name.clone(), p.shape.clone(), values)
                })
                .collect()
        };
        assert_eq!(bits(&back), bits(model), "weights do not round-trip");
        assert_eq!(learning::model_hash(&back), learning::model_hash(model));
    }
    Outcome::of(&decoded)
}

/// Parses JSON as `T`; an accepted value must serialise and parse back to itself.
fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
) -> Result<T, serde_json::Error> {
    let value: T = serde_json::from_slice(bytes)?;
    let text = serde_json::to_vec(&value).expect("a parsed value serialises");
    let back: T = serde_json::from_slice(&text).expect("a serialised value parses");
    assert_eq!(back, value, "JSON does not round-trip");
    Ok(value)
}

/// Selector: 0 the `POST /v1/register` body; 1 the submission headers, one per line in this
/// order, parsed as `server::submit` parses them (miner key, signature, task hash, transcript
/// root, step count); 2 the `/v1/cycles` query string; 3 a verifier's enrolment body; 4 a
/// verifier's claim body.
pub fn coordinator_request(data: &[u8]) -> Outcome {
    let (selector, bytes) = split(data);
    match selector % 5 {
        3 => {
            let decoded = json_round_trip::<coordinator::api::EnrolRequest>(bytes);
            if let Ok(request) = &decoded {
                let _ = request.verify(&Secp256k1::verification_only());
            }
            Outcome::of(&decoded)
        }
        4 => {
            let decoded = json_round_trip::<coordinator::api::Claim>(bytes);
            if let Ok(claim) = &decoded {
                let _ = claim.verify(&Secp256k1::verification_only());
            }
            Outcome::of(&decoded)
        }
        0 => {
            let decoded = json_round_trip::<RegisterRequest>(bytes);
            if let Ok(request) = &decoded {
                let _ = request.verify(&Secp256k1::verification_only());
            }
            Outcome::of(&decoded)
        }
        1 => {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Outcome::Rejected;
            };
            let mut lines = text.split('\n');
            let mut next = || lines.next().unwrap_or("");
            let miner = PublicKey::from_str(next());
            let signature = CompactSignature::from_str(next());
            let task_hash = Hash256::from_str(next());
            let transcript_root = Hash256::from_str(next());
            let steps = next().parse::<u64>();
            match (miner, signature, task_hash, transcript_root, steps) {
                (Ok(miner), Ok(signature), Ok(task_hash), Ok(root), Ok(_)) => {
                    assert_eq!(PublicKey::from_str(&miner.to_string()), Ok(miner));
                    assert_eq!(
                        CompactSignature::from_str(&signature.to_string()),
                        Ok(signature)
                    );
                    for hash in [task_hash, root] {
                        assert_eq!(Hash256::from_str(&hash.to_string()), Ok(hash));
                    }
                    let digest = primitives::sha256(bytes);
                    let _ = signature.verify(&Secp256k1::verification_only(), &miner, &digest);
                    Outcome::Accepted
                }
                _ => Outcome::Rejected,
            }
        }
        _ => {
            let Ok(query) = std::str::from_utf8(bytes) else {
                return Outcome::Rejected;
            };
            let Ok(uri) = format!("/v1/cycles?{query}").parse::<axum::http::Uri>() else {
                return Outcome::Rejected;
            };
            let parsed = axum::extract::Query::<CycleRange>::try_from_uri(&uri);
            Outcome::of(&parsed)
        }
    }
}

/// Selector picks the body type; each is parsed as the miner's client parses it.
pub fn coordinator_response(data: &[u8]) -> Outcome {
    let (selector, bytes) = split(data);
    let secp = Secp256k1::verification_only();
    match selector % 12 {
        0 => {
            let decoded = json_round_trip::<CycleStatus>(bytes);
            if let Ok(status) = &decoded {
                let _ = status.announcement.verify(&secp);
            }
            Outcome::of(&decoded)
        }
        1 => Outcome::of(&json_round_trip::<RegisterResponse>(bytes)),
        // f32 hints: serde_json may read a long decimal to a neighbouring float, so only check
        // that what it prints it reads back.
        2 => {
            let decoded = serde_json::from_slice::<TaskInfo>(bytes);
            if let Ok(task) = &decoded {
                let text = serde_json::to_vec(task).expect("a parsed task serialises");
                let _ = json_round_trip::<TaskInfo>(&text).expect("a printed task parses");
                let _ = task.model.param_shapes();
                let _ = task.segment.limit_bytes();
            }
            Outcome::of(&decoded)
        }
        3 => {
            let decoded = json_round_trip::<Receipt>(bytes);
            if let Ok(receipt) = &decoded {
                let _ = receipt.verify(&secp);
            }
            Outcome::of(&decoded)
        }
        4 => Outcome::of(&json_round_trip::<MinerCertificates>(bytes)),
        5 => {
            let decoded = json_round_trip::<CycleRecord>(bytes);
            if let Ok(record) = &decoded {
                let _ = record.announcement.verify(&secp);
                for submission in &record.submissions {
                    let _ = (submission.contribution(), submission.entry());
                }
            }
            Outcome::of(&decoded)
        }
        6 => {
            let decoded = json_round_trip::<SignedAnnouncement>(bytes);
            if let Ok(announcement) = &decoded {
                let _ = (
                    announcement.verify(&secp),
                    announcement.announcement.shard_seed(),
                );
            }
            Outcome::of(&decoded)
        }
        7 => Outcome::of(&json_round_trip::<ApiError>(bytes)),
        8 => Outcome::of(&json_round_trip::<Health>(bytes)),
        9 => Outcome::of(&json_round_trip::<ChallengeInfo>(bytes)),
        // A verifier's assignments: each start state is decoded as the verifier decodes it
        // (bounded by `STATE_BYTES_MAX` before any allocation of its size).
        10 => {
            let decoded = json_round_trip::<coordinator::api::ReplayAssignments>(bytes);
            if let Ok(assignments) = &decoded {
                for a in &assignments.assignments {
                    if let Ok(state) = hex::decode(&a.start_state) {
                        let _ = learning::TrainState::decode(&state);
                    }
                }
            }
            Outcome::of(&decoded)
        }
        // Claim evidence, as the audit reads it (f32 in its task: print-then-parse, as for a
        // task).
        _ => {
            let decoded = serde_json::from_slice::<coordinator::api::ClaimEvidence>(bytes);
            if let Ok(evidence) = &decoded {
                let text = serde_json::to_vec(evidence).expect("parsed evidence serialises");
                let _ = serde_json::from_slice::<coordinator::api::ClaimEvidence>(&text)
                    .expect("printed evidence parses");
                let _ = evidence.claim.verify(&secp);
                if let Ok(state) = hex::decode(&evidence.opening.start_state) {
                    let _ = learning::TrainState::decode(&state);
                }
            }
            Outcome::of(&decoded)
        }
    }
}

/// The node's RPC method table over a chain store in a temporary folder, opened once per
/// process (under AFL, once per forked child). The folder is removed at once: the open file
/// stays usable and nothing is left behind however the process ends.
struct RpcFixture {
    module: jsonrpsee::RpcModule<node::NodeHandle>,
}

fn rpc_fixture() -> &'static RpcFixture {
    static FIXTURE: OnceLock<RpcFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder for the fuzz chain");
        let chain = node::ChainState::open(&dir.path().join("chain.redb"), params().clone())
            .expect("fuzz chain store opens");
        drop(dir);
        let mempool = node::mempool::Mempool::new(node::mempool::MempoolLimits::default());
        // The receiver is dropped: network commands from addnode and friends are discarded.
        let (handle, _) = node::NodeHandle::new(chain, mempool);
        RpcFixture {
            module: node::rpc::methods::module(handle),
        }
    })
}

/// A JSON-RPC request as the server hands it to the method table.
pub fn rpc(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let fixture = rpc_fixture();
    let Ok((response, _)) = futures::executor::block_on(fixture.module.raw_json_request(text, 1))
    else {
        return Outcome::Rejected;
    };
    let response: serde_json::Value =
        serde_json::from_str(response.get()).expect("an RPC response is JSON");
    if response.get("result").is_some() {
        Outcome::Accepted
    } else {
        assert!(
            response.get("error").is_some(),
            "response has neither result nor error"
        );
        Outcome::Rejected
    }
}

pub fn chain_params(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Rejected;
    };
    let decoded = ChainParams::from_toml(text);
    if let Ok(params) = &decoded {
        let again = ChainParams::from_toml(&params.to_toml()).expect("printed params parse");
        assert_eq!(&again, params, "chain parameters do not round-trip");
    }
    Outcome::of(&decoded)
}

/// A miner's answer to its challenge, as the coordinator reads it (bounded like the server:
/// q + 1 openings), and the training states inside it: canonical, so it re-encodes byte for
/// byte; every opened state re-encodes and hashes.
pub fn proof_answer(data: &[u8]) -> Outcome {
    let openings = proof::CHALLENGES_DEFAULT as usize + 1;
    let decoded = proof::ChallengeResponse::decode(data, 1 << 20, openings);
    if let Ok(answer) = &decoded {
        assert_eq!(answer.encode(), data, "answer decode is not canonical");
        for opening in &answer.openings {
            // Compared as bytes: a state may hold NaN (the replay refuses it as not fitting),
            // which is not equal to itself as a value.
            let state = opening.start.encode();
            let again = learning::TrainState::decode(&state).expect("an encoded state decodes");
            assert_eq!(again.encode(), state, "a state does not re-encode");
            assert_eq!(again.hash(), opening.start.hash());
        }
    }
    Outcome::of(&decoded)
}
