//! `prometheus` triggers: one PromQL query whose single sample is compared with `threshold`.
//!
//! Metadata (KEDA's names): `serverAddress` (required, `http://` or `https://`), `query`
//! (required; must collapse to one sample), `threshold` (required, > 0), `activationThreshold`
//! (default 0), `namespace` (sent as `&namespace=`, for Thanos), `customHeaders` and
//! `queryParameters` (`k=v,k2=v2`), `ignoreNullValues` (default true: an empty result or NaN
//! reads as 0), `unsafeSsl` (default false), `timeout` (milliseconds, or with an `ms`/`s`/`m`
//! suffix), `authModes` (comma-separated `bearer`, `basic`, `tls`, `custom`, `oauth`; bearer,
//! basic and oauth exclude each other). The credentials themselves (`bearerToken`, `username`,
//! ...) come from the TriggerAuthentication and are resolved by the daemon, not here.

use std::time::Duration;

use tidal_api::keda::ScaleTrigger;

use super::{Metadata, Scaler, ScalerError, external_target, positive_milli};
use crate::spec::{MetricSource, MetricTarget};

/// How the daemon authenticates to Prometheus (`metadata.authModes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrometheusAuthMode {
    /// `Authorization: Bearer <bearerToken>`.
    Bearer,
    /// HTTP basic with `username` / `password`.
    Basic,
    /// Client certificate `cert` / `key` (and `ca`).
    Tls,
    /// `customAuthHeader: customAuthValue`.
    Custom,
    /// OAuth2 client credentials.
    OAuth,
}

/// A parsed `prometheus` trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusScaler {
    /// Position of the trigger in `spec.triggers` (names the metric `s{index}-prometheus`).
    pub index: usize,
    /// `serverAddress`.
    pub server_address: String,
    /// `query`.
    pub query: String,
    /// `threshold`: the per-replica (AverageValue) or total (Value) target.
    pub threshold: f64,
    /// `activationThreshold`: active when the value is strictly greater.
    pub activation_threshold: f64,
    /// `namespace`.
    pub namespace: Option<String>,
    /// `customHeaders`.
    pub custom_headers: Vec<(String, String)>,
    /// `queryParameters`.
    pub query_parameters: Vec<(String, String)>,
    /// `ignoreNullValues`.
    pub ignore_null_values: bool,
    /// `unsafeSsl`.
    pub unsafe_ssl: bool,
    /// `timeout`, overriding the daemon's default HTTP timeout.
    pub timeout: Option<Duration>,
    /// `authModes`.
    pub auth_modes: Vec<PrometheusAuthMode>,
    /// The HPA target (AverageValue by default, or Value per the trigger's `metricType`).
    pub target: MetricTarget,
}

pub(super) fn parse(index: usize, trigger: &ScaleTrigger) -> Result<PrometheusScaler, ScalerError> {
    let md = Metadata::new("prometheus", &trigger.metadata);
    let server_address = md.required("serverAddress")?;
    if !(server_address.starts_with("http://") || server_address.starts_with("https://")) {
        return Err(md.invalid(
            "serverAddress",
            server_address,
            "must be an http:// or https:// URL",
        ));
    }
    let query = md.required("query")?;
    let threshold_raw = md.required("threshold")?;
    let threshold = md.float("threshold", threshold_raw)?;
    let threshold_milli = positive_milli(&md, "threshold", threshold)?;
    let activation_threshold = md.float_or("activationThreshold", 0.0)?;
    let timeout = md
        .optional("timeout")
        .map(|raw| {
            parse_timeout(raw).ok_or_else(|| {
                md.invalid(
                    "timeout",
                    raw,
                    "must be a positive number of milliseconds, or end in ms, s or m",
                )
            })
        })
        .transpose()?;
    let mut auth_modes = Vec::new();
    if let Some(raw) = md.optional("authModes") {
        for mode in raw.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mode = match mode {
                "bearer" => PrometheusAuthMode::Bearer,
                "basic" => PrometheusAuthMode::Basic,
                "tls" => PrometheusAuthMode::Tls,
                "custom" => PrometheusAuthMode::Custom,
                "oauth" => PrometheusAuthMode::OAuth,
                _ => {
                    return Err(md.invalid(
                        "authModes",
                        raw,
                        format!("unknown auth mode {mode:?} (bearer, basic, tls, custom, oauth)"),
                    ));
                }
            };
            if !auth_modes.contains(&mode) {
                auth_modes.push(mode);
            }
        }
        let exclusive = auth_modes
            .iter()
            .filter(|m| {
                matches!(
                    m,
                    PrometheusAuthMode::Bearer
                        | PrometheusAuthMode::Basic
                        | PrometheusAuthMode::OAuth
                )
            })
            .count();
        if exclusive > 1 {
            return Err(md.invalid(
                "authModes",
                raw,
                "bearer, basic and oauth cannot be combined",
            ));
        }
    }
    Ok(PrometheusScaler {
        index,
        server_address: server_address.to_string(),
        query: query.to_string(),
        threshold,
        activation_threshold,
        namespace: md.optional("namespace").map(str::to_string),
        custom_headers: md.key_values("customHeaders")?,
        query_parameters: md.key_values("queryParameters")?,
        ignore_null_values: md.bool_or("ignoreNullValues", true)?,
        unsafe_ssl: md.bool_or("unsafeSsl", false)?,
        timeout,
        auth_modes,
        target: external_target("prometheus", trigger, threshold_milli)?,
    })
}

/// `1500`, `1500ms`, `2s`, `1m`.
fn parse_timeout(raw: &str) -> Option<Duration> {
    let (number, unit_ms) = if let Some(n) = raw.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = raw.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = raw.strip_suffix('m') {
        (n, 60_000)
    } else {
        (raw, 1)
    };
    let n: u64 = number.trim().parse().ok()?;
    (n > 0).then(|| Duration::from_millis(n.saturating_mul(unit_ms)))
}

impl Scaler for PrometheusScaler {
    fn trigger_type(&self) -> &'static str {
        "prometheus"
    }
    fn metric_name(&self) -> String {
        format!("s{}-prometheus", self.index)
    }
    fn source(&self) -> MetricSource {
        MetricSource::External
    }
    fn target(&self) -> MetricTarget {
        self.target
    }
    fn activation_threshold(&self) -> f64 {
        self.activation_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalers::{AnyScaler, parse_trigger, trigger};

    const BASE: &[(&str, &str)] = &[
        (
            "serverAddress",
            "http://prometheus.monitoring.svc.cluster.local:9090",
        ),
        ("query", "sum(vllm:num_requests_waiting)"),
        ("threshold", "5"),
    ];

    fn with(
        extra: &[(&'static str, &'static str)],
        without: &str,
    ) -> Vec<(&'static str, &'static str)> {
        let mut md: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != without)
            .collect();
        md.extend_from_slice(extra);
        md
    }

    /// (case, metricType, metadata, Ok(()) or the field the error must name)
    #[test]
    fn prometheus_metadata_table() {
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<(&'a str, &'a str)>,
            Result<(), &'a str>,
        );
        let cases: Vec<Case> = vec![
            ("minimal trigger", None, with(&[], ""), Ok(())),
            (
                "all optional keys",
                None,
                with(
                    &[
                        ("activationThreshold", "1.5"),
                        ("namespace", "team-a"),
                        ("customHeaders", "X-Scope=1"),
                        ("queryParameters", "dedup=true"),
                        ("ignoreNullValues", "false"),
                        ("unsafeSsl", "true"),
                        ("timeout", "2s"),
                        ("authModes", "bearer,tls"),
                    ],
                    "",
                ),
                Ok(()),
            ),
            (
                "serverAddress required",
                None,
                with(&[], "serverAddress"),
                Err("metadata.serverAddress"),
            ),
            (
                "serverAddress needs a scheme",
                None,
                with(&[("serverAddress", "prometheus:9090")], "serverAddress"),
                Err("metadata.serverAddress"),
            ),
            (
                "query required",
                None,
                with(&[], "query"),
                Err("metadata.query"),
            ),
            (
                "threshold required",
                None,
                with(&[], "threshold"),
                Err("metadata.threshold"),
            ),
            (
                "threshold must be a number",
                None,
                with(&[("threshold", "10k")], "threshold"),
                Err("metadata.threshold"),
            ),
            (
                "threshold must be positive (KServe's default 0)",
                None,
                with(&[("threshold", "0")], "threshold"),
                Err("metadata.threshold"),
            ),
            (
                "activationThreshold must be a number",
                None,
                with(&[("activationThreshold", "x")], ""),
                Err("metadata.activationThreshold"),
            ),
            (
                "ignoreNullValues must be a bool",
                None,
                with(&[("ignoreNullValues", "maybe")], ""),
                Err("metadata.ignoreNullValues"),
            ),
            (
                "unsafeSsl must be a bool",
                None,
                with(&[("unsafeSsl", "yes")], ""),
                Err("metadata.unsafeSsl"),
            ),
            (
                "timeout must be positive",
                None,
                with(&[("timeout", "0")], ""),
                Err("metadata.timeout"),
            ),
            (
                "unknown auth mode",
                None,
                with(&[("authModes", "kerberos")], ""),
                Err("metadata.authModes"),
            ),
            (
                "bearer and basic exclude each other",
                None,
                with(&[("authModes", "bearer,basic")], ""),
                Err("metadata.authModes"),
            ),
            (
                "Utilization is not for external metrics",
                Some("Utilization"),
                with(&[], ""),
                Err("metricType"),
            ),
            (
                "unknown metricType",
                Some("Average"),
                with(&[], ""),
                Err("metricType"),
            ),
        ];
        for (case, metric_type, metadata, expected) in cases {
            let got = parse_trigger(0, &trigger("prometheus", metric_type, &metadata));
            match (got, expected) {
                (Ok(_), Ok(())) => {}
                (Err(err), Err(field)) => {
                    assert!(
                        err.to_string().contains(field),
                        "{case}: {err} should name {field}"
                    )
                }
                (got, expected) => panic!("{case}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn prometheus_defaults_and_metric_spec() {
        let AnyScaler::Prometheus(s) =
            parse_trigger(2, &trigger("prometheus", None, BASE)).unwrap()
        else {
            panic!("not a prometheus scaler")
        };
        assert_eq!(s.metric_name(), "s2-prometheus");
        assert_eq!(s.target, MetricTarget::AverageValue(5000));
        assert_eq!(s.activation_threshold, 0.0);
        assert!(s.ignore_null_values);
        assert!(!s.unsafe_ssl);
        assert!(!s.is_resource());
        let value = parse_trigger(0, &trigger("prometheus", Some("Value"), BASE)).unwrap();
        assert_eq!(value.target(), MetricTarget::Value(5000));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_timeout("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_timeout("soon"), None);
    }
}
