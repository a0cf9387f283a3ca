//! Unspent outputs as the chain state keeps them, and the undo record of a connected block.

use crate::encoding::DecodeError;
use bitcoin::consensus::encode;
use bitcoin::{OutPoint, TxOut};
use thiserror::Error;

/// An unspent transaction output with what the rules need to know about where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    pub output: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Coinbase outputs may only be spent after the chain's maturity period.
    pub is_coinbase: bool,
}

/// What disconnecting a block needs to restore: every coin it spent, in spending order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockUndo {
    pub spent: Vec<(OutPoint, Coin)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoinDecodeError {
    #[error(transparent)]
    Layout(#[from] DecodeError),
    #[error("invalid output encoding: {0}")]
    Output(String),
}

const FLAG_COINBASE: u8 = 1;

impl Coin {
    /// `height (u32 LE) || flags (u8: bit 0 = coinbase) || TxOut (Bitcoin encoding)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 1 + 9 + self.output.script_pubkey.len());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.push(if self.is_coinbase { FLAG_COINBASE } else { 0 });
        out.extend_from_slice(&encode::serialize(&self.output));
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Coin, CoinDecodeError> {
        let (coin, used) = Self::decode_prefix(bytes)?;
        if used != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                count: bytes.len() - used,
            }
            .into());
        }
        Ok(coin)
    }

    fn decode_prefix(bytes: &[u8]) -> Result<(Coin, usize), CoinDecodeError> {
        if bytes.len() < 5 {
            return Err(DecodeError::Truncated {
                field: "coin",
                needed: 5 - bytes.len(),
            }
            .into());
        }
        let height = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let is_coinbase = match bytes[4] {
            0 => false,
            FLAG_COINBASE => true,
            value => {
                return Err(DecodeError::InvalidEnum {
                    field: "coin flags",
                    value,
                }
                .into())
            }
        };
        let (output, used): (TxOut, usize) = encode::deserialize_partial(&bytes[5..])
            .map_err(|e| CoinDecodeError::Output(e.to_string()))?;
        Ok((
            Coin {
                output,
                height,
                is_coinbase,
            },
            5 + used,
        ))
    }
}

impl BlockUndo {
    /// `count (u32 LE) || (OutPoint (36 bytes, Bitcoin encoding) || coin)*`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.spent.len() as u32).to_le_bytes());
        for (outpoint, coin) in &self.spent {
            out.extend_from_slice(&encode::serialize(outpoint));
            out.extend_from_slice(&coin.encode());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<BlockUndo, CoinDecodeError> {
        if bytes.len() < 4 {
            return Err(DecodeError::Truncated {
                field: "undo count",
                needed: 4 - bytes.len(),
            }
            .into());
        }
        let count = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        // Each entry takes at least 36 + 5 + 9 bytes; a count claiming more than the input can
        // hold is corrupt, and must not drive a large allocation.
        if count > bytes.len() / 50 {
            return Err(CoinDecodeError::Output(format!(
                "undo record claims {count} entries in {} bytes",
                bytes.len()
            )));
        }
        let mut spent = Vec::with_capacity(count);
        let mut pos = 4;
        for _ in 0..count {
            let (outpoint, used): (OutPoint, usize) = encode::deserialize_partial(&bytes[pos..])
                .map_err(|e| CoinDecodeError::Output(e.to_string()))?;
            pos += used;
            let (coin, used) = Coin::decode_prefix(&bytes[pos..])?;
            pos += used;
            spent.push((outpoint, coin));
        }
        if pos != bytes.len() {
            return Err(DecodeError::TrailingBytes {
                count: bytes.len() - pos,
            }
            .into());
        }
        Ok(BlockUndo { spent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, ScriptBuf, Txid};
    use proptest::prelude::*;

    fn coin(value: u64, height: u32, is_coinbase: bool, script: Vec<u8>) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::from_sat(value),
                script_pubkey: ScriptBuf::from_bytes(script),
            },
            height,
            is_coinbase,
        }
    }

    #[test]
    fn coin_decoder_rejects_bad_flags_and_trailing_bytes() {
        let mut bytes = coin(5, 1, true, vec![0x51]).encode();
        bytes.push(0);
        assert_eq!(
            Coin::decode(&bytes),
            Err(DecodeError::TrailingBytes { count: 1 }.into())
        );
        bytes.pop();
        bytes[4] = 9;
        assert_eq!(
            Coin::decode(&bytes),
            Err(DecodeError::InvalidEnum {
                field: "coin flags",
                value: 9
            }
            .into())
        );
    }

    #[test]
    fn undo_decoder_rejects_impossible_counts() {
        let bytes = u32::MAX.to_le_bytes();
        assert!(matches!(
            BlockUndo::decode(&bytes),
            Err(CoinDecodeError::Output(_))
        ));
    }

    proptest! {
        #[test]
        fn coin_and_undo_round_trip(
            entries in proptest::collection::vec(
                (any::<[u8; 32]>(), any::<u32>(), any::<u64>(), any::<u32>(), any::<bool>(),
                 proptest::collection::vec(any::<u8>(), 0..40)),
                0..8)
        ) {
            let undo = BlockUndo {
                spent: entries
                    .into_iter()
                    .map(|(txid, vout, value, height, cb, script)| {
                        (OutPoint::new(Txid::from_byte_array(txid), vout), coin(value, height, cb, script))
                    })
                    .collect(),
            };
            for (_, c) in &undo.spent {
                prop_assert_eq!(&Coin::decode(&c.encode()).unwrap(), c);
            }
            prop_assert_eq!(BlockUndo::decode(&undo.encode()).unwrap(), undo);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Coin::decode(&bytes);
            let _ = BlockUndo::decode(&bytes);
        }
    }
}
