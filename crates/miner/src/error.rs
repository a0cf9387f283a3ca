//! Why a miner stopped or a cycle's work failed.

use coordinator::client::ClientError;
use node::rpc::client::RpcClientError;

#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    #[error("coordinator: {0}")]
    Coordinator(#[from] ClientError),
    #[error("node RPC: {0}")]
    Node(#[from] RpcClientError),
    #[error("node RPC answered {method} with something unexpected: {detail}")]
    NodeAnswer {
        method: &'static str,
        detail: String,
    },
    #[error("learning: {0}")]
    Learning(#[from] learning::LearningError),
    #[error("block assembly: {0}")]
    Block(#[from] crate::block::AssemblyError),
    #[error("the task for cycle {cycle} does not match the global model: {detail}")]
    BadTask { cycle: u64, detail: String },
    #[error("gave up on {operation} after {attempts} attempts: {last}")]
    RetriesExhausted {
        operation: String,
        attempts: u32,
        last: String,
    },
    #[error("the block for height {height} was refused by the node: {reason}")]
    BlockRefused { height: u32, reason: String },
    #[error("writing the cycle report {path}: {error}")]
    Report { path: String, error: std::io::Error },
    #[error("training task failed: {0}")]
    TrainingTask(String),
}
