//! Sync throughput: node A holds 1,000 blocks of 100 transactions each (fed over RPC); node B
//! starts empty with A as its peer and syncs them. Prints blocks/s for feeding and for sync,
//! and the peak RSS (VmHWM) of both node processes.
//!
//! `cargo bench -p trainchain --bench sync` (release build of the node binary).

#[path = "../tests/support/mod.rs"]
mod support;

use bitcoin::{Amount, OutPoint, Transaction, TxOut};
use primitives::block::coinbase_script_sig;
use primitives::Block;
use std::time::Instant;
use support::{eventually, start_node};
use testkit::{block_time, key, p2wpkh, TestChain};

const BLOCKS: u32 = 1_000;
const TXS_PER_BLOCK: usize = 100;
/// Fee per benchmark transaction, in satoshis (above the 1 sat/byte minimum).
const FEE_SATS: u64 = 1_000;

/// A coinbase paying `value` split into `TXS_PER_BLOCK` outputs, so the next block can hold
/// that many independent spends.
fn fan_coinbase(chain: &TestChain, height: u32, value: Amount) -> Transaction {
    let mut coinbase = chain.coinbase(height, value, &key(1));
    coinbase.input[0].script_sig = coinbase_script_sig(height, b"bench");
    let each = value.to_sat() / TXS_PER_BLOCK as u64;
    coinbase.output = (0..TXS_PER_BLOCK)
        .map(|_| TxOut {
            value: Amount::from_sat(each),
            script_pubkey: p2wpkh(&chain.secp, &key(1)),
        })
        .collect();
    coinbase
}

fn build_chain(chain: &TestChain) -> Vec<Block> {
    let miner = key(1);
    let mut blocks: Vec<Block> = Vec::with_capacity(BLOCKS as usize);
    let mut parent = chain.params.genesis_hash();
    for height in 1..=BLOCKS {
        let spends: Vec<Transaction> = match blocks.last() {
            Some(previous) if height > 1 => {
                let coinbase = &previous.txdata[0];
                let txid = coinbase.compute_txid();
                (0..TXS_PER_BLOCK)
                    .map(|vout| {
                        let prev = coinbase.output[vout].clone();
                        chain.spend(
                            &[(OutPoint::new(txid, vout as u32), prev.clone())],
                            vec![TxOut {
                                value: prev.value - Amount::from_sat(FEE_SATS),
                                script_pubkey: p2wpkh(&chain.secp, &miner),
                            }],
                            &miner,
                        )
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let fees = Amount::from_sat(FEE_SATS * spends.len() as u64);
        let cert = chain.sign_certificate(chain.certificate_body(
            height,
            parent,
            0,
            miner.public_key(&chain.secp),
        ));
        let mut txdata = vec![fan_coinbase(chain, height, chain.subsidy() + fees)];
        txdata.extend(spends);
        let block = chain.assemble(cert, block_time(height), txdata, &miner);
        parent = block.block_hash();
        blocks.push(block);
    }
    blocks
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pid_of(dir: &std::path::Path) -> u32 {
    let text = std::fs::read_to_string(dir.join("node.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["pid"].as_u64().unwrap() as u32
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let chain = TestChain::new();
        let started = Instant::now();
        let blocks = build_chain(&chain);
        let bytes: usize = blocks.iter().map(Block::encoded_len).sum();
        println!(
            "built {BLOCKS} blocks x {TXS_PER_BLOCK} txs ({:.1} MB) in {:.1} s",
            bytes as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        let dir = tempfile::tempdir().unwrap();
        let a = start_node(&dir.path().join("a"), &chain.params, &[]).await;
        let feed = Instant::now();
        for block in &blocks {
            assert_eq!(a.submit(block).await, serde_json::Value::Null);
        }
        let feed_secs = feed.elapsed().as_secs_f64();
        let tip = blocks.last().unwrap().block_hash().to_string();

        let sync = Instant::now();
        let b = start_node(&dir.path().join("b"), &chain.params, &[&a.p2p_addr]).await;
        eventually("B syncs all blocks", || async { b.tip().await == tip }).await;
        let sync_secs = sync.elapsed().as_secs_f64();

        println!("| measure                          | value |");
        println!("|----------------------------------|-------|");
        println!(
            "| feed over RPC (submitblock), blocks/s | {:.0} |",
            f64::from(BLOCKS) / feed_secs
        );
        println!(
            "| sync A -> B, blocks/s            | {:.0} |",
            f64::from(BLOCKS) / sync_secs
        );
        println!(
            "| sync A -> B, transactions/s      | {:.0} |",
            f64::from(BLOCKS) * TXS_PER_BLOCK as f64 / sync_secs
        );
        for (name, node) in [("A (fed)", &a), ("B (synced)", &b)] {
            let rss = peak_rss_kib(pid_of(&node.dir)).unwrap_or(0);
            println!(
                "| peak RSS of node {name:<11} | {:.1} MiB |",
                rss as f64 / 1024.0
            );
        }
    });
}
