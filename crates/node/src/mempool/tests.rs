//! Mempool behaviour against a testkit chain whose coinbases fund the spends.

use super::*;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::SecretKey;
use bitcoin::TxOut;
use testkit::{block_time, coinbase_output, key, p2wpkh, TestChain};

/// Blocks on genesis whose coinbases (mature at maturity 1) fund the tests.
const FUNDED_BLOCKS: u32 = 8;
const NOW_SECS: u64 = 1_000;

struct Fixture {
    tc: TestChain,
    owner: SecretKey,
    blocks: Vec<Block>,
    /// Unspent coins at the tip: the funded blocks' coinbases.
    coins: HashMap<OutPoint, Coin>,
    /// Spending context of the next block.
    ctx: SpendContext,
}

impl Fixture {
    fn new() -> Fixture {
        let tc = TestChain::new();
        let owner = key(1);
        let blocks = tc.empty_chain(FUNDED_BLOCKS, &owner);
        let coins = blocks
            .iter()
            .map(|b| {
                let (outpoint, output) = coinbase_output(b);
                let coin = Coin {
                    output,
                    height: b.height(),
                    is_coinbase: true,
                };
                (outpoint, coin)
            })
            .collect();
        let ctx = SpendContext {
            height: FUNDED_BLOCKS + 1,
            median_time_past: block_time(FUNDED_BLOCKS),
            coinbase_maturity_blocks: tc.params.coinbase_maturity_blocks,
        };
        Fixture {
            tc,
            owner,
            blocks,
            coins,
            ctx,
        }
    }

    /// The coinbase output of funded block `index` (0-based).
    fn funding(&self, index: usize) -> (OutPoint, TxOut) {
        coinbase_output(&self.blocks[index])
    }

    /// Spends `input` back to the owner in `outputs` equal outputs, paying `fee_sats`.
    fn pay(&self, input: (OutPoint, TxOut), fee_sats: u64, outputs: u64) -> Transaction {
        let each = (input.1.value.to_sat() - fee_sats) / outputs;
        let first = input.1.value.to_sat() - fee_sats - each * (outputs - 1);
        let script = p2wpkh(&self.tc.secp, &self.owner);
        let outs = (0..outputs)
            .map(|i| TxOut {
                value: Amount::from_sat(if i == 0 { first } else { each }),
                script_pubkey: script.clone(),
            })
            .collect();
        self.tc.spend(&[input], outs, &self.owner)
    }

    fn accept(&self, pool: &mut Mempool, tx: Transaction) -> Result<Txid, MempoolError> {
        pool.accept(tx, &self.coins, &self.ctx, NOW_SECS)
    }
}

fn output_of(tx: &Transaction, vout: u32) -> (OutPoint, TxOut) {
    (
        OutPoint::new(tx.compute_txid(), vout),
        tx.output[vout as usize].clone(),
    )
}

fn pool_with(limits: MempoolLimits) -> Mempool {
    Mempool::new(limits)
}

fn default_pool() -> Mempool {
    pool_with(MempoolLimits::default())
}

fn ids(txs: &[&Transaction]) -> Vec<Txid> {
    txs.iter().map(|t| t.compute_txid()).collect()
}

fn as_set(ids: impl IntoIterator<Item = Txid>) -> HashSet<Txid> {
    ids.into_iter().collect()
}

/// Every transaction in `body` comes after all the others whose outputs it spends.
fn assert_parents_first(body: &[Transaction]) {
    let mut seen = HashSet::new();
    let all: HashSet<Txid> = body.iter().map(|t| t.compute_txid()).collect();
    for tx in body {
        for input in &tx.input {
            let parent = input.previous_output.txid;
            assert!(!all.contains(&parent) || seen.contains(&parent));
        }
        seen.insert(tx.compute_txid());
    }
}

#[test]
fn mempool_accepts_a_valid_spend() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let tx = f.pay(f.funding(0), 1_000, 1);
    let txid = f.accept(&mut pool, tx.clone()).unwrap();
    assert_eq!(txid, tx.compute_txid());
    assert!(pool.contains(&txid));
    assert_eq!(pool.get(&txid), Some(&tx));
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.bytes(), tx.total_size());
    assert_eq!(pool.txids(), vec![txid]);
    assert_eq!(pool.spender_of(&f.funding(0).0), Some(txid));
    let entry = pool.entry(&txid).unwrap();
    assert_eq!(entry.fee(), Amount::from_sat(1_000));
    assert_eq!(entry.entry_secs(), NOW_SECS);
    assert!(entry.fee_rate() > DEFAULT_MIN_FEE_RATE);
    let info = pool.info();
    assert_eq!((info.count, info.bytes), (1, tx.total_size()));
    assert_eq!(info.min_fee_rate, DEFAULT_MIN_FEE_RATE);
}

#[test]
fn mempool_refuses_a_transaction_already_pooled() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let tx = f.pay(f.funding(0), 1_000, 1);
    let txid = f.accept(&mut pool, tx.clone()).unwrap();
    assert_eq!(
        f.accept(&mut pool, tx),
        Err(MempoolError::AlreadyInPool(txid))
    );
    assert_eq!(pool.len(), 1);
}

#[test]
fn mempool_refuses_a_coinbase() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let coinbase = f.blocks[0].txdata[0].clone();
    assert_eq!(f.accept(&mut pool, coinbase), Err(MempoolError::Coinbase));
    assert!(pool.is_empty());
}

#[test]
fn mempool_refuses_invalid_transactions_with_the_consensus_reason() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let unknown = OutPoint::new(Txid::from_byte_array([7; 32]), 0);
    let orphan = f.pay((unknown, f.funding(0).1), 1_000, 1);
    assert_eq!(
        f.accept(&mut pool, orphan),
        Err(MempoolError::Invalid(TxError::MissingInput(unknown)))
    );
    let output = TxOut {
        value: Amount::from_sat(1_000_000),
        script_pubkey: p2wpkh(&f.tc.secp, &f.owner),
    };
    let stolen = f.tc.spend(&[f.funding(0)], vec![output], &key(2));
    assert_eq!(
        f.accept(&mut pool, stolen),
        Err(MempoolError::Invalid(TxError::PubkeyHashMismatch {
            index: 0
        }))
    );
    assert!(pool.is_empty());
}

#[test]
fn mempool_refuses_a_double_spend_of_a_pooled_input() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let first = f.pay(f.funding(0), 1_000, 1);
    let first_id = f.accept(&mut pool, first).unwrap();
    // Pays more fee, but there is no replacement: the first seen keeps the outpoint.
    let second = f.pay(f.funding(0), 50_000, 1);
    assert_eq!(
        f.accept(&mut pool, second.clone()),
        Err(MempoolError::Conflict {
            outpoint: f.funding(0).0,
            with: first_id
        })
    );
    assert!(!pool.contains(&second.compute_txid()));
    assert_eq!(pool.spender_of(&f.funding(0).0), Some(first_id));
}

#[test]
fn mempool_refuses_a_fee_rate_below_the_minimum() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let cheap = f.pay(f.funding(0), 100, 1);
    assert!(cheap.total_size() > 100, "100 sat must be under 1 sat/byte");
    match f.accept(&mut pool, cheap) {
        Err(MempoolError::FeeRateTooLow { fee_rate, min }) => {
            assert_eq!(min, DEFAULT_MIN_FEE_RATE);
            assert!(fee_rate < min);
        }
        other => panic!("expected FeeRateTooLow, got {other:?}"),
    }
    let free = f.pay(f.funding(0), 0, 1);
    assert!(matches!(
        f.accept(&mut pool, free),
        Err(MempoolError::FeeRateTooLow { .. })
    ));
    assert!(pool.is_empty());
}

#[test]
fn mempool_refuses_a_transaction_over_the_size_limit() {
    let f = Fixture::new();
    let mut pool = pool_with(MempoolLimits {
        tx_bytes_max: 150,
        ..MempoolLimits::default()
    });
    let tx = f.pay(f.funding(0), 1_000, 1);
    assert_eq!(
        f.accept(&mut pool, tx.clone()),
        Err(MempoolError::TooLarge {
            bytes: tx.total_size(),
            max: 150
        })
    );
}

#[test]
fn mempool_refuses_a_chain_of_unconfirmed_transactions_over_the_ancestor_limit() {
    let f = Fixture::new();
    let mut pool = pool_with(MempoolLimits {
        ancestor_count_max: 3,
        ..MempoolLimits::default()
    });
    let a = f.pay(f.funding(0), 1_000, 1);
    let b = f.pay(output_of(&a, 0), 1_000, 1);
    let c = f.pay(output_of(&b, 0), 1_000, 1);
    let d = f.pay(output_of(&c, 0), 1_000, 1);
    for tx in [a, b, c] {
        f.accept(&mut pool, tx).unwrap();
    }
    assert_eq!(
        f.accept(&mut pool, d),
        Err(MempoolError::TooManyAncestors { count: 4, max: 3 })
    );
    assert_eq!(pool.len(), 3);
}

#[test]
fn mempool_accepts_a_chain_of_unconfirmed_spends_and_detects_conflicts_within_it() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let parent = f.pay(f.funding(0), 1_000, 2);
    let parent_id = f.accept(&mut pool, parent.clone()).unwrap();
    let child = f.pay(output_of(&parent, 0), 1_000, 1);
    let child_id = f.accept(&mut pool, child).unwrap();
    assert_eq!(pool.len(), 2);
    assert_eq!(
        pool.spender_of(&OutPoint::new(parent_id, 0)),
        Some(child_id)
    );

    let rival = f.pay(output_of(&parent, 0), 5_000, 1);
    assert_eq!(
        f.accept(&mut pool, rival),
        Err(MempoolError::Conflict {
            outpoint: OutPoint::new(parent_id, 0),
            with: child_id
        })
    );
    // The parent's other output is still free to spend.
    let sibling = f.pay(output_of(&parent, 1), 1_000, 1);
    f.accept(&mut pool, sibling).unwrap();
    // An output the parent does not have is missing, not a pool coin.
    let absent = OutPoint::new(parent_id, 5);
    let bogus = f.pay((absent, parent.output[0].clone()), 1_000, 1);
    assert_eq!(
        f.accept(&mut pool, bogus),
        Err(MempoolError::Invalid(TxError::MissingInput(absent)))
    );
}

#[test]
fn mempool_full_refuses_a_newcomer_that_does_not_outbid_by_the_minimum_rate() {
    let f = Fixture::new();
    let mut pool = pool_with(MempoolLimits {
        count_max: 2,
        ..MempoolLimits::default()
    });
    let a = f.pay(f.funding(0), 10_000, 1);
    let b = f.pay(f.funding(1), 10_000, 1);
    f.accept(&mut pool, a.clone()).unwrap();
    f.accept(&mut pool, b.clone()).unwrap();
    let cheaper = f.pay(f.funding(2), 1_000, 1);
    assert_eq!(f.accept(&mut pool, cheaper), Err(MempoolError::PoolFull));
    // 10 sat more is a higher rate, but not by the 1 sat/byte increment.
    let barely = f.pay(f.funding(2), 10_010, 1);
    assert_eq!(f.accept(&mut pool, barely), Err(MempoolError::PoolFull));
    assert_eq!(as_set(pool.txids()), as_set(ids(&[&a, &b])));
}

#[test]
fn mempool_full_evicts_the_lowest_fee_rate_transaction_with_its_descendants() {
    let f = Fixture::new();
    let mut pool = pool_with(MempoolLimits {
        count_max: 3,
        ..MempoolLimits::default()
    });
    let low = f.pay(f.funding(0), 2_000, 1);
    let low_child = f.pay(output_of(&low, 0), 3_000, 1);
    let high = f.pay(f.funding(1), 20_000, 1);
    for tx in [&low, &low_child, &high] {
        f.accept(&mut pool, (*tx).clone()).unwrap();
    }
    let newcomer = f.pay(f.funding(2), 30_000, 1);
    f.accept(&mut pool, newcomer.clone()).unwrap();
    assert_eq!(as_set(pool.txids()), as_set(ids(&[&high, &newcomer])));
    assert_eq!(pool.spender_of(&f.funding(0).0), None);
    assert_eq!(pool.bytes(), high.total_size() + newcomer.total_size());
}

#[test]
fn mempool_eviction_keeps_a_cheap_parent_whose_child_pays_for_it() {
    let f = Fixture::new();
    let mut pool = pool_with(MempoolLimits {
        count_max: 3,
        ..MempoolLimits::default()
    });
    let parent = f.pay(f.funding(0), 300, 1);
    let child = f.pay(output_of(&parent, 0), 20_000, 1);
    let middling = f.pay(f.funding(1), 3_000, 1);
    for tx in [&parent, &child, &middling] {
        f.accept(&mut pool, (*tx).clone()).unwrap();
    }
    let newcomer = f.pay(f.funding(2), 10_000, 1);
    f.accept(&mut pool, newcomer.clone()).unwrap();
    assert_eq!(
        as_set(pool.txids()),
        as_set(ids(&[&parent, &child, &newcomer]))
    );
}

#[test]
fn mempool_expires_old_transactions_with_their_descendants() {
    let f = Fixture::new();
    let mut pool = pool_with(MempoolLimits {
        expiry_secs: 100,
        ..MempoolLimits::default()
    });
    let old = f.pay(f.funding(0), 1_000, 1);
    let old_child = f.pay(output_of(&old, 0), 1_000, 1);
    let newer = f.pay(f.funding(1), 1_000, 1);
    pool.accept(old.clone(), &f.coins, &f.ctx, 1_000).unwrap();
    pool.accept(old_child.clone(), &f.coins, &f.ctx, 1_050)
        .unwrap();
    pool.accept(newer.clone(), &f.coins, &f.ctx, 1_060).unwrap();
    assert!(pool.expire(1_099).is_empty());
    assert_eq!(as_set(pool.expire(1_100)), as_set(ids(&[&old, &old_child])));
    assert_eq!(pool.txids(), ids(&[&newer]));
    assert_eq!(pool.expire(1_160), ids(&[&newer]));
    assert!(pool.is_empty());
    assert_eq!(pool.bytes(), 0);
}

#[test]
fn mempool_remove_for_block_drops_included_and_conflicting_transactions() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let confirmed = f.pay(f.funding(0), 1_000, 1);
    let confirmed_child = f.pay(output_of(&confirmed, 0), 1_000, 1);
    let loser = f.pay(f.funding(1), 1_000, 1);
    let loser_child = f.pay(output_of(&loser, 0), 1_000, 1);
    let bystander = f.pay(f.funding(2), 1_000, 1);
    for tx in [
        &confirmed,
        &confirmed_child,
        &loser,
        &loser_child,
        &bystander,
    ] {
        f.accept(&mut pool, (*tx).clone()).unwrap();
    }
    let winner = f.pay(f.funding(1), 7_000, 1);
    let tip = f.blocks.last().unwrap().block_hash();
    let block = f.tc.block(
        tip,
        FUNDED_BLOCKS + 1,
        &f.owner,
        vec![confirmed.clone(), winner],
        Amount::from_sat(8_000),
    );
    let removed = pool.remove_for_block(&block);
    assert_eq!(removed.included, ids(&[&confirmed]));
    assert_eq!(
        as_set(removed.conflicted),
        as_set(ids(&[&loser, &loser_child]))
    );
    assert_eq!(
        as_set(pool.txids()),
        as_set(ids(&[&confirmed_child, &bystander]))
    );
    assert_eq!(pool.spender_of(&f.funding(1).0), None);
    // The child now spends a confirmed coin: it is selectable without its parent.
    let body = pool.select_for_block(1_000_000);
    assert_eq!(
        as_set(ids(&body.iter().collect::<Vec<_>>())),
        as_set(pool.txids())
    );
}

#[test]
fn mempool_readd_after_disconnect_returns_valid_transactions_and_reports_the_rest() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let height = FUNDED_BLOCKS + 1;
    let tip = f.blocks.last().unwrap().block_hash();
    // Block X (later disconnected) confirms `a`, its child `a2` and `d`.
    let a = f.pay(f.funding(0), 1_000, 2);
    let a2 = f.pay(output_of(&a, 1), 1_000, 1);
    let d = f.pay(f.funding(1), 1_000, 1);
    let x = f.tc.block(
        tip,
        height,
        &f.owner,
        vec![a.clone(), a2.clone(), d.clone()],
        Amount::from_sat(3_000),
    );
    let coins_at = |spent: &[OutPoint], created: &[&Transaction], coinbase: &Block| {
        let mut coins = f.coins.clone();
        for outpoint in spent {
            coins.remove(outpoint);
        }
        for tx in created {
            for (vout, output) in tx.output.iter().enumerate() {
                let coin = Coin {
                    output: output.clone(),
                    height,
                    is_coinbase: false,
                };
                coins.insert(OutPoint::new(tx.compute_txid(), vout as u32), coin);
            }
        }
        let (outpoint, output) = coinbase_output(coinbase);
        let coin = Coin {
            output,
            height,
            is_coinbase: true,
        };
        coins.insert(outpoint, coin);
        coins
    };
    let on_x = coins_at(
        &[
            f.funding(0).0,
            f.funding(1).0,
            OutPoint::new(a.compute_txid(), 1),
        ],
        &[&a, &a2, &d],
        &x,
    );
    let next = SpendContext {
        height: height + 1,
        ..f.ctx
    };
    // While X is the tip the pool holds a child of `a` and a spend of X's coinbase.
    let a_child = f.pay(output_of(&a, 0), 1_000, 1);
    let spends_x_coinbase = f.pay(coinbase_output(&x), 1_000, 1);
    pool.accept(a_child.clone(), &on_x, &next, 10).unwrap();
    pool.accept(spends_x_coinbase.clone(), &on_x, &next, 10)
        .unwrap();

    // Block Y replaces X and spends d's input differently.
    let d_rival = f.pay(f.funding(1), 9_000, 1);
    let y = f.tc.block_with_attempt(
        tip,
        height,
        1,
        &f.owner,
        vec![d_rival.clone()],
        Amount::from_sat(9_000),
    );
    let on_y = coins_at(&[f.funding(1).0], &[&d_rival], &y);
    // Disconnection order: newest first, so children precede parents.
    let mut disconnected = x.txdata.clone();
    disconnected.reverse();
    let refused = pool.readd_disconnected(disconnected, &on_y, &next, 20);

    let refused: HashMap<Txid, MempoolError> = refused.into_iter().collect();
    assert_eq!(
        refused,
        HashMap::from([
            (
                d.compute_txid(),
                MempoolError::Invalid(TxError::MissingInput(f.funding(1).0))
            ),
            (
                spends_x_coinbase.compute_txid(),
                MempoolError::Invalid(TxError::MissingInput(coinbase_output(&x).0))
            ),
        ])
    );
    assert_eq!(as_set(pool.txids()), as_set(ids(&[&a, &a2, &a_child])));
    assert_eq!(pool.entry(&a.compute_txid()).unwrap().entry_secs(), 20);
    assert_eq!(
        pool.entry(&a_child.compute_txid()).unwrap().entry_secs(),
        10
    );
    assert_eq!(
        pool.spender_of(&OutPoint::new(a.compute_txid(), 0)),
        Some(a_child.compute_txid())
    );
    assert_parents_first(&pool.select_for_block(1_000_000));
}

#[test]
fn mempool_selects_by_fee_rate_within_the_byte_budget() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let low = f.pay(f.funding(0), 1_000, 1);
    let high = f.pay(f.funding(1), 5_000, 1);
    let mid = f.pay(f.funding(2), 3_000, 1);
    for tx in [&low, &high, &mid] {
        f.accept(&mut pool, (*tx).clone()).unwrap();
    }
    assert_eq!(
        pool.select_for_block(1_000_000),
        vec![high.clone(), mid.clone(), low]
    );
    let budget = high.total_size() + mid.total_size();
    assert_eq!(pool.select_for_block(budget), vec![high.clone(), mid]);
    assert_eq!(pool.select_for_block(high.total_size()), vec![high]);
    assert!(pool.select_for_block(100).is_empty());
}

#[test]
fn mempool_selection_puts_parents_first_and_lets_a_child_pay_for_its_parent() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let parent = f.pay(f.funding(0), 300, 1);
    let child = f.pay(output_of(&parent, 0), 20_000, 1);
    let middling = f.pay(f.funding(1), 3_000, 1);
    // The child arrives before nothing else: order of arrival must not matter.
    for tx in [&middling, &parent, &child] {
        f.accept(&mut pool, (*tx).clone()).unwrap();
    }
    assert_eq!(
        pool.select_for_block(1_000_000),
        vec![parent.clone(), child.clone(), middling.clone()]
    );
    // Room for two: the parent-child package outranks the middling payment.
    let budget = parent.total_size() + child.total_size();
    assert_eq!(
        pool.select_for_block(budget),
        vec![parent.clone(), child.clone()]
    );
    // Room for the child alone: it cannot go without its parent; the best that fits is taken.
    let body = pool.select_for_block(child.total_size().max(middling.total_size()));
    assert_eq!(body, vec![middling]);
}

#[test]
fn mempool_selection_does_not_let_a_cheap_child_ride_on_a_rich_parent() {
    let f = Fixture::new();
    let mut pool = default_pool();
    let rich = f.pay(f.funding(0), 20_000, 1);
    let cheap_child = f.pay(output_of(&rich, 0), 300, 1);
    let middling = f.pay(f.funding(1), 3_000, 1);
    for tx in [&rich, &cheap_child, &middling] {
        f.accept(&mut pool, (*tx).clone()).unwrap();
    }
    let body = pool.select_for_block(1_000_000);
    assert_eq!(body, vec![rich.clone(), middling.clone(), cheap_child]);
    assert_parents_first(&body);
    let budget = rich.total_size() + middling.total_size();
    assert_eq!(pool.select_for_block(budget), vec![rich, middling]);
}
