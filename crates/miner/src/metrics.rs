//! The miner's Prometheus metrics (`trainchain miner --metrics-bind`): counters of cycles,
//! training steps, samples, submissions, wins and blocks, CPU seconds by what they were spent
//! on, and gauges of the last finished cycle (samples per second, useful-work ratio). The
//! gauges are absent until a cycle has finished (samples per second until one has trained),
//! never 0. Written with the node's [`Exposition`] and served by its [`node::metrics::serve`].

use crate::report::CycleReport;
use node::metrics::{Exposition, Kind, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What one cycle's training did, measured by the miner (wall clock, not CPU: the rate a
/// scraper compares across machines).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingRun {
    /// Samples the committed run trained on (steps × batch).
    pub samples: u64,
    /// Wall-clock seconds the training job took.
    pub wall_secs: f64,
}

/// The gauges of the last finished cycle.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct LastCycle {
    cycle: Option<u64>,
    samples_per_second: Option<f64>,
    useful_work_ratio: Option<f64>,
}

#[derive(Debug, Default)]
pub struct MinerMetrics {
    cycles: AtomicU64,
    cycles_failed: AtomicU64,
    steps: AtomicU64,
    samples: AtomicU64,
    submissions: AtomicU64,
    wins: AtomicU64,
    blocks_produced: AtomicU64,
    /// f64 bits.
    cpu_training_secs: AtomicU64,
    /// f64 bits.
    cpu_other_secs: AtomicU64,
    last: Mutex<LastCycle>,
}

fn add_f64(cell: &AtomicU64, delta: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

impl MinerMetrics {
    /// Counts a finished cycle from its report, and `training` if the miner trained in it.
    pub fn record_cycle(&self, report: &CycleReport, training: Option<&TrainingRun>) {
        self.cycles.fetch_add(1, Ordering::Relaxed);
        if report.error.is_some() {
            self.cycles_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.steps.fetch_add(report.steps, Ordering::Relaxed);
        if report.receipt.is_some() {
            self.submissions.fetch_add(1, Ordering::Relaxed);
        }
        self.wins
            .fetch_add(report.block_certificates.len() as u64, Ordering::Relaxed);
        self.blocks_produced
            .fetch_add(u64::from(report.blocks_produced), Ordering::Relaxed);
        add_f64(&self.cpu_training_secs, report.cpu.training_secs);
        add_f64(&self.cpu_other_secs, report.cpu.other_secs);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.cycle = Some(report.cycle);
        // A cycle that spent no CPU has no ratio to show; the last one stays.
        if report.cpu.total_secs() > 0.0 {
            last.useful_work_ratio = Some(report.useful_work_fraction);
        }
        if let Some(run) = training {
            self.samples.fetch_add(run.samples, Ordering::Relaxed);
            if run.wall_secs > 0.0 {
                last.samples_per_second = Some(run.samples as f64 / run.wall_secs);
            }
        }
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let u = |c: &AtomicU64| Value::Int(c.load(Ordering::Relaxed));
        let f = |c: &AtomicU64| Value::Float(f64::from_bits(c.load(Ordering::Relaxed)));
        let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Exposition::new();
        out.metric(
            "trainchain_miner_cycles_total",
            Kind::Counter,
            "Cycles taken part in (registered or tried to), finished.",
            Some(u(&self.cycles)),
        );
        out.metric(
            "trainchain_miner_cycles_failed_total",
            Kind::Counter,
            "Finished cycles whose work did not complete.",
            Some(u(&self.cycles_failed)),
        );
        out.metric(
            "trainchain_miner_training_steps_total",
            Kind::Counter,
            "SGD steps of the committed training runs.",
            Some(u(&self.steps)),
        );
        out.metric(
            "trainchain_miner_samples_trained_total",
            Kind::Counter,
            "Samples trained on by the committed runs (steps times batch).",
            Some(u(&self.samples)),
        );
        out.metric(
            "trainchain_miner_submissions_total",
            Kind::Counter,
            "Updates the coordinator receipted.",
            Some(u(&self.submissions)),
        );
        out.metric(
            "trainchain_miner_wins_total",
            Kind::Counter,
            "Block-signing certificates received (attempts won in the lottery).",
            Some(u(&self.wins)),
        );
        out.metric(
            "trainchain_miner_blocks_produced_total",
            Kind::Counter,
            "Blocks assembled, signed and accepted by the node.",
            Some(u(&self.blocks_produced)),
        );
        out.labelled(
            "trainchain_miner_cpu_seconds_total",
            Kind::Counter,
            "Process CPU time of finished cycles, by what it was spent on.",
            "kind",
            &[
                ("training", f(&self.cpu_training_secs)),
                ("other", f(&self.cpu_other_secs)),
            ],
        );
        out.metric(
            "trainchain_miner_last_cycle",
            Kind::Gauge,
            "Number of the last finished cycle.",
            last.cycle.map(Value::Int),
        );
        out.metric(
            "trainchain_miner_samples_per_second",
            Kind::Gauge,
            "Training throughput of the last cycle that trained (samples per wall-clock second).",
            last.samples_per_second.map(Value::Float),
        );
        out.metric(
            "trainchain_miner_useful_work_ratio",
            Kind::Gauge,
            "Useful-work fraction of the last cycle: training CPU over all CPU.",
            last.useful_work_ratio.map(Value::Float),
        );
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::behaviour::Behaviour;
    use crate::cpu::CpuAccount;
    use crate::report::ProducedBlock;

    fn report(cycle: u64, steps: u64, cpu: CpuAccount) -> CycleReport {
        CycleReport {
            cycle,
            miner: String::new(),
            behaviour: Behaviour::Honest,
            segment: None,
            segment_params: None,
            shard_samples: None,
            steps,
            receipt: None,
            contribution: None,
            block_certificates: Vec::new(),
            block: None,
            blocks_produced: 0,
            cpu,
            useful_work_fraction: cpu.useful_work_fraction(),
            training_wall_secs: 0.0,
            training_window_secs: 0.0,
            error: None,
        }
    }

    const COUNTERS_AT_ZERO: &str = "\
# HELP trainchain_miner_cycles_total Cycles taken part in (registered or tried to), finished.
# TYPE trainchain_miner_cycles_total counter
trainchain_miner_cycles_total 0
# HELP trainchain_miner_cycles_failed_total Finished cycles whose work did not complete.
# TYPE trainchain_miner_cycles_failed_total counter
trainchain_miner_cycles_failed_total 0
# HELP trainchain_miner_training_steps_total SGD steps of the committed training runs.
# TYPE trainchain_miner_training_steps_total counter
trainchain_miner_training_steps_total 0
# HELP trainchain_miner_samples_trained_total Samples trained on by the committed runs (steps times batch).
# TYPE trainchain_miner_samples_trained_total counter
trainchain_miner_samples_trained_total 0
# HELP trainchain_miner_submissions_total Updates the coordinator receipted.
# TYPE trainchain_miner_submissions_total counter
trainchain_miner_submissions_total 0
# HELP trainchain_miner_wins_total Block-signing certificates received (attempts won in the lottery).
# TYPE trainchain_miner_wins_total counter
trainchain_miner_wins_total 0
# HELP trainchain_miner_blocks_produced_total Blocks assembled, signed and accepted by the node.
# TYPE trainchain_miner_blocks_produced_total counter
trainchain_miner_blocks_produced_total 0
# HELP trainchain_miner_cpu_seconds_total Process CPU time of finished cycles, by what it was spent on.
# TYPE trainchain_miner_cpu_seconds_total counter
trainchain_miner_cpu_seconds_total{kind=\"training\"} 0
trainchain_miner_cpu_seconds_total{kind=\"other\"} 0
";

    #[test]
    fn before_the_first_cycle_only_counters_at_zero_are_exported() {
        assert_eq!(MinerMetrics::default().render(), COUNTERS_AT_ZERO);
    }

    #[test]
    fn a_finished_cycle_sets_the_gauges_and_counts() {
        let metrics = MinerMetrics::default();
        // A cycle that failed before training: counted, ratio set, no throughput yet.
        let mut failed = report(
            3,
            0,
            CpuAccount {
                training_secs: 0.0,
                other_secs: 0.5,
            },
        );
        failed.error = Some("coordinator gone".into());
        metrics.record_cycle(&failed, None);
        let text = metrics.render();
        assert!(
            text.contains("\ntrainchain_miner_cycles_failed_total 1\n"),
            "{text}"
        );
        assert!(text.contains("\ntrainchain_miner_last_cycle 3\n"), "{text}");
        assert!(
            text.contains("\ntrainchain_miner_useful_work_ratio 0\n"),
            "{text}"
        );
        assert!(!text.contains("samples_per_second"), "{text}");

        let mut won = report(
            4,
            40,
            CpuAccount {
                training_secs: 3.0,
                other_secs: 1.0,
            },
        );
        // Two attempts won and produced in one cycle: both blocks count.
        won.block = Some(ProducedBlock {
            height: 2,
            hash: String::new(),
            attempt: 1,
        });
        won.blocks_produced = 2;
        metrics.record_cycle(
            &won,
            Some(&TrainingRun {
                samples: 1280,
                wall_secs: 2.0,
            }),
        );
        let text = metrics.render();
        let tail = "\
# HELP trainchain_miner_last_cycle Number of the last finished cycle.
# TYPE trainchain_miner_last_cycle gauge
trainchain_miner_last_cycle 4
# HELP trainchain_miner_samples_per_second Training throughput of the last cycle that trained (samples per wall-clock second).
# TYPE trainchain_miner_samples_per_second gauge
trainchain_miner_samples_per_second 640
# HELP trainchain_miner_useful_work_ratio Useful-work fraction of the last cycle: training CPU over all CPU.
# TYPE trainchain_miner_useful_work_ratio gauge
trainchain_miner_useful_work_ratio 0.75
";
        assert!(text.ends_with(tail), "{text}");
        for line in [
            "trainchain_miner_cycles_total 2",
            "trainchain_miner_cycles_failed_total 1",
            "trainchain_miner_training_steps_total 40",
            "trainchain_miner_samples_trained_total 1280",
            "trainchain_miner_blocks_produced_total 2",
            "trainchain_miner_cpu_seconds_total{kind=\"training\"} 3",
            "trainchain_miner_cpu_seconds_total{kind=\"other\"} 1.5",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line}: {text}");
        }

        // A cycle that spent no CPU keeps the last ratio; one that did not train keeps the
        // last throughput.
        metrics.record_cycle(&report(5, 0, CpuAccount::default()), None);
        let text = metrics.render();
        assert!(text.contains("\ntrainchain_miner_last_cycle 5\n"), "{text}");
        assert!(
            text.contains("\ntrainchain_miner_useful_work_ratio 0.75\n"),
            "{text}"
        );
        assert!(
            text.contains("\ntrainchain_miner_samples_per_second 640\n"),
            "{text}"
        );
    }
}
