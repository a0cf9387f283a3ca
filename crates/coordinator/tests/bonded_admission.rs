//! Admission by bond: with bonds required, a registration must name a confirmed bond output
//! for its miner key that stays locked through the cycle and its dispute window; each bond backs
//! one registration per cycle (kept across a restart); and unbonded or forged traffic cannot
//! shut bonded miners out. The chain is a test double that serves the bond coins the test puts
//! there; other loopback source addresses (127.0.0.2, …) stand for other peers.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{All, PublicKey, Secp256k1, SecretKey};
use bitcoin::{Amount, BlockHash, OutPoint, TxOut, Txid};
use common::*;
use consensus::bond::{bond_script_pubkey, BondTerms};
use coordinator::api::{BondOutpoint, CompactSignature, PhaseName, RegisterRequest};
use coordinator::chain::ChainError;
use coordinator::limits::ServerLimits;
use coordinator::server::{start_with, Running};
use coordinator::{
    ChainSource, ChainView, Coordinator, CoordinatorClient, CycleTiming, MemoryChain,
    UnspentOutput, WorkSetup,
};
use primitives::{Certificate, Coin};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::TestChain;

/// The node as the coordinator sees it: blocks from a [`MemoryChain`], and the unspent
/// outputs (with the tip height each was read at) the test serves, exactly as given.
struct BondChain {
    blocks: MemoryChain,
    coins: Mutex<BTreeMap<OutPoint, UnspentOutput>>,
}

impl BondChain {
    fn new(genesis: BlockHash) -> Self {
        BondChain {
            blocks: MemoryChain::new(genesis),
            coins: Mutex::new(BTreeMap::new()),
        }
    }

    fn serve(&self, outpoint: BondOutpoint, coin: Coin, tip_height: u32) {
        self.coins
            .lock()
            .unwrap()
            .insert(outpoint.0, UnspentOutput { coin, tip_height });
    }
}

impl ChainSource for BondChain {
    async fn tip(&self) -> Result<(BlockHash, u32), ChainError> {
        self.blocks.tip().await
    }

    async fn block_at(&self, height: u32) -> Result<Option<(BlockHash, Certificate)>, ChainError> {
        self.blocks.block_at(height).await
    }

    async fn unspent_output(
        &self,
        outpoint: OutPoint,
    ) -> Result<Option<UnspentOutput>, ChainError> {
        Ok(self.coins.lock().unwrap().get(&outpoint).cloned())
    }
}

fn outpoint(n: u32) -> BondOutpoint {
    let mut txid = [0u8; 32];
    txid[..4].copy_from_slice(&n.to_le_bytes());
    txid[31] = 0xb0;
    BondOutpoint(OutPoint::new(Txid::from_byte_array(txid), n % 3))
}

/// A bond output for `miner` under the chain's terms, confirmed at `height`.
fn bond_coin(terms: &BondTerms, miner: &PublicKey, value: Amount, height: u32) -> Coin {
    Coin {
        output: TxOut {
            value,
            script_pubkey: bond_script_pubkey(terms, miner),
        },
        height,
        is_coinbase: false,
    }
}

fn bonded(
    secp: &Secp256k1<All>,
    key: &SecretKey,
    cycle: u64,
    bond: BondOutpoint,
) -> RegisterRequest {
    RegisterRequest::new_signed_bonded(secp, key, cycle, payout(secp, key), hardware(), Some(bond))
}

struct Server {
    _dir: tempfile::TempDir,
    running: Running,
    client: CoordinatorClient,
    chain: Arc<BondChain>,
    terms: BondTerms,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.running.abort();
    }
}

async fn server(limits: ServerLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let test_chain = TestChain::new();
    let timing = CycleTiming {
        registration_ms: 60_000,
        training_ms: 60_000,
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
        .unwrap()
        .require_bonds(true),
    );
    let chain = Arc::new(BondChain::new(test_chain.params.genesis.block_hash()));
    let running = start_with(
        coordinator,
        chain.clone(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        limits,
    )
    .await
    .unwrap();
    let client = CoordinatorClient::new(&format!("http://{}", running.address)).unwrap();
    let started = Instant::now();
    while !matches!(client.status().await, Ok(s) if s.phase == PhaseName::Registration) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no cycle opened"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Server {
        _dir: dir,
        running,
        client,
        chain,
        terms: BondTerms::from_params(&test_chain.params),
    }
}

/// POSTs a registration from `from`; returns (status, error code or "").
async fn register_from(
    http: &reqwest::Client,
    address: SocketAddr,
    request: &RegisterRequest,
) -> (u16, String) {
    let r = http
        .post(format!("http://{address}/v1/register"))
        .json(request)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let code = if status == 200 {
        String::new()
    } else {
        error_code(&text)
    };
    (status, code)
}

fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn error_code(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bond_refusal_has_its_own_code() {
    let s = server(ServerLimits::default()).await;
    let address = s.running.address;
    let http = from("127.0.0.2");
    let secp = Secp256k1::new();
    let t = s.terms;
    let key = |n: u32| testkit::key(300 + n);
    let pk = |n: u32| key(n).public_key(&secp);
    // The cycle's block is at height 1; the double's tip is genesis (0) unless said otherwise.
    s.chain
        .serve(outpoint(1), bond_coin(&t, &pk(1), t.bond_min, 0), 0);
    s.chain.serve(
        outpoint(2),
        bond_coin(&t, &pk(2), t.bond_min - Amount::ONE_SAT, 0),
        0,
    );
    s.chain
        .serve(outpoint(3), bond_coin(&t, &pk(99), t.bond_min, 0), 0);
    // Seen in a block above the tip it was read at: not confirmed.
    s.chain
        .serve(outpoint(4), bond_coin(&t, &pk(4), t.bond_min, 1), 0);
    let mut coinbase = bond_coin(&t, &pk(5), t.bond_min, 1);
    coinbase.is_coinbase = true;
    s.chain.serve(outpoint(5), coinbase, 1);
    // Confirmed at 10 with the 144-block lock: reclaimable at 154, read at tip 200.
    s.chain
        .serve(outpoint(6), bond_coin(&t, &pk(6), t.bond_min, 10), 200);

    let cases = [
        (registration(&secp, &key(0), 0), 403, "bond_required"),
        (
            bonded(&secp, &key(0), 0, outpoint(77)),
            404,
            "bond_not_found",
        ),
        (
            bonded(&secp, &key(2), 0, outpoint(2)),
            403,
            "bond_too_small",
        ),
        (
            bonded(&secp, &key(3), 0, outpoint(3)),
            403,
            "bond_wrong_key",
        ),
        (bonded(&secp, &key(4), 0, outpoint(4)), 403, "bond_immature"),
        (bonded(&secp, &key(5), 0, outpoint(5)), 403, "bond_coinbase"),
        (
            bonded(&secp, &key(6), 0, outpoint(6)),
            403,
            "bond_unlocks_too_soon",
        ),
    ];
    for (request, status, code) in &cases {
        assert_eq!(
            register_from(&http, address, request).await,
            (*status, (*code).to_owned()),
            "{code}"
        );
    }
    // The bond is covered by the signature: naming another one breaks it.
    let mut swapped = bonded(&secp, &key(1), 0, outpoint(1));
    swapped.bond = Some(outpoint(2));
    assert_eq!(
        register_from(&http, address, &swapped).await,
        (403, "bad_signature".into())
    );
    // A good bond, once; the same bond again under another key or with other details is in use.
    let good = bonded(&secp, &key(1), 0, outpoint(1));
    assert_eq!(
        register_from(&http, address, &good).await,
        (200, String::new())
    );
    let other_key = bonded(&secp, &key(7), 0, outpoint(1));
    assert_eq!(
        register_from(&http, address, &other_key).await,
        (409, "bond_in_use".into())
    );
    let other_payout = RegisterRequest::new_signed_bonded(
        &secp,
        &key(1),
        0,
        payout(&secp, &key(8)),
        hardware(),
        Some(outpoint(1)),
    );
    assert_eq!(
        register_from(&http, address, &other_payout).await,
        (409, "bond_in_use".into())
    );
    // The exact repeat (a restarted miner) gets the same answer and no second slot.
    assert_eq!(
        register_from(&http, address, &good).await,
        (200, String::new())
    );
    assert_eq!(s.client.status().await.unwrap().registered, 1);
    // The refusal the miner shows is the coordinator's message.
    let e = s
        .client
        .register(&registration(&secp, &key(0), 0))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bond_required") || e.contains("names no bond"),
        "{e}"
    );
}

/// The attack of issue 10, with bonds required: one address floods unbonded registrations
/// under fresh keys, forged signatures naming real bonds, fresh keys naming its bonds, and its
/// own bonded keys naming each other's bonds, while 3 honest bonded miners register from their
/// own addresses. Every honest miner gets a slot and the attacker, holding N bonds, at most N.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_cannot_shut_out_bonded_miners_and_n_bonds_take_at_most_n_slots() {
    const N: u32 = 5;
    let s = server(ServerLimits::default()).await;
    let address = s.running.address;
    let secp = Secp256k1::new();
    let t = s.terms;
    let attacker_key = |n: u32| testkit::key(1_000 + n);
    let honest_key = |n: u32| testkit::key(2_000 + n);
    for n in 0..N {
        let pk = attacker_key(n).public_key(&secp);
        s.chain
            .serve(outpoint(n), bond_coin(&t, &pk, t.bond_min, 0), 0);
    }
    for n in 0..3 {
        let pk = honest_key(n).public_key(&secp);
        s.chain
            .serve(outpoint(100 + n), bond_coin(&t, &pk, t.bond_min, 0), 0);
    }

    // An unbonded flood is refused before the rate limit: it spends none of the address's
    // tokens (more requests than its burst, none answered 429).
    let attacker = from("127.0.0.2");
    for i in 0..300 {
        let found = register_from(
            &attacker,
            address,
            &registration(&secp, &testkit::key(5_000 + i), 0),
        )
        .await;
        assert_eq!(found, (403, "bond_required".into()));
    }

    let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let floods: Vec<_> = (0..4u32)
        .map(|task| {
            let flooding = flooding.clone();
            let http = attacker.clone();
            tokio::spawn(async move {
                let secp = Secp256k1::new();
                let mut admitted: Vec<PublicKey> = Vec::new();
                let mut i = 0u32;
                while flooding.load(std::sync::atomic::Ordering::Relaxed) || i < 40 {
                    let n = task * 100_000 + i;
                    let request = match i % 4 {
                        // A fresh key and no bond.
                        0 => registration(&secp, &testkit::key(10_000 + n), 0),
                        // A forged signature naming one of the honest bonds.
                        1 => {
                            let mut r = bonded(&secp, &honest_key(i % 3), 0, outpoint(100 + i % 3));
                            r.signature = CompactSignature([7; 64]);
                            r
                        }
                        // A fresh key naming one of the attacker's bonds.
                        2 => bonded(&secp, &testkit::key(10_000 + n), 0, outpoint(i % N)),
                        // The attacker's own keys, each naming some bond of its own.
                        _ => bonded(&secp, &attacker_key(i % N), 0, outpoint((i / 4 + task) % N)),
                    };
                    let (status, code) = register_from(&http, address, &request).await;
                    if status == 200 {
                        admitted.push(request.miner);
                    } else {
                        assert!(
                            [
                                "bond_required",
                                "bad_signature",
                                "bond_wrong_key",
                                "bond_in_use",
                                "rate_limited",
                                "registered_differently",
                            ]
                            .contains(&code.as_str()),
                            "{status} {code}"
                        );
                    }
                    i += 1;
                }
                admitted
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let honest: Vec<_> = (0..3u32)
        .map(|n| {
            let http = from(&format!("127.0.0.{}", 10 + n));
            tokio::spawn(async move {
                let secp = Secp256k1::new();
                let request = bonded(&secp, &honest_key(n), 0, outpoint(100 + n));
                register_from(&http, address, &request).await
            })
        })
        .collect();
    for (n, h) in honest.into_iter().enumerate() {
        assert_eq!(h.await.unwrap(), (200, String::new()), "honest miner {n}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut admitted = std::collections::BTreeSet::new();
    for f in floods {
        admitted.extend(f.await.unwrap());
    }
    let attacker_keys: Vec<_> = (0..N).map(|n| attacker_key(n).public_key(&secp)).collect();
    assert!(
        admitted.iter().all(|k| attacker_keys.contains(k)),
        "only keys holding a bond of their own are admitted"
    );
    assert!(
        admitted.len() <= N as usize,
        "{} slots for {N} bonds",
        admitted.len()
    );
    let status = s.client.status().await.unwrap();
    assert_eq!(status.registered, 3 + admitted.len() as u64);
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
            block_window_ms: 2_000,
        },
    )
    .unwrap()
    .require_bonds(true)
}

#[test]
fn the_used_bond_set_survives_a_restart_and_resets_with_the_next_cycle() {
    const T0: u64 = 1_700_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let secp = Secp256k1::new();
    let terms = BondTerms::from_params(&chain.params);
    let genesis = chain.params.genesis.block_hash();
    let view = ChainView {
        tip: genesis,
        tip_height: 0,
        at_target: None,
        tip_next_model: None,
    };
    let miner = testkit::key(400);
    let found = Some(UnspentOutput {
        coin: bond_coin(&terms, &miner.public_key(&secp), terms.bond_min, 0),
        tip_height: 0,
    });
    let c = open(dir.path(), &chain);
    c.step(T0, [7; 32], Some(&view)).unwrap();
    c.register_bonded(
        T0 + 10,
        [2; 32],
        bonded(&secp, &miner, 0, outpoint(1)),
        found.clone(),
    )
    .unwrap();
    drop(c);

    let c = open(dir.path(), &chain);
    let state = c.state().unwrap();
    assert_eq!(
        state.bonds.get(&outpoint(1)),
        Some(&miner.public_key(&secp))
    );
    let other = testkit::key(401);
    let e = c
        .register_bonded(
            T0 + 20,
            [2; 32],
            bonded(&secp, &other, 0, outpoint(1)),
            found.clone(),
        )
        .unwrap_err();
    assert_eq!(e.code(), "bond_in_use");
    // Unbonded registrations never reach the machine's slots either.
    let e = c
        .register(T0 + 20, [2; 32], registration(&secp, &other, 0))
        .unwrap_err();
    assert_eq!(e.code(), "bond_required");
    assert_eq!(c.state().unwrap().registrations.len(), 1);

    // The next cycle starts with no bond in use: the same bond backs the miner again.
    let mut now = T0 + 20;
    while !c.state().unwrap().is_closed() {
        assert!(now < T0 + 60_000, "cycle 0 did not close");
        now += 500;
        c.step(now, [3; 32], Some(&view)).unwrap();
    }
    c.step(now + 1, [4; 32], Some(&view)).unwrap();
    let state = c.state().unwrap();
    assert_eq!(state.cycle(), 1);
    assert!(state.bonds.is_empty());
    c.register_bonded(
        now + 2,
        [2; 32],
        bonded(&secp, &miner, 1, outpoint(1)),
        found,
    )
    .unwrap();
}

/// Opens `key`'s challenged intervals of `record`.
fn answer_challenge(c: &Coordinator, now: u64, key: &SecretKey, record: &proof::RunRecord) {
    let secp = Secp256k1::new();
    let miner = key.public_key(&secp);
    let challenge = c.challenge(now, 0, &miner).unwrap();
    let answer = record.respond(&challenge.intervals).encode();
    let sig = CompactSignature::sign(
        &secp,
        key,
        &coordinator::api::answer_signing_hash(0, &miner, &primitives::sha256(&answer)),
    );
    c.answer(now, [1; 32], 0, miner, sig, &answer).unwrap();
}

/// A bonded miner that trains, then uploads other weights than its transcript ends in, fails
/// its replay check, and the coordinator sends exactly one slash of exactly its bond: every
/// satoshi but the fee to the burn output, nothing to the coordinator, and the honest miner's
/// bond untouched. Driving the sender again sends nothing more.
#[tokio::test]
async fn a_failed_replay_check_slashes_that_bond_once_and_no_other() {
    const T0: u64 = 1_700_000_000_000;
    let dir = tempfile::tempdir().unwrap();
    let test_chain = TestChain::new();
    let secp = Secp256k1::new();
    let terms = BondTerms::from_params(&test_chain.params);
    let genesis = test_chain.params.genesis.block_hash();
    let view = ChainView {
        tip: genesis,
        tip_height: 0,
        at_target: None,
        tip_next_model: None,
    };
    let chain = MemoryChain::new(genesis);
    let honest = testkit::key(500);
    let cheat = testkit::key(501);
    let c = Arc::new(open(dir.path(), &test_chain));
    c.step(T0, [7; 32], Some(&view)).unwrap();
    for (n, key) in [(1, &honest), (2, &cheat)] {
        let coin = bond_coin(&terms, &key.public_key(&secp), terms.bond_min, 0);
        chain.add_coin(outpoint(n).0, coin.clone());
        c.register_bonded(
            T0 + 10,
            [2; 32],
            bonded(&secp, key, 0, outpoint(n)),
            Some(UnspentOutput {
                coin,
                tip_height: 0,
            }),
        )
        .unwrap();
    }

    let now = T0 + 1_000;
    let weights = c.weights(0).unwrap();
    let mut runs = Vec::new();
    for key in [&honest, &cheat] {
        let task = c.task(now, 0, &key.public_key(&secp)).unwrap();
        let shard = c.shard(now, 0, &key.public_key(&secp)).unwrap();
        let run = honest_work(&task, &weights, &shard, 40);
        let bytes = if key == &cheat {
            // Trained, but uploads weights its transcript does not end in.
            noise_update(&task, &weights, 5)
        } else {
            run.update.clone()
        };
        submit_update(&c, now + 100, key, 0, &bytes, run.commitment).unwrap();
        runs.push(run);
    }
    let deadline = T0 + 5_000;
    c.step(deadline + 1, [3; 32], Some(&view)).unwrap();
    answer_challenge(&c, deadline + 10, &honest, &runs[0].record);
    answer_challenge(&c, deadline + 10, &cheat, &runs[1].record);
    c.step(deadline + 1_001, [4; 32], Some(&view)).unwrap();
    let state = c.state().unwrap();
    let verdict = |key: &SecretKey| {
        state
            .lottery
            .as_ref()
            .expect("evaluated")
            .scored
            .iter()
            .find(|s| s.miner == key.public_key(&secp))
            .unwrap()
            .verification
            .clone()
    };
    assert!(
        matches!(verdict(&cheat), proof::Verdict::Failed { .. }),
        "{:?}",
        verdict(&cheat)
    );
    assert!(
        matches!(verdict(&honest), proof::Verdict::Verified { .. }),
        "{:?}",
        verdict(&honest)
    );

    coordinator::slash::send_pending(&c, &chain).await;
    coordinator::slash::send_pending(&c, &chain).await;
    let sent = chain.sent();
    assert_eq!(sent.len(), 1, "one slash, sent once: {sent:?}");
    let slash = &sent[0];
    assert_eq!(slash.input.len(), 1);
    assert_eq!(slash.input[0].previous_output, outpoint(2).0);
    assert_eq!(slash.output.len(), 1, "no finder share for the coordinator");
    assert_eq!(slash.output[0].script_pubkey, consensus::tx::burn_script());
    assert_eq!(
        slash.output[0].value,
        terms.bond_min - coordinator::slash::SLASH_FEE
    );
    let record = c.record(0).unwrap();
    assert_eq!(record.slashes.len(), 1);
    assert_eq!(record.slashes[0].miner, cheat.public_key(&secp));
    assert_eq!(record.slashes[0].txid, slash.compute_txid());
}
