//! `trainchain rpc`: a bitcoin-cli-style client. Each parameter is sent as JSON when it parses
//! as JSON (numbers, booleans, arrays), otherwise as a string.

use anyhow::{Context, Result};
use node::rpc::client::{ClientAuth, RpcClient, RpcClientError};
use serde_json::Value;
use std::path::{Path, PathBuf};

use super::node::RUNTIME_FILE;

/// Where a node's RPC listens unless told otherwise (`node::config::DEFAULT_RPC_BIND`).
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:7332";

/// Where the node's RPC is and how to authenticate; shared with the wallet commands.
#[derive(clap::Args, Clone)]
pub struct Connection {
    /// The node's RPC URL. Default: `rpc_url` of `<rpc-data-dir>/node.json` when the node runs
    /// there, else http://127.0.0.1:7332.
    #[arg(long = "rpc")]
    pub url: Option<String>,
    /// Node RPC credentials: none, cookie:DIR (the node's data directory) or user:password.
    #[arg(long)]
    pub rpc_auth: Option<ClientAuth>,
    /// Shorthand for `--rpc-auth cookie:DIR`: the node's data directory, holding its `.cookie`.
    #[arg(long = "rpc-data-dir")]
    pub rpc_data_dir: Option<PathBuf>,
}

impl Connection {
    pub fn client(&self) -> Result<RpcClient> {
        let auth =
            ClientAuth::or_default(self.rpc_auth.clone(), self.rpc_data_dir.as_deref(), None);
        let url = self.url()?;
        RpcClient::new(&url, &auth)
            .with_context(|| format!("connecting to the node's RPC at {url}"))
    }

    /// `--rpc`, else the running node's `node.json` in `--rpc-data-dir`, else the default, as
    /// bitcoin-cli finds its node from the data directory.
    pub fn url(&self) -> Result<String> {
        node_url(self.url.as_deref(), self.rpc_data_dir.as_deref())
    }
}

/// A node's RPC URL: `explicit`, else `rpc_url` of the running node's `node.json` in
/// `node_data_dir`, else [`DEFAULT_RPC_URL`].
pub fn node_url(explicit: Option<&str>, node_data_dir: Option<&Path>) -> Result<String> {
    if let Some(url) = explicit {
        return Ok(url.to_owned());
    }
    let Some(dir) = node_data_dir else {
        return Ok(DEFAULT_RPC_URL.to_string());
    };
    let path = dir.join(RUNTIME_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let runtime: Value = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", path.display()))?;
            runtime["rpc_url"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{} has no rpc_url", path.display()))
        }
        // No node.json: the node is not running there (or is older); try the default.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(DEFAULT_RPC_URL.to_string())
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Checks at startup that the node takes these credentials, so a wrong or missing one fails
/// within seconds with a message that names the fix instead of in retries. A node that is not
/// up yet (or a cookie it has not written yet) is no error here: the role waits for it.
pub fn check_node_credentials(url: &str, auth: &ClientAuth) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let client = match RpcClient::new(url, auth) {
        Ok(client) => client,
        Err(RpcClientError::Cookie { path, error }) => {
            // No cookie: a node that is not up yet (wait for it), or one that is up and keeps
            // no cookie there (it refuses a call without credentials: fail now, saying so).
            let bare = RpcClient::new(url, &ClientAuth::None).context("node RPC client")?;
            if let Err(RpcClientError::Unauthorized { .. }) =
                runtime.block_on(bare.call("getblockcount", vec![]))
            {
                return Err(RpcClientError::Cookie { path, error }).context(format!(
                    "the node at {url} is running but this cookie is not"
                ));
            }
            tracing::warn!(%path, %error, "the node's cookie is not there yet; waiting for the node");
            return Ok(());
        }
        Err(error) => return Err(error).context("node RPC credentials"),
    };
    match runtime.block_on(client.call("getblockcount", vec![])) {
        Err(error @ RpcClientError::Unauthorized { .. }) => Err(error.into()),
        Err(error) => {
            tracing::warn!(%url, %error, "the node does not answer yet; waiting for it");
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connection: Connection,
    /// Method name, e.g. getblockchaininfo.
    pub method: String,
    /// Positional parameters.
    pub params: Vec<String>,
}

/// A command-line parameter as JSON: parsed if it is JSON, a string otherwise.
pub fn param(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub fn run(args: Args) -> Result<()> {
    let client = args.connection.client()?;
    let params = args.params.iter().map(|p| param(p)).collect();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(client.call(&args.method, params))?;
    match result {
        Value::String(text) => println!("{text}"),
        Value::Null => {}
        other => println!("{}", serde_json::to_string_pretty(&other)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_json_when_they_parse() {
        assert_eq!(param("2"), Value::from(2));
        assert_eq!(param("true"), Value::Bool(true));
        assert_eq!(param("[\"a\"]"), serde_json::json!(["a"]));
        assert_eq!(param("00ab"), Value::String("00ab".into()));
        assert_eq!(param("bcrt1qxyz"), Value::String("bcrt1qxyz".into()));
    }

    fn connection(url: Option<&str>, dir: Option<&std::path::Path>) -> Connection {
        Connection {
            url: url.map(str::to_owned),
            rpc_auth: None,
            rpc_data_dir: dir.map(|d| d.to_path_buf()),
        }
    }

    #[test]
    fn url_comes_from_the_flag_then_node_json_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(connection(None, None).url().unwrap(), DEFAULT_RPC_URL);
        assert_eq!(
            connection(None, Some(dir.path())).url().unwrap(),
            DEFAULT_RPC_URL
        );
        std::fs::write(
            dir.path().join(RUNTIME_FILE),
            r#"{"rpc_url": "http://127.0.0.1:45678"}"#,
        )
        .unwrap();
        assert_eq!(
            connection(None, Some(dir.path())).url().unwrap(),
            "http://127.0.0.1:45678"
        );
        assert_eq!(
            connection(Some("http://h:1"), Some(dir.path()))
                .url()
                .unwrap(),
            "http://h:1"
        );
        std::fs::write(dir.path().join(RUNTIME_FILE), "{}").unwrap();
        assert!(connection(None, Some(dir.path())).url().is_err());
    }
}
