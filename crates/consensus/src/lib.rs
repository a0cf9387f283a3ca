//! Pure validation rules of trainchain: transactions, blocks, certificates, subsidy, median
//! time, fork choice and equivocation. No I/O, no clock, no async: every input, the current time
//! included, is an argument, so the same code runs in a node, a test and an auditor.

pub mod block;
pub mod bond;
pub mod certificate;
pub mod equivocation;
pub mod fork_choice;
pub mod incentive;
pub mod lottery;
pub mod score;
pub mod sequence_locks;
pub mod subsidy;
pub mod time;
pub mod tx;

pub use block::{
    check_block, check_block_context, connect_block, BlockContext, BlockError, CheckedBlock,
    ConnectedBlock,
};
pub use certificate::{verify_block_certificate, verify_certificate_signature, CertificateError};
pub use equivocation::{is_equivocation, Equivocation};
pub use fork_choice::{prefer_branch, BranchTip};
pub use subsidy::block_subsidy;
pub use time::{median_time_past, MAX_FUTURE_BLOCK_SECS, MEDIAN_TIME_SPAN};
pub use tx::{
    check_coinbase_height, check_transaction, check_tx_inputs, CoinView, SpendContext, TxError,
};

use bitcoin::secp256k1::{Secp256k1, VerifyOnly};
use std::sync::LazyLock;

/// One verification context for the process: creating one per check would dominate small checks.
pub(crate) static SECP: LazyLock<Secp256k1<VerifyOnly>> =
    LazyLock::new(Secp256k1::verification_only);
