//! What the pages show: one in-memory snapshot of the coordinator's cycle, its newest records,
//! the model's layout, the newest best-chain blocks and the miners' useful work, refreshed by
//! one poller. Pages render from it and never call upstream (only the block and transaction
//! pages read one block on demand), so the number of visitors never sets the load on the
//! coordinator or the node.

use crate::limits::{
    BLOCKS_KEPT_MAX, BLOCKS_PER_POLL_MAX, FULL_REFRESH_EVERY_POLLS, RECORDS_KEPT_MAX,
    RECORDS_PER_REQUEST, RECORDS_REFRESH_TAIL, RECORD_PAGES_PER_POLL_MAX,
};
use crate::reports::UsefulWork;
use crate::sources::{SourceError, Sources};
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, BlockHash, Network};
use coordinator_api::api::{CycleRecord, CycleStatus};
use learning::ModelCard;
use primitives::Block;
use std::collections::BTreeMap;

/// A best-chain block as the chain page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    pub height: u32,
    pub hash: BlockHash,
    pub time: u32,
    pub cycle: u64,
    pub attempt: u32,
    pub miner: PublicKey,
    pub score: u64,
    pub tx_count: usize,
    /// What the coinbase pays out: subsidy plus fees.
    pub reward: Amount,
}

impl BlockSummary {
    pub fn of(block: &Block) -> Self {
        let body = &block.header.certificate.body;
        BlockSummary {
            height: body.height,
            hash: block.block_hash(),
            time: block.header.time,
            cycle: body.cycle,
            attempt: body.attempt,
            miner: body.miner,
            score: body.score,
            tx_count: block.txdata.len(),
            reward: coinbase_value(block),
        }
    }
}

/// The sum of the coinbase's outputs (zero for a block without one, which is invalid anyway).
pub fn coinbase_value(block: &Block) -> Amount {
    block
        .txdata
        .first()
        .filter(|tx| tx.is_coinbase())
        .map(|tx| tx.output.iter().map(|o| o.value).sum())
        .unwrap_or(Amount::ZERO)
}

/// Everything the pages show, as of the last poll.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub status: Option<CycleStatus>,
    /// The newest records by cycle, at most [`RECORDS_KEPT_MAX`].
    pub records: BTreeMap<u64, CycleRecord>,
    pub card: Option<ModelCard>,
    pub network: Option<Network>,
    /// Best chain tip (height, hash).
    pub tip: Option<(u32, BlockHash)>,
    /// The newest best-chain blocks above genesis, at most [`BLOCKS_KEPT_MAX`].
    pub blocks: BTreeMap<u32, BlockSummary>,
    pub useful_work: UsefulWork,
    /// Names of miners by key (hex), from `--label` or the devnet; shown escaped.
    pub labels: BTreeMap<String, String>,
    pub coordinator_error: Option<String>,
    pub node_error: Option<String>,
    /// Changes whenever anything a page shows changed (phase, counts, records, blocks):
    /// the live script reloads a page whose generation is old.
    pub generation: u64,
    /// Polls done (for the periodic full refresh).
    pub polls: u64,
    /// When the last poll ended (the live countdown subtracts the time since).
    pub polled_at: Option<std::time::Instant>,
}

impl Snapshot {
    /// Whether a cycle is finished: its record has an outcome.
    pub fn closed_cycles(&self) -> impl Iterator<Item = &CycleRecord> {
        self.records.values().filter(|r| r.outcome.is_some())
    }

    /// A miner's name for display (not escaped): its label, else the behaviour its report
    /// declares, with the key's start; else its key (hex).
    pub fn name_of(&self, miner: &PublicKey) -> String {
        let key = miner.to_string();
        let label = self
            .labels
            .get(&key)
            .or_else(|| self.useful_work.behaviours.get(&key));
        match label {
            Some(label) => format!("{label} ({}…)", &key[..10]),
            None => key,
        }
    }

    /// [`Snapshot::name_of`] for a plot legend: the label alone, else the key's start.
    pub fn short_name_of(&self, miner: &PublicKey) -> String {
        let key = miner.to_string();
        self.labels
            .get(&key)
            .or_else(|| self.useful_work.behaviours.get(&key))
            .map_or_else(
                || format!("{}…", &key[..12]),
                |label| format!("{label} {}…", &key[2..8]),
            )
    }

    /// The banners every page shows: what could not be read at the last poll.
    pub fn banners(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.coordinator_error {
            out.push(format!(
                "The coordinator could not be read at the last poll; showing what was read before. {e}"
            ));
        }
        if let Some(e) = &self.node_error {
            out.push(format!(
                "The node could not be read at the last poll; showing what was read before. {e}"
            ));
        }
        if let Some(e) = &self.useful_work.error {
            out.push(format!("Miner reports: {e}"));
        }
        out
    }

    /// A fingerprint of what the pages show, to decide whether the generation moves.
    fn fingerprint(&self) -> String {
        let status = self.status.as_ref().map(|s| {
            (
                s.announcement.announcement.cycle,
                s.phase,
                s.attempt,
                s.registered,
                s.submitted,
            )
        });
        let records: Vec<_> = self
            .records
            .values()
            .map(|r| {
                (
                    r.announcement.announcement.cycle,
                    r.phase,
                    r.submissions.len(),
                    r.outcome.is_some(),
                    r.slashes.len(),
                    r.block_certificates.len(),
                )
            })
            .collect();
        format!(
            "{status:?}{records:?}{:?}{:?}{:?}{}",
            self.tip,
            self.coordinator_error.is_some(),
            self.node_error.is_some(),
            self.useful_work.points.len()
        )
    }
}

/// One poll: reads what changed upstream into `snapshot`. Failures are recorded in the
/// snapshot (and shown as banners); what was read before stays.
pub async fn refresh(snapshot: &mut Snapshot, sources: &impl Sources) {
    let before = snapshot.fingerprint();
    snapshot.polls += 1;
    snapshot.coordinator_error = refresh_coordinator(snapshot, sources)
        .await
        .err()
        .map(|e| e.to_string());
    snapshot.node_error = refresh_chain(snapshot, sources)
        .await
        .err()
        .map(|e| e.to_string());
    snapshot.useful_work.refresh();
    if snapshot.fingerprint() != before {
        snapshot.generation += 1;
    }
}

async fn refresh_coordinator(
    snapshot: &mut Snapshot,
    sources: &impl Sources,
) -> Result<(), SourceError> {
    let status = sources.status().await?;
    let current = status.announcement.announcement.cycle;
    let new_cycle = snapshot
        .status
        .as_ref()
        .is_none_or(|s| s.announcement.announcement.cycle != current);
    snapshot.status = Some(status);
    if new_cycle || snapshot.card.is_none() {
        snapshot.card = Some(sources.model_card().await?);
    }
    let oldest = current.saturating_sub(RECORDS_KEPT_MAX as u64 - 1);
    let full = snapshot.polls % FULL_REFRESH_EVERY_POLLS == 1;
    let mut from = if full || snapshot.records.is_empty() {
        oldest
    } else {
        // The first cycle still open, or the one after the newest kept, minus the tail of
        // closed ones whose slashes may still land.
        let first_open = snapshot
            .records
            .values()
            .find(|r| r.outcome.is_none())
            .map(|r| r.announcement.announcement.cycle);
        let next = snapshot
            .records
            .keys()
            .next_back()
            .map_or(0, |c| c.saturating_add(1));
        first_open
            .unwrap_or(next)
            .min(next)
            .saturating_sub(RECORDS_REFRESH_TAIL)
            .max(oldest)
    };
    for _ in 0..RECORD_PAGES_PER_POLL_MAX {
        if from > current {
            break;
        }
        let page = sources.records(from, RECORDS_PER_REQUEST).await?;
        let Some(last) = page.iter().map(|r| r.announcement.announcement.cycle).max() else {
            break;
        };
        for record in page {
            let cycle = record.announcement.announcement.cycle;
            if cycle >= oldest && cycle <= current {
                snapshot.records.insert(cycle, record);
            }
        }
        // Upstream numbers: a page that does not move forward, or ends at u64::MAX, ends the
        // catch-up rather than looping or overflowing.
        match last.checked_add(1) {
            Some(next) if last >= from => from = next,
            _ => break,
        }
    }
    while snapshot.records.len() > RECORDS_KEPT_MAX {
        snapshot.records.pop_first();
    }
    Ok(())
}

async fn refresh_chain(snapshot: &mut Snapshot, sources: &impl Sources) -> Result<(), SourceError> {
    if snapshot.network.is_none() {
        snapshot.network = Some(sources.network().await?);
    }
    let height = sources.height().await?;
    let Some(hash) = sources.block_hash(height).await? else {
        return Err(SourceError::Node(format!(
            "getblockhash {height}: the tip moved while reading it"
        )));
    };
    if snapshot.tip == Some((height, hash)) {
        return Ok(());
    }
    // Drop what is no longer on the best chain: everything above the new tip, then from the
    // top down every kept block whose height now names another hash.
    snapshot.blocks.retain(|h, _| *h <= height);
    while let Some((&h, kept)) = snapshot.blocks.last_key_value() {
        if sources.block_hash(h).await? == Some(kept.hash) {
            break;
        }
        snapshot.blocks.remove(&h);
    }
    let lowest = height.saturating_sub(BLOCKS_KEPT_MAX as u32 - 1).max(1);
    let start = snapshot
        .blocks
        .keys()
        .next_back()
        .map_or(lowest, |h| h + 1)
        .max(lowest);
    let mut read = 0;
    let mut h = start;
    while h <= height && read < BLOCKS_PER_POLL_MAX {
        let Some(block_hash) = sources.block_hash(h).await? else {
            break;
        };
        let Some(block) = sources.block(block_hash).await? else {
            return Err(SourceError::Node(format!(
                "getblock {block_hash}: the node does not have its own best block"
            )));
        };
        snapshot.blocks.insert(h, BlockSummary::of(&block));
        read += 1;
        h += 1;
    }
    while snapshot.blocks.len() > BLOCKS_KEPT_MAX {
        snapshot.blocks.pop_first();
    }
    // The tip counts as read only once every block up to it is.
    if h > height {
        snapshot.tip = Some((height, hash));
    }
    Ok(())
}
