//! The node's TOML configuration file. Every key is optional; command-line flags override it.
//!
//! ```toml
//! params = "chain.toml"                 # chain parameters (default: <data-dir>/chain.toml)
//! p2p_listen = ["/ip4/0.0.0.0/tcp/7333"]  # default /ip4/127.0.0.1/tcp/7333 (loopback)
//! peers = ["/ip4/192.0.2.1/tcp/7333"]
//! rpc_bind = "127.0.0.1:7332"
//! rpc_auth = "cookie"                   # or "user:password", or "none"
//! metrics_bind = "127.0.0.1:9332"       # Prometheus `/metrics`; off unless set
//! p2p_inbound_connections_max = 64      # default p2p::INBOUND_CONNECTIONS_MAX
//! p2p_outbound_connections_max = 16     # default p2p::OUTBOUND_CONNECTIONS_MAX
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Default P2P listen address: loopback, port 7333, like every server here (ARCHITECTURE.md's
/// invariant). A node that peers with other machines says so with
/// `--p2p-listen /ip4/0.0.0.0/tcp/7333` (README, "Run each role on its own machine").
pub const DEFAULT_P2P_LISTEN: &str = "/ip4/127.0.0.1/tcp/7333";

/// Default RPC address: loopback only, as bitcoind.
pub const DEFAULT_RPC_BIND: &str = "127.0.0.1:7332";

/// Largest config file read: a config is a few lines; this refuses to parse something else.
pub const CONFIG_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub params: Option<PathBuf>,
    pub p2p_listen: Option<Vec<String>>,
    pub peers: Option<Vec<String>>,
    pub rpc_bind: Option<String>,
    pub rpc_auth: Option<String>,
    /// Address of the Prometheus `/metrics` listener (none: no listener).
    pub metrics_bind: Option<String>,
    pub p2p_inbound_connections_max: Option<u32>,
    pub p2p_outbound_connections_max: Option<u32>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path} is {bytes} bytes, over the {CONFIG_BYTES_MAX}-byte limit")]
    TooLarge { path: String, bytes: u64 },
    #[error("parsing {path}: {error}")]
    Parse {
        path: String,
        error: toml::de::Error,
    },
}

impl NodeConfig {
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.display().to_string(),
            error,
        })
    }

    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let shown = path.display().to_string();
        let bytes = std::fs::metadata(path)
            .map_err(|error| ConfigError::Read {
                path: shown.clone(),
                error,
            })?
            .len();
        if bytes > CONFIG_BYTES_MAX {
            return Err(ConfigError::TooLarge { path: shown, bytes });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: shown, error })?;
        NodeConfig::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_refuses_unknown_ones() {
        let text = r#"
            params = "p.toml"
            p2p_listen = ["/ip4/127.0.0.1/tcp/0"]
            peers = ["/ip4/127.0.0.1/tcp/9"]
            rpc_bind = "127.0.0.1:0"
            rpc_auth = "alice:secret"
            metrics_bind = "127.0.0.1:0"
            p2p_inbound_connections_max = 3
            p2p_outbound_connections_max = 4
        "#;
        let config = NodeConfig::parse(text, Path::new("x")).unwrap();
        assert_eq!(config.rpc_auth.as_deref(), Some("alice:secret"));
        assert_eq!(config.peers.unwrap().len(), 1);
        assert_eq!(config.metrics_bind.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(config.p2p_inbound_connections_max, Some(3));
        assert_eq!(config.p2p_outbound_connections_max, Some(4));
        let error = NodeConfig::parse("rpc_port = 1", Path::new("x")).unwrap_err();
        assert!(error.to_string().contains("rpc_port"), "{error}");
    }
}
