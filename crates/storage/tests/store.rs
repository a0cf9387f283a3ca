mod common;

use bitcoin::hashes::Hash;
use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut, Txid};
use common::*;
use primitives::{Block, BlockUndo, Coin};
use redb::{ReadableDatabase, TableDefinition};
use std::path::Path;
use storage::{
    BlockStatus, EquivocationEvidence, EvidenceError, EvidenceOutcome, Slot, Store, StoreError,
    SCHEMA_VERSION,
};
use tempfile::TempDir;

fn open_temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("chain.redb")).expect("open store");
    (dir, store)
}

/// Genesis plus `n` blocks, each spending the previous block's coinbase.
fn build_chain(store: &Store, n: u64) -> Vec<Block> {
    let mut blocks = vec![genesis()];
    connect(store, &blocks[0]);
    for tag in 1..=n {
        let spend = spendable_from_tip(store);
        let block = child_block(blocks.last().unwrap(), &spend, tag);
        connect(store, &block);
        blocks.push(block);
    }
    blocks
}

#[test]
fn headers_blocks_and_index_entries_round_trip() {
    let (_dir, store) = open_temp();
    let g = genesis();
    let a = child_block(&g, &[], 1);
    let b = child_block(&g, &[], 2);

    let header_entry = store.put_header(&a.header).unwrap();
    assert_eq!(header_entry.status, BlockStatus::HeaderOnly);
    assert_eq!(header_entry.seen_order, 0);
    assert_eq!(header_entry.height, 1);
    assert_eq!(header_entry.prev, g.block_hash());
    assert_eq!(header_entry.time, a.header.time);
    assert_eq!(
        store.header(&a.block_hash()).unwrap(),
        Some(a.header.clone())
    );
    assert_eq!(store.block(&a.block_hash()).unwrap(), None);

    let b_entry = store.put_block(&b).unwrap();
    assert_eq!(
        (b_entry.status, b_entry.seen_order),
        (BlockStatus::Stored, 1)
    );
    assert_eq!(store.block(&b.block_hash()).unwrap(), Some(b.clone()));
    assert_eq!(
        store.header(&b.block_hash()).unwrap(),
        Some(b.header.clone())
    );

    // The body of a header-only block upgrades it and keeps its first-seen order.
    let a_entry = store.put_block(&a).unwrap();
    assert_eq!(
        (a_entry.status, a_entry.seen_order),
        (BlockStatus::Stored, 0)
    );
    assert_eq!(store.index_entry(&a.block_hash()).unwrap(), Some(a_entry));
    // Seeing a header again changes nothing.
    assert_eq!(store.put_header(&a.header).unwrap(), a_entry);
    assert_eq!(store.read().unwrap().next_seen_order().unwrap(), 2);

    let mut all = store.read().unwrap().index_entries().unwrap();
    all.sort_by_key(|(_, e)| e.seen_order);
    assert_eq!(
        all,
        vec![(a.block_hash(), a_entry), (b.block_hash(), b_entry)]
    );
}

#[test]
fn chain_state_round_trips_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.redb");
    let store = Store::open(&path).unwrap();
    let blocks = build_chain(&store, 3);
    let utxo = utxo_of(&store);
    drop(store);

    let store = Store::open(&path).unwrap();
    let tip = blocks.last().unwrap();
    assert_eq!(store.tip().unwrap(), Some((tip.block_hash(), 3)));
    for (height, block) in blocks.iter().enumerate() {
        let hash = block.block_hash();
        assert_eq!(store.best_hash_at(height as u32).unwrap(), Some(hash));
        assert_eq!(store.block(&hash).unwrap().as_ref(), Some(block));
        assert_eq!(
            store
                .certificate_use(&block.header.certificate.id())
                .unwrap(),
            Some(hash)
        );
        assert_eq!(
            store.index_entry(&hash).unwrap().unwrap().status,
            BlockStatus::Connected
        );
    }
    assert_eq!(store.best_hash_at(4).unwrap(), None);
    // Block 3 spent block 2's two coinbase outputs.
    let undo = store.undo(&tip.block_hash()).unwrap().unwrap();
    let b2_coinbase = blocks[2].txdata[0].compute_txid();
    assert_eq!(
        undo.spent.iter().map(|(op, _)| *op).collect::<Vec<_>>(),
        vec![OutPoint::new(b2_coinbase, 0), OutPoint::new(b2_coinbase, 1)]
    );
    assert_eq!(utxo_of(&store), utxo);
    assert_eq!(replay_best_chain(&store), utxo);
    let summary = store.read().unwrap().check_consistency().unwrap();
    assert_eq!(summary.tip, Some((tip.block_hash(), 3)));
    assert_eq!(summary.coins, utxo.len() as u64);

    // The last block's coinbase (2 coins) and the miner halves of blocks 2..=3's spends (the
    // other halves pay `other_script`).
    let mine = store.coins_by_script(&miner_script()).unwrap();
    assert_eq!(mine.len(), 2 + 2);
    assert!(mine.iter().all(|(op, c)| utxo[op] == *c));
    assert_eq!(store.coins_by_script(&other_script()).unwrap().len(), 2);
}

#[test]
fn connect_then_disconnect_restores_utxo_set_and_tip() {
    let (_dir, store) = open_temp();
    let blocks = build_chain(&store, 2);
    let before = utxo_of(&store);
    let tip_before = store.tip().unwrap();

    let spend = spendable_from_tip(&store);
    let block = child_block(blocks.last().unwrap(), &spend, 99);
    connect(&store, &block);
    assert_ne!(utxo_of(&store), before);

    let disconnected = store.disconnect_tip().unwrap();
    assert_eq!(disconnected, block);
    assert_eq!(utxo_of(&store), before);
    assert_eq!(store.tip().unwrap(), tip_before);
    let hash = block.block_hash();
    assert_eq!(store.best_hash_at(3).unwrap(), None);
    assert_eq!(store.undo(&hash).unwrap(), None);
    assert_eq!(
        store
            .certificate_use(&block.header.certificate.id())
            .unwrap(),
        None
    );
    assert_eq!(
        store.index_entry(&hash).unwrap().unwrap().status,
        BlockStatus::Stored
    );
    // The body stays, so a reorg back to it needs no download.
    assert_eq!(store.block(&hash).unwrap(), Some(block.clone()));
    store.read().unwrap().check_consistency().unwrap();

    // And it can be connected again.
    connect(&store, &block);
    assert_eq!(store.tip().unwrap(), Some((hash, 3)));
    assert_eq!(replay_best_chain(&store), utxo_of(&store));
}

#[test]
fn disconnecting_genesis_or_nothing_is_refused() {
    let (_dir, store) = open_temp();
    assert!(matches!(store.disconnect_tip(), Err(StoreError::NoTip)));
    connect(&store, &genesis());
    assert!(matches!(
        store.disconnect_tip(),
        Err(StoreError::CannotDisconnectGenesis)
    ));
    assert_eq!(store.tip().unwrap(), Some((genesis().block_hash(), 0)));
}

/// Asserts a refused connect wrote nothing: same tip, coins, index status, certificate use.
fn assert_unchanged(store: &Store, before: &Snapshot, block: &Block) {
    assert_eq!(&Snapshot::take(store, block), before);
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    tip: Option<(bitcoin::BlockHash, u32)>,
    utxo: std::collections::BTreeMap<OutPoint, Coin>,
    status: Option<BlockStatus>,
    cert_use: Option<bitcoin::BlockHash>,
    undo: Option<BlockUndo>,
}

impl Snapshot {
    fn take(store: &Store, block: &Block) -> Self {
        Snapshot {
            tip: store.tip().unwrap(),
            utxo: utxo_of(store),
            status: store
                .index_entry(&block.block_hash())
                .unwrap()
                .map(|e| e.status),
            cert_use: store
                .certificate_use(&block.header.certificate.id())
                .unwrap(),
            undo: store.undo(&block.block_hash()).unwrap(),
        }
    }
}

#[test]
fn connect_off_the_tip_is_refused() {
    let (_dir, store) = open_temp();
    let blocks = build_chain(&store, 2);
    // A sibling of the tip: its parent is block 1, not the tip.
    let sibling = child_block(&blocks[1], &[], 50);
    let before = Snapshot::take(&store, &sibling);
    let err = store
        .connect_block(&sibling.block_hash(), &sibling, &BlockUndo::default(), &[])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotOnTip { parent, tip, .. }
            if parent == blocks[1].block_hash() && tip == Some(blocks[2].block_hash())),
        "{err}"
    );
    assert_unchanged(&store, &before, &sibling);

    // A genesis-like block on an empty store must have the zero parent.
    let (_dir2, empty) = open_temp();
    let err = empty
        .connect_block(&sibling.block_hash(), &sibling, &BlockUndo::default(), &[])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotOnTip { tip: None, .. }),
        "{err}"
    );
    assert_eq!(empty.tip().unwrap(), None);
}

#[test]
fn connect_with_wrong_hash_or_height_is_refused() {
    let (_dir, store) = open_temp();
    let blocks = build_chain(&store, 1);
    let block = child_block(&blocks[1], &[], 7);
    let err = store
        .connect_block(&blocks[1].block_hash(), &block, &BlockUndo::default(), &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::HashMismatch { .. }), "{err}");

    // Right parent, but the certificate claims height 5.
    let mut header = block.header.clone();
    header.certificate.body.height = 5;
    let lying = Block::sign(
        &bitcoin::secp256k1::Secp256k1::new(),
        header,
        block.txdata.clone(),
        &miner_key(),
    );
    let before = Snapshot::take(&store, &lying);
    let err = store
        .connect_block(&lying.block_hash(), &lying, &BlockUndo::default(), &[])
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::HeightMismatch {
                height: 5,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_unchanged(&store, &before, &lying);
}

#[test]
fn connect_with_bad_coin_changes_is_refused_and_rolled_back() {
    let (_dir, store) = open_temp();
    let blocks = build_chain(&store, 2);
    let spend = spendable_from_tip(&store);
    let block = child_block(&blocks[2], &spend, 9);
    let hash = block.block_hash();
    let view = store.read().unwrap();
    let (undo, created) = coin_changes(&block, |op| view.coin(op).unwrap());
    drop(view);
    let before = Snapshot::take(&store, &block);

    // Spends a coin that does not exist.
    let mut missing = undo.clone();
    let ghost = OutPoint::new(Txid::from_byte_array([0xee; 32]), 0);
    missing.spent.push((ghost, undo.spent[0].1.clone()));
    let err = store
        .connect_block(&hash, &block, &missing, &created)
        .unwrap_err();
    assert!(matches!(err, StoreError::MissingCoin { outpoint, .. } if outpoint == ghost));
    assert_unchanged(&store, &before, &block);

    // The same coin spent twice.
    let mut twice = undo.clone();
    twice.spent.push(undo.spent[0].clone());
    let err = store
        .connect_block(&hash, &block, &twice, &created)
        .unwrap_err();
    assert!(matches!(err, StoreError::MissingCoin { .. }), "{err}");
    assert_unchanged(&store, &before, &block);

    // An undo record that misstates the coin it spends.
    let mut wrong = undo.clone();
    wrong.spent[1].1.output.value = Amount::from_sat(1);
    let err = store
        .connect_block(&hash, &block, &wrong, &created)
        .unwrap_err();
    assert!(matches!(err, StoreError::UndoCoinMismatch { .. }), "{err}");
    assert_unchanged(&store, &before, &block);

    // Creates a coin that already exists: detected after the spends were applied in the
    // transaction, which must then leave no trace.
    let existing = store.coins_by_script(&other_script()).unwrap()[0].clone();
    let mut clash = created.clone();
    clash.push((
        existing.0,
        Coin {
            height: 3,
            ..existing.1
        },
    ));
    let err = store
        .connect_block(&hash, &block, &undo, &clash)
        .unwrap_err();
    assert!(matches!(err, StoreError::CoinExists { .. }), "{err}");
    assert_unchanged(&store, &before, &block);

    // A created coin at another height.
    let mut wrong_height = created.clone();
    wrong_height[0].1.height = 1;
    let err = store
        .connect_block(&hash, &block, &undo, &wrong_height)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::CreatedCoinHeight { coin_height: 1, .. }),
        "{err}"
    );
    assert_unchanged(&store, &before, &block);

    store.connect_block(&hash, &block, &undo, &created).unwrap();
    assert_eq!(replay_best_chain(&store), utxo_of(&store));
}

#[test]
fn status_changes_follow_the_rules() {
    let (_dir, store) = open_temp();
    let blocks = build_chain(&store, 1);
    let stored = child_block(&blocks[1], &[], 20);
    let header_only = child_block(&blocks[1], &[], 21);
    store.put_block(&stored).unwrap();
    store.put_header(&header_only.header).unwrap();

    let e = store
        .set_status(&stored.block_hash(), BlockStatus::Invalid(17))
        .unwrap();
    assert_eq!(e.status, BlockStatus::Invalid(17));
    assert_eq!(store.index_entry(&stored.block_hash()).unwrap(), Some(e));
    // An invalid block cannot be connected.
    let err = store
        .connect_block(&stored.block_hash(), &stored, &BlockUndo::default(), &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::StatusChange { .. }), "{err}");
    // Clearing the mark must match what is stored.
    assert!(store
        .set_status(&stored.block_hash(), BlockStatus::HeaderOnly)
        .is_err());
    assert_eq!(
        store
            .set_status(&stored.block_hash(), BlockStatus::Stored)
            .unwrap()
            .status,
        BlockStatus::Stored
    );
    assert!(store
        .set_status(&header_only.block_hash(), BlockStatus::Stored)
        .is_err());

    // Connected is only for connect/disconnect.
    assert!(matches!(
        store.set_status(&stored.block_hash(), BlockStatus::Connected),
        Err(StoreError::StatusChange { .. })
    ));
    assert!(matches!(
        store.set_status(&blocks[1].block_hash(), BlockStatus::Invalid(1)),
        Err(StoreError::StatusChange { .. })
    ));
    let unknown = bitcoin::BlockHash::from_byte_array([0xab; 32]);
    assert!(matches!(
        store.set_status(&unknown, BlockStatus::Invalid(1)),
        Err(StoreError::UnknownBlock(h)) if h == unknown
    ));
}

#[test]
fn equivocation_evidence_round_trips_and_keeps_the_first() {
    let (_dir, store) = open_temp();
    let g = genesis();
    let a = child_block_with_attempt(&g, &[], 1, 2).header.certificate;
    let b = child_block_with_attempt(&g, &[], 2, 2).header.certificate;
    let c = child_block_with_attempt(&g, &[], 3, 2).header.certificate;
    let other_slot = child_block_with_attempt(&g, &[], 4, 3).header.certificate;

    let ab = EquivocationEvidence::new(a.clone(), b.clone()).unwrap();
    assert_eq!(ab, EquivocationEvidence::new(b.clone(), a.clone()).unwrap());
    let slot = |cycle, height, attempt| Slot {
        cycle,
        height,
        attempt,
    };
    assert_eq!(ab.slot(), slot(1, 1, 2));
    assert_eq!(
        EquivocationEvidence::new(a.clone(), a.clone()),
        Err(EvidenceError::Identical)
    );
    assert!(matches!(
        EquivocationEvidence::new(a.clone(), other_slot),
        Err(EvidenceError::DifferentSlots(a, b)) if a == slot(1, 1, 2) && b == slot(1, 1, 3)
    ));
    let mut contribution = b.clone();
    contribution.body.kind = primitives::CertificateKind::Contribution;
    assert!(matches!(
        EquivocationEvidence::new(a.clone(), contribution),
        Err(EvidenceError::NotBlockSigning(_))
    ));

    assert_eq!(
        store.put_equivocation(&ab).unwrap(),
        EvidenceOutcome::Recorded
    );
    let ac = EquivocationEvidence::new(a.clone(), c).unwrap();
    assert_eq!(
        store.put_equivocation(&ac).unwrap(),
        EvidenceOutcome::AlreadyKnown
    );
    assert_eq!(store.equivocations().unwrap(), vec![ab.clone()]);
    assert_eq!(
        store.read().unwrap().equivocation(slot(1, 1, 2)).unwrap(),
        Some(ab.clone())
    );
    assert_eq!(
        store.read().unwrap().equivocation(slot(1, 1, 3)).unwrap(),
        None
    );

    // The decoder refuses a swapped pair and wrong lengths.
    let bytes = ab.encode();
    let half = bytes.len() / 2;
    let swapped = [&bytes[half..], &bytes[..half]].concat();
    assert_eq!(
        EquivocationEvidence::decode(&swapped),
        Err(EvidenceError::NotCanonicalOrder)
    );
    assert!(matches!(
        EquivocationEvidence::decode(&bytes[1..]),
        Err(EvidenceError::WrongLength { .. })
    ));
}

const RAW_META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const RAW_COINS: TableDefinition<[u8; 36], &[u8]> = TableDefinition::new("coins");

fn with_raw_db(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    f(&txn);
    txn.commit().unwrap();
}

#[test]
fn a_store_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.redb");
    drop(Store::open(&path).unwrap());
    with_raw_db(&path, |txn| {
        let mut meta = txn.open_table(RAW_META).unwrap();
        meta.insert(
            "schema_version",
            (SCHEMA_VERSION + 1).to_le_bytes().as_slice(),
        )
        .unwrap();
    });
    let err = Store::open(&path).err().unwrap();
    assert!(
        matches!(err, StoreError::SchemaVersion { found, expected }
            if found == SCHEMA_VERSION + 1 && expected == SCHEMA_VERSION),
        "{err}"
    );
}

#[test]
fn bad_bytes_on_disk_are_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.redb");
    let store = Store::open(&path).unwrap();
    build_chain(&store, 1);
    let (op, _) = store.coins_by_script(&miner_script()).unwrap()[0].clone();
    drop(store);

    let mut key = [0u8; 36];
    key[..32].copy_from_slice(op.txid.as_byte_array());
    key[32..].copy_from_slice(&op.vout.to_be_bytes());
    with_raw_db(&path, |txn| {
        let mut coins = txn.open_table(RAW_COINS).unwrap();
        coins.insert(key, [9u8, 9, 9].as_slice()).unwrap();
        let mut meta = txn.open_table(RAW_META).unwrap();
        meta.insert("tip", [1u8; 5].as_slice()).unwrap();
    });
    let store = Store::open(&path).unwrap();
    let err = store.coin(&op).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "coins", .. }),
        "{err}"
    );
    let err = store.tip().unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "meta", .. }),
        "{err}"
    );
    assert!(store.read().unwrap().check_consistency().is_err());
}

#[test]
fn a_dropped_write_transaction_leaves_nothing() {
    // What every write method relies on: redb discards a write transaction that is dropped
    // without commit, even after the process reopens the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.redb");
    let store = Store::open(&path).unwrap();
    build_chain(&store, 1);
    let before = utxo_of(&store);
    let tip = store.tip().unwrap();
    drop(store);

    let db = redb::Database::create(&path).unwrap();
    {
        let txn = db.begin_write().unwrap();
        {
            let mut coins = txn.open_table(RAW_COINS).unwrap();
            let coin = Coin {
                output: TxOut {
                    value: Amount::from_sat(5),
                    script_pubkey: ScriptBuf::new(),
                },
                height: 2,
                is_coinbase: false,
            };
            coins.insert([0x42; 36], coin.encode().as_slice()).unwrap();
            coins.pop_first().unwrap();
            let mut meta = txn.open_table(RAW_META).unwrap();
            meta.insert("tip", [0u8; 36].as_slice()).unwrap();
        }
        // Visible inside the transaction, invisible to a reader meanwhile.
        let reader = db.begin_read().unwrap();
        let coins = reader.open_table(RAW_COINS).unwrap();
        assert!(coins.get([0x42; 36]).unwrap().is_none());
        drop(txn);
    }
    drop(db);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.tip().unwrap(), tip);
    assert_eq!(utxo_of(&store), before);
    store.read().unwrap().check_consistency().unwrap();
}
