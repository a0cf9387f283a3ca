//! JSON-RPC over HTTP (jsonrpsee), with Bitcoin Core's method names, result shapes and error
//! codes where the concept exists, behind optional HTTP Basic auth (a cookie file or a
//! configured user:password, as bitcoind does). Parameters are positional, as bitcoin-cli
//! sends them. [`compat`] accepts bitcoind's JSON-RPC 1.0-style bodies and content types and
//! answers them in Core's envelope, so stock Core clients work unmodified.

pub mod auth;
pub mod client;
pub mod compat;
/// Core's methods and shapes for stock clients (beyond the node's own set).
pub mod core;
/// Core's script templates, inferred output descriptors and the BIP-380 checksum.
pub mod descriptor;
pub mod json;
/// The method table; public so the `rpc` fuzz target drives it without a socket.
pub mod methods;

pub use auth::{RpcAuth, COOKIE_FILE, COOKIE_USER};

use crate::service::NodeHandle;
use jsonrpsee::server::{Server, ServerConfig, ServerHandle};
use std::net::SocketAddr;
use thiserror::Error;

/// Bitcoin Core's RPC error codes (src/rpc/protocol.h) that this node uses.
pub mod codes {
    pub const MISC_ERROR: i32 = -1;
    pub const TYPE_ERROR: i32 = -3;
    pub const INVALID_ADDRESS_OR_KEY: i32 = -5;
    pub const INVALID_PARAMETER: i32 = -8;
    pub const DATABASE_ERROR: i32 = -20;
    pub const DESERIALIZATION_ERROR: i32 = -22;
    pub const VERIFY_ERROR: i32 = -25;
    pub const VERIFY_REJECTED: i32 = -26;
    pub const VERIFY_ALREADY_IN_CHAIN: i32 = -27;
    pub const CLIENT_NODE_NOT_CONNECTED: i32 = -29;
    pub const CLIENT_INVALID_IP_OR_SUBNET: i32 = -30;
}

/// Largest request body: a hex-encoded largest block (two characters a byte) plus the JSON
/// around it. `submitblock` is the largest request there is.
pub const RPC_REQUEST_BYTES_MAX: u32 =
    (2 * primitives::block::BLOCK_BYTES_DECODE_MAX + 64 * 1024) as u32;

/// Largest response body: `getblock` at verbosity 2 of a largest block decodes to several times
/// its size in JSON; 64 MiB covers an 8 MiB block with room.
pub const RPC_RESPONSE_BYTES_MAX: u32 = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("binding the RPC server to {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// A started RPC server: where it listens, and its handle (dropping it stops the server).
pub struct RpcServer {
    pub local_addr: SocketAddr,
    pub handle: ServerHandle,
}

/// Starts the RPC server on `bind` (port 0 picks a free port; see [`RpcServer::local_addr`]).
pub async fn start(
    node: NodeHandle,
    bind: SocketAddr,
    auth: RpcAuth,
) -> Result<RpcServer, RpcError> {
    start_in(node, bind, auth, None).await
}

/// [`start`] for a node whose files are in `data_dir` (`size_on_disk` measures them).
pub async fn start_in(
    node: NodeHandle,
    bind: SocketAddr,
    auth: RpcAuth,
    data_dir: Option<std::path::PathBuf>,
) -> Result<RpcServer, RpcError> {
    start_with(node, bind, auth, data_dir, Dialect::Core).await
}

/// What sits between authentication and jsonrpsee. Only the `rpc_compat` bench starts a server
/// without [`compat`], to measure what the layer costs; every node serves [`Dialect::Core`].
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// bitcoind's dialect ([`compat::CoreCompatLayer`]): what [`start`] and [`start_in`] serve.
    Core,
    /// jsonrpsee alone: strict JSON-RPC 2.0 with `application/json` only.
    Strict2_0,
}

/// [`start_in`] with the dialect chosen; see [`Dialect`].
#[doc(hidden)]
pub async fn start_with(
    node: NodeHandle,
    bind: SocketAddr,
    auth: RpcAuth,
    data_dir: Option<std::path::PathBuf>,
    dialect: Dialect,
) -> Result<RpcServer, RpcError> {
    let config = ServerConfig::builder()
        .http_only()
        .max_request_body_size(RPC_REQUEST_BYTES_MAX)
        .max_response_body_size(RPC_RESPONSE_BYTES_MAX)
        .build();
    let builder = Server::builder().set_config(config);
    let module = methods::module_with(node, data_dir);
    // The two middleware stacks are different types, so each branch builds its own server.
    macro_rules! serve {
        ($middleware:expr) => {{
            let server = builder
                .set_http_middleware($middleware)
                .build(bind)
                .await
                .map_err(|error| RpcError::Bind { addr: bind, error })?;
            let local_addr = server
                .local_addr()
                .map_err(|error| RpcError::Bind { addr: bind, error })?;
            let handle = server.start(module);
            Ok(RpcServer { local_addr, handle })
        }};
    }
    match dialect {
        // Authentication first (a 401 reads no body), then bitcoind's dialect, then jsonrpsee.
        Dialect::Core => serve!(tower::ServiceBuilder::new()
            .layer(auth.layer())
            .layer(compat::CoreCompatLayer)),
        Dialect::Strict2_0 => serve!(tower::ServiceBuilder::new().layer(auth.layer())),
    }
}
