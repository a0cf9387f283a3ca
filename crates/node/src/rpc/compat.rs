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
//!
//! The 2.0 path is the hot one, so it builds nothing: a borrowing scan ([`all_v2`]) reads only
//! each call's `jsonrpc` member and skips the rest (a `submitblock`'s megabytes of hex are not
//! copied), and the body goes on as the same bytes. A single 1.0-style answer is re-enveloped
//! around jsonrpsee's `result` text without parsing it (see [`legacy_single`]).
//! `cargo bench -p node --bench rpc_compat` measures both against jsonrpsee alone.

use super::RPC_REQUEST_BYTES_MAX;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use jsonrpsee::core::{BoxError, JsonRawValue};
use jsonrpsee::server::{HttpBody, HttpRequest, HttpResponse};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::fmt;
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

/// One call object, as far as the 2.0 fast path needs it: whether its (last) `jsonrpc` member
/// is the string "2.0", read the way `serde_json::Value` reads the object. Only objects are
/// accepted (a derived struct would also take an array); every other member is skipped.
struct Probe {
    v2: bool,
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Probe, D::Error> {
        struct ObjectOnly;
        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = Probe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a call object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
                let mut v2 = false;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "jsonrpc" {
                        // A later duplicate wins, as in `Value`; a non-string is not 2.0.
                        v2 = map.next_value::<Value>()? == Value::String("2.0".into());
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Probe { v2 })
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

/// Whether `body` is a JSON-RPC 2.0 call or a batch of only 2.0 calls: exactly the bodies
/// [`normalise`] would leave unchanged after a full parse, found without building one.
fn all_v2(body: &[u8]) -> bool {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Probe>(body).is_ok_and(|call| call.v2),
        Some(b'[') => serde_json::from_slice::<Vec<Probe>>(body)
            .is_ok_and(|calls| calls.iter().all(|call| call.v2)),
        _ => false,
    }
}

/// The strict JSON-RPC 2.0 body jsonrpsee gets for `body`, and how to shape its answer.
/// `None` means "send the body unchanged".
fn normalise(body: &[u8]) -> Option<(Vec<u8>, Shape)> {
    if all_v2(body) {
        return None;
    }
    normalise_parsed(body)
}

/// [`normalise`] by a full parse: the path of every body that is not all JSON-RPC 2.0.
fn normalise_parsed(body: &[u8]) -> Option<(Vec<u8>, Shape)> {
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

/// The members of one jsonrpsee answer, as their JSON text.
#[derive(Deserialize)]
struct RawAnswer<'a> {
    #[serde(borrow, default)]
    id: Option<&'a JsonRawValue>,
    #[serde(borrow, default)]
    result: Option<&'a JsonRawValue>,
    #[serde(borrow, default)]
    error: Option<&'a JsonRawValue>,
}

/// Core's 1.0 envelope of a single answer, around the text of jsonrpsee's `result` and
/// `error` (a `getblock` result of megabytes is copied once, never parsed into a tree).
fn legacy_single(body: &[u8]) -> Option<(StatusCode, Vec<u8>)> {
    // An object only (a derived struct would also read an array, by position).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let answer: RawAnswer = serde_json::from_slice(body).ok()?;
    fn text(raw: Option<&JsonRawValue>) -> &str {
        raw.map_or("null", JsonRawValue::get)
    }
    let error: Value = serde_json::from_str(text(answer.error)).ok()?;
    let status = legacy_status(&json!({ "error": error }));
    let (result, error, id) = (text(answer.result), text(answer.error), text(answer.id));
    let mut out = Vec::with_capacity(result.len() + error.len() + id.len() + 32);
    for part in [
        r#"{"result":"#,
        result,
        r#","error":"#,
        error,
        r#","id":"#,
        id,
        "}",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    Some((status, out))
}

/// Reshapes jsonrpsee's answer body for `shape`; `None` when it is not the JSON expected (it is
/// then passed on as it is).
fn reshape(body: &[u8], shape: &Shape) -> Option<(StatusCode, Vec<u8>)> {
    if *shape == Shape::Single(Style::Legacy) {
        if let Some(reshaped) = legacy_single(body) {
            return Some(reshaped);
        }
    }
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
            // An unchanged body goes on as the same bytes (no copy).
            let (body, shape) = match normalise(&bytes) {
                Some((body, shape)) => (bytes::Bytes::from(body), shape),
                None => (bytes, Shape::PassThrough),
            };
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
            let response = inner
                .call(HttpRequest::from_parts(
                    parts,
                    HttpBody::new(Full::new(body)),
                ))
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
    fn the_2_0_scan_agrees_with_a_full_parse() {
        let bodies: &[&str] = &[
            r#"{"jsonrpc":"2.0","method":"a","id":1}"#,
            r#"  {"id":1,"method":"a","params":[{"jsonrpc":"1.0"}],"jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","method":"a","params":null,"id":1}"#,
            r#"[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"b"}]"#,
            "[]",
            // The last duplicate wins, as in a parsed object.
            r#"{"jsonrpc":"2.0","jsonrpc":"1.0","method":"a","id":1}"#,
            r#"{"jsonrpc":"1.0","jsonrpc":"2.0","method":"a","id":1}"#,
            // An escaped key or value is the same member.
            r#"{"jsonrpc":"2.0","method":"a","id":1}"#,
            r#"{"jsonrpc":"1.0","method":"a","id":1}"#,
            r#"{"version":"1.1","method":"a","id":1}"#,
            r#"{"jsonrpc":2.0,"method":"a","id":1}"#,
            r#"{"method":"a","params":{"jsonrpc":"2.0"}}"#,
            // An array element is no call, even one that reads as a struct by position.
            r#"[["2.0"]]"#,
            r#"[{"jsonrpc":"2.0","method":"a","id":1},{"method":"b","id":2}]"#,
            r#"[{"jsonrpc":"2.0","method":"a","id":1},5]"#,
            r#"{"jsonrpc":"2.0","method":"a","id":1} trailing"#,
            "not json",
            "5",
            "",
        ];
        for body in bodies {
            let body = body.as_bytes();
            if all_v2(body) {
                assert!(
                    normalise_parsed(body).is_none(),
                    "the scan passed {:?} through, a full parse rewrites it",
                    String::from_utf8_lossy(body)
                );
            }
            assert_eq!(
                normalise(body),
                normalise_parsed(body),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        // The scan is what answers every 2.0 body.
        for body in &bodies[..5] {
            assert!(all_v2(body.as_bytes()), "{body}");
        }
        assert!(all_v2(bodies[7].as_bytes()));
    }

    #[test]
    fn the_raw_1_0_envelope_equals_the_parsed_one() {
        for answer in [
            r#"{"jsonrpc":"2.0","id":1,"result":{"a":[1,2,{"b":null}],"c":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":"s","result":null}"#,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"Method not found"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-26,"message":"x","data":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"x"}}"#,
        ] {
            let (status, raw) = legacy_single(answer.as_bytes()).expect("an object answer");
            let parsed = legacy_answer(serde_json::from_str(answer).unwrap());
            assert_eq!(status, legacy_status(&parsed), "{answer}");
            assert_eq!(serde_json::from_slice::<Value>(&raw).unwrap(), parsed);
        }
        assert!(legacy_single(b"[1,2,3]").is_none());
        assert!(legacy_single(b"not json").is_none());
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
