//! Open Inference Protocol v2 over REST, as KServe serves it, with the binary tensor data
//! extension (`Inference-Header-Content-Length`) that tritonclient uses.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::dataplane::{DataPlane, DataPlaneError, InferResponse};
use crate::model::{InferRequest, RequestedOutput};
use crate::tensor::{DataType, Tensor, TensorData, element_count};

/// The header that splits a binary request or response into JSON and raw tensor bytes.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The v2 routes.
pub fn router(dp: Arc<DataPlane>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { axum::Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_versioned),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_versioned),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_versioned),
        )
        .with_state(dp)
}

/// v2 errors: `{"error": "..."}` with the status the data plane error implies.
pub struct V2Error(pub StatusCode, pub String);

impl From<DataPlaneError> for V2Error {
    fn from(e: DataPlaneError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        V2Error(status, e.to_string())
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> V2Error {
    V2Error(StatusCode::BAD_REQUEST, msg.into())
}

async fn server_metadata(State(dp): State<Arc<DataPlane>>) -> impl IntoResponse {
    axum::Json(json!({
        "name": dp.server_name,
        "version": dp.server_version,
        "extensions": ["model_repository_extension", "binary_tensor_data"],
    }))
}

async fn server_ready(State(dp): State<Arc<DataPlane>>) -> Response {
    let ready = dp.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(json!({"ready": ready}))).into_response()
}

async fn model_metadata(
    State(dp): State<Arc<DataPlane>>,
    Path(name): Path<String>,
) -> Result<Response, V2Error> {
    let model = dp.model(&name)?;
    let m = model.metadata();
    Ok(axum::Json(json!({
        "name": name,
        "versions": m.versions,
        "platform": m.platform,
        "inputs": m.inputs,
        "outputs": m.outputs,
    }))
    .into_response())
}

async fn model_metadata_versioned(
    state: State<Arc<DataPlane>>,
    Path((name, _version)): Path<(String, String)>,
) -> Result<Response, V2Error> {
    model_metadata(state, Path(name)).await
}

async fn model_ready(
    State(dp): State<Arc<DataPlane>>,
    Path(name): Path<String>,
) -> Result<Response, V2Error> {
    let ready = dp.model(&name)?.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(json!({"name": name, "ready": ready}))).into_response())
}

async fn model_ready_versioned(
    state: State<Arc<DataPlane>>,
    Path((name, _version)): Path<(String, String)>,
) -> Result<Response, V2Error> {
    model_ready(state, Path(name)).await
}

async fn infer_versioned(
    state: State<Arc<DataPlane>>,
    Path((name, _version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    infer(state, Path(name), headers, body).await
}

async fn infer(
    State(dp): State<Arc<DataPlane>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let timer = dp.metrics.start(&name, "v2");
    let response = match infer_inner(&dp, &name, &headers, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    timer.finish(response.status().as_u16());
    response
}

#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<WireInput>,
    #[serde(default)]
    outputs: Option<Vec<WireOutput>>,
}

#[derive(Deserialize)]
struct WireInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct WireOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Decodes a JSON or binary-extension request body.
pub fn decode_request(headers: &HeaderMap, body: &[u8]) -> Result<InferRequest, V2Error> {
    let (json_part, mut binary) = match headers.get(HEADER_LENGTH) {
        Some(v) => {
            let len: usize = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad_request(format!("invalid {HEADER_LENGTH} header: {v:?}")))?;
            if len > body.len() {
                return Err(bad_request(format!(
                    "{HEADER_LENGTH} is {len} but the body has only {} bytes",
                    body.len()
                )));
            }
            (&body[..len], &body[len..])
        }
        None => (body, &[][..]),
    };
    let wire: WireRequest = serde_json::from_slice(json_part)
        .map_err(|e| bad_request(format!("Unrecognized request format: {e}")))?;

    let mut inputs = Vec::with_capacity(wire.inputs.len());
    for input in wire.inputs {
        let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
            bad_request(format!(
                "invalid datatype '{}' for input '{}'; expected one of {}",
                input.datatype,
                input.name,
                DataType::ALL.map(|d| d.as_str()).join(", ")
            ))
        })?;
        let count =
            element_count(&input.name, &input.shape).map_err(|e| bad_request(e.to_string()))?;
        let parameters = input.parameters.unwrap_or_default();
        let binary_size = parameters.get("binary_data_size").and_then(Value::as_u64);
        let data = match (binary_size, &input.data) {
            (Some(size), _) => {
                let size = size as usize;
                if size > binary.len() {
                    return Err(bad_request(format!(
                        "input '{}' declares binary_data_size {size} but only {} bytes remain",
                        input.name,
                        binary.len()
                    )));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_binary(&input.name, datatype, &input.shape, raw)
            }
            (None, Some(data)) => TensorData::from_json(&input.name, datatype, data),
            (None, None) => return Err(bad_request(format!("input '{}' has no data", input.name))),
        }
        .map_err(|e| bad_request(e.to_string()))?;
        if data.len() != count {
            return Err(bad_request(format!(
                "input '{}' has shape {:?} ({count} elements) but {} elements of data",
                input.name,
                input.shape,
                data.len()
            )));
        }
        let mut parameters = parameters;
        parameters.remove("binary_data_size");
        inputs.push(Tensor {
            name: input.name,
            shape: input.shape,
            data,
            parameters,
        });
    }
    let id = match wire.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    Ok(InferRequest {
        id,
        parameters: wire.parameters.unwrap_or_default(),
        inputs,
        outputs: wire
            .outputs
            .unwrap_or_default()
            .into_iter()
            .map(|o| RequestedOutput {
                name: o.name,
                parameters: o.parameters.unwrap_or_default(),
            })
            .collect(),
    })
}

fn infer_inner(
    dp: &DataPlane,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, V2Error> {
    // Unknown model first: a 404 is more useful than a decoding error.
    dp.model(name)?;
    let request = decode_request(headers, body)?;
    let binary_all = request
        .parameters
        .get("binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let response = dp.infer(name, request)?;
    Ok(encode_response(response, binary_all))
}

/// Encodes a response as JSON, or as JSON plus raw bytes for the outputs that asked for
/// `binary_data`.
pub fn encode_response(r: InferResponse, binary_all: bool) -> Response {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let outputs: Vec<Value> = r
        .outputs
        .into_iter()
        .map(|mut o| {
            let binary = o
                .parameters
                .remove("binary_data")
                .and_then(|v| v.as_bool())
                .unwrap_or(binary_all);
            let mut out = json!({
                "name": o.name,
                "shape": o.shape,
                "datatype": o.data.datatype().as_str(),
            });
            if binary {
                let raw = o.data.to_binary();
                o.parameters
                    .insert("binary_data_size".into(), raw.len().into());
                blobs.push(raw);
            } else {
                out["data"] = o.data.to_json();
            }
            out["parameters"] = if o.parameters.is_empty() {
                Value::Null
            } else {
                Value::Object(o.parameters)
            };
            out
        })
        .collect();
    let header = json!({
        "model_name": r.model_name,
        "model_version": Value::Null,
        "id": r.id,
        "parameters": Value::Null,
        "outputs": outputs,
    });
    let header = serde_json::to_vec(&header).expect("JSON values serialize");
    if blobs.is_empty() {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            header,
        )
            .into_response();
    }
    let len = header.len();
    let mut body = header;
    for b in blobs {
        body.extend_from_slice(&b);
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEADER_LENGTH),
                HeaderValue::from(len),
            ),
        ],
        body,
    )
        .into_response()
}
