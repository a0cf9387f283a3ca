//! `cargo bench -p consensus`: transaction signature checks per second on one core, and the
//! time to validate and connect a 1,000-transaction block.

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, OutPoint, Transaction, TxOut, Txid};
use consensus::{check_block, check_tx_inputs, connect_block, BlockContext, SpendContext};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use primitives::{Block, Coin};
use std::collections::HashMap;
use testkit::{block_time, key, p2wpkh, TestChain};

const BLOCK_TXS: usize = 1_000;

/// `count` coins owned by key 1 and one single-input payment spending each.
fn payments(chain: &TestChain, count: usize) -> (HashMap<OutPoint, Coin>, Vec<Transaction>) {
    let owner = key(1);
    let script = p2wpkh(&chain.secp, &owner);
    let mut coins = HashMap::new();
    let mut txs = Vec::with_capacity(count);
    for i in 0..count {
        let mut txid = [0u8; 32];
        txid[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let outpoint = OutPoint::new(Txid::from_byte_array(txid), 0);
        let output = TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: script.clone(),
        };
        coins.insert(
            outpoint,
            Coin {
                output: output.clone(),
                height: 1,
                is_coinbase: false,
            },
        );
        let pay = TxOut {
            value: Amount::from_sat(99_000),
            script_pubkey: p2wpkh(&chain.secp, &key(2)),
        };
        txs.push(chain.spend(&[(outpoint, output)], vec![pay], &owner));
    }
    (coins, txs)
}

fn signature_checks(c: &mut Criterion) {
    let chain = TestChain::new();
    let (coins, txs) = payments(&chain, 1);
    let ctx = SpendContext {
        height: 10,
        median_time_past: 0,
        coinbase_maturity_blocks: 1,
    };
    let mut group = c.benchmark_group("tx");
    group.throughput(Throughput::Elements(1));
    group.bench_function("p2wpkh_input_check", |b| {
        b.iter(|| check_tx_inputs(&txs[0], &coins, &ctx).unwrap())
    });
    group.finish();
}

fn block_connect(c: &mut Criterion) {
    let chain = TestChain::new();
    let (coins, txs) = payments(&chain, BLOCK_TXS);
    let fees = Amount::from_sat(1_000 * BLOCK_TXS as u64);
    let parent = BlockHash::from_byte_array([7; 32]);
    let block: Block = chain.block(parent, 2, &key(1), txs, fees);
    let ctx = BlockContext {
        height: 2,
        parent_hash: parent,
        median_time_past: block_time(1),
        now_secs: u64::from(block_time(2)),
        certificate_used_by: None,
        coinbase_maturity_blocks: 1,
        parent_next_model_hash: None,
    };
    let mut group = c.benchmark_group("block");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BLOCK_TXS as u64));
    group.bench_function("check_and_connect_1000_txs", |b| {
        b.iter(|| {
            let checked = check_block(&block, &chain.params).unwrap();
            connect_block(&checked, &ctx, &coins, &chain.params).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, signature_checks, block_connect);
criterion_main!(benches);
