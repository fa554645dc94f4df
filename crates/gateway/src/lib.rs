//! The embedded gateway: one port in front of every InferenceService.
//!
//! Requests are routed by `Host` (`{name}-{namespace}.{domain}`, the host of the
//! InferenceService's `status.url`, so `hey -host ${SERVICE_HOSTNAME}` works as in the seed, and
//! `{name}-predictor-{namespace}.{domain}` for the predictor itself) or by the path prefix
//! `/serving/{namespace}/{name}/` for clients that cannot set Host. Among the Ready replicas of
//! the front component (the transformer when there is one) the gateway picks the one with fewer
//! outstanding requests of two chosen at random (power of two choices), never a draining one,
//! and retries on another replica when a connection cannot be made. Bodies are limited in size.
//! It counts in-flight requests and requests by status per InferenceService.
//!
//! The route table is rebuilt from the store on every change to Pods or InferenceServices and
//! swapped in whole; the request path only reads an `Arc` snapshot and touches atomics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tidal_store::resource::{INFERENCE_SERVICE, POD};
use tidal_store::{LabelSelector, Store};

/// Largest request body forwarded.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One replica.
#[derive(Debug)]
pub struct Endpoint {
    /// The pod's name.
    pub pod: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests sent and not yet answered.
    pub outstanding: AtomicUsize,
}

/// Counters of one InferenceService.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests being served now.
    pub in_flight: AtomicUsize,
    /// Requests finished, by status class.
    pub ok: AtomicU64,
    /// Requests answered with 4xx.
    pub client_errors: AtomicU64,
    /// Requests answered with 5xx (including 503 for no replica).
    pub server_errors: AtomicU64,
}

/// Where an InferenceService's traffic goes.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/name` of the InferenceService.
    pub key: String,
    /// Ready, non-draining replicas of its front component.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Its counters (shared across route table rebuilds).
    pub counters: Arc<Counters>,
}

/// The route table.
#[derive(Debug, Default)]
pub struct Routes {
    by_host: HashMap<String, Arc<Backend>>,
    by_key: HashMap<String, Arc<Backend>>,
}

/// The gateway's shared state.
pub struct Gateway {
    routes: RwLock<Arc<Routes>>,
    counters: RwLock<HashMap<String, Arc<Counters>>>,
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    client: Client<HttpConnector, Body>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new()
    }
}

impl Gateway {
    /// An empty gateway.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Gateway {
            routes: RwLock::new(Arc::new(Routes::default())),
            counters: RwLock::new(HashMap::new()),
            endpoints: RwLock::new(HashMap::new()),
            client,
        }
    }

    /// The counters of `namespace/name`, if it has received traffic or has routes.
    pub fn counters(&self, key: &str) -> Option<Arc<Counters>> {
        self.counters
            .read()
            .expect("counters lock")
            .get(key)
            .cloned()
    }

    /// Prometheus text: in-flight requests and finished requests by status class, per
    /// InferenceService (what a `prometheus` trigger on request concurrency queries).
    pub fn metrics_text(&self) -> String {
        let counters = self.counters.read().expect("counters lock");
        let mut keys: Vec<&String> = counters.keys().collect();
        keys.sort();
        let mut out = String::from(
            "# HELP tidal_gateway_requests_in_flight Requests being served now, by InferenceService.\n# TYPE tidal_gateway_requests_in_flight gauge\n",
        );
        let labels = |k: &str| {
            let (ns, name) = k.split_once('/').unwrap_or(("default", k));
            format!("namespace=\"{ns}\",inferenceservice=\"{name}\"")
        };
        for k in &keys {
            out.push_str(&format!(
                "tidal_gateway_requests_in_flight{{{}}} {}\n",
                labels(k),
                counters[*k].in_flight.load(Ordering::Relaxed)
            ));
        }
        out.push_str("# HELP tidal_gateway_requests_total Requests served, by InferenceService and status class.\n# TYPE tidal_gateway_requests_total counter\n");
        for k in &keys {
            let c = &counters[*k];
            for (class, n) in [
                ("2xx", &c.ok),
                ("4xx", &c.client_errors),
                ("5xx", &c.server_errors),
            ] {
                out.push_str(&format!(
                    "tidal_gateway_requests_total{{{},code=\"{class}\"}} {}\n",
                    labels(k),
                    n.load(Ordering::Relaxed)
                ));
            }
        }
        out
    }

    fn counters_for(&self, key: &str) -> Arc<Counters> {
        self.counters
            .write()
            .expect("counters lock")
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// Rebuilds the route table from the store: every InferenceService with a URL, and the
    /// Ready replicas of its front component.
    pub fn rebuild(&self, store: &Store) {
        let Ok((isvcs, _)) = store.list(INFERENCE_SERVICE, None, &LabelSelector::default()) else {
            return;
        };
        let Ok((pods, _)) = store.list(POD, None, &LabelSelector::default()) else {
            return;
        };
        let mut routes = Routes::default();
        let mut live = HashMap::new();
        for isvc in &isvcs {
            let (ns, name) = tidal_store::namespace_and_name(isvc);
            let key = format!("{ns}/{name}");
            let front = if isvc.pointer("/spec/transformer").is_some() {
                "transformer"
            } else {
                "predictor"
            };
            let predictor_name = match isvc.pointer("/spec/predictor/name").and_then(Value::as_str)
            {
                Some(n) if !n.is_empty() => format!("{name}-{n}-predictor"),
                _ => format!("{name}-predictor"),
            };
            let component_name = if front == "transformer" {
                format!("{name}-transformer")
            } else {
                predictor_name.clone()
            };
            let endpoints =
                self.ready_endpoints(&pods, ns, &format!("isvc.{component_name}"), &mut live);
            let backend = Arc::new(Backend {
                key: key.clone(),
                endpoints,
                counters: self.counters_for(&key),
            });
            if let Some(url) = isvc.pointer("/status/url").and_then(Value::as_str) {
                let host = url
                    .split("://")
                    .nth(1)
                    .unwrap_or(url)
                    .split('/')
                    .next()
                    .unwrap_or_default();
                routes
                    .by_host
                    .insert(host.to_ascii_lowercase(), backend.clone());
                // The predictor's own host: {name}-predictor-{namespace}.{domain}.
                if let Some(domain) = host.strip_prefix(&format!("{name}-{ns}.")) {
                    let pkey = format!("{ns}/{predictor_name}");
                    let pendpoints = self.ready_endpoints(
                        &pods,
                        ns,
                        &format!("isvc.{predictor_name}"),
                        &mut live,
                    );
                    let pbackend = Arc::new(Backend {
                        key: key.clone(),
                        endpoints: pendpoints,
                        counters: self.counters_for(&key),
                    });
                    routes
                        .by_host
                        .insert(format!("{predictor_name}-{ns}.{domain}"), pbackend.clone());
                    routes.by_key.insert(pkey, pbackend);
                }
            }
            routes.by_key.insert(key, backend);
        }
        *self.endpoints.write().expect("endpoints lock") = live;
        *self.routes.write().expect("routes lock") = Arc::new(routes);
    }

    fn ready_endpoints(
        &self,
        pods: &[Value],
        ns: &str,
        app: &str,
        live: &mut HashMap<String, Arc<Endpoint>>,
    ) -> Vec<Arc<Endpoint>> {
        let selector = LabelSelector::parse(&format!("app={app}")).expect("valid selector");
        let mut out = Vec::new();
        for p in pods {
            if p.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns)
                || !selector.matches(p)
            {
                continue;
            }
            let ready = p
                .pointer("/status/conditions/0/status")
                .and_then(Value::as_str)
                == Some("True");
            let port = p
                .pointer("/metadata/annotations/tidal.dev~1port")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<u16>().ok());
            let name = p
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let (true, Some(port)) = (ready, port) {
                // Keep the same endpoint object (and its outstanding count) across rebuilds.
                let existing = self
                    .endpoints
                    .read()
                    .expect("endpoints lock")
                    .get(&name)
                    .cloned();
                let ep = existing
                    .filter(|e| e.addr.port() == port)
                    .unwrap_or_else(|| {
                        Arc::new(Endpoint {
                            pod: name.clone(),
                            addr: SocketAddr::from(([127, 0, 0, 1], port)),
                            outstanding: AtomicUsize::new(0),
                        })
                    });
                live.insert(name, ep.clone());
                out.push(ep);
            }
        }
        out
    }

    fn route(&self, req: &Request) -> Option<(Arc<Backend>, Option<String>)> {
        let routes = self.routes.read().expect("routes lock").clone();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase());
        if let Some(b) = host.and_then(|h| routes.by_host.get(&h).cloned()) {
            return Some((b, None));
        }
        // /serving/{namespace}/{name}/rest...
        let path = req.uri().path();
        let rest = path.strip_prefix("/serving/")?;
        let mut parts = rest.splitn(3, '/');
        let (ns, name) = (parts.next()?, parts.next()?);
        let tail = format!("/{}", parts.next().unwrap_or_default());
        routes
            .by_key
            .get(&format!("{ns}/{name}"))
            .cloned()
            .map(|b| (b, Some(tail)))
    }
}

/// Picks the less busy of two replicas chosen at random (power of two choices).
pub fn pick(
    endpoints: &[Arc<Endpoint>],
    exclude: &[SocketAddr],
    seed: u64,
) -> Option<Arc<Endpoint>> {
    let candidates: Vec<&Arc<Endpoint>> = endpoints
        .iter()
        .filter(|e| !exclude.contains(&e.addr))
        .collect();
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0].clone()),
        n => {
            let a = (seed % n as u64) as usize;
            let mut b = ((seed >> 32) % (n as u64 - 1)) as usize;
            if b >= a {
                b += 1;
            }
            let (ea, eb) = (candidates[a], candidates[b]);
            Some(
                if eb.outstanding.load(Ordering::Relaxed) < ea.outstanding.load(Ordering::Relaxed) {
                    eb.clone()
                } else {
                    ea.clone()
                },
            )
        }
    }
}

fn seed() -> u64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64));
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::json!({"error": message}).to_string(),
    )
        .into_response()
}

/// Decrements an endpoint's outstanding count when the request ends, however it ends.
struct Outstanding(Arc<Endpoint>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one request.
pub async fn proxy(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let Some((backend, rewritten)) = gw.route(&req) else {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        return plain(
            StatusCode::NOT_FOUND,
            format!(
                "no InferenceService serves host {host:?} or path {:?}",
                req.uri().path()
            ),
        );
    };
    let counters = backend.counters.clone();
    counters.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = forward(&gw, &backend, rewritten, req).await;
    counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    let code = response.status().as_u16();
    match code {
        500.. => &counters.server_errors,
        400..=499 => &counters.client_errors,
        _ => &counters.ok,
    }
    .fetch_add(1, Ordering::Relaxed);
    response
}

async fn forward(
    gw: &Gateway,
    backend: &Backend,
    rewritten: Option<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    // Buffer the body (bounded) so a request that could not connect can be retried elsewhere.
    let body: Bytes = match http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds {MAX_BODY_BYTES} bytes"),
            );
        }
    };
    let path_and_query = match (&rewritten, parts.uri.query()) {
        (Some(p), Some(q)) => format!("{p}?{q}"),
        (Some(p), None) => p.clone(),
        (None, _) => parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string()),
    };
    let mut tried: Vec<SocketAddr> = Vec::new();
    loop {
        let Some(ep) = pick(&backend.endpoints, &tried, seed()) else {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no ready replica of InferenceService {} could take the request",
                    backend.key
                ),
            );
        };
        tried.push(ep.addr);
        ep.outstanding.fetch_add(1, Ordering::Relaxed);
        let guard = Outstanding(ep.clone());
        let uri: Uri = match format!("http://{}{path_and_query}", ep.addr).parse() {
            Ok(u) => u,
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("invalid request path: {e}"),
                );
            }
        };
        let mut builder = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .version(axum::http::Version::HTTP_11);
        for (k, v) in &parts.headers {
            if k != header::HOST && k != header::CONNECTION {
                builder = builder.header(k, v);
            }
        }
        let outgoing = builder
            .body(Body::from(body.clone()))
            .expect("valid request");
        match gw.client.request(outgoing).await {
            Ok(resp) => {
                let (rparts, rbody) = resp.into_parts();
                // Keep the outstanding count until the body has been streamed out.
                let rbody = Body::new(rbody.map_frame(move |f| {
                    let _ = &guard;
                    f
                }));
                return Response::from_parts(rparts, rbody);
            }
            Err(e) if e.is_connect() => {
                tracing::debug!(replica = %ep.pod, error = %e, "Connect failed; retrying on another replica");
                drop(guard);
                continue;
            }
            Err(e) => {
                return plain(
                    StatusCode::BAD_GATEWAY,
                    format!("replica {} failed: {e}", ep.pod),
                );
            }
        }
    }
}

/// The gateway app: every path goes to [`proxy`].
pub fn app(gw: Arc<Gateway>) -> axum::Router {
    axum::Router::new().fallback(proxy).with_state(gw)
}

/// Keeps the route table current until `stop`.
pub async fn run_routes(
    gw: Arc<Gateway>,
    store: Arc<Store>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut events = store.subscribe();
    gw.rebuild(&store);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => gw.rebuild(&store),
            e = events.recv() => match e {
                Ok(e) if e.resource == POD || e.resource == INFERENCE_SERVICE => gw.rebuild(&store),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => gw.rebuild(&store),
                Err(_) => return,
            },
        }
    }
}
