//! Chain parameters: everything two nodes must agree on to be on the same chain.
//!
//! Stored as TOML. Parsing validates (parse, don't validate): a `ChainParams` value always has at
//! least one coordinator key, limits in range and a well-formed, coordinator-signed genesis block.

use crate::block::{Block, BLOCK_BYTES_DECODE_MAX};
use crate::certificate::CertificateKind;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1};
use bitcoin::{Amount, BlockHash, Network};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Bitcoin's subsidy: 50 coins of 10^8 units.
pub const DEFAULT_INITIAL_SUBSIDY_SATS: u64 = 50 * 100_000_000;
/// Bitcoin's halving interval, in blocks.
pub const DEFAULT_HALVING_INTERVAL_BLOCKS: u32 = 210_000;
/// Bitcoin's base block size before SegWit.
pub const DEFAULT_BLOCK_BYTES_MAX: u32 = 1_000_000;
/// Bitcoin's coinbase maturity.
pub const DEFAULT_COINBASE_MATURITY_BLOCKS: u32 = 100;
/// The paper's training cycle: 20 minutes.
pub const DEFAULT_CYCLE_SECS: u64 = 20 * 60;

/// Smallest bond a miner must lock, in satoshis: one coin, a fiftieth of the initial block
/// subsidy, so that a fraud caught costs more than most blocks are worth to a small miner.
pub const DEFAULT_BOND_MIN_SATS: u64 = 100_000_000;
/// [`DEFAULT_BOND_MIN_SATS`] as an amount.
pub const DEFAULT_BOND_MIN: Amount = Amount::from_sat(DEFAULT_BOND_MIN_SATS);
/// Relative lock of a bond's miner branch, in blocks: 144 blocks, two days if every 20-minute
/// cycle produces a block (a cycle produces at most one, so never less in wall time). It covers
/// the cycle the bond backs plus a dispute window in which anyone can find and report fraud.
pub const DEFAULT_BOND_LOCK_BLOCKS: u32 = 144;
/// Part of a slashed bond paid to whoever found the fraud; the rest is burned.
pub const DEFAULT_SLASH_FINDER_SHARE_PERCENT: u8 = 50;
/// BIP68 encodes a block-based relative lock in the low 16 bits of nSequence.
pub const BOND_LOCK_BLOCKS_MAX: u32 = 0xffff;
/// A bond must stay locked for at least the block of its own cycle and one more of dispute.
pub const BOND_LOCK_BLOCKS_MIN: u32 = 2;

/// More coordinator keys than this is a misconfiguration, not a federation: every certificate
/// check scans the list.
pub const COORDINATOR_KEYS_MAX: usize = 16;
/// A block limit below this could not hold a header, signature and coinbase.
pub const BLOCK_BYTES_MIN: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubsidySchedule {
    /// Subsidy of the blocks before the first halving, in satoshis.
    pub initial_sats: u64,
    /// The subsidy halves every this many blocks.
    pub halving_interval_blocks: u32,
}

impl Default for SubsidySchedule {
    fn default() -> Self {
        SubsidySchedule {
            initial_sats: DEFAULT_INITIAL_SUBSIDY_SATS,
            halving_interval_blocks: DEFAULT_HALVING_INTERVAL_BLOCKS,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ParamsFile", into = "ParamsFile")]
pub struct ChainParams {
    pub name: String,
    /// Written into every certificate; a certificate for another chain id is invalid here.
    pub chain_id: u32,
    /// Selects the address format (bech32 prefix) wallets show.
    pub network: Network,
    /// Keys whose signatures make a certificate valid.
    pub coordinator_keys: Vec<PublicKey>,
    pub subsidy: SubsidySchedule,
    pub block_bytes_max: u32,
    pub coinbase_maturity_blocks: u32,
    /// Length of one training cycle.
    pub cycle_secs: u64,
    /// Smallest value a bond output must hold (`bond_min` in chain.toml, in satoshis).
    pub bond_min: Amount,
    /// Relative lock (BIP68/BIP112, in blocks) of a bond's miner branch: the cycle the bond
    /// backs plus the dispute window, in `BOND_LOCK_BLOCKS_MIN..=BOND_LOCK_BLOCKS_MAX`.
    pub bond_lock_blocks: u32,
    /// The slashing authority's key, the `OP_IF` branch of every bond (compressed SEC hex in
    /// chain.toml). A P2WSH script's `OP_CHECKSIG` is ECDSA over a SEC key, so an x-only
    /// (BIP340) key cannot be used. Files without it default to the first coordinator key.
    pub bond_slash_key: PublicKey,
    /// Percent (0..=100) of a slashed bond, after the fee, paid to whoever found the fraud; the
    /// rest is burned in an OP_RETURN output so the slashing key's holder gains nothing.
    pub slash_finder_share_percent: u8,
    /// Whether every registration with a coordinator must name a bond (`bonds_required` in
    /// chain.toml; default false, so chains made before bonds, and devnets without funds,
    /// keep registering on a key alone).
    pub bonds_required: bool,
    pub genesis: Block,
}

/// The on-disk shape of [`ChainParams`]; the genesis block travels as hex.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsFile {
    name: String,
    chain_id: u32,
    network: Network,
    coordinator_keys: Vec<PublicKey>,
    block_bytes_max: u32,
    coinbase_maturity_blocks: u32,
    cycle_secs: u64,
    // Bond terms; files written before bonds existed load with the defaults.
    #[serde(default = "default_bond_min")]
    bond_min: u64,
    #[serde(default = "default_bond_lock_blocks")]
    bond_lock_blocks: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bond_slash_key: Option<PublicKey>,
    #[serde(default = "default_slash_finder_share_percent")]
    slash_finder_share_percent: u8,
    #[serde(default)]
    bonds_required: bool,
    genesis_block: String,
    subsidy: SubsidySchedule,
}

fn default_bond_min() -> u64 {
    DEFAULT_BOND_MIN_SATS
}

fn default_bond_lock_blocks() -> u32 {
    DEFAULT_BOND_LOCK_BLOCKS
}

fn default_slash_finder_share_percent() -> u8 {
    DEFAULT_SLASH_FINDER_SHARE_PERCENT
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamsError {
    #[error("chain parameters are not valid TOML: {0}")]
    Toml(String),
    #[error("chain parameters name no coordinator key")]
    NoCoordinatorKeys,
    #[error(
        "chain parameters name {0} coordinator keys; at most {COORDINATOR_KEYS_MAX} are allowed"
    )]
    TooManyCoordinatorKeys(usize),
    #[error("block_bytes_max {0} is outside {BLOCK_BYTES_MIN}..={BLOCK_BYTES_DECODE_MAX}")]
    BlockBytesOutOfRange(u32),
    #[error("subsidy.halving_interval_blocks must be at least 1")]
    ZeroHalvingInterval,
    #[error("cycle_secs must be at least 1")]
    ZeroCycle,
    #[error("bond_min must be at least 1 satoshi and at most the money supply")]
    BondMinOutOfRange,
    #[error("bond_lock_blocks {0} is outside {BOND_LOCK_BLOCKS_MIN}..={BOND_LOCK_BLOCKS_MAX}")]
    BondLockOutOfRange(u32),
    #[error("slash_finder_share_percent {0} is over 100")]
    FinderShareOutOfRange(u8),
    #[error("genesis_block is not valid hex: {0}")]
    GenesisHex(String),
    #[error("genesis_block does not decode: {0}")]
    GenesisDecode(String),
    #[error("genesis block must be a block-signing certificate at height 0 on the zero hash for chain {0}")]
    GenesisNotGenesis(u32),
    #[error("genesis block is not signed by a listed coordinator key")]
    GenesisSignature,
}

impl TryFrom<ParamsFile> for ChainParams {
    type Error = ParamsError;

    fn try_from(file: ParamsFile) -> Result<Self, ParamsError> {
        if file.coordinator_keys.is_empty() {
            return Err(ParamsError::NoCoordinatorKeys);
        }
        if file.coordinator_keys.len() > COORDINATOR_KEYS_MAX {
            return Err(ParamsError::TooManyCoordinatorKeys(
                file.coordinator_keys.len(),
            ));
        }
        if !(BLOCK_BYTES_MIN..=BLOCK_BYTES_DECODE_MAX as u32).contains(&file.block_bytes_max) {
            return Err(ParamsError::BlockBytesOutOfRange(file.block_bytes_max));
        }
        if file.subsidy.halving_interval_blocks == 0 {
            return Err(ParamsError::ZeroHalvingInterval);
        }
        if file.cycle_secs == 0 {
            return Err(ParamsError::ZeroCycle);
        }
        // 21 million coins: the consensus money cap, restated here to keep primitives leaf-level.
        if file.bond_min == 0 || file.bond_min > 21_000_000 * 100_000_000 {
            return Err(ParamsError::BondMinOutOfRange);
        }
        if !(BOND_LOCK_BLOCKS_MIN..=BOND_LOCK_BLOCKS_MAX).contains(&file.bond_lock_blocks) {
            return Err(ParamsError::BondLockOutOfRange(file.bond_lock_blocks));
        }
        if file.slash_finder_share_percent > 100 {
            return Err(ParamsError::FinderShareOutOfRange(
                file.slash_finder_share_percent,
            ));
        }
        let bytes =
            hex::decode(&file.genesis_block).map_err(|e| ParamsError::GenesisHex(e.to_string()))?;
        let genesis =
            Block::decode(&bytes).map_err(|e| ParamsError::GenesisDecode(e.to_string()))?;
        check_genesis(&genesis, file.chain_id, &file.coordinator_keys)?;
        let bond_slash_key = file.bond_slash_key.unwrap_or(file.coordinator_keys[0]);
        Ok(ChainParams {
            name: file.name,
            chain_id: file.chain_id,
            network: file.network,
            coordinator_keys: file.coordinator_keys,
            subsidy: file.subsidy,
            block_bytes_max: file.block_bytes_max,
            coinbase_maturity_blocks: file.coinbase_maturity_blocks,
            cycle_secs: file.cycle_secs,
            bond_min: Amount::from_sat(file.bond_min),
            bond_lock_blocks: file.bond_lock_blocks,
            bond_slash_key,
            slash_finder_share_percent: file.slash_finder_share_percent,
            bonds_required: file.bonds_required,
            genesis,
        })
    }
}

impl From<ChainParams> for ParamsFile {
    fn from(p: ChainParams) -> Self {
        ParamsFile {
            name: p.name,
            chain_id: p.chain_id,
            network: p.network,
            coordinator_keys: p.coordinator_keys,
            block_bytes_max: p.block_bytes_max,
            coinbase_maturity_blocks: p.coinbase_maturity_blocks,
            cycle_secs: p.cycle_secs,
            bond_min: p.bond_min.to_sat(),
            bond_lock_blocks: p.bond_lock_blocks,
            bond_slash_key: Some(p.bond_slash_key),
            slash_finder_share_percent: p.slash_finder_share_percent,
            bonds_required: p.bonds_required,
            genesis_block: hex::encode(p.genesis.encode()),
            subsidy: p.subsidy,
        }
    }
}

/// Genesis must be a coordinator-signed block-signing certificate at height 0 on the zero hash.
fn check_genesis(
    genesis: &Block,
    chain_id: u32,
    coordinator_keys: &[PublicKey],
) -> Result<(), ParamsError> {
    let cert = &genesis.header.certificate.body;
    if cert.kind != CertificateKind::BlockSigning
        || cert.height != 0
        || cert.chain_id != chain_id
        || cert.prev_block_hash != BlockHash::all_zeros()
        || genesis.header.prev_block_hash != BlockHash::all_zeros()
    {
        return Err(ParamsError::GenesisNotGenesis(chain_id));
    }
    let secp = Secp256k1::verification_only();
    let msg = Message::from_digest(cert.signing_hash().0);
    let signed_by_coordinator = coordinator_keys.contains(&cert.coordinator)
        && secp
            .verify_ecdsa(
                &msg,
                &genesis.header.certificate.signature,
                &cert.coordinator,
            )
            .is_ok();
    if !signed_by_coordinator {
        return Err(ParamsError::GenesisSignature);
    }
    Ok(())
}

impl ChainParams {
    pub fn from_toml(text: &str) -> Result<Self, ParamsError> {
        toml::from_str(text).map_err(|e| {
            // serde's try_from errors arrive as custom messages; keep them readable.
            ParamsError::Toml(e.message().to_string())
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("chain parameters always serialise to TOML")
    }

    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis.block_hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::{build_genesis, GenesisSpec};
    use crate::hash::Hash256;
    use bitcoin::secp256k1::SecretKey;

    fn params() -> ChainParams {
        let secp = Secp256k1::new();
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        let genesis = build_genesis(
            &secp,
            &GenesisSpec {
                chain_id: 42,
                time: 1_700_000_000,
                model_hash: Hash256::ZERO,
                message: "test genesis",
                allocations: Vec::new(),
            },
            &key,
        );
        ChainParams {
            name: "test".into(),
            chain_id: 42,
            network: Network::Regtest,
            coordinator_keys: vec![key.public_key(&secp)],
            subsidy: SubsidySchedule::default(),
            block_bytes_max: DEFAULT_BLOCK_BYTES_MAX,
            coinbase_maturity_blocks: 100,
            cycle_secs: DEFAULT_CYCLE_SECS,
            bond_min: DEFAULT_BOND_MIN,
            bond_lock_blocks: DEFAULT_BOND_LOCK_BLOCKS,
            bond_slash_key: SecretKey::from_slice(&[9; 32]).unwrap().public_key(&secp),
            slash_finder_share_percent: DEFAULT_SLASH_FINDER_SHARE_PERCENT,
            bonds_required: false,
            genesis,
        }
    }

    #[test]
    fn toml_round_trip() {
        let p = params();
        let text = p.to_toml();
        assert!(text.contains("cycle_secs = 1200"), "{text}");
        assert_eq!(ChainParams::from_toml(&text).unwrap(), p);
    }

    #[test]
    fn invalid_parameters_are_rejected_with_reason() {
        type Mutation = fn(&mut ChainParams);
        let cases: [(Mutation, ParamsError); 9] = [
            (
                |p| p.coordinator_keys.clear(),
                ParamsError::NoCoordinatorKeys,
            ),
            (
                |p| p.coordinator_keys = vec![p.coordinator_keys[0]; 17],
                ParamsError::TooManyCoordinatorKeys(17),
            ),
            (|p| p.cycle_secs = 0, ParamsError::ZeroCycle),
            (
                |p| p.block_bytes_max = 10,
                ParamsError::BlockBytesOutOfRange(10),
            ),
            (|p| p.chain_id = 43, ParamsError::GenesisNotGenesis(43)),
            (
                |p| p.bond_min = Amount::ZERO,
                ParamsError::BondMinOutOfRange,
            ),
            (
                |p| p.bond_lock_blocks = 1,
                ParamsError::BondLockOutOfRange(1),
            ),
            (
                |p| p.bond_lock_blocks = 0x1_0000,
                ParamsError::BondLockOutOfRange(0x1_0000),
            ),
            (
                |p| p.slash_finder_share_percent = 101,
                ParamsError::FinderShareOutOfRange(101),
            ),
        ];
        for (mutate, expected) in cases {
            let mut p = params();
            mutate(&mut p);
            let err = ChainParams::from_toml(&p.to_toml()).unwrap_err();
            assert_eq!(err, ParamsError::Toml(expected.to_string()));
        }
        let unknown = format!("colour = \"red\"\n{}", params().to_toml());
        let err = ChainParams::from_toml(&unknown).unwrap_err().to_string();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn files_without_bond_terms_load_with_the_defaults() {
        let p = params();
        let text = p.to_toml();
        assert!(
            text.contains(&format!("bond_slash_key = \"{}\"", p.bond_slash_key)),
            "{text}"
        );
        let old: String = text
            .lines()
            .filter(|l| !l.starts_with("bond_") && !l.starts_with("slash_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let loaded = ChainParams::from_toml(&old).unwrap();
        assert_eq!(loaded.bond_min, Amount::from_sat(DEFAULT_BOND_MIN_SATS));
        assert_eq!(loaded.bond_lock_blocks, DEFAULT_BOND_LOCK_BLOCKS);
        assert_eq!(loaded.bond_slash_key, p.coordinator_keys[0]);
        assert_eq!(
            loaded.slash_finder_share_percent,
            DEFAULT_SLASH_FINDER_SHARE_PERCENT
        );
    }

    #[test]
    fn genesis_signed_by_unlisted_key_is_rejected() {
        let mut p = params();
        let secp = Secp256k1::new();
        p.coordinator_keys = vec![SecretKey::from_slice(&[8; 32]).unwrap().public_key(&secp)];
        let err = ChainParams::from_toml(&p.to_toml()).unwrap_err();
        assert_eq!(
            err,
            ParamsError::Toml(ParamsError::GenesisSignature.to_string())
        );
    }
}
