//! The README's "Running the roles on separate machines" section, run as written: its command
//! blocks are read from README.md, so a change to the section that breaks it fails here.
//!
//! Each "machine" is a directory of its own. The machines share this host's loopback, which
//! forces the only changes made to the commands (all listed in [`localise`]): `C_IP` is
//! 127.0.0.1, ports 7333 and 8080 become free ones, every node's RPC (and a miner's or
//! auditor's P2P) binds a free loopback port, and `init` gets short cycles so a block comes in
//! seconds rather than the default 20 minutes.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::WAIT_SECS;

/// The README section this test follows.
const SECTION: &str = "## Running the roles on separate machines";
/// The paragraphs that open each machine's command block, in the section's order.
const MACHINES: [(&str, &str); 3] = [
    ("On the coordinator machine", "coordinator"),
    ("On each miner machine", "miner"),
    ("On an auditor", "auditor"),
];
/// Cycle length given to `init`: short enough for a test, long enough for a loaded machine.
const CYCLE_SECS: &str = "6";
/// A block, then the auditor's sync, must come within this long.
const BLOCK_WAIT_SECS: u64 = 120;

/// The command block that follows each machine's opening paragraph, comments stripped.
fn command_blocks(readme: &str) -> Vec<(String, Vec<String>)> {
    let start = readme.find(SECTION).expect("the README has the section");
    let rest = &readme[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    MACHINES
        .iter()
        .map(|(opening, machine)| {
            let at = section
                .find(opening)
                .unwrap_or_else(|| panic!("the section has no {opening:?}"));
            let commands: Vec<String> = section[at..]
                .lines()
                .skip_while(|line| !line.starts_with("    "))
                .take_while(|line| line.starts_with("    "))
                .map(|line| match line.find("  #") {
                    Some(comment) => line[..comment].trim().to_owned(),
                    None => line.trim().to_owned(),
                })
                .collect();
            assert!(!commands.is_empty(), "no commands after {opening:?}");
            ((*machine).to_owned(), commands)
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The ports that stand in for the README's fixed ones on the shared loopback.
struct Ports {
    coordinator_p2p: u16,
    coordinator_api: u16,
}

/// The one place the README's commands are changed, and only for the shared loopback.
fn localise(command: &str, ports: &Ports) -> String {
    let mut text = command
        .replace("C_IP", "127.0.0.1")
        .replace("0.0.0.0", "127.0.0.1")
        .replace("/tcp/7333", &format!("/tcp/{}", ports.coordinator_p2p))
        .replace(":8080", &format!(":{}", ports.coordinator_api));
    if text.starts_with("trainchain node ") {
        text.push_str(" --rpc-bind 127.0.0.1:0");
        if !text.contains("--p2p-listen") {
            text.push_str(" --p2p-listen /ip4/127.0.0.1/tcp/0");
        }
    }
    if text.starts_with("trainchain init ") {
        text.push_str(&format!(" --cycle-secs {CYCLE_SECS}"));
    }
    text
}

/// The long-running roles: started in the background, not waited for.
fn is_daemon(command: &str) -> bool {
    [
        "trainchain node ",
        "trainchain coordinator ",
        "trainchain miner ",
    ]
    .iter()
    .any(|role| command.starts_with(role))
}

/// A machine's background processes, killed when it is dropped.
struct Machine {
    dir: PathBuf,
    daemons: Vec<(String, Child, PathBuf)>,
}

impl Drop for Machine {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Machine {
    fn new(root: &Path, name: &str) -> Machine {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Machine {
            dir,
            daemons: Vec::new(),
        }
    }

    /// `command` through `sh` in this machine's directory, with `trainchain` being the binary
    /// under test.
    fn shell(&self, command: &str) -> Command {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_trainchain"))
            .parent()
            .unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(command)
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("RUST_LOG", "info");
        shell
    }

    fn logs(&self) -> String {
        self.daemons
            .iter()
            .map(|(command, _, log)| {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {command}\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs a one-shot command to its end, failing the test (with the machine's logs) unless it
    /// succeeds; returns its stdout.
    fn run(&self, command: &str) -> String {
        let out = self.shell(command).output().unwrap();
        assert!(
            out.status.success(),
            "`{command}` failed on {}: {}\n{}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&mut self, command: &str) {
        let log = self.dir.join(format!("daemon-{}.log", self.daemons.len()));
        let child = self
            .shell(&format!("exec {command}"))
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.daemons.push((command.to_owned(), child, log));
        self.wait_until_ready(command);
    }

    /// Waits for the files a daemon writes once it serves: a node's `node.json`, a
    /// coordinator's `coordinator.addr`; a miner has none.
    fn wait_until_ready(&mut self, command: &str) {
        let data_dir = command
            .split_whitespace()
            .skip_while(|word| *word != "--data-dir")
            .nth(1)
            .map(|dir| self.dir.join(dir));
        let ready_file = if command.starts_with("trainchain node ") {
            data_dir.map(|dir| dir.join("node.json"))
        } else if command.starts_with("trainchain coordinator ") {
            data_dir.map(|dir| dir.join("coordinator.addr"))
        } else {
            None
        };
        let Some(ready_file) = ready_file else {
            return;
        };
        self.wait_for(
            &format!("{} to exist", ready_file.display()),
            WAIT_SECS,
            |_| ready_file.is_file(),
        );
    }

    fn wait_for(&mut self, what: &str, secs: u64, mut done: impl FnMut(&Machine) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !done(self) {
            for (command, child, _) in &mut self.daemons {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("`{command}` exited ({status}) while waiting for {what}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {what} after {secs} s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The block count of the node this machine runs in `node/`, through `trainchain rpc` as
    /// an operator would ask it.
    fn node_height(&self) -> u64 {
        let out = self
            .shell("trainchain rpc --rpc-data-dir node getblockcount")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

#[test]
fn the_readme_section_on_separate_machines_works_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let blocks = command_blocks(&readme);
    let ports = Ports {
        coordinator_p2p: free_port(),
        coordinator_api: free_port(),
    };
    let root = tempfile::tempdir().unwrap();
    let mut machines = Vec::new();
    for (name, commands) in &blocks {
        let mut machine = Machine::new(root.path(), name);
        if name != "coordinator" {
            // "Copy chain/chain.toml (only that file) to each other machine."
            std::fs::copy(
                root.path().join("coordinator/chain/chain.toml"),
                machine.dir.join("chain.toml"),
            )
            .unwrap();
        }
        for command in commands {
            let command = localise(command, &ports);
            if is_daemon(&command) {
                machine.spawn(&command);
                continue;
            }
            let reads_the_chain = command.contains("wallet balance") || command.contains("audit");
            if reads_the_chain {
                // The miner's block, on this machine's own node (synced from C's).
                machine.wait_for("block 1 on this machine's node", BLOCK_WAIT_SECS, |m| {
                    m.node_height() >= 1
                });
            }
            let out = machine.run(&command);
            if command.contains("wallet balance") {
                // Spendable or not yet mature, by the chain's coinbase maturity.
                let coins = |label: &str| -> f64 {
                    out.lines()
                        .find_map(|line| line.strip_prefix(label))
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|amount| amount.parse().ok())
                        .unwrap_or_else(|| panic!("no {label} amount in {out}"))
                };
                assert!(
                    coins("spendable:") + coins("immature:") > 0.0,
                    "the miner's block reward is missing: {out}"
                );
            }
        }
        machines.push(machine);
    }
    assert_eq!(machines.len(), MACHINES.len());
}
