//! `/chain` (recent best-chain blocks), `/block/{height or hash}` and `/tx/{txid}`.

use crate::html::{esc, esc_short, page, short_hex, Nav};
use crate::limits::{BLOCK_TXS_SHOWN_MAX, TX_IO_SHOWN_MAX};
use crate::snapshot::{coinbase_value, Snapshot};
use bitcoin::{Address, BlockHash, Network, Transaction};
use primitives::Block;
use std::fmt::Write;

/// Blocks `before` down to `before - count + 1` (newest first); `before` defaults to the tip.
pub fn list(s: &Snapshot, before: Option<u64>, count: u64) -> String {
    let mut body = String::from("<h1>Chain</h1>");
    if let Some((height, hash)) = s.tip {
        let _ = write!(
            body,
            "<p id=\"tip\" data-height=\"{height}\" data-hash=\"{hash}\">Best chain tip: block {height} {}.</p>",
            short_hex(&hash.to_string())
        );
    }
    let top = before.map_or(u32::MAX, |b| u32::try_from(b).unwrap_or(u32::MAX));
    let shown: Vec<_> = s
        .blocks
        .range(..=top)
        .rev()
        .take(count as usize)
        .map(|(_, b)| b)
        .collect();
    body.push_str(
        "<table id=\"blocks\"><tr><th>height</th><th>hash</th><th>time (unix s)</th><th>cycle</th>\
         <th>certificate miner</th><th>score</th><th>attempt</th><th>transactions</th><th>reward</th></tr>",
    );
    for b in &shown {
        let _ = write!(
            body,
            "<tr data-height=\"{}\" data-hash=\"{}\" data-miner=\"{}\" data-cycle=\"{}\" data-attempt=\"{}\" data-txs=\"{}\">\
             <td><a href=\"/block/{}\">{}</a></td><td><a href=\"/block/{}\">{}</a></td><td class=\"num\">{}</td>\
             <td><a href=\"/cycles/{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            b.height, b.hash, b.miner, b.cycle, b.attempt, b.tx_count,
            b.height, b.height, b.hash, short_hex(&b.hash.to_string()), b.time,
            b.cycle, b.cycle, esc(&s.name_of(&b.miner)), b.score, b.attempt,
            b.tx_count, esc(&b.reward.to_string()),
        );
    }
    body.push_str("</table>");
    if shown.is_empty() {
        body.push_str("<p class=\"muted\">No block above genesis in this range.</p>");
    }
    if let Some(last) = shown.last() {
        if s.blocks.range(..last.height).next().is_some() {
            let _ = write!(
                body,
                "<p><a href=\"/chain?before={}&amp;count={count}\">older blocks</a></p>",
                last.height - 1
            );
        }
    }
    page("Chain", Nav::Chain, s.generation, &s.banners(), &body)
}

fn address(script: &bitcoin::Script, network: Option<Network>) -> String {
    network
        .and_then(|n| Address::from_script(script, n).ok())
        .map_or_else(
            || format!("script {}", hex::encode(script.as_bytes())),
            |a| a.to_string(),
        )
}

/// A block page (`height` is where the best chain has it, if it does).
pub fn block(s: &Snapshot, block: &Block, height: Option<u32>) -> String {
    let hash = block.block_hash();
    let h = &block.header;
    let c = &h.certificate.body;
    let mut body = format!(
        "<h1>Block {}</h1>",
        height.map_or(c.height.to_string(), |h| h.to_string())
    );
    let on_best = if height.is_some() {
        "on the best chain"
    } else {
        "not on the best chain"
    };
    let _ = write!(
        body,
        "<table id=\"block\" data-hash=\"{hash}\" data-height=\"{}\" data-miner=\"{}\" data-cycle=\"{}\">\
         <tr><td>hash</td><td class=\"hex\">{}</td></tr><tr><td>where</td><td>{on_best}</td></tr>\
         <tr><td>parent</td><td><a href=\"/block/{}\">{}</a></td></tr><tr><td>time (unix s)</td><td>{}</td></tr>\
         <tr><td>Merkle root</td><td class=\"hex\">{}</td></tr><tr><td>transactions</td><td>{}</td></tr>\
         <tr><td>reward (coinbase)</td><td>{}</td></tr></table>",
        c.height, c.miner, c.cycle,
        hash, h.prev_block_hash, short_hex(&h.prev_block_hash.to_string()), h.time,
        h.merkle_root, block.txdata.len(), esc(&coinbase_value(block).to_string()),
    );
    let _ = write!(
        body,
        "<h2>Certificate</h2><table id=\"certificate\"><tr><td>cycle</td><td><a href=\"/cycles/{}\">{}</a></td></tr>\
         <tr><td>attempt</td><td>{}</td></tr><tr><td>miner</td><td>{}</td></tr>\
         <tr><td>parameters trained</td><td>{}</td></tr><tr><td>loss reduction</td><td>{:.6} nat</td></tr>\
         <tr><td>score</td><td>{}</td></tr><tr><td>model trained → produced</td><td>{} → {}</td></tr>\
         <tr><td>record digest</td><td>{}</td></tr><tr><td>lottery seed</td><td>{}</td></tr>\
         <tr><td>valid</td><td>{} ..= {} (unix s)</td></tr><tr><td>coordinator</td><td>{}</td></tr></table>",
        c.cycle, c.cycle, c.attempt, esc(&s.name_of(&c.miner)), c.params_trained,
        crate::view::nat(c.loss_reduction), c.score,
        short_hex(&c.model_hash.to_string()), short_hex(&c.next_model_hash.to_string()),
        short_hex(&c.record_hash.to_string()), short_hex(&c.lottery_seed.to_string()),
        c.issued_at, c.expires_at, short_hex(&c.coordinator.to_string()),
    );
    body.push_str("<h2>Transactions</h2><table id=\"txs\"><tr><th>txid</th><th>inputs</th><th>outputs</th><th>value out</th></tr>");
    for tx in block.txdata.iter().take(BLOCK_TXS_SHOWN_MAX) {
        let txid = tx.compute_txid();
        let out: bitcoin::Amount = tx.output.iter().map(|o| o.value).sum();
        let _ = write!(
            body,
            "<tr data-txid=\"{txid}\"><td><a href=\"/tx/{txid}?block={hash}\">{}</a></td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            short_hex(&txid.to_string()),
            if tx.is_coinbase() { "coinbase".to_owned() } else { tx.input.len().to_string() },
            tx.output.len(),
            esc(&out.to_string())
        );
    }
    body.push_str("</table>");
    if block.txdata.len() > BLOCK_TXS_SHOWN_MAX {
        let _ = write!(
            body,
            "<p class=\"muted\">{} more transactions not listed.</p>",
            block.txdata.len() - BLOCK_TXS_SHOWN_MAX
        );
    }
    page(
        &format!("Block {}", c.height),
        Nav::Chain,
        s.generation,
        &s.banners(),
        &body,
    )
}

/// A transaction page; `block` is where it was found (none: the mempool).
pub fn tx(s: &Snapshot, tx: &Transaction, block: Option<BlockHash>) -> String {
    let txid = tx.compute_txid();
    let mut body = format!("<h1>Transaction</h1><table id=\"tx\" data-txid=\"{txid}\">");
    let place = match block {
        Some(hash) => format!(
            "<a href=\"/block/{hash}\">{}</a>",
            short_hex(&hash.to_string())
        ),
        None => "the node's mempool (unconfirmed)".to_owned(),
    };
    let _ = write!(
        body,
        "<tr><td>txid</td><td class=\"hex\">{txid}</td></tr><tr><td>wtxid</td><td class=\"hex\">{}</td></tr>\
         <tr><td>in</td><td>{place}</td></tr><tr><td>size / vsize</td><td>{} / {} bytes</td></tr>\
         <tr><td>lock time</td><td>{}</td></tr></table>",
        tx.compute_wtxid(),
        tx.total_size(),
        tx.vsize(),
        tx.lock_time.to_consensus_u32()
    );
    body.push_str(
        "<h2>Inputs</h2><table id=\"inputs\"><tr><th>#</th><th>spends</th><th>sequence</th></tr>",
    );
    for (i, input) in tx.input.iter().enumerate().take(TX_IO_SHOWN_MAX) {
        let spends = if tx.is_coinbase() {
            "coinbase".to_owned()
        } else {
            format!(
                "{}:{}",
                short_hex(&input.previous_output.txid.to_string()),
                input.previous_output.vout
            )
        };
        let _ = write!(
            body,
            "<tr><td>{i}</td><td>{spends}</td><td>{}</td></tr>",
            input.sequence.0
        );
    }
    body.push_str("</table><h2>Outputs</h2><table id=\"outputs\"><tr><th>#</th><th>value</th><th>to</th></tr>");
    for (i, output) in tx.output.iter().enumerate().take(TX_IO_SHOWN_MAX) {
        let _ = write!(
            body,
            "<tr><td>{i}</td><td class=\"num\">{}</td><td class=\"hex\">{}</td></tr>",
            esc(&output.value.to_string()),
            esc_short(&address(&output.script_pubkey, s.network))
        );
    }
    body.push_str("</table>");
    let hidden = tx
        .input
        .len()
        .max(tx.output.len())
        .saturating_sub(TX_IO_SHOWN_MAX);
    if hidden > 0 {
        let _ = write!(
            body,
            "<p class=\"muted\">Lists cut at {TX_IO_SHOWN_MAX} entries.</p>"
        );
    }
    page("Transaction", Nav::Chain, s.generation, &s.banners(), &body)
}
