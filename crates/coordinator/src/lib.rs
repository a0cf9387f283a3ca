//! The coordinator: training cycles, server-side scoring, the auditable weighted lottery and
//! signed certificates (the paper's centralised server).
//!
//! - [`cycle`]: the pure state machine (`tick(state, env, now, entropy, event)`);
//! - [`work`]: dataset split, shards, update checks, measurement and aggregation;
//! - [`held_out`]: the secret held-out pool and each cycle's committed batch;
//! - [`jobs`]: the queue of training jobs owners post, one job's model per cycle;
//! - [`service`]: the machine wired to its [`store`] and the workload, clock-free;
//! - [`server`]: the axum HTTP API and the driver loop that reads the [`chain`];
//! - [`api`] and [`client`]: wire types, signed messages and a typed client (used by miners).

// The wire types and the client live in `coordinator-api`, which clients depend on alone.
pub use coordinator_api::{api, client, draw, jobs_api, pace, verifier_api};
pub mod chain;
pub mod cycle;
pub mod error;
pub mod held_out;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod server;
pub mod service;
pub mod slash;
pub mod store;
pub mod verification;
pub mod verifier_service;
pub mod verifiers;
pub mod work;

pub use chain::{ChainSource, MemoryChain, RpcAuth, RpcChain, RpcCredentials, UnspentOutput};
pub use client::CoordinatorClient;
pub use cycle::CycleTiming;
pub use error::ServiceError;
pub use service::{ChainView, Coordinator, SubmissionClaim};
pub use work::WorkSetup;
