//! The v1 and v2 protocols through the real router, with a small arithmetic model standing in
//! for a runtime (the sklearn runtime has its own end-to-end tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tidal_modelserver::app;
use tidal_modelserver::dataplane::DataPlane;
use tidal_modelserver::model::{InferRequest, Model, ModelError, ModelMetadata, TensorMetadata};
use tidal_modelserver::tensor::{Tensor, TensorData};
use tower::ServiceExt;

/// Row sums (`output-0`, FP64) and row argmax (`output-1`, INT64) of a 2-D numeric input.
struct RowStats {
    name: String,
    ready: AtomicBool,
    delay: std::time::Duration,
}

impl RowStats {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(RowStats {
            name: name.into(),
            ready: AtomicBool::new(true),
            delay: Default::default(),
        })
    }
}

impl Model for RowStats {
    fn name(&self) -> &str {
        &self.name
    }
    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    fn metadata(&self) -> ModelMetadata {
        ModelMetadata {
            platform: "test".into(),
            versions: vec![],
            inputs: vec![TensorMetadata {
                name: "input-0".into(),
                datatype: "FP64".into(),
                shape: vec![-1, -1],
            }],
            outputs: vec![],
        }
    }
    fn infer(&self, request: &InferRequest) -> Result<Vec<Tensor>, ModelError> {
        std::thread::sleep(self.delay);
        let input = &request.inputs[0];
        if input.shape.len() != 2 {
            return Err(ModelError::InvalidInput(format!(
                "expected a 2-D input, got shape {:?}",
                input.shape
            )));
        }
        let x = input
            .data
            .to_f64()
            .ok_or_else(|| ModelError::InvalidInput("expected numbers".into()))?;
        let cols = input.shape[1] as usize;
        let rows: Vec<&[f64]> = if cols == 0 {
            vec![]
        } else {
            x.chunks(cols).collect()
        };
        let sums: Vec<f64> = rows.iter().map(|r| r.iter().sum()).collect();
        let argmax: Vec<i64> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f64::MIN),
                        |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
                    )
                    .0 as i64
            })
            .collect();
        let n = rows.len() as i64;
        Ok(vec![
            Tensor {
                name: "output-0".into(),
                shape: vec![n],
                data: TensorData::F64(sums),
                parameters: Map::new(),
            },
            Tensor {
                name: "output-1".into(),
                shape: vec![n],
                data: TensorData::I64(argmax),
                parameters: Map::new(),
            },
        ])
    }
}

fn plane() -> (Arc<DataPlane>, Arc<RowStats>) {
    let m = RowStats::new("stats");
    let cold = RowStats::new("cold");
    cold.ready.store(false, Ordering::SeqCst);
    (Arc::new(DataPlane::new(vec![m.clone(), cold])), m)
}

async fn call(
    dp: &Arc<DataPlane>,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app(dp.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

async fn get(dp: &Arc<DataPlane>, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = call(dp, Request::get(path).body(Body::empty()).unwrap()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn post(dp: &Arc<DataPlane>, path: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (s, _, b) = call(dp, req).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_and_metadata() {
    let (dp, _) = plane();
    assert_eq!(
        get(&dp, "/v2/health/live").await,
        (StatusCode::OK, json!({"live": true}))
    );
    // One model is not ready, so the server is not.
    assert_eq!(
        get(&dp, "/v2/health/ready").await,
        (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}))
    );
    assert_eq!(
        get(&dp, "/v2/models/stats/ready").await,
        (StatusCode::OK, json!({"name": "stats", "ready": true}))
    );
    assert_eq!(
        get(&dp, "/v2/models/cold/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, meta) = get(&dp, "/v2/models/stats").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(meta["platform"], "test");
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, -1]));
    let (s, server) = get(&dp, "/v2").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(server["name"], "tidal");
    assert_eq!(
        get(&dp, "/v1/models/stats").await,
        (StatusCode::OK, json!({"name": "stats", "ready": true}))
    );
    assert_eq!(
        get(&dp, "/v1/models").await.1,
        json!({"models": ["cold", "stats"]})
    );
    let (s, body) = get(&dp, "/v2/models/nope").await;
    assert_eq!(
        (s, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "Model with name nope does not exist."})
        )
    );
}

#[tokio::test]
async fn v2_infer_nested_and_flat_with_id() {
    let (dp, _) = plane();
    let nested = json!({"id": "req-1", "inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [6, 5, 4]]}]});
    let (s, r) = post(&dp, "/v2/models/stats/infer", nested).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["id"], "req-1");
    assert_eq!(r["model_name"], "stats");
    assert_eq!(
        r["outputs"][0],
        json!({"name": "output-0", "shape": [2], "datatype": "FP64", "parameters": null, "data": [6.0, 15.0]})
    );
    assert_eq!(r["outputs"][1]["data"], json!([2, 0]));

    let flat = json!({"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "INT64", "data": [1, 2, 3, 6, 5, 4]}]});
    let (s, r) = post(&dp, "/v2/models/stats/versions/1/infer", flat).await;
    assert_eq!(s, StatusCode::OK);
    let id = r["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    assert_eq!(&id[14..15], "4");
    assert_eq!(r["outputs"][0]["data"], json!([6.0, 15.0]));
}

#[tokio::test]
async fn v2_requested_outputs() {
    let (dp, _) = plane();
    let body = json!({"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], "outputs": [{"name": "output-1"}]});
    let (s, r) = post(&dp, "/v2/models/stats/infer", body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["name"], "output-1");
    let body = json!({"inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], "outputs": [{"name": "probabilities"}]});
    let (s, r) = post(&dp, "/v2/models/stats/infer", body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        r["error"],
        "unexpected inference output 'probabilities' for model 'stats'; it produces [\"output-0\", \"output-1\"]"
    );
}

#[tokio::test]
async fn v2_binary_tensor_extension() {
    let (dp, _) = plane();
    let header = json!({
        "inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "output-0", "parameters": {"binary_data": true}}, {"name": "output-1", "parameters": {"binary_data": false}}]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in [1.0f32, 2.0, 3.0, 5.0] {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let req = Request::post("/v2/models/stats/infer")
        .header("inference-header-content-length", header.len())
        .body(Body::from(body))
        .unwrap();
    let (s, headers, body) = call(&dp, req).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let len: usize = headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let json: Value = serde_json::from_slice(&body[..len]).unwrap();
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 16);
    assert!(json["outputs"][0].get("data").is_none());
    assert_eq!(json["outputs"][1]["data"], json!([1, 1]));
    let raw = &body[len..];
    let sums: Vec<f64> = raw
        .chunks(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(sums, [3.0, 8.0]);
}

#[tokio::test]
async fn v2_errors_name_what_is_wrong() {
    let (dp, _) = plane();
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        ("/v2/models/stats/infer", "{not json".into(), StatusCode::BAD_REQUEST, "Unrecognized request format: key must be a string at line 1 column 2"),
        ("/v2/models/stats/infer", json!({"inputs": [{"name": "a", "shape": [2], "datatype": "FP99", "data": [1, 2]}]}).to_string(), StatusCode::BAD_REQUEST, "invalid datatype 'FP99' for input 'a'; expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"),
        ("/v2/models/stats/infer", json!({"inputs": [{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}).to_string(), StatusCode::BAD_REQUEST, "input 'a' has shape [2, 2] (4 elements) but 3 elements of data"),
        ("/v2/models/stats/infer", json!({"inputs": [{"name": "a", "shape": [2], "datatype": "INT32", "data": [1, "two"]}]}).to_string(), StatusCode::BAD_REQUEST, "element 1 of input 'a' is the string \"two\", but datatype INT32 needs an integer"),
        ("/v2/models/stats/infer", json!({"inputs": [{"name": "a", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}).to_string(), StatusCode::BAD_REQUEST, "expected a 2-D input, got shape [4]"),
        ("/v2/models/stats/infer", json!({"inputs": []}).to_string(), StatusCode::BAD_REQUEST, "the request has no inputs"),
        ("/v2/models/stats/infer", json!({"outputs": []}).to_string(), StatusCode::BAD_REQUEST, "Unrecognized request format: missing field `inputs` at line 1 column 14"),
        ("/v2/models/nope/infer", json!({"inputs": []}).to_string(), StatusCode::NOT_FOUND, "Model with name nope does not exist."),
        ("/v2/models/cold/infer", json!({"inputs": [{"name": "a", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}).to_string(), StatusCode::SERVICE_UNAVAILABLE, "Model with name cold is not ready."),
    ];
    for (path, body, status, message) in cases {
        let req = Request::post(path).body(Body::from(body.clone())).unwrap();
        let (s, _, b) = call(&dp, req).await;
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (status, message),
            "for {body}"
        );
    }
    // Binary framing errors.
    let req = Request::post("/v2/models/stats/infer")
        .header("inference-header-content-length", "999")
        .body(Body::from("{}"))
        .unwrap();
    let (s, _, b) = call(&dp, req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&b)
            .contains("inference-header-content-length is 999 but the body has only 2 bytes")
    );
}

#[tokio::test]
async fn v1_predict() {
    let (dp, _) = plane();
    let (s, r) = post(
        &dp,
        "/v1/models/stats:predict",
        json!({"instances": [[1, 2], [3, 4]]}),
    )
    .await;
    assert_eq!((s, r), (StatusCode::OK, json!({"predictions": [3.0, 7.0]})));
    let (s, r) = post(
        &dp,
        "/v1/models/stats:predict",
        json!({"instances": [[1, 2], [3]]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        r["error"],
        "instances[1] has 1 elements where 2 were expected: instances must be a rectangular array"
    );
    let (s, r) = post(&dp, "/v1/models/stats:predict", json!({"rows": []})).await;
    assert_eq!(
        (s, r["error"].as_str().unwrap()),
        (
            StatusCode::BAD_REQUEST,
            "Expected \"instances\" or \"inputs\" in request body"
        )
    );
    let (s, r) = post(&dp, "/v1/models/nope:predict", json!({"instances": [[1]]})).await;
    assert_eq!(
        (s, r["error"].as_str().unwrap()),
        (
            StatusCode::NOT_FOUND,
            "Model with name nope does not exist."
        )
    );
    let (s, _) = post(&dp, "/v1/models/stats:explain", json!({"instances": [[1]]})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metrics_count_requests_by_model_protocol_and_status() {
    let (dp, _) = plane();
    post(
        &dp,
        "/v1/models/stats:predict",
        json!({"instances": [[1, 2]]}),
    )
    .await;
    post(
        &dp,
        "/v2/models/stats/infer",
        json!({"inputs": [{"name": "a", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}),
    )
    .await;
    post(&dp, "/v2/models/stats/infer", json!({"inputs": "bad"})).await;
    let (_, _, body) = call(&dp, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = String::from_utf8(body).unwrap();
    for line in [
        r#"rest_server_requests_total{model_name="stats",protocol="v1",status_code="200"} 1"#,
        r#"rest_server_requests_total{model_name="stats",protocol="v2",status_code="200"} 1"#,
        r#"rest_server_requests_total{model_name="stats",protocol="v2",status_code="400"} 1"#,
        r#"rest_server_requests_in_progress{model_name="stats",protocol="v2"} 0"#,
        r#"request_predict_seconds_count{model_name="stats"} 2"#,
        r#"rest_server_request_duration_seconds_count{model_name="stats",protocol="v2"} 2"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let slow = Arc::new(RowStats {
        name: "slow".into(),
        ready: AtomicBool::new(true),
        delay: std::time::Duration::from_millis(500),
    });
    let dp = Arc::new(DataPlane::new(vec![slow]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tidal_modelserver::serve(listener, dp, async {
        let _ = stop_rx.await;
    }));
    let in_flight = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body =
            json!({"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]})
                .to_string();
        let req = format!(
            "POST /v2/models/slow/infer HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    stop_tx.send(()).unwrap();
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"data\":[3.0]"), "{answer}");
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
