//! One test case per block rule: a block that breaks only that rule is rejected with that rule's
//! error variant, while the unbroken baseline block is accepted.

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, TxMerkleNode, TxOut};
use consensus::{
    check_block, check_block_context, connect_block, BlockContext, BlockError, CertificateError,
    TxError,
};
use primitives::{Block, CertificateKind, ChainParams, Coin, Hash256};
use std::collections::HashMap;
use testkit::{block_time, coinbase_output, key, p2wpkh, TestChain};

/// A chain of genesis + block 1 (coinbase to `miner`), ready for a block at height 2 that spends
/// block 1's coinbase.
struct Fixture {
    chain: TestChain,
    block1: Block,
    coins: HashMap<OutPoint, Coin>,
}

fn fixture() -> Fixture {
    let chain = TestChain::new();
    let miner = key(1);
    let block1 = chain.block(chain.params.genesis_hash(), 1, &miner, vec![], Amount::ZERO);
    let (outpoint, output) = coinbase_output(&block1);
    let coins = HashMap::from([(
        outpoint,
        Coin {
            output,
            height: 1,
            is_coinbase: true,
        },
    )]);
    Fixture {
        chain,
        block1,
        coins,
    }
}

impl Fixture {
    fn context(&self) -> BlockContext {
        BlockContext {
            height: 2,
            parent_hash: self.block1.block_hash(),
            median_time_past: block_time(1),
            now_secs: u64::from(block_time(2)),
            certificate_used_by: None,
            coinbase_maturity_blocks: self.chain.params.coinbase_maturity_blocks,
            parent_next_model_hash: Some(self.block1.header.certificate.body.next_model_hash),
        }
    }

    /// Spends block 1's coinbase: 1 BTC to key 2, the rest minus `fee` back to the miner.
    fn payment(&self, fee: Amount) -> bitcoin::Transaction {
        let input = coinbase_output(&self.block1);
        let secp = &self.chain.secp;
        let outputs = vec![
            TxOut {
                value: Amount::ONE_BTC,
                script_pubkey: p2wpkh(secp, &key(2)),
            },
            TxOut {
                value: input.1.value - Amount::ONE_BTC - fee,
                script_pubkey: p2wpkh(secp, &key(1)),
            },
        ];
        self.chain.spend(&[input], outputs, &key(1))
    }

    fn block2(&self, txs: Vec<bitcoin::Transaction>, fees: Amount) -> Block {
        self.chain
            .block(self.block1.block_hash(), 2, &key(1), txs, fees)
    }

    fn validate(&self, block: &Block) -> Result<(), BlockError> {
        self.validate_with(block, &self.context(), &self.chain.params)
    }

    fn validate_with(
        &self,
        block: &Block,
        ctx: &BlockContext,
        params: &ChainParams,
    ) -> Result<(), BlockError> {
        let checked = check_block(block, params)?;
        check_block_context(&checked, ctx)?;
        connect_block(&checked, ctx, &self.coins, params).map(|_| ())
    }
}

/// Re-signs `block` after its header was edited, as an attacker with the miner key could.
fn resign(f: &Fixture, mut block: Block) -> Block {
    let txdata = std::mem::take(&mut block.txdata);
    Block::sign(&f.chain.secp, block.header, txdata, &key(1))
}

#[test]
fn baseline_block_with_payment_is_valid_and_yields_undo() {
    let f = fixture();
    let fee = Amount::from_sat(1_000);
    let block = f.block2(vec![f.payment(fee)], fee);
    let checked = check_block(&block, &f.chain.params).unwrap();
    check_block_context(&checked, &f.context()).unwrap();
    let connected = connect_block(&checked, &f.context(), &f.coins, &f.chain.params).unwrap();
    assert_eq!(connected.fees, fee);
    assert_eq!(connected.undo.spent.len(), 1);
    // coinbase + two payment outputs
    assert_eq!(connected.created.len(), 3);
}

#[test]
fn block_spending_an_output_created_earlier_in_the_same_block_is_valid() {
    let f = fixture();
    let first = f.payment(Amount::ZERO);
    let second = f.chain.spend(
        &[(
            OutPoint::new(first.compute_txid(), 0),
            first.output[0].clone(),
        )],
        vec![TxOut {
            value: Amount::ONE_BTC,
            script_pubkey: p2wpkh(&f.chain.secp, &key(3)),
        }],
        &key(2),
    );
    let block = f.block2(vec![first, second], Amount::ZERO);
    let checked = check_block(&block, &f.chain.params).unwrap();
    let connected = connect_block(&checked, &f.context(), &f.coins, &f.chain.params).unwrap();
    // The intermediate output was created and spent inside the block: in neither list.
    assert_eq!(connected.undo.spent.len(), 1);
    assert_eq!(connected.created.len(), 3);
}

#[test]
fn each_broken_rule_is_rejected_with_its_own_error() {
    let f = fixture();
    let secp = &f.chain.secp;
    let parent = f.block1.block_hash();
    let miner_pk = key(1).public_key(secp);
    let good = || f.block2(vec![f.payment(Amount::ZERO)], Amount::ZERO);
    let cert_block = |edit: &dyn Fn(&mut primitives::UnsignedCertificate)| {
        let mut body = f.chain.certificate_body(2, parent, 0, miner_pk);
        edit(&mut body);
        let cert = f.chain.sign_certificate(body);
        let cb = f
            .chain
            .coinbase(cert.body.height, f.chain.subsidy(), &key(1));
        f.chain.assemble(cert, block_time(2), vec![cb], &key(1))
    };

    let mut cases: Vec<(&str, Block, BlockError)> = Vec::new();

    cases.push((
        "no transactions",
        f.chain.assemble(
            f.chain
                .sign_certificate(f.chain.certificate_body(2, parent, 0, miner_pk)),
            block_time(2),
            vec![],
            &key(1),
        ),
        BlockError::NoTransactions,
    ));
    cases.push((
        "first transaction not coinbase",
        f.chain.assemble(
            f.chain
                .sign_certificate(f.chain.certificate_body(2, parent, 0, miner_pk)),
            block_time(2),
            vec![f.payment(Amount::ZERO)],
            &key(1),
        ),
        BlockError::FirstNotCoinbase,
    ));
    let extra_cb = f.chain.coinbase(2, Amount::ONE_BTC, &key(9));
    cases.push((
        "second coinbase",
        f.block2(vec![extra_cb], Amount::ZERO),
        BlockError::ExtraCoinbase { index: 1 },
    ));
    let mut wrong_root = good();
    wrong_root.header.merkle_root = TxMerkleNode::from_byte_array([7; 32]);
    cases.push((
        "merkle root mismatch",
        resign(&f, wrong_root),
        BlockError::MerkleRootMismatch,
    ));
    let first_payment = f.payment(Amount::ZERO);
    let second_payment = f.chain.spend(
        &[(
            OutPoint::new(first_payment.compute_txid(), 1),
            first_payment.output[1].clone(),
        )],
        vec![TxOut {
            value: Amount::ONE_SAT,
            script_pubkey: p2wpkh(secp, &key(4)),
        }],
        &key(1),
    );
    let mut mutated = f.block2(
        vec![f.payment(Amount::ZERO), second_payment.clone()],
        Amount::ZERO,
    );
    mutated.txdata.push(second_payment);
    cases.push(("CVE-2012-2459 mutation", mutated, BlockError::MerkleMutated));
    cases.push((
        "contribution certificate",
        cert_block(&|c| c.kind = CertificateKind::Contribution),
        CertificateError::NotBlockSigning(CertificateKind::Contribution).into(),
    ));
    cases.push((
        "certificate for another chain",
        cert_block(&|c| c.chain_id += 1),
        CertificateError::WrongChain {
            expected: testkit::CHAIN_ID,
            found: testkit::CHAIN_ID + 1,
        }
        .into(),
    ));
    let rogue = key(666);
    let mut by_rogue = f.chain.certificate_body(2, parent, 0, miner_pk);
    by_rogue.coordinator = rogue.public_key(secp);
    let by_rogue = by_rogue.sign(secp, &rogue);
    let cb = f.chain.coinbase(2, f.chain.subsidy(), &key(1));
    cases.push((
        "certificate signed by a non-coordinator key",
        f.chain.assemble(by_rogue, block_time(2), vec![cb], &key(1)),
        CertificateError::UnknownCoordinator(rogue.public_key(secp)).into(),
    ));
    let mut forged = good();
    forged.header.certificate.body.score += 1;
    cases.push((
        "certificate edited after signing",
        resign(&f, forged),
        CertificateError::BadSignature.into(),
    ));
    let other_parent = BlockHash::from_byte_array([5; 32]);
    let mut unbound = good();
    unbound.header.certificate =
        f.chain
            .sign_certificate(f.chain.certificate_body(2, other_parent, 0, miner_pk));
    cases.push((
        "certificate bound to another parent",
        resign(&f, unbound),
        BlockError::CertificateParentMismatch {
            certificate: other_parent,
            header: parent,
        },
    ));
    let stolen = good();
    let stolen = Block::sign(secp, stolen.header, stolen.txdata, &key(2));
    cases.push((
        "block signed by a key other than the certificate's miner",
        stolen,
        BlockError::BadProducerSignature,
    ));
    let mut no_outputs = f.payment(Amount::ZERO);
    no_outputs.output.clear();
    cases.push((
        "transaction without outputs",
        f.block2(vec![no_outputs], Amount::ZERO),
        BlockError::Tx {
            index: 1,
            error: TxError::NoOutputs,
        },
    ));
    let mut wrong_height_cb = good();
    wrong_height_cb.txdata[0] = f.chain.coinbase(3, f.chain.subsidy(), &key(1));
    wrong_height_cb.header.merkle_root = wrong_height_cb.compute_merkle_root().root;
    cases.push((
        "coinbase without the block height (BIP34)",
        resign(&f, wrong_height_cb),
        BlockError::Tx {
            index: 0,
            error: TxError::CoinbaseHeightMismatch { expected: 2 },
        },
    ));
    cases.push((
        "certificate for another height",
        f.chain.block(parent, 3, &key(1), vec![], Amount::ZERO),
        BlockError::CertificateHeightMismatch {
            expected: 2,
            found: 3,
        },
    ));
    // Inside its certificate's window (issued early) but not after the median time past.
    let mut stale = cert_block(&|c| c.issued_at = u64::from(block_time(1)));
    stale.header.time = block_time(1);
    cases.push((
        "time not after median time past",
        resign(&f, stale),
        BlockError::TimeTooOld {
            time: block_time(1),
            median: block_time(1),
        },
    ));
    let future = block_time(2) + 2 * 60 * 60 + 1;
    let mut early = good();
    early.header.time = future;
    cases.push((
        "time more than two hours ahead",
        resign(&f, early),
        BlockError::TimeTooNew {
            time: future,
            now: u64::from(block_time(2)),
        },
    ));
    let input = coinbase_output(&f.block1);
    let spend_again = |to: u32| {
        f.chain.spend(
            std::slice::from_ref(&input),
            vec![TxOut {
                value: Amount::ONE_BTC,
                script_pubkey: p2wpkh(secp, &key(to)),
            }],
            &key(1),
        )
    };
    cases.push((
        "output spent twice in the block",
        f.block2(vec![spend_again(2), spend_again(3)], Amount::ZERO),
        BlockError::DoubleSpend(input.0),
    ));
    let overpay = f.chain.block(parent, 2, &key(1), vec![], Amount::ONE_SAT);
    cases.push((
        "coinbase pays more than subsidy plus fees",
        overpay,
        BlockError::CoinbaseOverpays {
            paid: f.chain.subsidy() + Amount::ONE_SAT,
            allowed: f.chain.subsidy(),
        },
    ));
    let missing = OutPoint::new(bitcoin::Txid::from_byte_array([8; 32]), 0);
    let spend_missing = f.chain.spend(
        &[(missing, input.1.clone())],
        vec![TxOut {
            value: Amount::ONE_SAT,
            script_pubkey: p2wpkh(secp, &key(2)),
        }],
        &key(1),
    );
    cases.push((
        "spend of an unknown output",
        f.block2(vec![spend_missing], Amount::ZERO),
        BlockError::Tx {
            index: 1,
            error: TxError::MissingInput(missing),
        },
    ));

    // The certificate's window: a header time after its expiry (a silent winner publishing
    // late) or before its issue.
    let late = u64::from(block_time(2)) - 1;
    cases.push((
        "header time after the certificate expired",
        cert_block(&|c| c.expires_at = late),
        BlockError::OutsideCertificateWindow {
            time: block_time(2),
            issued_at: u64::from(testkit::GENESIS_TIME) + 120,
            expires_at: late,
        },
    ));
    let early = u64::from(block_time(2)) + 1;
    cases.push((
        "header time before the certificate was issued",
        cert_block(&|c| c.issued_at = early),
        BlockError::OutsideCertificateWindow {
            time: block_time(2),
            issued_at: early,
            expires_at: u64::from(block_time(2)) + 86_400,
        },
    ));
    // Lineage: the certificate trains another model than the parent's cycle produced.
    cases.push((
        "model not the parent's next model",
        cert_block(&|c| c.model_hash = Hash256([0x77; 32])),
        BlockError::ModelLineageBroken {
            expected: f.block1.header.certificate.body.next_model_hash,
            found: Hash256([0x77; 32]),
        },
    ));

    for (name, block, expected) in cases {
        assert_eq!(f.validate(&block), Err(expected), "case: {name}");
    }
}

#[test]
fn window_and_lineage_failures_are_permanent() {
    // Both are failures of bytes the block hash commits to (header time, certificate).
    let outside = BlockError::OutsideCertificateWindow {
        time: 1,
        issued_at: 2,
        expires_at: 3,
    };
    let lineage = BlockError::ModelLineageBroken {
        expected: Hash256([1; 32]),
        found: Hash256([2; 32]),
    };
    assert!(outside.is_permanent() && lineage.is_permanent());
}

#[test]
fn oversize_block_is_rejected() {
    let f = fixture();
    let block = f.block2(vec![f.payment(Amount::ZERO)], Amount::ZERO);
    let mut params = f.chain.params.clone();
    params.block_bytes_max = 600;
    assert_eq!(
        f.validate_with(&block, &f.context(), &params),
        Err(BlockError::Oversize {
            bytes: block.encoded_len(),
            max: 600
        })
    );
}

#[test]
fn wrong_parent_and_reused_certificate_are_rejected() {
    let f = fixture();
    let block = f.block2(vec![], Amount::ZERO);
    let other = BlockHash::from_byte_array([9; 32]);
    let mut ctx = f.context();
    ctx.parent_hash = other;
    assert_eq!(
        f.validate_with(&block, &ctx, &f.chain.params),
        Err(BlockError::ParentMismatch {
            expected: other,
            found: f.block1.block_hash()
        })
    );
    let mut ctx = f.context();
    ctx.certificate_used_by = Some(other);
    assert_eq!(
        f.validate_with(&block, &ctx, &f.chain.params),
        Err(BlockError::CertificateReused {
            certificate: block.header.certificate.id(),
            block: other
        })
    );
    // The block that holds the certificate is not a reuse of itself.
    ctx.certificate_used_by = Some(block.block_hash());
    assert_eq!(f.validate_with(&block, &ctx, &f.chain.params), Ok(()));
}

#[test]
fn immature_coinbase_spend_is_rejected() {
    let f = fixture();
    let mut ctx = f.context();
    ctx.coinbase_maturity_blocks = 2;
    let block = f.block2(vec![f.payment(Amount::ZERO)], Amount::ZERO);
    assert_eq!(
        f.validate_with(&block, &ctx, &f.chain.params),
        Err(BlockError::Tx {
            index: 1,
            error: TxError::ImmatureCoinbase {
                outpoint: coinbase_output(&f.block1).0,
                confirmations: 1,
                required: 2
            }
        })
    );
}

#[test]
fn op_return_outputs_never_enter_the_coin_set() {
    let f = fixture();
    let input = coinbase_output(&f.block1);
    let tx = f.chain.spend(
        std::slice::from_ref(&input),
        vec![
            TxOut {
                value: Amount::ZERO,
                script_pubkey: ScriptBuf::new_op_return([1u8; 8]),
            },
            TxOut {
                value: input.1.value,
                script_pubkey: p2wpkh(&f.chain.secp, &key(1)),
            },
        ],
        &key(1),
    );
    let txid = tx.compute_txid();
    let block = f.block2(vec![tx], Amount::ZERO);
    let checked = check_block(&block, &f.chain.params).unwrap();
    let connected = connect_block(&checked, &f.context(), &f.coins, &f.chain.params).unwrap();
    let created: Vec<OutPoint> = connected.created.iter().map(|(o, _)| *o).collect();
    assert!(!created.contains(&OutPoint::new(txid, 0)));
    assert!(created.contains(&OutPoint::new(txid, 1)));
}

#[test]
fn a_relayer_cannot_change_a_block_without_changing_its_hash_except_in_ways_never_remembered() {
    let f = fixture();
    let good = f.block2(vec![f.payment(Amount::ZERO)], Amount::ZERO);
    assert_eq!(f.validate(&good), Ok(()));

    // A witness malleated in transit: same txids, same block hash, same producer signature.
    let malleated = testkit::malleate_witness(&good, 1);
    assert_eq!(malleated.block_hash(), good.block_hash());
    assert_eq!(malleated.txids(), good.txids());
    assert_ne!(malleated, good);
    // The header's root is over wtxids, so the copy no longer matches its header ...
    let error = f.validate(&malleated).unwrap_err();
    assert_eq!(error, BlockError::MerkleRootMismatch);
    // ... which says nothing about the block the header names.
    assert!(!error.is_permanent());

    // The producer signature is outside the hash too.
    let resigned = testkit::replace_producer_signature(&f.chain.secp, &good, &key(7));
    assert_eq!(resigned.block_hash(), good.block_hash());
    let error = f.validate(&resigned).unwrap_err();
    assert_eq!(error, BlockError::BadProducerSignature);
    assert!(!error.is_permanent());
}

#[test]
fn the_header_root_commits_to_wtxids_and_equals_the_txid_root_without_witnesses() {
    let f = fixture();
    let empty = f.block2(vec![], Amount::ZERO);
    let txid_root = primitives::merkle::merkle_root(&empty.txids()).root;
    assert_eq!(empty.header.merkle_root, txid_root);

    let with_spend = f.block2(vec![f.payment(Amount::ZERO)], Amount::ZERO);
    let txid_root = primitives::merkle::merkle_root(&with_spend.txids()).root;
    assert_ne!(with_spend.header.merkle_root, txid_root);
    let wtxids: Vec<bitcoin::Txid> = with_spend
        .txdata
        .iter()
        .map(|tx| bitcoin::Txid::from_raw_hash(tx.compute_wtxid().to_raw_hash()))
        .collect();
    assert_eq!(
        with_spend.header.merkle_root,
        primitives::merkle::merkle_root(&wtxids).root
    );
}
