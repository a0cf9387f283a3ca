//! bitcoind's JSON-RPC dialect in front of jsonrpsee, which speaks only strict JSON-RPC 2.0.
//!
//! Stock Bitcoin Core clients (python-bitcoinlib's `RawProxy`, bitcoin-utils, Core's documented
//! `curl --data-binary '{"jsonrpc":"1.0",...}' -H 'content-type: text/plain;'`) send bodies
//! jsonrpsee refuses: a `"version":"1.1"` or `"jsonrpc":"1.0"` member, or none at all, and any
//! content type. bitcoind accepts them all and answers such "legacy" requests with Core's 1.0
//! envelope `{"result":…,"error":…,"id":…}` (`error` null on success, `result` null on error)
//! and, for a single legacy request that failed, HTTP 404 (method not found), 400 (invalid
//! request) or 500 (any other error), as `src/httprpc.cpp` does.
//!
//! This layer reads the (bounded) body, marks every call as JSON-RPC 2.0, forces the content
//! type jsonrpsee wants, lets jsonrpsee answer, and reshapes the answer to each call's style.
//! JSON-RPC 2.0 calls keep jsonrpsee's answer byte for byte. Bodies that are not JSON go through
//! untouched so jsonrpsee answers them with its parse error.

use super::RPC_REQUEST_BYTES_MAX;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use jsonrpsee::core::BoxError;
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};
use tracing::debug;

/// Core's error code for a method that does not exist (JSON-RPC's).
const METHOD_NOT_FOUND: i64 = -32601;
/// Core's error code for a request that is not a call object (JSON-RPC's).
const INVALID_REQUEST: i64 = -32600;

/// How one call was written, and so how its answer must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `"jsonrpc":"2.0"`: jsonrpsee's answer as it is.
    V2,
    /// Anything else bitcoind accepts: Core's 1.0 envelope.
    Legacy,
}

/// The shape of a whole request body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// Not JSON, or nothing to reshape: pass the answer through.
    PassThrough,
    Single(Style),
    /// One style per element that gets an answer, in order (jsonrpsee answers a batch in
    /// request order and leaves out JSON-RPC 2.0 notifications).
    Batch(Vec<Style>),
}

/// Rewrites one call object in place to strict JSON-RPC 2.0 and says how it was written.
fn normalise_call(call: &mut Map<String, Value>) -> Style {
    let style = match call.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => Style::V2,
        _ => Style::Legacy,
    };
    if style == Style::Legacy {
        call.remove("version");
        call.insert("jsonrpc".into(), json!("2.0"));
        // A legacy call without an id is still answered (with id null), unlike a 2.0
        // notification.
        call.entry("id").or_insert(Value::Null);
    }
    // bitcoind treats absent and null params alike; jsonrpsee wants them absent.
    if call.get("params") == Some(&Value::Null) {
        call.remove("params");
    }
    style
}

/// The strict JSON-RPC 2.0 body jsonrpsee gets for `body`, and how to shape its answer.
/// `None` means "send the body unchanged".
fn normalise(body: &[u8]) -> Option<(Vec<u8>, Shape)> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let shape = match &mut value {
        Value::Object(call) => {
            let style = normalise_call(call);
            if style == Style::V2 {
                // Nothing changed that jsonrpsee would see (params null was dropped, which it
                // reads the same way): skip re-encoding a possibly large body.
                return None;
            }
            Shape::Single(style)
        }
        Value::Array(calls) => {
            let mut styles = Vec::with_capacity(calls.len());
            for call in calls.iter_mut() {
                match call {
                    Value::Object(object) => {
                        let is_notification = !object.contains_key("id");
                        let style = normalise_call(object);
                        if !(style == Style::V2 && is_notification) {
                            styles.push(style);
                        }
                    }
                    // jsonrpsee answers a non-object element with an invalid-request error;
                    // bitcoind does too, in its 1.0 envelope.
                    _ => styles.push(Style::Legacy),
                }
            }
            if styles.iter().all(|s| *s == Style::V2) {
                return None;
            }
            Shape::Batch(styles)
        }
        _ => return None,
    };
    let bytes = serde_json::to_vec(&value).expect("a serde_json::Value always serialises");
    Some((bytes, shape))
}

/// Core's 1.0 envelope for one jsonrpsee answer.
fn legacy_answer(answer: Value) -> Value {
    let Value::Object(mut object) = answer else {
        return answer;
    };
    let id = object.remove("id").unwrap_or(Value::Null);
    let result = object.remove("result").unwrap_or(Value::Null);
    let error = object.remove("error").unwrap_or(Value::Null);
    json!({ "result": result, "error": error, "id": id })
}

/// The HTTP status bitcoind gives a single legacy answer.
fn legacy_status(answer: &Value) -> StatusCode {
    match answer
        .get("error")
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
    {
        None => StatusCode::OK,
        Some(METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(INVALID_REQUEST) => StatusCode::BAD_REQUEST,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Reshapes jsonrpsee's answer body for `shape`; `None` when it is not the JSON expected (it is
/// then passed on as it is).
fn reshape(body: &[u8], shape: &Shape) -> Option<(StatusCode, Vec<u8>)> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let (status, value) = match (shape, answer) {
        (Shape::Single(Style::Legacy), answer @ Value::Object(_)) => {
            let answer = legacy_answer(answer);
            (legacy_status(&answer), answer)
        }
        (Shape::Batch(styles), Value::Array(answers)) => {
            let reshaped = answers
                .into_iter()
                .enumerate()
                .map(|(i, answer)| match styles.get(i) {
                    Some(Style::Legacy) => legacy_answer(answer),
                    _ => answer,
                })
                .collect();
            (StatusCode::OK, Value::Array(reshaped))
        }
        _ => return None,
    };
    let bytes = serde_json::to_vec(&value).expect("a serde_json::Value always serialises");
    Some((status, bytes))
}

/// bitcoind's exact content type; python-bitcoinlib refuses any other (even with a charset).
const JSON: HeaderValue = HeaderValue::from_static("application/json");

fn too_large() -> HttpResponse {
    let body = json!({
        "result": null,
        "error": {
            "code": INVALID_REQUEST,
            "message": format!("request body over the {RPC_REQUEST_BYTES_MAX}-byte limit"),
        },
        "id": null,
    });
    let mut response = HttpResponse::new(HttpBody::from(body.to_string()));
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// The layer to put between authentication and jsonrpsee.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreCompatLayer;

impl<S> Layer<S> for CoreCompatLayer {
    type Service = CoreCompat<S>;
    fn layer(&self, inner: S) -> CoreCompat<S> {
        CoreCompat { inner }
    }
}

#[derive(Debug, Clone)]
pub struct CoreCompat<S> {
    inner: S,
}

impl<S, B> Service<HttpRequest<B>> for CoreCompat<S>
where
    S: Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = HttpResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, BoxError>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: HttpRequest<B>) -> Self::Future {
        // The inner service is called after an await (the body is read first), so take the
        // one that was polled ready and leave a fresh clone behind (tower's usual pattern).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            if request.method() != Method::POST {
                return inner
                    .call(request.map(HttpBody::new))
                    .await
                    .map_err(Into::into);
            }
            let (mut parts, body) = request.into_parts();
            let bytes = match Limited::new(body, RPC_REQUEST_BYTES_MAX as usize)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<LengthLimitError>() => {
                    debug!("RPC request refused: body over {RPC_REQUEST_BYTES_MAX} bytes");
                    return Ok(too_large());
                }
                Err(error) => return Err(error),
            };
            // bitcoind reads any content type (Core's own curl example sends text/plain).
            parts.headers.insert(CONTENT_TYPE, JSON);
            let (body, shape) = match normalise(&bytes) {
                Some((body, shape)) => (body, shape),
                None => (bytes.to_vec(), Shape::PassThrough),
            };
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            let response = inner
                .call(HttpRequest::from_parts(parts, HttpBody::from(body)))
                .await
                .map_err(Into::into)?;
            let (mut parts, body) = response.into_parts();
            parts.headers.insert(CONTENT_TYPE, JSON);
            if shape == Shape::PassThrough {
                return Ok(HttpResponse::from_parts(parts, body));
            }
            // jsonrpsee bounds its answers (RPC_RESPONSE_BYTES_MAX), so this read is bounded.
            let answer = body.collect().await?.to_bytes();
            let (status, answer) = match reshape(&answer, &shape) {
                Some(reshaped) => reshaped,
                None => (parts.status, answer.to_vec()),
            };
            parts.status = status;
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(answer.len()));
            Ok(HttpResponse::from_parts(parts, HttpBody::from(answer)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_bodies_become_2_0_calls() {
        for body in [
            r#"{"version":"1.1","method":"getblockcount","params":[],"id":1}"#,
            r#"{"jsonrpc":"1.0","id":"curltest","method":"getblockcount","params":[]}"#,
            r#"{"method":"getblockcount","params":null,"id":1}"#,
        ] {
            let (bytes, shape) = normalise(body.as_bytes()).expect("legacy is rewritten");
            assert_eq!(shape, Shape::Single(Style::Legacy));
            let call: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(call["jsonrpc"], "2.0");
            assert!(call.get("version").is_none());
            assert!(call.get("params").is_none_or(|p| p.is_array()));
        }
        let (bytes, _) = normalise(br#"{"method":"getblockcount"}"#).unwrap();
        let call: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            call["id"],
            Value::Null,
            "a legacy call without id is answered"
        );
    }

    #[test]
    fn strict_2_0_and_non_json_pass_through() {
        assert!(normalise(br#"{"jsonrpc":"2.0","method":"a","id":1}"#).is_none());
        assert!(normalise(br#"[{"jsonrpc":"2.0","method":"a","id":1}]"#).is_none());
        assert!(normalise(b"not json").is_none());
    }

    #[test]
    fn batch_styles_skip_2_0_notifications() {
        let (_, shape) = normalise(
            br#"[{"method":"a","id":1},{"jsonrpc":"2.0","method":"b"},{"jsonrpc":"2.0","method":"c","id":2}]"#,
        )
        .unwrap();
        assert_eq!(shape, Shape::Batch(vec![Style::Legacy, Style::V2]));
    }

    #[test]
    fn legacy_answers_have_cores_envelope_and_status() {
        let (status, body) = reshape(
            br#"{"jsonrpc":"2.0","result":5,"id":1}"#,
            &Shape::Single(Style::Legacy),
        )
        .unwrap();
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer, json!({"result": 5, "error": null, "id": 1}));

        let (status, body) = reshape(
            br#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":"x"}"#,
            &Shape::Single(Style::Legacy),
        )
        .unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["result"], Value::Null);
        assert_eq!(answer["error"]["code"], -32601);
        assert!(answer.get("jsonrpc").is_none());

        let (status, _) = reshape(
            br#"{"jsonrpc":"2.0","error":{"code":-26,"message":"x"},"id":1}"#,
            &Shape::Single(Style::Legacy),
        )
        .unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
