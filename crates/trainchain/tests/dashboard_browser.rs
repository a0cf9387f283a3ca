//! The dashboard in a real browser: a small `trainchain devnet --linger` with its dashboard,
//! loaded in headless Chromium (`--dump-dom`, `--screenshot`). Checks that the plots have one
//! point per finished cycle, that the winners and blocks shown are the chain's (over the
//! node's RPC), and that the live phase moves.
//!
//! Ignored by plain `cargo test` (it needs Chromium); `scripts/dashboard-browser-test` installs
//! Debian's `chromium` where apt can reach Debian and runs it. `TRAINCHAIN_CHROMIUM` names the
//! browser (default `chromium`); `TRAINCHAIN_SCREENSHOTS=DIR` writes `dashboard-*.png` there.

use node::rpc::client::{ClientAuth, RpcClient};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the devnet may take to print its summary (3 cycles of 3 s, the audit, a loaded
/// 2-core machine).
const DEVNET_WAIT: Duration = Duration::from_secs(600);
/// One page load in the browser.
const BROWSER_WAIT: Duration = Duration::from_secs(90);
/// Between the two dumps of the live phase: over one whole 3-second cycle.
const PHASE_GAP: Duration = Duration::from_secs(4);

fn chromium() -> String {
    let browser = std::env::var("TRAINCHAIN_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&browser)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "no {browser:?} to run: this test needs headless Chromium; run scripts/dashboard-browser-test \
         (it installs Debian's chromium package) or set TRAINCHAIN_CHROMIUM"
    );
    browser
}

/// Runs headless Chromium on `url` with `extra` flags, in a fresh profile; its stdout.
fn browse(browser: &str, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut text);
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(BROWSER_WAIT).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    text
}

fn dump(browser: &str, url: &str) -> String {
    let dom = browse(browser, url, &["--dump-dom"]);
    assert!(
        dom.contains("</html>"),
        "chromium dumped no page for {url}: {dom}"
    );
    dom
}

/// The values of `attribute` in `html`, in order.
fn attributes(html: &str, attribute: &str) -> Vec<String> {
    let needle = format!(" {attribute}=\"");
    html.split(&needle)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// The elements (their opening tags) of `html` that have `attribute`.
fn tags_with<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!(" {attribute}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&needle) {
        let start = rest[..at].rfind('<').unwrap();
        let end = at + rest[at..].find('>').unwrap();
        out.push(&rest[start..end]);
        rest = &rest[end..];
    }
    out
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The `<svg data-plot=ID>` element of a page.
fn plot<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("data-plot=\"{id}\""))
        .unwrap_or_else(|| panic!("no plot {id} in {html}"));
    let start = html[..at].rfind("<svg").unwrap();
    let end = html[start..].find("</svg>").unwrap();
    &html[start..start + end]
}

/// The devnet child: stopped with SIGINT (its Ctrl-C, which stops its own children), killed
/// if that does not work, whatever the test's outcome.
struct Devnet {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
}

impl Devnet {
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Reads stdout lines until one satisfies `done`; all lines are kept.
    fn wait_for(&mut self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEVNET_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if done(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the devnet printed no {what} within {} s:\n{}",
                    DEVNET_WAIT.as_secs(),
                    self.stdout.join("\n")
                ),
            }
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.interrupt();
        }
    }
}

fn start_devnet(dir: &Path) -> Devnet {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainchain"))
        .arg("devnet")
        .arg("--data-dir")
        .arg(dir.join("net"))
        .args([
            "--cycles",
            "3",
            "--cycle-secs",
            "3",
            "--miner-threads",
            "1",
            "--dataset",
            "digits",
            "--model",
            "mlp:32",
            "--linger",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("running trainchain devnet");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Devnet {
        child,
        lines,
        stdout: Vec::new(),
    }
}

async fn rpc(client: &RpcClient, method: &str, params: Vec<Value>) -> Value {
    client
        .call(method, params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// The winner and cycle the chain's certificate names for block `hash` (`getblock` verbosity 1).
async fn certificate(client: &RpcClient, hash: &str) -> (String, u64) {
    let block = rpc(client, "getblock", vec![json!(hash), json!(1)]).await;
    let cert = &block["certificate"];
    (
        cert["miner"].as_str().unwrap().to_owned(),
        cert["cycle"].as_u64().unwrap(),
    )
}

fn screenshot(browser: &str, url: &str, dir: &Path, name: &str, height: u32) {
    let path = dir.join(format!("dashboard-{name}.png"));
    browse(
        browser,
        url,
        &[
            &format!("--window-size=1280,{height}"),
            &format!("--screenshot={}", path.display()),
        ],
    );
    assert!(
        path.is_file(),
        "chromium wrote no screenshot {}",
        path.display()
    );
}

#[test]
#[ignore = "needs headless Chromium: run scripts/dashboard-browser-test"]
fn the_dashboard_in_chromium_shows_the_chain_and_the_cycles() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = start_devnet(dir.path());
    let line = devnet.wait_for("dashboard URL", |l| l.starts_with("dashboard: "));
    let base = line["dashboard: ".len()..].trim_end_matches('/').to_owned();
    let screenshots = std::env::var_os("TRAINCHAIN_SCREENSHOTS").map(PathBuf::from);
    if let Some(out) = &screenshots {
        // The overview while the miners are at work.
        std::fs::create_dir_all(out).unwrap();
        devnet.wait_for("cycle 1 line", |l| l.starts_with("cycle 1:"));
        screenshot(&browser, &format!("{base}/"), out, "overview", 760);
    }
    devnet.wait_for("lingering line", |l| l.starts_with("lingering:"));
    let summary = devnet.stdout.join("\n");
    assert!(summary.contains("audit: passed"), "{summary}");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("net/node-0/node.json")).unwrap(),
    )
    .unwrap();
    let node = RpcClient::new(node["rpc_url"].as_str().unwrap(), &ClientAuth::None).unwrap();

    // The live phase moves: two dumps of the overview a cycle apart.
    let first = dump(&browser, &format!("{base}/"));
    std::thread::sleep(PHASE_GAP);
    let second = dump(&browser, &format!("{base}/"));
    let live = |dom: &str| {
        let tag = tags_with(dom, "data-phase")[0].to_owned();
        (
            attribute(&tag, "data-cycle").unwrap().to_owned(),
            attribute(&tag, "data-phase").unwrap().to_owned(),
        )
    };
    let (a, b) = (live(&first), live(&second));
    assert_ne!(
        a, b,
        "the live cycle and phase did not change in {PHASE_GAP:?}"
    );
    let phases = [
        "registration",
        "training",
        "challenge",
        "verification",
        "evaluation",
        "block_window",
        "closed",
    ];
    assert!(
        phases.contains(&a.1.as_str()) && phases.contains(&b.1.as_str()),
        "{a:?} {b:?}"
    );

    // The chain page lists every block of the chain as the node has it.
    let chain = dump(&browser, &format!("{base}/chain"));
    let height = runtime
        .block_on(rpc(&node, "getblockcount", vec![]))
        .as_u64()
        .unwrap();
    assert!(height >= 1, "the devnet mined nothing:\n{summary}");
    let rows: Vec<&str> = tags_with(&chain, "data-txs");
    assert_eq!(rows.len() as u64, height, "{chain}");
    let mut blocks_by_miner: BTreeMap<String, u64> = BTreeMap::new();
    let mut chain_blocks = BTreeSet::new();
    for row in &rows {
        let h: u64 = attribute(row, "data-height").unwrap().parse().unwrap();
        let hash = attribute(row, "data-hash").unwrap();
        let miner = attribute(row, "data-miner").unwrap();
        let expected = runtime.block_on(rpc(&node, "getblockhash", vec![json!(h)]));
        assert_eq!(expected.as_str(), Some(hash), "height {h}");
        let (cert_miner, cert_cycle) = runtime.block_on(certificate(&node, hash));
        assert_eq!(cert_miner, miner, "block {h}");
        assert_eq!(
            attribute(row, "data-cycle"),
            Some(cert_cycle.to_string().as_str())
        );
        *blocks_by_miner.entry(miner.to_owned()).or_default() += 1;
        chain_blocks.insert(hash.to_owned());
    }

    // The cycles page: each winner and block is the chain's, and every block has its cycle.
    let cycles = dump(&browser, &format!("{base}/cycles?count=50"));
    let mut shown_blocks = BTreeSet::new();
    for row in tags_with(&cycles, "data-winner") {
        let winner = attribute(row, "data-winner").unwrap();
        let hash = attribute(row, "data-block").unwrap();
        let cycle: u64 = attribute(row, "data-cycle").unwrap().parse().unwrap();
        let (cert_miner, cert_cycle) = runtime.block_on(certificate(&node, hash));
        assert_eq!(
            (cert_miner.as_str(), cert_cycle),
            (winner, cycle),
            "cycle {cycle}"
        );
        shown_blocks.insert(hash.to_owned());
    }
    assert_eq!(shown_blocks, chain_blocks, "{cycles}");

    // The plots: one point per finished cycle, each the coordinator's published number.
    let plots = dump(&browser, &format!("{base}/plots"));
    let finished: usize = attribute(
        tags_with(&plots, "data-finished-cycles")[0],
        "data-finished-cycles",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert!(finished >= 3, "{plots}");
    let coordinator_url =
        std::fs::read_to_string(dir.path().join("net/coordinator/coordinator.addr"))
            .unwrap()
            .trim()
            .to_owned();
    let records: Vec<Value> = runtime.block_on(async {
        let client = coordinator::CoordinatorClient::new(&coordinator_url).unwrap();
        client
            .records(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    });
    for id in ["held-out-loss", "test-accuracy"] {
        let svg = plot(&plots, id);
        let cycles: Vec<u64> = attributes(svg, "data-cycle")
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(cycles, (0..finished as u64).collect::<Vec<_>>(), "{id}");
        for (cycle, value) in cycles.iter().zip(attributes(svg, "data-value")) {
            let record = &records[*cycle as usize];
            assert!(
                !record["outcome"].is_null(),
                "cycle {cycle} is plotted but not finished"
            );
            let quality = &record["next_quality"];
            let published = match id {
                "held-out-loss" => quality["held_out_loss_units"].as_f64().unwrap() / 1e6,
                _ => quality["test_accuracy_ppm"].as_f64().unwrap() / 1e6,
            };
            let shown: f64 = value.parse().unwrap();
            assert!(
                (shown - published).abs() < 1e-9,
                "{id} cycle {cycle}: {shown} vs {published}"
            );
        }
    }
    // Cumulative blocks: a point per finished cycle per miner, ending at its blocks on chain.
    let blocks_svg = plot(&plots, "miner-blocks");
    for group in tags_with(blocks_svg, "data-points").into_iter().skip(1) {
        let miner = attribute(group, "data-series").unwrap();
        assert_eq!(
            attribute(group, "data-points"),
            Some(finished.to_string().as_str()),
            "{miner}"
        );
    }
    for (miner, count) in &blocks_by_miner {
        let needle = format!("class=\"pt\" data-series=\"{miner}\"");
        let last = blocks_svg
            .rsplit(&needle)
            .next()
            .and_then(|rest| attribute(rest, "data-value"))
            .unwrap_or_else(|| panic!("no block series for {miner}"));
        assert_eq!(last.parse::<f64>().unwrap(), *count as f64, "{miner}");
    }
    assert!(
        plots.contains("data-plot=\"useful-work\""),
        "the devnet gives its reports"
    );
    assert!(
        plots.contains("data-plot=\"window-utilisation\""),
        "the window utilisation comes from the same reports"
    );

    if let Some(out) = &screenshots {
        let first_block = tags_with(&chain, "data-txs")
            .last()
            .and_then(|row| attribute(row, "data-hash"))
            .unwrap()
            .to_owned();
        for (name, path, height) in [
            ("cycles", "/cycles".to_owned(), 760),
            ("cycle", "/cycles/0".to_owned(), 1150),
            ("plots", "/plots".to_owned(), 1620),
            ("chain", "/chain".to_owned(), 560),
            ("block", format!("/block/{first_block}"), 1000),
        ] {
            screenshot(&browser, &format!("{base}{path}"), out, name, height);
        }
    }

    let status = devnet
        .interrupt()
        .expect("the devnet did not stop on SIGINT");
    assert!(status.success(), "{status}: {}", devnet.stdout.join("\n"));
}
