//! A single-key P2WPKH wallet: its address, its balance, and payments it builds and signs.

use crate::bond::{self, BondSpendError};
use crate::payment::{self, PaymentRequest};
use crate::spendable::{Balance, ChainTip};
use bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use bitcoin::{
    Address, Amount, CompressedPublicKey, FeeRate, Network, OutPoint, Script, ScriptBuf,
    Transaction,
};
use consensus::bond::BondTerms;
use primitives::Coin;
use std::fmt;
use thiserror::Error;

/// Why a payment could not be built. Every variant is the caller's situation, not a bug.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WalletError {
    #[error("address {address} is not an address of network {network}")]
    WrongNetwork { address: String, network: Network },
    #[error("payment of {amount} is below the destination's dust threshold of {threshold}")]
    AmountBelowDust { amount: Amount, threshold: Amount },
    #[error("the wallet has no spendable coins ({immature} still maturing)")]
    NoSpendableCoins { immature: Amount },
    #[error("insufficient funds: the payment needs {needed} with fees, {available} is spendable")]
    InsufficientFunds { needed: Amount, available: Amount },
    #[error(
        "paying this needs {inputs} inputs and {weight_wu} weight units, over the \
         {weight_max_wu} limit; consolidate coins first"
    )]
    TransactionTooLarge {
        inputs: usize,
        weight_wu: u64,
        weight_max_wu: u64,
    },
    #[error("amount or fee is out of range (overflow)")]
    ValueOutOfRange,
    #[error("cannot sign input {input}: {reason}")]
    Signing { input: usize, reason: String },
    #[error("a bond of {value} is below the chain's bond_min of {min}")]
    BondBelowMinimum { value: Amount, min: Amount },
}

/// One secret key, and the P2WPKH address it controls on one network.
pub struct Wallet {
    key: SecretKey,
    public_key: CompressedPublicKey,
    script_pubkey: ScriptBuf,
    network: Network,
    secp: Secp256k1<All>,
}

impl fmt::Debug for Wallet {
    /// Shows the address only: a wallet must never print its key by accident.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// `network` selects the address encoding: take it from `ChainParams::network`.
    pub fn new(key: SecretKey, network: Network) -> Self {
        let secp = Secp256k1::new();
        let public_key = CompressedPublicKey(key.public_key(&secp));
        Wallet {
            key,
            script_pubkey: ScriptBuf::new_p2wpkh(&public_key.wpubkey_hash()),
            public_key,
            network,
            secp,
        }
    }

    pub fn network(&self) -> Network {
        self.network
    }

    /// The wallet's P2WPKH address, bech32 with the network's prefix (`bcrt1…` on regtest).
    pub fn address(&self) -> Address {
        Address::p2wpkh(&self.public_key, self.network)
    }

    /// The output script the wallet's coins are locked to.
    pub fn script_pubkey(&self) -> &Script {
        &self.script_pubkey
    }

    pub fn public_key(&self) -> CompressedPublicKey {
        self.public_key
    }

    /// Whether `coin` is locked to this wallet's script.
    pub fn owns(&self, coin: &Coin) -> bool {
        coin.output.script_pubkey == self.script_pubkey
    }

    /// The wallet's share of `coins` (any coin list; coins of other scripts are ignored).
    pub fn balance(&self, coins: &[(OutPoint, Coin)], tip: ChainTip) -> Balance {
        let mut balance = Balance::default();
        for (_, coin) in coins.iter().filter(|(_, coin)| self.owns(coin)) {
            balance.add(&tip, coin);
        }
        balance
    }

    /// Builds and signs a transaction paying `amount` to `to` at `fee_rate`, spending the
    /// wallet's own spendable coins among `coins` and returning change to [`Wallet::address`].
    ///
    /// See [`crate::payment`] for coin selection, fee and change rules.
    pub fn build_payment(
        &self,
        coins: &[(OutPoint, Coin)],
        tip: ChainTip,
        to: &Address,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        if !to.as_unchecked().is_valid_for_network(self.network) {
            return Err(WalletError::WrongNetwork {
                address: to.to_string(),
                network: self.network,
            });
        }
        self.pay_script(coins, tip, to.script_pubkey(), amount, fee_rate)
    }

    /// The output script of this wallet's bond under `terms` (P2WSH of the bond script with
    /// the wallet's key as the miner key).
    pub fn bond_script_pubkey(&self, terms: &BondTerms) -> ScriptBuf {
        bond::bond_script_pubkey(terms, &self.public_key.0)
    }

    /// Whether `script` is this wallet's bond under `terms`.
    pub fn is_own_bond(&self, terms: &BondTerms, script: &Script) -> bool {
        *script == self.bond_script_pubkey(terms)
    }

    /// Builds and signs a transaction locking `value` in this wallet's bond under `terms`
    /// (output 0), paid from the wallet's spendable coins among `coins` with change, as
    /// [`Wallet::build_payment`] pays. Refuses a value below the chain's `bond_min`: such an
    /// output would lock coins no coordinator accepts as a bond.
    pub fn build_bond(
        &self,
        coins: &[(OutPoint, Coin)],
        tip: ChainTip,
        terms: &BondTerms,
        value: Amount,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        if value < terms.bond_min {
            return Err(WalletError::BondBelowMinimum {
                value,
                min: terms.bond_min,
            });
        }
        self.pay_script(coins, tip, self.bond_script_pubkey(terms), value, fee_rate)
    }

    /// Builds and signs the reclaim of this wallet's bond `outpoint` (worth `value`, confirmed
    /// at `confirmed_height`) to [`Wallet::address`], for the block after `tip`; refused while
    /// the bond is still locked. See [`bond::build_reclaim`].
    pub fn build_reclaim(
        &self,
        terms: &BondTerms,
        outpoint: OutPoint,
        value: Amount,
        confirmed_height: u32,
        tip: ChainTip,
        fee_rate: FeeRate,
    ) -> Result<Transaction, BondSpendError> {
        bond::build_reclaim(
            &self.secp,
            &self.key,
            terms,
            outpoint,
            value,
            confirmed_height,
            tip.height.saturating_add(1),
            self.script_pubkey.clone(),
            fee_rate,
        )
    }

    fn pay_script(
        &self,
        coins: &[(OutPoint, Coin)],
        tip: ChainTip,
        destination: ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        let mut immature = Amount::ZERO;
        let mut spendable = Vec::new();
        for (outpoint, coin) in coins.iter().filter(|(_, coin)| self.owns(coin)) {
            if tip.is_spendable(coin) {
                spendable.push((*outpoint, coin.output.value));
            } else {
                immature = immature
                    .checked_add(coin.output.value)
                    .ok_or(WalletError::ValueOutOfRange)?;
            }
        }
        let request = PaymentRequest {
            destination,
            amount,
            fee_rate,
            change_script: self.script_pubkey.clone(),
        };
        let plan = payment::plan(&request, spendable, immature)?;
        payment::sign(&self.secp, &self.key, &self.public_key, plan)
    }
}
