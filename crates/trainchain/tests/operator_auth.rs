//! How each role finds the node's credentials, as an operator runs them: the coordinator and
//! the miner read the node's cookie by default (from `--node-data-dir`, or the coordinator's
//! own data directory when the node keeps its cookie there), a wrong or missing credential
//! fails within seconds with a message that names the fix, and the offline wallet commands
//! refuse a directory without a wallet or a chain store instead of creating an empty one.

mod support;

use primitives::ChainParams;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{start_node, WAIT_SECS};

/// A role that refuses its credentials must say so this fast (it used to retry for minutes).
const FAIL_FAST_SECS: u64 = 20;

fn trainchain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainchain"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("trainchain runs")
}

/// Runs `args` to the end and returns its stderr, checking it failed within [`FAIL_FAST_SECS`].
fn fails_fast(args: &[&str]) -> String {
    let started = Instant::now();
    let out = trainchain(args);
    let secs = started.elapsed().as_secs();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
    assert!(
        secs < FAIL_FAST_SECS,
        "{args:?} took {secs} s to fail: {stderr}"
    );
    stderr
}

fn assert_names_the_fix(stderr: &str) {
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains("cookie:"), "{stderr}");
    assert!(stderr.contains("user:password"), "{stderr}");
    assert!(!stderr.contains("decoding"), "{stderr}");
}

/// A child process killed when dropped, with its stderr in a file.
struct Running {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn spawn(args: &[&str], log: &Path) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_trainchain"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("trainchain runs");
        Running {
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `text`, failing if the process exits first.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(WAIT_SECS * 2);
        loop {
            if self.log().contains(text) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_read_the_node_cookie_by_default_and_a_refusal_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    // One directory for the coordinator (chain.toml, coordinator.key from init) and its node,
    // as on a single machine: the coordinator finds the node's cookie in its own --data-dir.
    let data = dir.path().join("chain");
    let data_str = data.to_str().unwrap();
    let init = trainchain(&["init", "--data-dir", data_str, "--cycle-secs", "30"]);
    assert!(init.status.success(), "{init:?}");
    let params =
        ChainParams::from_toml(&std::fs::read_to_string(data.join("chain.toml")).unwrap()).unwrap();
    let node = start_node(&data, &params, &[]).await;
    assert!(data.join(".cookie").is_file(), "the node writes its cookie");
    let url = node.rpc_url.clone();

    // A directory without the node's cookie and no flag: no credentials, so a 401, at once.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(data.join("chain.toml"), elsewhere.join("chain.toml")).unwrap();
    std::fs::copy(
        data.join("coordinator.key"),
        elsewhere.join("coordinator.key"),
    )
    .unwrap();
    let elsewhere_str = elsewhere.to_str().unwrap();
    let stderr = fails_fast(&[
        "coordinator",
        "--data-dir",
        elsewhere_str,
        "--node-rpc",
        &url,
    ]);
    assert_names_the_fix(&stderr);
    assert!(stderr.contains("no credentials sent"), "{stderr}");
    // An explicit `none` and a wrong password are refused the same way.
    let stderr = fails_fast(&[
        "coordinator",
        "--data-dir",
        data_str,
        "--node-rpc",
        &url,
        "--node-rpc-auth",
        "none",
    ]);
    assert_names_the_fix(&stderr);

    // The same refusal through a coordinator config file: its keys are the flags.
    let config = dir.path().join("coordinator.toml");
    std::fs::write(
        &config,
        format!("data_dir = {data_str:?}\nnode_rpc = {url:?}\nnode_rpc_auth = \"none\"\n"),
    )
    .unwrap();
    assert_names_the_fix(&fails_fast(&[
        "coordinator",
        "--config",
        config.to_str().unwrap(),
    ]));

    let key = dir.path().join("miner.key");
    let key_str = key.to_str().unwrap();
    assert!(trainchain(&["wallet", "new", "--key", key_str])
        .status
        .success());
    let stderr = fails_fast(&[
        "miner",
        "--coordinator",
        "http://127.0.0.1:9",
        "--node-rpc",
        &url,
        "--key",
        key_str,
    ]);
    assert_names_the_fix(&stderr);
    let stderr = fails_fast(&[
        "miner",
        "--coordinator",
        "http://127.0.0.1:9",
        "--node-rpc",
        &url,
        "--node-rpc-auth",
        "__cookie__:wrong",
        "--key",
        key_str,
    ]);
    assert_names_the_fix(&stderr);
    assert!(
        !stderr.contains("wrong"),
        "the password is not echoed: {stderr}"
    );
    // `trainchain rpc` without credentials says the same.
    assert_names_the_fix(&fails_fast(&["rpc", "--rpc", &url, "getblockcount"]));

    // By default the coordinator reads the cookie the node keeps in its --data-dir...
    let mut coordinator = Running::spawn(
        &[
            "coordinator",
            "--data-dir",
            data_str,
            "--node-rpc",
            &url,
            "--bind",
            "127.0.0.1:0",
        ],
        &dir.path().join("coordinator.log"),
    );
    coordinator.wait_for("cycle opened");
    let coordinator_url = std::fs::read_to_string(data.join("coordinator.addr")).unwrap();
    let coordinator_url = coordinator_url.trim().to_owned();

    // ...and the miner, given only the node's data directory, finds the node's URL in its
    // node.json and its credentials in its cookie.
    let node_dir = node.dir.to_str().unwrap().to_owned();
    let mut miner = Running::spawn(
        &[
            "miner",
            "--coordinator",
            &coordinator_url,
            "--node-data-dir",
            &node_dir,
            "--key",
            key_str,
            "--threads",
            "1",
        ],
        &dir.path().join("miner.log"),
    );
    miner.wait_for("payout bcrt1q");
    drop(miner);
    drop(coordinator);
    drop(node);
}

#[test]
fn wallet_commands_refuse_a_directory_without_a_wallet_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chain");
    let data_str = data.to_str().unwrap();
    assert!(trainchain(&["init", "--data-dir", data_str])
        .status
        .success());
    let key = dir.path().join("alice.key");
    let key_str = key.to_str().unwrap();

    // No key file: say how to make one; nothing is created.
    for command in ["balance", "address"] {
        let mut args = vec!["wallet", command, "--key", key_str];
        if command == "balance" {
            args.extend(["--data-dir", data_str]);
        }
        let stderr = fails_fast(&args);
        assert!(stderr.contains("no wallet key at"), "{stderr}");
        assert!(stderr.contains("trainchain wallet new --key"), "{stderr}");
        assert!(!key.exists());
    }

    // A key, but a directory no node has run in (only `init`'s files): refuse, never create
    // an empty store and report 0.
    let new = trainchain(&["wallet", "new", "--key", key_str]);
    assert!(new.status.success());
    let address = String::from_utf8(new.stdout).unwrap().trim().to_owned();
    let stderr = fails_fast(&[
        "wallet",
        "balance",
        "--key",
        key_str,
        "--data-dir",
        data_str,
    ]);
    assert!(stderr.contains("no chain store in"), "{stderr}");
    assert!(stderr.contains("--rpc"), "{stderr}");
    let stderr = fails_fast(&[
        "wallet",
        "pay",
        "--key",
        key_str,
        "--to",
        &address,
        "--amount",
        "1",
        "--data-dir",
        data_str,
    ]);
    assert!(stderr.contains("no chain store in"), "{stderr}");
    assert!(
        !data.join("chain.redb").exists(),
        "an empty store was created"
    );
}

#[test]
fn an_explicit_user_password_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chain");
    let data_str = data.to_str().unwrap();
    assert!(trainchain(&["init", "--data-dir", data_str])
        .status
        .success());
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    std::fs::copy(data.join("chain.toml"), node_dir.join("chain.toml")).unwrap();
    let _node = Running::spawn(
        &[
            "node",
            "--data-dir",
            node_dir.to_str().unwrap(),
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--rpc-bind",
            "127.0.0.1:0",
            "--rpc-auth",
            "alice:secret",
        ],
        &dir.path().join("node.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
    let url = loop {
        let text = std::fs::read_to_string(node_dir.join("node.json")).unwrap_or_default();
        if let Ok(runtime) = serde_json::from_str::<serde_json::Value>(&text) {
            break runtime["rpc_url"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert!(
        !node_dir.join(".cookie").exists(),
        "no cookie with a password"
    );
    let count = trainchain(&[
        "rpc",
        "--rpc",
        &url,
        "--rpc-auth",
        "alice:secret",
        "getblockcount",
    ]);
    assert!(count.status.success(), "{count:?}");
    // The node's data directory names no cookie here: the role says where it looked.
    let stderr = fails_fast(&[
        "coordinator",
        "--data-dir",
        data_str,
        "--node-data-dir",
        node_dir.to_str().unwrap(),
    ]);
    assert!(stderr.contains(".cookie"), "{stderr}");
    let mut coordinator = Running::spawn(
        &[
            "coordinator",
            "--data-dir",
            data_str,
            "--node-rpc",
            &url,
            "--node-rpc-auth",
            "alice:secret",
        ],
        &dir.path().join("coordinator.log"),
    );
    coordinator.wait_for("cycle opened");
}

/// Starts `trainchain node` in `dir` with its RPC on `rpc_port` and the given `--rpc-auth`.
fn spawn_node(dir: &Path, rpc_port: u16, rpc_auth: &str, log: &Path) -> Running {
    let _ = std::fs::remove_file(dir.join("node.json"));
    let rpc_bind = format!("127.0.0.1:{rpc_port}");
    let mut node = Running::spawn(
        &[
            "node",
            "--data-dir",
            dir.to_str().unwrap(),
            "--p2p-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--rpc-bind",
            &rpc_bind,
            "--rpc-auth",
            rpc_auth,
        ],
        log,
    );
    node.wait_for("RPC server listening");
    let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
    while !dir.join("node.json").is_file() {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(25));
    }
    node
}

/// A coordinator started against a node keeps following it: a node restart writes a fresh
/// cookie, which the coordinator reads on its next call (it used to send the old one, and get
/// 401s, forever); a node that then refuses it is reported as a refusal naming the fix, once,
/// not as an "error decoding response body" ten times a second.
#[test]
fn a_running_coordinator_follows_a_node_restart_and_reports_a_refusal_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("chain");
    let data_str = data.to_str().unwrap();
    let init = trainchain(&["init", "--data-dir", data_str, "--cycle-secs", "30"]);
    assert!(init.status.success(), "{init:?}");
    let node_dir = data.join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    std::fs::copy(data.join("chain.toml"), node_dir.join("chain.toml")).unwrap();
    let rpc_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node_log = dir.path().join("node.log");
    let node = spawn_node(&node_dir, rpc_port, "cookie", &node_log);
    let first_cookie = std::fs::read_to_string(node_dir.join(".cookie")).unwrap();
    let mut coordinator = Running::spawn(
        &[
            "coordinator",
            "--data-dir",
            data_str,
            "--node-data-dir",
            node_dir.to_str().unwrap(),
        ],
        &dir.path().join("coordinator.log"),
    );
    coordinator.wait_for("cycle opened");

    // The node restarts on the same port with a fresh cookie: the coordinator fails while it
    // is down, then carries on with the new cookie.
    drop(node);
    coordinator.wait_for("coordinator step failed");
    let node = spawn_node(&node_dir, rpc_port, "cookie", &node_log);
    let second_cookie = std::fs::read_to_string(node_dir.join(".cookie")).unwrap();
    assert_ne!(
        first_cookie, second_cookie,
        "a restart writes a fresh cookie"
    );
    coordinator.wait_for("coordinator step succeeded again");
    assert!(
        !coordinator.log().contains("HTTP 401"),
        "{}",
        coordinator.log()
    );

    // The node now takes only a password the coordinator does not have: a refusal that names
    // the fix, logged once while it lasts, not once per 100 ms retry.
    drop(node);
    let _node = spawn_node(&node_dir, rpc_port, "alice:secret", &node_log);
    coordinator.wait_for("refused the credentials");
    std::thread::sleep(Duration::from_secs(3));
    let log = coordinator.log();
    let refusals = log.matches("refused the credentials").count();
    assert!(refusals <= 2, "{refusals} refusal lines in 3 s:\n{log}");
    assert!(log.contains("--node-rpc-auth user:password"), "{log}");
    assert!(!log.contains("decoding"), "{log}");
}

/// `--config FILE` for the coordinator and the miner: keys are the flags, the command line
/// wins, and a misspelt key or a bad `--log-level` is refused with what to write instead.
#[test]
fn role_config_files_are_checked_like_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("miner.toml");
    std::fs::write(
        &config,
        "coordinator = \"http://127.0.0.1:9\"\nkey = \"from-config.key\"\nthread = 2\n",
    )
    .unwrap();
    let config_str = config.to_str().unwrap();
    let stderr = fails_fast(&["miner", "--config", config_str]);
    assert!(stderr.contains("unknown key \"thread\""), "{stderr}");
    assert!(
        stderr.contains("threads"),
        "the valid keys are listed: {stderr}"
    );

    std::fs::write(
        &config,
        "coordinator = \"http://127.0.0.1:9\"\nkey = \"from-config.key\"\nthreads = 1\nlog_level = \"warn\"\n",
    )
    .unwrap();
    let stderr = fails_fast(&["miner", "--config", config_str]);
    assert!(stderr.contains("from-config.key"), "{stderr}");
    // Also after a global flag in front of the subcommand.
    let stderr = fails_fast(&["--log-level", "warn", "miner", "--config", config_str]);
    assert!(stderr.contains("from-config.key"), "{stderr}");
    let stderr = fails_fast(&["miner", "--config", config_str, "--key", "from-flag.key"]);
    assert!(stderr.contains("from-flag.key"), "the flag wins: {stderr}");
    assert!(!stderr.contains("from-config.key"), "{stderr}");

    let stderr = fails_fast(&["--log-level", "info,node=loud", "rpc", "getblockcount"]);
    assert!(stderr.contains("--log-level"), "{stderr}");
}
