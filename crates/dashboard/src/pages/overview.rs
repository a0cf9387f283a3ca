//! `/`: the live cycle (phase, countdown, registrations and submissions so far), the model's
//! segment layout, the newest global model and the latest closed cycle.

use crate::html::{esc, esc_short, page, short_hex, Nav};
use crate::snapshot::Snapshot;
use crate::view::{deadline, entries, nat, outcome_text, percent, phase_name, remaining_ms};
use learning::segment_of;
use std::fmt::Write;

pub fn render(s: &Snapshot) -> String {
    let mut body = String::from("<h1>Overview</h1>");
    match &s.status {
        None => body.push_str("<p class=\"muted\">Waiting for the coordinator's first answer.</p>"),
        Some(status) => {
            let a = &status.announcement.announcement;
            let record = s.records.get(&a.cycle);
            let phase = phase_name(status.phase);
            let countdown = deadline(status, record);
            let (remaining, what) = match countdown {
                Some((at, what)) => (
                    format!("{} s", remaining_ms(status, at).div_ceil(1000)),
                    what,
                ),
                None => ("-".to_owned(), "no deadline in this phase"),
            };
            let attempt = status
                .attempt
                .map_or(String::new(), |k| format!(" (attempt {k})"));
            let _ = write!(
                body,
                "<section class=\"live\" id=\"live\" data-cycle=\"{}\" data-phase=\"{phase}\">\
                 <div>cycle<b id=\"live-cycle\">{}</b></div>\
                 <div>phase<b id=\"live-phase\">{phase}</b>{}</div>\
                 <div>{}<b id=\"live-countdown\">{remaining}</b></div>\
                 <div>registered<b id=\"live-registered\">{}</b></div>\
                 <div>submitted<b id=\"live-submitted\">{}</b></div>\
                 <div>block height it may produce<b>{}</b></div></section>",
                a.cycle,
                a.cycle,
                esc(&attempt),
                esc(what),
                status.registered,
                status.submitted,
                a.height,
            );
            let _ = write!(
                body,
                "<p>Builds on block {} · trains model {} · opened at {} ms (coordinator clock) · \
                 <a href=\"/cycles/{}\">this cycle's record</a></p>",
                short_hex(&a.parent.to_string()),
                short_hex(&a.model_hash.to_string()),
                a.opened_at_ms,
                a.cycle
            );
        }
    }
    segment_layout(s, &mut body);
    model_summary(s, &mut body);
    latest_closed(s, &mut body);
    page("Overview", Nav::Overview, s.generation, &s.banners(), &body)
}

/// The model's segments (the units miners train) with their sizes, and for the newest
/// revealed cycle how many submissions trained each one. Before a cycle's submission deadline
/// the API shows only counts, so who trains what is known only afterwards.
fn segment_layout(s: &Snapshot, body: &mut String) {
    body.push_str("<h2>Segment layout</h2>");
    let Some(card) = &s.card else {
        body.push_str("<p class=\"muted\">The model card has not been read yet.</p>");
        return;
    };
    let shapes = match card.spec.param_shapes() {
        Ok(shapes) => shapes,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"bad\">The model spec is not valid: {}</p>",
                esc_short(&e.to_string())
            );
            return;
        }
    };
    let mut segments: Vec<(String, usize)> = Vec::new();
    for (name, shape) in &shapes {
        let count: usize = shape.iter().product();
        let segment = segment_of(name);
        match segments.last_mut() {
            Some((last, n)) if last == segment => *n += count,
            _ => segments.push((segment.to_owned(), count)),
        }
    }
    let total: usize = segments.iter().map(|(_, n)| n).sum();
    let revealed = s.records.values().rev().find(|r| !r.submissions.is_empty());
    let _ = write!(
        body,
        "<table id=\"segments\"><tr><th>segment</th><th>parameters</th><th>share of the model</th><th>{}</th></tr>",
        revealed.map_or("submissions".to_owned(), |r| format!(
            "submissions in cycle {}",
            r.announcement.announcement.cycle
        ))
    );
    for (name, count) in &segments {
        let trained = revealed.map_or(0, |r| {
            r.submissions.iter().filter(|x| &x.segment == name).count()
        });
        let _ = write!(
            body,
            "<tr data-segment=\"{}\"><td>{}</td><td class=\"num\">{count}</td><td class=\"num\">{}</td><td class=\"num\">{trained}</td></tr>",
            esc(name),
            esc(name),
            percent(*count as f64 / total.max(1) as f64)
        );
    }
    let _ = write!(
        body,
        "</table><p>{} parameters in all, dataset {}.</p>",
        total,
        esc_short(&card.dataset)
    );
}

fn model_summary(s: &Snapshot, body: &mut String) {
    let Some(card) = &s.card else { return };
    let loss = s
        .closed_cycles()
        .filter_map(|r| r.next_quality)
        .last()
        .map_or("-".to_owned(), |q| {
            format!("{:.4} nat", nat(q.held_out_loss_units))
        });
    let _ = write!(
        body,
        "<h2>Global model</h2><p>Newest model {} · test accuracy {} (the coordinator's report) · \
         held-out loss {loss} on the newest closed cycle's batch · {} models in its lineage.</p>",
        short_hex(&card.model_hash),
        percent(f64::from(card.test_accuracy)),
        card.lineage.len()
    );
}

fn latest_closed(s: &Snapshot, body: &mut String) {
    body.push_str("<h2>Latest closed cycle</h2>");
    let Some(r) = s.closed_cycles().last() else {
        body.push_str("<p class=\"muted\">No cycle has closed yet.</p>");
        return;
    };
    let cycle = r.announcement.announcement.cycle;
    let _ = write!(
        body,
        "<p><a href=\"/cycles/{cycle}\">cycle {cycle}</a>: {} entries of {} submissions; {}.</p>",
        entries(r),
        r.submissions.len(),
        esc_short(&outcome_text(r).unwrap_or_default())
    );
    if let Some((height, hash)) = s.tip {
        let _ = write!(
            body,
            "<p>Chain tip: <a href=\"/block/{hash}\">block {height}</a> {}.</p>",
            short_hex(&hash.to_string())
        );
    }
}
