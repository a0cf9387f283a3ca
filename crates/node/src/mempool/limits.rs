//! The mempool's limits and why each default is what it is.

use bitcoin::FeeRate;

/// Serialized bytes of all pooled transactions together. Bitcoin Core's default `-maxmempool` is
/// 300 MB of memory, roughly a hundred of its blocks. Our default block is 1 MB every 20-minute
/// cycle, so 64 MiB holds about 64 full blocks (over 21 hours of backlog): anything deeper is
/// unlikely to confirm before it expires, and the pool with its indexes stays near 200 MB of RAM.
pub const DEFAULT_POOL_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Number of pooled transactions. Bookkeeping (maps, eviction and selection passes) costs per
/// entry, not per byte; 250,000 is what 64 MiB holds at a typical 250-byte payment, so the byte
/// limit binds for ordinary traffic and this one only stops a flood of minimal transactions.
pub const DEFAULT_POOL_COUNT_MAX: usize = 250_000;

/// One transaction's serialized bytes. Bitcoin Core's standardness cap is 400,000 weight units
/// (100 kvB): a tenth of a default block, so one transaction cannot crowd a block out and block
/// assembly packs many small items. A node on a chain with smaller blocks should set this no
/// higher than what fits in a block beside the header and coinbase.
pub const DEFAULT_TX_BYTES_MAX: usize = 100_000;

/// Minimum fee rate: 1 sat per byte (1,000 sat/kvB), Bitcoin Core's long-standing minimum relay
/// fee. A byte here is a byte of the full serialization, witness included, because this chain's
/// block limit counts full bytes (there is no witness discount to mirror). It prices the
/// bandwidth and memory a transaction costs every node; below it, spam is free.
pub const DEFAULT_MIN_FEE_RATE: FeeRate = FeeRate::from_sat_per_kwu(250);

/// Seconds a transaction may wait before it is dropped: 14 days, Bitcoin Core's
/// `-mempoolexpiry` default. Long enough to outlast a fee spike; short enough that an abandoned
/// transaction does not hold its inputs (and pool space) forever.
pub const DEFAULT_EXPIRY_SECS: u64 = 14 * 24 * 60 * 60;

/// A transaction plus its unconfirmed ancestors in the pool, as Bitcoin Core's
/// `-limitancestorcount`. It bounds the ancestor/descendant walks that eviction and block
/// assembly do: the sum over all entries of their descendant counts equals the sum of their
/// ancestor counts, so both stay under `count * ANCESTOR_COUNT_MAX`.
pub const DEFAULT_ANCESTOR_COUNT_MAX: usize = 25;

/// What the pool will hold. Every limit is enforced in [`super::Mempool::accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Total serialized bytes of pooled transactions.
    pub bytes_max: usize,
    /// Number of pooled transactions.
    pub count_max: usize,
    /// Serialized bytes of one transaction.
    pub tx_bytes_max: usize,
    /// Fee per byte below which nothing is accepted. Also the margin by which a newcomer must
    /// outbid each transaction it evicts from a full pool (Core's incremental relay fee, which
    /// equals its minimum relay fee by default), so pool space cannot be churned for 1 sat.
    pub min_fee_rate: FeeRate,
    /// Seconds after entry when a transaction is dropped by [`super::Mempool::expire`].
    pub expiry_secs: u64,
    /// Largest number of transactions in a chain of unconfirmed ones, the newcomer included.
    pub ancestor_count_max: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            bytes_max: DEFAULT_POOL_BYTES_MAX,
            count_max: DEFAULT_POOL_COUNT_MAX,
            tx_bytes_max: DEFAULT_TX_BYTES_MAX,
            min_fee_rate: DEFAULT_MIN_FEE_RATE,
            expiry_secs: DEFAULT_EXPIRY_SECS,
            ancestor_count_max: DEFAULT_ANCESTOR_COUNT_MAX,
        }
    }
}
