//! `trainchain rpc`: a bitcoin-cli-style client. Each parameter is sent as JSON when it parses
//! as JSON (numbers, booleans, arrays), otherwise as a string.

use anyhow::{Context, Result};
use node::rpc::client::{ClientAuth, RpcClient};
use serde_json::Value;
use std::path::PathBuf;

/// Where the node's RPC is and how to authenticate; shared with the wallet commands.
#[derive(clap::Args, Clone)]
pub struct Connection {
    /// The node's RPC URL.
    #[arg(long = "rpc", default_value = "http://127.0.0.1:7332")]
    pub url: String,
    /// Node RPC credentials: none, cookie:DIR (the node's data directory) or user:password.
    #[arg(long)]
    pub rpc_auth: Option<ClientAuth>,
    /// Shorthand for `--rpc-auth cookie:DIR`: the node's data directory, holding its `.cookie`.
    #[arg(long = "rpc-data-dir")]
    pub rpc_data_dir: Option<PathBuf>,
}

impl Connection {
    pub fn client(&self) -> Result<RpcClient> {
        let auth = match (&self.rpc_auth, &self.rpc_data_dir) {
            (Some(auth), _) => auth.clone(),
            (None, Some(dir)) => ClientAuth::CookieIn(dir.clone()),
            (None, None) => ClientAuth::None,
        };
        RpcClient::new(&self.url, &auth).context("connecting to the node's RPC")
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
}
