//! `/cycles` (a page of cycles, newest first) and `/cycles/{c}` (one cycle: every entry with
//! its measured numbers, score and odds, the replay checks, the draw order, the winner and its
//! block or why there was none, evidence and slashes).

use crate::html::{esc, esc_short, page, short_hex, Nav};
use crate::limits::ADMISSION_ROWS_SHOWN_MAX;
use crate::snapshot::Snapshot;
use crate::view::{checks, entries, nat, odds, outcome_text, percent, phase_name};
use coordinator_api::api::{ClaimOutcome, CycleOutcome, CycleRecord, SlashRole};
use std::fmt::Write;

/// Cycles `from` down to `from - count + 1` (newest first); `from` defaults to the newest.
pub fn list(s: &Snapshot, from: Option<u64>, count: u64) -> String {
    let newest = s.records.keys().next_back().copied();
    let top = from.or(newest);
    let mut body = String::from("<h1>Cycles</h1>");
    let shown: Vec<&CycleRecord> = match top {
        None => Vec::new(),
        Some(top) => s
            .records
            .range(..=top)
            .rev()
            .take(count as usize)
            .map(|(_, r)| r)
            .collect(),
    };
    if shown.is_empty() {
        body.push_str("<p class=\"muted\">No cycle record in this range.</p>");
    }
    body.push_str(
        "<table id=\"cycles\"><tr><th>cycle</th><th>phase</th><th>registered</th><th>submitted</th>\
         <th>entries</th><th>checks ✓ / ✗ / ?</th><th>outcome</th><th>winner</th>\
         <th>held-out loss</th><th>test accuracy</th></tr>",
    );
    for r in &shown {
        let cycle = r.announcement.announcement.cycle;
        let (v, f, u) = checks(r);
        let (winner, block, attrs) = match &r.outcome {
            Some(CycleOutcome::Produced { hash, miner, .. }) => (
                esc(&s.name_of(miner)),
                format!(
                    "<a href=\"/block/{hash}\">{}</a>",
                    esc_short(&outcome_text(r).unwrap_or_default())
                ),
                format!(" data-winner=\"{miner}\" data-block=\"{hash}\""),
            ),
            _ => (
                "-".to_owned(),
                esc_short(&outcome_text(r).unwrap_or_else(|| "open".to_owned())),
                String::new(),
            ),
        };
        let quality = r.next_quality;
        let _ = write!(
            body,
            "<tr data-cycle=\"{cycle}\" data-closed=\"{}\"{attrs}><td><a href=\"/cycles/{cycle}\">{cycle}</a></td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{v} / {f} / {u}</td><td>{block}</td><td>{winner}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            r.outcome.is_some(),
            phase_name(r.phase),
            r.registered,
            r.submitted.max(r.submissions.len() as u64),
            entries(r),
            quality.map_or("-".into(), |q| format!("{:.4}", nat(q.held_out_loss_units))),
            quality.map_or("-".into(), |q| percent(f64::from(q.test_accuracy_ppm) / 1e6)),
        );
    }
    body.push_str("</table>");
    if let Some(last) = shown.last() {
        let older = last.announcement.announcement.cycle;
        if older > 0 && s.records.range(..older).next().is_some() {
            let _ = write!(
                body,
                "<p><a href=\"/cycles?from={}&amp;count={count}\">older cycles</a></p>",
                older - 1
            );
        }
    }
    page("Cycles", Nav::Cycles, s.generation, &s.banners(), &body)
}

/// One cycle, or `None` when its record is not kept.
pub fn detail(s: &Snapshot, cycle: u64, coordinator_url: &str) -> Option<String> {
    let r = s.records.get(&cycle)?;
    let a = &r.announcement.announcement;
    let mut body = format!("<h1>Cycle {cycle}</h1>");
    let _ = write!(
        body,
        "<p id=\"cycle-summary\" data-cycle=\"{cycle}\" data-phase=\"{}\">Phase <b>{}</b> · {} registered · \
         {} submitted · {} entries · builds block {} on {} · model {}</p>",
        phase_name(r.phase),
        phase_name(r.phase),
        r.registered,
        r.submitted.max(r.submissions.len() as u64),
        entries(r),
        a.height,
        short_hex(&a.parent.to_string()),
        short_hex(&a.model_hash.to_string()),
    );
    outcome(s, r, &mut body);
    submissions(s, r, coordinator_url, &mut body);
    draw(s, r, &mut body);
    admission(s, r, &mut body);
    verifiers(s, r, &mut body);
    slashes(s, r, &mut body);
    lottery_inputs(r, &mut body);
    Some(page(
        &format!("Cycle {cycle}"),
        Nav::Cycles,
        s.generation,
        &s.banners(),
        &body,
    ))
}

fn outcome(s: &Snapshot, r: &CycleRecord, body: &mut String) {
    body.push_str("<h2>Outcome</h2>");
    match &r.outcome {
        None => body.push_str("<p id=\"outcome\" data-outcome=\"open\">Still open.</p>"),
        Some(CycleOutcome::Produced {
            height,
            hash,
            attempt,
            miner,
        }) => {
            let _ = write!(
                body,
                "<p id=\"outcome\" data-outcome=\"produced\" data-winner=\"{miner}\" data-block=\"{hash}\">\
                 Winner <b>{}</b> (draw attempt {attempt}) produced <a href=\"/block/{hash}\">block {height}</a> {}.</p>",
                esc(&s.name_of(miner)),
                short_hex(&hash.to_string())
            );
        }
        Some(other) => {
            let kind = match other {
                CycleOutcome::NoEligibleEntries => "no_eligible_entries",
                CycleOutcome::WinnersSilent { .. } => "winners_silent",
                _ => "superseded",
            };
            let _ = write!(
                body,
                "<p id=\"outcome\" data-outcome=\"{kind}\">{}</p>",
                esc_short(&outcome_text(r).unwrap_or_default())
            );
        }
    }
    if r.submissions.is_empty() && r.submitted > 0 {
        let _ = write!(
            body,
            "<p class=\"muted\">{} submissions received; who submitted what is published at the submission deadline.</p>",
            r.submitted
        );
    }
}

fn submissions(s: &Snapshot, r: &CycleRecord, coordinator_url: &str, body: &mut String) {
    let cycle = r.announcement.announcement.cycle;
    body.push_str(
        "<h2>Entries</h2><table id=\"entries\"><tr><th>miner</th><th>payout address</th><th>segment</th>\
         <th>parameters trained</th><th>loss reduction (nat)</th><th>score</th><th>lottery odds</th>\
         <th>replay check</th><th>steps</th></tr>",
    );
    for sub in &r.submissions {
        let check = match &sub.verification {
            proof::Verdict::Verified { intervals, replayed_steps } => format!(
                "<span class=\"good\">verified</span> ({} intervals, {replayed_steps} steps replayed)",
                intervals.len()
            ),
            proof::Verdict::Unanswered => "<span class=\"bad\">unanswered</span>".to_owned(),
            proof::Verdict::Failed { failure } => format!(
                "<span class=\"bad\">failed</span>: {} · <a href=\"{}/v1/cycles/{cycle}/evidence/{}\">evidence</a>",
                esc_short(&failure.to_string()),
                esc(coordinator_url),
                sub.miner
            ),
        };
        let _ = write!(
            body,
            "<tr data-miner=\"{}\" data-score=\"{}\" data-verdict=\"{}\"><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{:.6}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{check}</td><td class=\"num\">{}</td></tr>",
            sub.miner,
            sub.score,
            sub.verification.name(),
            esc(&s.name_of(&sub.miner)),
            esc_short(&sub.payout_address),
            esc_short(&sub.segment),
            sub.params_trained,
            nat(sub.loss_reduction),
            sub.score,
            odds(r, sub).map_or("-".to_owned(), percent),
            sub.commitment.steps,
        );
    }
    body.push_str("</table>");
    let (v, f, u) = checks(r);
    let _ = write!(
        body,
        "<p id=\"checks\" data-verified=\"{v}\" data-failed=\"{f}\" data-unanswered=\"{u}\">Replay checks: \
         {v} passed, {f} failed, {u} unanswered. A score is zero unless its check passed; odds are a \
         score over the cycle's total.</p>"
    );
}

fn draw(s: &Snapshot, r: &CycleRecord, body: &mut String) {
    body.push_str("<h2>Draw order</h2>");
    if r.draw_order.is_empty() {
        body.push_str("<p class=\"muted\">No draw (none yet, or no entry scored above zero).</p>");
        return;
    }
    body.push_str("<table id=\"draw\"><tr><th>attempt</th><th>miner</th><th>block-signing certificate</th></tr>");
    let winner = match &r.outcome {
        Some(CycleOutcome::Produced { attempt, .. }) => Some(*attempt as usize),
        _ => None,
    };
    for (k, miner) in r.draw_order.iter().enumerate() {
        let cert = match r.block_certificates.get(k) {
            Some(c) => format!(
                "issued, valid until {} (unix s){}",
                c.0.body.expires_at,
                if winner == Some(k) {
                    " · <b>produced the block</b>"
                } else {
                    ""
                }
            ),
            None => "not issued".to_owned(),
        };
        let _ = write!(
            body,
            "<tr data-attempt=\"{k}\" data-miner=\"{miner}\"><td class=\"num\">{k}</td><td>{}</td><td>{cert}</td></tr>",
            esc(&s.name_of(miner))
        );
    }
    body.push_str("</table>");
}

/// The bonded admission draw, in a cycle whose bonded registrations outnumbered its slots:
/// every bond that took part, its value, and whether it was admitted.
fn admission(s: &Snapshot, r: &CycleRecord, body: &mut String) {
    let Some(draw) = &r.admission else { return };
    let _ = write!(
        body,
        "<h2>Bonded admission</h2><p>{} registrations for {} slots, drawn weighted by bond value.</p>\
         <table id=\"admission\"><tr><th>miner</th><th>bond</th><th>bond value</th><th>admitted</th></tr>",
        draw.pending.len(),
        draw.slots
    );
    for p in draw.pending.iter().take(ADMISSION_ROWS_SHOWN_MAX) {
        let admitted = draw.admitted.iter().position(|m| *m == p.miner);
        let _ = write!(
            body,
            "<tr data-miner=\"{}\" data-admitted=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            p.miner,
            admitted.is_some(),
            esc(&s.name_of(&p.miner)),
            esc(&p.bond.to_string()),
            esc(&bitcoin::Amount::from_sat(p.bond_sats).to_string()),
            admitted.map_or("no".to_owned(), |k| format!("yes (draw {k})")),
        );
    }
    body.push_str("</table>");
    if draw.pending.len() > ADMISSION_ROWS_SHOWN_MAX {
        let _ = write!(
            body,
            "<p class=\"muted\">{} more bonds not listed.</p>",
            draw.pending.len() - ADMISSION_ROWS_SHOWN_MAX
        );
    }
}

fn slashes(s: &Snapshot, r: &CycleRecord, body: &mut String) {
    body.push_str("<h2>Bonds slashed</h2>");
    if r.slashes.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
        return;
    }
    body.push_str(
        "<table id=\"slashes\"><tr><th>key</th><th>role</th><th>bond</th><th>finder paid</th><th>slash transaction</th></tr>",
    );
    for slash in &r.slashes {
        let role = match slash.role {
            SlashRole::Miner => "miner",
            SlashRole::Verifier => "verifier",
        };
        let finder = slash
            .finder
            .as_ref()
            .map_or("none (all burned)".to_owned(), |f| s.name_of(&f.verifier));
        let _ = write!(
            body,
            "<tr data-miner=\"{}\" data-role=\"{role}\"><td>{}</td><td>{role}</td><td>{}</td><td>{}</td><td><a href=\"/tx/{}\">{}</a></td></tr>",
            slash.miner,
            esc(&s.name_of(&slash.miner)),
            esc(&slash.bond.to_string()),
            esc(&finder),
            slash.txid,
            short_hex(&slash.txid.to_string())
        );
    }
    body.push_str("</table>");
}

/// The cycle's verifiers and, once evaluated, what their claims came to.
fn verifiers(s: &Snapshot, r: &CycleRecord, body: &mut String) {
    let v = &r.verification;
    body.push_str("<h2>Verifiers</h2>");
    if v.verifiers.is_empty() {
        body.push_str("<p class=\"muted\">None enrolled.</p>");
        return;
    }
    let _ = write!(
        body,
        "<p id=\"verification-summary\">{} enrolled · {} assignments ({} flags, {} audits) · the coordinator replayed {} of {} challenged steps itself</p>",
        v.verifiers.len(),
        v.assignments.len(),
        v.assignments.iter().filter(|x| x.flagged).count(),
        v.assignments.iter().filter(|x| x.audited).count(),
        v.coordinator_replayed_steps,
        v.challenged_steps,
    );
    body.push_str(
        "<table id=\"verifiers\"><tr><th>verifier</th><th>bond</th><th>assignments</th><th>trusted</th><th>confirmed</th><th>caught a cheat</th><th>wrong</th></tr>",
    );
    for e in &v.verifiers {
        let count = |o: ClaimOutcome| {
            v.verdicts
                .iter()
                .filter(|x| x.verifier == e.verifier && x.outcome == o)
                .count()
        };
        let _ = write!(
            body,
            "<tr data-verifier=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.verifier,
            esc(&s.name_of(&e.verifier)),
            esc(&e.bond.to_string()),
            v.assignments.iter().filter(|x| x.verifier == e.verifier).count(),
            count(ClaimOutcome::Trusted),
            count(ClaimOutcome::Confirmed),
            count(ClaimOutcome::CaughtCheat),
            count(ClaimOutcome::Wrong),
        );
    }
    body.push_str("</table>");
}

fn lottery_inputs(r: &CycleRecord, body: &mut String) {
    let hex =
        |h: Option<primitives::Hash256>| h.map_or("-".to_owned(), |h| short_hex(&h.to_string()));
    let _ = write!(
        body,
        "<h2>Published lottery inputs</h2><table><tr><td>commitment</td><td>{}</td></tr>\
         <tr><td>revealed secret</td><td>{}</td></tr><tr><td>commitments digest</td><td>{}</td></tr>\
         <tr><td>contributions root</td><td>{}</td></tr><tr><td>lottery seed</td><td>{}</td></tr>\
         <tr><td>record digest</td><td>{}</td></tr><tr><td>next model</td><td>{}</td></tr>\
         <tr><td>global held-out loss before</td><td>{}</td></tr></table>",
        short_hex(&r.announcement.announcement.commitment.to_string()),
        hex(r.revealed_secret),
        hex(r.commitments_digest),
        hex(r.contributions_root),
        hex(r.lottery_seed),
        hex(r.record_hash),
        hex(r.next_model_hash),
        r.global_loss_units.map_or("-".to_owned(), |u| format!("{:.4} nat", nat(u))),
    );
}
