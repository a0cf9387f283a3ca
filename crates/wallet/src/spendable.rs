//! Which coins can be spent now: the coinbase maturity rule, as the wallet applies it.

use bitcoin::Amount;
use primitives::{ChainParams, Coin};

/// Where the chain stands when the wallet looks at its coins. One value instead of two loose
/// `u32`s, so a height and a block count cannot be swapped by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTip {
    /// Height of the best block. A transaction built now goes into block `height + 1` at the
    /// earliest.
    pub height: u32,
    /// The chain parameters' `coinbase_maturity_blocks`.
    pub coinbase_maturity_blocks: u32,
}

impl ChainTip {
    pub fn new(height: u32, params: &ChainParams) -> Self {
        ChainTip {
            height,
            coinbase_maturity_blocks: params.coinbase_maturity_blocks,
        }
    }

    /// Whether a transaction spending `coin` may enter the next block, `height + 1`.
    ///
    /// Outputs of ordinary transactions always may (the coin set holds only confirmed coins).
    /// A coinbase output created at height `h` may be spent in a block at height `s` only if
    /// `s - h >= coinbase_maturity_blocks` (Bitcoin's rule), so here only if
    /// `height + 1 - h >= coinbase_maturity_blocks`. With Bitcoin's maturity of 100, a coinbase
    /// from block 1 is spendable in block 101, that is once the tip is at 100. A coin claiming a
    /// height above `height + 1` is treated as immature.
    pub fn is_spendable(&self, coin: &Coin) -> bool {
        if !coin.is_coinbase {
            return true;
        }
        let spending_height = u64::from(self.height) + 1;
        match spending_height.checked_sub(u64::from(coin.height)) {
            Some(age_blocks) => age_blocks >= u64::from(self.coinbase_maturity_blocks),
            None => false,
        }
    }
}

/// What a wallet owns, split by whether it can be spent in the next block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Confirmed coins a transaction built now may spend.
    pub confirmed_spendable: Amount,
    /// Coinbase outputs still inside the maturity period.
    pub immature: Amount,
}

impl Balance {
    /// Adds one owned coin. Sums saturate: coins from a valid chain never total more than the
    /// supply, so saturation only shows on a corrupt coin list, and a balance must not panic.
    pub(crate) fn add(&mut self, tip: &ChainTip, coin: &Coin) {
        let bucket = if tip.is_spendable(coin) {
            &mut self.confirmed_spendable
        } else {
            &mut self.immature
        };
        *bucket = Amount::from_sat(bucket.to_sat().saturating_add(coin.output.value.to_sat()));
    }

    pub fn total(&self) -> Amount {
        Amount::from_sat(
            self.confirmed_spendable
                .to_sat()
                .saturating_add(self.immature.to_sat()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{ScriptBuf, TxOut};

    fn coinbase_at(height: u32) -> Coin {
        Coin {
            output: TxOut {
                value: Amount::from_sat(1),
                script_pubkey: ScriptBuf::new(),
            },
            height,
            is_coinbase: true,
        }
    }

    #[test]
    fn coinbase_matures_exactly_at_bitcoins_height() {
        let coin = coinbase_at(1);
        let at = |height| ChainTip {
            height,
            coinbase_maturity_blocks: 100,
        };
        assert!(
            !at(99).is_spendable(&coin),
            "block 100 is only 99 blocks later"
        );
        assert!(at(100).is_spendable(&coin), "block 101 is 100 blocks later");
    }

    #[test]
    fn coins_from_the_future_and_non_coinbase_coins() {
        let tip = ChainTip {
            height: 10,
            coinbase_maturity_blocks: 0,
        };
        assert!(
            tip.is_spendable(&coinbase_at(11)),
            "maturity 0: spendable in next block"
        );
        assert!(!tip.is_spendable(&coinbase_at(12)));
        assert!(!tip.is_spendable(&coinbase_at(u32::MAX)));
        let ordinary = Coin {
            is_coinbase: false,
            ..coinbase_at(10)
        };
        let strict = ChainTip {
            height: 10,
            coinbase_maturity_blocks: 1000,
        };
        assert!(strict.is_spendable(&ordinary));
    }
}
