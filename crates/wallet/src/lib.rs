//! The trainchain wallet library: one secp256k1 key in a file, its P2WPKH address, its balance,
//! payments built and signed from the coins it owns, and its bonds (create, reclaim) and the
//! slashing authority's slash of a bond ([`bond`]).
//!
//! The wallet does no chain I/O: the caller passes the coin set (for instance the node's UTXO
//! set, or the part of it locked to [`Wallet::script_pubkey`]) and the chain tip. Only
//! [`key_file`] touches the file system.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wallet::{key_file, ChainTip, Wallet};
//! use wallet::bitcoin::{Amount, FeeRate, Network};
//! let key = key_file::load(std::path::Path::new("wallet.key"))?;
//! let wallet = Wallet::new(key, Network::Regtest);
//! println!("{}", wallet.address()); // bcrt1q…
//! # let coins = vec![];
//! # let to = wallet.address();
//! let tip = ChainTip { height: 120, coinbase_maturity_blocks: 100 };
//! let tx = wallet.build_payment(&coins, tip, &to, Amount::from_sat(10_000), FeeRate::from_sat_per_vb_u32(2))?;
//! # let _ = tx;
//! # Ok(())
//! # }
//! ```

pub mod bond;
pub mod key_file;
pub mod payment;
pub mod spendable;
mod wallet;

pub use bitcoin;
pub use bond::BondSpendError;
pub use key_file::{KeyFileError, KeyFormatError};
pub use payment::{PaymentPlan, PaymentRequest};
pub use spendable::{Balance, ChainTip};
pub use wallet::{Wallet, WalletError};

#[cfg(test)]
mod tests;
