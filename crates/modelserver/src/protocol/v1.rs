//! KServe's v1 protocol: `/v1/models/{name}` and `:predict` with `instances`. Requests become one
//! tensor (`input-0`) for the data plane; the first output becomes `predictions`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::dataplane::{DataPlane, DataPlaneError};
use crate::model::InferRequest;
use crate::tensor::{DataType, Tensor, TensorData};

/// The v1 routes.
pub fn router(dp: Arc<DataPlane>) -> Router {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{name}", get(model_ready).post(verb))
        .with_state(dp)
}

/// v1 errors: `{"error": "..."}`.
pub struct V1Error(pub StatusCode, pub String);

impl From<DataPlaneError> for V1Error {
    fn from(e: DataPlaneError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        V1Error(status, e.to_string())
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

/// KServe's `{"models": [...]}`; a server with generative models also answers in OpenAI's
/// shape (`object`, `data`) on the same path, since OpenAI clients with base URL `/v1` list
/// models here.
async fn list_models(State(dp): State<Arc<DataPlane>>) -> impl IntoResponse {
    let mut body = json!({"models": dp.model_names().collect::<Vec<_>>()});
    if dp.generators().next().is_some() {
        let list = super::openai::model_list(&dp);
        body["object"] = list["object"].clone();
        body["data"] = list["data"].clone();
    }
    axum::Json(body)
}

async fn model_ready(
    State(dp): State<Arc<DataPlane>>,
    Path(name): Path<String>,
) -> Result<Response, V1Error> {
    let ready = dp.model(&name)?.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(json!({"name": name, "ready": ready}))).into_response())
}

/// `POST /v1/models/{name}:predict` (the verb is part of the last path segment).
async fn verb(
    State(dp): State<Arc<DataPlane>>,
    Path(segment): Path<String>,
    body: Bytes,
) -> Response {
    let Some((name, verb)) = segment.rsplit_once(':') else {
        return V1Error(
            StatusCode::NOT_FOUND,
            format!("unknown path /v1/models/{segment}; use :predict"),
        )
        .into_response();
    };
    if verb != "predict" {
        return V1Error(
            StatusCode::NOT_FOUND,
            format!("unsupported verb :{verb}; Tidal serves :predict"),
        )
        .into_response();
    }
    let timer = dp.metrics.start(name, "v1");
    let response = match predict(&dp, name, &body) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    timer.finish(response.status().as_u16());
    response
}

fn predict(dp: &DataPlane, name: &str, body: &[u8]) -> Result<Response, V1Error> {
    dp.model(name)?;
    let bad = |m: String| V1Error(StatusCode::BAD_REQUEST, m);
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("Unrecognized request format: {e}")))?;
    let instances = request
        .get("instances")
        .or_else(|| request.get("inputs"))
        .ok_or_else(|| bad("Expected \"instances\" or \"inputs\" in request body".into()))?;
    let input = instances_to_tensor(instances).map_err(bad)?;
    let response = dp.infer(
        name,
        InferRequest {
            inputs: vec![input],
            ..Default::default()
        },
    )?;
    let first = response.outputs.into_iter().next().ok_or_else(|| {
        V1Error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("model {name} produced no output"),
        )
    })?;
    Ok(
        axum::Json(json!({"predictions": nest(&first.data.to_json(), &first.shape)}))
            .into_response(),
    )
}

/// `instances` as one tensor: numbers become FP64, strings BYTES, booleans BOOL; rows must be
/// rectangular.
pub fn instances_to_tensor(instances: &Value) -> Result<Tensor, String> {
    let Value::Array(rows) = instances else {
        return Err("\"instances\" must be a list".into());
    };
    let mut shape = vec![rows.len() as i64];
    let mut probe = rows.first();
    while let Some(Value::Array(inner)) = probe {
        shape.push(inner.len() as i64);
        probe = inner.first();
    }
    let datatype = match probe {
        Some(Value::String(_)) => DataType::Bytes,
        Some(Value::Bool(_)) => DataType::Bool,
        _ => DataType::F64,
    };
    check_rectangular(instances, &shape, 0, &mut Vec::new())?;
    let data =
        TensorData::from_json("instances", datatype, instances).map_err(|e| e.to_string())?;
    Ok(Tensor {
        name: "input-0".into(),
        shape,
        data,
        parameters: Map::new(),
    })
}

fn check_rectangular(
    v: &Value,
    shape: &[i64],
    depth: usize,
    at: &mut Vec<usize>,
) -> Result<(), String> {
    match (v, shape.get(depth)) {
        (Value::Array(items), Some(&n)) => {
            if items.len() as i64 != n {
                let place: String = at.iter().map(|i| format!("[{i}]")).collect();
                return Err(format!(
                    "instances{place} has {} elements where {n} were expected: instances must be a rectangular array",
                    items.len()
                ));
            }
            for (i, item) in items.iter().enumerate() {
                at.push(i);
                check_rectangular(item, shape, depth + 1, at)?;
                at.pop();
            }
            Ok(())
        }
        (Value::Array(_), None) => {
            let place: String = at.iter().map(|i| format!("[{i}]")).collect();
            Err(format!(
                "instances{place} is nested deeper than the first instance"
            ))
        }
        (_, Some(_)) => {
            let place: String = at.iter().map(|i| format!("[{i}]")).collect();
            Err(format!(
                "instances{place} is a scalar where a list was expected: instances must be a rectangular array"
            ))
        }
        (_, None) => Ok(()),
    }
}

/// Regroups a flat JSON array by a shape (all but the first dimension).
pub fn nest(flat: &Value, shape: &[i64]) -> Value {
    let Value::Array(items) = flat else {
        return flat.clone();
    };
    if shape.len() <= 1 {
        return flat.clone();
    }
    let inner: usize = shape[1..].iter().map(|d| *d as usize).product();
    if inner == 0 {
        return Value::Array(vec![]);
    }
    Value::Array(
        items
            .chunks(inner)
            .map(|c| nest(&Value::Array(c.to_vec()), &shape[1..]))
            .collect(),
    )
}
