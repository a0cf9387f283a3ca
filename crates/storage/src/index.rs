//! Block index entries: what the node knows about every header it has seen, in a fixed-width
//! encoding with a decoder that accepts exactly one byte string per value.

use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use primitives::encoding::{DecodeError, Reader, Writer};
use primitives::BlockHeader;

/// Version byte of the entry encoding; the decoder refuses any other.
pub const INDEX_ENTRY_VERSION: u8 = 2;

/// Bytes of an encoded entry: version, status, reason, height, previous hash, cycle, attempt,
/// time, seen order, next model hash.
pub const INDEX_ENTRY_BYTES: usize = 1 + 1 + 2 + 4 + 32 + 8 + 4 + 4 + 8 + 32;

/// How far the node got with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockStatus {
    /// Only the header is stored.
    HeaderOnly,
    /// Header and body are stored; the block is not on the best chain.
    Stored,
    /// On the best chain: its coins are in the UTXO set and its undo record is stored.
    Connected,
    /// Failed validation. The code is the node's; the store keeps it so a restarted node does
    /// not validate the block again.
    Invalid(u16),
}

impl BlockStatus {
    fn code(self) -> (u8, u16) {
        match self {
            BlockStatus::HeaderOnly => (0, 0),
            BlockStatus::Stored => (1, 0),
            BlockStatus::Connected => (2, 0),
            BlockStatus::Invalid(reason) => (3, reason),
        }
    }

    fn from_code(status: u8, reason: u16) -> Result<Self, DecodeError> {
        let status = match status {
            0 => BlockStatus::HeaderOnly,
            1 => BlockStatus::Stored,
            2 => BlockStatus::Connected,
            3 => return Ok(BlockStatus::Invalid(reason)),
            value => {
                return Err(DecodeError::InvalidEnum {
                    field: "block status",
                    value,
                })
            }
        };
        // Only `Invalid` carries a reason; anything else in those bytes is a second encoding of
        // the same value.
        if reason != 0 {
            return Err(DecodeError::InvalidEnum {
                field: "reason of a valid block status",
                value: u8::try_from(reason).unwrap_or(u8::MAX),
            });
        }
        Ok(status)
    }
}

/// One block index entry. Height, parent, cycle, attempt, time and next model hash are copies
/// of header fields, kept here so fork choice and the lineage rule can walk the index without
/// decoding headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub height: u32,
    pub prev: BlockHash,
    /// Certificate cycle and attempt (fork choice's first tie-break: the later certificate).
    pub cycle: u64,
    pub attempt: u32,
    pub status: BlockStatus,
    /// Order in which this node first saw the header, from 0 (fork choice's second tie-break).
    /// Assigned by the store when it first records the header.
    pub seen_order: u64,
    /// Header timestamp, Unix seconds.
    pub time: u32,
    /// The certificate's `next_model_hash`: what a child block's certificate must train.
    pub next_model_hash: primitives::Hash256,
}

impl IndexEntry {
    pub fn for_header(header: &BlockHeader, status: BlockStatus, seen_order: u64) -> Self {
        IndexEntry {
            height: header.height(),
            prev: header.prev_block_hash,
            cycle: header.certificate.body.cycle,
            attempt: header.certificate.body.attempt,
            status,
            seen_order,
            time: header.time,
            next_model_hash: header.certificate.body.next_model_hash,
        }
    }

    /// True if the copied fields agree with `header`.
    pub fn matches_header(&self, header: &BlockHeader) -> bool {
        let expected = IndexEntry::for_header(header, self.status, self.seen_order);
        *self == expected
    }

    /// `version u8 | status u8 | reason u16 | height u32 | prev [32] | cycle u64 | attempt u32 |
    /// time u32 | seen_order u64 | next_model_hash [32]`, integers little-endian.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_BYTES] {
        let (status, reason) = self.status.code();
        let mut w = Writer::with_capacity(INDEX_ENTRY_BYTES);
        w.u8(INDEX_ENTRY_VERSION)
            .u8(status)
            .u16(reason)
            .u32(self.height)
            .bytes(self.prev.as_byte_array())
            .u64(self.cycle)
            .u32(self.attempt)
            .u32(self.time)
            .u64(self.seen_order)
            .bytes(&self.next_model_hash.0);
        let bytes = w.finish();
        let mut out = [0u8; INDEX_ENTRY_BYTES];
        out.copy_from_slice(&bytes);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > INDEX_ENTRY_BYTES {
            return Err(DecodeError::Oversize {
                len: bytes.len(),
                max: INDEX_ENTRY_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u8("index entry version")?;
        if version != INDEX_ENTRY_VERSION {
            return Err(DecodeError::UnknownVersion {
                field: "index entry",
                value: version.into(),
            });
        }
        let status = r.u8("block status")?;
        let reason = r.u16("invalid reason")?;
        let entry = IndexEntry {
            status: BlockStatus::from_code(status, reason)?,
            height: r.u32("height")?,
            prev: BlockHash::from_byte_array(r.array("previous block hash")?),
            cycle: r.u64("cycle")?,
            attempt: r.u32("attempt")?,
            time: r.u32("time")?,
            seen_order: r.u64("seen order")?,
            next_model_hash: primitives::Hash256(r.array("next model hash")?),
        };
        r.finish()?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: BlockStatus) -> IndexEntry {
        IndexEntry {
            height: 0x0102_0304,
            prev: BlockHash::from_byte_array([7; 32]),
            cycle: 0x0a0b_0c0d_0e0f,
            attempt: 3,
            status,
            seen_order: u64::MAX - 1,
            time: 1_700_000_000,
            next_model_hash: primitives::Hash256([9; 32]),
        }
    }

    #[test]
    fn every_status_round_trips() {
        for status in [
            BlockStatus::HeaderOnly,
            BlockStatus::Stored,
            BlockStatus::Connected,
            BlockStatus::Invalid(0),
            BlockStatus::Invalid(513),
        ] {
            let e = entry(status);
            assert_eq!(IndexEntry::decode(&e.encode()), Ok(e));
        }
    }

    #[test]
    fn decoder_rejects_malformed_entries() {
        let good = entry(BlockStatus::Stored).encode();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            b
        };
        assert_eq!(
            IndexEntry::decode(&good[..INDEX_ENTRY_BYTES - 1]),
            Err(DecodeError::Truncated {
                field: "next model hash",
                needed: 1
            })
        );
        assert!(matches!(
            IndexEntry::decode(&[good.as_slice(), &[0]].concat()),
            Err(DecodeError::Oversize { .. })
        ));
        assert_eq!(
            IndexEntry::decode(&with(0, 1)),
            Err(DecodeError::UnknownVersion {
                field: "index entry",
                value: 1
            })
        );
        assert_eq!(
            IndexEntry::decode(&with(1, 4)),
            Err(DecodeError::InvalidEnum {
                field: "block status",
                value: 4
            })
        );
        // A reason on a status that has none would be a second encoding of `Stored`.
        assert!(matches!(
            IndexEntry::decode(&with(2, 1)),
            Err(DecodeError::InvalidEnum { .. })
        ));
        assert!(IndexEntry::decode(&[]).is_err());
    }
}
