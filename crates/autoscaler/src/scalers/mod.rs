//! One scaler per trigger type, each in its own file, behind the small [`Scaler`] trait.
//!
//! A scaler here is the *parsed and validated* form of one `triggers[]` entry: which metric it
//! feeds the HPA algorithm, with which target, and when it counts as active. Querying the
//! metric source (HTTP to Prometheus or Graphite, the external gRPC scaler) is not done here;
//! the daemon does it with the typed configuration each scaler exposes
//! ([`PrometheusScaler::query`], [`GraphiteScaler::query_time`], ...) and hands the values to
//! [`decide`](crate::decide) as [`Observations`](crate::Observations).
//!
//! Adding a trigger type: write `scalers/<type>.rs` with a `parse(index, trigger)` function and
//! a struct implementing [`Scaler`], add a variant to [`AnyScaler`], and one arm to the
//! alphabetical `match` in [`parse_trigger`].

mod cpu_memory;
mod external;
mod graphite;
mod prometheus;

use std::collections::BTreeMap;

use tidal_api::keda::ScaleTrigger;

pub use cpu_memory::CpuMemoryScaler;
pub use external::ExternalScaler;
pub use graphite::{GraphiteAuthMode, GraphiteScaler};
pub use prometheus::{PrometheusAuthMode, PrometheusScaler};

use crate::spec::{MetricSource, MetricTarget};

/// What every trigger type tells the decision logic.
pub trait Scaler {
    /// KEDA's trigger type: `cpu`, `memory`, `prometheus`, `graphite`, `external`.
    fn trigger_type(&self) -> &'static str;

    /// The HPA metric name. External metrics follow KEDA's `s{triggerIndex}-{type}`
    /// (`s0-prometheus`); resource metrics are named after the resource (`cpu`, `memory`).
    fn metric_name(&self) -> String;

    /// Where the metric comes from: pod resource usage, or a value the daemon queries.
    fn source(&self) -> MetricSource;

    /// The HPA target for the metric.
    fn target(&self) -> MetricTarget;

    /// The trigger is active when its raw value is strictly greater than this (KEDA's
    /// `activationThreshold`, default 0). Resource scalers have no activation threshold and
    /// return 0; they never take part in activation (see the crate docs).
    fn activation_threshold(&self) -> f64;

    /// Whether this is a cpu/memory scaler, whose metric the HPA reads from the pods.
    fn is_resource(&self) -> bool {
        matches!(self.source(), MetricSource::Resource { .. })
    }
}

/// A parsed trigger of any supported type.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyScaler {
    /// `cpu` or `memory`.
    CpuMemory(CpuMemoryScaler),
    /// `external` (a KEDA external gRPC scaler, e.g. KServe's OpenTelemetry add-on).
    External(ExternalScaler),
    /// `graphite`.
    Graphite(GraphiteScaler),
    /// `prometheus`.
    Prometheus(PrometheusScaler),
}

impl AnyScaler {
    fn inner(&self) -> &dyn Scaler {
        match self {
            AnyScaler::CpuMemory(s) => s,
            AnyScaler::External(s) => s,
            AnyScaler::Graphite(s) => s,
            AnyScaler::Prometheus(s) => s,
        }
    }
}

impl Scaler for AnyScaler {
    fn trigger_type(&self) -> &'static str {
        self.inner().trigger_type()
    }
    fn metric_name(&self) -> String {
        self.inner().metric_name()
    }
    fn source(&self) -> MetricSource {
        self.inner().source()
    }
    fn target(&self) -> MetricTarget {
        self.inner().target()
    }
    fn activation_threshold(&self) -> f64 {
        self.inner().activation_threshold()
    }
}

/// Parses and validates trigger number `index` of a ScaledObject.
pub fn parse_trigger(index: usize, trigger: &ScaleTrigger) -> Result<AnyScaler, ScalerError> {
    match trigger.type_.as_str() {
        "cpu" | "memory" => cpu_memory::parse(trigger).map(AnyScaler::CpuMemory),
        "external" => external::parse(index, trigger).map(AnyScaler::External),
        "graphite" => graphite::parse(index, trigger).map(AnyScaler::Graphite),
        "prometheus" => prometheus::parse(index, trigger).map(AnyScaler::Prometheus),
        other => Err(ScalerError::UnknownType(other.to_string())),
    }
}

/// A trigger that cannot be used. Every variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScalerError {
    /// The trigger `type` is not one Tidal implements.
    #[error(
        "trigger type {0:?} is not supported (supported: cpu, external, graphite, memory, prometheus)"
    )]
    UnknownType(String),
    /// A required metadata key is missing or empty.
    #[error("{scaler} trigger: metadata.{key} is required")]
    Missing {
        /// Trigger type.
        scaler: &'static str,
        /// The metadata key.
        key: &'static str,
    },
    /// A metadata key (or the trigger's `metricType`) has a value that cannot be used.
    #[error("{scaler} trigger: {field}: {message} (got {value:?})")]
    Invalid {
        /// Trigger type.
        scaler: &'static str,
        /// `metadata.<key>` or `metricType`.
        field: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Typed access to a trigger's string metadata, producing errors that name the key.
pub(crate) struct Metadata<'a> {
    scaler: &'static str,
    map: &'a BTreeMap<String, String>,
}

impl<'a> Metadata<'a> {
    pub(crate) fn new(scaler: &'static str, map: &'a BTreeMap<String, String>) -> Self {
        Metadata { scaler, map }
    }

    /// The trimmed value, `None` when absent or empty.
    pub(crate) fn optional(&self, key: &str) -> Option<&'a str> {
        self.map
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub(crate) fn required(&self, key: &'static str) -> Result<&'a str, ScalerError> {
        self.optional(key).ok_or(ScalerError::Missing {
            scaler: self.scaler,
            key,
        })
    }

    pub(crate) fn invalid(
        &self,
        key: &str,
        value: &str,
        message: impl Into<String>,
    ) -> ScalerError {
        ScalerError::Invalid {
            scaler: self.scaler,
            field: format!("metadata.{key}"),
            value: value.to_string(),
            message: message.into(),
        }
    }

    /// A finite float (Go's `strconv.ParseFloat`, without NaN and infinities).
    pub(crate) fn float(&self, key: &str, raw: &str) -> Result<f64, ScalerError> {
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.invalid(key, raw, "must be a number")),
        }
    }

    pub(crate) fn float_or(&self, key: &str, default: f64) -> Result<f64, ScalerError> {
        self.optional(key)
            .map_or(Ok(default), |raw| self.float(key, raw))
    }

    /// Go's `strconv.ParseBool` spellings.
    pub(crate) fn bool_or(&self, key: &str, default: bool) -> Result<bool, ScalerError> {
        match self.optional(key) {
            None => Ok(default),
            Some(raw) => {
                parse_go_bool(raw).ok_or_else(|| self.invalid(key, raw, "must be true or false"))
            }
        }
    }

    /// `k1=v1,k2=v2` (KEDA's `customHeaders` and `queryParameters`).
    pub(crate) fn key_values(&self, key: &str) -> Result<Vec<(String, String)>, ScalerError> {
        let Some(raw) = self.optional(key) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    Ok((k.trim().to_string(), v.trim().to_string()))
                }
                _ => Err(self.invalid(key, raw, "must be a comma-separated list of key=value")),
            })
            .collect()
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The target of an external (queried) metric: `AverageValue` unless the trigger's
/// `metricType` says `Value`; `Utilization` is rejected as KEDA rejects it.
pub(crate) fn external_target(
    scaler: &'static str,
    trigger: &ScaleTrigger,
    threshold_milli: i64,
) -> Result<MetricTarget, ScalerError> {
    match trigger.metric_type.as_deref().map(str::trim) {
        None | Some("") | Some("AverageValue") => Ok(MetricTarget::AverageValue(threshold_milli)),
        Some("Value") => Ok(MetricTarget::Value(threshold_milli)),
        Some(other) => Err(ScalerError::Invalid {
            scaler,
            field: "metricType".to_string(),
            value: other.to_string(),
            message: if other == "Utilization" {
                "'Utilization' metric type is unsupported for external metrics".to_string()
            } else {
                "must be AverageValue or Value".to_string()
            },
        }),
    }
}

/// A positive threshold, converted to the milli-units the HPA computes with.
pub(crate) fn positive_milli(md: &Metadata<'_>, key: &str, value: f64) -> Result<i64, ScalerError> {
    let milli = crate::observe::milli_from_f64(value);
    if milli <= 0 {
        return Err(md.invalid(
            key,
            &value.to_string(),
            "must be greater than 0 (at milli precision)",
        ));
    }
    Ok(milli)
}

#[cfg(test)]
pub(crate) fn trigger(
    type_: &str,
    metric_type: Option<&str>,
    metadata: &[(&str, &str)],
) -> ScaleTrigger {
    ScaleTrigger {
        type_: type_.to_string(),
        metric_type: metric_type.map(str::to_string),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ScaleTrigger::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_trigger_types_are_named_in_the_error() {
        let err = parse_trigger(0, &trigger("kafka", None, &[])).unwrap_err();
        assert_eq!(err, ScalerError::UnknownType("kafka".into()));
        assert!(err.to_string().contains("\"kafka\""));
    }

    #[test]
    fn key_values_parse_and_reject_pairs_without_equals() {
        let map: BTreeMap<String, String> =
            [("customHeaders".to_string(), "a=1, b = 2".to_string())].into();
        let md = Metadata::new("prometheus", &map);
        assert_eq!(
            md.key_values("customHeaders").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let map: BTreeMap<String, String> = [("customHeaders".to_string(), "a".to_string())].into();
        let err = Metadata::new("prometheus", &map)
            .key_values("customHeaders")
            .unwrap_err();
        assert!(err.to_string().contains("metadata.customHeaders"), "{err}");
    }

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }
}
