//! `/plots`: the global model's held-out loss and test accuracy, each miner's score and
//! cumulative blocks, and the useful-work fraction, over the last `cycles` finished cycles.
//!
//! One point per finished cycle (its record has an outcome) in every series that has a value
//! for it: the model plots for each finished cycle with a quality report, the score plot for
//! each miner with a submission in it, the block plot for each miner ever seen, at every
//! finished cycle.

use crate::html::{page, Nav};
use crate::limits::PLOT_SERIES_MAX;
use crate::snapshot::Snapshot;
use crate::svg::{compact, render as svg, Chart, Series};
use crate::view::nat;
use bitcoin::secp256k1::PublicKey;
use coordinator_api::api::CycleRecord;
use std::collections::BTreeMap;

/// The finished cycles plotted: the last `cycles` of them.
fn finished(s: &Snapshot, cycles: u64) -> Vec<&CycleRecord> {
    let all: Vec<&CycleRecord> = s.closed_cycles().collect();
    let skip = all.len().saturating_sub(cycles as usize);
    all[skip..].to_vec()
}

pub fn render(s: &Snapshot, cycles: u64) -> String {
    let records = finished(s, cycles);
    let mut body = format!(
        "<h1>Plots</h1><p id=\"plotted\" data-finished-cycles=\"{}\">The last {} finished cycles \
         (<a href=\"/plots?cycles=10\">10</a>, <a href=\"/plots?cycles=50\">50</a>, <a href=\"/plots\">all kept</a>).</p>",
        records.len(),
        records.len()
    );
    for chart in charts(s, &records) {
        body.push_str(&svg(&chart));
    }
    page("Plots", Nav::Plots, s.generation, &s.banners(), &body)
}

/// Every chart of the page, in order.
pub fn charts(s: &Snapshot, records: &[&CycleRecord]) -> Vec<Chart> {
    let cycle = |r: &CycleRecord| r.announcement.announcement.cycle;
    let x_range = records
        .first()
        .zip(records.last())
        .map(|(a, b)| (cycle(a), cycle(b)));
    let loss = Series {
        key: "global".into(),
        name: "held-out loss".into(),
        points: records
            .iter()
            .filter_map(|r| Some((cycle(r), nat(r.next_quality?.held_out_loss_units))))
            .collect(),
    };
    let accuracy = Series {
        key: "global".into(),
        name: "test accuracy".into(),
        points: records
            .iter()
            .filter_map(|r| Some((cycle(r), f64::from(r.next_quality?.test_accuracy_ppm) / 1e6)))
            .collect(),
    };

    // Miners, in key order; the most active first when there are too many to draw.
    let mut seen: BTreeMap<PublicKey, usize> = BTreeMap::new();
    for r in records {
        for sub in &r.submissions {
            *seen.entry(sub.miner).or_default() += 1;
        }
    }
    for b in s.blocks.values() {
        if records.iter().any(|r| cycle(r) == b.cycle) {
            *seen.entry(b.miner).or_default() += 1;
        }
    }
    let mut miners: Vec<PublicKey> = seen.keys().copied().collect();
    miners.sort_by_key(|m| std::cmp::Reverse(seen[m]));
    let left_out = miners.len().saturating_sub(PLOT_SERIES_MAX);
    miners.truncate(PLOT_SERIES_MAX);
    miners.sort();
    let note = (left_out > 0).then(|| format!("{left_out} more miners not drawn"));

    let scores: Vec<Series> = miners
        .iter()
        .map(|m| Series {
            key: m.to_string(),
            name: s.short_name_of(m),
            points: records
                .iter()
                .filter_map(|r| {
                    let sub = r.submissions.iter().find(|x| x.miner == *m)?;
                    Some((cycle(r), sub.score as f64))
                })
                .collect(),
        })
        .collect();

    // Blocks on the best chain by the cycle that certified them.
    let mut per_cycle: BTreeMap<(PublicKey, u64), u64> = BTreeMap::new();
    for b in s.blocks.values() {
        *per_cycle.entry((b.miner, b.cycle)).or_default() += 1;
    }
    let blocks: Vec<Series> = miners
        .iter()
        .map(|m| {
            let mut total = 0u64;
            Series {
                key: m.to_string(),
                name: s.short_name_of(m),
                points: records
                    .iter()
                    .map(|r| {
                        total += per_cycle.get(&(*m, cycle(r))).copied().unwrap_or(0);
                        (cycle(r), total as f64)
                    })
                    .collect(),
            }
        })
        .collect();

    let mut charts = vec![
        Chart {
            id: "held-out-loss",
            title: "Global model: held-out loss after each cycle".into(),
            y_label: "nat".into(),
            series: vec![loss],
            format: compact,
            from_zero: false,
            note: None,
            whole: false,
            x_range,
        },
        Chart {
            id: "test-accuracy",
            title: "Global model: test accuracy after each cycle".into(),
            y_label: "fraction".into(),
            series: vec![accuracy],
            format: compact,
            from_zero: true,
            note: None,
            whole: false,
            x_range,
        },
        Chart {
            id: "miner-score",
            title: "Score per miner (zero unless the replay check passed)".into(),
            y_label: "score".into(),
            series: scores,
            format: compact,
            from_zero: true,
            note: note.clone(),
            whole: true,
            x_range,
        },
        Chart {
            id: "miner-blocks",
            title: "Cumulative blocks per miner (best chain)".into(),
            y_label: "blocks".into(),
            series: blocks,
            format: compact,
            from_zero: true,
            note,
            whole: true,
            x_range,
        },
    ];
    if s.useful_work.is_configured() {
        let finished: Vec<u64> = records.iter().map(|r| cycle(r)).collect();
        let per_miner = |points: &BTreeMap<(String, u64), f64>| {
            let mut by_miner: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
            for ((miner, c), fraction) in points {
                if finished.contains(c) {
                    by_miner
                        .entry(miner.clone())
                        .or_default()
                        .push((*c, *fraction));
                }
            }
            let total = by_miner.len();
            let series: Vec<Series> = by_miner
                .into_iter()
                .take(PLOT_SERIES_MAX)
                .map(|(miner, points)| Series {
                    name: match miner.parse::<PublicKey>() {
                        Ok(key) => s.short_name_of(&key),
                        Err(_) => miner.clone(),
                    },
                    key: miner,
                    points,
                })
                .collect();
            let note = (total > PLOT_SERIES_MAX)
                .then(|| format!("{} more miners not drawn", total - PLOT_SERIES_MAX));
            (series, note)
        };
        let from_reports = [
            (
                "useful-work",
                "Useful-work fraction per miner (CPU in training, from the miners' reports)",
                &s.useful_work.points,
            ),
            (
                "window-utilisation",
                "Window utilisation per miner (training wall time over the training window)",
                &s.useful_work.utilisation,
            ),
        ];
        for (id, title, points) in from_reports {
            let (series, note) = per_miner(points);
            charts.push(Chart {
                id,
                title: title.into(),
                y_label: "fraction".into(),
                series,
                format: compact,
                from_zero: true,
                note,
                whole: false,
                x_range,
            });
        }
    }
    charts
}
