//! HTML escaping and the page frame. Every string that came from the coordinator or the node
//! goes through [`esc`] (or [`esc_short`]) before it is written into a page: miner keys and
//! hashes are hex, but payout addresses, failure reasons, labels and error texts are chosen by
//! others, and the page treats all of them alike.

use crate::limits::DISPLAY_CHARS_MAX;
use std::fmt::Write;

/// `text` with `& < > " '` replaced by entities: safe in element content and in quoted
/// attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a page; show them as the replacement
            // character rather than let one end a line of a header or confuse a terminal.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// At most [`DISPLAY_CHARS_MAX`] characters of `text`, with an ellipsis when cut.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(DISPLAY_CHARS_MAX) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// [`esc`] of [`truncate`]: for free-form strings from upstream.
pub fn esc_short(text: &str) -> String {
    esc(&truncate(text))
}

/// A long hex string shortened for a table cell (`02ab…9f3c`), escaped; the full value goes in
/// the element's `title`.
pub fn short_hex(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 16 {
        return esc(text);
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 6..].iter().collect();
    format!(
        "<span class=\"hex\" title=\"{}\">{}…{}</span>",
        esc(text),
        esc(&head),
        esc(&tail)
    )
}

/// The pages of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Cycles,
    Plots,
    Chain,
}

const NAV: [(Nav, &str, &str); 4] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Cycles, "/cycles", "Cycles"),
    (Nav::Plots, "/plots", "Plots"),
    (Nav::Chain, "/chain", "Chain"),
];

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#fafafa;color:#222}\
header{background:#1d3557;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:center}\
header a{color:#cfe3ff;text-decoration:none}header a.on{color:#fff;font-weight:bold}\
main{padding:1em 1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1.5em}\
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}\
th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.hex{font-family:monospace}.bad{color:#b00020}.good{color:#1b7f3b}.muted{color:#777}\
.live{display:flex;gap:2em;flex-wrap:wrap;background:#fff;border:1px solid #ddd;padding:1em;margin:.5em 0}\
.live div b{display:block;font-size:1.6em}.banner{background:#fff3cd;border:1px solid #e0c36b;padding:.5em 1em;margin:.5em 0}\
svg{background:#fff;border:1px solid #ddd;margin:.3em 0 1em}";

/// The live-update script (served as `/live.js`): polls `/live.json` every second, updates the live fields and the
/// countdown in place, and reloads the page when anything it shows changed (a new phase,
/// record or block). Without JavaScript the page is complete as served, and a `<noscript>`
/// refresh keeps it current.
pub const LIVE_SCRIPT: &str = r#"(function(){
var gen=document.body.getAttribute('data-generation');
function set(id,v){var e=document.getElementById(id);if(e&&v!==undefined&&v!==null){e.textContent=String(v);}}
function tick(){fetch('/live.json',{cache:'no-store'}).then(function(r){return r.json();}).then(function(s){
if(String(s.generation)!==gen){location.reload();return;}
set('live-phase',s.phase);set('live-cycle',s.cycle);set('live-registered',s.registered);set('live-submitted',s.submitted);
set('live-countdown',s.remaining_ms===null?'-':Math.ceil(s.remaining_ms/1000)+' s');
}).catch(function(){});}
setInterval(tick,1000);})();"#;

/// Seconds between reloads of a page when JavaScript is off.
const NOSCRIPT_REFRESH_SECS: u32 = 10;

/// A whole page: `body` must already be escaped HTML.
pub fn page(title: &str, active: Nav, generation: u64, banners: &[String], body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · trainchain</title><style>{STYLE}</style>\
         <noscript><meta http-equiv=\"refresh\" content=\"{NOSCRIPT_REFRESH_SECS}\"></noscript></head>\
         <body data-generation=\"{generation}\"><header><b>trainchain</b>",
        esc(title)
    );
    for (nav, href, name) in NAV {
        let class = if nav == active { " class=\"on\"" } else { "" };
        let _ = write!(out, "<a href=\"{href}\"{class}>{name}</a>");
    }
    out.push_str("</header><main>");
    for banner in banners {
        let _ = write!(out, "<div class=\"banner\">{}</div>", esc_short(banner));
    }
    out.push_str(body);
    out.push_str("</main><script src=\"/live.js\"></script></body></html>");
    out
}

/// A page for a refused request or a missing thing (status chosen by the caller).
pub fn message_page(title: &str, message: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · trainchain</title>\
         <style>{STYLE}</style></head><body><header><b>trainchain</b><a href=\"/\">Overview</a></header>\
         <main><h1>{}</h1><p class=\"error\">{}</p></main></body></html>",
        esc(title),
        esc(title),
        esc_short(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
        assert_eq!(esc("plain 02ab"), "plain 02ab");
    }

    #[test]
    fn truncates_long_strings_on_a_char_boundary() {
        let long = "é".repeat(DISPLAY_CHARS_MAX + 10);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), DISPLAY_CHARS_MAX + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn short_hex_escapes_what_it_shows_and_its_title() {
        let hostile = "\"><img src=x onerror=alert(1)>0123456789";
        let html = short_hex(hostile);
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&quot;&gt;&lt;img"), "{html}");
    }
}
