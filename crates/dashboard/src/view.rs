//! What the pages derive from records and the live status: lottery odds, outcomes in words,
//! the phase's deadline, numbers in their units.

use coordinator_api::api::{CycleOutcome, CycleRecord, CycleStatus, PhaseName, ScoredSubmission};
use primitives::certificate::LOSS_UNITS_PER_NAT;

/// The phase's name as the API spells it.
pub fn phase_name(phase: PhaseName) -> &'static str {
    match phase {
        PhaseName::Registration => "registration",
        PhaseName::Training => "training",
        PhaseName::Challenge => "challenge",
        PhaseName::Verification => "verification",
        PhaseName::Evaluation => "evaluation",
        PhaseName::BlockWindow => "block_window",
        PhaseName::Closed => "closed",
    }
}

/// The end of the live phase (coordinator clock, ms) and what happens then, if it has one.
pub fn deadline(status: &CycleStatus, record: Option<&CycleRecord>) -> Option<(u64, &'static str)> {
    let a = &status.announcement.announcement;
    match status.phase {
        PhaseName::Registration => Some((a.registration_deadline_ms, "registration closes")),
        PhaseName::Training => Some((a.submission_deadline_ms, "submissions close")),
        PhaseName::Challenge => Some((a.challenge_deadline_ms, "answers close")),
        PhaseName::BlockWindow => {
            // The current attempt's certificate expires at the end of its window (seconds).
            let attempt = status.attempt? as usize;
            let cert = record?.block_certificates.get(attempt)?;
            Some((
                cert.0.body.expires_at.saturating_mul(1000),
                "this attempt's block window ends",
            ))
        }
        // The verification window's end is in the live state only (it starts when the
        // challenge window actually closed).
        PhaseName::Verification | PhaseName::Evaluation | PhaseName::Closed => None,
    }
}

/// Milliseconds left until `deadline_ms` on the coordinator's clock, as of its `now_ms`.
pub fn remaining_ms(status: &CycleStatus, deadline_ms: u64) -> u64 {
    deadline_ms.saturating_sub(status.now_ms)
}

/// A submission's lottery odds: its score over the cycle's total (entries are the scored ones).
pub fn odds(record: &CycleRecord, submission: &ScoredSubmission) -> Option<f64> {
    let total: u128 = record.submissions.iter().map(|s| u128::from(s.score)).sum();
    (total > 0).then(|| submission.score as f64 / total as f64)
}

/// Submissions that entered the lottery (score above zero).
pub fn entries(record: &CycleRecord) -> usize {
    record.submissions.iter().filter(|s| s.score > 0).count()
}

/// Held-out loss in nat from the records' 10^-6 nat units.
pub fn nat(units: i64) -> f64 {
    units as f64 / LOSS_UNITS_PER_NAT as f64
}

/// A cycle's end in words (no HTML): the block, or why there was none; `None` while open.
pub fn outcome_text(record: &CycleRecord) -> Option<String> {
    Some(match record.outcome.as_ref()? {
        CycleOutcome::Produced {
            height, attempt, ..
        } => format!("block {height} (attempt {attempt})"),
        CycleOutcome::NoEligibleEntries => {
            if record.submissions.is_empty() {
                "no block: no submission".to_owned()
            } else {
                "no block: no submission scored above zero (none passed its replay check with a held-out improvement)".to_owned()
            }
        }
        CycleOutcome::WinnersSilent { attempts } => format!(
            "no block: each of the {attempts} drawn winner(s) stayed silent through its block window"
        ),
        CycleOutcome::Superseded { height, hash } => {
            format!("no block of this cycle: block {height} ({hash}) took the height")
        }
    })
}

/// Verification tally: (verified, failed, unanswered), as the audit counts it.
pub fn checks(record: &CycleRecord) -> (usize, usize, usize) {
    let tally = miner::audit::CycleVerification::of(record);
    (tally.verified, tally.failed, tally.unanswered)
}

/// `value` as a percentage with one decimal.
pub fn percent(value: f64) -> String {
    format!("{:.1}%", 100.0 * value)
}
