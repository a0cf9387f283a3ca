//! Prometheus counters and gauges of the coordinator, rendered in the text exposition format.

use crate::api::CycleOutcome;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    cycle: AtomicU64,
    registrations: AtomicU64,
    submissions_accepted: AtomicU64,
    submissions_rejected: AtomicU64,
    certificates: AtomicU64,
    cycles_produced: AtomicU64,
    cycles_without_block: AtomicU64,
    evaluated_submissions: AtomicU64,
    /// f64 bits.
    evaluation_secs: AtomicU64,
    held_out_loss: AtomicU64,
    test_accuracy: AtomicU64,
}

fn add_f64(cell: &AtomicU64, delta: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

impl Metrics {
    pub fn set_cycle(&self, cycle: u64) {
        self.cycle.store(cycle, Ordering::Relaxed);
    }
    pub fn add_registration(&self) {
        self.registrations.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_submission_accepted(&self) {
        self.submissions_accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_submission_rejected(&self) {
        self.submissions_rejected.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_certificates(&self, n: u64) {
        self.certificates.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_closed(&self, outcome: &CycleOutcome) {
        match outcome {
            CycleOutcome::Produced { .. } => &self.cycles_produced,
            _ => &self.cycles_without_block,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_evaluation(&self, submissions: u64, secs: f64) {
        self.evaluated_submissions
            .fetch_add(submissions, Ordering::Relaxed);
        add_f64(&self.evaluation_secs, secs);
    }
    pub fn set_quality(&self, held_out_loss: f32, test_accuracy: f32) {
        self.held_out_loss
            .store(f64::from(held_out_loss).to_bits(), Ordering::Relaxed);
        self.test_accuracy
            .store(f64::from(test_accuracy).to_bits(), Ordering::Relaxed);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let u = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        let f = |c: &AtomicU64| f64::from_bits(c.load(Ordering::Relaxed)).to_string();
        let rows: [(&str, &str, &str, String); 11] = [
            (
                "trainchain_coordinator_cycle",
                "gauge",
                "Number of the live cycle.",
                u(&self.cycle),
            ),
            (
                "trainchain_coordinator_registrations_total",
                "counter",
                "Registrations accepted.",
                u(&self.registrations),
            ),
            (
                "trainchain_coordinator_submissions_accepted_total",
                "counter",
                "Submissions receipted.",
                u(&self.submissions_accepted),
            ),
            (
                "trainchain_coordinator_submissions_rejected_total",
                "counter",
                "Submissions refused.",
                u(&self.submissions_rejected),
            ),
            (
                "trainchain_coordinator_certificates_issued_total",
                "counter",
                "Certificates signed (contribution and block-signing).",
                u(&self.certificates),
            ),
            (
                "trainchain_coordinator_cycles_produced_total",
                "counter",
                "Cycles closed with the winner's block.",
                u(&self.cycles_produced),
            ),
            (
                "trainchain_coordinator_cycles_without_block_total",
                "counter",
                "Cycles closed without a block of theirs.",
                u(&self.cycles_without_block),
            ),
            (
                "trainchain_coordinator_evaluated_submissions_total",
                "counter",
                "Submissions scored on the held-out set.",
                u(&self.evaluated_submissions),
            ),
            (
                "trainchain_coordinator_evaluation_seconds_total",
                "counter",
                "Time spent evaluating submissions.",
                f(&self.evaluation_secs),
            ),
            (
                "trainchain_coordinator_held_out_loss",
                "gauge",
                "Held-out loss of the newest global model (nats).",
                f(&self.held_out_loss),
            ),
            (
                "trainchain_coordinator_test_accuracy",
                "gauge",
                "Test accuracy of the newest global model.",
                f(&self.test_accuracy),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}
