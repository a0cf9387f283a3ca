//! Why a devnet could not run to its end.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0} already holds a chain; pass another --data-dir or remove it")]
    DataDirInUse(PathBuf),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("spawning {role}: {error}")]
    Spawn { role: String, error: std::io::Error },
    #[error("{role} did not become ready within {secs} s (log: {log})")]
    NotReady {
        role: String,
        secs: u64,
        log: PathBuf,
    },
    /// The logs' last lines are in the message: a CI run keeps only what the test printed.
    #[error("node {node} had no peer after {secs} s of dialing node 0\n--- end of node {node}'s log:\n{dialer_log}\n--- end of node 0's log:\n{listener_log}")]
    NotLinked {
        node: usize,
        secs: u64,
        dialer_log: String,
        listener_log: String,
    },
    #[error("{role} exited early with {status} (log: {log})")]
    ChildExited {
        role: String,
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error("key file: {0}")]
    Key(#[from] wallet::key_file::KeyFileError),
    #[error("learning: {0}")]
    Learning(#[from] learning::LearningError),
    #[error("node: {0}")]
    Node(#[from] miner::MinerError),
    #[error("coordinator: {0}")]
    Coordinator(#[from] coordinator::client::ClientError),
    /// A `trainchain` client command the devnet ran as a user would (`job submit`, ...) failed.
    #[error("`trainchain {command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    #[error("the global model of cycle {cycle} hashes to {found}, the record says {expected}")]
    ModelHashMismatch {
        cycle: u64,
        expected: String,
        found: String,
    },
    #[error("writing {path}: {error}")]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
}

pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DevnetError {
    let path = path.into();
    move |error| DevnetError::Io { path, error }
}
