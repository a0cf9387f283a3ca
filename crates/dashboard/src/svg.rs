//! Line charts as server-side SVG: no script, nothing fetched, readable with JavaScript off.
//!
//! Every point is a `<circle class="pt">` with `data-series`, `data-cycle` and `data-value`,
//! and every chart an `<svg data-plot=ID data-points=N>`, so a test (or a person with the
//! DOM inspector) can check what is drawn against the records.

use crate::html::esc;
use std::fmt::Write;

/// One line of a chart: a name and its points (cycle, value), in cycle order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Stable identifier (`data-series`), e.g. a miner's key.
    pub key: String,
    /// What the legend and tooltips call it.
    pub name: String,
    pub points: Vec<(u64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Stable identifier (`data-plot`), e.g. `held-out-loss`.
    pub id: &'static str,
    pub title: String,
    /// What the y axis measures, with its unit.
    pub y_label: String,
    pub series: Vec<Series>,
    /// How a value is printed on the axis and in a point's tooltip.
    pub format: fn(f64) -> String,
    /// Draw the y axis from zero (counts, fractions) rather than from the data's minimum.
    pub from_zero: bool,
    /// A line under the chart (e.g. how many miners were left out).
    pub note: Option<String>,
    /// Values are whole numbers (counts): ticks are too.
    pub whole: bool,
    /// The cycles the x axis spans (so charts of one page line up); else the data's.
    pub x_range: Option<(u64, u64)>,
}

/// The tick step near `raw`: 1, 2 or 5 times a power of ten (at least 1 for whole numbers).
fn nice_step(raw: f64, whole: bool) -> f64 {
    let raw = if raw.is_finite() && raw > 0.0 {
        raw
    } else {
        1.0
    };
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    if whole {
        step.max(1.0).round()
    } else {
        step
    }
}

/// A number for an axis: compact for large magnitudes (`4.02G`), else as few digits as it needs.
pub fn compact(value: f64) -> String {
    let magnitude = value.abs();
    let (scaled, suffix) = if magnitude >= 1e9 {
        (value / 1e9, "G")
    } else if magnitude >= 1e6 {
        (value / 1e6, "M")
    } else if magnitude >= 1e4 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    let text = format!("{scaled:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{}{suffix}", if text == "-0" { "0" } else { text })
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Ticks on the y axis.
const Y_TICKS: usize = 5;
/// Most labelled ticks on the x axis.
const X_TICKS_MAX: u64 = 10;

/// Colours of the series, in turn.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// The chart as an `<svg>` element. Points whose value is not finite are left out.
pub fn render(chart: &Chart) -> String {
    let series: Vec<Series> = chart
        .series
        .iter()
        .map(|s| Series {
            key: s.key.clone(),
            name: s.name.clone(),
            points: s
                .points
                .iter()
                .copied()
                .filter(|(_, v)| v.is_finite())
                .collect(),
        })
        .collect();
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" data-plot=\"{}\" data-points=\"{points}\">\
         <title>{}</title><text x=\"{LEFT}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        esc(chart.id),
        esc(&chart.title),
        esc(&chart.title)
    );
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x_min, mut x_max) = (u64::MAX, 0u64);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in all {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if points == 0 {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"#777\">no finished cycle yet</text></svg>",
            LEFT + 20.0,
            HEIGHT / 2.0
        );
        return out;
    }
    if let Some((first, last)) = chart.x_range {
        x_min = x_min.min(first);
        x_max = x_max.max(last);
    }
    if chart.from_zero {
        y_min = y_min.min(0.0);
    }
    if y_max - y_min < 1e-12 {
        // A flat line: give it a band to sit in.
        let pad = if y_max.abs() > 1e-12 {
            y_max.abs() * 0.1
        } else {
            1.0
        };
        y_max += pad;
        if !chart.from_zero || y_min - pad >= 0.0 {
            y_min -= pad;
        }
    }
    // Round the range out to whole ticks of 1, 2 or 5 times a power of ten.
    let tick = nice_step((y_max - y_min) / Y_TICKS as f64, chart.whole);
    y_min = (y_min / tick).floor() * tick;
    y_max = (y_max / tick).ceil() * tick;
    let ticks = ((y_max - y_min) / tick).round().max(1.0) as usize;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x_span = (x_max - x_min).max(1) as f64;
    let sx = |x: u64| LEFT + (x - x_min) as f64 / x_span * plot_w;
    let sy = |y: f64| TOP + (1.0 - (y - y_min) / (y_max - y_min)) * plot_h;

    // Axes, y ticks with grid lines, x ticks at whole cycles.
    let _ = write!(
        out,
        "<g stroke=\"#999\"><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\"/>\
         <line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/></g>",
        TOP + plot_h,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    for i in 0..=ticks {
        let value = y_min + tick * i as f64;
        let y = sy(value);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            esc(&(chart.format)(value))
        );
    }
    let step = (x_max - x_min).div_ceil(X_TICKS_MAX).max(1);
    // `step_by` stops at x_max: cycle numbers come from upstream, and a `+=` loop near
    // u64::MAX would wrap and never end.
    for x in (x_min..=x_max).step_by(usize::try_from(step).unwrap_or(usize::MAX)) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{x}</text>",
            sx(x),
            TOP + plot_h + 16.0
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">cycle</text>\
         <text x=\"14\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(&chart.y_label)
    );

    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            out,
            "<g class=\"series\" data-series=\"{}\" data-points=\"{}\">",
            esc(&s.key),
            s.points.len()
        );
        if s.points.len() > 1 {
            let path: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        for &(x, y) in &s.points {
            let _ = write!(
                out,
                "<circle class=\"pt\" data-series=\"{}\" data-cycle=\"{x}\" data-value=\"{y}\" \
                 cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: cycle {x}: {}</title></circle>",
                esc(&s.key),
                sx(x),
                sy(y),
                esc(&s.name),
                esc(&(chart.format)(y))
            );
        }
        let ly = TOP + 14.0 * i as f64 + 6.0;
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text></g>",
            LEFT + plot_w + 12.0,
            ly - 9.0,
            LEFT + plot_w + 26.0,
            ly,
            esc(&legend(&s.name))
        );
    }
    if let Some(note) = &chart.note {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#777\">{}</text>",
            LEFT + plot_w + 12.0,
            TOP + plot_h,
            esc(note)
        );
    }
    out.push_str("</svg>");
    out
}

/// Characters of a series name in the legend (the tooltip has it whole).
const LEGEND_CHARS_MAX: usize = 22;

fn legend(name: &str) -> String {
    if name.chars().count() <= LEGEND_CHARS_MAX {
        return name.to_owned();
    }
    let head: String = name.chars().take(LEGEND_CHARS_MAX - 1).collect();
    format!("{head}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_numbers_compact() {
        assert_eq!(nice_step(0.4, true), 1.0);
        assert_eq!(nice_step(0.043, false), 0.05);
        assert_eq!(nice_step(800_000_000.0, false), 1e9);
        assert_eq!(compact(4_024_280_128.0), "4.024G");
        assert_eq!(compact(2.0), "2");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(15_000.0), "15k");
    }

    fn chart(series: Vec<Series>) -> Chart {
        Chart {
            id: "test",
            title: "Test <chart>".into(),
            y_label: "nat".into(),
            series,
            format: |v| format!("{v:.3}"),
            from_zero: false,
            note: None,
            whole: false,
            x_range: None,
        }
    }

    #[test]
    fn one_circle_per_finite_point_with_its_data() {
        let svg = render(&chart(vec![Series {
            key: "a".into(),
            name: "a".into(),
            points: vec![(0, 2.0), (1, 1.5), (2, f64::NAN), (3, 1.0)],
        }]));
        assert_eq!(svg.matches("<circle class=\"pt\"").count(), 3, "{svg}");
        assert!(svg.contains("data-points=\"3\""), "{svg}");
        assert!(svg.contains("data-cycle=\"3\" data-value=\"1\""), "{svg}");
        assert!(!svg.contains("data-cycle=\"2\""), "{svg}");
        assert!(svg.contains("Test &lt;chart&gt;"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn hostile_series_names_are_escaped_and_empty_charts_say_so() {
        let svg = render(&chart(vec![Series {
            key: "\"><script>x</script>".into(),
            name: "\"><script>x</script>".into(),
            points: vec![(5, 1.0)],
        }]));
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&quot;&gt;&lt;script&gt;"), "{svg}");
        let empty = render(&chart(vec![]));
        assert!(empty.contains("data-points=\"0\"") && empty.contains("no finished cycle"));
    }
}
