//! Real outside clients: python-bitcoinlib's stock `RawProxy`/`Proxy` and bitcoin-utils'
//! `NodeProxy` (pinned in scripts/python-clients-requirements.txt) against a live node, driven by
//! scripts/core_clients.py. The script calls every Core method the node serves for them and
//! checks each answer parses, then builds, signs (BIP143) and sends a P2WPKH transaction with
//! python-bitcoinlib; this test mines it and checks both sides see it confirmed.
//!
//! Needs a Python with those packages: `scripts/core-clients-python` makes the venv and runs
//! this test with `TRAINCHAIN_PYTHON` set and `--ignored` (plain `cargo test` skips it).

use std::path::PathBuf;
use std::process::Command;

use bitcoin::{Network, PrivateKey, Txid};
use node::mempool::{Mempool, MempoolLimits};
use node::rpc::{self, auth::basic_header, RpcAuth};
use node::{BlockOutcome, ChainState, NodeHandle};
use serde_json::{json, Value};
use testkit::{coinbase_output, key, p2wpkh, TestChain};

const USER: &str = "pyuser";
/// Plain characters: python-bitcoinlib sends the URL's password as written, without
/// percent-decoding it.
const PASSWORD: &str = "pysecret";
/// Blocks mined on genesis before the clients run; block 1's coinbase is the coin they spend.
const BLOCKS: u32 = 3;

fn python() -> PathBuf {
    match std::env::var_os("TRAINCHAIN_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "TRAINCHAIN_PYTHON is not set: run scripts/core-clients-python, which installs \
             python-bitcoinlib and bitcoin-utils in a venv and runs this test with that python"
        ),
    }
}

/// Runs scripts/core_clients.py with `args`; its last stdout line, parsed, when it succeeds.
async fn run_script(args: Vec<String>) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/core_clients.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(&script)
            .args(&args)
            .env("PYTHONUNBUFFERED", "1")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "core_clients.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout
        .lines()
        .last()
        .expect("the script printed its result");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

/// A JSON-RPC 2.0 call from the Rust side, to check what the Python clients did.
async fn call(url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let reply: Value = reqwest::Client::new()
        .post(url)
        .header("authorization", basic_header(&format!("{USER}:{PASSWORD}")))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{method}: {reply}");
    reply["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python clients: scripts/core-clients-python"]
async fn python_bitcoinlib_and_bitcoin_utils_read_the_chain_and_their_transaction_is_mined() {
    let python = python();
    let dir = tempfile::tempdir().unwrap();
    let chain = TestChain::new();
    let state = ChainState::open(&dir.path().join("chain.redb"), chain.params.clone()).unwrap();
    let (node, _net) = NodeHandle::new(state, Mempool::new(MempoolLimits::default()));
    let blocks = chain.empty_chain(BLOCKS, &key(1));
    for block in blocks.clone() {
        node.process_block(block).unwrap();
    }
    let server = rpc::start_in(
        node.clone(),
        "127.0.0.1:0".parse().unwrap(),
        RpcAuth::Basic(vec![format!("{USER}:{PASSWORD}")]),
        Some(dir.path().to_path_buf()),
    )
    .await
    .unwrap();
    let rpc_url = format!("http://{}/", server.local_addr);
    // The URL form python-bitcoinlib's Proxy(service_url=...) takes.
    let client_url = format!("http://{USER}:{PASSWORD}@{}/", server.local_addr);
    println!("python: {}", python.display());

    // The coinbase of block 1 pays key(1) and is mature (testkit: maturity 1).
    let (outpoint, prev) = coinbase_output(&blocks[0]);
    assert_eq!(prev.script_pubkey, p2wpkh(&chain.secp, &key(1)));
    let wif = PrivateKey::new(key(1), Network::Regtest).to_wif();
    let sent = run_script(vec![
        format!("--url={client_url}"),
        "send".into(),
        format!("--wif={wif}"),
        format!("--outpoint={outpoint}"),
        format!("--value={}", prev.value.to_sat()),
        format!("--blocks={BLOCKS}"),
    ])
    .await;
    let txid: Txid = sent["txid"].as_str().unwrap().parse().unwrap();

    // The node took it into its pool; mine the node's own template on the tip.
    let template = node.template(p2wpkh(&chain.secp, &key(2))).unwrap();
    let txs: Vec<_> = template
        .transactions
        .iter()
        .map(|(tx, _)| tx.clone())
        .collect();
    assert_eq!(
        txs.iter().map(|tx| tx.compute_txid()).collect::<Vec<_>>(),
        vec![txid],
        "the template holds exactly the Python client's transaction"
    );
    assert_eq!(txs[0].input[0].previous_output, outpoint);
    assert_eq!(
        bitcoin::consensus::encode::serialize_hex(&txs[0]),
        sent["hex"]
    );
    let height = BLOCKS + 1;
    let block = chain.block(template.prev_hash, height, &key(2), txs, template.fees);
    let hash = block.block_hash();
    assert!(matches!(
        node.process_block(block).unwrap(),
        BlockOutcome::NewTip { height: h, .. } if h == height
    ));

    // Confirmed, as the Rust side sees it: its output is a coin with one confirmation, the coin
    // it spent is gone, and it is in the tip block.
    let out = call(&rpc_url, "gettxout", json!([txid.to_string(), 0])).await;
    assert_eq!(out["confirmations"], 1, "{out}");
    assert_eq!(out["bestblock"], hash.to_string());
    let spent = call(
        &rpc_url,
        "gettxout",
        json!([outpoint.txid.to_string(), outpoint.vout]),
    )
    .await;
    assert_eq!(spent, Value::Null);
    let mined = call(
        &rpc_url,
        "getrawtransaction",
        json!([txid.to_string(), true, hash.to_string()]),
    )
    .await;
    assert_eq!(mined["blockhash"], hash.to_string());
    assert_eq!(call(&rpc_url, "getrawmempool", json!([])).await, json!([]));

    // And as the Python clients see it.
    run_script(vec![
        format!("--url={client_url}"),
        "confirmed".into(),
        format!("--txid={txid}"),
        format!("--height={height}"),
    ])
    .await;
}
