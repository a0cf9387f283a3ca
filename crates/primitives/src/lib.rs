//! Plain data of the chain: hashes, certificates, headers, blocks, chain parameters and their
//! canonical byte encodings.
//!
//! This crate does no I/O: no files, sockets, clocks or threads. Signing is here because it is a
//! pure function of a key and bytes; the *rules* about what a valid signature or block is live in
//! `consensus`.

pub mod block;
pub mod certificate;
pub mod coin;
pub mod encoding;
pub mod genesis;
pub mod hash;
pub mod header;
pub mod merkle;
pub mod params;

pub use bitcoin;
pub use bitcoin::secp256k1;

pub use block::{Block, BlockDecodeError};
pub use certificate::{Certificate, CertificateKind, UnsignedCertificate};
pub use coin::{BlockUndo, Coin};
pub use encoding::DecodeError;
pub use hash::{sha256, sha256d, tagged_hash, Hash256};
pub use header::BlockHeader;
pub use params::{ChainParams, ParamsError, SubsidySchedule};

pub use bitcoin::BlockHash;
