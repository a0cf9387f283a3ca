//! Prometheus counters and gauges of the coordinator, rendered in the text exposition format.
//! A gauge with no value yet (no cycle opened, no model evaluated) is left out, never 0.

use crate::api::CycleOutcome;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The gauges, each `None` until it is first set.
#[derive(Debug, Clone, Copy, Default)]
struct Gauges {
    cycle: Option<u64>,
    held_out_loss: Option<f64>,
    test_accuracy: Option<f64>,
}

#[derive(Default)]
pub struct Metrics {
    gauges: Mutex<Gauges>,
    registrations: AtomicU64,
    submissions_accepted: AtomicU64,
    submissions_rejected: AtomicU64,
    certificates: AtomicU64,
    cycles_produced: AtomicU64,
    cycles_without_block: AtomicU64,
    evaluated_submissions: AtomicU64,
    /// f64 bits.
    evaluation_secs: AtomicU64,
}

fn add_f64(cell: &AtomicU64, delta: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + delta).to_bits())
    });
}

/// A float as the exposition format spells it (Rust writes infinities as `inf`).
fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

impl Metrics {
    fn gauges(&self) -> std::sync::MutexGuard<'_, Gauges> {
        self.gauges.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_cycle(&self, cycle: u64) {
        self.gauges().cycle = Some(cycle);
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
        let mut gauges = self.gauges();
        gauges.held_out_loss = Some(f64::from(held_out_loss));
        gauges.test_accuracy = Some(f64::from(test_accuracy));
    }

    /// The text exposition format (version 0.0.4); a row without a value is left out.
    pub fn render(&self) -> String {
        let u = |c: &AtomicU64| Some(c.load(Ordering::Relaxed).to_string());
        let f = |c: &AtomicU64| Some(float(f64::from_bits(c.load(Ordering::Relaxed))));
        let gauges = *self.gauges();
        let rows: [(&str, &str, &str, Option<String>); 11] = [
            (
                "trainchain_coordinator_cycle",
                "gauge",
                "Number of the live cycle.",
                gauges.cycle.map(|c| c.to_string()),
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
                gauges.held_out_loss.map(float),
            ),
            (
                "trainchain_coordinator_test_accuracy",
                "gauge",
                "Test accuracy of the newest global model.",
                gauges.test_accuracy.map(float),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let Some(value) = value else { continue };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_absent_until_set_and_counters_start_at_zero() {
        let metrics = Metrics::default();
        let fresh = metrics.render();
        assert!(!fresh.contains("trainchain_coordinator_cycle "), "{fresh}");
        assert!(!fresh.contains("held_out_loss"), "{fresh}");
        assert!(!fresh.contains("test_accuracy"), "{fresh}");
        assert!(fresh.starts_with(
            "# HELP trainchain_coordinator_registrations_total Registrations accepted.\n\
             # TYPE trainchain_coordinator_registrations_total counter\n\
             trainchain_coordinator_registrations_total 0\n"
        ));
        assert!(fresh.contains("\ntrainchain_coordinator_evaluation_seconds_total 0\n"));

        metrics.set_cycle(0);
        metrics.set_quality(0.5, 0.875);
        metrics.add_evaluation(2, 1.25);
        let text = metrics.render();
        assert!(text.starts_with(
            "# HELP trainchain_coordinator_cycle Number of the live cycle.\n\
             # TYPE trainchain_coordinator_cycle gauge\n\
             trainchain_coordinator_cycle 0\n"
        ));
        assert!(text.ends_with(
            "# HELP trainchain_coordinator_held_out_loss Held-out loss of the newest global model (nats).\n\
             # TYPE trainchain_coordinator_held_out_loss gauge\n\
             trainchain_coordinator_held_out_loss 0.5\n\
             # HELP trainchain_coordinator_test_accuracy Test accuracy of the newest global model.\n\
             # TYPE trainchain_coordinator_test_accuracy gauge\n\
             trainchain_coordinator_test_accuracy 0.875\n"
        ));
        assert!(text.contains("\ntrainchain_coordinator_evaluated_submissions_total 2\n"));
        assert!(text.contains("\ntrainchain_coordinator_evaluation_seconds_total 1.25\n"));
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
    }
}
