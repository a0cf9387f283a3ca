//! A JSON-RPC client for this node's server: what `trainchain rpc`, the wallet, the miner and
//! the devnet use to talk to a node from another process.

use super::auth::{basic_header, read_cookie};
use super::RPC_RESPONSE_BYTES_MAX;
use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// A request waits this long: `submitblock` of a large block on a busy node is the slowest.
const REQUEST_TIMEOUT_SECS: u64 = 120;

#[derive(Debug, Error)]
pub enum RpcClientError {
    #[error("reading the RPC cookie {path}: {error}")]
    Cookie { path: String, error: std::io::Error },
    #[error("credentials are not a valid HTTP header value")]
    BadCredentials,
    #[error("RPC client for {url}: {error}")]
    Build { url: String, error: ClientError },
    #[error("{method}: error code {code}: {message}")]
    Server {
        method: String,
        code: i32,
        message: String,
    },
    #[error("{method}: {error}")]
    Transport { method: String, error: ClientError },
}

/// How the client proves who it is.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    None,
    /// `user:password`.
    UserPassword(String),
    /// A node's data directory, whose `.cookie` holds the credentials.
    CookieIn(std::path::PathBuf),
}

/// The one spelling of client credentials on every command line: `none`, `cookie:DIR` (the
/// node's data directory, whose `.cookie` holds them) or `user:password`.
impl std::str::FromStr for ClientAuth {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(ClientAuth::None),
            _ if text.starts_with("cookie:") => Ok(ClientAuth::CookieIn(text[7..].into())),
            _ if text.contains(':') => Ok(ClientAuth::UserPassword(text.to_owned())),
            other => Err(format!("{other:?}: use none, cookie:DIR or user:password")),
        }
    }
}

impl ClientAuth {
    /// The `user:password` pair these credentials stand for (a cookie file is read), if any.
    pub fn resolve(&self) -> Result<Option<String>, RpcClientError> {
        match self {
            ClientAuth::None => Ok(None),
            ClientAuth::UserPassword(pair) => Ok(Some(pair.clone())),
            ClientAuth::CookieIn(dir) => {
                read_cookie(dir)
                    .map(Some)
                    .map_err(|error| RpcClientError::Cookie {
                        path: dir.join(super::COOKIE_FILE).display().to_string(),
                        error,
                    })
            }
        }
    }
}

pub struct RpcClient {
    client: HttpClient,
}

impl RpcClient {
    pub fn new(url: &str, auth: &ClientAuth) -> Result<RpcClient, RpcClientError> {
        let credentials = auth.resolve()?;
        let mut headers = HeaderMap::new();
        if let Some(credentials) = credentials {
            let value = HeaderValue::from_str(&basic_header(&credentials))
                .map_err(|_| RpcClientError::BadCredentials)?;
            headers.insert("authorization", value);
        }
        let client = HttpClientBuilder::default()
            .set_headers(headers)
            .max_response_size(RPC_RESPONSE_BYTES_MAX)
            .request_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .build(url)
            .map_err(|error| RpcClientError::Build {
                url: url.to_string(),
                error,
            })?;
        Ok(RpcClient { client })
    }

    /// A client for the node whose data directory is `data_dir`, at `url`, with its cookie.
    pub fn with_cookie(url: &str, data_dir: &Path) -> Result<RpcClient, RpcClientError> {
        RpcClient::new(url, &ClientAuth::CookieIn(data_dir.to_path_buf()))
    }

    /// Calls `method` with positional `params`.
    pub async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, RpcClientError> {
        let mut array = ArrayParams::new();
        for param in params {
            array
                .insert(param)
                .expect("a serde_json::Value always serializes");
        }
        self.client
            .request::<Value, _>(method, array)
            .await
            .map_err(|error| match error {
                ClientError::Call(object) => RpcClientError::Server {
                    method: method.to_string(),
                    code: object.code(),
                    message: object.message().to_string(),
                },
                error => RpcClientError::Transport {
                    method: method.to_string(),
                    error,
                },
            })
    }
}
