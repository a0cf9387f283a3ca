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
    #[error(
        "reading the RPC cookie {path}: {error} (is the node running with that data directory? \
         a node started with --rpc-auth user:password or none writes no cookie)"
    )]
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
    /// HTTP 401: the node wants other credentials. Never transient: retrying cannot help.
    #[error(
        "the node at {url} refused the credentials (HTTP 401, {auth}): pass the node's cookie, \
         cookie:<the node's data directory>, or its user:password (--node-rpc-auth for the \
         coordinator and the miner, which also take --node-data-dir; --rpc-auth for rpc, \
         wallet and audit)"
    )]
    Unauthorized { url: String, auth: String },
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

impl ClientAuth {
    /// What these credentials are, without the secret: "no credentials", "the cookie in DIR",
    /// "user NAME".
    pub fn describe(&self) -> String {
        match self {
            ClientAuth::None => "no credentials sent".to_owned(),
            ClientAuth::UserPassword(pair) => {
                let user = pair.split_once(':').map_or(pair.as_str(), |(user, _)| user);
                format!("sent user {user:?}")
            }
            ClientAuth::CookieIn(dir) => format!("sent the cookie in {}", dir.display()),
        }
    }

    /// The credentials a client uses when none is given on its command line, as bitcoin-cli
    /// finds them: `explicit` if given; else the cookie of `node_data_dir` (the node's data
    /// directory, named on the command line: its cookie is required); else the cookie of
    /// `default_dir` if one is there; else none (a node that wants credentials then answers
    /// 401, and [`RpcClientError::Unauthorized`] names the fix).
    pub fn or_default(
        explicit: Option<ClientAuth>,
        node_data_dir: Option<&Path>,
        default_dir: Option<&Path>,
    ) -> ClientAuth {
        if let Some(auth) = explicit {
            return auth;
        }
        if let Some(dir) = node_data_dir {
            return ClientAuth::CookieIn(dir.to_path_buf());
        }
        match default_dir {
            Some(dir) if dir.join(super::COOKIE_FILE).is_file() => {
                ClientAuth::CookieIn(dir.to_path_buf())
            }
            _ => ClientAuth::None,
        }
    }
}

/// Whether a transport error is the server's HTTP 401.
fn is_unauthorized(error: &ClientError) -> bool {
    use jsonrpsee::http_client::transport::Error as HttpError;
    match error {
        ClientError::Transport(inner) => matches!(
            inner.downcast_ref::<HttpError>(),
            Some(HttpError::Rejected { status_code: 401 })
        ),
        _ => false,
    }
}

pub struct RpcClient {
    client: HttpClient,
    url: String,
    auth: String,
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
        Ok(RpcClient {
            client,
            url: url.to_string(),
            auth: auth.describe(),
        })
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
                error if is_unauthorized(&error) => RpcClientError::Unauthorized {
                    url: self.url.clone(),
                    auth: self.auth.clone(),
                },
                error => RpcClientError::Transport {
                    method: method.to_string(),
                    error,
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mempool::{Mempool, MempoolLimits};
    use crate::rpc::{self, RpcAuth, RpcServer};
    use crate::{ChainState, NodeHandle};

    /// A real node RPC server on loopback that wants `user:secret`.
    async fn server(dir: &Path) -> (RpcServer, String) {
        let chain = testkit::TestChain::new();
        let state = ChainState::open(&dir.join("chain.redb"), chain.params.clone()).unwrap();
        let (node, _net) = NodeHandle::new(state, Mempool::new(MempoolLimits::default()));
        let server = rpc::start(
            node,
            "127.0.0.1:0".parse().unwrap(),
            RpcAuth::Basic(vec!["user:secret".into()]),
        )
        .await
        .unwrap();
        let url = format!("http://{}/", server.local_addr);
        (server, url)
    }

    #[tokio::test]
    async fn a_401_names_the_fix_and_right_credentials_work() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, url) = server(dir.path()).await;
        for auth in [
            ClientAuth::None,
            ClientAuth::UserPassword("user:wrong".into()),
        ] {
            let error = RpcClient::new(&url, &auth)
                .unwrap()
                .call("getblockcount", vec![])
                .await
                .unwrap_err();
            assert!(
                matches!(error, RpcClientError::Unauthorized { .. }),
                "{error:?}"
            );
            let text = error.to_string();
            assert!(text.contains("HTTP 401"), "{text}");
            assert!(text.contains("cookie:"), "{text}");
            assert!(text.contains("user:password"), "{text}");
            assert!(!text.contains("wrong"), "the password leaked: {text}");
        }
        let count = RpcClient::new(&url, &ClientAuth::UserPassword("user:secret".into()))
            .unwrap()
            .call("getblockcount", vec![])
            .await
            .unwrap();
        assert_eq!(count, serde_json::json!(0));
    }

    #[test]
    fn the_default_is_the_named_cookie_then_a_cookie_found_then_none() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = ClientAuth::or_default(Some(ClientAuth::None), Some(dir.path()), None);
        assert!(matches!(explicit, ClientAuth::None));
        let named = ClientAuth::or_default(None, Some(dir.path()), None);
        assert!(matches!(named, ClientAuth::CookieIn(d) if d == dir.path()));
        // A default directory counts only when a node wrote its cookie there.
        let absent = ClientAuth::or_default(None, None, Some(dir.path()));
        assert!(matches!(absent, ClientAuth::None));
        crate::rpc::auth::write_cookie(dir.path()).unwrap();
        let found = ClientAuth::or_default(None, None, Some(dir.path()));
        assert!(matches!(found, ClientAuth::CookieIn(d) if d == dir.path()));
        assert!(matches!(
            ClientAuth::or_default(None, None, None),
            ClientAuth::None
        ));
    }
}
