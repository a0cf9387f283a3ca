//! Chain state behaviour: extension, fork choice, reorganisation, invalid blocks, equivocation,
//! restart.

use bitcoin::{Amount, TxOut};
use node::chain::{BlockOutcome, ChainError, ChainState};
use primitives::{Block, Coin};
use std::collections::BTreeMap;
use testkit::{
    block_time, coinbase_output, key, malleate_witness, p2wpkh, replace_producer_signature,
    TestChain,
};

/// Far enough after every test block that no block is "in the future".
const NOW: u64 = 2_000_000_000;

fn open(dir: &tempfile::TempDir, chain: &TestChain) -> ChainState {
    ChainState::open(&dir.path().join("chain.redb"), chain.params.clone()).unwrap()
}

/// A branch on genesis: `len` blocks by `miner` with certificate `attempt`; block 2 pays from
/// block 1's coinbase so the branches' coin sets really differ.
fn branch(chain: &TestChain, len: u32, miner: u32, attempt: u32) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut parent = chain.params.genesis_hash();
    for height in 1..=len {
        let txs = if height == 2 {
            let input = coinbase_output(&blocks[0]);
            let value = input.1.value - Amount::from_sat(500);
            vec![chain.spend(
                &[input],
                vec![TxOut {
                    value,
                    script_pubkey: p2wpkh(&chain.secp, &key(50 + miner)),
                }],
                &key(miner),
            )]
        } else {
            vec![]
        };
        let fees = if height == 2 {
            Amount::from_sat(500)
        } else {
            Amount::ZERO
        };
        let block = chain.block_with_attempt(parent, height, attempt, &key(miner), txs, fees);
        parent = block.block_hash();
        blocks.push(block);
    }
    blocks
}

fn extend(chain: &TestChain, on: &[Block], count: u32, miner: u32, attempt: u32) -> Vec<Block> {
    let mut parent = on.last().unwrap().block_hash();
    let start = on.last().unwrap().height() + 1;
    (start..start + count)
        .map(|height| {
            let b = chain.block_with_attempt(
                parent,
                height,
                attempt,
                &key(miner),
                vec![],
                Amount::ZERO,
            );
            parent = b.block_hash();
            b
        })
        .collect()
}

fn coin_set(state: &ChainState) -> BTreeMap<bitcoin::OutPoint, Coin> {
    state
        .store()
        .read()
        .unwrap()
        .all_coins()
        .unwrap()
        .into_iter()
        .collect()
}

fn feed(state: &mut ChainState, blocks: &[Block]) -> Vec<BlockOutcome> {
    blocks
        .iter()
        .map(|b| state.process_block(b.clone(), NOW).unwrap())
        .collect()
}

#[test]
fn reorganising_twice_ends_with_the_coin_set_of_a_node_that_saw_only_the_final_branch() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);

    // X carries the later certificates, so Y wins only by being longer.
    let x = branch(&chain, 3, 1, 1);
    let y = branch(&chain, 4, 2, 0);
    feed(&mut node, &x);
    assert_eq!(node.tip().unwrap(), (x[2].block_hash(), 3));

    // Y is longer: first switch. The last Y block triggers it and disconnects all of X.
    let outcomes = feed(&mut node, &y);
    assert!(outcomes[..3].iter().all(|o| *o == BlockOutcome::SideBranch));
    match &outcomes[3] {
        BlockOutcome::NewTip {
            disconnected,
            connected,
            ..
        } => {
            assert_eq!(disconnected.len(), 3);
            assert_eq!(disconnected[0].block_hash(), x[2].block_hash(), "tip first");
            assert_eq!(connected.len(), 4);
        }
        other => panic!("expected a reorganisation, got {other:?}"),
    }
    assert_eq!(node.tip().unwrap(), (y[3].block_hash(), 4));

    // X grows to 5: second switch, back to X.
    let mut x_final = x.clone();
    x_final.extend(extend(&chain, &x, 2, 1, 1));
    feed(&mut node, &x_final[3..]);
    assert_eq!(node.tip().unwrap(), (x_final[4].block_hash(), 5));

    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = open(&fresh_dir, &chain);
    feed(&mut fresh, &x_final);
    assert_eq!(fresh.tip().unwrap(), node.tip().unwrap());
    assert_eq!(coin_set(&node), coin_set(&fresh));
    node.store().read().unwrap().check_consistency().unwrap();
}

#[test]
fn at_equal_height_the_later_certificate_at_the_fork_wins_then_first_seen() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let first_draw = branch(&chain, 1, 1, 0);
    let fallback = branch(&chain, 1, 2, 1);

    feed(&mut node, &first_draw);
    assert_eq!(node.tip().unwrap().0, first_draw[0].block_hash());
    // The coordinator moved on to attempt 1 (the first draw's window ran out at its node):
    // the fallback's block replaces the first draw's, even seen later.
    assert!(matches!(
        feed(&mut node, &fallback)[0],
        BlockOutcome::NewTip { .. }
    ));
    assert_eq!(node.tip().unwrap().0, fallback[0].block_hash());
    // The silent first-draw winner publishing late (another block of attempt 0) never
    // displaces it.
    let late = branch(&chain, 1, 3, 0);
    assert_eq!(feed(&mut node, &late)[0], BlockOutcome::SideBranch);
    assert_eq!(node.tip().unwrap().0, fallback[0].block_hash());

    // Equal certificates' slots: the first seen stays.
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let a = branch(&chain, 1, 4, 1);
    let b = branch(&chain, 1, 5, 1);
    feed(&mut node, &a);
    assert_eq!(feed(&mut node, &b)[0], BlockOutcome::SideBranch);
    assert_eq!(node.tip().unwrap().0, a[0].block_hash());
}

#[test]
fn invalid_blocks_are_marked_and_their_descendants_refused() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let genesis = chain.params.genesis_hash();
    // Valid shape, but the coinbase claims one satoshi too many: caught when connecting.
    let greedy = chain.block(genesis, 1, &key(1), vec![], Amount::ONE_SAT);
    let greedy_hash = greedy.block_hash();
    let err = node.process_block(greedy.clone(), NOW).unwrap_err();
    assert!(matches!(err, ChainError::Invalid { .. }), "{err}");
    assert!(matches!(
        node.process_block(greedy.clone(), NOW),
        Err(ChainError::KnownInvalid { .. })
    ));
    let child = chain.block(greedy_hash, 2, &key(1), vec![], Amount::ZERO);
    assert!(matches!(
        node.process_block(child, NOW),
        Err(ChainError::InvalidAncestor { .. })
    ));
    assert_eq!(node.tip().unwrap(), (genesis, 0));
}

#[test]
fn a_longer_branch_with_an_invalid_block_leaves_the_chain_as_it_was() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let x = branch(&chain, 2, 1, 1);
    feed(&mut node, &x);
    let before = coin_set(&node);

    // Y carries the earlier certificates: it is tried only once it is longer.
    let y = branch(&chain, 1, 2, 0);
    let bad = chain.block_with_attempt(y[0].block_hash(), 2, 0, &key(2), vec![], Amount::ONE_SAT);
    let bad_child = extend(&chain, std::slice::from_ref(&bad), 1, 2, 0);
    feed(&mut node, &y);
    // Side branch blocks are stored without full validation; the overpaying one is found
    // when the longer branch is tried, and the old chain is put back.
    assert_eq!(
        node.process_block(bad, NOW).unwrap(),
        BlockOutcome::SideBranch
    );
    let err = node.process_block(bad_child[0].clone(), NOW).unwrap_err();
    assert!(matches!(err, ChainError::Invalid { .. }), "{err}");
    assert_eq!(node.tip().unwrap(), (x[1].block_hash(), 2));
    assert_eq!(coin_set(&node), before);
    node.store().read().unwrap().check_consistency().unwrap();
}

#[test]
fn orphans_and_future_blocks_are_refused_without_changing_the_chain() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let x = branch(&chain, 2, 1, 0);
    assert!(matches!(
        node.process_block(x[1].clone(), NOW),
        Err(ChainError::Orphan { .. })
    ));
    // Block 1 is two hours and one second ahead of this node's clock.
    let early_now = u64::from(block_time(1)) - 2 * 60 * 60 - 1;
    assert!(matches!(
        node.process_block(x[0].clone(), early_now),
        Err(ChainError::Invalid { .. })
    ));
    // A future block may become valid later: it is not marked invalid.
    assert!(matches!(
        node.process_block(x[0].clone(), NOW),
        Ok(BlockOutcome::NewTip { .. })
    ));
}

#[test]
fn conflicting_certificates_for_one_slot_are_kept_as_evidence_across_restarts() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let a = branch(&chain, 1, 1, 0);
    let b = branch(&chain, 1, 2, 0);
    {
        let mut node = open(&dir, &chain);
        feed(&mut node, &a);
        assert_eq!(node.equivocations().unwrap().len(), 0);
        feed(&mut node, &b);
        let evidence = node.equivocations().unwrap();
        assert_eq!(evidence.len(), 1);
        assert_eq!(
            evidence[0].slot(),
            storage::Slot {
                cycle: 1,
                height: 1,
                attempt: 0
            }
        );
    }
    let node = open(&dir, &chain);
    assert_eq!(node.equivocations().unwrap().len(), 1);
}

#[test]
fn a_copy_malleated_in_transit_never_makes_the_genuine_block_invalid() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    // Block 2 spends block 1's coinbase with a P2WPKH signature.
    let blocks = branch(&chain, 2, 1, 0);
    feed(&mut node, &blocks[..1]);
    let genuine = blocks[1].clone();
    let hash = genuine.block_hash();

    let copies = [
        ("witness", malleate_witness(&genuine, 1)),
        (
            "producer signature",
            replace_producer_signature(&chain.secp, &genuine, &key(9)),
        ),
    ];
    for (what, copy) in copies {
        assert_eq!(copy.block_hash(), hash, "{what}: same block hash");
        let err = node.process_block(copy.clone(), NOW).unwrap_err();
        assert!(matches!(err, ChainError::Invalid { .. }), "{what}: {err}");
        // Refused again on its merits, never as a remembered invalid block.
        let err = node.process_block(copy, NOW).unwrap_err();
        assert!(matches!(err, ChainError::Invalid { .. }), "{what}: {err}");
        assert!(
            node.store().block(&hash).unwrap().is_none(),
            "{what}: nothing stored"
        );
    }

    assert!(matches!(
        node.process_block(genuine.clone(), NOW),
        Ok(BlockOutcome::NewTip { height: 2, .. })
    ));
    assert_eq!(node.tip().unwrap(), (hash, 2));
    assert_eq!(node.store().block(&hash).unwrap(), Some(genuine));
}

#[test]
fn junk_blocks_around_public_certificates_are_no_evidence_against_the_coordinator() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let genesis = chain.params.genesis_hash();
    let miner = key(1).public_key(&chain.secp);
    // Two conflicting certificates for one slot, as a misbehaving coordinator would sign them
    // (here they are merely public): each wrapped in a block anyone can make without the miner's
    // key: no transactions, or a valid body with someone else's producer signature.
    let first = chain.sign_certificate(chain.certificate_body(1, genesis, 0, miner));
    let mut body = chain.certificate_body(1, genesis, 0, miner);
    body.score += 1;
    let second = chain.sign_certificate(body);
    let empty = chain.assemble(first, block_time(1), vec![], &key(1));
    let valid_body = chain.assemble(
        second,
        block_time(1),
        vec![chain.coinbase(1, chain.subsidy(), &key(1))],
        &key(1),
    );
    let forged_producer = replace_producer_signature(&chain.secp, &valid_body, &key(66));
    for junk in [empty, forged_producer] {
        assert!(node.process_block(junk, NOW).is_err());
    }
    assert_eq!(node.equivocations().unwrap(), vec![]);
    assert_eq!(node.tip().unwrap(), (genesis, 0));
}

#[test]
fn an_honest_reissue_in_the_next_cycle_is_no_evidence_but_a_second_certificate_in_one_cycle_is() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let mut node = open(&dir, &chain);
    let genesis = chain.params.genesis_hash();
    let block_in_cycle = |cycle: u64, miner: u32| {
        let mut body = chain.certificate_body(1, genesis, 0, key(miner).public_key(&chain.secp));
        body.cycle = cycle;
        let coinbase = chain.coinbase(1, chain.subsidy(), &key(miner));
        chain.assemble(
            chain.sign_certificate(body),
            block_time(1),
            vec![coinbase],
            &key(miner),
        )
    };
    // Cycle 7's winner stayed silent and published late, after cycle 8 drew again from
    // attempt 0 at the same height: a fork, not equivocation.
    feed(&mut node, &[block_in_cycle(8, 2), block_in_cycle(7, 1)]);
    assert_eq!(node.equivocations().unwrap(), vec![]);
    // Two certificates for (cycle 8, height 1, attempt 0) are.
    let _ = node.process_block(block_in_cycle(8, 3), NOW);
    let evidence = node.equivocations().unwrap();
    assert_eq!(evidence.len(), 1);
    assert_eq!(
        evidence[0].slot(),
        storage::Slot {
            cycle: 8,
            height: 1,
            attempt: 0
        }
    );
}

#[test]
fn restart_resumes_from_the_store_and_refuses_another_chain() {
    let chain = TestChain::new();
    let dir = tempfile::tempdir().unwrap();
    let x = branch(&chain, 3, 1, 0);
    {
        let mut node = open(&dir, &chain);
        feed(&mut node, &x);
    }
    let node = open(&dir, &chain);
    assert_eq!(node.tip().unwrap(), (x[2].block_hash(), 3));
    assert!(
        node.store().block(&x[1].block_hash()).unwrap().is_some(),
        "blocks survive the restart"
    );
    drop(node);

    let mut other = TestChain::new();
    other.params.genesis = primitives::genesis::build_genesis(
        &other.secp,
        &primitives::genesis::GenesisSpec {
            chain_id: other.params.chain_id,
            time: block_time(0),
            model_hash: primitives::Hash256::ZERO,
            message: "another chain",
            allocations: Vec::new(),
        },
        &other.coordinator,
    );
    assert!(matches!(
        ChainState::open(&dir.path().join("chain.redb"), other.params),
        Err(ChainError::WrongGenesis { .. })
    ));
}

#[test]
fn a_late_attempt_zero_block_never_splits_nodes_that_saw_blocks_in_other_orders() {
    let chain = TestChain::new();
    let genesis = chain.params.genesis_hash();
    let late = chain.block_with_attempt(genesis, 1, 0, &key(1), vec![], Amount::ZERO);
    let fallback = chain.block_with_attempt(genesis, 1, 1, &key(2), vec![], Amount::ZERO);
    let next = extend(&chain, std::slice::from_ref(&fallback), 2, 3, 0);
    let orders: Vec<Vec<&Block>> = vec![
        vec![&fallback, &next[0], &late, &next[1]],
        vec![&late, &fallback, &next[0], &next[1]],
        vec![&fallback, &late, &next[0], &next[1]],
        vec![&late, &next[0], &fallback, &next[1]],
    ];
    for (i, order) in orders.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut node = open(&dir, &chain);
        // Orphans wait and are retried once their parent is there, as the p2p layer does.
        let mut waiting: Vec<Block> = Vec::new();
        for block in order {
            waiting.push(block.clone());
            loop {
                let before = waiting.len();
                waiting.retain(|b| {
                    !matches!(
                        node.process_block(b.clone(), NOW),
                        Ok(_) | Err(ChainError::Invalid { .. })
                    )
                });
                if waiting.len() == before {
                    break;
                }
            }
        }
        assert_eq!(node.tip().unwrap(), (next[1].block_hash(), 3), "order {i}");
    }
}
