//! HTTP Basic authentication for the RPC server, as bitcoind does it: a random cookie written
//! to `<data-dir>/.cookie` for local clients, and/or a configured user:password.

use base64::Engine;
use http::{header, HeaderValue, Request, Response, StatusCode};
use jsonrpsee::server::HttpBody;
use rand::RngCore;
use std::path::Path;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};

/// File name of the cookie inside the data directory (bitcoind's name).
pub const COOKIE_FILE: &str = ".cookie";

/// User name of cookie authentication (bitcoind's).
pub const COOKIE_USER: &str = "__cookie__";

/// Random bytes in a cookie password: 256 bits, not guessable.
const COOKIE_SECRET_BYTES: usize = 32;

/// Who may call the RPC server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAuth {
    /// Anyone who can reach the port (only sensible on loopback in a test setup).
    Open,
    /// Requests must carry one of these `user:password` pairs in HTTP Basic auth.
    Basic(Vec<String>),
}

/// The `Authorization` header value for `user_password` ("user:password").
pub fn basic_header(user_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// Writes a fresh cookie (mode 0600) and returns its `user:password`.
pub fn write_cookie(data_dir: &Path) -> std::io::Result<String> {
    let mut secret = [0u8; COOKIE_SECRET_BYTES];
    rand::thread_rng().fill_bytes(&mut secret);
    let credentials = format!("{COOKIE_USER}:{}", hex::encode(secret));
    let path = data_dir.join(COOKIE_FILE);
    let _ = std::fs::remove_file(&path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options.open(&path)?.write_all(credentials.as_bytes())?;
    Ok(credentials)
}

/// Removes the cookie on shutdown, so a stale one is never mistaken for a live node's.
pub fn remove_cookie(data_dir: &Path) {
    let _ = std::fs::remove_file(data_dir.join(COOKIE_FILE));
}

/// Reads `<data_dir>/.cookie` (for clients).
pub fn read_cookie(data_dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(data_dir.join(COOKIE_FILE))?
        .trim()
        .to_string())
}

#[derive(Clone)]
pub struct CheckBasic {
    accepted: Vec<HeaderValue>,
}

impl<B> ValidateRequest<B> for CheckBasic {
    type ResponseBody = HttpBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<HttpBody>> {
        if self.accepted.is_empty() {
            return Ok(());
        }
        match request.headers().get(header::AUTHORIZATION) {
            Some(given) if self.accepted.iter().any(|a| a == given) => Ok(()),
            _ => {
                let mut response = Response::new(HttpBody::from("authorization required\n"));
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"jsonrpc\""),
                );
                Err(response)
            }
        }
    }
}

impl RpcAuth {
    pub fn layer(&self) -> ValidateRequestHeaderLayer<CheckBasic> {
        let accepted = match self {
            RpcAuth::Open => Vec::new(),
            RpcAuth::Basic(pairs) => pairs
                .iter()
                .filter_map(|p| HeaderValue::from_str(&basic_header(p)).ok())
                .collect(),
        };
        ValidateRequestHeaderLayer::custom(CheckBasic { accepted })
    }
}
