//! The dashboard's server against fixed sources: the HTML and SVG it returns, hostile strings
//! escaped, every query bounded, and the live phase following the coordinator.

use bitcoin::secp256k1::{PublicKey, SecretKey};
use bitcoin::{Amount, BlockHash, Network, Transaction, Txid};
use coordinator_api::api::{
    AdmissionDraw, Announcement, BondOutpoint, CertificateHex, CompactSignature, CycleOutcome,
    CycleRecord, CycleStatus, PendingBond, PhaseName, QualityReport, ScoredSubmission,
    SignedAnnouncement, SlashRecord,
};
use dashboard::limits::{
    CYCLES_PER_PAGE_MAX, PLOT_CYCLES_MAX, POLL_INTERVAL, QUERY_BYTES_MAX, RECORDS_KEPT_MAX,
    RECORDS_PER_REQUEST,
};
use dashboard::{Dashboard, Options, SourceError, Sources};
use learning::{Model, ModelCard, ModelSpec, Normalisation};
use primitives::{Block, Hash256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use testkit::TestChain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOSTILE_ADDRESS: &str = "<script>alert('address')</script>";
const HOSTILE_LABEL: &str = "\"><img src=x onerror=alert(2)>";

struct Fake {
    status: Arc<Mutex<CycleStatus>>,
    records: BTreeMap<u64, CycleRecord>,
    card: ModelCard,
    blocks: Vec<Block>,
    /// The largest `limit` the dashboard asked records for.
    largest_limit: Arc<Mutex<u64>>,
}

impl Sources for Fake {
    async fn status(&self) -> Result<CycleStatus, SourceError> {
        Ok(self.status.lock().unwrap().clone())
    }
    async fn records(&self, from: u64, limit: u64) -> Result<Vec<CycleRecord>, SourceError> {
        let mut largest = self.largest_limit.lock().unwrap();
        *largest = (*largest).max(limit);
        Ok(self
            .records
            .range(from..)
            .take(limit.min(RECORDS_PER_REQUEST) as usize)
            .map(|(_, r)| r.clone())
            .collect())
    }
    async fn model_card(&self) -> Result<ModelCard, SourceError> {
        Ok(self.card.clone())
    }
    async fn network(&self) -> Result<Network, SourceError> {
        Ok(Network::Regtest)
    }
    async fn height(&self) -> Result<u32, SourceError> {
        Ok(self.blocks.len() as u32)
    }
    async fn block_hash(&self, height: u32) -> Result<Option<BlockHash>, SourceError> {
        Ok(height
            .checked_sub(1)
            .and_then(|i| self.blocks.get(i as usize))
            .map(Block::block_hash))
    }
    async fn block(&self, hash: BlockHash) -> Result<Option<Block>, SourceError> {
        Ok(self.blocks.iter().find(|b| b.block_hash() == hash).cloned())
    }
    async fn mempool_tx(&self, _: Txid) -> Result<Option<Transaction>, SourceError> {
        Ok(None)
    }
}

fn miner(n: u32) -> (SecretKey, PublicKey) {
    let key = testkit::key(n);
    (key, key.public_key(&bitcoin::secp256k1::Secp256k1::new()))
}

fn card() -> ModelCard {
    let spec = ModelSpec::Mlp {
        input: 64,
        hidden: vec![32],
        classes: 10,
    };
    let normalisation = Normalisation {
        mean: vec![0.0; 64],
        std: vec![1.0; 64],
    };
    ModelCard::new(
        &Model::new(spec, 1).unwrap(),
        &"digits".parse().unwrap(),
        &normalisation,
        0.9,
        vec![],
    )
}

fn record(chain: &TestChain, cycle: u64, phase: PhaseName) -> CycleRecord {
    let announcement = Announcement {
        cycle,
        chain_id: chain.params.chain_id,
        parent: chain.params.genesis_hash(),
        height: 1,
        model_hash: Hash256([3; 32]),
        // Saturating: a test may use cycle numbers at the top of u64.
        opened_at_ms: 1_000u64.saturating_mul(cycle),
        registration_deadline_ms: 1_000u64.saturating_mul(cycle).saturating_add(100),
        submission_deadline_ms: 1_000u64.saturating_mul(cycle).saturating_add(500),
        challenge_deadline_ms: 1_000u64.saturating_mul(cycle).saturating_add(700),
        block_window_ms: 200,
        commitment: Hash256([5; 32]),
        held_out_commitment: Hash256([6; 32]),
        prev_record_hash: Hash256([7; 32]),
        coordinator: chain.coordinator.public_key(&chain.secp),
        job: Hash256::ZERO,
    };
    CycleRecord {
        announcement: SignedAnnouncement {
            signature: CompactSignature([1; 64]),
            announcement,
        },
        phase,
        registered: 3,
        submitted: 0,
        revealed_secret: None,
        commitments_digest: None,
        global_loss_units: None,
        submissions: Vec::new(),
        contributions_root: None,
        lottery_seed: None,
        draw_order: Vec::new(),
        block_certificates: Vec::new(),
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

fn submission(n: u32, score: u64, verification: proof::Verdict) -> ScoredSubmission {
    ScoredSubmission {
        miner: miner(n).1,
        payout_address: if n == 3 {
            HOSTILE_ADDRESS.into()
        } else {
            "bcrt1qexample".into()
        },
        segment: if n == 1 { "layer0" } else { "layer1" }.into(),
        update_hash: Hash256([n as u8; 32]),
        commitment: proof::Commitment {
            task_hash: Hash256([8; 32]),
            update_hash: Hash256([n as u8; 32]),
            transcript_root: Hash256([9; 32]),
            steps: 100,
        },
        received_at_ms: 0,
        params_trained: 100,
        loss_reduction: 10_000,
        score,
        verification,
        checkpoint_interval: 16,
    }
}

fn verified() -> proof::Verdict {
    proof::Verdict::Verified {
        intervals: vec![0, 1],
        replayed_steps: 20,
    }
}

/// A block certified for `cycle` by miner `n`, on `parent`.
fn block(chain: &TestChain, parent: BlockHash, height: u32, cycle: u64, n: u32) -> Block {
    let (key, public) = miner(n);
    let mut body = chain.certificate_body(height, parent, 0, public);
    body.cycle = cycle;
    let cert = chain.sign_certificate(body);
    let coinbase = chain.coinbase(height, chain.subsidy(), &key);
    chain.assemble(cert, testkit::block_time(height), vec![coinbase], &key)
}

/// Cycles 0..=2 closed (0 and 2 produced blocks 1 and 2; 1 had no eligible entry), cycle 3
/// training; miner 3 has a hostile payout address and label, fails its check in cycle 2 and is
/// slashed.
fn fake() -> Fake {
    let chain = TestChain::new();
    let b1 = block(&chain, chain.params.genesis_hash(), 1, 0, 1);
    let b2 = block(&chain, b1.block_hash(), 2, 2, 2);
    let mut records = BTreeMap::new();
    let quality = |loss: i64, ppm: u32| {
        Some(QualityReport {
            held_out_loss_units: loss,
            test_accuracy_ppm: ppm,
        })
    };
    let mut r0 = record(&chain, 0, PhaseName::Closed);
    r0.submissions = vec![
        submission(1, 300, verified()),
        submission(2, 100, verified()),
    ];
    r0.draw_order = vec![miner(1).1, miner(2).1];
    r0.block_certificates = vec![CertificateHex(b1.header.certificate.clone())];
    r0.outcome = Some(CycleOutcome::Produced {
        height: 1,
        hash: b1.block_hash(),
        attempt: 0,
        miner: miner(1).1,
    });
    r0.next_quality = quality(2_000_000, 500_000);
    let mut r1 = record(&chain, 1, PhaseName::Closed);
    r1.submissions = vec![submission(1, 0, proof::Verdict::Unanswered)];
    r1.outcome = Some(CycleOutcome::NoEligibleEntries);
    r1.next_quality = quality(1_500_000, 700_000);
    let mut r2 = record(&chain, 2, PhaseName::Closed);
    r2.submissions = vec![
        submission(2, 400, verified()),
        submission(
            3,
            0,
            proof::Verdict::Failed {
                failure: proof::Failure::UpdateNotFinalState,
            },
        ),
    ];
    r2.draw_order = vec![miner(2).1];
    r2.outcome = Some(CycleOutcome::Produced {
        height: 2,
        hash: b2.block_hash(),
        attempt: 0,
        miner: miner(2).1,
    });
    r2.next_quality = quality(1_000_000, 900_000);
    // Miner 3 cheated and verifier 9 caught it; verifier 8 passed a flag.
    let verifier_bond = |n| BondOutpoint(bitcoin::OutPoint::new(b1.txdata[0].compute_txid(), n));
    r2.slashes = vec![
        SlashRecord {
            miner: miner(3).1,
            bond: BondOutpoint(bitcoin::OutPoint::new(b1.txdata[0].compute_txid(), 0)),
            txid: b2.txdata[0].compute_txid(),
            role: coordinator_api::api::SlashRole::Miner,
            finder: Some(coordinator_api::api::Finder {
                verifier: miner(9).1,
                payout_address: "bcrt1qfinder".into(),
            }),
        },
        SlashRecord {
            miner: miner(8).1,
            bond: verifier_bond(8),
            txid: b2.txdata[0].compute_txid(),
            role: coordinator_api::api::SlashRole::Verifier,
            finder: None,
        },
    ];
    r2.verification.verifiers = [8, 9]
        .map(|n| coordinator_api::api::EnrolledVerifier {
            verifier: miner(n).1,
            payout_address: "bcrt1qverifier".into(),
            bond: verifier_bond(n),
            bond_sats: 10_000_000,
        })
        .to_vec();
    r2.verification.verdicts = [
        (8, coordinator_api::api::ClaimOutcome::Wrong),
        (9, coordinator_api::api::ClaimOutcome::CaughtCheat),
    ]
    .map(|(n, outcome)| coordinator_api::api::ClaimVerdict {
        verifier: miner(n).1,
        miner: miner(3).1,
        interval: 2,
        outcome,
        replayed_leaf: None,
    })
    .to_vec();
    r2.admission = Some(AdmissionDraw {
        slots: 2,
        pending: [1, 2, 3]
            .map(|n| PendingBond {
                miner: miner(n).1,
                bond: BondOutpoint(bitcoin::OutPoint::new(b1.txdata[0].compute_txid(), n)),
                bond_sats: 10_000_000,
            })
            .to_vec(),
        admitted: vec![miner(3).1, miner(2).1],
    });
    let r3 = record(&chain, 3, PhaseName::Training);
    for r in [r0, r1, r2, r3.clone()] {
        records.insert(r.announcement.announcement.cycle, r);
    }
    let status = CycleStatus {
        announcement: r3.announcement.clone(),
        phase: PhaseName::Training,
        attempt: None,
        registered: 3,
        submitted: 1,
        now_ms: 3_100,
    };
    Fake {
        status: Arc::new(Mutex::new(status)),
        records,
        card: card(),
        blocks: vec![b1, b2],
        largest_limit: Arc::new(Mutex::new(0)),
    }
}

async fn start(fake: Fake) -> Dashboard {
    let labels = BTreeMap::from([(miner(3).1.to_string(), HOSTILE_LABEL.to_owned())]);
    let options = Options {
        bind: "127.0.0.1:0".parse().unwrap(),
        coordinator_url: "http://127.0.0.1:9".into(),
        miner_reports: Vec::new(),
        labels,
    };
    Dashboard::start(fake, options).await.unwrap()
}

/// A plain HTTP/1.1 GET: (status, headers, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_owned())
}

/// The values of `attribute` in `html`, in order.
fn attributes(html: &str, attribute: &str) -> Vec<String> {
    let needle = format!("{attribute}=\"");
    html.split(&needle)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The `<svg data-plot=ID ...>...</svg>` element of a page.
fn plot<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("data-plot=\"{id}\""))
        .unwrap_or_else(|| panic!("no plot {id}"));
    let end = html[start..].find("</svg>").unwrap();
    &html[start..start + end]
}

#[tokio::test]
async fn pages_show_the_records_and_the_chain() {
    let dashboard = start(fake()).await;
    let addr = dashboard.addr;

    let (status, head, overview) = get(addr, "/").await;
    assert_eq!(status, 200, "{overview}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("text/html"), "{head}");
    assert!(overview.contains("data-phase=\"training\""), "{overview}");
    assert!(overview.contains("id=\"live-submitted\">1<"), "{overview}");
    assert_eq!(attributes(&overview, "data-segment"), ["layer0", "layer1"]);
    // The countdown: the submission deadline 3 500 ms less the coordinator's 3 100 ms.
    assert!(
        overview.contains("id=\"live-countdown\">1 s<"),
        "{overview}"
    );

    let (status, _, cycles) = get(addr, "/cycles").await;
    assert_eq!(status, 200);
    assert_eq!(attributes(&cycles, "data-cycle"), ["3", "2", "1", "0"]);
    let fake = fake();
    let winners = attributes(&cycles, "data-winner");
    assert_eq!(winners, [miner(2).1.to_string(), miner(1).1.to_string()]);
    let blocks = attributes(&cycles, "data-block");
    assert_eq!(
        blocks,
        [
            fake.blocks[1].block_hash().to_string(),
            fake.blocks[0].block_hash().to_string()
        ]
    );

    let (status, _, detail) = get(addr, "/cycles/0").await;
    assert_eq!(status, 200);
    // Odds are score over total: 300 / 400 and 100 / 400.
    assert!(
        detail.contains(">75.0%<") && detail.contains(">25.0%<"),
        "{detail}"
    );
    assert_eq!(attributes(&detail, "data-attempt"), ["0", "1"]);

    let (status, _, chain) = get(addr, "/chain").await;
    assert_eq!(status, 200);
    let heights = attributes(&chain, "data-height");
    assert_eq!(
        heights,
        ["2", "2", "1"],
        "the tip line, then the rows: {chain}"
    );
    let miners = attributes(&chain, "data-miner");
    assert_eq!(miners, [miner(2).1.to_string(), miner(1).1.to_string()]);
    assert!(chain.contains(&Amount::from_sat(5_000_000_000).to_string()) || chain.contains("BTC"));

    let hash = fake.blocks[0].block_hash();
    for path in ["/block/1".to_owned(), format!("/block/{hash}")] {
        let (status, _, page) = get(addr, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(page.contains(&format!("data-hash=\"{hash}\"")), "{page}");
        assert!(page.contains("on the best chain"), "{page}");
    }
    let coinbase = fake.blocks[0].txdata[0].compute_txid();
    let (status, _, tx) = get(addr, &format!("/tx/{coinbase}?block={hash}")).await;
    assert_eq!(status, 200, "{tx}");
    assert!(tx.contains(&format!("data-txid=\"{coinbase}\"")), "{tx}");
    assert!(
        tx.contains("bcrt1q"),
        "the coinbase pays a regtest address: {tx}"
    );
    // Without its block, a transaction is looked for in the newest blocks.
    let slash_tx = fake.blocks[1].txdata[0].compute_txid();
    let (status, _, tx) = get(addr, &format!("/tx/{slash_tx}")).await;
    assert_eq!(status, 200, "{tx}");

    let (status, head, script) = get(addr, "/live.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("javascript") && script.contains("/live.json"));
}

#[tokio::test]
async fn plots_have_one_point_per_finished_cycle() {
    let dashboard = start(fake()).await;
    let (status, _, page) = get(dashboard.addr, "/plots").await;
    assert_eq!(status, 200, "{page}");
    for id in ["held-out-loss", "test-accuracy"] {
        let svg = plot(&page, id);
        assert!(svg.contains("data-points=\"3\""), "{id}: {svg}");
        assert_eq!(attributes(svg, "data-cycle"), ["0", "1", "2"], "{id}");
    }
    let values = attributes(plot(&page, "held-out-loss"), "data-value");
    assert_eq!(values, ["2", "1.5", "1"]);
    // Cumulative blocks: miner 1 won cycle 0's block, miner 2 cycle 2's, miner 3 none.
    let blocks = plot(&page, "miner-blocks");
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (series, value) in attributes(blocks, "class=\"pt\" data-series")
        .into_iter()
        .zip(attributes(blocks, "data-value"))
    {
        last.insert(series, value);
    }
    assert_eq!(
        last.get(&miner(1).1.to_string()).map(String::as_str),
        Some("1"),
        "{last:?}"
    );
    assert_eq!(
        last.get(&miner(2).1.to_string()).map(String::as_str),
        Some("1"),
        "{last:?}"
    );
    // The score plot has a point only where the miner submitted: miner 1 in cycles 0 and 1.
    let scores = plot(&page, "miner-score");
    let miner1 = miner(1).1.to_string();
    let points = scores
        .matches(&format!("<circle class=\"pt\" data-series=\"{miner1}\""))
        .count();
    assert_eq!(points, 2, "{scores}");
    // No reports given: no useful-work plot.
    assert!(!page.contains("data-plot=\"useful-work\""));

    let (_, _, last_one) = get(dashboard.addr, "/plots?cycles=1").await;
    assert_eq!(
        attributes(plot(&last_one, "held-out-loss"), "data-cycle"),
        ["2"]
    );
}

#[tokio::test]
async fn hostile_strings_are_escaped_everywhere() {
    let dashboard = start(fake()).await;
    for path in ["/", "/cycles", "/cycles/2", "/plots", "/chain", "/block/2"] {
        let (status, _, page) = get(dashboard.addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!page.contains("<script>alert"), "{path}: raw script");
        assert!(!page.contains("<img src=x"), "{path}: raw img");
        assert!(!page.contains("onerror=alert(2)>"), "{path}: raw attribute");
        // The only script is the external one.
        assert_eq!(page.matches("<script").count(), 1, "{path}");
    }
    let (_, _, detail) = get(dashboard.addr, "/cycles/2").await;
    assert!(
        detail.contains("&lt;script&gt;alert(&#39;address&#39;)&lt;/script&gt;"),
        "{detail}"
    );
    assert!(
        detail.contains("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{detail}"
    );
    assert!(detail.contains("data-verdict=\"failed\""), "{detail}");
    assert!(detail.contains("/v1/cycles/2/evidence/"), "{detail}");
    assert!(detail.contains("id=\"slashes\""), "{detail}");
    assert_eq!(
        attributes(&detail, "data-role"),
        ["miner", "verifier"],
        "{detail}"
    );
    assert!(detail.contains("id=\"verifiers\""), "{detail}");
    assert_eq!(attributes(&detail, "data-verifier").len(), 2, "{detail}");
    assert!(detail.contains("data-failed=\"1\""), "{detail}");
    assert_eq!(
        attributes(&detail, "data-admitted"),
        ["false", "true", "true"],
        "pending miners 1, 2, 3: {detail}"
    );
}

#[tokio::test]
async fn oversized_and_garbage_parameters_are_refused_with_a_reason() {
    let dashboard = start(fake()).await;
    let long = format!("/cycles?count={}", "1".repeat(QUERY_BYTES_MAX));
    let too_many = format!("/cycles?count={}", CYCLES_PER_PAGE_MAX + 1);
    let plot_span = format!("/plots?cycles={}", PLOT_CYCLES_MAX + 1);
    let cases: Vec<(&str, &str)> = vec![
        (&too_many, "1..=50"),
        ("/cycles?count=abc", "whole number"),
        ("/cycles?count=0", "1..=50"),
        ("/cycles?from=-1", "whole number"),
        ("/cycles?count=1&count=2", "twice"),
        ("/cycles?evil=1", "unknown parameter"),
        (&long, "over the limit"),
        (&plot_span, "cycles must be in"),
        ("/chain?count=101", "1..=100"),
        ("/chain?before=4294967296", "before must be in"),
        ("/?x=1", "takes no parameters"),
        ("/cycles/18446744073709551616", "cycle must be in"),
        ("/cycles/1x", "whole number"),
        ("/block/tip", "height"),
        ("/tx/00", "64 hex digits"),
        ("/tx/{}?block=xyz", "64 hex digits"),
    ];
    for (path, why) in cases {
        let path = path.replace("{}", &"ab".repeat(32));
        let (status, _, page) = get(dashboard.addr, &path).await;
        assert_eq!(status, 400, "{path}: {page}");
        assert!(page.contains(why), "{path}: wanted {why:?} in {page}");
    }
    for path in ["/cycles/99", "/block/99", "/nowhere"] {
        let (status, _, page) = get(dashboard.addr, path).await;
        assert_eq!(status, 404, "{path}: {page}");
    }
}

#[tokio::test]
async fn a_long_history_is_read_in_capped_pages_and_kept_bounded() {
    let chain = TestChain::new();
    let mut fake = fake();
    fake.records = (0..300u64)
        .map(|c| {
            let mut r = record(&chain, c, PhaseName::Closed);
            r.outcome = Some(CycleOutcome::NoEligibleEntries);
            (c, r)
        })
        .collect();
    let open = record(&chain, 300, PhaseName::Registration);
    fake.status.lock().unwrap().announcement = open.announcement.clone();
    fake.records.insert(300, open);
    let largest = fake.largest_limit.clone();
    let dashboard = start(fake).await;
    assert!(*largest.lock().unwrap() <= RECORDS_PER_REQUEST);
    let (_, _, page) = get(dashboard.addr, "/cycles?count=50").await;
    let shown = attributes(&page, "data-cycle");
    assert_eq!(shown.len(), 50);
    assert_eq!(shown[0], "300");
    let oldest = 300 - RECORDS_KEPT_MAX as u64 + 1;
    let (status, _, _) = get(dashboard.addr, &format!("/cycles/{oldest}")).await;
    assert_eq!(status, 200);
    let (status, _, page) = get(dashboard.addr, &format!("/cycles/{}", oldest - 1)).await;
    assert_eq!(status, 404, "{page}");
    assert!(page.contains("not among"), "{page}");
    let (_, _, plots) = get(dashboard.addr, "/plots").await;
    assert!(plots.contains(&format!(
        "data-finished-cycles=\"{}\"",
        RECORDS_KEPT_MAX - 1
    )));
}

#[tokio::test]
async fn the_live_phase_follows_the_coordinator() {
    let fake = fake();
    let status = fake.status.clone();
    let dashboard = start(fake).await;
    let (_, _, before) = get(dashboard.addr, "/live.json").await;
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before["phase"], "training");
    assert_eq!(before["finished_cycles"], 3);
    assert_eq!(before["tip_height"], 2);
    status.lock().unwrap().phase = PhaseName::Challenge;
    tokio::time::sleep(POLL_INTERVAL * 3).await;
    let (_, _, page) = get(dashboard.addr, "/").await;
    assert!(page.contains("data-phase=\"challenge\""), "{page}");
    let (_, _, after) = get(dashboard.addr, "/live.json").await;
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after["phase"], "challenge");
    assert_ne!(
        after["generation"], before["generation"],
        "the page would not reload"
    );
}

/// Cycle numbers are the coordinator's to choose: ones at the top of `u64` render and refresh
/// like any other (they used to overflow the catch-up and the plot's axis loop).
#[tokio::test]
async fn cycle_numbers_at_the_top_of_u64_neither_panic_nor_hang() {
    let chain = TestChain::new();
    let mut fake = fake();
    let top = u64::MAX;
    fake.records = (top - 3..top)
        .map(|c| {
            let mut r = record(&chain, c, PhaseName::Closed);
            r.outcome = Some(CycleOutcome::NoEligibleEntries);
            r.next_quality = Some(QualityReport {
                held_out_loss_units: 1_000_000,
                test_accuracy_ppm: 500_000,
            });
            (c, r)
        })
        .collect();
    let open = record(&chain, top, PhaseName::Registration);
    fake.status.lock().unwrap().announcement = open.announcement.clone();
    fake.records.insert(top, open);
    let dashboard = start(fake).await;
    let (status, _, plots) = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        get(dashboard.addr, "/plots"),
    )
    .await
    .expect("the plots page answers");
    assert_eq!(status, 200, "{plots}");
    assert_eq!(
        attributes(plot(&plots, "held-out-loss"), "data-cycle"),
        [top - 3, top - 2, top - 1].map(|c| c.to_string())
    );
    let (status, _, cycles) = get(dashboard.addr, "/cycles").await;
    assert_eq!(status, 200);
    assert!(
        cycles.contains(&format!("data-cycle=\"{top}\"")),
        "{cycles}"
    );
}
