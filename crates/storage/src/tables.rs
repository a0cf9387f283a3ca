//! Table layout and the encodings of keys and values that are not a primitives type.
//!
//! Hashes are keys in their internal byte order (`as_byte_array`, not the reversed hex form).
//! Heights are redb `u32` keys, which redb orders numerically. Variable records are stored as
//! `&[u8]` and decoded here, so a bad byte on disk becomes [`StoreError::Corrupt`], never a panic.

use crate::error::StoreError;
use crate::evidence::EquivocationEvidence;
use crate::index::IndexEntry;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint, Txid};
use primitives::{Block, BlockHeader, BlockUndo, Coin};
use redb::TableDefinition;

/// Version of this table layout; a store written with another one is refused at open.
/// 2: header Merkle roots over wtxids, equivocation evidence keyed by (cycle, height, attempt).
/// 3: certificates with expiry, record and next-model hashes; index entries with cycle and next
/// model hash.
pub const SCHEMA_VERSION: u32 = 3;

pub(crate) type HashKey = [u8; 32];
pub(crate) type OutPointKey = [u8; OUTPOINT_KEY_BYTES];

/// `txid [32] || vout u32 big-endian`: big-endian so one transaction's outputs sort in order.
pub const OUTPOINT_KEY_BYTES: usize = 36;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const HEADERS: TableDefinition<HashKey, &[u8]> = TableDefinition::new("headers");
pub(crate) const BLOCKS: TableDefinition<HashKey, &[u8]> = TableDefinition::new("blocks");
pub(crate) const INDEX: TableDefinition<HashKey, &[u8]> = TableDefinition::new("block_index");
pub(crate) const BEST_CHAIN: TableDefinition<u32, HashKey> = TableDefinition::new("best_chain");
pub(crate) const COINS: TableDefinition<OutPointKey, &[u8]> = TableDefinition::new("coins");
pub(crate) const UNDO: TableDefinition<HashKey, &[u8]> = TableDefinition::new("undo");
pub(crate) const CREATED: TableDefinition<HashKey, &[u8]> = TableDefinition::new("created");
pub(crate) const CERT_USES: TableDefinition<HashKey, HashKey> =
    TableDefinition::new("certificate_uses");
/// Keyed by (cycle, height, attempt).
pub(crate) const EQUIVOCATIONS: TableDefinition<(u64, u32, u32), &[u8]> =
    TableDefinition::new("equivocations");

/// Keys of the `meta` table.
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
pub(crate) const META_TIP: &str = "tip";
pub(crate) const META_NEXT_SEEN_ORDER: &str = "next_seen_order";

pub(crate) fn hash_key(hash: &BlockHash) -> HashKey {
    hash.to_byte_array()
}

pub(crate) fn outpoint_key(outpoint: &OutPoint) -> OutPointKey {
    let mut key = [0u8; OUTPOINT_KEY_BYTES];
    key[..32].copy_from_slice(outpoint.txid.as_byte_array());
    key[32..].copy_from_slice(&outpoint.vout.to_be_bytes());
    key
}

pub(crate) fn outpoint_from_key(key: &OutPointKey) -> OutPoint {
    let mut txid = [0u8; 32];
    txid.copy_from_slice(&key[..32]);
    let mut vout = [0u8; 4];
    vout.copy_from_slice(&key[32..]);
    OutPoint::new(Txid::from_byte_array(txid), u32::from_be_bytes(vout))
}

pub(crate) fn decode_block(hash: &BlockHash, bytes: &[u8]) -> Result<Block, StoreError> {
    let block = Block::decode(bytes).map_err(|e| StoreError::corrupt("blocks", hash, e))?;
    let actual = block.block_hash();
    if actual != *hash {
        return Err(StoreError::corrupt(
            "blocks",
            hash,
            format!("body hashes to {actual}"),
        ));
    }
    Ok(block)
}

pub(crate) fn decode_header(hash: &BlockHash, bytes: &[u8]) -> Result<BlockHeader, StoreError> {
    let header = BlockHeader::decode(bytes).map_err(|e| StoreError::corrupt("headers", hash, e))?;
    let actual = header.block_hash();
    if actual != *hash {
        return Err(StoreError::corrupt(
            "headers",
            hash,
            format!("header hashes to {actual}"),
        ));
    }
    Ok(header)
}

pub(crate) fn decode_index(hash: &BlockHash, bytes: &[u8]) -> Result<IndexEntry, StoreError> {
    IndexEntry::decode(bytes).map_err(|e| StoreError::corrupt("block_index", hash, e))
}

pub(crate) fn decode_coin(outpoint: &OutPoint, bytes: &[u8]) -> Result<Coin, StoreError> {
    Coin::decode(bytes).map_err(|e| StoreError::corrupt("coins", outpoint, e))
}

pub(crate) fn decode_undo(hash: &BlockHash, bytes: &[u8]) -> Result<BlockUndo, StoreError> {
    BlockUndo::decode(bytes).map_err(|e| StoreError::corrupt("undo", hash, e))
}

pub(crate) fn decode_evidence(
    key: (u64, u32, u32),
    bytes: &[u8],
) -> Result<EquivocationEvidence, StoreError> {
    let evidence = EquivocationEvidence::decode(bytes)
        .map_err(|e| StoreError::corrupt("equivocations", format!("{key:?}"), e))?;
    if evidence.slot().key() != key {
        return Err(StoreError::corrupt(
            "equivocations",
            format!("{key:?}"),
            format!("evidence is for slot {}", evidence.slot()),
        ));
    }
    Ok(evidence)
}

/// `count u32 LE || outpoint key (36 bytes)*`: the coins a connected block added.
pub(crate) fn encode_created(created: &[(OutPoint, Coin)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + created.len() * OUTPOINT_KEY_BYTES);
    out.extend_from_slice(&(created.len() as u32).to_le_bytes());
    for (outpoint, _) in created {
        out.extend_from_slice(&outpoint_key(outpoint));
    }
    out
}

pub(crate) fn decode_created(hash: &BlockHash, bytes: &[u8]) -> Result<Vec<OutPoint>, StoreError> {
    let corrupt = |reason: String| StoreError::corrupt("created", hash, reason);
    let (count, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt(format!("{} bytes, shorter than the count", bytes.len())))?;
    let count = u32::from_le_bytes(*count) as usize;
    if rest.len() != count * OUTPOINT_KEY_BYTES {
        return Err(corrupt(format!(
            "{count} outpoints claimed in {} bytes",
            rest.len()
        )));
    }
    Ok(rest
        .chunks_exact(OUTPOINT_KEY_BYTES)
        .map(|chunk| {
            let mut key = [0u8; OUTPOINT_KEY_BYTES];
            key.copy_from_slice(chunk);
            outpoint_from_key(&key)
        })
        .collect())
}

/// `hash [32] || height u32 LE`.
pub(crate) fn encode_tip(hash: &BlockHash, height: u32) -> [u8; 36] {
    let mut out = [0u8; 36];
    out[..32].copy_from_slice(hash.as_byte_array());
    out[32..].copy_from_slice(&height.to_le_bytes());
    out
}

pub(crate) fn decode_tip(bytes: &[u8]) -> Result<(BlockHash, u32), StoreError> {
    let bytes: &[u8; 36] = bytes.try_into().map_err(|_| {
        StoreError::corrupt("meta", META_TIP, format!("{} bytes, not 36", bytes.len()))
    })?;
    let (hash, height) = bytes.split_at(32);
    let mut h = [0u8; 32];
    h.copy_from_slice(hash);
    let mut n = [0u8; 4];
    n.copy_from_slice(height);
    Ok((BlockHash::from_byte_array(h), u32::from_le_bytes(n)))
}

pub(crate) fn decode_u64(key: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("meta", key, format!("{} bytes, not 8", bytes.len())))?;
    Ok(u64::from_le_bytes(arr))
}

pub(crate) fn decode_u32(key: &'static str, bytes: &[u8]) -> Result<u32, StoreError> {
    let arr: [u8; 4] = bytes
        .try_into()
        .map_err(|_| StoreError::corrupt("meta", key, format!("{} bytes, not 4", bytes.len())))?;
    Ok(u32::from_le_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outpoint_keys_round_trip_and_sort_by_vout() {
        let txid = Txid::from_byte_array([9; 32]);
        let a = OutPoint::new(txid, 1);
        let b = OutPoint::new(txid, 256);
        assert_eq!(outpoint_from_key(&outpoint_key(&a)), a);
        assert!(outpoint_key(&a) < outpoint_key(&b));
    }

    #[test]
    fn created_list_decoder_rejects_bad_lengths() {
        let hash = BlockHash::from_byte_array([1; 32]);
        let op = OutPoint::new(Txid::from_byte_array([2; 32]), 3);
        let coin = Coin {
            output: bitcoin::TxOut::NULL,
            height: 0,
            is_coinbase: false,
        };
        let bytes = encode_created(&[(op, coin)]);
        assert_eq!(decode_created(&hash, &bytes).unwrap(), vec![op]);
        assert!(decode_created(&hash, &bytes[..bytes.len() - 1]).is_err());
        assert!(decode_created(&hash, &[bytes.as_slice(), &[0]].concat()).is_err());
        assert!(decode_created(&hash, &[1, 0]).is_err());
    }

    #[test]
    fn tip_record_rejects_wrong_length() {
        let hash = BlockHash::from_byte_array([4; 32]);
        assert_eq!(decode_tip(&encode_tip(&hash, 7)).unwrap(), (hash, 7));
        assert!(decode_tip(&[0; 35]).is_err());
    }
}
